"""Float comparisons of `compare_type = TOTALORDER` written as integer comparisons.

jax compares in IEEE's total order where an order must hold for every value (sort keys,
`searchsorted`): -NaN < -inf < ... < -0 < +0 < ... < +inf < +NaN. ttnn compares floats as
IEEE does (a NaN is unordered, -0 == +0), which put `searchsorted` of a NaN or an infinity
at the wrong index. So each operand becomes its order key: its float32 bits as an int32, the
magnitude bits flipped when the sign is set (x ^ ((x >> 31) & 0x7FFFFFFF)), compared as
signed integers (exact on the chip). bfloat16 and float16 widen to float32 first (exactly);
float64 computes as float32 in any case (narrow64.py). Comparators and reducer bodies are
left alone: the lowering reads those as patterns.
"""
from __future__ import annotations

from jaxlib.mlir import ir

from pjrt_tt.ingest.mlir_compat import as_operation, create


# ops whose regions the lowering runs op by op; other bodies (a sort's comparator, a reducer)
# it reads as patterns, and orders by ttnn's own sort and reductions
_OP_BY_OP = {"func.func", "stablehlo.while", "stablehlo.if", "stablehlo.case"}


def total_order_compares(module: ir.Module) -> None:
    found = []
    module.operation.walk(lambda op: (found.append(op) if op.name == "stablehlo.compare" and "compare_type" in
                                      op.attributes and "TOTALORDER" in str(op.attributes["compare_type"])
                                      and as_operation(op.parent).name in _OP_BY_OP
                                      else None) or ir.WalkResult.ADVANCE)
    for op in found:
        with op.context, op.location, ir.InsertionPoint(op):
            keys = [_order_key(v) for v in op.operands]
            attrs = {"comparison_direction": op.attributes["comparison_direction"],
                     "compare_type": ir.Attribute.parse("#stablehlo<comparison_type SIGNED>")}
            op.operands[0], op.operands[1] = keys
            for name, value in attrs.items():
                op.attributes[name] = value


def _order_key(x: ir.Value) -> ir.Value:
    t = ir.RankedTensorType(x.type)
    if not isinstance(t.element_type, ir.F32Type):
        x = create("stablehlo.convert", ir.RankedTensorType.get(t.shape, ir.F32Type.get()), [x])
    i32 = ir.RankedTensorType.get(t.shape, ir.IntegerType.get_signless(32))

    def const(n: int) -> ir.Value:
        return create("stablehlo.constant", i32, [], {"value": ir.DenseElementsAttr.get_splat(
            i32, ir.IntegerAttr.get(ir.IntegerType.get_signless(32), n))})
    bits = create("stablehlo.bitcast_convert", i32, [x])
    sign = create("stablehlo.shift_right_arithmetic", i32, [bits, const(31)])
    return create("stablehlo.xor", i32, [bits, create("stablehlo.and", i32, [sign, const(0x7FFFFFFF)])])
