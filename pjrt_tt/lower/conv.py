"""stablehlo.convolution -> ttnn.conv2d.

Every convolution jax emits (forward in any dimension_numbers, and the two gradient
forms) is brought to the one form ttnn.conv2d takes: input NHWC flattened to
[1, 1, N*H*W, C] (TILE), weights [O, I/groups, kh, kw] on device in ROW_MAJOR, result
[1, 1, N*OH*OW, O] TILE. The StableHLO features conv2d has no argument for are rewritten
exactly around it (measured in mock, docs/ttnn-facts.md "Convolution and fused ops"):
- 1 spatial dim: a unit height;
- lhs_dilation (gradient wrt the input): zeros interleaved with reshape + back pad;
- negative padding (gradient forms): a crop (slice) first;
- batch_group_count G (gradient wrt a grouped kernel): the batch split into G groups
  moved into the feature dim, then feature_group_count G;
- window_reversal: the kernel reversed like stablehlo.reverse;
- fewer output positions than kernel taps (the gradient wrt a kernel): exact im2col +
  ttnn.matmul instead (conv2d rejects some of these, e.g. batch 9, 5x5 input, 4x4 kernel:
  "Reader indices buffer page size 68 exceeds worst-case CB size 64");
- integer element types (conv2d takes floats only): im2col + the exact integer matmul of
  dots (elementwise products summed), wrapping as XLA; uint8 / uint16 in uint32;
- precision HIGH / HIGHEST: im2col + the matmul of dots at that precision (conv2d has
  no such mode: bfloat16 parts at HiFi4, float32 accumulation; matmul.py);
- nothing to compute (a zero-size result, or an empty operand: sums of padding): zeros;
- 3 spatial dims: one conv2d per depth tap over the depth planes it reads (in the
  batch), summed.
- 0 spatial dims (a dot over the features): 1-D of length 1.
Rejected: >= 4 spatial dims.
"""
from __future__ import annotations

import dataclasses

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from pjrt_tt.lower.builder import Lowering
from pjrt_tt.lower.helpers import FLOATS, NARROW, WIDE, fill, host_type, narrow_back, result_type
from pjrt_tt.lower.matmul import matmul, plan
from pjrt_tt.lower.registry import rule
from pjrt_tt.program import DEVICE, ROW_MAJOR, ShapeArg, TensorType, Value, dtype_attr, layout_attr

MAX_REVERSE = 256  # a reverse is one slice per element along the dim; beyond this, refuse


def _ints(op, name: str, n: int, default: int) -> list[int]:
    if name not in op.attributes:
        return [default] * n
    a = op.attributes[name]
    if isinstance(a, ir.DenseI64ArrayAttr):
        return [int(x) for x in ir.DenseI64ArrayAttr(a)]
    return [int(x) for x in ir.DenseIntElementsAttr(a)]


def _bools(op, name: str, n: int) -> list[bool]:
    if name not in op.attributes:
        return [False] * n
    a = op.attributes[name]
    if isinstance(a, ir.DenseBoolArrayAttr):
        return [bool(x) for x in ir.DenseBoolArrayAttr(a)]
    return [bool(x) for x in ir.DenseElementsAttr(a)]


def _with(x: Value, shape) -> TensorType:
    return dataclasses.replace(x.type, shape=tuple(shape))


def reverse(lo: Lowering, x: Value, dims) -> Value:
    """x reversed along dims (for window_reversal; stablehlo.reverse is indexing.py's):
    ttnn has no flip, and slice takes no negative step
    (measured: it returns an empty tensor), so one slice per index, concatenated."""
    for d in dims:
        shape = list(x.type.shape)
        n = shape[d]
        if n <= 1:
            continue
        if n > MAX_REVERSE:
            raise lo.unsupported(f"reverse of a dim of size {n} (> {MAX_REVERSE}: one slice per element)")
        parts = []
        for i in reversed(range(n)):
            starts = [0] * len(shape)
            ends = list(shape)
            starts[d], ends[d] = i, i + 1
            parts.append(lo.emit("slice", x, starts, ends, [1] * len(shape),
                                 result=_with(x, shape[:d] + [1] + shape[d + 1:])))
        x = lo.emit("concat", parts, d, result=_with(x, shape))
    return x


