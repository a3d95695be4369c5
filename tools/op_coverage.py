"""The op coverage report: every StableHLO op -> lowered / partial / rejected.

    python -m tools.op_coverage [--log .op-coverage.jsonl] [--out docs/op-coverage.md]

(from the repository root). Generated from the lowering registry (a rule whose code can
refuse some cases with `lo.unsupported("...")` is *partial*, and those reasons are listed)
and, when the test suite has left a log, from the programs the tests compiled: how many
contained the op. The suite writes the log through the compiler's hook: tests/conftest.py
sets PJRT_TT_COMPILE_HOOK=tools.op_coverage:log_program (the log: $OP_COVERAGE_LOG, by
default .op-coverage.jsonl at the repository root).
"""
from __future__ import annotations

import argparse
import ast
import collections
import inspect
import json
import os
import textwrap

from jaxlib.mlir.dialects import stablehlo

import pjrt_tt.spmd  # noqa: F401  (registers the SPMD rules: collectives, mesh slices)
from pjrt_tt.lower import RULES

DEFAULT_LOG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".op-coverage.jsonl")

# Ops ingest writes out in others before the lowering sees them: where, and what stays refused.
EXPANDED = {
    "stablehlo.complex": "ingest/complex64.py: complex64 as pairs of float32 values",
    "stablehlo.real": "ingest/complex64.py: complex64 as pairs of float32 values",
    "stablehlo.imag": "ingest/complex64.py: complex64 as pairs of float32 values",
    "stablehlo.rng_bit_generator": "ingest/rng.py: XLA's Philox / Threefry expanders in uint32, bit-equal "
                                   "to XLA:CPU; 64-bit states (torch_xla's seeds) computed in uint32 "
                                   "word pairs (words64.py); refused: 64-bit draws, a state from a float",
}
# Ops that are refused on purpose, and why (everything else unlowered is "not yet").
REFUSED = {
    "stablehlo.fft": "no FFT in ttnn",
    "stablehlo.infeed": "host infeed/outfeed streams are not supported",
    "stablehlo.outfeed": "host infeed/outfeed streams are not supported",
    "stablehlo.send": "host send/recv is not supported",
    "stablehlo.recv": "host send/recv is not supported",
    "stablehlo.dynamic_broadcast_in_dim": "dynamic shapes: ttnn programs have static shapes",
    "stablehlo.dynamic_conv": "dynamic shapes: ttnn programs have static shapes",
    "stablehlo.dynamic_gather": "dynamic shapes: ttnn programs have static shapes",
    "stablehlo.dynamic_iota": "dynamic shapes: ttnn programs have static shapes",
    "stablehlo.dynamic_pad": "dynamic shapes: ttnn programs have static shapes",
    "stablehlo.dynamic_reshape": "dynamic shapes: ttnn programs have static shapes",
    "stablehlo.real_dynamic_slice": "dynamic shapes: ttnn programs have static shapes",
    "stablehlo.get_dimension_size": "dynamic shapes: ttnn programs have static shapes",
    "stablehlo.set_dimension_size": "dynamic shapes: ttnn programs have static shapes",
    "stablehlo.uniform_quantize": "quantized types are not supported",
    "stablehlo.uniform_dequantize": "quantized types are not supported",
}
# Refusals of cases StableHLO's own verifier already excludes are not limitations.
NOT_LIMITATIONS = ("is defined for floating-point types only",)
# Ops jax no longer emits (legacy forms kept in the dialect); reported, not counted.
LEGACY = {"stablehlo.einsum", "stablehlo.unary_einsum", "stablehlo.torch_index_select",
          "stablehlo.cross-replica-sum", "stablehlo.broadcast", "stablehlo.map", "stablehlo.rng",
          "stablehlo.create_token", "stablehlo.after_all", "stablehlo.tuple",
          "stablehlo.get_tuple_element", "stablehlo.return"}


def all_ops() -> list[str]:
    return sorted({getattr(getattr(stablehlo, n), "OPERATION_NAME", None) for n in dir(stablehlo)} - {None})


