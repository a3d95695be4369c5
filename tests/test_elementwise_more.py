"""More elementwise math, integer semantics, bit ops and conversions on TT against XLA:CPU.

Integers, booleans and bit patterns must match exactly; floats use the project thresholds.
Edge values on purpose: negative zero, rounding ties, the int32 / uint32 extremes, NaN / inf
for conversions, shift amounts outside [0, 32).
"""
from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import ml_dtypes
import numpy as np
import pytest

from conftest import assert_close, run_both

RNG = np.random.default_rng(1)
BF16 = ml_dtypes.bfloat16
I32_EDGES = np.array([0, 1, -1, 7, -7, 2**31 - 1, -2**31, 123456789, -987654321], np.int64)
U32_EDGES = np.array([0, 1, 7, 2**31 - 1, 2**31, 2**32 - 1, 0x80000001, 3000000000], np.uint64)


def check(tt, cpu, f, *args, exact=False):
    """exact=True: results that are exact functions of their inputs (rounding to an integer,
    sign, bit casts, representable conversions): bit patterns, -0.0 included, must match."""
    got, want = run_both(f, *args, tt_device=tt, cpu_device=cpu)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w, exact=exact)


def rand(shape, dtype=np.float32, low=-3.0, high=3.0):
    return RNG.uniform(low, high, shape).astype(dtype)


def ints(shape, dtype, edges=None):
    info = np.iinfo(dtype)
    x = RNG.integers(info.min, int(info.max) + 1, shape, dtype=np.int64)
    if edges is not None:
        flat = x.reshape(-1)
        flat[:len(edges)] = edges[:flat.size]
    return x.astype(dtype)


# ---------------------------------------------------------------------------------------------
# float math
# ---------------------------------------------------------------------------------------------

FLOAT_UNARY = {
    "expm1": (jnp.expm1, -2, 2), "log1p": (jnp.log1p, -0.5, 3), "cbrt": (jnp.cbrt, -8, 8),
    "sin": (jnp.sin, -3, 3), "cos": (jnp.cos, -3, 3), "tan": (jnp.tan, -1.2, 1.2),
    "erf": (jsp.erf, -2, 2), "erfinv": (jsp.erfinv, -0.95, 0.95), "floor": (jnp.floor, -5, 5),
    "ceil": (jnp.ceil, -5, 5), "sign": (jnp.sign, -2, 2),
}


@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", FLOAT_UNARY)
def test_float_unary(tt, cpu, name, dtype):
    fn, lo, hi = FLOAT_UNARY[name]
    check(tt, cpu, fn, rand((7, 33), dtype, lo, hi), exact=name in ("floor", "ceil", "sign"))


def test_float_binary_and_clamp(tt, cpu):
    a, b = rand((5, 37)), rand((5, 37))
    b[0, :3] = [-0.0, 0.0, 1e-3]
    row = rand((37,), low=0.5, high=2)
    check(tt, cpu, lambda a, b, r: (
        jnp.arctan2(a, b), jnp.fmod(a, r), jnp.fmod(-a, r[None, :] + 0 * a), jnp.clip(a, -1.0, 0.5),
        jax.lax.clamp(jnp.float32(-0.5), a, jnp.float32(2.0)), jax.nn.relu6(a * 4),
        jnp.power(jnp.abs(a) + 0.1, 3.0)), a, b, row)


def test_rounding_ties_and_negative_zero(tt, cpu):
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, -0.49999997, -0.0, 0.0, 3.7, -3.7,
                  2**23 + 1.0, -(2**23) - 1, 1e30, -1e30, 7.5, 8.5], np.float32)
    check(tt, cpu, lambda x: (jnp.round(x), jax.lax.round(x, jax.lax.RoundingMethod.AWAY_FROM_ZERO),
                              jnp.floor(x), jnp.ceil(x), jnp.trunc(x), jnp.sign(x)), x, exact=True)
    xb = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 3.5, -0.0, 100.5], BF16)
    check(tt, cpu, lambda x: (jnp.round(x), jax.lax.round(x, jax.lax.RoundingMethod.AWAY_FROM_ZERO)), xb, exact=True)


def test_is_finite(tt, cpu):
    x = np.array([[1.0, np.inf, -np.inf, np.nan, -0.0, 3e38]], np.float32)
    check(tt, cpu, lambda x: (jnp.isfinite(x), jnp.isfinite(x.astype(jnp.bfloat16))), x)


# ---------------------------------------------------------------------------------------------
# integer arithmetic
# ---------------------------------------------------------------------------------------------

