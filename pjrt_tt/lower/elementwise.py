"""Elementwise rules: unary math, binary math, comparisons, select, convert."""
from __future__ import annotations

import numpy as np

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from pjrt_tt.lower.registry import Broadcast, Lowering, Splat, device_type, host_type, rule
from pjrt_tt.program import TensorType, Value, dtype_attr

FLOATS = ("float32", "bfloat16")

UNARY = {
    "stablehlo.negate": "neg",
    "stablehlo.abs": "abs",
    "stablehlo.exponential": "exp",
    "stablehlo.log": "log",
    "stablehlo.sqrt": "sqrt",
    "stablehlo.rsqrt": "rsqrt",
    "stablehlo.tanh": "tanh",
    "stablehlo.logistic": "sigmoid",
}

# StableHLO op -> (ttnn op, commutative)
BINARY = {
    "stablehlo.add": ("add", True),
    "stablehlo.subtract": ("subtract", False),
    "stablehlo.multiply": ("multiply", True),
    "stablehlo.divide": ("divide", False),
    "stablehlo.maximum": ("maximum", True),
    "stablehlo.minimum": ("minimum", True),
    "stablehlo.power": ("pow", False),
}

COMPARE = {"EQ": "eq", "NE": "ne", "LT": "lt", "LE": "le", "GT": "gt", "GE": "ge"}
SWAPPED = {"EQ": "EQ", "NE": "NE", "LT": "GT", "LE": "GE", "GT": "LT", "GE": "LE"}
LOGICAL = {"stablehlo.and": "logical_and", "stablehlo.or": "logical_or", "stablehlo.xor": "logical_xor"}


def result_type(op: ir.Operation, i: int = 0) -> TensorType:
    return device_type(host_type(op.results[i]))


@rule(*UNARY)
def _unary(lo: Lowering, op) -> list:
    x = lo.get(op.operands[0])
    return [lo.emit(UNARY[op.operation.name], x, result=result_type(op))]


def tensor_operands(lo: Lowering, entries: list, out_shape: tuple[int, ...]) -> list[Value]:
    """Operands for a ttnn elementwise op: pending broadcasts are passed un-repeated, as
    ttnn broadcasts like numpy, unless together they would not reach the result shape."""
    sources = [e.source if isinstance(e, Broadcast) else lo.materialize(e) for e in entries]
    if np.broadcast_shapes(*(v.type.shape for v in sources)) == tuple(out_shape):
        return sources
    return [lo.materialize(e) for e in entries]


def binary(lo: Lowering, fn: str, lhs, rhs, commutative: bool, out: TensorType, **kwargs) -> Value:
    """Emit a ttnn binary op, using its tensor-scalar form when one side is a splat."""
    a, b = lo.entry(lhs), lo.entry(rhs)
    if isinstance(a, Splat) and not isinstance(b, Splat) and commutative:
        a, b = b, a
    if isinstance(b, Splat) and not isinstance(a, Splat) and out_dtype_of(lo, a) in FLOATS:
        return lo.emit(fn, lo.materialize(a), float(b.value), result=out, **kwargs)
    return lo.emit(fn, *tensor_operands(lo, [a, b], out.shape), result=out, **kwargs)


def out_dtype_of(lo: Lowering, e) -> str:
    return e.type.dtype if isinstance(e, Value) else device_type(e.host).dtype


@rule(*BINARY)
def _binary(lo: Lowering, op) -> list:
    fn, commutative = BINARY[op.operation.name]
    return [binary(lo, fn, op.operands[0], op.operands[1], commutative, result_type(op))]


@rule(*LOGICAL)
def _logical(lo: Lowering, op) -> list:
    if not host_type(op.results[0]).element.is_bool:
        raise lo.unsupported("bitwise operations on integers are not lowered yet")
    out = result_type(op)
    operands = tensor_operands(lo, [lo.entry(v) for v in op.operands], out.shape)
    return [lo.emit(LOGICAL[op.operation.name], *operands, result=out)]


@rule("stablehlo.not")
def _not(lo: Lowering, op) -> list:
    if not host_type(op.results[0]).element.is_bool:
        raise lo.unsupported("bitwise not on integers is not lowered yet")
    return [lo.emit("logical_not", lo.get(op.operands[0]), result=result_type(op))]


@rule("stablehlo.compare")
def _compare(lo: Lowering, op) -> list:
    direction = stablehlo.ComparisonDirectionAttr(op.attributes["comparison_direction"]).value
    lhs, rhs = op.operands
    if isinstance(lo.entry(lhs), Splat) and not isinstance(lo.entry(rhs), Splat):
        lhs, rhs, direction = rhs, lhs, SWAPPED[direction]
    out = result_type(op)
    # ttnn comparisons return 0/1 in the operands' dtype unless told otherwise with dtype=;
    # booleans are bfloat16 0/1.
    kwargs = {} if out_dtype_of(lo, lo.entry(lhs)) == out.dtype else {"dtype": dtype_attr(out.dtype)}
    return [binary(lo, COMPARE[direction], lhs, rhs, False, out, **kwargs)]


@rule("stablehlo.select")
def _select(lo: Lowering, op) -> list:
    out = result_type(op)
    operands = tensor_operands(lo, [lo.entry(v) for v in op.operands], out.shape)
    return [lo.emit("where", *operands, result=out)]


@rule("stablehlo.convert")
def _convert(lo: Lowering, op) -> list:
    src, dst = host_type(op.operands[0]), host_type(op.results[0])
    entry = lo.entry(op.operands[0])
    if isinstance(entry, Splat):
        value = bool(entry.value) if dst.element.is_bool else entry.value
        return [Splat(value, dst)]
    entry = lo.materialize(entry)
    out = device_type(dst)
    if dst.element.is_bool and not src.element.is_bool:
        zero = 0.0 if entry.type.dtype in FLOATS else 0
        return [lo.emit("ne", entry, zero, result=out, dtype=dtype_attr(out.dtype))]
    return [lo.typecast(entry, out.dtype)]
