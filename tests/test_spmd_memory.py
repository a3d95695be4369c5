"""Weights larger than one chip's DRAM: sharded over a t3k they fit, on one chip they do not.

The sim keeps tensor values in host RAM, so the chips' DRAM is shrunk to 32 MiB each with
PJRT_TT_SIM_DRAM_MB (the allocator, bank layout and ttnn's out-of-memory message are the
real ones, only the bank size changes). Runs `spmd_cases.py oversized_model` in a process of
its own (8 XLA:CPU devices for the reference, the sim t3k, real ttnn mock checks).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import forward_mock_unchecked

HERE = os.path.dirname(os.path.abspath(__file__))


def test_weights_over_one_chips_dram_run_sharded_and_fail_unsharded():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", PJRT_TT_SYSTEM="t3k",
               PJRT_TT_TARGET="sim", PJRT_TT_SIM_DRAM_MB="32",
               PJRT_TT_CHECK_WITH_MOCK=os.environ.get("PJRT_TT_CHECK_WITH_MOCK", "1"))
    p = subprocess.run([sys.executable, os.path.join(HERE, "spmd_cases.py"), "oversized_model"], env=env,
                       capture_output=True, text=True, timeout=300)
    lines = [json.loads(x[5:]) for x in p.stdout.splitlines() if x.startswith("CASE ")]
    forward_mock_unchecked(p.stderr)
    assert p.returncode == 0 and lines, p.stderr[-3000:]
    r = lines[0]
    assert r["ok"], json.dumps(r, indent=1)
    assert r["weights_bytes"] == 32 << 20 and r["chip_limit"] < r["weights_bytes"]
    assert "RESOURCE_EXHAUSTED" in r["oom"] and "Out of Memory" in r["oom"], r["oom"]
