"""Each op family through jax.jit on TT against XLA:CPU, with odd (non-tile) shapes."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from conftest import assert_close, run_both

RNG = np.random.default_rng(0)
SHAPES = [(3, 5), (7, 33, 65)]
BF16 = ml_dtypes.bfloat16


def rand(shape, dtype=np.float32, low=-2.0, high=2.0):
    return RNG.uniform(low, high, shape).astype(dtype)


def check(tt, cpu, f, *args, kind=None, exact=False, **jit_kwargs):
    """kind="matmul": float32 through the matrix unit; exact=True: every result is an input
    value moved, selected, or rounded once (a conversion), so its bits must match CPU's."""
    got, want = run_both(f, *args, tt_device=tt, cpu_device=cpu, **jit_kwargs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w, kind=kind, exact=exact)


UNARY = {
    "neg": (jnp.negative, -2, 2), "abs": (jnp.abs, -2, 2), "exp": (jnp.exp, -3, 3),
    "log": (jnp.log, 0.1, 5), "sqrt": (jnp.sqrt, 0.1, 5), "rsqrt": (jax.lax.rsqrt, 0.1, 5),
    "tanh": (jnp.tanh, -3, 3), "logistic": (jax.nn.sigmoid, -5, 5),
}


@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["f32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", UNARY)
def test_unary(tt, cpu, name, shape, dtype):
    fn, lo, hi = UNARY[name]
    check(tt, cpu, fn, rand(shape, dtype, lo, hi), exact=name in ("neg", "abs"))


BINARY = {
    "add": jnp.add, "sub": jnp.subtract, "mul": jnp.multiply, "div": jnp.divide,
    "max": jnp.maximum, "min": jnp.minimum, "pow": jnp.power,
}


@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["f32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary(tt, cpu, name, shape, dtype):
    lo = 0.5 if name in ("div", "pow") else -2.0
    check(tt, cpu, BINARY[name], rand(shape, dtype, lo, 2.0), rand(shape, dtype, lo, 2.0),
          exact=name in ("max", "min"))


@pytest.mark.parametrize("name", BINARY)
def test_binary_with_broadcast_and_scalar(tt, cpu, name):
    f = BINARY[name]
    x, row, col = rand((7, 33, 65), low=0.5), rand((65,), low=0.5), rand((33, 1), low=0.5)
    check(tt, cpu, lambda x, r, c: (f(x, r), f(c, x), f(x, 1.5), f(2.0, x)), x, row, col)


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32], ids=["f32", "i32"])
def test_compare_and_select(tt, cpu, op, dtype):
    cmp = getattr(jnp, {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal",
                        "gt": "greater", "ge": "greater_equal"}[op])
    a = RNG.integers(-3, 3, (9, 37)).astype(dtype)
    b = RNG.integers(-3, 3, (9, 37)).astype(dtype)
    check(tt, cpu, lambda a, b: (cmp(a, b), jnp.where(cmp(a, b), a, b), cmp(a, 1)), a, b, exact=True)


def test_integer_arithmetic(tt, cpu):
    a = RNG.integers(-1000, 1000, (5, 40)).astype(np.int32)
    b = RNG.integers(-1000, 1000, (5, 40)).astype(np.int32)
    check(tt, cpu, lambda a, b: (a + b, a - b, jnp.maximum(a, b), jnp.minimum(a, b), -a), a, b)


def test_logical_ops(tt, cpu):
    a, b = RNG.random((6, 70)) > 0.5, RNG.random((6, 70)) > 0.5
    check(tt, cpu, lambda a, b: (a & b, a | b, a ^ b, ~a), a, b)


DOTS = {
    "matmul": ("ij,jk->ik", (3, 5), (5, 4)),
    "matmul_odd": ("ij,jk->ik", (37, 70), (70, 33)),
    "batched": ("bij,bjk->bik", (4, 3, 5), (4, 5, 6)),
    "batched_4d": ("abij,abjk->abik", (2, 3, 7, 9), (2, 3, 9, 5)),
    "transposed_rhs": ("ij,kj->ik", (6, 10), (8, 10)),
    "transposed_lhs": ("ji,jk->ik", (10, 6), (10, 8)),
    "vector_dot": ("i,i->", (50,), (50,)),
    "matvec": ("ij,j->i", (7, 50), (50,)),
    "vecmat": ("i,ij->j", (50,), (50, 7)),
    "outer": ("i,j->ij", (5,), (6,)),
    "multi_contract": ("bhqd,bhkd->bhqk", (2, 3, 5, 16), (2, 3, 7, 16)),
}