def _dilate(lo: Lowering, x: Value, axis: int, d: int) -> Value:
    """Insert d-1 zeros between neighbours along `axis` (StableHLO lhs_dilation)."""
    shape = list(x.type.shape)
    n = shape[axis]
    x = lo.reshape(x, shape[:axis + 1] + [1] + shape[axis + 1:])
    pads = [[0, 0] for _ in range(len(shape) + 1)]
    pads[axis + 1][1] = d - 1          # back padding only: TILE refuses front padding
    padded = shape[:axis + 1] + [d] + shape[axis + 1:]
    x = lo.emit("pad", x, pads, 0.0, result=_with(x, padded))
    x = lo.reshape(x, shape[:axis] + [n * d] + shape[axis + 1:])
    ends = shape[:axis] + [(n - 1) * d + 1] + shape[axis + 1:]
    return lo.emit("slice", x, [0] * len(shape), ends, [1] * len(shape), result=_with(x, ends))


def _zeros_like(lo: Lowering, x: Value, shape) -> Value:
    return lo.emit("full", ShapeArg(tuple(shape)), 0.0, result=_with(x, shape), dtype=dtype_attr(x.type.dtype),
                   layout=layout_attr(x.type.layout), device=DEVICE)


MAX_POSITIONS = 64  # im2col over output positions: at most this many slices


def _pad_spatial(lo: Lowering, x: Value, pad) -> Value:
    """Zero padding of dims 1 and 2 of [N,H,W,C] (concat: TILE pads only at the back)."""
    for axis, (lo_, hi) in ((1, pad[0:2]), (2, pad[2:4])):
        if lo_ or hi:
            shape = list(x.type.shape)
            block = lambda k: _zeros_like(lo, x, shape[:axis] + [k] + shape[axis + 1:])  # noqa: E731
            parts = ([block(lo_)] if lo_ else []) + [x] + ([block(hi)] if hi else [])
            shape[axis] += lo_ + hi
            x = lo.emit("concat", parts, axis, result=_with(x, shape))
    return x


def _patches(lo: Lowering, x: Value, kernel, strides, rhs_dil, oh: int, ow: int) -> Value:
    """im2col of the padded input x [N,H,W,C]: [N, OH*OW, kh*kw*C], each row the window one
    output position reads. Built from whichever is fewer: one strided slice per output
    position (its window), or one per kernel tap (what that tap reads at every position)."""
    n, h, wd, c = x.type.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, rhs_dil
    pieces = []
    if oh * ow <= kh * kw:
        for i in range(oh):
            for j in range(ow):
                starts, ends = [0, i * sh, j * sw, 0], [n, i * sh + (kh - 1) * dh + 1, j * sw + (kw - 1) * dw + 1, c]
                win = x
                if starts != [0, 0, 0, 0] or ends != [n, h, wd, c] or (dh, dw) != (1, 1):  # never a whole-x slice
                    win = lo.emit("slice", x, starts, ends, [1, dh, dw, 1], result=_with(x, (n, kh, kw, c)))
                pieces.append(lo.reshape(win, (n, 1, kh * kw * c)))
        axis = 1
    else:
        for a in range(kh):
            for b in range(kw):
                starts, ends = [0, a * dh, b * dw, 0], [n, a * dh + (oh - 1) * sh + 1, b * dw + (ow - 1) * sw + 1, c]
                tap = x
                if starts != [0, 0, 0, 0] or ends != [n, h, wd, c] or (sh, sw) != (1, 1):
                    tap = lo.emit("slice", x, starts, ends, [1, sh, sw, 1], result=_with(x, (n, oh, ow, c)))
                pieces.append(lo.reshape(tap, (n, oh * ow, 1, c)))
        axis = 2
    shape = list(pieces[0].type.shape)
    shape[axis] *= len(pieces)
    patches = pieces[0] if len(pieces) == 1 else lo.emit("concat", pieces, axis, result=_with(x, shape))
    return lo.reshape(patches, (n, oh * ow, kh * kw * c))


