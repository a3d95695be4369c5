"""float8 (issue 12): e4m3fn and e5m2, and the other flavours ml_dtypes knows (e4m3fnuz,
e5m2fnuz, e4m3b11fnuz, e4m3, e3m4, and e8m0fnu: the MX scales of jax.nn.scaled_matmul), carried as float32 on the chip (dtypes.py) and rounded
into float8 on the float32 bit pattern after every op that computes one (ingest/widen.py).

Against XLA:CPU, bit for bit: converts from float32 / bfloat16 / float16 over every float16
and bfloat16 bit pattern (ties, subnormals, overflow, inf, NaN, -0.0), converts out of every
float8 pattern, arithmetic, transfers; float8 dots accumulating in float32 within PCC and a
relative-error bound.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from conftest import assert_close, run_both

NAMES = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e4m3b11fnuz",
         "float8_e4m3", "float8_e3m4", "float8_e8m0fnu"]
FLOAT8 = [pytest.param(n, marks=pytest.mark.skipif(not hasattr(jnp, n), reason=f"jax {jax.__version__} has no {n}"))
          for n in NAMES]
ALL_F16 = np.arange(65536, dtype=np.uint16).view(np.float16)
ALL_BF16 = np.arange(65536, dtype=np.uint16).view(ml_dtypes.bfloat16)
# float32 edges: f8 ties and one ulp either side of them, f32 denormals, beyond every range
_EDGE = [0.0, -0.0, 448.0, 464.0, 464.00003, 480.0, 57344.0, 61440.0, 61439.996, 240.0, 248.0, 15.5,
         15.75, 30.0, 31.0, 1e30, 3.4e38, 1e-40, -1e-40, 2.0 ** -9, 2.0 ** -10, 2.0 ** -10 * (1 + 2 ** -23),
         3 * 2.0 ** -11, 2.0 ** -17, 2.0 ** -17 * (1 + 2 ** -23), 0.1, np.inf, -np.inf, np.nan, -np.nan]
EDGE = np.array(_EDGE + [-v for v in _EDGE], np.float32)


# jax 0.7.1's XLA:CPU converts float32 -> e4m3fn / e5m2 through float16 (rounding twice:
# 61439.996 -> 61440 -> inf) and float8 -> float8 underflows to +0 whatever the sign; there
# the reference is ml_dtypes' single rounding (what jax 0.12's XLA:CPU gives)
OLD_XLA = tuple(int(p) for p in jax.__version__.split(".")[:2]) < (0, 8)


def bits(a) -> np.ndarray:
    a = np.asarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[a.itemsize])


def assert_bits(got, want, what: str, known=None):
    """Bit patterns equal; `known`: a mask of elements allowed to differ (checked both NaN)."""
    g, w = bits(got), bits(want)
    assert got.dtype == want.dtype, what
    bad = g != w
    if known is not None:
        assert (np.isnan(np.asarray(got, np.float32)) == np.isnan(np.asarray(want, np.float32))).all(), what
        bad &= ~known
    i = np.nonzero(bad.ravel())[0]
    assert not len(i), f"{what}: {len(i)} differ, first at {i[0]}: {hex(g.ravel()[i[0]])} vs {hex(w.ravel()[i[0]])}"


@pytest.mark.parametrize("name", FLOAT8)
@pytest.mark.parametrize("source", ["f16", "bf16", "f32", "f32 edges"])
def test_convert_into_float8_bit_exact(name, source, tt, cpu):
    x = {"f16": ALL_F16, "bf16": ALL_BF16, "f32": ALL_F16.astype(np.float32), "f32 edges": EDGE}[source]
    dt = getattr(jnp, name)
    got, want = run_both(lambda a: (a.astype(dt), a.astype(dt).astype(jnp.float32)), x, tt_device=tt, cpu_device=cpu)
    # NaN stays NaN, but its sign and payload bits may differ (XLA:CPU keeps payload bits a
    # float32 carrier and ml_dtypes' download do not): docs/numerics.md
    known = np.isnan(x.astype(np.float32))
    if OLD_XLA and source == "f32 edges":
        want = [x.astype(dt), x.astype(dt).astype(np.float32)]
        known = known | np.isnan(want[1])   # (ml_dtypes reads the fnuz NaN as -NaN)
    assert_bits(got[0], want[0], f"{source} -> {name}", known)
    assert_bits(got[1], want[1], f"{source} -> {name} -> f32", known)


@pytest.mark.parametrize("name", FLOAT8)
def test_convert_out_of_float8_and_transfers(name, tt, cpu):
    dt = getattr(jnp, name)
    x = np.arange(256, dtype=np.uint8).view(dt)
    y = jax.device_put(x, tt)
    assert y.dtype == x.dtype
    nan = np.isnan(x.astype(np.float32))   # (NaN payloads: see above)
    assert_bits(np.asarray(y), x, f"{name} round trip", nan)
    assert_bits(np.asarray(jax.jit(lambda a: a)(y)), x, f"{name} through a program", nan)
    outs = (jnp.float32, jnp.bfloat16, jnp.float16, jnp.int32, *(getattr(jnp, n) for n in NAMES if hasattr(jnp, n)))
    got, want = run_both(lambda a: tuple(a.astype(o) for o in outs), x, tt_device=tt, cpu_device=cpu)
    for o, g, w in zip(outs, got, want):
        o = np.dtype(o)
        if o.kind == "i":   # (NaN -> int: XLA's value is unspecified)
            assert_bits(g[~nan], w[~nan], f"{name} -> {o.name}")
        elif OLD_XLA and o.itemsize == 1:
            assert_bits(g, w, f"{name} -> {o.name}", nan | ((g.astype(np.float32) == 0) & (w.astype(np.float32) == 0)))
        else:
            assert_bits(g, w, f"{name} -> {o.name}", nan)


def test_float16_subnormals_kept(tt, cpu):
    """float16 rounds at converts with the same rounding, keeping float16's subnormals as
    XLA:CPU's convert does (reduce_precision (5, 10) flushed them to 0)."""
    x = np.array([1e-6, -3e-7, 6e-5, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 65520.0, 1.0], np.float32)
    got, want = run_both(lambda a: (a.astype(jnp.float16), (a * 3).astype(jnp.float16).astype(jnp.float32)),
                         x, tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        assert_bits(g, w, "float32 -> float16")


ARITH = {
    "add": lambda a, b: a + b,
    "multiply": lambda a, b: a * b,
    "divide": lambda a, b: a / b,
    "chain": lambda a, b: (a * b + a) - b,
    "max / where / neg": lambda a, b: jnp.where(a > b, -a, jnp.maximum(a, b)),
}


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2"])
@pytest.mark.parametrize("case", list(ARITH))
def test_arithmetic_bit_exact(name, case, tt, cpu):
    """Every finite value against every other (XLA:CPU rounds each op's result to float8)."""
    dt = getattr(jnp, name)
    v = np.arange(256, dtype=np.uint8).view(dt)
    v = v[np.isfinite(v.astype(np.float32))]
    a, b = np.meshgrid(v, v)
    got, want = run_both(ARITH[case], a, b, tt_device=tt, cpu_device=cpu)
    known = np.isnan(want[0].astype(np.float32))
    if case == "max / where / neg":   # -(+0.0) is -0.0 here, +0.0 on XLA:CPU (values equal)
        known |= (want[0].astype(np.float32) == 0) & (got[0].astype(np.float32) == 0)
    assert_bits(got[0], want[0], f"{name} {case}", known)


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2"])
def test_transcendental_within_an_ulp(name, tt, cpu):
    """exp runs in the chip's float32 exp (not correctly rounded), then rounds to float8:
    within one float8 ulp of XLA:CPU."""
    dt = getattr(jnp, name)
    v = np.arange(256, dtype=np.uint8).view(dt)
    v = v[np.isfinite(v.astype(np.float32)) & (np.abs(v.astype(np.float32)) < 4)]
    got, want = run_both(jnp.exp, v, tt_device=tt, cpu_device=cpu)
    ulp = 2.0 ** -ml_dtypes.finfo(dt).nmant
    assert_close(got[0].astype(np.float32), want[0].astype(np.float32), pcc=0.99, rtol=ulp, atol=0.0,
                 what=f"{name} exp")


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2"])
def test_mixed_precision_dots(name, tt, cpu):
    dt = getattr(jnp, name)
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((64, 96)) * 2).astype(dt)
    b = (rng.standard_normal((96, 48)) * 0.5).astype(dt)
    fs = (lambda x, y: jax.lax.dot_general(x, y, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32),
          lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32),
          lambda x, y: jnp.dot(x.astype(jnp.float32), y.astype(jnp.float32)))
    for i, f in enumerate(fs):
        got, want = run_both(f, a, b, tt_device=tt, cpu_device=cpu)
        assert got[0].dtype == np.float32
        # the float8 products are exact in float32; the sums go through the matrix unit
        assert_close(got[0], want[0], kind="matmul", pcc=0.99, rel=2 ** -8, what=f"{name} dot {i}")


