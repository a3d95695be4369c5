"""Model benchmarks: estimated throughput of real model shapes against tt-metal's hand-written results.

    PYTHONPATH=$PWD python tests/benchmarks/model_perf.py          (about a minute on 2 cores)

For each model and each optimization level (0: the lowering as is; 1: docs/optimizer.md),
the program is lowered (never run: the estimator reads the ttnn program) and its time
estimated on a simulated n150 and p150:

  est       estimated throughput at this level: device estimate and the host dispatch
            measured on mock, pipelined (pjrt_tt/perf/program_cost.py), without trace. The
            per-call program: level 1's const-eval blocks (weights prepared once per buffer)
            are not in it.
  traced    the same program replayed from a trace (host dispatch: one replay call)
  limit     physical limit of the model on the chip: max(its matmul FLOPs at the LoFi peak
            rate, the weights (in the row's format) and KV cache read once at peak DRAM
            bandwidth) per step: no level can beat it
  ratio     est / published (tt-metal models/README, DESIGN.md section 8)

Models are plain JAX functions of real configs, lowered from shapes alone
(jax.ShapeDtypeStruct: no weights are materialised, random or otherwise); transformers are
lowered one layer and multiplied by the layer count, plus their embedding and head
programs. Llama rows use bfp8 weights through the compile option tt_weight_dtype=bfloat8_b
(docs/numerics.md): weights arrive as bfloat16 program inputs and are typecast to bfp8 on
every call at level 0, once per weight buffer at level 1. All figures are estimates. Last line: `model_perf: worst ratio R
over N rows` (R: the lowest est / published at each row's best level).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

os.environ.setdefault("PJRT_TT_TARGET", "sim")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from pjrt_tt.compiler import Compiler  # noqa: E402
from pjrt_tt.perf.estimator import Estimator  # noqa: E402
from pjrt_tt.perf.program_cost import estimate_program  # noqa: E402
from pjrt_tt.settings import Settings  # noqa: E402
from pjrt_tt.ttnn_facts import TILE_BYTES  # noqa: E402

BF16 = jnp.bfloat16
CHIPS = ("n150", "p150")
LEVELS = {0: (("optimization_level", "0"),), 1: (("optimization_level", "1"),), 2: (("optimization_level", "2"),)}   # level -> compile options
# tt-metal's models/tt_transformers decode path, read at tenstorrent/tt-metal
# models/tt_transformers/tt/{decoder.py@01229001, attention.py@00b769dd, mlp.py@03f118e6}:
# attention 13 ttnn calls (fused QKV linear, sharded_to_interleaved, reshape,
# nlp_create_qkv_heads_decode, 2 rotary_embedding_llama, 2 paged_update_cache, sdpa_decode,
# to_memory_config, nlp_concat_heads_decode, wo matmul, to_memory_config), MLP 7 (3 linear,
# mul with fused SiLU, 2 to_memory_config, reshape), decoder 5 (2 RMSNorm, to_memory_config,
# 2 add); the CCL helpers are taken as no-ops on one chip and deallocates are not counted.
HAND_WRITTEN_DECODE_CALLS = 25


def spec(*shape, dtype=BF16):
    return jax.ShapeDtypeStruct(shape, dtype)


# --- models (real configs) ------------------------------------------------------------------
def rms_norm(x, g, eps=1e-5):
    xf = x.astype(jnp.float32)
    return (xf * lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)).astype(x.dtype) * g


def layer_norm(x, g, b, eps=1e-5):
    xf = x.astype(jnp.float32)
    mu = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean((xf - mu) ** 2, axis=-1, keepdims=True)
    return ((xf - mu) * lax.rsqrt(var + eps)).astype(x.dtype) * g + b


def rope(x, cos, sin):   # x [B, S, H, D]; cos/sin [B, S, 1, D/2]
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    name: str
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    mlp: int
    layers: int
    vocab: int = 128256


LLAMA_1B = LlamaConfig("Llama-3.2-1B", 2048, 32, 8, 64, 8192, 16)
LLAMA_8B = LlamaConfig("Llama-3.1-8B", 4096, 32, 8, 128, 14336, 32)
BATCH, CACHE = 32, 128   # decode: 32 users, attention over a 128-position KV cache


def llama_layer(c: LlamaConfig):
    def layer(x, pos, cos, sin, kc, vc, wq, wk, wv, wo, wg, wu, wd, g1, g2):
        b = x.shape[0]
        h = rms_norm(x, g1)
        q = rope((h @ wq).reshape(b, 1, c.heads, c.head_dim), cos, sin)
        k = rope((h @ wk).reshape(b, 1, c.kv_heads, c.head_dim), cos, sin)
        v = (h @ wv).reshape(b, 1, c.kv_heads, c.head_dim)
        kc = lax.dynamic_update_slice(kc, k.transpose(0, 2, 1, 3), (0, 0, pos, 0))
        vc = lax.dynamic_update_slice(vc, v.transpose(0, 2, 1, 3), (0, 0, pos, 0))
        qg = q.reshape(b, c.kv_heads, c.heads // c.kv_heads, c.head_dim)
        s = jnp.einsum("bgqd,bgsd->bgqs", qg, kc) * (c.head_dim ** -0.5)
        s = jnp.where(jnp.arange(kc.shape[2]) <= pos, s, -1e9)
        a = jnp.einsum("bgqs,bgsd->bgqd", jax.nn.softmax(s.astype(jnp.float32), axis=-1).astype(x.dtype), vc)
        x = x + a.reshape(b, 1, c.heads * c.head_dim) @ wo
        h = rms_norm(x, g2)
        return x + (jax.nn.silu(h @ wg) * (h @ wu)) @ wd, kc, vc

    d, hd = c.hidden, c.head_dim
    args = [spec(BATCH, 1, d), jax.ShapeDtypeStruct((), jnp.int32), spec(BATCH, 1, 1, hd // 2),
            spec(BATCH, 1, 1, hd // 2), spec(BATCH, c.kv_heads, CACHE, hd), spec(BATCH, c.kv_heads, CACHE, hd),
            spec(d, c.heads * hd), spec(d, c.kv_heads * hd), spec(d, c.kv_heads * hd), spec(c.heads * hd, d),
            spec(d, c.mlp), spec(d, c.mlp), spec(c.mlp, d), spec(d), spec(d)]
    weights = sum(math.prod(a.shape) for a in args[6:13])
    return layer, args, weights


def llama_ends(c: LlamaConfig):
    """Token embedding and the final norm + LM head (tied embedding), one program."""
    def ends(ids, x, emb, g):
        e = jnp.take(emb, ids, axis=0)
        logits = rms_norm(x, g) @ emb.T
        return e, logits

    args = [jax.ShapeDtypeStruct((BATCH, 1), jnp.int32), spec(BATCH, 1, c.hidden), spec(c.vocab, c.hidden),
            spec(c.hidden)]
    return ends, args, c.vocab * c.hidden


def encoder_layer(hidden: int, heads: int, ffn: int, gelu_approx: bool):
    def layer(x, wqkv, bqkv, wo, bo, g1, b1, w1, bb1, w2, bb2, g2, b2):
        bsz, s, _ = x.shape
        qkv = (x @ wqkv + bqkv).reshape(bsz, s, 3, heads, hidden // heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        p = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) * (hidden // heads) ** -0.5, axis=-1)
        a = jnp.einsum("bhqk,bkhd->bqhd", p, v).reshape(bsz, s, hidden)
        x = layer_norm(x + a @ wo + bo, g1, b1)
        return layer_norm(x + jax.nn.gelu(x @ w1 + bb1, approximate=gelu_approx) @ w2 + bb2, g2, b2)

    def args(bsz, s):
        return [spec(bsz, s, hidden), spec(hidden, 3 * hidden), spec(3 * hidden), spec(hidden, hidden), spec(hidden),
                spec(hidden), spec(hidden), spec(hidden, ffn), spec(ffn), spec(ffn, hidden), spec(hidden),
                spec(hidden), spec(hidden)]
    return layer, args, 4 * hidden * hidden + 2 * hidden * ffn


def bert_embed(vocab=30522, hidden=1024, max_pos=512):
    def embed(ids, types, we, wp, wt, g, b):
        s = ids.shape[1]
        x = jnp.take(we, ids, axis=0) + wp[:s][None] + jnp.take(wt, types, axis=0)
        return layer_norm(x, g, b)

    def args(bsz, s):
        return [jax.ShapeDtypeStruct((bsz, s), jnp.int32), jax.ShapeDtypeStruct((bsz, s), jnp.int32),
                spec(vocab, hidden), spec(max_pos, hidden), spec(2, hidden), spec(hidden), spec(hidden)]
    return embed, args, (vocab + max_pos + 2) * hidden


def vit_ends(hidden=768, patch=16, classes=1000):
    def ends(img, wp, bp, cls, pos, g, b, wh, bh, y):
        bsz, hh, ww, ch = img.shape
        p = img.reshape(bsz, hh // patch, patch, ww // patch, patch, ch).transpose(0, 1, 3, 2, 4, 5)
        p = p.reshape(bsz, (hh // patch) * (ww // patch), patch * patch * ch) @ wp + bp
        x = jnp.concatenate([jnp.broadcast_to(cls, (bsz, 1, hidden)), p], axis=1) + pos
        return x, layer_norm(y[:, 0], g, b) @ wh + bh

    def args(bsz):
        n = (224 // patch) ** 2 + 1
        return [spec(bsz, 224, 224, 3), spec(patch * patch * 3, hidden), spec(hidden), spec(1, 1, hidden),
                spec(1, n, hidden), spec(hidden), spec(hidden), spec(hidden, classes), spec(classes),
                spec(bsz, n, hidden)]
    return ends, args, patch * patch * 3 * hidden + hidden * classes


def resnet50():
    """torchvision's ResNet-50 v1.5 (stride on the 3x3), NHWC, batch norm as inference affine."""
    def conv(x, w, stride, pad):
        return lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad), (pad, pad)],
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    stages = [(64, 256, 3, 1), (128, 512, 4, 2), (256, 1024, 6, 2), (512, 2048, 3, 2)]
    shapes: list[tuple] = [(7, 7, 3, 64)]
    cin = 64
    for mid, out, blocks, _ in stages:
        for i in range(blocks):
            shapes += [(1, 1, cin, mid), (3, 3, mid, mid), (1, 1, mid, out)]
            if i == 0:
                shapes.append((1, 1, cin, out))
            cin = out

    def net(x, ws, scales, biases, fc, fcb):
        it = iter(zip(ws, scales, biases))

        def cbr(x, stride, pad, relu=True):
            w, s, b = next(it)
            y = conv(x, w, stride, pad) * s + b
            return jax.nn.relu(y) if relu else y

        x = cbr(x, 2, 3)
        x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), [(0, 0), (1, 1), (1, 1), (0, 0)])
        for mid, out, blocks, stride in stages:
            for i in range(blocks):
                st = stride if i == 0 else 1
                y = cbr(cbr(cbr(x, 1, 0), st, 1), 1, 0, relu=False)
                sc = cbr(x, st, 0, relu=False) if i == 0 else x
                x = jax.nn.relu(y + sc)
        return jnp.mean(x, axis=(1, 2)) @ fc + fcb

    def args(bsz):
        return [spec(bsz, 224, 224, 3), [spec(*s) for s in shapes], [spec(s[-1]) for s in shapes],
                [spec(s[-1]) for s in shapes], spec(2048, 1000), spec(1000)]
    return net, args, sum(math.prod(s) for s in shapes) + 2048 * 1000


