"""Shape and data movement: constants, iota, broadcast, reshape, transpose, slice, concat."""
from __future__ import annotations

import dataclasses

from jaxlib.mlir import ir

from pjrt_tt.ingest import constant_array, splat_value
from pjrt_tt.lower.builder import Broadcast, Lowering, Splat
from pjrt_tt.lower.helpers import host_type, pad, result_type
from pjrt_tt.lower.registry import rule
from pjrt_tt.program import DEVICE, device_type, dtype_attr, layout_attr


def _dims(op, name: str) -> list[int]:
    return [int(d) for d in ir.DenseI64ArrayAttr(op.attributes[name])]


@rule("stablehlo.constant")
def _constant(lo: Lowering, op) -> list:
    h = host_type(op.results[0])
    h.element.check_supported(f"constant at {lo.location}")
    value = splat_value(op.attributes["value"])
    if value is not None:
        return [Splat(value, h)]
    return [lo.constant(constant_array(op.attributes["value"], h.element.numpy), h)]


@rule("stablehlo.broadcast_in_dim")
def _broadcast_in_dim(lo: Lowering, op) -> list:
    out_h = host_type(op.results[0])
    entry = lo.entry(op.operands[0])
    if isinstance(entry, Splat):
        return [Splat(entry.value, out_h)]
    entry = lo.materialize(entry)
    dims = _dims(op, "broadcast_dimensions")
    in_shape = host_type(op.operands[0]).shape
    # Put the operand's dims in result order, then give it the result's rank with 1s.
    order = sorted(range(len(dims)), key=lambda i: dims[i])
    x = lo.permute(entry, order)
    aligned = [1] * len(out_h.shape)
    for i in order:
        aligned[dims[i]] = in_shape[i]
    x = lo.reshape(x, tuple(aligned))
    if tuple(x.type.shape) == device_type(out_h).shape:
        return [x]
    return [Broadcast(x, out_h)]


@rule("stablehlo.reshape")
def _reshape(lo: Lowering, op) -> list:
    entry = lo.entry(op.operands[0])
    h = host_type(op.results[0])
    if isinstance(entry, Splat):
        return [Splat(entry.value, h)]
    return [lo.reshape(lo.materialize(entry), h.shape)]


@rule("stablehlo.transpose")
def _transpose(lo: Lowering, op) -> list:
    entry = lo.entry(op.operands[0])
    if isinstance(entry, Splat):
        return [Splat(entry.value, host_type(op.results[0]))]
    return [lo.permute(lo.materialize(entry), _dims(op, "permutation"))]


@rule("stablehlo.slice")
def _slice(lo: Lowering, op) -> list:
    entry = lo.entry(op.operands[0])
    h = host_type(op.results[0])
    if isinstance(entry, Splat):
        return [Splat(entry.value, h)]
    entry = lo.materialize(entry)
    starts, limits, strides = (_dims(op, n) for n in ("start_indices", "limit_indices", "strides"))
    if not starts:  # rank 0
        return [entry]
    if starts == [0] * len(starts) and limits == list(host_type(op.operands[0]).shape) \
            and all(s == 1 for s in strides):
        return [entry]
    return [lo.emit("slice", entry, starts, limits, strides, result=result_type(op))]


@rule("stablehlo.concatenate")
def _concatenate(lo: Lowering, op) -> list:
    dim = ir.IntegerAttr(op.attributes["dimension"]).value
    if 0 in host_type(op.results[0]).shape:   # an empty result (ttnn.concat takes no empty parts)
        return [Splat(0, host_type(op.results[0]))]
    parts = [lo.get(v) for v in op.operands if host_type(v).shape[dim] != 0]
    if len(parts) == 1:
        return [parts[0]]
    return [lo.emit("concat", parts, dim, result=result_type(op))]


@rule("stablehlo.iota")
def _iota(lo: Lowering, op) -> list:
    h = host_type(op.results[0])
    dim = ir.IntegerAttr(op.attributes["iota_dimension"]).value
    out = result_type(op)
    n = h.shape[dim]
    line = lo.emit("arange", 0, n, 1, result=dataclasses.replace(out, shape=(n,)),
                   dtype=dtype_attr(out.dtype), device=DEVICE, layout=layout_attr(out.layout))
    aligned = tuple(n if d == dim else 1 for d in range(len(h.shape)))
    x = lo.reshape(line, aligned)
    return [x if tuple(x.type.shape) == out.shape else Broadcast(x, h)]


@rule("stablehlo.pad")
def _pad(lo: Lowering, op) -> list:
    """Edge and interior padding (what the gradient of a slice produces), built from
    slice, reshape and concat with blocks of the pad value (a constant, or a value computed
    at run time, repeated): ttnn.pad cannot pad the front of a TILE tensor on device."""
    value = lo.entry(op.operands[1])
    fill = value.value if isinstance(value, Splat) else lo.materialize(value)
    low, high, interior = (_dims(op, n) for n in ("edge_padding_low", "edge_padding_high",
                                                  "interior_padding"))
    h = host_type(op.operands[0])
    return [pad(lo, lo.get(op.operands[0]), h, low, high, interior, fill)]
