"""Indexing, sorting and window ops through jax.jit on TT against XLA:CPU: gather (embedding,
take, take_along_axis, x[:, idx], strided slicing), scatter (.at[].set/add, embedding grads),
reverse, sort / argsort / top_k, argmax / argmin / prod, pooling, cumsum, max-pool grads."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax import lax

from conftest import assert_close, run_both

RNG = np.random.default_rng(0)
BF16 = ml_dtypes.bfloat16
F32_BF16 = pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["f32", "bf16"])


def rand(shape, dtype=np.float32):
    if np.dtype(dtype) == np.int32:
        return RNG.integers(-50, 50, shape).astype(np.int32)
    return RNG.uniform(-2.0, 2.0, shape).astype(dtype)


def ids(shape, n):
    return RNG.integers(0, n, shape).astype(np.int32)


def check(tt, cpu, f, *args, exact=False):
    """exact=True: the results only move or select input values, so their bits must match."""
    got, want = run_both(f, *args, tt_device=tt, cpu_device=cpu)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w, exact=exact)


# --- gather -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, BF16, np.int32], ids=["f32", "bf16-embedding", "i32"])
def test_embedding_lookup(tt, cpu, dtype):
    check(tt, cpu, lambda t, i: t[i], rand((37, 9), dtype), ids((4, 7), 37), exact=True)


GATHERS = {
    "take_axis1": (lambda x, i: jnp.take(x, i, axis=1), (5, 10), lambda: ids((3,), 10)),
    "take_along_axis": (lambda x, i: jnp.take_along_axis(x, i, axis=1), (5, 10), lambda: ids((5, 3), 10)),
    "column_index": (lambda x, i: x[:, i], (3, 33, 7), lambda: ids((4, 2), 33)),
    "traced_scalar_index": (lambda x, i: x[i, 2], (6, 7, 3), lambda: np.int32(4)),
    "negative_and_oob_ids": (lambda x, i: x[i], (9, 5), lambda: np.array([-1, 3, 12, -20], np.int32)),
    "two_index_arrays": (lambda x, i: x[i, i + 1], (7, 8, 5), lambda: ids((3,), 6)),
}


@pytest.mark.parametrize("name", GATHERS)
def test_gather(tt, cpu, name):
    f, shape, make = GATHERS[name]
    check(tt, cpu, f, rand(shape), make(), exact=True)


@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["f32", "bf16-embedding"])
def test_uint32_indices_beyond_int32(tt, cpu, dtype):
    """Unsigned start indices (torch_xla's embedding ids, uint64 carried as uint32): values of
    2**31 and more clamp to the last row in a gather and are dropped by a scatter, as in XLA."""
    i = np.array([[0], [3], [2**31], [2**32 - 1], [8]], np.uint32)
    dn = lax.GatherDimensionNumbers(offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,))
    gather = lambda x, i: lax.gather(x, i, dn, (1, 5), mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)  # noqa: E731
    check(tt, cpu, gather, rand((9, 5), dtype), i, exact=True)
    sdn = lax.ScatterDimensionNumbers(update_window_dims=(1,), inserted_window_dims=(0,),
                                      scatter_dims_to_operand_dims=(0,))
    scatter = lambda x, i, u: lax.scatter_add(x, i, u, sdn, mode=lax.GatherScatterMode.FILL_OR_DROP)  # noqa: E731
    check(tt, cpu, scatter, rand((9, 5)), i, rand((5, 5)))


def test_strided_slicing_and_flip(tt, cpu):
    x = rand((7, 10, 3))
    check(tt, cpu, lambda x: x[::2, ::-1], x, exact=True)
    check(tt, cpu, lambda x: (jnp.flip(x, (0, 2)), jnp.flip(x[0, 0])), x, exact=True)


def test_grad_through_gather(tt, cpu):
    table, i = rand((11, 6)), ids((3, 4), 11)
    i[0, :2] = 5  # repeated ids must accumulate
    check(tt, cpu, jax.grad(lambda t, i: (t[i] ** 2).sum()), table, i)


@F32_BF16
def test_cross_entropy_and_grad(tt, cpu, dtype):
    """take_along_axis and its gradient map to ttnn.gather / scatter_add along the axis."""
    import optax
    logits, labels = rand((6, 5, 37), dtype), ids((6, 5), 37)
    loss = lambda l, y: optax.softmax_cross_entropy_with_integer_labels(l.astype(jnp.float32), y).mean()  # noqa: E731
    check(tt, cpu, jax.value_and_grad(loss), logits, labels)


# --- scatter ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, BF16, np.int32], ids=["f32", "bf16", "i32"])
@pytest.mark.parametrize("mode", ["set", "add", "max", "min"])
def test_scatter(tt, cpu, mode, dtype):
    x, u = rand((10, 7), dtype), rand((3, 7), dtype)
    i = np.array([8, 1, 4] if mode in ("set", "add") else [8, 1, 8], np.int32)  # set: unique ids
    check(tt, cpu, lambda x, i, u: getattr(x.at[i], mode)(u), x, i, u, exact=mode != "add")  # add rounds


@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["f32", "bf16"])
@pytest.mark.parametrize("mode", ["subtract", "multiply"])
def test_scatter_subtract_and_multiply(tt, cpu, mode, dtype):
    """Duplicate ids included; both round once per update, in another order than XLA's."""
    x, u = rand((10, 7), dtype), rand((4, 7), dtype)
    check(tt, cpu, lambda x, i, u: getattr(x.at[i], mode)(u), x, np.array([8, 1, 8, 4], np.int32), u)


def test_scatter_integer_subtract_and_boolean_or_and(tt, cpu):
    i = np.array([5, 0, 5, 2], np.int32)
    x, u = RNG.integers(-99, 99, (6, 3), dtype=np.int32), RNG.integers(-99, 99, (4, 3), dtype=np.int32)
    check(tt, cpu, lambda x, i, u: x.at[i].subtract(u), x, i, u, exact=True)
    b, ub = RNG.random((6, 3)) > 0.5, RNG.random((4, 3)) > 0.5
    check(tt, cpu, lambda x, i, u: (x.at[i].max(u), x.at[i].min(u)), b, i, ub, exact=True)


def test_scatter_elements_and_out_of_bounds(tt, cpu):
    x = rand((6, 5))
    i = np.array([[0, 4], [5, 0], [7, 1], [2, -9]], np.int32)  # two rows out of bounds: dropped
    check(tt, cpu, lambda x, i: x.at[i[:, 0], i[:, 1]].add(3.0), x, i)
    check(tt, cpu, lambda x, i: x.at[:, i[:, 1]].set(-1.0), x, i, exact=True)


SCATTER_ROW = lax.ScatterDimensionNumbers(update_window_dims=(1,), inserted_window_dims=(0,),
                                          scatter_dims_to_operand_dims=(0,))


def test_scatter_with_any_elementwise_body(tt, cpu):
    """lax.scatter_apply and .at[].apply: a body applied once per update, in order, so a
    repeated index gets it twice; out-of-bounds updates dropped (ingest/scatters.py)."""
    x = np.linspace(-1.0, 2.0, 10).astype(np.float32)
    i = np.array([[0], [2], [2], [9], [12]], np.int32)      # 2 twice, 12 out of bounds
    check(tt, cpu, lambda x, i: lax.scatter_apply(x, i, jnp.sin, lax.ScatterDimensionNumbers((), (0,), (0,)),
                                                  update_shape=(5,), mode="drop"), x, i)
    check(tt, cpu, lambda x, i: lax.scatter_apply(x, i, jnp.exp, SCATTER_ROW, update_shape=(4, 5)),
          rand((10, 5)), np.array([[0], [2], [1], [0]], np.int32))
    check(tt, cpu, lambda x, i: x.at[i].apply(jnp.tanh), rand((8, 3), BF16), np.array([3, 3, 0], np.int32))
    # vmap: the scatter's batching dims, each update at its own batch row; integers exact
    xi, ii = RNG.integers(-50, 50, (3, 20)).astype(np.int32), np.array([[1, 1, 5], [0, 19, 19], [3, 4, 3]], np.int32)
    check(tt, cpu, jax.vmap(lambda x, i: x.at[i].apply(lambda v: v * 3 - 1)), xi, ii, exact=True)
    # declared unique: all updates at once, any number of them
    check(tt, cpu, lambda x, i: x.at[i].apply(jnp.sin, unique_indices=True),
          rand((300,)), (np.arange(100, dtype=np.int32) * 3)[::-1].copy())


def test_scatter_with_any_body_and_many_updates_is_refused(tt):
    with pytest.raises(Exception, match=r"a scatter with a body \(stablehlo.sine\) and 100 updates: pjrt-tt "
                                        r"applies such a scatter one update at a time \(at most 64\)"):
        jax.jit(lambda x, i: x.at[i].apply(jnp.sin))(jax.device_put(rand((50,)), tt),
                                                     jax.device_put(np.arange(100, dtype=np.int32) % 50, tt))


# A scatter of two operands at once, whose body reads the updates: it keeps the larger value
# and its tag (no jax API emits one; XLA's own passes and other frameworks do).
VARIADIC_SCATTER = """
func.func @main(%x: tensor<6xf32>, %y: tensor<6xi32>, %i: tensor<4x1xi32>, %u: tensor<4xf32>,
                %v: tensor<4xi32>) -> (tensor<6xf32>, tensor<6xi32>) {
  %r:2 = "stablehlo.scatter"(%x, %y, %i, %u, %v) ({
    ^bb0(%a: tensor<f32>, %b: tensor<i32>, %c: tensor<f32>, %d: tensor<i32>):
      %gt = stablehlo.compare GT, %c, %a : (tensor<f32>, tensor<f32>) -> tensor<i1>
      %m = stablehlo.select %gt, %c, %a : tensor<i1>, tensor<f32>
      %n = stablehlo.select %gt, %d, %b : tensor<i1>, tensor<i32>
      stablehlo.return %m, %n : tensor<f32>, tensor<i32>
  }) {scatter_dimension_numbers = #stablehlo.scatter<inserted_window_dims = [0],
      scatter_dims_to_operand_dims = [0], index_vector_dim = 1>}
     : (tensor<6xf32>, tensor<6xi32>, tensor<4x1xi32>, tensor<4xf32>, tensor<4xi32>) -> (tensor<6xf32>, tensor<6xi32>)
  return %r#0, %r#1 : tensor<6xf32>, tensor<6xi32>
}
"""


def test_scatter_of_several_operands(tt, cpu):
    from jax._src.lib import xla_client
    args = [np.arange(6, dtype=np.float32), np.zeros(6, np.int32), np.array([[1], [3], [1], [9]], np.int32),
            np.array([5, -1, 7, 2], np.float32), np.array([10, 11, 12, 13], np.int32)]
    results = []
    for device in (tt, cpu):
        exe = device.client.compile_and_load(VARIADIC_SCATTER, xla_client.DeviceList((device,)),
                                             xla_client.CompileOptions())
        results.append([np.asarray(r) for r in exe.execute([jax.device_put(a, device) for a in args])])
    got, want = results
    np.testing.assert_array_equal(want[0], [0, 7, 2, 3, 4, 5])   # 1: 5 then 7 (both larger); 3: -1 < 3
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# --- sort -------------------------------------------------------------------------------

@F32_BF16
def test_sort_argsort_topk(tt, cpu, dtype):
    x = np.stack([RNG.permutation(40) for _ in range(5)]).astype(dtype) / 8  # no ties
    check(tt, cpu, lambda x: (jnp.sort(x, axis=1), jnp.argsort(x, axis=1)), x, exact=True)
    check(tt, cpu, lambda x: (jnp.sort(x, axis=0), jnp.argsort(-x, axis=0)), x, exact=True)
    check(tt, cpu, lambda x: lax.top_k(x, 3), x, exact=True)


def test_sort_int_and_payload(tt, cpu):
    k = np.stack([RNG.permutation(13) for _ in range(3)]).astype(np.int32) - 6
    v = rand((3, 13))
    check(tt, cpu, lambda k, v: lax.sort((k, v), dimension=1, num_keys=1), k, v, exact=True)
    check(tt, cpu, lambda k: (jnp.sort(k[0]), lax.top_k(k, 2)), k)


def test_int32_keys_past_2_24_sort_exactly(tt, cpu):
    """float32 merges distinct int32 keys past 2**24 (16777217 -> 16777216): sort, argsort
    (both directions, stable ties) and top_k order them exactly."""
    edge = np.array([16777217, 16777216, -16777217, -16777216, 2**31 - 1, -2**31, 2**30 + 1, 2**30, 7, 7, -1, 0],
                    np.int32)
    x = np.stack([RNG.permutation(edge), RNG.integers(-2**31, 2**31 - 1, 12, dtype=np.int64).astype(np.int32)])
    check(tt, cpu, lambda x: (jnp.sort(x, axis=1), jnp.argsort(x, axis=1, stable=True),
                              jnp.argsort(x, axis=1, descending=True, stable=True), jnp.sort(x, axis=0)), x, exact=True)
    check(tt, cpu, lambda x: lax.top_k(x, 5), x, exact=True)


def test_approx_top_k_is_the_exact_top_k(tt, cpu):
    """jax's approx_max_k / approx_min_k (the ApproxTopK custom call, its direction read from
    the comparator function): the exact top k along the reduction dim, ties first-come."""
    x = rand((5, 40))
    x[0, 3] = x[0, 7] = 9.0
    check(tt, cpu, lambda x: (lax.approx_max_k(x, 4), lax.approx_min_k(x, 2, reduction_dimension=0),
                              lax.approx_max_k(x.astype(jnp.bfloat16), 3)), x, exact=True)


def test_uint32_keys_sort_exactly(tt, cpu):
    """uint32 keys (jax.random's bits, hashes) in unsigned order: past 2**31 and 2**24 too."""
    edge = np.array([2**32 - 1, 2**31, 2**31 - 1, 16777217, 16777216, 4000000000, 0, 5, 5, 65535, 65536], np.uint32)
    x = np.stack([RNG.permutation(edge), RNG.integers(0, 2**32, 11, dtype=np.int64).astype(np.uint32)])
    check(tt, cpu, lambda x: (jnp.sort(x, axis=1), jnp.argsort(x, axis=1, stable=True),
                              jnp.argsort(x, axis=1, descending=True, stable=True), lax.top_k(x, 4)), x, exact=True)


def test_multi_key_sorts_are_lexicographic(tt, cpu):
    """lax.sort(num_keys=k) (jnp.lexsort's form): the first key decides, ties go to the next,
    then to the original order; float keys with ties and a signed zero, int32 keys past 2**24,
    a bfloat16 key, payloads carried along. One stable sort per key, last key first."""
    f = RNG.integers(-3, 3, (3, 40)).astype(np.float32) * 0.5   # many ties in each key
    f[0, 5], f[0, 6] = -0.0, 0.0
    i = RNG.integers(0, 3, (3, 40)).astype(np.int32) * 16777217
    check(tt, cpu, lambda f, i: (lax.sort(tuple(f), num_keys=2), lax.sort(tuple(f), num_keys=3),
                                 lax.sort(tuple(i), num_keys=3),
                                 lax.sort((i[0], f[1].astype(jnp.bfloat16), f[2]), num_keys=2),
                                 jnp.lexsort((f[1], i[0])), lax.sort((f[:2], i[:2]), dimension=1, num_keys=2)),
          f, i, exact=True)


# --- reductions -------------------------------------------------------------------------

def test_reduce_over_a_pytree_is_one_reduce_per_operand(tt, cpu):
    """lax.reduce over several operands whose results each combine their own operand (a sum
    and a sum, a max and a min, a product and an integer max) runs as one reduce per operand
    (ingest/reductions.py); argmax, whose index follows the values, stays one reduce."""
    x, y = rand((4, 9)), RNG.integers(0, 100, (4, 9)).astype(np.int32)
    check(tt, cpu, lambda x, y: (lax.reduce((x, y), (0.0, 0), lambda a, b: (a[0] + b[0], a[1] + b[1]), (1,)),
                                 lax.reduce((x, x), (-jnp.inf, jnp.inf), lambda a, b: (jnp.maximum(a[0], b[0]),
                                                                                      jnp.minimum(a[1], b[1])), (0,)),
                                 lax.reduce({"a": x, "b": y}, {"a": 1.0, "b": 0}, lambda a, b: {
                                     "a": a["a"] * b["a"], "b": jnp.maximum(a["b"], b["b"])}, (1,)),
                                 jnp.argmax(x, 1)), x, y)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=["u8", "u16"])
