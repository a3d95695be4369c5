"""The lean per-call path stays correct after a program's first run: the shim builds outputs
from compile-time metadata and marks donations itself, the executor checks result metadata on
an op's first run only, and the sim reuses validated op plans."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from pjrt_tt.targets import sim
from pjrt_tt.targets.sim import ops as sim_ops


def test_donation_after_the_first_run(tt):
    f = jax.jit(lambda x, y: x + y, donate_argnums=0)
    y = jax.device_put(np.ones((32, 32), np.float32), tt)
    for i in range(4):
        x = jax.device_put(np.full((32, 32), i, np.float32), tt)
        out = f(x, y)
        assert x.is_deleted() and not y.is_deleted()
        np.testing.assert_array_equal(np.asarray(out), np.full((32, 32), i + 1, np.float32))
        with pytest.raises(Exception, match="deleted|donated"):
            f(x, y)


def test_deleted_input_after_the_first_run_is_a_clear_error(tt):
    f = jax.jit(lambda x: x * 2.0)
    x = jax.device_put(np.ones((8, 8), np.float32), tt)
    for _ in range(3):
        f(x).block_until_ready()
    x.delete()
    with pytest.raises(Exception, match="deleted"):
        f(x)


def test_op_errors_after_the_first_run_still_surface(tt, monkeypatch):
    f = jax.jit(lambda x: x + 1.0)
    x = jax.device_put(np.ones((8, 8), np.float32), tt)
    for _ in range(3):
        f(x).block_until_ready()
    real = sim_ops._PLANS.copy()

    def broken(*a, **k):
        raise RuntimeError("TT_FATAL @ sim: injected\ninfo:\nan injected failure")
    monkeypatch.setattr(sim, "add", broken)   # the bound program resolved ttnn.add at bind time...
    # ...so a new executable sees the failure, named with the op and its source line
    g = jax.jit(lambda x: x + 2.0)
    with pytest.raises(Exception, match="ttnn.add failed for .*an injected failure"):
        g(x)
    sim_ops._PLANS.update(real)
    np.testing.assert_array_equal(np.asarray(f(x)), np.full((8, 8), 2, np.float32))


def test_first_run_checks_result_metadata(tt, monkeypatch):
    real = sim.exp

    def wrong_shape(t, **k):
        return sim.reshape(real(t, **k), [int(np.prod(list(t.shape)))])
    monkeypatch.setattr(sim, "exp", wrong_shape)
    with pytest.raises(Exception, match="where the program expects .*lowering bug"):
        jax.jit(lambda x: jax.numpy.exp(x))(jax.device_put(np.ones((4, 8), np.float32), tt))


def test_plan_cache_keys_on_scalar_values_and_types(dev):
    a = sim.Tensor(np.full((32, 32), 3, np.int32), data_type=sim.int32, layout=sim.TILE_LAYOUT, device=dev)
    assert sim.from_device(sim.multiply(a, 2)).to_numpy()[0, 0] == 6          # int plan
    out = sim.multiply(a, 2.5)                                                  # promoted: a float plan
    assert out.dtype == sim.float32 and sim.from_device(out).to_numpy()[0, 0] == 7.5
    with pytest.raises(RuntimeError, match="cannot represent the scalar 2.5"):
        sim.add(a, 2.5)
    with pytest.raises(RuntimeError, match="cannot represent the scalar 2.5"):   # refused every time
        sim.add(a, 2.5)
    sim.deallocate(a)
    with pytest.raises(RuntimeError, match="not allocated"):                  # cached plan, dead tensor
        sim.multiply(a, 2)


def test_denormal_inputs_still_flush_with_cached_plans(dev):
    x = sim.Tensor(np.full((32, 32), 1e-40, np.float32), data_type=sim.float32, layout=sim.TILE_LAYOUT,
                   device=dev)
    for _ in range(3):
        assert sim.from_device(sim.add(x, 0.0)).to_numpy()[0, 0] == 0.0
        assert sim.from_device(sim.multiply(x, 1e30)).to_numpy()[0, 0] == 0.0
