"""float16, int8, int16, int4 and uint4 (issue 12): the chip has none of them, so they are carried as
float32 / int32 on the device and keep their own type at the framework boundary (dtypes.py,
ingest/widen.py through narrow64's rewrite, docs/numerics.md).

Against XLA:CPU: integers exactly, two's complement wrap-around and float -> int saturation
included; float16 within the documented bound (computed in float32, rounded to float16 once
when read back); bitcasts the carrier cannot do are refused naming the op and line.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from conftest import assert_close, run_both, torch_script

I8 = np.array([127, -128, 5, -1, 100, 0, 64, -65], np.int8)
I16 = (np.arange(64, dtype=np.int16) * 1021).reshape(8, 8)    # products and sums overflow int16
F16 = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float16)
# float16 computed in float32 and rounded once vs XLA:CPU rounding (some) ops to float16:
# each side is within a few float16 ulps (2**-10 relative) of the exact value; 2**-8 is
# four ulps (docs/numerics.md "float16, int8, int16, int4, uint4")
F16_BOUND = dict(rtol=2 ** -8, atol=2 ** -14)


def test_transfers_round_trip_exactly(tt):
    f16 = np.array([1.0, -0.0, 0.1, 65504, 6e-8, np.inf, -np.inf, np.nan, -2.5e-5], np.float16)
    for x in (f16, I8, np.array([-128, 127, 0], np.int8), np.array([-32768, 32767, -1], np.int16)):
        y = jax.device_put(x, tt)
        assert y.dtype == x.dtype
        assert_close(np.asarray(y), x, exact=True)


INT_CASES = {
    "i8 127+1 wraps": (lambda x: x + np.int8(1), I8),
    "i8 -128*-1 wraps": (lambda x: x * np.int8(-1), I8),
    "i8 negate": (lambda x: -x, I8),
    "i8 abs of min": (lambda x: jnp.abs(x), I8),
    "i8 min / -1": (lambda x: x // np.int8(-1), I8),
    "i8 remainder": (lambda x: x % np.int8(-7), I8),
    "i8 shift left": (lambda x: x << 3, I8),
    "i8 shift right logical": (lambda x: jax.lax.shift_right_logical(x, np.int8(1)), I8),
    "i8 shift right arithmetic": (lambda x: x >> 2, I8),
    "i8 popcnt": (jax.lax.population_count, I8),
    "i8 clz": (jax.lax.clz, I8),
    "popcnt / clz of a saturated convert": (lambda x: (jax.lax.population_count((x.astype(jnp.float32) * 3).astype(jnp.int8)),
                                                       jax.lax.clz((x.astype(jnp.float32) * -3).astype(jnp.int8))), I8),
    "i8 select": (lambda x: jnp.where(x > 0, x, x * 2), I8),
    "i8 cumsum wraps": (lambda x: jnp.cumsum(x, dtype=jnp.int8), I8),
    "i8 max / min / argmax": (lambda x: (jnp.max(x), jnp.min(x.reshape(2, 4), axis=1), jnp.argmax(x),
                                         jax.lax.cummax(x)), I8),
    "i8 sort": (jnp.sort, I8),
    "i8 iota longer than int8": (lambda x: jnp.arange(300, dtype=jnp.int8)[x.astype(jnp.int32) + 128], I8),
    "i8 loop": (lambda x: jax.lax.fori_loop(0, 5, lambda i, v: v * np.int8(3) + np.int8(1), x), I8),
    "i8 <-> u8 bitcast": (lambda x: (jax.lax.bitcast_convert_type(x, jnp.uint8),
                                     jax.lax.bitcast_convert_type(x.astype(jnp.uint8) * np.uint8(3), jnp.int8)), I8),
    "i8 converts out": (lambda x: (x.astype(jnp.uint8), x.astype(jnp.uint32), x.astype(jnp.int16),
                                   x.astype(jnp.float32) * 0.5), I8),
    "i16 -> i8 wraps": (lambda x: x.astype(jnp.int8), I16),
    "u16 -> i16 wraps": (lambda x: (x.astype(jnp.uint16) * np.uint16(7)).astype(jnp.int16), I16),
    "float -> i8 / i16 saturate": (lambda x: tuple(
        (jnp.array([1e10, -1e10, 200.7, -200.7, 127.9, np.nan, np.inf, -np.inf, 40000, -3.5], jnp.float32)
         * x[0, 1].astype(jnp.float32) / 1021).astype(t) for t in (jnp.int8, jnp.int16)), I16),
    "i16 multiply overflows": (lambda x: x * x, I16),
    "i16 sum overflows": (lambda x: jnp.sum(x, axis=1, dtype=jnp.int16), I16),
    "i8 / i16 pad (a constant pad value)": (lambda x: (jnp.pad(x, 1), jnp.pad(x.astype(jnp.int8), 1, constant_values=7)), I16),
    "u16 arithmetic wraps": (lambda x: x.astype(jnp.uint16) * np.uint16(40) + np.uint16(65000), I16),
}


@pytest.mark.parametrize("name", INT_CASES)
def test_integer_programs_match_cpu_exactly(tt, cpu, name):
    f, x = INT_CASES[name]
    got, want = run_both(f, x, tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        assert_close(g, w, what=name)   # integers: equal, dtype included


F16_CASES = {
    "elementwise": lambda x: jnp.exp(x) * x + np.float16(1),
    "softmax": jax.nn.softmax,
    "sum": lambda x: jnp.sum(x, axis=0),
    "to and from int8": lambda x: (x * np.float16(10)).astype(jnp.int8).astype(jnp.float16) / np.float16(3),
    "beyond float16 is inf": lambda x: x * np.float16(60000),
    "pad": lambda x: jnp.pad(x, 1, constant_values=0.1),
}


# Converts from and to float16 round to float16 (bit ops on the chip), so what the
# program sees of a float16 value there is XLA:CPU's, bit for bit
F16_CONVERT_CASES = {
    "computed float16 -> int": lambda x: ((x * np.float16(100)).astype(jnp.int16),
                                          (x * np.float16(100)).astype(jnp.uint8)),
    "float32 -> float16 -> float32": lambda x: (x.astype(jnp.float32) / 3).astype(jnp.float16).astype(jnp.float32),
    "int32 -> float16": lambda x: ((x * np.float16(1000)).astype(jnp.int32) * 3 + 1).astype(jnp.float16),
    "float32 beyond float16 -> inf": lambda x: (x.astype(jnp.float32) * 70000).astype(jnp.float16),
    "computed float16 -> float32": lambda x: (x * np.float16(3.7)).astype(jnp.float32),
}


@pytest.mark.parametrize("name", F16_CONVERT_CASES)
def test_float16_converts_match_cpu_bit_for_bit(tt, cpu, name):
    got, want = run_both(F16_CONVERT_CASES[name], F16, tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        assert_close(g, w, exact=True, what=name)


@pytest.mark.parametrize("via,value,want", [("i32", 2.7, 2.0), ("bf16", 1.00390625, 1.0)])
def test_float16_rounding_of_a_constant_keeps_the_converts_before_it(tt, via, value, want):
    """A float32 constant converted to `via`, then to float16: the rounding into float16 is
    folded into the constant, but only past converts that keep values (it once folded past
    the truncation to int32 and gave 2.69921875). jax folds such chains itself, so the
    program is written out; the reference is numpy's convert chain."""
    from test_control_flow import run_mlir
    text = f"""module @m {{
  func.func public @main(%arg0: tensor<4xf16>) -> tensor<4xf16> {{
    %c = stablehlo.constant dense<{value!r}> : tensor<4xf32>
    %v = stablehlo.convert %c : (tensor<4xf32>) -> tensor<4x{via}>
    %h = stablehlo.convert %v : (tensor<4x{via}>) -> tensor<4xf16>
    %r = stablehlo.add %h, %arg0 : tensor<4xf16>
    return %r : tensor<4xf16>
  }}
}}"""
    host = {"i32": np.int32, "bf16": jnp.bfloat16}[via]
    assert np.float16(host(np.float32(value))) == want   # the reference chain
    (got,) = run_mlir(text, np.zeros(4, np.float16))
    assert_close(np.asarray(got, np.float16), np.full(4, want, np.float16), exact=True, what=f"f32 -> {via} -> f16")


