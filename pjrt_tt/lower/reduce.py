"""stablehlo.reduce: add / max / min / mul / and / or bodies -> ttnn.sum / max / min / prod;
the variadic (value, index) argmax / argmin bodies -> ttnn.max / min and ttnn.argmax.
Bodies are named by what they compute (lower/bodies.py), whichever way the framework
spelled them."""
from __future__ import annotations

import dataclasses
import math

from jaxlib.mlir import ir

from pjrt_tt.ingest.mlir_compat import defining_op
from pjrt_tt.ingest import bodies
from pjrt_tt.lower.builder import Broadcast, Entry, Lowering, Splat
from pjrt_tt.lower.helpers import (FLOATS, NARROW, REDUCERS, WIDE, binary, host_type, integer_product, like,
                                   narrow_back, predicate, result_type, where)
from pjrt_tt.lower.registry import rule
from pjrt_tt.program import HostType, TensorType, Value, layout_attr


@rule("stablehlo.reduce")
def _reduce(lo: Lowering, op) -> list:
    if len(op.results) != 1:
        return _arg_reduce(lo, op)
    kind = bodies.combiner(op.regions[0])
    if kind not in REDUCERS:
        raise lo.unsupported(f"reductions whose body is not add/max/min/mul/and/or "
                             f"(got {bodies.op_names(op.regions[0])})")
    reduction, combine = REDUCERS[kind]
    if kind in ("or", "and") and not host_type(op.results[0]).element.is_bool:
        raise lo.unsupported("bitwise and/or reductions on integers are not lowered yet")
    dims = sorted(int(d) for d in ir.DenseI64ArrayAttr(op.attributes["dimensions"]))
    operand, init = op.operands
    init_entry = lo.entry(init)
    in_shape = list(host_type(operand).shape)
    if any(in_shape[d] == 0 for d in dims):   # nothing to reduce: every result is the init
        return [_filled(lo, init_entry, host_type(op.results[0]))]
    if 0 in in_shape:   # no result at all (a kept dim is empty; ttnn's reductions keep the wrong dims then)
        return [Splat(0, host_type(op.results[0]))]
    x = lo.get(operand)
    out = final = result_type(op)
    if out.dtype in NARROW:   # ttnn's reductions refuse uint8 / uint16: in uint32, wrapped back
        x, out = lo.typecast(x, WIDE), like(out, WIDE)
    if reduction == "prod" and out.dtype not in ("float32", "bfloat16"):
        x = integer_product(lo, x, dims)   # ttnn.prod takes floats only
    elif dims:
        # ttnn.prod takes one dim at a time; the others take them all at once.
        for group in ([[d] for d in dims] if reduction == "prod" else [dims]):
            in_shape = [1 if d in group else s for d, s in enumerate(in_shape)]
            x = lo.emit(reduction, x, dim=group[0] if reduction == "prod" else group, keepdim=True,
                        result=dataclasses.replace(x.type, shape=tuple(in_shape)))
    x = lo.reshape(x, out.shape)
    if not (isinstance(init_entry, Splat) and bodies.identity_of(kind, init_entry.value, host_type(init).element.numpy)):
        # Any other init (a constant, or a value computed at run time) folds in:
        # reduce(x, init) == combine(reduce(x), init), the combiner being associative.
        if isinstance(init_entry, Value) and init_entry.type.dtype != out.dtype:
            init_entry = lo.typecast(init_entry, out.dtype)
        x = binary(lo, combine, x, init_entry, out, commutative=True)
    return [narrow_back(lo, x, final.dtype) if final.dtype != out.dtype else x]


def _filled(lo: Lowering, init: Entry, h: HostType) -> Entry:
    """The 0-d `init` as an entry of shape h (kept lazy: a splat, or a broadcast)."""
    if isinstance(init, Splat):
        return Splat(init.value, h)
    x = lo.materialize(init)
    if not h.shape:
        return x
    return Broadcast(lo.reshape(x, (1,) * len(h.shape)), h)


