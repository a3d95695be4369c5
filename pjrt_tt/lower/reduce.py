"""stablehlo.reduce with a single-op body -> ttnn.sum / max / min."""
from __future__ import annotations

import dataclasses
import math

from jaxlib.mlir import ir

from pjrt_tt.lower.elementwise import result_type
from pjrt_tt.lower.registry import Lowering, Splat, host_type, rule

# body op -> (ttnn reduction, ttnn binary op to fold a non-identity init, identity test)
REDUCERS = {
    "stablehlo.add": ("sum", "add", lambda v: v == 0),
    "stablehlo.maximum": ("max", "maximum", lambda v: v == -math.inf or v <= -3.0e38 or v == -(2**31)),
    "stablehlo.minimum": ("min", "minimum", lambda v: v == math.inf or v >= 3.0e38 or v == 2**31 - 1),
    "stablehlo.or": ("max", "logical_or", lambda v: not v),
    "stablehlo.and": ("min", "logical_and", lambda v: bool(v)),
}


@rule("stablehlo.reduce")
def _reduce(lo: Lowering, op) -> list:
    if len(op.results) != 1:
        raise lo.unsupported("variadic reductions (argmax/argmin) are not lowered yet")
    body = list(op.regions[0].blocks[0].operations)
    kind = body[0].operation.name if len(body) == 2 else None
    if kind not in REDUCERS:
        raise lo.unsupported(f"reductions whose body is not a single add/max/min/and/or "
                             f"(got {[b.operation.name for b in body]})")
    reduction, combine, is_identity = REDUCERS[kind]
    if kind in ("stablehlo.or", "stablehlo.and") and not host_type(op.results[0]).element.is_bool:
        raise lo.unsupported("bitwise and/or reductions on integers are not lowered yet")
    dims = sorted(int(d) for d in ir.DenseI64ArrayAttr(op.attributes["dimensions"]))
    operand, init = op.operands
    x = lo.get(operand)
    out = result_type(op)
    if dims:
        in_shape = host_type(operand).shape
        kept = tuple(1 if d in dims else s for d, s in enumerate(in_shape))
        reduced = lo.emit(reduction, x, dim=dims, keepdim=True,
                          result=dataclasses.replace(x.type, shape=kept))
        x = lo.reshape(reduced, out.shape)
    init_entry = lo.entry(init)
    if isinstance(init_entry, Splat) and is_identity(init_entry.value):
        return [x]
    # A constant non-identity init folds in: reduce(x, init) == combine(reduce(x), init).
    if isinstance(init_entry, Splat) and out.dtype in ("float32", "bfloat16"):
        return [lo.emit(combine, x, float(init_entry.value), result=out)]
    raise lo.unsupported("reductions with a non-constant or integer non-identity initial value")
