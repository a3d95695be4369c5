"""Elementwise rules: unary math, binary math, comparisons, select, convert."""
from __future__ import annotations

import dataclasses

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from pjrt_tt.lower.registry import Lowering, Splat, device_type, host_type, rule
from pjrt_tt.program import TensorType, Value

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


def binary(lo: Lowering, fn: str, lhs, rhs, commutative: bool, out: TensorType) -> Value:
    """Emit a ttnn binary op, using its tensor-scalar form when one side is a splat."""
    a, b = lo.entry(lhs), lo.entry(rhs)
    if isinstance(a, Splat) and not isinstance(b, Splat) and commutative:
        a, b = b, a
    if isinstance(b, Splat) and not isinstance(a, Splat) and a.type.dtype in ("float32", "bfloat16"):
        return lo.emit(fn, a, float(b.value), result=out)
    return lo.emit(fn, lo.materialize(a), lo.materialize(b), result=out)


@rule(*BINARY)
def _binary(lo: Lowering, op) -> list:
    fn, commutative = BINARY[op.operation.name]
    return [binary(lo, fn, op.operands[0], op.operands[1], commutative, result_type(op))]


@rule(*LOGICAL)
def _logical(lo: Lowering, op) -> list:
    if not host_type(op.results[0]).element.is_bool:
        raise lo.unsupported("bitwise operations on integers are not lowered yet")
    fn = LOGICAL[op.operation.name]
    return [lo.emit(fn, lo.get(op.operands[0]), lo.get(op.operands[1]), result=result_type(op))]


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
    operand = lo.entry(lhs)
    operand_dtype = operand.type.dtype if isinstance(operand, Value) else device_type(operand.host).dtype
    # ttnn comparisons return the operands' dtype holding 0/1; booleans are bfloat16 0/1.
    raw = binary(lo, COMPARE[direction], lhs, rhs, False, dataclasses.replace(out, dtype=operand_dtype))
    return [lo.typecast(raw, out.dtype)]


@rule("stablehlo.select")
def _select(lo: Lowering, op) -> list:
    pred, on_true, on_false = (lo.get(v) for v in op.operands)
    return [lo.emit("where", pred, on_true, on_false, result=result_type(op))]


@rule("stablehlo.convert")
def _convert(lo: Lowering, op) -> list:
    src, dst = host_type(op.operands[0]), host_type(op.results[0])
    entry = lo.entry(op.operands[0])
    if isinstance(entry, Splat):
        value = bool(entry.value) if dst.element.is_bool else entry.value
        return [Splat(value, dst)]
    out = device_type(dst)
    if dst.element.is_bool and not src.element.is_bool:
        nonzero = lo.emit("ne", entry, 0.0 if entry.type.dtype in ("float32", "bfloat16") else 0,
                          result=dataclasses.replace(out, dtype=entry.type.dtype))
        return [lo.typecast(nonzero, out.dtype)]
    return [lo.typecast(entry, out.dtype)]