# The chip's float32 matmul is approximate: its source registers hold float32 operands
# as TF32 (10 mantissa bits) and Wormhole's default fidelity for f32 is HiFi3 (see
# docs/numerics.md), so float32 matmuls are held to the "matmul" bounds (conftest.TOLERANCES).
@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", DOTS)
def test_dot_general(tt, cpu, name, dtype):
    spec, sa, sb = DOTS[name]
    check(tt, cpu, lambda a, b: jnp.einsum(spec, a, b), rand(sa, dtype), rand(sb, dtype), kind="matmul")


def test_matmul_mixed_precision(tt, cpu):
    # bf16 operands, f32 result: ttnn's default for bf16 inputs is HiFi2 (docs/numerics.md)
    a, b = rand((9, 40), BF16), rand((40, 11), BF16)
    check(tt, cpu, lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32), a, b, kind="matmul")


# Integer dots: the matrix unit multiplies floats only, so these run as exact elementwise
# products and sums (lower/matmul.py), wrapping around like XLA's. Values past 2^24 and
# products past 2^31 would be wrong through a float matmul.
INT_DOTS = {
    "matmul_wraps": (lambda a, b: a @ b, (5, 70), (70, 3), np.int32, -2**20, 2**20),
    "batched": (lambda a, b: jnp.einsum("bij,bjk->bik", a, b), (2, 4, 6), (2, 6, 5), np.int32, -100, 100),
    "uint32": (lambda a, b: a @ b, (3, 9), (9, 2), np.uint32, 0, 2**31),
    "int8_vector": (jnp.dot, (40,), (40,), np.int8, -50, 50),
    "int32_from_int8": (lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.int32), (6, 33), (33, 4),
                        np.int8, -128, 127),
}


@pytest.mark.parametrize("name", INT_DOTS)
def test_integer_dots_are_exact(tt, cpu, name):
    fn, sa, sb, dtype, low, high = INT_DOTS[name]
    a, b = (RNG.integers(low, high, s, dtype=dtype) for s in (sa, sb))
    check(tt, cpu, fn, a, b, exact=True)


def test_integer_dot_in_chunks_is_exact(tt, cpu, monkeypatch):
    """K split into chunks whose partial sums add up (a small chunk forced)."""
    from pjrt_tt.lower import matmul
    monkeypatch.setattr(matmul, "INTEGER_PRODUCT_ELEMENTS", 64)
    a, b = RNG.integers(-1000, 1000, (4, 37), dtype=np.int32), RNG.integers(-1000, 1000, (37, 5), dtype=np.int32)
    check(tt, cpu, lambda a, b: a @ b, a, b, exact=True)


def test_integer_dot_too_large_is_refused_with_a_reason(tt):
    a = jnp.zeros((2048, 4096), jnp.int32, device=tt)
    with pytest.raises(Exception, match="UNIMPLEMENTED.*integer dot of 2048x4096 by 4096x2048"):
        jax.jit(lambda a, b: a @ b)(a, a.T).block_until_ready()


# reduce with an init value that is no identity (a constant, or one computed at run time),
# and over a dim of size 0 (every result is the init)
INIT_REDUCTIONS = {
    "max_runtime_float": (lambda x, i: jax.lax.reduce(x, i, jax.lax.max, (0,)),
                          lambda: (rand((4, 3)), np.float32(0.5))),
    "add_runtime_int": (lambda x, i: jax.lax.reduce(x, i, jax.lax.add, (1,)),
                        lambda: (RNG.integers(-9, 9, (4, 3), dtype=np.int32), np.int32(7))),
    "min_constant_int": (lambda x: jnp.min(x, axis=1, initial=3), lambda: (RNG.integers(-9, 9, (4, 30), dtype=np.int32),)),
    "max_empty_int": (lambda x: jnp.max(x, axis=0, initial=-1), lambda: (np.zeros((0, 3), np.int32),)),
    "sum_empty_float": (lambda x: jnp.sum(x, axis=1), lambda: (np.zeros((5, 0), np.float32),)),
    "max_empty_runtime_init": (lambda x, i: jax.lax.reduce(x, i, jax.lax.max, (0, 1)),
                               lambda: (np.zeros((0, 4), np.float32), np.float32(-2.5))),
    "any_empty": (lambda x: jnp.any(x, axis=0), lambda: (np.zeros((0, 6), bool),)),
    # integer products (ttnn.prod takes floats): halves multiplied, odd sizes padded with 1
    "prod_int_wraps": (lambda x: (jnp.prod(x, axis=1), jnp.prod(x, axis=(0, 2)), jnp.prod(x)),
                       lambda: (RNG.integers(-40, 40, (3, 7, 5), dtype=np.int32),)),
    "prod_uint32": (lambda x: jnp.prod(x, axis=0), lambda: (RNG.integers(1, 2**20, (9, 4), dtype=np.uint32),)),
}


