"""Fusion (pjrt_tt/passes/fusion.py) and composites (pjrt_tt/lower/composite.py): the
program holds the fused ttnn op a model writer would pick, AND the results match XLA:CPU.
float32 results of matmul / linear are compared with kind="matmul" (conftest.TOLERANCES): the chip's
matrix unit takes float32 operands as TF32 / BF16 (sim/fpu.py), about 1e-3 relative."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from conftest import NewPrograms, assert_close, run_both
from pjrt_tt.program import Attr

flax = pytest.importorskip("flax.linen")
RNG = np.random.default_rng(1)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """The same inputs for a test however the tests are selected or ordered."""
    global RNG
    RNG = np.random.default_rng(1)


def _rand(*shape, dtype=np.float32, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(dtype)


def run_and_program(f, *args, tt, cpu, options=None):
    """(tt results, cpu results, the ttnn program TT compiled for f); `options`: TT's
    compiler_options (XLA:CPU rejects tt_* ones)."""
    with NewPrograms() as new:
        if options:
            _, want = run_both(f, *args, tt_device=cpu, cpu_device=cpu)
            got = [np.asarray(x) for x in jax.tree.leaves(
                jax.jit(f, compiler_options=options)(*jax.tree.map(lambda a: jax.device_put(a, tt), args)))]
        else:
            got, want = run_both(f, *args, tt_device=tt, cpu_device=cpu)
    return got, want, new.one()


def fns(program) -> list[str]:
    return [op.fn for op in program.ops]


def _init(module, *args):
    with jax.default_device(jax.devices("cpu")[0]):
        return module.init(jax.random.PRNGKey(0), *args)


class MLP(flax.Module):
    act: callable = flax.gelu

    @flax.compact
    def __call__(self, x):
        return flax.Dense(6)(self.act(flax.Dense(32)(x)))


@pytest.mark.parametrize("act,fused", [(partial(flax.gelu, approximate=False), "gelu"), (flax.relu, "relu"),
                                       (flax.silu, "silu"), (jnp.tanh, "tanh"), (jax.nn.sigmoid, "sigmoid")])
def test_dense_activation_is_linear(act, fused, tt, cpu):
    x = _rand(3, 5, 16 + len(fused))
    params = _init(MLP(act), x)
    got, want, prog = run_and_program(lambda p, x: MLP(act).apply(p, x), params, x, tt=tt, cpu=cpu)
    linears = [op for op in prog.ops if op.fn == "linear"]
    assert len(linears) == 2 and "matmul" not in fns(prog), prog.format()
    assert linears[0].kwargs.get("activation") == fused and "bias" in linears[0].kwargs
    assert_close(got[0], want[0], kind="matmul")


def test_tanh_gelu_is_not_linears_gelu(tt, cpu):
    """linear's activation="gelu" is the erf gelu (ttnn's string_to_unary_with_param: GELU,
    not approximate): the tanh gelu after a Dense stays gelu(variant=Tanh)."""
    x = _rand(3, 5, 19)
    params = _init(MLP(flax.gelu), x)
    got, want, prog = run_and_program(lambda p, x: MLP(flax.gelu).apply(p, x), params, x, tt=tt, cpu=cpu)
    gelus = [op for op in prog.ops if op.fn == "gelu"]
    assert fns(prog).count("linear") == 2 and len(gelus) == 1, prog.format()
    assert gelus[0].kwargs["variant"] == Attr("GeluVariant.Tanh")
    assert not any("activation" in op.kwargs for op in prog.ops if op.fn == "linear")
    assert_close(got[0], want[0], kind="matmul")


def test_gelu_tanh_alone_is_ttnn_gelu(tt, cpu):
    got, want, prog = run_and_program(jax.nn.gelu, _rand(7, 9, scale=2), tt=tt, cpu=cpu)
    assert fns(prog) == ["gelu"], prog.format()
    assert_close(got[0], want[0])


def test_layer_norm(tt, cpu):
    x = _rand(2, 6, 24, scale=3) + 1
    params = _init(flax.LayerNorm(), x)
    got, want, prog = run_and_program(lambda p, x: flax.LayerNorm().apply(p, x), params, x, tt=tt, cpu=cpu)
    ln = [op for op in prog.ops if op.fn == "layer_norm"]
    assert len(ln) == 1 and {"weight", "bias"} <= set(ln[0].kwargs), prog.format()
    assert abs(ln[0].kwargs["epsilon"] - 1e-6) < 1e-9
    assert not {"sum", "mean", "rsqrt"} & set(fns(prog))
    assert_close(got[0], want[0])


def test_handwritten_layer_norm(tt, cpu):
    def ln(x, g, b):
        mu = jnp.mean(x, -1, keepdims=True)
        var = jnp.mean((x - mu) ** 2, -1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + 1e-5) * g + b
    got, want, prog = run_and_program(ln, _rand(5, 40), _rand(40), _rand(40), tt=tt, cpu=cpu)
    assert "layer_norm" in fns(prog) and "sum" not in fns(prog), prog.format()
    assert_close(got[0], want[0])


def test_rms_norm(tt, cpu):
    x = _rand(4, 48)
    params = _init(flax.RMSNorm(), x)
    got, want, prog = run_and_program(lambda p, x: flax.RMSNorm().apply(p, x), params, x, tt=tt, cpu=cpu)
    assert fns(prog).count("rms_norm") == 1 and "sum" not in fns(prog), prog.format()
    assert_close(got[0], want[0])


def test_softmax(tt, cpu):
    got, want, prog = run_and_program(lambda x: jax.nn.softmax(x, axis=-1), _rand(3, 4, 50, scale=4),
                                      tt=tt, cpu=cpu)
    assert fns(prog) == ["softmax"], prog.format()
    assert_close(got[0], want[0])


def test_softmax_not_last_axis_is_not_fused(tt, cpu):
    got, want, prog = run_and_program(lambda x: jax.nn.softmax(x, axis=0), _rand(6, 11), tt=tt, cpu=cpu)
    assert "softmax" not in fns(prog)
    assert_close(got[0], want[0])


def test_shared_intermediate_blocks_fusion(tt, cpu):
    """exp(x - max) is also an output: fusing would lose it, so nothing is fused."""
    def f(x):
        e = jnp.exp(x - jnp.max(x, -1, keepdims=True))
        return e / jnp.sum(e, -1, keepdims=True), e
    got, want, prog = run_and_program(f, _rand(5, 13), tt=tt, cpu=cpu)
    assert "softmax" not in fns(prog)
    for a, b in zip(got, want):
        assert_close(a, b)


def test_matmul_bias_shared_not_fused(tt, cpu):
    def f(x, w, b):
        y = x @ w
        return y + b, y * 2
    got, want, prog = run_and_program(f, _rand(4, 8), _rand(8, 10), _rand(10), tt=tt, cpu=cpu)
    assert "linear" not in fns(prog)
    for a, b in zip(got, want):
        assert_close(a, b, kind="matmul")


def test_attention_block(tt, cpu):
    """bf16 multi-head attention as jax writes it: softmax(q k^T / sqrt(d) + mask) v."""
    b, s, h, d = 2, 40, 2, 32

    def attn(q, k, v, mask):
        logits = jnp.einsum("bhqd,bhkd->bhqk", q, k) * jnp.bfloat16(1 / np.sqrt(d))
        return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(logits + mask, axis=-1), v)
    q, k, v = (_rand(b, h, s, d, dtype=jnp.bfloat16) for _ in range(3))
    mask = np.where(np.tril(np.ones((s, s), bool)), 0, -1e9).astype(jnp.bfloat16)[None, None]
    mask = np.broadcast_to(mask, (b, 1, s, s)).copy()
    got, want, prog = run_and_program(attn, q, k, v, mask, tt=tt, cpu=cpu)
    assert "transformer.scaled_dot_product_attention" in fns(prog), prog.format()
    assert not {"softmax", "matmul"} & set(fns(prog))
    assert_close(got[0], want[0])


def test_flax_multi_head_attention(tt, cpu):
    """flax scales q first and computes out^T = v^T softmax^T: still one SDPA."""
    m = flax.MultiHeadDotProductAttention(num_heads=2, qkv_features=64, dtype=jnp.bfloat16,
                                          param_dtype=jnp.bfloat16)
    x = _rand(2, 24, 48, dtype=jnp.bfloat16)
    params = _init(m, x)
    got, want, prog = run_and_program(lambda p, x: m.apply(p, x), params, x, tt=tt, cpu=cpu)
    sdpa = [op for op in prog.ops if op.fn == "transformer.scaled_dot_product_attention"]
    assert len(sdpa) == 1 and "softmax" not in fns(prog), prog.format()
    assert fns(prog).count("linear") == 4 and "matmul" not in fns(prog)  # q, k, v (DenseGeneral), out
    assert abs(sdpa[0].kwargs["scale"] - 1 / 5.65625) < 1e-6  # jax's bf16 sqrt(32)
    assert_close(got[0], want[0])


@pytest.mark.parametrize("fidelity", [None, "HiFi2"])
def test_bf16_compute_attention_gets_sdpa(fidelity, tt, cpu):
    """A float32 attention block compiled with tt_compute_dtype=bfloat16 runs in bf16, so it
    gets the bf16-only SDPA (data formats run before fusion), also when the matmuls were
    given a compute kernel config."""
    b, s, h, d = 1, 36, 2, 32

    def attn(q, k, v, mask):
        logits = jnp.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(d).astype(np.float32)
        return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(logits + mask, axis=-1), v)
    s += 2 * bool(fidelity)   # a new program per case
    q, k, v = (_rand(b, h, s, d) for _ in range(3))
    mask = np.where(np.tril(np.ones((s, s), bool)), 0, -1e9).astype(np.float32)[None, None]
    options = {"tt_compute_dtype": "bfloat16", **({"tt_math_fidelity": fidelity} if fidelity else {})}
    got, want, prog = run_and_program(attn, q, k, v, mask, tt=tt, cpu=cpu, options=options)
    assert "transformer.scaled_dot_product_attention" in fns(prog), prog.format()
    assert not {"softmax", "matmul"} & set(fns(prog))
    assert_close(got[0], want[0], kind="bfloat16")   # float32 results of bf16 math: bf16's bounds


def test_f32_attention_keeps_softmax(tt, cpu):
    """ttnn's SDPA takes bf16 only (measured): f32 attention is matmul + softmax."""
    q = _rand(1, 2, 8, 32)
    f = lambda q, k, v: jax.nn.softmax(q @ k.swapaxes(-1, -2) * 0.2, axis=-1) @ v  # noqa: E731
    got, want, prog = run_and_program(f, q, q + 1, q - 1, tt=tt, cpu=cpu)
    assert "softmax" in fns(prog) and "transformer.scaled_dot_product_attention" not in fns(prog)
    assert_close(got[0], want[0], kind="matmul")


