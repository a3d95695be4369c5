"""Optimization level 2 (docs/optimizer.md "Level 2"): intermediate activations in L1 where
they fit (passes/memory.py), spills to DRAM where they do not. Placement must never change a
value: level 2's results equal level 1's bit for bit on the sim, and both match XLA:CPU.
Under CI=true every program also runs on real ttnn (mock), which refuses an L1 buffer that
clashes with an op's circular buffers."""
from __future__ import annotations

import jax
import ml_dtypes
import jax.numpy as jnp
import numpy as np
from jax import lax

from conftest import NewPrograms, assert_close, pcc, opt_level
from pjrt_tt.passes.memory import DRAM, L1, l1_placed

RNG = np.random.default_rng(12)


def _rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _run(f, args, level, tt):
    with NewPrograms() as new:
        got = [np.asarray(x) for x in jax.tree.leaves(
            jax.jit(f, compiler_options={"optimization_level": opt_level(level)})(*jax.device_put(args, tt)))]
    return got, new.one()


def _check(f, args, tt, cpu, kind=None):
    # the reference in float32 from the same (bf16-rounded) inputs: XLA:CPU's bf16 conv in
    # jax 0.12 returned inf / nan here
    ref = [a.astype(np.float32) for a in args]
    want = [np.asarray(x) for x in jax.tree.leaves(jax.jit(f)(*jax.device_put(ref, cpu)))]
    got1, _ = _run(f, args, 1, tt)
    got2, p2 = _run(f, args, 2, tt)
    for a, b, w in zip(got1, got2, want):
        assert a.tobytes() == b.tobytes()                   # placement never changes a value
        assert pcc(b, w) >= 0.99
        assert_close(b.astype(np.float32), w.astype(b.dtype).astype(np.float32), kind=kind)
    return p2


def _mlp(x, w1, b1, w2, b2):
    h = jax.nn.gelu(x @ w1 + b1)
    return jax.nn.relu(h @ w2 + b2)


def test_mlp_activations_in_l1(tt, cpu):
    args = (_rand(64, 256), _rand(256, 512, scale=0.06), _rand(512), _rand(512, 128, scale=0.05), _rand(128))
    p = _check(_mlp, args, tt, cpu, kind="matmul")
    placed = {v.id for v in l1_placed(p)}
    assert placed, p.format()
    outputs = {v.id for v in p.outputs}
    assert not placed & outputs                          # outputs stay in DRAM
    for op in p.ops:                                      # nothing reads L1 into an unplanned result
        if any(v.id in placed for v in op.operands()) and op.fn not in ("reshape",):
            assert op.kwargs.get("memory_config") in (L1, DRAM), op.fn


def _attention(x, wq, wk, wv, wo, g):
    b, s, d = x.shape
    h = 4
    xf = x.astype(jnp.float32)
    n = (xf * lax.rsqrt(jnp.mean(xf * xf, -1, keepdims=True) + 1e-5)).astype(x.dtype) * g
    q, k, v = [(n @ w).reshape(b, s, h, d // h).transpose(0, 2, 1, 3) for w in (wq, wk, wv)]
    sc = jax.nn.softmax((q @ k.transpose(0, 1, 3, 2)).astype(jnp.float32) * (d // h) ** -0.5, -1).astype(x.dtype)
    a = (sc @ v).transpose(0, 2, 1, 3).reshape(b, s, d)
    return x + a @ wo


def test_attention_block_matches_level_1(tt, cpu):
    d = 128
    args = tuple(a.astype(ml_dtypes.bfloat16) for a in (_rand(2, 64, d), _rand(d, d, scale=0.09), _rand(d, d, scale=0.09),
                                              _rand(d, d, scale=0.09), _rand(d, d, scale=0.09), 1 + _rand(d, scale=0.1)))
    p = _check(_attention, args, tt, cpu, kind="bfloat16")
    assert l1_placed(p)


def _convnet(x, w1, w2):
    dn = ("NHWC", "HWIO", "NHWC")
    y = jax.nn.relu(lax.conv_general_dilated(x, w1, (1, 1), "SAME", dimension_numbers=dn))
    y = jax.nn.relu(lax.conv_general_dilated(y, w2, (1, 1), "SAME", dimension_numbers=dn) + y)
    return jnp.mean(y, axis=(1, 2))


def test_conv_net_matches_level_1(tt, cpu):
    args = tuple(a.astype(ml_dtypes.bfloat16) for a in (_rand(2, 16, 16, 32), _rand(3, 3, 32, 32, scale=0.06),
                                              _rand(3, 3, 32, 32, scale=0.06)))
    _check(_convnet, args, tt, cpu, kind="bfloat16")


def test_activations_larger_than_l1_spill_to_dram(tt, cpu):
    # a 6144 x 4096 float32 activation takes 1.5 MB of each core's ~1.33 MB L1 bank: it spills;
    # the small row sums fit and go to L1
    x, w = _rand(6144, 64), _rand(64, 4096, scale=0.1)

    def f(x, w):
        h = x @ w
        return jnp.sum(jnp.exp(-h * h) + h, axis=-1) * 2.0

    want = np.asarray(jax.jit(f)(jax.device_put(x, cpu), jax.device_put(w, cpu)))
    got, p = _run(f, (x, w), 2, tt)
    big = [op for op in p.ops if op.fn in ("matmul", "multiply", "exp") and op.result.type.shape[-1] == 4096]
    assert big and all(op.kwargs.get("memory_config") != L1 for op in big), p.format()
    assert [op.fn for op in p.ops if op.kwargs.get("memory_config") == L1] == ["sum"], p.format()
    assert_close(got[0], want, kind="matmul")