@pytest.mark.parametrize("name", INIT_REDUCTIONS)
def test_reductions_with_init_values_and_empty_dims(tt, cpu, name):
    fn, args = INIT_REDUCTIONS[name]
    check(tt, cpu, fn, *args(), exact=True)


REDUCTIONS = {"sum": jnp.sum, "max": jnp.max, "min": jnp.min, "mean": jnp.mean}


@pytest.mark.parametrize("axis", [0, -1, None, (0, 2)], ids=str)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions(tt, cpu, name, axis):
    x = rand((7, 33, 65))
    check(tt, cpu, lambda x: REDUCTIONS[name](x, axis=axis), x)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_bf16_and_keepdims(tt, cpu, name):
    x = rand((5, 45), BF16)
    check(tt, cpu, lambda x: (REDUCTIONS[name](x, axis=1, keepdims=True), REDUCTIONS[name](x)), x)


def test_bool_reductions(tt, cpu):
    x = RNG.random((4, 37)) > 0.3
    check(tt, cpu, lambda x: (jnp.all(x, axis=1), jnp.any(x, axis=0)), x)


def test_shape_ops(tt, cpu):
    x = rand((6, 35, 10))
    check(tt, cpu, lambda x: (
        x.reshape(35, 60), x.reshape(-1), jnp.transpose(x, (2, 0, 1)), x.T,
        jax.lax.slice(x, (1, 3, 0), (5, 30, 10), (1, 4, 3)), x[..., 7:8], jax.lax.index_in_dim(x, 7, 2, keepdims=False), jnp.concatenate([x, x * 2], axis=1),
        jnp.concatenate([x[:, :3], x[:, 5:]], axis=1), jnp.broadcast_to(x[:, :1, :], (6, 35, 10)),
        jnp.expand_dims(x, 1), jnp.squeeze(x[:1])), x, exact=True)   # x * 2 is exact too


@pytest.mark.parametrize("src,dst", [
    (np.float32, BF16), (BF16, np.float32), (np.int32, np.float32), (np.float32, np.bool_),
    (np.bool_, np.float32), (np.int32, np.bool_), (np.bool_, np.int32), (np.uint32, np.int32)])
def test_convert(tt, cpu, src, dst):
    if src == np.bool_:
        x = RNG.random((5, 33)) > 0.5
    elif np.dtype(src).kind in "iu":
        x = RNG.integers(0, 100, (5, 33)).astype(src)
    else:
        x = rand((5, 33), src)
        if src == np.float32:   # bf16 ties: to even, so ties-away and truncation both fail
            x[0, :6] = [1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), -(1 + 3 * 2**-8), -0.0, 1 + 2**-8 + 2**-20]
    # one rounding (f32 -> bf16: to nearest even) or none: bit-exact with XLA:CPU
    check(tt, cpu, lambda x: x.astype(dst), x, exact=True)


def test_iota_and_constants(tt, cpu):
    table = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    check(tt, cpu, lambda x: (
        jnp.arange(37, dtype=jnp.int32), jax.lax.broadcasted_iota(jnp.float32, (5, 9), 1),
        x + table, x * jnp.asarray(table, jnp.bfloat16).astype(jnp.float32),
        jnp.asarray([True, False, True]), jnp.asarray([3, -1, 7], jnp.int32), jnp.float32(2.5),
        jnp.full((4, 5), 3.0)), rand((3, 4)))


def test_scalars(tt, cpu):
    check(tt, cpu, lambda a, b: (a * b + 1, jnp.sqrt(a), a > b), np.float32(3.0), np.float32(2.0))


def test_identity_and_repeated_outputs(tt, cpu):
    x = rand((4, 5))
    check(tt, cpu, lambda x: (x, x, x.reshape(5, 4)), x, exact=True)
    check(tt, cpu, lambda x: (x + 1, x + 1), x)


def test_grad_through_everything(tt, cpu):
    def f(w, x):
        h = jnp.tanh(x @ w[:, :8]) * jax.nn.sigmoid(x @ w[:, 8:])
        h = jnp.concatenate([h, jnp.exp(-h ** 2)], axis=1).reshape(h.shape[0], 2, 8)
        h = jnp.transpose(h, (1, 0, 2)).sum(0)
        return jnp.mean(jnp.maximum(h, 0.1) / (1 + jnp.abs(h)) + jnp.sqrt(h ** 2 + 1))

    w, x = rand((11, 16)), rand((9, 11))
    check(tt, cpu, jax.value_and_grad(f, argnums=(0, 1)), w, x)