# --- lowering and estimating ----------------------------------------------------------------
def lower(fn, args, options=()):
    from jax._src.lib import _jax
    text = jax.jit(fn).lower(*args).as_text().encode()
    opts = _jax.CompileOptions()
    opts.env_option_overrides = list(options)
    return Compiler(Settings(target="sim")).compile(text, "mlir", opts).program


@dataclasses.dataclass
class Part:
    program: object
    count: int   # how many times a step runs it (layers)


def step_ns(parts: list[Part], chip: str, trace: bool) -> tuple[float, float]:
    """(wall ns of one step at this level, matmul-class FLOPs of the step)."""
    est = Estimator(chip)
    wall = flops = 0.0
    for p in parts:
        e = estimate_program(p.program, chip, trace=trace, estimator=est)
        wall += p.count * e.wall_ns
        flops += p.count * sum(r.cost.flops for r in e.rows if r.cost.kind in ("matmul", "conv2d", "attention"))
    return wall, flops


@dataclasses.dataclass
class Row:
    model: str
    unit: str
    per_step: int             # items a step produces (tokens per user: 1; images / sentences: batch)
    published: dict           # chip -> published throughput
    parts_by_level: dict      # level -> [Part]
    weight_params: int
    weight_dtype: str
    extra_bytes: float = 0.0  # bytes a step must read besides weights (KV cache)


