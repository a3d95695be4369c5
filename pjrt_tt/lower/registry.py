"""The lowering tables, and the one decorator that fills each.

    RULES             StableHLO op name -> rule                    @rule("stablehlo.add", ...)
    CUSTOM_CALLS      custom_call target -> rule                   @custom_call("mhlo.topk")
    FUSED_COMPOSITES  composite name (after the last '.') -> rule  @fused_composite("gelu")

A rule takes the `Lowering` (builder.py) and one MLIR operation and returns one entry per
result; a fused composite's rule also gets the composite's attributes and returns one
entry. Families register at import (lower/__init__.py imports them; the SPMD rules are
registered by pjrt_tt.spmd). Registering a name twice is an error.
"""
from __future__ import annotations

from typing import Callable

Rule = Callable[..., list]
RULES: dict[str, Rule] = {}
CUSTOM_CALLS: dict[str, Rule] = {}
# The pre-scan (lower.unsupported_ops) reads this too: a composite found here never runs
# its decomposition, so ops inside that decomposition need no rule of their own.
FUSED_COMPOSITES: dict[str, Callable] = {}


def _register(table: dict, kind: str, names: tuple[str, ...]):
    def register(fn):
        for name in names:
            if name in table:
                raise ValueError(f"two lowering rules for {kind} {name}")
            table[name] = fn
        return fn
    return register


def rule(*names: str):
    """The rule for the StableHLO ops `names`."""
    return _register(RULES, "op", names)


def custom_call(*targets: str):
    """The rule for `stablehlo.custom_call @target` (the custom_call rule dispatches to it)."""
    return _register(CUSTOM_CALLS, "custom_call", targets)


def fused_composite(*names: str):
    """The fused lowering of the composites named `names` (composite.py: where the
    attributes or types do not fit, the decomposition is lowered instead)."""
    return _register(FUSED_COMPOSITES, "composite", names)