def test_uint8_uint16_reductions_windows_and_sorts(tt, cpu, dtype):
    """ttnn's reductions, binary and cumulative ops refuse uint8 / uint16 (an INTERNAL error
    before): computed in uint32 and wrapped back; an unsigned type's 0 / max is the identity
    of max / min (argmax's init); uint8 / uint16 keys sort in float32 (exact)."""
    x = RNG.integers(0, np.iinfo(dtype).max + 1, (5, 7)).astype(dtype)
    check(tt, cpu, lambda x: (jnp.max(x, 1), jnp.min(x, 0), jnp.sum(x, 1, dtype=dtype), jnp.prod(x, 1, dtype=dtype),
                              jnp.argmax(x, 1), jnp.argmin(x, 0), lax.reduce(x, dtype(200), lax.max, (1,)),
                              lax.cummax(x, axis=1), lax.cumsum(x, axis=0), jnp.sort(x, axis=1), jnp.argsort(x, axis=0)),
          x, exact=True)


@pytest.mark.parametrize("dtype", [np.float32, BF16, np.int32], ids=["f32", "bf16", "i32"])
def test_argmax_argmin(tt, cpu, dtype):
    x = np.stack([RNG.permutation(33) for _ in range(7)]).astype(dtype)  # no ties
    check(tt, cpu, lambda x: (jnp.argmax(x, 1), jnp.argmin(x, 0), jnp.argmax(x)), x)
    check(tt, cpu, lambda x: (jnp.max(x, 1), jnp.argmax(x, 1)), x, exact=True)