def physical_limit(row: Row, chip: str, flops: float) -> float:
    est = Estimator(chip)
    need = row.weight_params * TILE_BYTES[row.weight_dtype] / 1024 + row.extra_bytes
    t = max(flops / est.peak_flops("LoFi"), need / est.arch.dram_bytes_per_s)
    return row.per_step / t


def build_rows() -> tuple[list[Row], int]:
    rows = []
    bfp8 = (("tt_weight_dtype", "bfloat8_b"),)
    layer_ops = None
    for cfg, published in ((LLAMA_1B, {"n150": 80.5}), (LLAMA_8B, {"n150": 26.0, "p150": 33.1})):
        layer, args, w_layer = llama_layer(cfg)
        ends, end_args, w_ends = llama_ends(cfg)
        parts = {lvl: [Part(lower(layer, args, bfp8 + opts), cfg.layers), Part(lower(ends, end_args, bfp8 + opts), 1)]
                 for lvl, opts in LEVELS.items()}
        if cfg is LLAMA_1B:
            layer_ops = {lvl: sum(1 for op in p[0].program.ops if not op.fn.startswith("host."))
                         for lvl, p in parts.items()}
        kv = 2 * cfg.layers * BATCH * cfg.kv_heads * CACHE * cfg.head_dim * 2
        rows.append(Row(f"{cfg.name} decode b{BATCH} bfp8 weights", "t/s/u", 1, published, parts,
                        cfg.layers * w_layer + w_ends, "bfloat8_b", kv))
    net, rargs, w_r = resnet50()
    rows.append(Row("ResNet-50 b16", "img/s", 16, {"n150": 4700.0, "p150": 12600.0},
                    {lvl: [Part(lower(net, rargs(16), opts), 1)] for lvl, opts in LEVELS.items()}, w_r, "bfloat16"))
    layer, largs, w_l = encoder_layer(1024, 16, 4096, gelu_approx=False)
    embed, eargs, w_e = bert_embed()
    rows.append(Row("BERT-Large s384 b8", "sent/s", 8, {"n150": 270.0},
                    {lvl: [Part(lower(layer, largs(8, 384), opts), 24), Part(lower(embed, eargs(8, 384), opts), 1)]
                     for lvl, opts in LEVELS.items()}, 24 * w_l + w_e, "bfloat16"))
    layer, largs, w_l = encoder_layer(768, 12, 3072, gelu_approx=False)
    ends, vargs, w_v = vit_ends()
    rows.append(Row("ViT-base b8", "img/s", 8, {"n150": 1370.0},
                    {lvl: [Part(lower(layer, largs(8, 197), opts), 12), Part(lower(ends, vargs(8), opts), 1)]
                     for lvl, opts in LEVELS.items()}, 12 * w_l + w_v, "bfloat16"))
    return rows, layer_ops


