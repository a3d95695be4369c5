"""The op coverage report is generated from the registry and names every rule."""
from __future__ import annotations

from pjrt_tt.coverage import REFUSED, all_ops, refusals, report
from pjrt_tt.lower import RULES


def test_report_lists_every_stablehlo_op_and_status(tmp_path):
    text, pct = report(log="")
    for name in all_ops():
        assert f"| `{name}` |" in text
    assert abs(sum(pct.values()) - 100.0) < 1e-6
    for name in RULES:  # a rule that exists only to refuse clearly is reported as rejected
        if name.startswith("stablehlo.") and name not in REFUSED:
            assert f"| `{name}` | lowered" in text or f"| `{name}` | partial" in text


def test_partial_rules_state_what_they_refuse():
    reasons = refusals(RULES["stablehlo.custom_call"])
    assert reasons and all(isinstance(r, str) and r for r in reasons)