def _arg_pair(better):
    """A (value, index) reducer keeping the better value, the smaller index on ties: the form
    XLA's partitioner writes to combine the chips' argmax pairs."""
    def body(a, b):
        keep = better(a[0], b[0]) | ((a[0] == b[0]) & (a[1] < b[1]))
        return lax.select(keep, a[0], b[0]), lax.select(keep, a[1], b[1])
    return body


@pytest.mark.parametrize("dtype", [np.float32, np.int32], ids=["f32", "i32"])
def test_argmax_argmin_of_any_index_operand(tt, cpu, dtype):
    """(value, index) reductions whose index operand is no iota along the reduced dim, or
    over several dims: ties included (the smallest index wins), exact."""
    x = RNG.integers(0, 4, (6, 8)).astype(dtype)   # many ties
    idx = RNG.permutation(48).reshape(6, 8).astype(np.int32)
    lo_, hi_ = (np.float32(-np.inf), np.float32(np.inf)) if dtype == np.float32 else (dtype(-2**31), dtype(2**31 - 1))
    check(tt, cpu, lambda x, i: (lax.reduce((x, i), (lo_, np.int32(0)), _arg_pair(lax.gt), (1,)),
                                 lax.reduce((x, i), (hi_, np.int32(0)), _arg_pair(lax.lt), (0, 1)),
                                 jnp.argmax(x.reshape(2, 3, 8), axis=None)),
          x, idx, exact=True)