def refusals(rule) -> list[str]:
    """The reasons a rule gives when it refuses a case: literal arguments of lo.unsupported()."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(rule)))
    except (OSError, TypeError):
        return []
    reasons = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "unsupported" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant):
                reasons.append(str(arg.value))
            elif isinstance(arg, ast.JoinedStr):
                reasons.append("".join(v.value if isinstance(v, ast.Constant) else "…" for v in arg.values))
    return reasons


def module_ops(module) -> set[str]:
    """Names of all ops in a StableHLO module (for the coverage log)."""
    names: set[str] = set()

    def visit(op):
        names.add(op.operation.name)
        for region in op.operation.regions:
            for block in region.blocks:
                for inner in block.operations:
                    visit(inner)

    for op in module.body.operations:
        visit(op)
    return names


def log_program(parsed, program, ctx) -> None:
    """The compile hook: append the op names of each newly compiled module to the log."""
    with open(os.environ.get("OP_COVERAGE_LOG") or DEFAULT_LOG, "a") as f:
        f.write(json.dumps({"ops": sorted(module_ops(parsed.module))}) + "\n")


def read_log(path: str) -> collections.Counter:
    seen: collections.Counter = collections.Counter()
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                seen.update(set(json.loads(line)["ops"]))
    return seen


def report(log: str = "") -> tuple[str, dict[str, float]]:
    seen = read_log(log)
    rows, counts = [], collections.Counter()
    for name in all_ops():
        rule = RULES.get(name)
        if name in EXPANDED:
            status, detail = "expanded", EXPANDED[name]
        elif rule is not None and name not in REFUSED:
            reasons = [r for r in refusals(rule) if not r.endswith(NOT_LIMITATIONS)]
            status = "partial" if reasons else "lowered"
            detail = "; ".join(reasons) if reasons else f"`{rule.__module__.split('.')[-1]}.{rule.__name__}`"
        elif name in LEGACY:
            status, detail = "legacy", "not emitted by current JAX"
        else:
            status = "rejected"
            detail = REFUSED.get(name, "no lowering yet")
        counts[status] += 1
        rows.append(f"| `{name}` | {status} | {seen.get(name, '')} | {detail} |")
    kinds = ("lowered", "expanded", "partial", "rejected")
    counted = sum(counts[s] for s in kinds)
    pct = {s: 100.0 * counts[s] / counted for s in kinds}
    extra = sorted(n for n in RULES if not n.startswith("stablehlo."))
    header = [
        "# StableHLO op coverage",
        "",
        "Generated by `python -m tools.op_coverage` from the lowering registry"
        + (" and the programs compiled by the test suite." if seen else "."),
        "",
        f"Of {counted} StableHLO ops (legacy forms excluded): lowered {counts['lowered']} "
        f"({pct['lowered']:.0f}%), expanded {counts['expanded']} ({pct['expanded']:.0f}%), "
        f"partial {counts['partial']} ({pct['partial']:.0f}%), "
        f"rejected {counts['rejected']} ({pct['rejected']:.0f}%). Also lowered: "
        + ", ".join(f"`{n}`" for n in extra) + ".",
        "",
        "*expanded*: written out in other ops before the lowering (ingest/). *partial*: lowered,",
        "but the rule refuses the cases listed (with that message and the op's source line).",
        "*tests*: test-suite programs containing the op.",
        "",
        "| op | status | tests | rule, or what is refused |",
        "|---|---|---|---|",
    ]
    return "\n".join(header + rows) + "\n", pct


def main() -> None:
    parser = argparse.ArgumentParser(description="write the StableHLO op coverage table")
    parser.add_argument("--log", default=DEFAULT_LOG)
    parser.add_argument("--out", default="docs/op-coverage.md")
    args = parser.parse_args()
    text, pct = report(args.log)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out}: lowered {pct['lowered']:.0f}%, partial {pct['partial']:.0f}%, "
          f"rejected {pct['rejected']:.0f}%")


if __name__ == "__main__":
    main()
