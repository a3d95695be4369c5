"""The main demo as a test: MLP training on digits with jax.grad, TT vs CPU."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demos"))

import digits_mlp  # noqa: E402
import numpy as np  # noqa: E402


def test_digits_training_matches_cpu(tt, cpu):
    on_tt = digits_mlp.train(tt)
    on_cpu = digits_mlp.train(cpu)
    assert on_cpu["accuracy"] > 0.9  # the task is learnt at all
    assert abs(on_tt["accuracy"] - on_cpu["accuracy"]) <= 0.01, (on_tt["accuracy"], on_cpu["accuracy"])
    # The loss curve follows CPU's: relative L2 distance of the per-epoch losses under 2%.
    # (Epoch by epoch, losses near 0.005 differ by up to ~10%: the chip's float32 matmul
    # takes TF32 operands, see docs/numerics.md, and the last batch of an epoch is noisy.)
    a, b = np.array(on_tt["losses"]), np.array(on_cpu["losses"])
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 0.02, (a, b)
