"""complex64 (issue 12): carried as (re, im) pairs of float32 values (ingest/complex64.py),
[2, *dims] float32 on the device; the framework keeps seeing complex64.

Against XLA:CPU: transfers exact; elementwise arithmetic within the float32 bounds; dots
with the chip's float32 matmul bound (TF32 operands, docs/numerics.md); ops not written in
real ops refused naming the op and source line. Complex values are compared as their
real and imaginary planes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_close, run_both

RNG = np.random.default_rng(0)


def _c(*shape):
    return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(np.complex64)


Z, W = _c(4, 8), _c(4, 8)


def planes(z):
    z = np.asarray(z)
    return np.stack([z.real, z.imag]) if z.dtype.kind == "c" else z


def check(got, want, **kw):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, w.dtype, g.shape, w.shape)
        assert_close(planes(g), planes(w), **kw)


def test_transfers_round_trip_exactly(tt):
    special = np.array([0, -0.0 + 1j, np.inf - 2j, complex(np.nan, 3), 1e-40 + 1e38j], np.complex64)
    for x in (Z, special, np.complex64(2 - 3j), np.zeros((0, 3), np.complex64), Z.T):   # Z.T: strided
        y = jax.device_put(x, tt)
        assert y.dtype == np.complex64 and y.shape == np.shape(x)
        assert_close(planes(np.asarray(y)), planes(np.asarray(x)), exact=True)
        out = jax.jit(lambda a: a)(y)   # an argument returned as it is
        assert_close(planes(np.asarray(out)), planes(np.asarray(x)), exact=True)


CASES = {
    "add sub neg": lambda a, b: (a + b, a - b, -a),
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "abs": lambda a, b: jnp.abs(a),
    "exp": lambda a, b: jnp.exp(a),
    "log": lambda a, b: jnp.log(a),
    "sqrt": lambda a, b: jnp.sqrt(a),
    "sign": lambda a, b: jnp.sign(a),
    "real imag": lambda a, b: (jnp.real(a), jnp.imag(b)),
    "complex": lambda a, b: jax.lax.complex(jnp.real(a), jnp.imag(b)),
    "conj": lambda a, b: jnp.conj(a),
    "angle": lambda a, b: jnp.angle(a),
    "eq ne": lambda a, b: (a == b, a != a.conj(), a == a),
    "where": lambda a, b: jnp.where(jnp.real(a) > 0, a, b),
    "f32 -> complex -> f32": lambda a, b: (jnp.real(a).astype(jnp.complex64) * b,
                                            jax.lax.convert_element_type(a, jnp.float32)),
    "scalar constant": lambda a, b: a * (1 + 2j) - 3j,
    "array constant (hex)": lambda a, b: a * jnp.asarray(np.arange(32).reshape(4, 8) * (1 - 0.5j), jnp.complex64),
    "rotary exp(1j*theta)": lambda a, b: jnp.exp(1j * jnp.real(b)) * a,
    "sin (jax writes it in real ops)": lambda a, b: jnp.sin(a),
    "sum": lambda a, b: (a.sum(), a.sum(axis=0), jnp.mean(b, axis=1)),
    "rsqrt": lambda a, b: jax.lax.rsqrt(a),
    # jax emits these as composites: their decompositions are inlined and written in real ops
    "arccos arcsin": lambda a, b: (jnp.arccos(a * 0.7), jnp.arcsin(b * 0.7)),
    "arcsinh arctanh": lambda a, b: (jnp.arcsinh(a), jnp.arctanh(b * 0.7)),
    "cosh sinh": lambda a, b: (jnp.cosh(a), jnp.sinh(b)),
    "arccosh (a composite holding a call)": lambda a, b: jnp.arccosh(a),
    "tan tanh": lambda a, b: (jnp.tan(a), jnp.tanh(b)),
    "tanh far from 0 (sech from e^-|a|)": lambda a, b: jnp.tanh(a * 30) + jnp.tan(b * 30),
    "expm1 (near 0 too)": lambda a, b: (jnp.expm1(a), jnp.expm1(b * 1e-4)),
    "power": lambda a, b: (a ** b, jax.lax.pow(a[0] * 0, jnp.asarray([0, 1, 2.5, -1, 1j, 1 + 1j, 0, 3], jnp.complex64))),
    "iota": lambda a, b: a + jax.lax.broadcasted_iota(jnp.complex64, a.shape, 1),
    "prod (halves multiplied)": lambda a, b: (jnp.prod(a), jnp.prod(b, axis=1), jnp.prod(b[:, :7], axis=1),
                                              jnp.prod(b[:, :0], axis=1)),
    "cumsum": lambda a, b: jnp.cumsum(a, axis=1),
}


@pytest.mark.parametrize("name", CASES)
def test_elementwise_and_reductions_match_cpu(tt, cpu, name):
    got, want = run_both(CASES[name], Z, W, tt_device=tt, cpu_device=cpu)
    check(got, want, what=name)


MOVES = {
    "reshape transpose": lambda a: (a.reshape(2, 16), a.T),
    "broadcast": lambda a: jnp.broadcast_to(a[:, None, :], (4, 3, 8)),
    "slice reverse": lambda a: (a[1:3, ::2], a[::-1]),
    "concatenate pad": lambda a: (jnp.concatenate([a, a.conj()], 1), jnp.pad(a, 1)),
    "dynamic slice / update": lambda a: (jax.lax.dynamic_slice(a, (jnp.int32(1), jnp.int32(2)), (2, 3)),
                                         jax.lax.dynamic_update_slice(a, a[:2, :2] * 2, (jnp.int32(1), jnp.int32(3)))),
    "gather": lambda a: a[jnp.array([3, 0, 2])],
    # scatters that overwrite or add: one per plane, the indices shared
    "scatter set": lambda a: a.at[1, 2].set(5 - 1j),
    "scatter add, repeated index": lambda a: a.at[jnp.array([0, 0, 2])].add(a[1]),
    "insert": lambda a: jnp.insert(a, 1, 7 + 2j, axis=1),
    "real rows into complex": lambda a: a.at[0].set(jnp.ones(8)),
}


@pytest.mark.parametrize("name", MOVES)
def test_data_movement_is_exact(tt, cpu, name):
    got, want = run_both(MOVES[name], Z, tt_device=tt, cpu_device=cpu)
    check(got, want, exact=True, what=name)


def test_exp_on_the_real_axis_has_no_nan(tt, cpu):
    """exp / expm1 of a + 0i where e^a overflows: imaginary part 0, as XLA:CPU (inf * sin 0
    was NaN; JAX's FunctionAccuracyTest over the complex plane found it)."""
    z = np.array([1e23, 3.4e38, 88.0, 100.0, -1e30, 0.0, complex(5, -0.0), 1 + 2j, complex(200, 1e-3)], np.complex64)
    got, want = run_both(lambda z: (jnp.exp(z), jnp.expm1(z)), z, tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g.imag), np.isnan(w.imag))
        np.testing.assert_array_equal(np.signbit(g.imag), np.signbit(w.imag))
        finite = np.isfinite(w)
        assert_close(planes(g[finite]), planes(w[finite]), what="exp / expm1 near the real axis")


