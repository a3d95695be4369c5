"""Neural-network ops of the sim: conv2d and the fused ops the fusion pass picks
(softmax, layer_norm, rms_norm, transformer.scaled_dot_product_attention,
experimental.rotary_embedding).

Result metadata follows real ttnn 0.81.1 as measured in mock (docs/ttnn-facts.md,
"Convolution and fused ops"); values are float32 math rounded once to the output dtype.
"""
from __future__ import annotations

import enum

import math
import types

import numpy as np

from . import fpu, ops as _ops
from .ops import _f32, _need_device, _need_tile, _out
from .tensor import DRAM_MEMORY_CONFIG, FLOAT_DTYPES, DataType, Layout, Tensor, fatal, quantize

__all__ = ["conv2d", "softmax", "layer_norm", "rms_norm", "transformer", "experimental"]


def _pair(v, n=2):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


class UnaryOpType(enum.Enum):
    """ttnn.UnaryOpType, the members a fused activation uses here."""
    RELU = "relu"


class UnaryWithParam:
    """ttnn.UnaryWithParam(op_type[, param...]): a unary op fused into another op."""

    def __init__(self, op_type: UnaryOpType, *params):
        self.op_type, self.params = op_type, params


class Conv2dConfig:
    """ttnn.Conv2dConfig: of its fields the sim models `activation` (applied to the conv's
    result before it is written, as ttnn fuses it); the others tune performance only."""

    def __init__(self, *, activation: UnaryWithParam | None = None, **_performance_only):
        if activation is not None and activation.op_type not in (UnaryOpType.RELU,):
            raise fatal("activation", f"conv2d: fused activation {activation.op_type} is not modelled")
        self.activation = activation


def conv2d(*, input_tensor: Tensor, weight_tensor: Tensor, device, in_channels: int, out_channels: int,
           batch_size: int, input_height: int, input_width: int, kernel_size, stride=(1, 1),
           padding=(0, 0), dilation=(1, 1), groups: int = 1, bias_tensor: Tensor | None = None,
           conv_config: Conv2dConfig | None = None, dtype=None, memory_config=None,
           return_output_dim: bool = False, return_weights_and_bias: bool = False, **_ignored):
    """Input [N,H,W,C] or [1,1,N*H*W,C] (device, any layout); weights [O, C/groups, kh, kw]
    on the host or on device in ROW_MAJOR; bias [1,1,1,O]; conv_config's activation (relu)
    applied before the result is written. Result [1,1,N*OH*OW,O] TILE."""
    _need_device("conv2d", input_tensor)
    if weight_tensor.layout != Layout.ROW_MAJOR:
        raise fatal("weight_tensor.layout() == Layout::ROW_MAJOR",
                    "Host conv weights layout should be in row_major layout")
    n, h, w, c, o = batch_size, input_height, input_width, in_channels, out_channels
    (kh, kw), (sh, sw), (dh, dw) = _pair(kernel_size), _pair(stride), _pair(dilation)
    pad = _pair(padding)
    pt, pb, pl, pr = (pad[0], pad[0], pad[1], pad[1]) if len(pad) == 2 else pad
    x = _f32(input_tensor).reshape(n, h, w, c)
    wt = _f32(weight_tensor)
    if wt.shape != (o, c // groups, kh, kw) or c % groups or o % groups:
        raise fatal("weight shape", f"conv2d: weights {list(wt.shape)} do not fit in_channels={c} "
                                    f"out_channels={o} groups={groups} kernel={[kh, kw]}")
    x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    cg, og = c // groups, o // groups
    # im2col: [N*OH*OW, kh*kw, C], then per group a matmul on the matrix unit (fpu.py) under
    # ttnn's default matmul config for these dtypes (conv2d's own default is not measured)
    patches = np.stack([x[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw, :]
                        for i in range(kh) for j in range(kw)], axis=3).reshape(n * oh * ow, kh * kw, c)
    out_dtype = dtype or input_tensor.dtype
    cfg = fpu.matmul_config(input_tensor.device().arch().name, input_tensor.dtype, weight_tensor.dtype,
                            out_dtype, None, False)
    y = np.concatenate([
        fpu.fpu_matmul(patches[:, :, g * cg:(g + 1) * cg].reshape(n * oh * ow, kh * kw * cg),
                       wt[g * og:(g + 1) * og].transpose(2, 3, 1, 0).reshape(kh * kw * cg, og),
                       input_tensor.dtype, weight_tensor.dtype, cfg)
        for g in range(groups)], axis=-1)
    if bias_tensor is not None:
        y = y + _f32(bias_tensor).reshape(-1)
    if conv_config is not None and conv_config.activation is not None:
        y = np.maximum(y, 0)   # (RELU, the one modelled)
    out = _out(y.reshape(1, 1, n * oh * ow, o), out_dtype, Layout.TILE, input_tensor,
               memory_config or DRAM_MEMORY_CONFIG, arithmetic=True)
    if return_output_dim or return_weights_and_bias:
        result = [out]
        if return_output_dim:
            result.append([oh, ow])
        if return_weights_and_bias:
            result.append([weight_tensor, bias_tensor])
        return tuple(result)
    return out


def softmax(input_tensor: Tensor, dim: int = -1, *, memory_config=None, compute_kernel_config=None,
            numeric_stable: bool = True, **_ignored) -> Tensor:
    _need_device("softmax", input_tensor)
    _need_tile("softmax", input_tensor)
    x = _f32(input_tensor)
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max(axis=dim, keepdims=True))
        v = e / e.sum(axis=dim, keepdims=True)
    return _out(v, input_tensor.dtype, Layout.TILE, input_tensor, memory_config, arithmetic=True)


