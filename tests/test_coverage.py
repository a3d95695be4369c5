"""The op coverage report is generated from the registry and names every rule."""
from __future__ import annotations

import json

import pytest

from pjrt_tt.lower import RULES
from tools.op_coverage import EXPANDED, REFUSED, all_ops, refusals, report


def test_report_lists_every_stablehlo_op_and_status(tmp_path):
    text, pct = report(log="")
    for name in all_ops():
        assert f"| `{name}` |" in text
    assert abs(sum(pct.values()) - 100.0) < 1e-6
    for name in RULES:  # a rule that exists only to refuse clearly is reported as rejected
        if name.startswith("stablehlo.") and name not in REFUSED:
            assert f"| `{name}` | lowered" in text or f"| `{name}` | partial" in text
    for name in EXPANDED:  # written out by ingest: the lowering never sees them
        assert f"| `{name}` | expanded" in text and name not in RULES


def test_partial_rules_state_what_they_refuse():
    reasons = refusals(RULES["stablehlo.custom_call"])
    assert reasons and all(isinstance(r, str) and r for r in reasons)


def test_compile_hook_logs_each_new_program(tmp_path, monkeypatch):
    """The compiler reaches the coverage log only through PJRT_TT_COMPILE_HOOK."""
    import jax
    import jax.numpy as jnp

    from pjrt_tt.compiler import Compiler
    from pjrt_tt.settings import Settings

    log = tmp_path / "ops.jsonl"
    monkeypatch.setenv("OP_COVERAGE_LOG", str(log))
    compiler = Compiler(Settings(compile_hook="tools.op_coverage:log_program"))
    text = jax.jit(lambda x: jnp.exp(x) + 1).lower(jax.ShapeDtypeStruct((2, 3), jnp.float32)).as_text().encode()
    compiler.compile(text, "mlir")
    compiler.compile(text, "mlir")   # a cache hit is not a new compile
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and {"stablehlo.exponential", "stablehlo.add"} <= set(json.loads(lines[0])["ops"])


def test_a_compile_hook_that_cannot_load_is_a_clear_error():
    from pjrt_tt.compiler import Compiler
    from pjrt_tt.errors import InvalidArgument
    from pjrt_tt.settings import Settings

    for spec, why in (("tools.op_coverage", "expected module:function"),
                      ("tools.no_such_module:f", "cannot be loaded"),
                      ("tools.op_coverage:no_such_function", "cannot be loaded")):
        with pytest.raises(InvalidArgument, match=why):
            Compiler(Settings(compile_hook=spec))