def main() -> None:
    start = time.perf_counter()
    rows, layer_ops = build_rows()
    print("model_perf: ESTIMATES (pjrt_tt/perf, calibration error in docs/perf.md); published = tt-metal hand-written")
    print(f"{'model':<38} {'lvl':>3} {'chip':<5} {'est':>9} {'traced':>9} {'limit':>9} {'published':>9} "
          f"{'ratio':>6}  unit")
    worst, n = math.inf, 0
    for row in rows:
        for chip in CHIPS:
            best = 0.0
            for lvl, parts in row.parts_by_level.items():
                wall, flops = step_ns(parts, chip, trace=False)
                dev, _ = step_ns(parts, chip, trace=True)
                tput, dev_tput = row.per_step * 1e9 / wall, row.per_step * 1e9 / dev
                limit = physical_limit(row, chip, flops)
                pub = row.published.get(chip)
                ratio = tput / pub if pub else None
                best = max(best, tput)
                print(f"{row.model:<38} {lvl:>3} {chip:<5} {tput:>9.1f} {dev_tput:>9.1f} {limit:>9.1f} "
                      f"{pub if pub else '-':>9} {f'{ratio:.3f}' if ratio else '-':>6}  {row.unit}")
            if row.published.get(chip):
                worst, n = min(worst, best / row.published[chip]), n + 1
    for lvl, count in layer_ops.items():
        print(f"Llama-3.2-1B decoder layer: {count} ttnn ops at level {lvl} (bfp8 weights option); "
              f"tt-metal hand-written decode layer: {HAND_WRITTEN_DECODE_CALLS} ttnn calls")
    print(f"(took {time.perf_counter() - start:.0f} s)")
    print(f"model_perf: worst ratio {worst:.3f} over {n} rows")


if __name__ == "__main__":
    sys.exit(main())