def _affine(name: str, x: Tensor, v: np.ndarray, weight, bias, memory_config) -> Tensor:
    for t in (weight, bias):
        if t is not None:
            _need_device(name, t)
            if t.layout != Layout.TILE:  # measured: an RM (n,) gamma fails this check
                raise fatal("gamma.layout() == Layout::TILE",
                            "Gamma's last padded dim needs to equal tile width and gamma's volume needs to "
                            "align with last padded dim of input.")
            if math.prod(t.shape) != x.shape[-1]:
                raise fatal("gamma volume", f"ttnn.{name}: weight {list(t.shape)} does not match the last dim "
                                            f"of {list(x.shape)}")
    if weight is not None:
        v = v * _f32(weight).reshape(-1)
    if bias is not None:
        v = v + _f32(bias).reshape(-1)
    return _out(v, x.dtype, Layout.TILE, x, memory_config, arithmetic=True)


def layer_norm(input_tensor: Tensor, *, epsilon: float = 1e-12, weight=None, bias=None,
               residual_input_tensor=None, memory_config=None, **_ignored) -> Tensor:
    _need_device("layer_norm", input_tensor)
    _need_tile("layer_norm", input_tensor)
    x = _f32(input_tensor)
    if residual_input_tensor is not None:
        x = x + _f32(residual_input_tensor)
    mean = x.mean(axis=-1, keepdims=True)
    var = np.square(x - mean).mean(axis=-1, keepdims=True)
    v = (x - mean) / np.sqrt(var + np.float32(epsilon))
    return _affine("layer_norm", input_tensor, v, weight, bias, memory_config)


def rms_norm(input_tensor: Tensor, *, epsilon: float = 1e-12, weight=None, bias=None,
             residual_input_tensor=None, memory_config=None, **_ignored) -> Tensor:
    _need_device("rms_norm", input_tensor)
    _need_tile("rms_norm", input_tensor)
    x = _f32(input_tensor)
    if residual_input_tensor is not None:
        x = x + _f32(residual_input_tensor)
    v = x / np.sqrt(np.square(x).mean(axis=-1, keepdims=True) + np.float32(epsilon))
    return _affine("rms_norm", input_tensor, v, weight, bias, memory_config)