def _arg_reduce(lo: Lowering, op) -> list:
    """(value, index) reduce whose body keeps the larger (argmax) or smaller (argmin) value
    and the smaller index on ties (jnp.argmax's GT form, torch's GE / LE form). Over one dim
    of an iota: ttnn.argmax (floats only, first index on ties like XLA) gives a uint32
    ROW_MAJOR index; argmin is argmax of the negated values. Any other index operand (XLA's
    partitioner combines the chips' (value, index) pairs so; a vmapped categorical) or
    several dims: the best value, then the smallest index among the places holding it."""
    dims = [int(d) for d in ir.DenseI64ArrayAttr(op.attributes["dimensions"])]
    values, index = op.operands[:2]
    if len(op.results) != 2:
        raise lo.unsupported(f"variadic reductions of {len(op.results)} operands (argmax / argmin pairs are lowered)")
    iota = defining_op(index)
    by_iota = (len(dims) == 1 and iota is not None and iota.name == "stablehlo.iota"
               and ir.IntegerAttr(iota.attributes["iota_dimension"]).value == dims[0])
    kind = bodies.arg_reducer(op.regions[0])
    if kind is None:
        raise lo.unsupported(f"variadic reduction body {bodies.op_names(op.regions[0])} that is neither "
                             f"argmax nor argmin with the first index on ties")
    for init, identity in zip(op.operands[2:], (-math.inf if kind == "argmax" else math.inf, 0)):
        e = lo.entry(init)
        if not isinstance(e, Splat) or not (e.value == identity or bodies.identity_of(kind[3:], e.value,
                                                                                       host_type(init).element.numpy)):
            raise lo.unsupported(f"{kind} with an initial value other than ({'-' if kind == 'argmax' else ''}inf, 0)")
    x = lo.get(values)
    out_v, out_i = result_type(op, 0), result_type(op, 1)
    kept = tuple(1 if i in dims else s for i, s in enumerate(host_type(values).shape))
    keep = dataclasses.replace(x.type, shape=kept)
    wide = lo.typecast(x, WIDE) if x.type.dtype in NARROW else x   # (ttnn.max refuses uint8 / uint16)
    best = lo.emit("max" if kind == "argmax" else "min", wide, dim=dims, keepdim=True, result=like(keep, wide.type.dtype))
    if not by_iota:
        at_best = predicate(lo, "eq", wide, best, wide.type.shape)
        if wide.type.dtype in FLOATS:   # a NaN best is held where the values are NaN (eq never says so)
            nan = lambda v: predicate(lo, "ne", v, v, v.type.shape)  # noqa: E731
            both = lo.emit("logical_and", nan(wide), nan(best), result=at_best.type)
            at_best = lo.emit("logical_or", at_best, both, result=at_best.type)
        i = lo.get(index)
        i = lo.typecast(i, "int32") if i.type.dtype != "int32" else i
        candidates = where(lo, at_best, i, 2**31 - 1, i.type)
        arg = lo.emit("min", candidates, dim=dims, keepdim=True, result=like(keep, "int32"))
        best = lo.typecast(best, x.type.dtype) if best.type.dtype != x.type.dtype else best
        arg = lo.typecast(arg, out_i.dtype) if out_i.dtype != "int32" else arg
        return [lo.reshape(best, out_v.shape), lo.reshape(arg, out_i.shape)]
    d = dims[0]
    best = lo.typecast(best, x.type.dtype)
    key = x if x.type.dtype in ("float32", "bfloat16") else lo.typecast(x, "float32")  # exact < 2**24
    if kind == "argmin":
        key = lo.emit("neg", key, result=key.type)
    arg = lo.emit("argmax", key, dim=d, keepdim=True, result=TensorType(kept, "uint32", "ROW_MAJOR"))
    arg = lo.emit("to_layout", arg, layout_attr("TILE"), result=TensorType(kept, "uint32"))
    arg = lo.typecast(arg, out_i.dtype)
    return [lo.reshape(best, out_v.shape), lo.reshape(arg, out_i.shape)]