@F32_BF16
def test_prod(tt, cpu, dtype):
    x = RNG.uniform(0.8, 1.2, (3, 5, 7)).astype(dtype)
    check(tt, cpu, lambda x: (jnp.prod(x, 1), jnp.prod(x, (0, 2)), jnp.prod(x)), x)


# --- windows ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, BF16, np.int32], ids=["f32", "bf16", "i32"])
def test_cumsum(tt, cpu, dtype):
    x = rand((5, 11), dtype)
    check(tt, cpu, lambda x: (jnp.cumsum(x, 1), jnp.cumsum(x, 0), lax.cumsum(x, 1, reverse=True)), x)


@F32_BF16
def test_cumprod(tt, cpu, dtype):
    x = RNG.uniform(0.8, 1.2, (4, 9)).astype(dtype)
    check(tt, cpu, lambda x: (jnp.cumprod(x, 1), lax.cumprod(x, 0, reverse=True)), x)


@F32_BF16
def test_pooling(tt, cpu, dtype):
    import flax.linen as nn
    x = rand((2, 9, 7, 3), dtype)
    check(tt, cpu, lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)), x, exact=True)
    check(tt, cpu, lambda x: nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME"), x, exact=True)
    check(tt, cpu, lambda x: nn.avg_pool(x, (2, 3), strides=(1, 2)), x)
    check(tt, cpu, lambda x: lax.reduce_window(x, jnp.inf, lax.min, (1, 2, 2, 1), (1, 1, 1, 1), "VALID",
                                               window_dilation=(1, 2, 1, 1)), x, exact=True)
    check(tt, cpu, lambda x: lax.cummax(x, axis=1), x, exact=True)


def test_reduce_window_with_any_elementwise_body(tt, cpu):
    """Bodies other than one add / max / min, written out window element by window element
    (ingest/reductions.py): cumulative logsumexp both ways, logaddexp and product windows, and
    two operands reduced together (a max and a sum; an argmax pool whose body calls jnp's
    outlined `where`)."""
    x, y = rand((4, 9)), rand((4, 9))

    def argmax_pool(x):
        def body(a, b):
            pick = a[0] >= b[0]
            return jnp.where(pick, a[0], b[0]), jnp.where(pick, a[1], b[1])
        return lax.reduce_window((x, lax.broadcasted_iota(jnp.int32, x.shape, 1)), (-jnp.inf, 0), body,
                                 (1, 3), (1, 2), "VALID")

    check(tt, cpu, lambda x: (lax.cumlogsumexp(x, axis=1), lax.cumlogsumexp(x, axis=0, reverse=True),
                              lax.reduce_window(x, -jnp.inf, jnp.logaddexp, (2, 3), (1, 2), "SAME"),
                              lax.reduce_window(x, 1.0, lax.mul, (2, 2), (1, 1), "VALID")), x)
    check(tt, cpu, lambda x, y: (lax.reduce_window((x, y), (-jnp.inf, 0.0), lambda a, b: (
        jnp.maximum(a[0], b[0]), a[1] + b[1]), (1, 3), (1, 1), "SAME"), argmax_pool(x)), x, y, exact=True)
    # the jvp of a custom max window with base dilation: jax's serialized program hoists the
    # body's constants above it (lax_test's testReduceWindowCustomSameAsMonoid was INTERNAL)
    check(tt, cpu, lambda x, y: jax.jvp(lambda v: lax.reduce_window(v, -jnp.inf, lambda a, b: lax.max(a, b), (2, 1),
                                                                    (2, 1), "VALID", (2, 3)), (x,), (y,)),
          x, y, exact=True)


def test_reduce_windows_of_more_than_64_elements_with_any_body(tt, cpu):
    """Windows too large to write out element by element (ingest/reductions.MAX_ELEMENTS)
    run in log2 steps per dim (UNIMPLEMENTED before): a cumulative logsumexp over 300 elements both ways, a product
    over 2-D windows with strides and SAME padding, an argmax pool of 70 (value and index,
    ties to the first), window dilation with uneven padding, base dilation; within float32
    rounding of XLA:CPU's element-by-element order (the argmax exactly)."""
    x = rand((3, 300))
    x[1, 10] = x[1, 40] = 9.0   # a tie inside one argmax window

    def argmax_pool(x):
        def body(a, b):
            return jnp.maximum(a[0], b[0]), jnp.where(a[0] >= b[0], a[1], b[1])
        return lax.reduce_window((x, lax.broadcasted_iota(jnp.int32, x.shape, 1)), (-jnp.inf, 0), body,
                                 (1, 70), (1, 7), "VALID")

    check(tt, cpu, lambda x: (lax.cumlogsumexp(x, axis=1), lax.cumlogsumexp(x, axis=1, reverse=True),
                              lax.reduce_window(x[:, :100] * 0.1 + 1, 1.0, lax.mul, (2, 40), (1, 3), "SAME"),
                              lax.reduce_window(x, -jnp.inf, jnp.logaddexp, (1, 33), (1, 2), ((0, 0), (5, 9)),
                                                window_dilation=(1, 3)),
                              lax.reduce_window(x[:, :50], 0.5, jnp.logaddexp, (1, 70), (1, 1), ((0, 0), (3, 4)),
                                                base_dilation=(1, 2))), x)
    check(tt, cpu, argmax_pool, x, exact=True)
    # add / max windows that large too (the lowering's one slice per element stops at 64):
    # a 9x9 max pool, a 10x10 average pool, a cummax over 100
    img = rand((2, 20, 20, 3))
    check(tt, cpu, lambda v: (lax.reduce_window(v, -jnp.inf, lax.max, (1, 9, 9, 1), (1, 2, 2, 1), "SAME"),
                              lax.cummax(v.reshape(2, -1)[:, :100], axis=1)), img, exact=True)
    check(tt, cpu, lambda v: lax.reduce_window(v, 0.0, lax.add, (1, 10, 10, 1), (1, 1, 1, 1), "VALID") / 100, img)


def test_reduce_window_inits_that_are_no_identity_and_rank_0(tt, cpu):
    """An init that is no identity (a constant, an argument) folds in once and padding takes
    no part, as XLA computes it (named bodies and written-out ones alike); a rank-0 window;
    base dilation (written out); uint8 windows in uint32. INTERNAL or UNIMPLEMENTED before."""
    x = rand((4, 9))
    u8 = RNG.integers(0, 255, (4, 5)).astype(np.uint8)
    check(tt, cpu, lambda x, i: (lax.reduce_window(x, 5.0, lax.add, (2, 3), (1, 1), "SAME"),
                                 lax.reduce_window(x, i, lax.max, (2, 3), (1, 2), "SAME"),
                                 lax.reduce_window(x, i, lax.add, (1, 9), (1, 1), ((0, 0), (8, 0))),
                                 lax.reduce_window(x, 0.5, jnp.logaddexp, (2, 3), (1, 1), "SAME"),
                                 lax.reduce_window((x, x), (2.0, 1.0), lambda a, b: (a[0] + b[0], a[1] * b[1]),
                                                   (2, 2), (1, 1), "SAME"),
                                 lax.reduce_window(i, 0.0, lax.add, (), (), ()),
                                 # base dilation: its holes, like padding, take no part
                                 lax.reduce_window(x, 0.0, lax.add, (2, 3), (1, 1), "VALID", base_dilation=(2, 1)),
                                 lax.reduce_window(x, 1.5, lax.add, (3, 2), (2, 1), "SAME", base_dilation=(2, 2)),
                                 lax.reduce_window(x, -jnp.inf, lax.max, (2, 2), (1, 2), ((1, 1), (0, 1)),
                                                   base_dilation=(1, 2))), x, np.float32(0.3))
    check(tt, cpu, lambda u: lax.reduce_window(u, np.uint8(7), lax.add, (2, 2), (1, 1), "SAME"), u8, exact=True)


def test_empty_concatenate_and_reduce_and_uint8_dot(tt, cpu):
    """ttnn.concat takes no empty parts, its reductions of an empty tensor keep the wrong
    dims, and ttnn.multiply takes no uint8 (INTERNAL errors before)."""
    a, b = RNG.integers(0, 255, (3, 4)).astype(np.uint8), RNG.integers(0, 255, (4, 5)).astype(np.uint8)
    check(tt, cpu, lambda e, a, b: (jnp.concatenate([e, e], axis=1), jnp.concatenate([e, e], axis=0),
                                    lax.dot_general(a, b, (((1,), (0,)), ((), ()))),
                                    jnp.max(e.T, axis=1, keepdims=True), jnp.min(e.T, axis=1)),   # kept dim empty
          np.ones((10, 0), np.uint32), a, b, exact=True)


@pytest.mark.parametrize("method", ["scan", "compare_all", "sort"])
def test_searchsorted_in_total_order(tt, cpu, method):
    """jnp.searchsorted compares in IEEE's total order (TOTALORDER: NaN above +inf, -0 below
    +0): written as integer comparisons of order keys (ingest/total_order.py). ttnn's float
    compare had NaN unordered and put queries at wrong indices (scan: 7 for 3.0 of 4;
    lax_numpy_test's testSearchsortedNans)."""
    a = np.array([-np.inf, -1, -0.0, 0.0, 1, np.inf, np.nan, np.nan], np.float32)
    q = np.array([-np.inf, -2, 0.0, -0.0, 0.5, 3, np.nan, np.inf, -np.nan], np.float32)
    check(tt, cpu, lambda a, q: [jnp.searchsorted(a.astype(dt), q.astype(dt), side=side, method=method)
                                 for dt in (jnp.float32, jnp.bfloat16) for side in ("left", "right")],
          a, q, exact=True)


def test_zero_size_broadcasts_and_uint8_scatter(tt, cpu):
    """A broadcast whose source has an empty dim (jnp.eye(0), jnp.tri(0), repeat and
    associative_scan of nothing; nn_test's orthogonal initializer of a 0 x 0 matrix) and a
    scatter into uint8 (jnp.insert) were INTERNAL errors (a division by the empty dim's 0;
    no zero splat for uint8, and ttnn.scatter has no uint8 tile), found by jax's
    lax_numpy_test and nn_test."""
    x = np.arange(5, dtype=np.float32)
    check(tt, cpu, lambda x: (jnp.eye(0), jnp.eye(1, 0), jnp.tri(0), jnp.repeat(x[:0], 3),
                              jnp.broadcast_to(x[:0], (3, 0)) + 1, jax.lax.associative_scan(jnp.add, x[:0]),
                              jnp.insert(x.astype(jnp.uint8), 2, jnp.uint8(7)),
                              jnp.insert(x.astype(jnp.uint16), 1, x[:2].astype(jnp.uint16))), x, exact=True)


def test_max_pool_grad(tt, cpu):
    import flax.linen as nn
    x = rand((2, 9, 7, 3))
    x[0, 0, 0, 0] = x[0, 0, 1, 0] = 5.0  # a tie inside one window: the first one takes it
    for window, strides, padding in [((2, 2), (2, 2), "VALID"), ((3, 3), (2, 2), "SAME")]:
        check(tt, cpu, jax.grad(lambda x: (nn.max_pool(x, window, strides, padding) ** 2).sum()), x)


def test_integer_scatter_multiply_and_segment_prod(tt, cpu):
    """Integer products of scattered updates (duplicate indices included) are exact and wrap
    as XLA's: halves multiplied over the updates axis (ttnn.prod takes floats only)."""
    x = RNG.integers(-5, 6, (7, 3)).astype(np.int32)
    i = RNG.integers(0, 7, (12,)).astype(np.int32)
    u = RNG.integers(-3, 4, (12, 3)).astype(np.int32)
    check(tt, cpu, lambda x, i, u: (x.at[i].multiply(u), x.at[i].multiply(u * 100003),
                                    jax.ops.segment_prod(u, i, num_segments=7)), x, i, u, exact=True)


def test_rejections_are_clear(tt):
    """A max-pool gradient over windows of more than 64 elements (select_and_scatter, one
    slice per window element) is refused naming the op and the size."""
    import flax.linen as nn
    x = jax.device_put(rand((1, 12, 12, 2)), tt)
    with pytest.raises(Exception, match=r"`stablehlo.select_and_scatter` .*windows of 81 elements"):
        jax.jit(jax.grad(lambda x: nn.max_pool(x, (9, 9), (3, 3), "VALID").sum()))(x)


@pytest.mark.parametrize("config", [[(1, 2, 0), (0, 3, 0)], [(1, 2, 1), (0, 3, 2)], [(-1, 2, 1), (2, -1, 0)],
                                    [(0, 0, 0), (-2, -1, 1)]],
                         ids=["edge", "interior", "negative after interior", "interior then cut both ends"])
def test_pad_with_a_value_computed_at_run_time(tt, cpu, config):
    """The pad value is an argument (jnp.pad(x, constant_values=v) with a traced v; a float16
    pad value rounded on the device): the blocks are it broadcast. Negative edges cut after
    the interior padding, as StableHLO orders them (they were cut first: a wrong shape)."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    got, want = run_both(lambda a, v: lax.pad(a, v * 2, config), x, np.float32(1.5), tt_device=tt, cpu_device=cpu)
    assert_close(got, want, exact=True)
