"""erf / erfc / erf_inv arrive as single ttnn ops (pjrt_tt.jax_plugin emits them as "tt.*"
composites, which survive serialisation where chlo.erf/erfc become polynomials), and the
exact gelu jax writes with them is one ttnn.gelu (Accurate variant: the erf form). Results
against XLA:CPU; the sim's erfc against float64 math."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax import lax

from conftest import assert_close
from pjrt_tt.targets import sim
from test_fusion import fns, run_and_program

DTYPES = [np.float32, jnp.bfloat16]


def _x(n, dtype, lo=-4.0, hi=4.0):
    return np.linspace(lo, hi, 3 * n, dtype=np.float32).reshape(3, n).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("f,fused", [(lax.erf, "erf"), (lax.erfc, "erfc"),
                                     (lambda x: lax.erf_inv(x / 5), "erfinv")])
def test_erf_family_is_one_op(f, fused, dtype, tt, cpu):
    n = {"erf": 17, "erfc": 18, "erfinv": 19}[fused] + (dtype is np.float32)
    got, want, prog = run_and_program(f, _x(n, dtype), tt=tt, cpu=cpu)
    assert [fn for fn in fns(prog) if fn not in ("divide",)] == [fused], prog.format()
    assert_close(got[0], want[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["jax", "erf"])
def test_exact_gelu_is_ttnn_gelu(form, dtype, tt, cpu):
    """jax.nn.gelu(approximate=False) = 0.5 x erfc(-x sqrt(1/2)), and 0.5 x (1 + erf(x / sqrt 2))."""
    f = (lambda x: jax.nn.gelu(x, approximate=False)) if form == "jax" else \
        (lambda x: 0.5 * x * (1 + lax.erf(x / np.sqrt(2).astype(x.dtype))))
    n = 21 + (form == "erf") + 2 * (dtype is np.float32)
    got, want, prog = run_and_program(f, _x(n, dtype, -6, 6), tt=tt, cpu=cpu)
    assert fns(prog) == ["gelu"] and not prog.ops[0].kwargs, prog.format()   # Accurate (erf) variant
    assert_close(got[0], want[0])


def test_erfc_with_another_user_is_not_fused(tt, cpu):
    def f(x):
        c = lax.erfc(-x * np.float32(math.sqrt(0.5)))
        return 0.5 * x * c, c
    got, want, prog = run_and_program(f, _x(25, np.float32), tt=tt, cpu=cpu)
    assert "erfc" in fns(prog) and "gelu" not in fns(prog), prog.format()
    for a, b in zip(got, want):
        assert_close(a, b)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sim_erfc_numerics(dtype):
    """float32 math rounded once to the output dtype, with erfc's tail kept (not 1 - erf)."""
    sim.sim_reset()
    dev = sim.open_device(device_id=0)
    try:
        x = np.array([-3, -1, -0.25, 0, 0.5, 1, 2, 3, 5, 8, 9.5], np.float32)
        t = sim.Tensor(x, getattr(sim, dtype), dev, sim.TILE_LAYOUT)
        out = sim.erfc(t)
        assert out.dtype == t.dtype and out.layout == t.layout
        got = np.asarray(sim.from_device(out).to_numpy(), np.float32)
        xin = x if dtype == "float32" else x.astype(ml_dtypes.bfloat16).astype(np.float32)
        want = np.array([math.erfc(v) for v in xin.astype(np.float64)], np.float32)
        # erfc(9.5) = 3.8e-41 is a float32 denormal, which Tensix arithmetic never outputs
        # (docs/numerics.md, "Denormals"): the card gives 0 there
        want[np.abs(want) < np.float32(2.0 ** -126)] = 0
        if dtype == "bfloat16":
            want = want.astype(ml_dtypes.bfloat16).astype(np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
        with pytest.raises(RuntimeError, match="ERFC"):
            sim.erfc(sim.Tensor(np.arange(4, dtype=np.int32), sim.int32, dev, sim.TILE_LAYOUT))
    finally:
        sim.close_device(dev)
        sim.sim_reset()
