"""Emitting helpers the rule families share (a family never imports another family).

Types of MLIR values, the tensor-scalar and broadcasting forms of ttnn's binary and ternary
ops, uint8 / uint16 computed wide and masked back, and the constant padding, slicing and
reduction tables more than one family needs.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from jaxlib.mlir import ir

from pjrt_tt import dtypes
from pjrt_tt.lower.builder import Broadcast, Lowering, Splat
from pjrt_tt.program import (DEVICE, HostType, ShapeArg, TensorType, Value, device_type, dtype_attr,
                             layout_attr)
from pjrt_tt.ttnn_facts import BROADCAST_MAX_RANK

FLOATS = ("float32", "bfloat16")
NARROW = {"uint8": 0xFF, "uint16": 0xFFFF}   # computed in WIDE, then masked back
WIDE = "uint32"
# the values of each ttnn integer dtype (dtypes.INT_RANGE, by the ttnn name)
INT_RANGE = {dtypes.BY_MLIR[m].device: dtypes.INT_RANGE[m] for m in ("i32", "ui32", "ui16", "ui8")}
BITWISE = {"bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_left_shift", "bitwise_right_shift",
           "logical_right_shift"}

# reducer (lower/bodies.py names it) -> (ttnn reduction, ttnn binary op to fold a non-identity init)
REDUCERS = {
    "add": ("sum", "add"),
    "max": ("max", "maximum"),
    "min": ("min", "minimum"),
    "or": ("max", "logical_or"),
    "and": ("min", "logical_and"),
    "mul": ("prod", "multiply"),
}


def host_type(v: ir.Value | ir.Type) -> HostType:
    t = ir.RankedTensorType(v.type if isinstance(v, ir.Value) else v)
    return HostType(dtypes.from_mlir(str(t.element_type)), tuple(t.shape))


def result_type(op: ir.Operation, i: int = 0) -> TensorType:
    return device_type(host_type(op.results[i]))


def dtype_of(lo: Lowering, e) -> str:
    if isinstance(e, Value):
        return e.type.dtype
    return device_type(e.host).dtype if isinstance(e, (Splat, Broadcast)) else type(e).__name__


def like(t: TensorType, dtype: str) -> TensorType:
    return dataclasses.replace(t, dtype=dtype)


def fill(lo: Lowering, value, t: TensorType) -> Value:
    value = float(value) if t.dtype in FLOATS else int(value)
    return lo.emit("full", ShapeArg(t.shape), value, result=t, dtype=dtype_attr(t.dtype),
                   layout=layout_attr(t.layout), device=DEVICE)


def retype(lo: Lowering, e, dtype: str):
    """An entry converted (by value) to another device dtype, keeping splats and broadcasts lazy."""
    if isinstance(e, Splat):
        return Splat(e.value, dataclasses.replace(e.host, element=_element_for(dtype)))
    if isinstance(e, Broadcast):
        return Broadcast(lo.typecast(e.source, dtype), dataclasses.replace(e.host, element=_element_for(dtype)))
    return lo.typecast(e, dtype)


def _element_for(dtype: str):
    return next(t for t in dtypes.ELEMENT_TYPES if t.device == dtype and not t.is_bool)


def tensor_operands(lo: Lowering, entries: list, out_shape: tuple[int, ...]) -> list[Value]:
    """Operands for a ttnn elementwise op: pending broadcasts are passed un-repeated, as
    ttnn broadcasts like numpy, unless together they would not reach the result shape."""
    sources = [e.source if isinstance(e, Broadcast) else lo.materialize(e) for e in entries]
    if np.broadcast_shapes(*(v.type.shape for v in sources)) == tuple(out_shape) and all(
            v.type.shape[:-BROADCAST_MAX_RANK] == tuple(out_shape)[:-BROADCAST_MAX_RANK]
            for v in sources):   # ttnn broadcasts within the last 6 dims only
        return sources
    return [lo.materialize(e) for e in entries]


def scalar_form(e, dtype: str, fn: str):
    """The Python scalar to hand ttnn's tensor-scalar form for a splat operand, or None.
    Integer scalars are bound as C++ int32 by the bitwise ops, so uint32 bit patterns
    >= 2^31 travel as their signed twin; other out-of-int32 values stay tensors."""
    if not isinstance(e, Splat):
        return None
    if dtype in FLOATS:
        return float(e.value)
    v = int(e.value)
    if fn in BITWISE and dtype == "uint32" and v >= 2**31:
        v -= 2**32
    return v if -2**31 <= v < 2**31 else None


def binary(lo: Lowering, fn: str, a, b, out: TensorType, commutative: bool = False, **kwargs) -> Value:
    """Emit a ttnn binary op on two entries, using its tensor-scalar form for a splat."""
    if isinstance(a, Splat) and not isinstance(b, Splat) and commutative:
        a, b = b, a
    if not isinstance(a, Splat):
        s = scalar_form(b, dtype_of(lo, a), fn)
        if s is not None:
            return lo.emit(fn, lo.materialize(a), s, result=out, **kwargs)
        if isinstance(b, Splat) and b.host is None:  # a rule's own constant: a (1,) tensor broadcasts
            b = fill(lo, b.value, TensorType((1,), dtype_of(lo, a)))
    return lo.emit(fn, *tensor_operands(lo, [a, b], out.shape), result=out, **kwargs)


def where(lo: Lowering, cond: Value, a, b, out: TensorType) -> Value:
    """ttnn.where with tensor branches (an integer tensor with a scalar branch is refused)."""
    ops = [cond] + [fill(lo, x, out) if isinstance(x, (int, float)) else x for x in (a, b)]
    return lo.emit("where", *tensor_operands(lo, ops, out.shape), result=out)


def predicate(lo: Lowering, fn: str, a, b, shape: tuple[int, ...]) -> Value:
    """A comparison as a bfloat16 0/1 mask (ttnn.where's favourite condition)."""
    out = TensorType(shape, "bfloat16")
    return binary(lo, fn, a, b, out, dtype=dtype_attr("bfloat16"))


def narrow_back(lo: Lowering, v: Value, dtype: str) -> Value:
    """A WIDE / int32 result wrapped to uint8 / uint16 as XLA does (mask, then a typecast that
    only sees in-range values)."""
    if dtype not in NARROW:
        return lo.typecast(v, dtype)
    return lo.typecast(lo.emit("bitwise_and", v, NARROW[dtype], result=v.type), dtype)


def entries(lo: Lowering, op) -> list:
    return [lo.entry(v) for v in op.operands]


def slice_(lo: Lowering, x: Value, starts, ends, steps) -> Value:
    """ttnn.slice, or x itself when the slice is all of x: real ttnn returns its input
    tensor (same buffer) for a whole-tensor slice, so freeing one would free the other."""
    shape = [len(range(s, e, st)) for s, e, st in zip(starts, ends, steps)]
    if tuple(shape) == tuple(x.type.shape):
        return x
    return lo.emit("slice", x, list(starts), list(ends), list(steps), result=dataclasses.replace(x.type, shape=tuple(shape)))


def pad(lo: Lowering, x, h: HostType, low, high, interior, fill):
    """`x` (of host type `h`) padded with `fill`: a constant, or a scalar Value computed at
    run time (a pad value passed into an outlined function, then rounded to float16)."""
    element, shape = h.element, list(h.shape)

    def block(dims: list[int], d: int, size: int):
        dims = [size if i == d else s for i, s in enumerate(dims)]
        host = HostType(element, tuple(dims))
        if isinstance(fill, Value):
            return lo.materialize(Broadcast(lo.reshape(fill, (1,) * len(dims)), host))
        return lo.materialize(Splat(fill, host))

    def concat(parts, d: int, dims: list[int]):
        return lo.emit("concat", parts, d, result=dataclasses.replace(x.type, shape=tuple(dims)))

    for d, p in enumerate(interior):
        if p > 0 and shape[d] > 1:
            # Interleave: [n, 1] ++ [n, p] fill along a new axis, merge, drop the tail.
            n = shape[d]
            split = shape[:d + 1] + [1] + shape[d + 1:]
            joined = concat([lo.reshape(x, tuple(split)), block(split, d + 1, p)], d + 1,
                            shape[:d + 1] + [p + 1] + shape[d + 1:])
            flat = lo.reshape(joined, tuple(shape[:d] + [n * (p + 1)] + shape[d + 1:]))
            shape[d] = n + (n - 1) * p
            x = lo.emit("slice", flat, [0] * len(shape), list(shape), [1] * len(shape),
                        result=dataclasses.replace(x.type, shape=tuple(shape)))
    if any(p < 0 for p in low + high):  # negative edge padding removes elements (after the interior, as StableHLO orders them)
        starts = [max(-p, 0) for p in low]
        ends = [s - max(-p, 0) for s, p in zip(shape, high)]
        shape = [e - s for s, e in zip(starts, ends)]
        x = lo.emit("slice", x, starts, ends, [1] * len(shape),
                    result=dataclasses.replace(x.type, shape=tuple(shape)))
    for d in range(len(shape)):
        before, after = max(low[d], 0), max(high[d], 0)
        if before or after:
            parts = ([block(shape, d, before)] if before else []) + [x] + \
                    ([block(shape, d, after)] if after else [])
            shape[d] += before + after
            x = concat(parts, d, shape)
    return x


def integer_product(lo: Lowering, x: Value, dims: list[int]) -> Value:
    """The product over `dims` (kept as size 1) of an integer tensor, exact and wrapping as
    XLA's: halves multiplied elementwise until one slab is left (an odd size gets a slab of
    ones), log2(n) multiplies per dim."""
    for d in dims:
        while x.type.shape[d] > 1:
            shape = list(x.type.shape)
            if shape[d] % 2:
                one = fill(lo, 1, dataclasses.replace(x.type, shape=tuple(shape[:d] + [1] + shape[d + 1:])))
                shape[d] += 1
                x = lo.emit("concat", [x, one], d, result=dataclasses.replace(x.type, shape=tuple(shape)))
            half = shape[:d] + [shape[d] // 2] + shape[d + 1:]
            rank, ones = len(shape), [1] * len(shape)
            a = slice_(lo, x, [0] * rank, half, ones)
            b = slice_(lo, x, [0] * d + [half[d]] + [0] * (rank - d - 1), shape, ones)
            x = lo.emit("multiply", a, b, result=a.type)
    return x
