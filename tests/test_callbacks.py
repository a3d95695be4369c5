"""Python callbacks on tt: jax.debug.print / debug.callback, pure_callback, io_callback
(pjrt_tt/jax_plugin.py emits them, the executor runs them on the host between ttnn ops).
Each is checked against the same program on XLA:CPU: what the callback is handed (dtypes and
values, exact) and what the program computes from what it returns."""
from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.experimental import io_callback

from conftest import enable_x64

MOCK_CHECKED = os.environ.get("PJRT_TT_CHECK_WITH_MOCK") == "1"


def _python(code: str, *argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *argv], env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=300)


def _on_both(f, args, tt, cpu):
    """jit(f) on tt and on XLA:CPU: (outputs, what the callbacks recorded) for each."""
    runs = []
    for dev in (tt, cpu):
        SEEN.clear()
        out = jax.jit(f)(*[jax.device_put(a, dev) for a in args])
        out = [np.asarray(x) for x in jax.tree.leaves(out)]
        runs.append((out, [np.asarray(x) for x in SEEN]))
    return runs


SEEN: list = []


def _record(*arrays):
    SEEN.extend(arrays)


def _assert_same(got: list, want: list) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        np.testing.assert_array_equal(g, w)


def test_callbacks_get_and_give_the_framework_arrays(tt, cpu):
    """float32, int32, bool, float16 and bfloat16 reach the callback as the arrays XLA:CPU
    hands it (float16 is carried in float32 on the chip, bool in bfloat16), and what
    pure_callback / io_callback return feeds the rest of the program as on CPU."""
    def f(x, i, b, h, w):
        jax.debug.callback(_record, x, i, b, h, w)
        y = jax.pure_callback(lambda a: np.tanh(a).astype(a.dtype), jax.ShapeDtypeStruct(x.shape, x.dtype), x)
        k = io_callback(lambda a: (a * 3 - 1).astype(a.dtype), jax.ShapeDtypeStruct(i.shape, i.dtype), i)
        g = jax.pure_callback(lambda a: (a * 2).astype(a.dtype), jax.ShapeDtypeStruct(h.shape, h.dtype), h)
        return y * 2, k + 1, g, jnp.where(b, 1, 0)
    args = (np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), np.arange(-2, 2, dtype=np.int32),
            np.array([True, False, True]), np.array([1.5, -2.25, 65504], np.float16),
            np.array([0.1, 3.0], ml_dtypes.bfloat16))
    (got, got_seen), (want, want_seen) = _on_both(f, args, tt, cpu)
    _assert_same(got_seen, want_seen)
    _assert_same(got[1:], want[1:])
    np.testing.assert_allclose(got[0], want[0], rtol=2**-7, atol=0)   # (the multiply runs on the chip)


def test_complex64_goes_and_comes_back_as_complex(tt, cpu):
    """complex64 is carried as float32 planes on the chip; the callback still sees and
    returns complex64 arrays, bit for bit as on XLA:CPU."""
    def f(z, x):
        jax.debug.callback(_record, z, x)
        w = jax.pure_callback(lambda a: (a * 1j + 1).astype(np.complex64), jax.ShapeDtypeStruct(z.shape, np.complex64), z)
        m = jax.pure_callback(lambda a: np.abs(a).astype(np.float32), jax.ShapeDtypeStruct(z.shape, np.float32), z)
        return w * 2, m
    z = np.array([[1 + 2j, -3j], [0.5, 2 - 1j]], np.complex64)
    (got, got_seen), (want, want_seen) = _on_both(f, (z, np.float32(3)), tt, cpu)
    _assert_same(got_seen, want_seen)
    _assert_same(got, want)