def test_int32_arithmetic(tt, cpu):
    a = ints((6, 35), np.int32, I32_EDGES)
    b = ints((6, 35), np.int32, I32_EDGES[::-1])
    small = RNG.integers(-50, 50, (6, 35)).astype(np.int32)
    small[0, :3] = [0, -1, 1]
    check(tt, cpu, lambda a, b, s: (
        a + b, a - b, a * s, -a, jnp.abs(small), jnp.sign(a), jnp.maximum(a, b), jnp.minimum(a, b),
        jax.lax.div(a, s), jax.lax.rem(a, s), a // 7, a % 7, jnp.clip(a, -1000, 1000)), a, b, small)


def test_uint32_arithmetic_and_compare(tt, cpu):
    a = ints((4, 40), np.uint32, U32_EDGES)
    b = ints((4, 40), np.uint32, U32_EDGES[::-1])
    s = RNG.integers(0, 100, (4, 40)).astype(np.uint32)
    s[0, :2] = [0, 1]
    check(tt, cpu, lambda a, b, s: (
        a + b, a - b, a * b, -a, jnp.maximum(a, b), jnp.minimum(a, b), jax.lax.rem(a, s),
        a < b, a >= b, a == b, jnp.sign(a), jnp.abs(a), jax.lax.div(a, s), jax.lax.div(a, b), a // 8, a // 7,
        a // jnp.uint32(3000000000)), a, b, s)


def test_narrow_unsigned_arithmetic(tt, cpu):
    for dt in (np.uint8, np.uint16):
        a, b = ints((3, 33), dt), ints((3, 33), dt)
        s = RNG.integers(0, 9, (3, 33)).astype(dt)
        check(tt, cpu, lambda a, b, s: (
            a + b, a - b, a * b, -a, jnp.maximum(a, b), jax.lax.div(a, s), jax.lax.rem(a, s),
            a & b, a | b, a ^ b, ~a, a << (s & 7), a >> (s & 7)), a, b, s)


def test_integer_power_with_scalar_exponent(tt, cpu):
    a = RNG.integers(-20, 20, (5, 9)).astype(np.int32)
    check(tt, cpu, lambda a: (a ** 3, jax.lax.integer_pow(a, 2)), a)


# ---------------------------------------------------------------------------------------------
# bits
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int32, np.uint32], ids=["i32", "u32"])
def test_bitwise(tt, cpu, dtype):
    edges = I32_EDGES if dtype == np.int32 else U32_EDGES
    a, b = ints((5, 37), dtype, edges), ints((5, 37), dtype, edges[::-1])
    c = dtype(0x9E3779B9 if dtype == np.uint32 else -0x61C88647)
    check(tt, cpu, lambda a, b: (a & b, a | b, a ^ b, ~a, a ^ c, a & c, a | 0x0F0F,
                                 jax.lax.population_count(a), jax.lax.clz(a)), a, b)


@pytest.mark.parametrize("dtype", [np.int32, np.uint32], ids=["i32", "u32"])
def test_shifts(tt, cpu, dtype):
    edges = I32_EDGES if dtype == np.int32 else U32_EDGES
    x = ints((4, 36), dtype, edges)
    s = RNG.integers(0, 32, (4, 36)).astype(dtype)
    s[0, :6] = [0, 31, 32, 33, 40, 255] if dtype == np.uint32 else [0, 31, 32, 33, -1, -40]
    sl, srl, sra = jax.lax.shift_left, jax.lax.shift_right_logical, jax.lax.shift_right_arithmetic
    check(tt, cpu, lambda x, s: (sl(x, s), srl(x, s), sra(x, s), sl(x, dtype(3)), srl(x, dtype(9)),
                                 sra(x, dtype(5)), sl(x, dtype(32)), srl(x, dtype(32)), sra(x, dtype(40)),
                                 (x << 13) | srl(x, dtype(19))), x, s)


def test_bitcast_convert(tt, cpu):
    f = np.array([[1.0, -0.0, 0.0, np.inf, -2.5, 3.1415927, 1e-30, -7e20]], np.float32)
    u = ints((3, 33), np.uint32, U32_EDGES)
    i = ints((3, 33), np.int32, I32_EDGES)
    bc = jax.lax.bitcast_convert_type
    check(tt, cpu, lambda f, u, i: (bc(f, jnp.uint32), bc(f, jnp.int32), bc(u, jnp.int32), bc(i, jnp.uint32),
                                    bc(i, jnp.float32), bc(u >> 9 | 0x3F800000, jnp.float32)), f, u, i, exact=True)
    b = np.array([[1.0, -2.0, 0.5, -0.0, 3.0e38]], BF16)
    check(tt, cpu, lambda b: bc(bc(b, jnp.uint16) ^ jnp.uint16(0x8000), jnp.bfloat16), b, exact=True)


def test_bitcast_convert_between_widths(tt, cpu):
    """Bytes and halves taken apart and put together (little-endian, as XLA): f32 <-> 4 x u8 /
    2 x bf16 / 2 x i16, u32 -> 2 x u16, i8 x 4 -> i32, bf16 <-> i16 (int16 is carried as int32)."""
    f = np.array([[1.0, -0.0, np.inf, -2.5, 3.1415927, 1e-30, -7e20, np.nan]], np.float32)
    u = ints((3, 33), np.uint32, U32_EDGES)
    i8 = np.random.default_rng(1).integers(-128, 128, (5, 4)).astype(np.int8)
    b = np.array([[1.0, -2.0, 0.5, -0.0, 3.0e38, 1e-20]], BF16)
    bc = jax.lax.bitcast_convert_type
    check(tt, cpu, lambda f, u, i8, b: (bc(f, jnp.uint8), bc(f, jnp.bfloat16), bc(f, jnp.int16),
                                        bc(bc(f, jnp.uint8), jnp.float32), bc(u, jnp.uint16), bc(i8, jnp.int32),
                                        bc(b, jnp.int16), bc(bc(b, jnp.int16), jnp.bfloat16),
                                        bc(b.reshape(3, 2), jnp.float32)), f, u, i8, b, exact=True)


# ---------------------------------------------------------------------------------------------
# convert
# ---------------------------------------------------------------------------------------------

FLOAT_EDGES = np.array([0.0, -0.0, 0.7, -0.7, 1.5, -1.5, 255.9, 256.0, -1.0, 65535.5, 70000.0, 2.0**31,
                        -2.0**31, 3e9, -3e9, 4294967040.0, 5e9, np.nan, np.inf, -np.inf, 123.456], np.float32)


@pytest.mark.parametrize("src", [np.float32, BF16], ids=["f32", "bf16"])
@pytest.mark.parametrize("dst", [np.int32, np.uint32, np.uint16, np.uint8], ids=["i32", "u32", "u16", "u8"])
def test_float_to_int_saturates_like_xla(tt, cpu, src, dst):
    check(tt, cpu, lambda x: x.astype(dst), FLOAT_EDGES.astype(src))


@pytest.mark.parametrize("pair", [(np.int32, np.uint32), (np.uint32, np.int32), (np.int32, np.uint8),
                                  (np.uint32, np.uint16), (np.uint16, np.uint8), (np.uint8, np.int32),
                                  (np.uint16, np.uint32), (np.int32, np.float32), (np.uint8, np.float32),
                                  (np.uint16, BF16), (np.int32, np.bool_), (np.uint8, np.bool_)], ids=str)
def test_int_conversions_wrap_like_xla(tt, cpu, pair):
    src, dst = pair
    edges = I32_EDGES if src == np.int32 else U32_EDGES if src == np.uint32 else None
    x = ints((3, 34), src, None if edges is None else edges)
    if dst in (np.float32, BF16) and src in (np.int32, np.uint32):
        x = (x % 2**20).astype(src)  # exactly representable: the comparison is exact
    check(tt, cpu, lambda x: x.astype(dst), x, exact=True)


def test_constant_folded_conversions(tt, cpu):
    check(tt, cpu, lambda x: (x + jnp.float32(3e9).astype(jnp.int32),
                              x + jnp.int32(-1).astype(jnp.uint32).astype(jnp.int32),
                              x * jnp.float32(-2.7).astype(jnp.int32)), np.arange(5, dtype=np.int32))


# ---------------------------------------------------------------------------------------------
# refused with a clear error
# ---------------------------------------------------------------------------------------------

def test_dce_sink_changes_nothing(tt, cpu):
    """jax 0.12's lax.dce_sink(prevent_mlir_dce=True) sends a custom_call @dce_sink, which has
    no results; 0.7.1's emits nothing."""
    if "prevent_mlir_dce" not in inspect.signature(jax.lax.dce_sink).parameters:
        pytest.skip(f"jax {jax.__version__}'s dce_sink emits no custom_call")

    def f(x):
        jax.lax.dce_sink(x + 1, prevent_mlir_dce=True)
        return x * 2
    check(tt, cpu, f, np.arange(4, dtype=np.float32), exact=True)


def test_unsupported_is_explicit(tt):
    with pytest.raises(Exception, match=r"`stablehlo.fft` at .*test_elementwise_more.py:\d+"):
        jax.jit(jnp.fft.fft)(jax.device_put(np.ones(8, np.float32), tt))
