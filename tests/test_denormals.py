"""Denormals (issue 13 item 9): Tensix arithmetic (FPU and SFPU) reads a float32 / bfloat16
denormal as a zero of its sign and never produces one (docs/numerics.md, "Denormals"); XLA:CPU
runs with FTZ and DAZ set, so for arithmetic the two agree bit for bit. Values an op only moves
or selects (data movement, select, neg / abs, host transfers) keep their bits on both.
Every comparison is exact (bit patterns, -0.0 included) against XLA:CPU."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from conftest import assert_close

TINY = np.float32(2.0 ** -126)   # the smallest normal float32
# denormals of both signs (the largest, a middle one, the smallest), a normal, a zero
X = np.array([1e-40, -1e-40, 3e-39, -(2.0 ** -149), 1.0, 0.0, -2.5, 1e-30], np.float32)


def both(f, *args, tt, cpu):
    got = np.asarray(jax.jit(f)(*(jax.device_put(a, tt) for a in args)))
    want = np.asarray(jax.jit(f)(*(jax.device_put(a, cpu) for a in args)))
    return got, want


def test_exp_underflow_is_zero_as_on_cpu(tt, cpu):
    """exp(-100) = 3.7e-44 is a denormal: the card flushes it (it gave 3.8e-44 before)."""
    x = np.array([-88.0, -90.0, -95.0, -100.0, -103.0], np.float32)
    got, want = both(jnp.exp, x, tt=tt, cpu=cpu)
    assert (want == 0).all() and not np.signbit(want).any()
    assert_close(got, want, exact=True)


@pytest.mark.parametrize("name,f", [
    ("double", lambda x: x * 2),
    ("halve", lambda x: x * np.float32(0.5)),
    ("add_self", lambda x: x + x),
    ("sub_tiny", lambda x: x - np.float32(1e-39)),
    ("underflowing_product", lambda x: x * np.float32(1e-10)),
    ("relu", lambda x: jnp.maximum(x, 0)),
    ("greater_than_zero", lambda x: (x > 0).astype(jnp.float32)),
    ("equal_to_zero", lambda x: x == 0),
    ("sqrt_abs", lambda x: jnp.sqrt(jnp.abs(x))),
    ("reciprocal", lambda x: 1 / x),
    ("log_abs", lambda x: jnp.log(jnp.abs(x))),
    ("sum", lambda x: jnp.sum(x[:4])),
    ("max", lambda x: jnp.max(jnp.abs(x[:4]))),   # (of positives: no +0 / -0 tie to break)
    ("matmul", lambda x: x[None, :4] @ jnp.ones((4, 3), jnp.float32)),
])
def test_float32_arithmetic_reads_denormals_as_zero(tt, cpu, name, f):
    got, want = both(f, X, tt=tt, cpu=cpu)
    assert_close(got, want, exact=True, what=name)


@pytest.mark.parametrize("name,f", [
    ("double", lambda x: x * 2),
    ("greater_than_zero", lambda x: x > 0),
    ("sum", lambda x: jnp.sum(x[:4].astype(jnp.float32))),
    ("exp_underflow", lambda x: jnp.exp(x - 100)),
])
def test_bfloat16_arithmetic_reads_and_makes_no_denormals(tt, cpu, name, f):
    x = X.astype(ml_dtypes.bfloat16)
    assert np.count_nonzero((np.abs(x.astype(np.float32)) < TINY) & (x != 0)) == 3   # bf16 denormals (2**-149 rounds to -0)
    got, want = both(f, x, tt=tt, cpu=cpu)
    assert_close(got, want, exact=True, what=name)


@pytest.mark.parametrize("name,f", [
    ("identity", lambda x: x),
    ("reshape", lambda x: x.reshape(2, 4)),
    ("transpose", lambda x: x.reshape(2, 4).T),
    ("select", lambda x: jnp.where(x > 0.5, 7.0, x)),
    ("neg", lambda x: -x),
    ("abs", jnp.abs),
    ("to_bfloat16", lambda x: x.astype(jnp.bfloat16)),
])
def test_values_only_moved_keep_their_denormals(tt, cpu, name, f):
    got, want = both(f, X, tt=tt, cpu=cpu)
    assert np.count_nonzero((np.abs(want.astype(np.float32)) < TINY) & (want != 0)) >= 1, want
    assert_close(got, want, exact=True, what=name)


def _around(c: float, n: int = 64) -> np.ndarray:
    """The 2n float32 nearest to `c` (n below, n from it upwards)."""
    bits = np.array([c], np.float32).view(np.int32)[0]
    return (bits + np.arange(-n, n, dtype=np.int32)).view(np.float32)


_SCALARS = [2.0 ** -110, 2.0 ** -102, -(2.0 ** -102), 1.5 * 2.0 ** -102, 1.0]


@pytest.mark.parametrize("op,s", [(op, s) for op in ("add", "subtract", "multiply") for s in _SCALARS]
                         + [("multiply", 0.0)])
def test_scalar_ops_cancelling_into_the_denormal_range(tt, cpu, op, s):
    """x + s, x - s and x * s on values around -s (+ s, 1 / s): the sim looks for denormals in
    the result only where the scalar lets the op make one (|s| < 2**-102 for +-, |s| < 1 for *;
    targets/sim/ops.py _no_new_denormals); elsewhere the exact result is 0 or normal. Both
    paths must agree with XLA:CPU (FTZ) bit for bit; s = 2**-110 makes denormals that must go.
    (x +- 0 has no reference here: XLA:CPU folds it to x, keeping -0.0 where an adder gives +0.0.)"""
    c = {"add": -s, "subtract": s, "multiply": 1.0 / s if s else 1.0}[op]
    x = _around(c)
    fn = {"add": lambda v: v + np.float32(s), "subtract": lambda v: v - np.float32(s),
          "multiply": lambda v: v * np.float32(s)}[op]
    got, want = both(fn, x, tt=tt, cpu=cpu)
    if op != "multiply" and s == 2.0 ** -110:   # the near-cancelling sums are denormals, flushed
        exact = x.astype(np.float64) + (s if op == "add" else -s)
        assert np.count_nonzero((np.abs(exact) < TINY) & (exact != 0)) > 0
    assert_close(got, want, exact=True, what=f"{op} {s!r}")