def test_int64_under_x64(tt, cpu):
    """jax_enable_x64: a callback gets int64 arrays and may return them; a returned value
    beyond the 32 bits the chip carries it in is refused by name, never wrapped."""
    with enable_x64():
        f = lambda i: (jax.debug.callback(_record, i),   # noqa: E731
                       jax.pure_callback(lambda a: a * 7, jax.ShapeDtypeStruct(i.shape, np.int64), i))[1]
        (got, got_seen), (want, want_seen) = _on_both(f, (np.array([1, -5, 2**28], np.int64),), tt, cpu)
        _assert_same(got_seen, want_seen)
        _assert_same(got, want)
        g = jax.jit(lambda i: jax.pure_callback(lambda a: a + 2**40, jax.ShapeDtypeStruct(i.shape, np.int64), i))
        with pytest.raises(Exception, match=r"result of the Python callback .* holds 1099511627776 at index \[0\].*"
                                            r"outside the int32 range"):
            g(jax.device_put(np.zeros(2, np.int64), tt)).block_until_ready()


def test_debug_print_in_loops_and_branches(tt, capfd):
    """Each iteration prints, in order; only the branch taken prints, also a branch whose
    only work is the print (nothing else would keep it)."""
    def body(k, c):
        jax.debug.print("k={k} c={c}", k=k, c=c)
        return c * 2
    out = jax.jit(lambda c: jax.lax.fori_loop(0, 3, body, c))(jax.device_put(np.float32(1), tt))
    assert float(out) == 8.0

    def branch(name):
        return lambda c: (jax.debug.print(name + " {}", c), c)[1]
    pick = jax.jit(lambda p, c: jax.lax.cond(p, branch("yes"), branch("no"), c))
    pick(jax.device_put(True, tt), jax.device_put(np.float32(3), tt)).block_until_ready()
    pick(jax.device_put(False, tt), jax.device_put(np.float32(4), tt)).block_until_ready()
    lines = [line for line in capfd.readouterr().out.splitlines() if line]
    assert lines == ["k=0 c=1.0", "k=1 c=2.0", "k=2 c=4.0", "yes 3.0", "no 4.0"]


def test_each_run_calls_once_and_the_mock_check_never(tt):
    """The mock check runs every new program on real ttnn: the callback is the user's code
    (it prints, writes, counts), so zeros stand in for it there and it runs once per call."""
    calls = []
    f = jax.jit(lambda x: (jax.debug.callback(lambda a: calls.append(float(a)), x), x + 1)[1])
    for v in (1.0, 2.0, 3.0):
        f(jax.device_put(np.float32(v), tt)).block_until_ready()
    assert calls == [1.0, 2.0, 3.0]
    if not MOCK_CHECKED:
        pytest.skip("the mock check is off in this run (PJRT_TT_CHECK_WITH_MOCK=0): only the count was checked")


def test_vmap_and_grad(tt, cpu, capfd):
    for method in ("sequential", "broadcast_all"):
        f = jax.vmap(lambda x: jax.pure_callback(lambda a: np.sin(a).astype(np.float32),
                                                 jax.ShapeDtypeStruct((), np.float32), x, vmap_method=method))
        (got, _), (want, _) = _on_both(f, (np.arange(4, dtype=np.float32),), tt, cpu)
        _assert_same(got, want)
    g = jax.jit(jax.grad(lambda x: (jax.debug.print("x={}", x), (x ** 2).sum())[1]))
    np.testing.assert_array_equal(np.asarray(g(jax.device_put(np.arange(3, dtype=np.float32), tt))), [0, 2, 4])
    assert "x=[0. 1. 2.]" in capfd.readouterr().out