# --- composites ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,fn,attrs,fused", [
    ("tenstorrent.gelu_tanh", lambda x: jax.nn.gelu(x, approximate=True), {}, "gelu"),
    ("tenstorrent.gelu", lambda x, approximate: jax.nn.gelu(x, approximate=approximate),
     {"approximate": False}, "gelu"),
    ("my.softmax", lambda x, dim: jax.nn.softmax(x, axis=dim), {"dim": -1}, "softmax"),
    ("acme.silu", jax.nn.silu, {}, "silu"),
])
def test_composite_unary(name, fn, attrs, fused, tt, cpu):
    c = lax.composite(fn, name=name)
    x = _rand(3, 10 + len(name))
    got, want, prog = run_and_program(lambda x: c(x, **attrs) + 1, x, tt=tt, cpu=cpu)
    assert fns(prog)[0] == fused, prog.format()
    assert_close(got[0], want[0])


def _ln(x, w, b, epsilon, normalized_shape):
    mu = jnp.mean(x, -1, keepdims=True)
    var = jnp.var(x, -1, keepdims=True)
    return (x - mu) * lax.rsqrt(var + epsilon) * w + b


def _rms(x, w, epsilon, normalized_shape):
    return x * lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + epsilon) * w


@pytest.mark.parametrize("name,fn,nparams,fused", [
    ("tenstorrent.layer_norm", _ln, 2, "layer_norm"),
    ("tenstorrent.rms_norm", _rms, 1, "rms_norm"),
])
def test_composite_norm(name, fn, nparams, fused, tt, cpu):
    c = lax.composite(fn, name=name)
    n = 33 + nparams
    x, ps = _rand(4, n, scale=2), [_rand(n) for _ in range(nparams)]
    got, want, prog = run_and_program(lambda x, *p: c(x, *p, epsilon=1e-5, normalized_shape=(n,)),
                                      x, *ps, tt=tt, cpu=cpu)
    assert fns(prog) == [fused], prog.format()
    assert_close(got[0], want[0])


