"""Scalar region bodies (the reducer of reduce / reduce_window / scatter, the select of
select_and_scatter) named by what they compute, not by how they are spelled.

The frameworks spell one function many ways: jax writes a boolean AND as `stablehlo.and`,
torch_xla as compare NE / compare NE / and / select; jnp.argmax picks with GT plus an
index tie-break, torch's argmax with GE / select / EQ / minimum. Matching op names would
need one pattern per spelling, so a body is evaluated instead, on sample scalars that
tell the candidate functions apart, and named by the candidate it agrees with on every
sample. A body with an op this evaluator does not know is named None (the rule then
refuses it, naming the ops it found).

A body ingest writes out (reductions.py, scatters.py) is applied to whole tensors,
each scalar op elementwise (`elementwise`), when it holds only such ops (`scalar_only`).
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from pjrt_tt.ingest.attributes import splat_value
from pjrt_tt.ingest.mlir_compat import create, named_attributes

_COMPARE = {"EQ": lambda a, b: a == b, "NE": lambda a, b: a != b, "GE": lambda a, b: a >= b,
            "GT": lambda a, b: a > b, "LE": lambda a, b: a <= b, "LT": lambda a, b: a < b}
_BINARY = {
    "stablehlo.add": lambda a, b: (a or b) if isinstance(a, bool) else a + b,
    "stablehlo.subtract": lambda a, b: a - b,
    "stablehlo.multiply": lambda a, b: (a and b) if isinstance(a, bool) else a * b,
    "stablehlo.maximum": max,
    "stablehlo.minimum": min,
    "stablehlo.and": lambda a, b: a & b,
    "stablehlo.or": lambda a, b: a | b,
    "stablehlo.xor": lambda a, b: a ^ b,
}
# Samples that tell the candidates apart (no NaN: see arg_reducer).
_FLOATS = (-2.5, -1.0, 0.0, 0.5, 3.0)
_INTS = (-3, 0, 1, 5)
_BOOLS = (False, True)


class _Unknown(Exception):
    pass


def _kind(t: ir.Type) -> str:
    e = str(ir.RankedTensorType(t).element_type)
    return "bool" if e == "i1" else "float" if e.startswith(("f", "bf")) else "int"


def _cast(value, kind: str):
    return bool(value) if kind == "bool" else float(value) if kind == "float" else int(value)


def evaluate(region, args: tuple) -> tuple:
    """The body's results for scalar arguments (Python bool / int / float)."""
    block = region.blocks[0]
    env = {a: v for a, v in zip(block.arguments, args)}
    for op in block.operations:
        name = op.operation.name
        ins = [env[v] for v in op.operands]
        if name in ("stablehlo.return", "func.return"):   # (a region, or a called function's body)
            return tuple(ins)
        if name == "stablehlo.constant":
            out = splat_value(op.attributes["value"])
            if out is None:
                raise _Unknown(name)
        elif name == "stablehlo.compare":
            out = _COMPARE[stablehlo.ComparisonDirectionAttr(op.attributes["comparison_direction"]).value](*ins)
        elif name == "stablehlo.select":
            out = ins[1] if ins[0] else ins[2]
        elif name == "stablehlo.not":
            out = (not ins[0]) if isinstance(ins[0], bool) else ~ins[0]
        elif name == "stablehlo.convert":
            out = ins[0]
        elif name in _BINARY:
            out = _BINARY[name](*ins)
        else:
            raise _Unknown(name)
        env[op.results[0]] = _cast(out, _kind(op.results[0].type))
    raise _Unknown("no return")


def op_names(region) -> list[str]:
    return [op.operation.name for op in region.blocks[0].operations][:-1]


def _agrees(region, samples, want) -> bool:
    try:
        return all(evaluate(region, s) == want(*s) for s in samples)
    except (_Unknown, KeyError, TypeError):
        return False


def _samples(region, arity: int) -> list:
    args = list(region.blocks[0].arguments)
    if not args:
        return []
    kind = _kind(args[0].type)
    values = _BOOLS if kind == "bool" else _FLOATS if kind == "float" else _INTS
    return list(itertools.product(values, repeat=arity))


# name -> the function of two scalars it names
COMBINERS = {
    "add": lambda a, b: (a + b,),
    "mul": lambda a, b: (a * b,),
    "max": lambda a, b: (max(a, b),),
    "min": lambda a, b: (min(a, b),),
    "set": lambda a, b: (b,),
    "sub": lambda a, b: (a - b,),   # scatter's subtract (no reduction: not associative)
}
BOOL_COMBINERS = {"or": lambda a, b: (a or b,), "and": lambda a, b: (a and b,), "set": lambda a, b: (b,)}