def _conv2d_as_matmul(lo: Lowering, op, x: Value, w: Value, strides, pad, rhs_dil, groups: int,
                      oh: int, ow: int) -> Value:
    """Exact im2col: the windows of the padded input as one [N*P, kh*kw*C] matrix (P output
    positions) times the kernel as a [kh*kw*C, O] matrix (batched over groups). For
    convolutions with few output positions and a big kernel (the gradient wrt a kernel),
    where ttnn.conv2d is a poor fit and rejects some shapes (measured); for integer
    convolutions, which ttnn.conv2d does not take (their matmul is exact); and for a
    precision above DEFAULT, which the matmul honours as a dot's (matmul.py)."""
    x = _pad_spatial(lo, x, pad)
    n = x.type.shape[0]
    o, cg, kh, kw = w.type.shape
    g = groups
    patches = _patches(lo, x, (kh, kw), strides, rhs_dil, oh, ow)
    # [N, P, kh, kw, G, Cg] -> [G, N*P, kh*kw*Cg]; kernel [G, Og, Cg, kh, kw] -> [G, kh*kw*Cg, Og]
    patches = lo.reshape(patches, (n * oh * ow, kh * kw, g, cg))
    patches = lo.reshape(lo.permute(patches, [2, 0, 1, 3]), (g, n * oh * ow, kh * kw * cg))
    kernel = lo.permute(lo.reshape(w, (g, o // g, cg, kh, kw)), [0, 3, 4, 2, 1])
    kernel = lo.reshape(kernel, (g, kh * kw * cg, o // g))
    if g == 1:
        patches, kernel = lo.reshape(patches, patches.type.shape[1:]), lo.reshape(kernel, kernel.type.shape[1:])
    out = _with(x, patches.type.shape[:-1] + (o // g,))
    y = matmul(lo, op, patches, kernel, out)
    if g > 1:
        y = lo.permute(y, [1, 0, 2])
    return lo.reshape(y, (n, oh, ow, o))


def _conv2d(lo: Lowering, op, x: Value, w: Value, strides, pad, rhs_dil, groups: int) -> Value:
    """x [N,H,W,C] * w [O,I/groups,kh,kw] -> [N,OH,OW,O] by one ttnn.conv2d, or by im2col
    + matmul for integers, a precision above DEFAULT, and when there are fewer output
    positions than kernel taps."""
    n, h, wd, c = x.type.shape
    o, _, kh, kw = w.type.shape
    oh, ow = (max(0, (size + p0 + p1 - (k - 1) * d - 1) // s + 1)
              for size, p0, p1, k, d, s in ((h, pad[0], pad[1], kh, rhs_dil[0], strides[0]),
                                            (wd, pad[2], pad[3], kw, rhs_dil[1], strides[1])))
    if x.type.dtype not in FLOATS or plan(lo, op) is not None or (oh * ow < kh * kw and oh * ow <= MAX_POSITIONS):
        return _conv2d_as_matmul(lo, op, x, w, strides, pad, rhs_dil, groups, oh, ow)
    w = lo.emit("to_layout", w, layout_attr(ROW_MAJOR), result=dataclasses.replace(w.type, layout=ROW_MAJOR))
    y = lo.emit("conv2d", result=TensorType((1, 1, n * oh * ow, o), x.type.dtype),
                input_tensor=lo.reshape(x, (1, 1, n * h * wd, c)), weight_tensor=w, device=DEVICE,
                in_channels=c, out_channels=o, batch_size=n, input_height=h, input_width=wd,
                kernel_size=(kh, kw), stride=tuple(strides), padding=tuple(pad),
                dilation=tuple(rhs_dil), groups=groups)
    return lo.reshape(y, (n, oh, ow, o))


def _conv3d(lo: Lowering, op, x: Value, w: Value, strides, pad, rhs_dil, groups: int) -> Value:
    """x [N,D,H,W,C] * w [O,I,kd,kh,kw]: for each depth tap i, the depth planes it reads
    (a strided slice of the depth-padded input) go into the batch of one conv2d; the
    kd results are summed. Exact; kd conv2d calls."""
    n, dd, h, wd, c = x.type.shape
    o, i_, kd = w.type.shape[:3]
    if pad[0] or pad[1]:  # zeros on both sides of depth (concat: TILE pads only at the back)
        parts = ([_zeros_like(lo, x, (n, pad[0], h, wd, c))] if pad[0] else []) + [x] + \
            ([_zeros_like(lo, x, (n, pad[1], h, wd, c))] if pad[1] else [])
        dd += pad[0] + pad[1]
        x = lo.emit("concat", parts, 1, result=_with(x, (n, dd, h, wd, c)))
    od = (dd - (kd - 1) * rhs_dil[0] - 1) // strides[0] + 1
    total = None
    for i in range(kd):
        first = i * rhs_dil[0]
        planes = lo.emit("slice", x, [0, first, 0, 0, 0], [n, first + (od - 1) * strides[0] + 1, h, wd, c],
                         [1, strides[0], 1, 1, 1], result=_with(x, (n, od, h, wd, c)))
        tap = lo.emit("slice", w, [0, 0, i, 0, 0], [o, i_, i + 1, *w.type.shape[3:]], [1] * 5,
                      result=_with(w, (o, i_, 1, *w.type.shape[3:])))
        y = _conv2d(lo, op, lo.reshape(planes, (n * od, h, wd, c)), lo.reshape(tap, (o, i_, *w.type.shape[3:])),
                    strides[1:], pad[2:], rhs_dil[1:], groups)
        total = y if total is None else lo.emit("add", total, y, result=y.type)
    return lo.reshape(total, (n, od, *total.type.shape[1:]))


@rule("stablehlo.convolution")
def _convolution(lo: Lowering, op) -> list:
    dn = stablehlo.ConvDimensionNumbers(op.attributes["dimension_numbers"])
    ns = len(dn.input_spatial_dimensions)
    out = result_type(op)
    compute = WIDE if out.dtype in NARROW else out.dtype   # (ttnn multiplies no uint8 / uint16)
    if 0 in (*out.shape, *host_type(op.operands[0]).shape, *host_type(op.operands[1]).shape):
        return [fill(lo, 0, out)]   # nothing to compute, or sums of nothing (padding only)
    if ns not in (0, 1, 2, 3):
        raise lo.unsupported(f"convolution with {ns} spatial dims (0-D to 3-D are lowered to ttnn.conv2d)")
    strides = _ints(op, "window_strides", ns, 1)
    pad = _ints(op, "padding", 2 * ns, 0)
    lhs_dil = _ints(op, "lhs_dilation", ns, 1)
    rhs_dil = _ints(op, "rhs_dilation", ns, 1)
    reversal = _bools(op, "window_reversal", ns)
    fgc = ir.IntegerAttr(op.attributes["feature_group_count"]).value
    bgc = ir.IntegerAttr(op.attributes["batch_group_count"]).value

    # Input to N, spatial..., C; kernel to O, I, spatial... (ttnn's OIHW).
    x = lo.permute(lo.get(op.operands[0]),
                   [dn.input_batch_dimension, *dn.input_spatial_dimensions, dn.input_feature_dimension])
    w = lo.permute(lo.get(op.operands[1]), [dn.kernel_output_feature_dimension,
                                            dn.kernel_input_feature_dimension, *dn.kernel_spatial_dimensions])
    x, w = lo.typecast(x, compute), lo.typecast(w, compute)
    if ns == 0:  # no spatial dims (a dot over features, grouped or not) as 1-D of length 1
        x = lo.reshape(x, (x.type.shape[0], 1, x.type.shape[1]))
        w = lo.reshape(w, (*w.type.shape, 1))
        strides, pad, lhs_dil, rhs_dil, reversal = [1], [0, 0], [1], [1], [False]
    if ns <= 1:  # 1-D as 2-D with a unit height
        strides, pad, lhs_dil, rhs_dil, reversal = [1, *strides], [0, 0, *pad], [1, *lhs_dil], \
            [1, *rhs_dil], [False, *reversal]
        n_, l_, c_ = x.type.shape
        x = lo.reshape(x, (n_, 1, l_, c_))
        o_, i_, k_ = w.type.shape
        w = lo.reshape(w, (o_, i_, 1, k_))
    spatial = list(range(1, len(x.type.shape) - 1))
    if bgc > 1:  # batch groups -> feature groups: [G*N', S..., C] -> [N', S..., G*C]
        if fgc != 1:
            raise lo.unsupported("convolution with both batch_group_count and feature_group_count > 1")
        n_, *sp, c_ = x.type.shape
        x = lo.reshape(x, (bgc, n_ // bgc, *sp, c_))
        x = lo.permute(x, [1, *(a + 1 for a in spatial), 0, len(sp) + 2])
        x = lo.reshape(x, (n_ // bgc, *sp, bgc * c_))
        fgc = bgc
    for axis, d in zip(spatial, lhs_dil):
        if d > 1:
            x = _dilate(lo, x, axis, d)
    if any(p < 0 for p in pad):  # negative padding crops the (dilated) input
        shape = list(x.type.shape)
        starts = [0] + [max(-pad[2 * k], 0) for k in range(len(spatial))] + [0]
        ends = [shape[0]] + [shape[a] - max(-pad[2 * k + 1], 0) for k, a in enumerate(spatial)] + [shape[-1]]
        x = lo.emit("slice", x, starts, ends, [1] * len(shape),
                    result=_with(x, [e - s for s, e in zip(starts, ends)]))
        pad = [max(p, 0) for p in pad]
    if any(reversal):
        w = reverse(lo, w, [2 + i for i, r in enumerate(reversal) if r])

    y = (_conv2d if len(spatial) == 2 else _conv3d)(lo, op, x, w, strides, pad, rhs_dil, fgc)
    if ns <= 1:   # [N, 1, L, O] -> [N, L, O], or [N, O] (L == 1) for no spatial dims
        n_, _, l_, o_ = y.type.shape
        y = lo.reshape(y, (n_, l_, o_) if ns == 1 else (n_, o_))
    ours = [dn.output_batch_dimension, *dn.output_spatial_dimensions, dn.output_feature_dimension]
    assert tuple(y.type.shape) == tuple(out.shape[i] for i in ours), (y.type.shape, out.shape)
    return [narrow_back(lo, lo.permute(y, [ours.index(i) for i in range(len(ours))]), out.dtype)]
