"""The main demo as a test: MLP training on digits with jax.grad, TT vs CPU."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demos"))

import digits_mlp  # noqa: E402


def test_digits_training_matches_cpu(tt, cpu):
    on_tt = digits_mlp.train(tt)
    on_cpu = digits_mlp.train(cpu)
    assert on_cpu["accuracy"] > 0.9  # the task is learnt at all
    assert abs(on_tt["accuracy"] - on_cpu["accuracy"]) <= 0.01, (on_tt["accuracy"], on_cpu["accuracy"])
    # the loss curve follows CPU's, epoch by epoch
    for a, b in zip(on_tt["losses"], on_cpu["losses"]):
        assert abs(a - b) <= 0.02 * max(abs(b), 1e-2), (on_tt["losses"], on_cpu["losses"])