def _sdpa(input_tensor_q: Tensor, input_tensor_k: Tensor, input_tensor_v: Tensor, *, attn_mask=None,
          is_causal: bool = True, scale=None, memory_config=None, **_ignored) -> Tensor:
    """q [B,H,S,D], k/v [B,H(kv),S,D]; bf16 / block floats only, D a multiple of 32 (measured)."""
    q, k, v = input_tensor_q, input_tensor_k, input_tensor_v
    _need_device("scaled_dot_product_attention", q, k, v)
    _need_tile("scaled_dot_product_attention", q, k, v)
    for t in (q, k, v):
        if t.dtype not in FLOAT_DTYPES - {DataType.FLOAT32}:
            raise fatal("dtype is bf16 or block float", f"Data type of input tensor must be BFLOAT16, BFLOAT8_B, "
                                                        f"or BFLOAT4_B and is DataType::{t.dtype.name}")
    if attn_mask is not None and attn_mask.memory_config().buffer_type != DRAM_MEMORY_CONFIG.buffer_type:
        raise fatal("mask buffer_type == DRAM", "When mask is provided to SDPA, it must be in DRAM")   # (mock)
    if any(len(t.shape) != 4 for t in (q, k, v)):
        raise fatal("rank == 4", "ShapeBase[] index out of range. 3 not in [-4, 3)")
    if q.shape[-1] % 32:
        raise fatal("head_dim % TILE_WIDTH == 0", "Padding is not supported on the head_dim dimension")
    if k.shape[-1] != v.shape[-1]:
        raise fatal("k_dim == v_dim", f"K and V hidden dim must match. Got K: {k.shape[-1]}, V: {v.shape[-1]}")
    if is_causal and q.shape[-2] != k.shape[-2]:
        raise fatal("q_len == k_len", f"Causal SDPA requires Q and K to have the same sequence length. "
                                      f"Got Q: {q.shape[-2]}, K: {k.shape[-2]}")
    if attn_mask is not None and attn_mask.dtype not in FLOAT_DTYPES - {DataType.FLOAT32}:
        raise fatal("mask dtype", "When mask is provided to SDPA, it must be in BF16, BFP8, or BFP4 dataformat")
    vq, vk, vv = _f32(q), _f32(k), _f32(v)
    rep = vq.shape[1] // vk.shape[1]  # grouped-query attention: kv heads repeated
    vk, vv = np.repeat(vk, rep, axis=1), np.repeat(vv, rep, axis=1)
    s = np.float32(1 / math.sqrt(vq.shape[-1]) if scale is None else scale)
    logits = np.matmul(vq, np.swapaxes(vk, -1, -2)) * s
    if is_causal:
        sq, sk = logits.shape[-2:]
        logits = np.where(np.tril(np.ones((sq, sk), bool)), logits, -np.inf)
    if attn_mask is not None:
        logits = logits + _f32(attn_mask)
    with np.errstate(all="ignore"):
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
    return _out(np.matmul(p, vv), q.dtype, Layout.TILE, q, memory_config, arithmetic=True)


_sdpa.__name__ = "scaled_dot_product_attention"
transformer = types.SimpleNamespace(scaled_dot_product_attention=_sdpa)


def _rotary_embedding(input_tensor: Tensor, cos_cache: Tensor, sin_cache: Tensor, token_index=None, *,
                      memory_config=None, compute_kernel_config=None) -> Tensor:
    """x * cos + rotate_half(x) * sin, rotate_half(x) = concat(-x[..., X/2:], x[..., :X/2]);
    x [B, H, S, X], cos / sin [1, 1, >=S, X] (rows 0..S-1 used, broadcast over B and H).
    Checks as tt-metal's RotaryEmbedding::validate (all on device, TILE; X a multiple of 64,
    the kernel swapping whole tiles; cos / sin alike). Result as measured in mock (ttnn
    0.81.1): x's dtype, shape [B, H, round_up(S, 32), X] (an unaligned S comes back padded).
    Each product is rounded to x's dtype before the add (the kernel's circular buffers)."""
    x, c, s = input_tensor, cos_cache, sin_cache
    _need_device("rotary_embedding", x, c, s)
    _need_tile("rotary_embedding", x, c, s)
    if token_index is not None:
        raise fatal("token_index", "ttnn.experimental.rotary_embedding: the decode form (token_index) "
                                   "is not modelled by the sim")
    if len(x.shape) != 4 or x.shape[-1] % 64:
        raise fatal("input_tensor.padded_shape()[-1] % (TILE_WIDTH * 2) == 0",
                    f"Input X dimension ({x.shape[-1]}) must be divisible by 64 for tiling.")
    if c.dtype != s.dtype:
        raise fatal("cos.dtype() == sin.dtype()", "Cos and Sin dtypes must match")
    if tuple(c.shape) != tuple(s.shape):
        raise fatal("cos.padded_shape() == sin.padded_shape()", "Cos and Sin dims must match")
    b, h, n, w = x.shape
    if len(c.shape) != 4 or tuple(c.shape[:2]) != (1, 1) or c.shape[-1] != w:
        raise fatal("cos dims", f"Cosine cache dimensions must match input dimensions. Expected (1, 1, {w}), "
                                f"but got {list(c.shape)}.")
    if c.shape[-2] < n:
        raise fatal("cos rows >= seq_len", f"Cosine cache dimensions must cover the sequence length. Sequence "
                                           f"length: {n}, Cos cache dimension: {c.shape[-2]}.")
    v = _f32(x)
    rot = np.concatenate([-v[..., w // 2:], v[..., :w // 2]], axis=-1)
    cos, sin = _f32(c)[:, :, :n], _f32(s)[:, :, :n]
    with np.errstate(all="ignore"):
        y = quantize(v * cos, x.dtype) + quantize(rot * sin, x.dtype)
    rows = -(-n // 32) * 32
    y = np.pad(y, ((0, 0), (0, 0), (0, rows - n), (0, 0)))
    return _out(y, x.dtype, Layout.TILE, x, memory_config, arithmetic=True)


_rotary_embedding.__name__ = "rotary_embedding"
experimental = types.SimpleNamespace(rotary_embedding=_rotary_embedding)