def test_a_bad_callback_fails_its_call_only(tt):
    """A wrong shape or dtype is named as XLA:CPU names it; an exception in the callback
    fails the call with its message; the process and the next program carry on."""
    x = jax.device_put(np.zeros(3, np.float32), tt)
    wrong_shape = jax.jit(lambda x: jax.pure_callback(lambda a: np.zeros(5, np.float32),
                                                      jax.ShapeDtypeStruct((3,), np.float32), x))
    with pytest.raises(Exception, match=r"Incorrect output shape for return value #0: Expected: \(3,\)"):
        wrong_shape(x).block_until_ready()
    wrong_dtype = jax.jit(lambda x: jax.pure_callback(lambda a: np.zeros(3, np.int32),
                                                      jax.ShapeDtypeStruct((3,), np.float32), x))
    with pytest.raises(Exception, match="Incorrect output dtype for return value #0"):
        wrong_dtype(x).block_until_ready()
    raising = jax.jit(lambda x: jax.pure_callback(lambda a: 1 / 0, jax.ShapeDtypeStruct((3,), np.float32), x))
    with pytest.raises(Exception, match="division by zero"):
        raising(x).block_until_ready()
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda x: x + 1)(x)), [1, 1, 1])


def test_ordered_effects_run_in_order(tt, capfd):
    """ordered=True threads a token through the program, its calls, loops and branches
    (ingest/tokens.py: an empty array on the chip); the prints come in program order, once
    per call, and what the callbacks return is used as on CPU; Python literals returned are
    jax's canonical dtypes (1.0 is float32 without x64)."""
    def body(i, c):
        jax.debug.print("i={}", i, ordered=True)
        return c + io_callback(lambda a: np.float32(1.0) * a, jax.ShapeDtypeStruct((), np.float32), c,
                               ordered=True)

    @jax.jit
    def f(p, c):
        jax.debug.print("start {}", c, ordered=True)
        c = jax.lax.fori_loop(0, 3, body, c)
        return jax.lax.cond(p, lambda c: (jax.debug.print("yes {}", c, ordered=True), c)[1],
                            lambda c: (jax.debug.print("no {}", c, ordered=True), -c)[1], c)
    out = f(jax.device_put(False, tt), jax.device_put(np.float32(1), tt))
    jax.effects_barrier()
    assert float(out) == -8.0
    lines = [line for line in capfd.readouterr().out.splitlines() if line]
    assert lines == ["start 1.0", "i=0", "i=1", "i=2", "no 8.0"]


def test_what_is_not_supported_is_refused_by_name(tt):
    x = jax.device_put(np.float32(3), tt)
    traced = jax.jit(lambda x: (jax.debug.print("{}", x), x * 2)[1], compiler_options={"enable_trace": True})
    with pytest.raises(Exception, match="cannot run as a Metal trace: it calls back into Python"):
        traced(x).block_until_ready()


def test_a_sharded_program_with_a_callback_is_refused():
    proc = _python("""
import jax, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
mesh = Mesh(np.array(jax.devices('tt')), ('x',))
x = jax.device_put(np.arange(8, dtype=np.float32), NamedSharding(mesh, P('x')))
try:
    jax.jit(lambda x: (jax.debug.print('{}', x), x * 2)[1])(x)
except NotImplementedError as e:
    print('REFUSED', e)
print(np.asarray(jax.jit(lambda x: x * 2)(x)).tolist())
""", PJRT_TT_SYSTEM="n300")
    assert "REFUSED a Python callback" in proc.stdout and "in a sharded program on tt" in proc.stdout, proc.stderr[-3000:]
    assert "[0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]" in proc.stdout, proc.stderr[-3000:]


def test_a_cached_program_calls_its_own_process_callback(tmp_path):
    """jax's persistent compilation cache: a second process loading the program (same module
    text, another callable behind the same index) calls the callable it registered itself."""
    script = """
import sys, jax, numpy as np
jax.config.update('jax_compilation_cache_dir', sys.argv[1])
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
f = jax.jit(lambda x: (jax.debug.print(sys.argv[2] + ' {}', x), x * 2)[1])
print(float(f(jax.device_put(np.float32(3), jax.devices('tt')[0]))))
"""
    cache = tmp_path / "cache"
    for word in ("first", "second"):
        proc = _python(script, str(cache), word)
        assert proc.returncode == 0 and f"{word} 3.0" in proc.stdout and "6.0" in proc.stdout, proc.stderr[-3000:]
    assert len(list(cache.iterdir())) == 1   # the second process hit the entry the first wrote
