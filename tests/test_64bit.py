"""64-bit types (issue 9; issue 13 item 3): the chip has none, so int64 / uint64 / float64 are
carried as int32 / uint32 / float32 on the device and keep their 64-bit type at the framework
boundary (dtypes.py, ingest/narrow64.py, docs/numerics.md).

Checked against XLA:CPU in 64 bits (and eager torch on the CPU): values that fit pass exactly;
values that do not are held as uint32 words and come back exact, and a program computing
with them in 32 bits refuses them naming the argument and the values, never wrapped;
float64 results meet the documented float32 bound; the tt_strict_64bit option refuses instead.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, enable_x64, run_both, torch_script

I32_MIN, I32_MAX = -2**31, 2**31 - 1

# float64 computed as float32 (docs/numerics.md, measured by tests/benchmarks/float64.py):
# elementwise math within a few float32 ulps of the float64 result
F64_AS_F32 = dict(rtol=1e-6, atol=1e-6)


def _round_trip(x: np.ndarray, tt) -> np.ndarray:
    with enable_x64():
        return np.asarray(jax.device_put(x, tt))


# --------------------------------------------------------------------- transfer boundaries

@pytest.mark.parametrize("dtype,good", [
    (np.int64, [I32_MAX, I32_MIN, 0, -1, 7]),
    (np.uint64, [2**32 - 1, 0, 2**31]),
])
def test_64bit_integers_that_fit_round_trip_exactly(tt, dtype, good):
    x = np.array(good, dtype)
    assert_close(_round_trip(x, tt), x)   # dtype int64 / uint64 back, values equal


@pytest.mark.parametrize("dtype,big", [
    (np.int64, [2**31, -2**31 - 1, 2**40, 2**63 - 1, -2**63]), (np.uint64, [2**32, 2**64 - 1, 2**63]),
])
def test_64bit_integers_that_do_not_fit_are_held_as_words_exactly(tt, dtype, big):
    """Values beyond the 32-bit carrier go to the device as their uint32 words, and come back
    exact: a random seed or a hash passes through a device unchanged."""
    x = np.array([1, *big, 2], dtype)
    got = _round_trip(x, tt)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, x)


@pytest.mark.parametrize("dtype,bad,carrier", [
    (np.int64, 2**31, "int32"), (np.int64, -2**31 - 1, "int32"), (np.int64, 2**40, "int32"),
    (np.uint64, 2**32, "uint32"), (np.uint64, 2**64 - 1, "uint32"),
])
def test_arguments_that_do_not_fit_are_refused_by_32_bit_programs(tt, dtype, bad, carrier):
    """A program whose arithmetic runs in the 32-bit carrier refuses a buffer held as words,
    naming the argument, its values and the range it is exact for; never a wrap."""
    with enable_x64(), pytest.raises(Exception) as e:
        x = jax.device_put(np.array([1, bad, 2], dtype), tt)
        jax.jit(lambda v: v * 2)(x)
    message = str(e.value)
    assert "INVALID_ARGUMENT" in message and "argument 0 of jit_" in message, message
    assert f"is {np.dtype(dtype).name} with values in [{min(bad, 1)}, {max(bad, 2)}]" in message, message
    assert "exact only for values in" in message, message


def test_a_jit_argument_that_does_not_fit_is_refused(tt):
    with enable_x64(), pytest.raises(Exception, match=r"INVALID_ARGUMENT: argument 0 of jit__lambda is int64 "
                                                      r"with values in \[2147483648, 2147483648\]"):
        jax.jit(lambda v: v * 2, device=tt)(np.array([2**31], np.int64))


def test_float64_round_trip_is_float32_rounding(tt):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(64) * 10.0 ** rng.integers(-30, 30, 64),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 3.4e38, -1e-30]])
    got = _round_trip(x, tt)
    assert_close(got, x.astype(np.float32).astype(np.float64), exact=True)   # round to nearest, nothing else
    assert got.dtype == np.float64


def test_float64_beyond_float32_range_is_refused(tt):
    with pytest.raises(Exception, match=r"INVALID_ARGUMENT: the float64 array of shape \[2\] .* holds 1e\+300 "
                                         r"at index \[1\] .* beyond float32's range"):
        _round_trip(np.array([1.0, 1e300]), tt)


def test_pjrt_sees_the_64bit_types():
    """Buffer_ElementType and the executable's output element types are the framework's
    (PJRT_Buffer_Type S64 = 5, F64 = 12), while the device holds 32 bits."""
    from pjrt_tt.runtime.client import CLIENTS
    jax.devices("tt")
    client = CLIENTS[0]
    x = np.array([[3, -4]], np.int64)
    buf = client.buffer_from_host(x.ctypes.data, 5, x.shape, None, client.devices[0], None)
    assert buf.element_type == 5 and buf.dims == (1, 2)
    assert buf.on_device_size == 32 * 32 * 4            # one int32 tile
    assert buf.numpy().dtype == np.int64 and buf.numpy().tolist() == [[3, -4]]
    with enable_x64():
        text = jax.jit(lambda a, b: (a + 1, b * 2.0)).lower(x, np.ones(2)).as_text()
    exe = client.compile(text.encode(), "mlir", b"")
    assert exe.output_element_types == [5, 12], exe.output_element_types
    assert [str(h) for h in exe.program.input_host_types] == ["tensor<1x2xi64>", "tensor<2xf64>"]
    assert [v.type.dtype for v in exe.program.inputs] == ["int32", "float32"]


# --------------------------------------------------------------------- programs (JAX x64)

X = np.random.default_rng(1).standard_normal((4, 40))
I = (np.arange(160, dtype=np.int64).reshape(4, 40) * 37) % 101 - 50


@pytest.mark.parametrize("name,f,args", [
    ("iota", lambda: jnp.arange(100) * 3 - 7, ()),
    ("argmax", lambda a: jnp.argmax(a, axis=1), (X,)),
    ("argmin", lambda a: jnp.argmin(a, axis=0), (X,)),
    ("argsort", lambda a: jnp.argsort(a, axis=1), (X,)),
    ("cumsum", lambda a: jnp.cumsum(a, axis=1), (I,)),
    ("int_arith", lambda a: ((a * 7 - 3) // 5) % 11 + jnp.abs(a), (I,)),
    ("int_sum", lambda a: a.sum(axis=1), (I,)),
    ("int_compare", lambda a: jnp.where(a > 3, a, -a), (I,)),
    ("to_float", lambda a: a.astype(jnp.float64) * 0.5, (I,)),
    ("int_max", lambda a: a.max(axis=1) - 1 + a.min(), (I,)),   # the reduce's init (int64 min) is no bound
    # loops: the int64 trip counter (and fori_loop's index, a second counter in lockstep) is
    # bounded by the loop condition (ingest/narrow64.py _loop_limits, _lockstep); a value
    # that grows every iteration (an accumulator) is not, and is refused by name
    ("fori_loop", lambda a: jax.lax.fori_loop(0, 40, lambda i, c: c.at[:, i].set(a[:, 39 - i] - i), a), (I,)),
    ("fori_loop_long", lambda a: jax.lax.fori_loop(0, 5000, lambda i, c: jnp.where(i % 7 == 0, c[::-1], c), a), (I,)),
    ("while_to_argument", lambda n, a: jax.lax.while_loop(lambda c: c[0] < n, lambda c: (c[0] + 1, c[1][::-1]),
                                                           (jnp.int64(0), a))[1], (np.int64(5), I)),
    ("scan", lambda a: jax.lax.scan(lambda c, x: (jnp.maximum(c, x), c - x.min()), jnp.zeros(40, jnp.int64), a), (I,)),
    ("map", lambda a: jax.lax.map(lambda r: r[::-1] - r.max(), a), (I,)),
])
def test_x64_integer_programs_match_cpu(tt, cpu, name, f, args):
    with enable_x64():
        got, want = run_both(f, *args, tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        assert_close(g, w, **(F64_AS_F32 if w.dtype == np.float64 else {}), what=name)


@pytest.mark.parametrize("name,f", [
    ("elementwise", lambda a: jnp.exp(a) * 2.5 + jnp.sin(a) / 3 - jnp.tanh(a) * a),
    ("reduce", lambda a: jnp.mean(a, axis=1) + jnp.max(a, axis=0)[:4]),
    ("cumsum", lambda a: jnp.cumsum(a, axis=1)),
    ("softmax", lambda a: jax.nn.softmax(a, axis=-1)),
])
def test_x64_float64_programs_within_the_documented_bound(tt, cpu, name, f):
    with enable_x64():
        got, want = run_both(f, X, tt_device=tt, cpu_device=cpu)
    assert got[0].dtype == np.float64
    assert_close(got[0], want[0], **F64_AS_F32, what=name)


def test_x64_float64_matmul_has_the_float32_matmul_precision(tt, cpu):
    with enable_x64():
        got, want = run_both(lambda a, b: a @ b, X, X.T, tt_device=tt, cpu_device=cpu)
    assert_close(got[0], want[0], kind="matmul")


def test_x64_random_keys_are_bit_exact(tt, cpu):
    with enable_x64():
        def f(seed):
            key = jax.random.PRNGKey(seed)
            k1, k2 = jax.random.split(key)
            return (jax.random.key_data(k1), jax.random.uniform(k2, (3, 5), dtype=jnp.float32),
                    jax.random.bits(k1, (4,), dtype=jnp.uint32))
        got, want = run_both(f, np.int64(42), tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        assert_close(g, w, exact=True)


def test_x64_random_float64_is_refused_with_what_to_ask_instead(tt):
    with enable_x64(), pytest.raises(Exception, match=r"UNIMPLEMENTED: `stablehlo.bitcast_convert` .* ui64 as f64.*"
                                                      r"dtype=jnp.float32"):
        jax.jit(lambda s: jax.random.normal(jax.random.PRNGKey(s), (4,)), device=tt)(np.int64(1))


def test_a_bitcast_that_needs_64_bits_is_refused(tt):
    with enable_x64(), pytest.raises(Exception, match=r"UNIMPLEMENTED: `stablehlo.bitcast_convert` at .*"
                                                      r"reinterprets the bits of f64 as i64"):
        jax.jit(lambda a: jax.lax.bitcast_convert_type(a, jnp.int64), device=tt)(np.ones(3))


# ----------------------------------------------------- arithmetic that would overflow int32

def test_int64_argument_arithmetic_is_exact_for_the_range_it_was_proven_for(tt, cpu):
    """x + 1 on int64 is exact on the chip for x <= 2**31 - 2: those run, 2**31 - 1 (whose
    result needs 64 bits) is refused at run time naming the argument and the op."""
    f = lambda v: v + 1  # noqa: E731
    with enable_x64():
        x = np.array([I32_MAX - 1, I32_MIN, 0], np.int64)
        got, want = run_both(f, x, tt_device=tt, cpu_device=cpu)
        assert_close(got[0], want[0])
        with pytest.raises(Exception) as e:
            jax.jit(f, device=tt)(jax.device_put(np.array([I32_MAX], np.int64), tt))
    message = str(e.value)
    assert "INVALID_ARGUMENT: argument 0 of jit__lambda is int64 with values in [2147483647, 2147483647]" in message
    assert "exact only for values in [-2147483648, 2147483646]" in message and "`stablehlo.add` at" in message


def test_widest_range_search_finds_the_exact_boundary_in_few_proofs():
    """narrow64._widest (the search for the argument range a program is exact for) returns
    the largest x whose excess is 0, whatever the excess's shape; a linear excess (an index
    plus a constant, the torch case) takes a handful of proofs where bisection took ~31."""
    from pjrt_tt.ingest.narrow64 import _widest
    limit = 2**31 - 1
    shapes = {"plus a constant": lambda x, c: (x + c) / limit,
              "times a constant": lambda x, c: x * c / limit,
              "a square": lambda x, c: (x * x + c) / limit,
              "unbounded beyond": lambda x, c: math.inf}
    rng = np.random.default_rng(0)
    for name, f in shapes.items():
        for c in [1, 16, 3, 2**20, int(rng.integers(1, 2**30))]:
            boundary = next(x for x in [limit - c, limit // max(c, 1), math.isqrt(max(limit - c, 0)), 2**30 + c]
                            if 1 <= x <= limit)
            calls = []

            def excess(x, f=f, c=c, boundary=boundary):
                calls.append(x)
                return 0.0 if x <= boundary else max(f(x, c), 1.0 + 1e-12)
            assert _widest(1, limit, excess) == boundary, (name, c)
            assert len(calls) <= 64, (name, c, len(calls))
            if name == "plus a constant":
                assert len(calls) <= 6, (name, c, calls)
    assert _widest(5, 100, lambda x: 1.5) is None   # nothing fits


def test_arguments_outside_the_proven_range_are_proven_again_for_their_values(tt, cpu):
    """`a * b` on int64 was proven for one range shared by both arguments, |a|, |b| <= 46340.
    A call with a large `a` and a small `b` is still exact: it is proven again for the values
    it holds and runs (equal to CPU); a call whose product needs 64 bits is refused, and so is
    one whose bound comes from the re-proof of a wider call."""
    f = lambda a, b: a * b  # noqa: E731
    with enable_x64():
        fn = jax.jit(f)
        for a, b in [([100000, -7, 3], [3, 2, -4]), ([-70000, 12], [-5, 5]), ([5, 6], [300000, -1])]:
            a, b = np.array(a, np.int64), np.array(b, np.int64)
            got, want = run_both(f, a, b, tt_device=tt, cpu_device=cpu)
            assert_close(got[0], want[0], exact=True)
        with pytest.raises(Exception) as e:
            fn(jax.device_put(np.array([2**30], np.int64), tt), jax.device_put(np.array([4], np.int64), tt))
        ok = fn(jax.device_put(np.array([2**20, -9], np.int64), tt), jax.device_put(np.array([1000, 3], np.int64), tt))
        np.testing.assert_array_equal(np.asarray(ok), [2**20 * 1000, -27])
    message = str(e.value)
    assert "INVALID_ARGUMENT: argument 0 of jit__lambda is int64 with values in [1073741824, 1073741824]" in message
    assert "exact only for values in [-46340, 46340]" in message and "`stablehlo.multiply` at" in message, message


def test_an_output_bound_carries_into_the_next_program(tt, cpu):
    """An output's proven bound lets the next program skip reading it back; where the
    bound is too wide the values are read once and checked."""
    with enable_x64():
        a = jax.device_put(np.array([5, -6, 1000], np.int64), tt)
        b = jax.jit(lambda v: v * 3)(a)             # exact for |v| < 2**31 / 3
        c = jax.jit(lambda v: v * 1000)(b)          # b's bound is too wide: measured, fits
        np.testing.assert_array_equal(np.asarray(c), np.array([5, -6, 1000]) * 3000)


def test_int64_arithmetic_beyond_int32_is_refused_naming_the_op(tt):
    """Issue 13 item 3b: `(x.long() * 3_000_000_000) % 1000` can only wrap in 32 bits."""
    with enable_x64(), pytest.raises(Exception) as e:
        jax.jit(lambda v: (v.astype(jnp.int64) * 3_000_000_000) % 1000, device=tt)(np.arange(4, dtype=np.int32))
    message = str(e.value)
    assert "UNIMPLEMENTED: `stablehlo.multiply` at" in message and "computes 64-bit integers (i64)" in message
    assert "beyond i32" in message, message


def test_float_to_int64_is_checked_at_run_time(tt, cpu):
    """A float converted to int64 has no compile-time bound: the program assumes it fits the
    argument range it proves for the rest, and checks the converted floats after each run."""
    f = lambda x, n: jnp.minimum((x * 1e3).astype(jnp.int64) + n, 5000)  # noqa: E731
    with enable_x64():
        x = np.array([1.5, -2.25, 4.0004, -1e6, 1.07e6])   # 1.07e9 < 2**30
        got, want = run_both(f, x, np.int64(8), tt_device=tt, cpu_device=cpu)
        assert got[0].dtype == np.int64
        assert_close(got[0], want[0])
        # converting log(0) = -inf is implementation-defined (not checked): here a where drops it
        g = lambda x: jnp.where(x > 0, (jnp.log(x) * 10).astype(jnp.int64), -1)  # noqa: E731
        got, want = run_both(g, np.array([0.0, 1.0, 5.0, 1e30]), tt_device=tt, cpu_device=cpu)
        assert_close(got[0], want[0])
        with pytest.raises(Exception) as e:
            jax.jit(f, device=tt)(np.array([1.5, 3e6]), np.int64(8))   # 3e9: beyond the range
    message = str(e.value)
    assert "INVALID_ARGUMENT: `stablehlo.convert` at" in message and "test_64bit.py" in message, message
    assert "converts floats in [1500, 3e+09] to 64-bit integers" in message, message
    assert "exact only for results in [-1073741824, 1073741823] (checked at run time)" in message, message


# --------------------------------------------------------------------- tt_strict_64bit

def test_strict_64bit_refuses_naming_the_op(tt):
    strict = {"tt_strict_64bit": "true"}
    with enable_x64():
        with pytest.raises(Exception, match=r"UNIMPLEMENTED: `stablehlo.convert` at .*test_64bit.py:\d+.* computes f64 \(tt_strict_64bit\)"):
            jax.jit(lambda a: jnp.sin(a.astype(jnp.float64)), compiler_options=strict, device=tt)(np.ones(3, np.float32))
        with pytest.raises(Exception, match=r"argument 0 of the program is i64 \(tt_strict_64bit\)"):
            jax.jit(lambda a: a + 1, compiler_options=strict, device=tt)(np.ones(3, np.int64))
        # 64-bit integers the program only computes with, proven to fit, change nothing: allowed
        x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
        got = jax.jit(lambda a: jnp.argmax(a, axis=1).astype(jnp.int32), compiler_options=strict, device=tt)(x)
        np.testing.assert_array_equal(np.asarray(got), np.argmax(x, axis=1).astype(np.int32))


# --------------------------------------------------------------------- torch

def test_torch_eager_int64_and_float64():
    out = torch_script("""
        ids = torch.tensor([[101, 2023, 2003, 102], [101, 7592, 2088, 102]])   # a tokenizer's int64 ids
        x = ids.to(dev)
        back = x.cpu()
        assert back.dtype == torch.int64 and torch.equal(back, ids), back
        got = (x * 2 + 1).amax(dim=1).cpu()   # a max reduction from int64's minimum
        assert got.dtype == torch.int64 and torch.equal(got, (ids * 2 + 1).amax(dim=1)), got
        got = (x - 2000).sum(dim=1).cpu()
        assert got.dtype == torch.int64 and torch.equal(got, (ids - 2000).sum(dim=1)), got
        edge = torch.tensor([2**31 - 1, -2**31], dtype=torch.int64)
        assert torch.equal(edge.to(dev).cpu(), edge)
        f = torch.tensor([1.0, 3.14159265358979, -2.5e-7], dtype=torch.float64)
        fb = f.to(dev).cpu()
        assert fb.dtype == torch.float64 and torch.equal(fb, f.float().double()), fb
        y = (f.to(dev) * 2).exp().cpu()
        assert y.dtype == torch.float64 and torch.allclose(y, (f * 2).exp(), rtol=1e-6, atol=1e-6), y
        floor = torch.div(x * 7, 3, rounding_mode="floor").cpu()   # through float32, checked at run time
        assert floor.dtype == torch.int64 and torch.equal(floor, torch.div(ids * 7, 3, rounding_mode="floor")), floor
        for bad in (2**31, -2**31 - 1, 2**62 + 3):   # held as words: exact back
            big = torch.tensor([0, bad])
            assert torch.equal(big.to(dev).cpu(), big)
            try:
                (big.to(dev) + 1).cpu()
            except RuntimeError as e:
                print("ERROR", e)
        print("done")
    """)
    errors = [line for line in out.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 3 and out.rstrip().endswith("done"), out
    assert "argument 0 of SyncTensorsGraph" in errors[0] and "int64 with values in [0, 2147483648]" in errors[0], errors[0]
    assert "with values in [-2147483649, 0]" in errors[1], errors[1]


def test_torch_compile_int64_embedding_ids_and_strict_option():
    out = torch_script("""
        torch.manual_seed(0)
        emb = torch.nn.Embedding(50, 8)
        def f(ids, pos):
            return emb(ids) * (pos + 1).unsqueeze(-1)
        ids = torch.tensor([[3, 49, 0, 7], [12, 12, 5, 1]])
        pos = torch.arange(4).expand(2, 4)
        got = torch.compile(f, backend="tt")(ids, pos)
        want = f(ids, pos)
        err = float((got - want).abs().max())
        assert got.dtype == torch.float32 and err < 1e-6, err
        tokens = torch.compile(lambda i: (i * 3) % 1000 + 1, backend="tt")(ids)
        assert tokens.dtype == torch.int64 and torch.equal(tokens, (ids * 3) % 1000 + 1), tokens
        halves = torch.compile(lambda i: torch.div(i, 2, rounding_mode="floor") - 1, backend="tt")(ids)
        assert halves.dtype == torch.int64 and torch.equal(halves, torch.div(ids, 2, rounding_mode="floor") - 1), halves
        try:
            torch.compile(lambda i: i + 1, backend="tt", options={"tt_strict_64bit": True})(ids)
        except Exception as e:
            print("STRICT", str(e).replace(chr(10), " "))
        try:
            torch.compile(lambda x: (x.long() * 3_000_000_000) % 1000, backend="tt")(torch.arange(4, dtype=torch.int32))
        except Exception as e:
            print("OVERFLOW", str(e).replace(chr(10), " "))
        print("done")
    """)
    assert out.rstrip().endswith("done"), out
    strict = [line for line in out.splitlines() if line.startswith("STRICT")]
    assert strict and "tt_strict_64bit" in strict[0] and "i64" in strict[0], out
    overflow = [line for line in out.splitlines() if line.startswith("OVERFLOW")]
    # torch_xla sends the scalar 3_000_000_000 to the device as an int64 argument (held as
    # words): the program multiplying in 32 bits refuses it, naming the value and the aten op
    assert overflow and "values in [3000000000, 3000000000]" in overflow[0] and "aten__mul" in overflow[0], out