def test_matmul_and_batched_dot_general(tt, cpu):
    a, b, x, y = _c(32, 64), _c(64, 48), _c(3, 16, 64), _c(3, 64, 8)
    got, want = run_both(lambda a, b, x, y: (a @ b, jnp.einsum("bij,bjk->bik", x, y),
                                             jnp.einsum("ij,bjk->bki", a[:16], y)),
                         a, b, x, y, tt_device=tt, cpu_device=cpu)
    check(got, want, kind="matmul")   # PCC >= 0.999 and 2**-7 relative (the float32 matmul bound)


def test_grad_through_a_complex_intermediate(tt, cpu):
    x = RNG.standard_normal((4, 8)).astype(np.float32)
    theta = RNG.standard_normal((4, 8)).astype(np.float32)

    def loss(x, theta):
        z = x * jnp.exp(1j * theta)
        return jnp.sum(jnp.abs(z * (0.5 + 1j)) ** 2 + jnp.real(z))
    got, want = run_both(jax.value_and_grad(loss, argnums=(0, 1)), x, theta, tt_device=tt, cpu_device=cpu)
    check(got, want, what="value and grad")


def test_sorts_by_real_then_imaginary_part(tt, cpu):
    """Complex keys sort as jax orders them (by real part, then imaginary: a two-key sort
    over the planes), also with float payloads, descending and along an axis; equal real
    parts and a signed zero exercise the tie-break."""
    z = _c(5, 12)
    z.real[:, ::3] = np.round(z.real[:, ::3])   # ties in the real part
    z[0, 1], z[0, 2] = complex(-0.0, 1.0), complex(0.0, -1.0)
    v = RNG.standard_normal((5, 12)).astype(np.float32)
    got, want = run_both(lambda z, v: (jnp.sort(z, axis=1), jnp.sort(z, axis=0), jax.lax.sort_key_val(z, v),
                                       jnp.argsort(z.ravel(), stable=True), jnp.sort(z.ravel(), descending=True)),
                         z, v, tt_device=tt, cpu_device=cpu)
    check(got, want, exact=True, what="complex sort")


REFUSED = {
    "stablehlo.reduce_window": lambda a: jnp.cumprod(a, axis=1),
    "stablehlo.while": lambda a: jax.lax.fori_loop(0, 3, lambda i, v: v * v, a),
    "stablehlo.scatter": lambda a: a.at[0].multiply(2j),
}


@pytest.mark.parametrize("op", REFUSED)
def test_unlowered_complex_ops_are_refused_naming_the_op(tt, op):
    with pytest.raises(Exception) as e:
        jax.jit(REFUSED[op])(jax.device_put(Z, tt))
    msg = str(e.value)
    assert "UNIMPLEMENTED" in msg and f"`{op}`" in msg and "test_complex.py" in msg, msg
