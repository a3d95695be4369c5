"""On a real card: the same programs on the `device` target, compared with XLA:CPU.
Skipped (see conftest) when no Tenstorrent card is present."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.device
def test_mlp_step_on_the_card_matches_cpu():
    code = textwrap.dedent("""
        import sys, numpy as np, jax
        sys.path.insert(0, "demos")
        import digits_mlp
        tt, cpu = jax.devices("tt")[0], jax.devices("cpu")[0]
        a, b = digits_mlp.train(tt, epochs=5), digits_mlp.train(cpu, epochs=5)
        assert tt.target == "device", tt.target
        assert abs(a["accuracy"] - b["accuracy"]) <= 0.01, (a, b)
        print("ok")
    """)
    env = {**os.environ, "PJRT_TT_TARGET": "device", "PJRT_TT_CHECK_WITH_MOCK": "0"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=1200)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr
