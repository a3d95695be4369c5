"""Control flow (while / case / if) and dynamic indexing on TT against XLA:CPU.

Every program here also runs once through real ttnn (mock) with validate_only: each loop
body / case branch once (conftest turns the mock check on).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax import lax

from conftest import assert_close, run_both

RNG = np.random.default_rng(7)
BF16 = ml_dtypes.bfloat16


def rand(shape, dtype=np.float32, low=-1.0, high=1.0):
    return RNG.uniform(low, high, shape).astype(dtype)


# Tests whose programs contain a matmul compare float32 with kind="matmul": the card's matrix
# unit (modelled by the sim) does not compute float32 products exactly. exact=True: results
# that only move input values (slices, updates): their bits must match.
def check(tt, cpu, f, *args, kind=None, exact=False):
    got, want = run_both(f, *args, tt_device=tt, cpu_device=cpu)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w, kind=kind, exact=exact)
    return got


def lowered(f, *args):
    """The ttnn program pjrt-tt makes for jit(f)(*args) (lowering + passes, no run)."""
    from pjrt_tt.compile_context import CompileContext
    from pjrt_tt.ingest import parse
    from pjrt_tt.lower import lower_module
    from pjrt_tt.passes import run_passes
    text = jax.jit(f).lower(*args).as_text(debug_info=True)
    ctx = CompileContext()
    return run_passes(lower_module(parse(text.encode(), "mlir"), ctx), ctx)


def test_fori_loop_carries_f32_and_i32(tt, cpu):
    def f(x, y):
        def body(i, c):
            a, b = c
            return a * 0.5 + b.astype(jnp.float32), b + i * 2 - 1
        return lax.fori_loop(0, 6, body, (x, y))
    check(tt, cpu, f, rand((3, 5)), RNG.integers(-50, 50, (3, 5)).astype(np.int32))


def test_fori_loop_bf16_odd_shape(tt, cpu):
    f = lambda x: lax.fori_loop(0, 4, lambda i, a: jnp.tanh(a * 1.5 + 0.25), x)
    check(tt, cpu, f, rand((7, 33, 65), BF16))


@pytest.mark.parametrize("limit", [100.0, -1.0], ids=["runs", "zero_trip"])
def test_while_loop_data_dependent(tt, cpu, limit):
    def f(x, lim):
        return lax.while_loop(lambda c: jnp.sum(c[1]) < lim,
                              lambda c: (c[0] + 1, c[1] * 1.7 + 0.1), (0, x))
    n, _ = check(tt, cpu, f, rand((3, 5), low=0.1, high=0.5), np.float32(limit))
    assert n == 0 if limit < 0 else n > 2


def test_scan_xs_and_stacked_outputs(tt, cpu):
    def f(h, xs, w):
        def step(h, x):
            h = jnp.tanh(h @ w + x)
            return h, (h * 2.0, jnp.sum(h, axis=-1))
        return lax.scan(step, h, xs)
    check(tt, cpu, f, rand((4, 16)), rand((9, 4, 16)), rand((16, 16), low=-0.3, high=0.3), kind="matmul")


def test_scan_reverse_i32(tt, cpu):
    f = lambda xs: lax.scan(lambda c, x: (c + x, c * x), jnp.zeros((6,), jnp.int32), xs, reverse=True)
    check(tt, cpu, f, RNG.integers(-9, 9, (5, 6)).astype(np.int32))


@pytest.mark.parametrize("p", [1.0, -1.0], ids=["true", "false"])
def test_cond(tt, cpu, p):
    def f(p, x, y):
        return lax.cond(p > 0, lambda x, y: (x @ y, jnp.sum(x)), lambda x, y: (jnp.exp(x) @ -y, x[0, 0]), x, y)
    check(tt, cpu, f, np.float32(p), rand((5, 7)), rand((7, 3)), kind="matmul")


@pytest.mark.parametrize("i", [0, 1, 2, 7, -3])
def test_switch(tt, cpu, i):
    from pjrt_tt.lower import RULES
    if "stablehlo.clamp" not in RULES:  # lax.switch clamps its index with stablehlo.clamp
        pytest.skip("stablehlo.clamp has no lowering yet (another family's op)")
    branches = [lambda x: x + 1.0, lambda x: jnp.tanh(x) * 3.0, lambda x: -x @ x.T[:, :5]]
    taken = min(max(i, 0), 2)   # lax.switch clamps the index
    # only the matmul branch goes through the matrix unit; the others are elementwise
    check(tt, cpu, lambda i, x: lax.switch(i, branches, x), np.int32(i), rand((5, 5)),
          kind="matmul" if taken == 2 else None)


def test_nested_loops_with_dynamic_trip_count(tt, cpu):
    def f(x, n):
        def outer(i, acc):
            # the inner loop's bound is the outer counter: a cond on an outer value
            step = lambda j, a: a + x[jnp.minimum(j, 2)] * (j + 1).astype(jnp.float32)
            inner = lax.fori_loop(0, i, step, acc * 0.5)
            return inner + i.astype(jnp.float32)
        return lax.fori_loop(0, n, outer, jnp.zeros((4,), jnp.float32))
    check(tt, cpu, f, rand((3, 4)), np.int32(5))


def test_branch_on_loop_counter_needs_no_device_read(tt, cpu):
    """The counter is followed on the host, so a cond on it and the (int) index math on
    it run without reading the device; the trip count is read once, before the loop."""
    def f(x, n):
        def body(i, a):
            a = lax.cond(i % 2 == 0, lambda a: a * 0.5, lambda a: jnp.tanh(a) + 1.0, a)
            return lax.dynamic_update_slice(a, a[n - 1 - i][None] * 2.0, (jnp.maximum(i - 1, 0), 0))
        return lax.fori_loop(0, n, body, x)
    args = rand((6, 5)), np.int32(5)
    check(tt, cpu, f, *args)
    text = lowered(f, *args).format()
    assert sum("host.read(" in s for s in text.splitlines()) == 1, text
    assert "switch %" in text


def test_kv_cache_decode_loop(tt, cpu):
    B, T, D = 2, 7, 16

    def f(xs, wk, wq):
        def step(t, c):
            cache, outs = c
            x = lax.dynamic_slice_in_dim(xs, t, 1, axis=1)              # (B, 1, D)
            cache = lax.dynamic_update_slice(cache, x @ wk, (0, t, 0))  # write row t
            q = x @ wq                                                  # (B, 1, D)
            scores = jnp.einsum("bqd,btd->bqt", q, cache)               # attention-like
            mask = jnp.arange(T)[None, None, :] <= t
            att = jnp.where(mask, scores, 0.0)
            out = jnp.einsum("bqt,btd->bqd", att, cache)
            return cache, lax.dynamic_update_slice(outs, out, (0, t, 0))
        zeros = jnp.zeros((B, T, D), jnp.float32)
        return lax.fori_loop(0, T, step, (zeros, zeros))
    check(tt, cpu, f, rand((B, T, D)), rand((D, D), low=-0.5, high=0.5), rand((D, D), low=-0.5, high=0.5),
          kind="matmul")


def test_dynamic_slice_and_update_clamp(tt, cpu):
    # XLA clamps start indices so the window fits: start in [0, dim - size].
    def f(x, u, i, j):
        return (lax.dynamic_slice(x, (i, j), (3, 4)),
                lax.dynamic_update_slice(x, u, (j, i)),
                lax.dynamic_index_in_dim(x, i, axis=1, keepdims=False))
    for i, j in [(2, 3), (40, -7), (-2, 100)]:
        check(tt, cpu, f, rand((9, 37)), rand((2, 5)), np.int32(i), np.int32(j), exact=True)
    xi = RNG.integers(-99, 99, (6, 5)).astype(np.int32)
    check(tt, cpu, lambda x, u, i: lax.dynamic_update_slice(x, u, (i, 1)), xi, xi[:2, :3] * 0 + 7, np.int32(3))
    check(tt, cpu, lambda x, i: lax.dynamic_slice(x, (i, 0), (2, 5)), rand((6, 5), BF16), np.int32(4), exact=True)


def test_grad_through_scan(tt, cpu):
    def loss(w, h0, xs):
        def step(h, x):
            h = jnp.tanh(h @ w + x)
            return h, jnp.sum(h * h)
        h, ys = lax.scan(step, h0, xs)
        return jnp.sum(ys) + jnp.sum(h)
    check(tt, cpu, jax.grad(loss, argnums=(0, 1)), rand((8, 8), low=-0.4, high=0.4), rand((3, 8)),
          rand((6, 3, 8)), kind="matmul")


def test_loop_dump_reads_well():
    f = lambda xs, h: lax.scan(lambda h, x: (jnp.tanh(h + x), h * 2.0), h, xs)
    text = lowered(f, rand((4, 3, 5)), rand((3, 5))).format()
    lines = text.splitlines()
    head = next(i for i, s in enumerate(lines) if " = while (" in s)
    pad = len(lines[head]) - len(lines[head].lstrip())
    assert lines[head + 1] == " " * pad + "  cond:"
    assert any(s.startswith(" " * (pad + 4) + "continue if %") for s in lines)
    assert " " * pad + "  body:" in lines and any(s.startswith(" " * (pad + 4) + "next [") for s in lines)
    assert any(s.startswith(" " * pad + "} -> ") for s in lines)
    # The counter is followed on the host: the condition and the xs index need no read.
    assert "host.lt(" in text and "host.clamp(" in text and "ttnn.slice(%" in text
    assert "host.read(" not in text, text
    # A data-dependent predicate is read from the device, marked as a host sync.
    g = lambda x: lax.while_loop(lambda x: jnp.sum(x) < 10.0, lambda x: x * 2.0, x)
    text = lowered(g, rand((3, 5))).format()
    assert sum("host.read(" in s and "(host sync)" in s for s in text.splitlines()) == 1, text


def test_unsupported_op_inside_loop_is_named(tt):
    def f(x):
        return lax.fori_loop(0, 3, lambda i, a: a + lax.rng_uniform(0.0, 1.0, (3, 3)), x)   # (no TT lowering)
    with pytest.raises(Exception, match=r"cannot lower `stablehlo\.rng` at .*test_control_flow\.py:\d+"):
        jax.jit(f)(jax.device_put(np.eye(3, dtype=np.float32), tt))


def run_mlir(text: str, *arrays):
    """Compile StableHLO text through the plugin's compiler (mock-validated) and run it
    on the TT client's target; returns the outputs as numpy arrays."""
    from pjrt_tt.dtypes import DEVICE_NUMPY
    from pjrt_tt.runtime.client import CLIENTS
    jax.devices("tt")
    client = CLIENTS[0]
    program = client.compiler.compile(text.encode(), "mlir").program
    target, chip = client.target, client.devices[0].chip
    args = [target.upload(np.asarray(a).astype(DEVICE_NUMPY[v.type.dtype]).reshape(v.type.shape), v.type, chip)
            for a, v in zip(arrays, program.inputs)]
    outs = target.bind(program, chip).run(args, [])
    got = [target.download(t, v.type) for t, v in zip(outs, program.outputs)]
    assert [target.download(t, v.type).tolist() for t, v in zip(args, program.inputs)] == \
        [np.asarray(a).astype(DEVICE_NUMPY[v.type.dtype]).reshape(v.type.shape).tolist()
         for a, v in zip(arrays, program.inputs)]  # inputs intact
    return got


IF_MODULE = """
func.func public @main(%p: tensor<i1>, %x: tensor<3x5xf32>) -> tensor<3x5xf32> {
  %r = "stablehlo.if"(%p) ({
    %a = stablehlo.exponential %x : tensor<3x5xf32>
    stablehlo.return %a : tensor<3x5xf32>
  }, {
    stablehlo.return %x : tensor<3x5xf32>
  }) : (tensor<i1>) -> tensor<3x5xf32>
  return %r : tensor<3x5xf32>
}
"""


@pytest.mark.parametrize("p", [True, False])
def test_stablehlo_if(p):
    """stablehlo.if (what torch_xla and older jax emit); the false branch returns its
    input, which the branch clones (the input stays intact)."""
    x = rand((3, 5))
    (got,) = run_mlir(IF_MODULE, np.array(p), x)
    if p:
        assert_close(got, np.exp(x))
    else:
        assert_close(got, x, exact=True)   # the input itself


SCOPED_READ_MODULE = """
func.func public @main(%i: tensor<i32>, %k: tensor<i32>, %x: tensor<7x3xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>) {
  %z = stablehlo.constant dense<0> : tensor<i32>
  %r = "stablehlo.case"(%i) ({
    %a = stablehlo.slice %x [0:2, 0:3] : (tensor<7x3xf32>) -> tensor<2x3xf32>
    stablehlo.return %a : tensor<2x3xf32>
  }, {
    %b = stablehlo.dynamic_slice %x, %k, %z, sizes = [2, 3] : (tensor<7x3xf32>, tensor<i32>, tensor<i32>) -> tensor<2x3xf32>
    stablehlo.return %b : tensor<2x3xf32>
  }) : (tensor<i32>) -> tensor<2x3xf32>
  %c = stablehlo.dynamic_slice %x, %k, %z, sizes = [2, 3] : (tensor<7x3xf32>, tensor<i32>, tensor<i32>) -> tensor<2x3xf32>
  return %r, %c : tensor<2x3xf32>, tensor<2x3xf32>
}
"""


@pytest.mark.parametrize("i", [0, 1])
def test_read_in_a_branch_is_that_branchs(i):
    """%k is read inside branch 1 and again after the case: the second read must not
    reuse the first (branch 0 may have run instead)."""
    x = rand((7, 3))
    r, c = run_mlir(SCOPED_READ_MODULE, np.int32(i), np.int32(9), x)
    assert_close(r, x[5:7] if i else x[:2], exact=True)
    assert_close(c, x[5:7], exact=True)  # start 9 clamped to 7 - 2


def test_loops_free_what_they_make(tt):
    """Each iteration's old carried tensors, the donated inits and every temporary are
    freed: device memory returns to where it was, whatever the trip count (0 included)."""
    f = jax.jit(lambda x, n: lax.fori_loop(0, n, lambda i, c: (jnp.tanh(c[0]) + 1.0, c[1] * 2.0),
                                           (x, jnp.ones((40, 40)))))
    x = jax.device_put(rand((64, 64)), tt)
    jax.block_until_ready(f(x, jax.device_put(np.int32(1), tt)))  # compiled; its outputs freed
    base = tt.memory_stats()["bytes_in_use"]
    for k in (0, 1, 6):
        n = jax.device_put(np.int32(k), tt)
        outs = f(x, n)
        assert_close(np.asarray(outs[1]), np.full((40, 40), 2.0 ** k, np.float32), exact=True)
        del outs, n
        assert tt.memory_stats()["bytes_in_use"] == base, k