def test_unknown_composite_lowers_its_decomposition(tt, cpu):
    c = lax.composite(lambda x, y: jnp.maximum(x, y) * 3, name="acme.weird_op")
    got, want, prog = run_and_program(c, _rand(3, 7), _rand(3, 7), tt=tt, cpu=cpu)
    assert "maximum" in fns(prog)
    assert_close(got[0], want[0])


def _softmax_with_dead_op(x, dim):
    """softmax, plus 0 * an op that has no TT lowering (stablehlo.rng)."""
    return jax.nn.softmax(x, axis=dim) + 0 * jnp.sum(lax.rng_uniform(0.0, 1.0, (3,)))


def test_fused_composite_body_is_not_scanned(tt, cpu):
    """Only the bodies of composites that are decomposed must lower: a fused composite's body
    may hold ops without a TT lowering."""
    from pjrt_tt.ingest import parse
    from pjrt_tt.lower import unsupported_ops
    fused, other = (lax.composite(_softmax_with_dead_op, name=n) for n in ("acme.softmax", "acme.soft_max"))
    x = _rand(3, 29)
    got, want, prog = run_and_program(lambda x: fused(x, dim=-1), x, tt=tt, cpu=cpu)
    assert fns(prog) == ["softmax"], prog.format()
    assert_close(got[0], want[0])
    text = jax.jit(lambda x: other(x, dim=-1)).lower(x).as_text()
    assert "stablehlo.rng" in text
    assert [op for op, _ in unsupported_ops(parse(text.encode(), "mlir").module)] == ["stablehlo.rng"]
