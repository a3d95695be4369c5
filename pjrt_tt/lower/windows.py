"""Window ops: reduce_window (pooling, cumulative sums) and select_and_scatter (max-pool grads).

What each becomes:
- reduce_window add / multiply over a whole dim with (n-1, 0) / (0, n-1) padding and stride 1
  (what jnp.cumsum / cumprod, reverse=True too, emit in jax 0.7.1) -> ttnn.cumsum / cumprod
  (reverse_order=). Other multiply windows are rejected.
- every other add / max / min reduce_window (max and avg pooling, cummax, ...) -> one strided
  ttnn.slice per window element, combined with ttnn.add / maximum / minimum: exact, any
  rank / dtype / layout / padding / dilation. ttnn.max_pool2d / avg_pool2d are not used:
  they take bf16 only (f32: "Only BFLOAT16 supported for now") and reject shapes such as a
  3x3/2 pool over 7x9 ("Shard height 224 must match physical height 64 for width sharded").
  Windows of more than MAX_ELEMENTS elements never reach this rule: ingest writes them out
  in log2 steps per dim (ingest/reductions.py).
- select_and_scatter with a >= / > (max) or <= / < (min) select and an add, max or min
  scatter (max-pool gradients; torch_xla's max-pool indices scatter the pooled max with
  max): the same slices pick, per window, the first (>=, <=) or last (>, <) element equal
  to the window's extreme (XLA's rule), and each window element's share of the source is
  placed back with interior/edge padding, the scatter's identity elsewhere.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from pjrt_tt import dtypes
from pjrt_tt.ingest.reductions import MAX_ELEMENTS, window_ints, window_padding
from pjrt_tt.ingest import bodies
from pjrt_tt.lower.builder import Lowering, Splat
from pjrt_tt.lower.helpers import (NARROW, WIDE, binary, host_type, like, narrow_back, pad, result_type, slice_,
                                   where)
from pjrt_tt.lower.registry import rule
from pjrt_tt.program import HostType, Value

COMBINE = {"add": "add", "max": "maximum", "min": "minimum"}
SCANS = {"add": "cumsum", "mul": "cumprod"}
IDENTITY = {"add": 0.0, "max": -math.inf, "min": math.inf}


def _windows(lo: Lowering, x: Value, h: HostType, window, strides, dilations, low, high, fill, out_shape):
    """The strided slice of the padded `x` seen by each window element, in row-major order."""
    if math.prod(window) > MAX_ELEMENTS:
        raise lo.unsupported(f"windows of {math.prod(window)} elements (more than {MAX_ELEMENTS}): "
                             f"one slice per window element would not be cheap")
    if any(low + high):
        x = pad(lo, x, h, low, high, [0] * len(low), fill)
    for offset in itertools.product(*(range(w) for w in window)):
        starts = [o * d for o, d in zip(offset, dilations)]
        ends = [s + (n - 1) * st + 1 for s, n, st in zip(starts, out_shape, strides)]
        yield offset, slice_(lo, x, starts, ends, strides)


def _fold(lo: Lowering, fn: str, parts: list[Value]) -> Value:
    while len(parts) > 1:  # a balanced tree: shorter dependency chains, fewer rounding steps
        parts = [lo.emit(fn, a, b, result=a.type) for a, b in zip(parts[0::2], parts[1::2])] + \
                (parts[-1:] if len(parts) % 2 else [])
    return parts[0]


@rule("stablehlo.reduce_window")
def _reduce_window(lo: Lowering, op) -> list:
    # other bodies reach this rule only where ingest/reductions.py could not write them out
    written_out = "(other elementwise bodies run written out by ingest/reductions.py)"
    if len(op.results) != 1:
        raise lo.unsupported(f"reduce_window over several operands at once {written_out}")
    kind = bodies.combiner(op.regions[0])
    if kind not in COMBINE and kind not in SCANS:
        raise lo.unsupported(f"reduce_window whose body is not add/max/min/multiply "
                             f"(got {bodies.op_names(op.regions[0])}) {written_out}")
    h = host_type(op.operands[0])
    rank = len(h.shape)
    init = lo.entry(op.operands[1])
    # another init (a constant, or computed at run time) pads the operand and folds in once
    identity = isinstance(init, Splat) and bodies.identity_of(kind, init.value, h.element.numpy)
    window = window_ints(op, "window_dimensions", rank)
    strides = window_ints(op, "window_strides", rank)
    dilations = window_ints(op, "window_dilations", rank)
    low, high = window_padding(op, rank)
    if window_ints(op, "base_dilations", rank) != [1] * rank:
        raise lo.unsupported("reduce_window with base dilation")
    x = lo.get(op.operands[0])
    out = final = result_type(op)
    if out.dtype in NARROW:   # ttnn's binary and cumulative ops refuse uint8 / uint16: in uint32, wrapped back
        x, out, h = lo.typecast(x, WIDE), like(out, WIDE), dataclasses.replace(h, element=dtypes.from_mlir("ui32"))
        if not isinstance(init, Splat):
            init = lo.typecast(lo.materialize(init), WIDE)
    scan = [d for d in range(rank) if window[d] != 1]
    result = None
    if identity and kind in SCANS and len(scan) == 1 and strides == [1] * rank and dilations == [1] * rank:
        d, n = scan[0], h.shape[scan[0]]
        others_unpadded = not any(low[i] or high[i] for i in range(rank) if i != d)
        if window[d] == n > 1 and others_unpadded and (low[d], high[d]) in ((n - 1, 0), (0, n - 1)):
            result = lo.emit(SCANS[kind], x, d, reverse_order=high[d] > 0, result=out)
    if result is None:
        if kind not in COMBINE:
            raise lo.unsupported(f"reduce_window multiply other than a cumulative product {written_out}")
        # padding takes no part in a window (XLA skips it): the reduction's identity, the init once after
        fill = init.value if identity else _identity(kind, h.element.numpy)
        parts = [x] if not rank else [s for _, s in _windows(lo, x, h, window, strides, dilations, low, high, fill,
                                                             host_type(op.results[0]).shape)]
        result = _fold(lo, COMBINE[kind], parts)
        if not identity:
            result = binary(lo, COMBINE[kind], result, init, out, commutative=True)
    return [narrow_back(lo, result, final.dtype) if final.dtype != out.dtype else result]


def _identity(kind: str, dtype):
    if dtype.kind == "f" or kind == "add":
        return IDENTITY[kind]
    info = np.iinfo(dtype)
    return info.min if kind == "max" else info.max


@rule("stablehlo.select_and_scatter")
def _select_and_scatter(lo: Lowering, op) -> list:
    select, scatter = op.regions
    direction, fn = bodies.comparator(select), bodies.combiner(scatter)
    if direction is None or fn not in COMBINE:
        raise lo.unsupported(f"select_and_scatter other than a >=, >, <= or < select with an add, max or "
                             f"min scatter (got select {bodies.op_names(select)}, scatter "
                             f"{bodies.op_names(scatter)})")
    operand, source, init = op.operands
    h = host_type(operand)
    if not h.element.is_float:
        raise lo.unsupported("select_and_scatter on integers")
    rank = len(h.shape)
    low, high = window_padding(op, rank)
    if direction in ("GT", "LT") and any(low + high):
        # measured: XLA:CPU's pick is then not the last in-bounds extreme (for > it matches
        # padding that compares as +inf); no framework emits this form, so it is refused
        raise lo.unsupported("select_and_scatter with a strict (> / <) select over padded windows")
    init = lo.entry(init)
    if not isinstance(init, Splat):
        raise lo.unsupported("select_and_scatter with an initial value computed at run time")
    window, strides = window_ints(op, "window_dimensions", rank), window_ints(op, "window_strides", rank)
    out_shape = host_type(source).shape
    x, src = lo.get(operand), lo.get(source)
    largest = direction in ("GE", "GT")
    slices = list(_windows(lo, x, h, window, strides, [1] * rank, low, high,
                           -math.inf if largest else math.inf, out_shape))
    best = _fold(lo, "maximum" if largest else "minimum", [s for _, s in slices])
    # XLA keeps the selected element while select(selected, next) holds: >= / <= keep the
    # first of equal extremes, > / < move on to the last.
    order = slices if direction in ("GE", "LE") else slices[::-1]
    padded = [n + a + b for n, a, b in zip(h.shape, low, high)]
    identity = IDENTITY[fn]
    placed, taken = [], None
    for offset, s in order:
        hit = lo.emit("eq", s, best, result=s.type)          # 1.0 / 0.0 in x's dtype
        if taken is not None:  # only one element per window
            hit = lo.emit("subtract", hit, lo.emit("multiply", hit, taken, result=s.type), result=s.type)
        taken = hit if taken is None else lo.emit("add", taken, hit, result=s.type)
        share = (lo.emit("multiply", src, hit, result=s.type) if fn == "add"
                 else where(lo, hit, src, identity, s.type))
        # Back to where this window element sits: offset + stride * window index.
        ends = [o + (n - 1) * st + 1 for o, n, st in zip(offset, out_shape, strides)]
        placed.append(pad(lo, share, HostType(h.element, tuple(out_shape)), list(offset),
                          [p - e for p, e in zip(padded, ends)], [st - 1 for st in strides], identity))
    grad = _fold(lo, COMBINE[fn], placed)
    if any(low + high):
        grad = slice_(lo, grad, low, [a + n for a, n in zip(low, h.shape)], [1] * rank)
    if not bodies.identity_of(fn, init.value):
        grad = lo.emit(COMBINE[fn], grad, float(init.value), result=grad.type)
    return [grad]