def combiner(region) -> str | None:
    """'add' | 'mul' | 'max' | 'min' | 'set' for a numeric body, 'and' | 'or' | 'set' for
    a boolean one (f(a, b) = b is 'set', scatter's overwrite), or None."""
    args = list(region.blocks[0].arguments)
    if len(args) != 2:
        return None
    table = BOOL_COMBINERS if _kind(args[0].type) == "bool" else COMBINERS
    samples = _samples(region, 2)
    return next((n for n, f in table.items() if _agrees(region, samples, f)), None)


def comparator(region) -> str | None:
    """'GE' | 'GT' | 'LE' | 'LT' for a select body (two scalars -> bool), or None."""
    samples = _samples(region, 2)
    return next((d for d in ("GE", "GT", "LE", "LT")
                 if _agrees(region, samples, lambda a, b, f=_COMPARE[d]: (f(a, b),))), None)


def _arg(best, a, i, b, j):
    if a == b:
        return a, min(i, j)
    return (a, i) if best(a, b) == a else (b, j)


def arg_reducer(region) -> str | None:
    """'argmax' | 'argmin' for a (value, index) body that keeps the larger / smaller value
    and, on equal values, the smaller index (first occurrence, as XLA:CPU and ttnn.argmax
    return it), or None. Checked on non-NaN values: the frameworks differ on NaN (jnp
    picks the NaN, torch_xla's GE form does not) and so may the result."""
    block = region.blocks[0]
    args = list(block.arguments)
    if len(args) != 4 or _kind(args[1].type) != "int":
        return None
    kind = _kind(args[0].type)
    values = _BOOLS if kind == "bool" else _FLOATS if kind == "float" else _INTS
    samples = [(a, i, b, j) for a, b in itertools.product(values, repeat=2) for i, j in ((0, 1), (1, 0), (2, 7))]
    for name, best in (("argmax", max), ("argmin", min)):
        if _agrees(region, samples, lambda a, i, b, j, best=best: _arg(best, a, i, b, j)):
            return name
    return None


def identity_of(name: str, value, dtype=None) -> bool:
    """Whether `value` is the identity of the combiner `name` (an init that changes nothing);
    `dtype` (numpy) makes an unsigned type's extremes count for max / min."""
    if dtype is not None and dtype.kind == "u" and name in ("max", "min"):
        return value == (0 if name == "max" else np.iinfo(dtype).max)
    if name == "add":
        return value == 0
    if name == "mul":
        return value == 1
    if name in ("max", "or"):
        return (not value) if isinstance(value, bool) else value == -math.inf or value <= -3.0e38 or value == -(2**31)
    if name in ("min", "and"):
        return bool(value) if isinstance(value, bool) else (value == math.inf or value >= 3.0e38
                                                            or value in (2**31 - 1, 2**32 - 1))
    return False


def scalar_only(ops: list, funcs: dict) -> bool:
    """Ops without regions on scalars only (called functions too)."""
    for o in ops:
        if o.regions or any(ir.RankedTensorType(r.type).rank != 0 for r in o.results):
            return False
        if o.name == "func.call":
            callee = funcs.get(ir.FlatSymbolRefAttr(o.attributes["callee"]).value)
            if callee is None or not scalar_only([c.operation for c in callee.regions[0].blocks[0].operations], funcs):
                return False
    return True


def elementwise(block, args: list, shape: list, funcs: dict) -> list:
    """The scalar body `block` on tensors of `shape`, op by op (constants broadcast, calls
    followed into their functions). A body may use scalars defined above it (the region is
    not isolated: jax's serialized programs hoist its constants out), broadcast likewise."""
    env = dict(zip(block.arguments, args))

    def get(v):
        if v not in env:   # defined above the body: a scalar, the same in every element
            wide = ir.RankedTensorType.get(shape, ir.RankedTensorType(v.type).element_type)
            env[v] = create("stablehlo.broadcast_in_dim", wide, [v], {"broadcast_dimensions": ir.DenseI64ArrayAttr.get([])})
        return env[v]

    for o in block.operations:
        o = o.operation
        if o.name in ("stablehlo.return", "func.return"):
            return [get(v) for v in o.operands]
        if o.name == "func.call":
            callee = funcs[ir.FlatSymbolRefAttr(o.attributes["callee"]).value]
            results = elementwise(callee.regions[0].blocks[0], [get(v) for v in o.operands], shape, funcs)
            env.update(zip(o.results, results))
            continue
        attrs = named_attributes(o)
        wide = ir.RankedTensorType.get(shape, ir.RankedTensorType(o.results[0].type).element_type)
        if o.name == "stablehlo.constant":
            scalar = create(o.name, o.results[0].type, [], attrs)
            env[o.results[0]] = create("stablehlo.broadcast_in_dim", wide, [scalar],
                                        {"broadcast_dimensions": ir.DenseI64ArrayAttr.get([])})
        else:
            env[o.results[0]] = create(o.name, wide, [get(v) for v in o.operands], attrs)
    raise AssertionError("a region without a return")