def test_reduce_precision_matches_cpu_bit_for_bit(tt, cpu):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(512).astype(np.float32) * 10.0 ** rng.integers(-8, 8, 512),
                        np.array([np.nan, np.inf, -np.inf, 0, -0.0, 65504, 65519, 65520, -1e30, 6.1e-5, 3e-8,
                                  1 + 2**-11, 1 + 3 * 2**-11], np.float32)])
    for e, m in [(5, 10), (8, 7), (4, 3)]:
        got, want = run_both(lambda a: (jax.lax.reduce_precision(a, e, m),
                                        jax.lax.reduce_precision(np.float32(1 + 2**-11 + 2**-13), e, m) + 0 * a),
                             x, tt_device=tt, cpu_device=cpu)
        for g, w in zip(got, want):
            assert_close(g, w, exact=True, what=f"reduce_precision({e}, {m})")


@pytest.mark.parametrize("name", F16_CASES)
def test_float16_programs_within_the_documented_bound(tt, cpu, name):
    got, want = run_both(F16_CASES[name], F16, tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        assert_close(g, w, pcc=0.999, **F16_BOUND, what=name)


def test_float16_matmul_has_the_float32_matmul_precision(tt, cpu):
    got, want = run_both(lambda a, b: a @ b, F16, F16.T.copy(), tt_device=tt, cpu_device=cpu)
    assert_close(got[0], want[0], kind="matmul")


def test_float16_mlp_value_and_grad(tt, cpu):
    rng = np.random.default_rng(1)
    params = {"w1": (rng.standard_normal((16, 32)) / 4).astype(np.float16), "b1": np.zeros(32, np.float16),
              "w2": (rng.standard_normal((32, 4)) / 6).astype(np.float16)}
    x, y = F16, rng.standard_normal((16, 4)).astype(np.float16)

    def loss(p, x, y):
        h = jax.nn.gelu(x @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] - y) ** 2)

    got, want = run_both(jax.value_and_grad(loss), params, x, y, tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        assert g.dtype == np.float16
        assert_close(g, w, kind="matmul")


def test_float16_bitcasts_are_exact_and_jax_random_makes_float16(tt, cpu):
    """float16's bits, computed from its float32 carrier: all 65536 patterns both ways, bit
    for bit (NaN payloads and signalling NaNs kept, as XLA:CPU keeps them: a bitcast is no
    conversion), negation keeping them too; a float32 NaN converted to float16 keeps its top
    payload bits and is made quiet, as XLA:CPU's convert; and jax.random's float16 numbers
    (made from uint16 bits) equal to CPU's."""
    bits = np.arange(2 ** 16, dtype=np.uint16).reshape(256, 256)
    got, want = run_both(lambda b: (jax.lax.bitcast_convert_type(b, jnp.float16),
                                    -jax.lax.bitcast_convert_type(b, jnp.float16)), bits, tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.view(np.uint16), w.view(np.uint16))
    values = want[0].reshape(-1)
    got, want = run_both(lambda v: (jax.lax.bitcast_convert_type(v, jnp.uint16), jax.lax.bitcast_convert_type(v, jnp.int16),
                                    jax.lax.bitcast_convert_type(v.reshape(-1, 2), jnp.float32)), values,
                         tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.view(np.uint8), w.view(np.uint8))
    nans = np.array([0x7F802000, 0x7FA02000, 0xFF812345, 0x7F800001, 0x7FC00000], np.uint32).view(np.float32)
    got, want = run_both(lambda v: jax.lax.bitcast_convert_type(v.astype(jnp.float16), jnp.uint16), nans,
                         tt_device=tt, cpu_device=cpu)
    np.testing.assert_array_equal(got[0], want[0])
    got, want = run_both(lambda k: jax.random.uniform(jax.random.wrap_key_data(k), (64, 9), dtype=jnp.float16),
                         np.asarray(jax.random.key_data(jax.random.key(3))), tt_device=tt, cpu_device=cpu)
    assert_close(got[0], want[0], exact=True)


def test_a_float8_bitcast_is_refused_naming_the_op(tt):
    with pytest.raises(Exception, match=r"UNIMPLEMENTED: `stablehlo.bitcast_convert` at .*test_narrow_types.py:\d+.*"
                                        r"reinterprets the bits of f8E4M3FN as ui8"):
        jax.jit(lambda x: jax.lax.bitcast_convert_type(x, jnp.uint8))(jax.device_put(np.ones(4, jnp.float8_e4m3fn), tt))


# int4 / uint4: int32 on the chip, sign- / zero-extended, wrapped after every op that can leave
# the nibble (jax allows only some ops on them: no abs, no jnp.sum)
I4 = np.random.default_rng(1).integers(-8, 8, (2, 5, 7)).astype(ml_dtypes.int4)
U4 = np.random.default_rng(2).integers(0, 16, (2, 5, 7)).astype(ml_dtypes.uint4)
NIBBLE_CASES = {
    "arith": lambda a, b, u, v: (a + b, a * b, a - b, -a, a // jnp.where(b == 0, 1, b), u + v, u * v, u - v),
    "bits_and_shifts": lambda a, b, u, v: (
        a & b, a ^ b, ~a, ~u, u | v, a >> 1, u >> 1, a << 1, u << 3, jax.lax.shift_right_logical(a, jnp.int4(2)),
        jax.lax.shift_right_logical(u, jnp.uint4(2)), jax.lax.bitcast_convert_type(a, jnp.uint4),
        jax.lax.bitcast_convert_type(u, jnp.int4)),
    "converts": lambda a, b, u, v: (
        (a.astype(jnp.float32) * 3.7).astype(jnp.int4), (u.astype(jnp.float32) * -2.5).astype(jnp.uint4),
        (a.astype(jnp.int32) * 9).astype(jnp.int4), a.astype(jnp.uint4), u.astype(jnp.int4), a.astype(jnp.float32),
        u.astype(jnp.int32)),
    "compare_reduce": lambda a, b, u, v: (
        a < b, u < v, jnp.where(u > v, u, v), a.max(0), a.min(1), u.max(0), u.min(1), jnp.argmax(a, 1)),
    "constants_and_iota": lambda a, b, u, v: (
        a + jnp.arange(-8, 27, dtype=jnp.int4).reshape(5, 7), u + jnp.asarray(np.arange(300).astype(ml_dtypes.uint4))[:35].reshape(5, 7),
        jnp.arange(16, dtype=jnp.uint4), jax.lax.iota(jnp.int4, 20)),
}


def test_int4_and_uint4_round_trip_exactly(tt):
    for x in (I4, U4, np.arange(-8, 8).astype(ml_dtypes.int4), np.arange(16).astype(ml_dtypes.uint4)):
        y = np.asarray(jax.device_put(x, tt))
        assert y.dtype == x.dtype and np.array_equal(y.astype(np.int32), x.astype(np.int32))


@pytest.mark.parametrize("name", NIBBLE_CASES)
def test_int4_and_uint4_programs_match_cpu_exactly(tt, cpu, name):
    """Wrap-around modulo 16 (uint4 masked, int4 sign-extended), float converts saturating,
    an arithmetic shift reading a uint4's top bit as its sign: all as XLA:CPU computes them."""
    got, want = run_both(NIBBLE_CASES[name], I4[0], I4[1], U4[0], U4[1], tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g.astype(np.int32), w.astype(np.int32))


def test_int4_bitcasts_between_widths_are_exact(tt, cpu):
    """int4 pairs <-> int8, four int4 -> float16, eight uint4 -> uint32 and back: the nibbles
    taken apart and joined in uint32 ops, the first element lowest, as XLA does."""
    rng = np.random.default_rng(3)
    pairs = rng.integers(-8, 8, (3, 4, 2)).astype(ml_dtypes.int4)
    quads = rng.integers(-8, 8, (5, 4)).astype(ml_dtypes.int4)
    octets = rng.integers(0, 16, (3, 8)).astype(ml_dtypes.uint4)
    i8 = rng.integers(-128, 128, (3, 4)).astype(np.int8)
    f16 = rng.standard_normal(6).astype(np.float16)
    got, want = run_both(lambda p, q, o, b, h: (
        jax.lax.bitcast_convert_type(p, jnp.int8), jax.lax.bitcast_convert_type(q, jnp.float16),
        jax.lax.bitcast_convert_type(o, jnp.uint32), jax.lax.bitcast_convert_type(b, jnp.int4),
        jax.lax.bitcast_convert_type(h, jnp.uint4)), pairs, quads, octets, i8, f16, tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        bits = np.uint16 if g.dtype == np.float16 else None
        np.testing.assert_array_equal(g.view(bits) if bits else g.astype(np.int64), w.view(bits) if bits else w.astype(np.int64))


def test_torch_eager_and_compile():
    out = torch_script("""
        a = torch.tensor([127, -128, 5, -1], dtype=torch.int8)
        x = a.to(dev)
        assert x.cpu().dtype == torch.int8 and torch.equal(x.cpu(), a)
        assert torch.equal((x + 1).cpu(), a + 1) and torch.equal((x * x).cpu(), a * a)
        b = torch.tensor([30000, -30000, 300, 2], dtype=torch.int16)
        assert torch.equal((b.to(dev) * 3).cpu(), b * 3) and torch.equal(b.to(dev).sum().cpu(), b.sum())
        h = torch.tensor([1.0, 0.1, 65000, 3.14159], dtype=torch.float16)
        got = (h.to(dev) * 2).cpu()
        assert got.dtype == torch.float16 and torch.equal(got, h * 2), got
        torch.manual_seed(0)
        lin = torch.nn.Linear(8, 4).half()
        inp = torch.randn(2, 8).half()
        f = lambda v: torch.relu(lin(v)).sum(dim=1)
        got = torch.compile(f, backend="tt")(inp)
        want = torch.relu(torch.nn.functional.linear(inp.float(), lin.weight.float(), lin.bias.float())).sum(dim=1)
        assert got.dtype == torch.float16 and torch.allclose(got.float(), want, rtol=2**-7, atol=2**-7), (got, want)
        g = lambda v: (v * 3 + 1).to(torch.int8) * 2
        assert torch.equal(torch.compile(g, backend="tt")(a), g(a))
        print("done")
    """)
    assert out.rstrip().endswith("done"), out