@pytest.mark.skipif(not hasattr(jnp, "float8_e8m0fnu"), reason=f"jax {jax.__version__} has no float8_e8m0fnu")
def test_e8m0_scales_bitcast_and_mx_scaled_matmul(tt, cpu):
    """E8M0 (2^(e - 127), no sign, no zero, 0xff NaN) from and to its bits, every pattern,
    bit for bit; and jax.nn.scaled_matmul with mxfp8 blocks (e4m3fn values, E8M0 scales
    made by a bitcast of uint8) against XLA:CPU: every product is exact in float32, the
    sums go through the matrix unit."""
    e8 = jnp.float8_e8m0fnu
    u = np.arange(256, dtype=np.uint8)
    got, want = run_both(lambda b: (jax.lax.bitcast_convert_type(b, e8),
                                    jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(b, e8), jnp.uint8),
                                    jax.lax.bitcast_convert_type(b, e8).astype(jnp.float32),
                                    jax.lax.bitcast_convert_type(-jax.lax.bitcast_convert_type(b, e8), jnp.uint8)),
                         u, tt_device=tt, cpu_device=cpu)
    for k, (g, w) in enumerate(zip(got, want)):
        assert_bits(g, w, f"e8m0 bitcast {k}")
    if OLD_XLA:   # jax 0.7.1 lowers scaled_matmul for CUDA only (XLA:CPU refuses it too)
        return
    from jax._src.cudnn.scaled_matmul_stablehlo import quantize
    config = jax.nn.get_scaled_dot_general_config("mxfp8")
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, (2, 64, 96)).astype(np.float32), rng.uniform(-1, 1, (2, 48, 96)).astype(np.float32)

    def mx(a, b):
        (aq, asc), (bq, bsc) = quantize(a, config), quantize(b, config)
        return jax.nn.scaled_matmul(aq, bq, asc, bsc, preferred_element_type=jnp.float32), asc
    got, want = run_both(mx, a, b, tt_device=tt, cpu_device=cpu)
    assert got[1].dtype == e8
    assert_bits(got[1], want[1], "mxfp8 scales")
    assert_close(got[0], want[0], kind="matmul", pcc=0.999, rel=2 ** -10, what="mxfp8 scaled_matmul")
