"""Simplification (level 1): constant folding, algebra, common subexpressions, transposes
into matmul flags. Rewrites are a table of (op names, rule); a rule looks at one op and
returns what replaces its result: an existing Value (the op goes), a new Op computing the
same result, or None (no change). Rules run over the top-level ops in order, to a fixed
point; loop bodies and branches are left as lowered.

    fold        ops whose operands are all uniform (ttnn.full or scalars) -> one ttnn.full
                (the 1/2048 of an RMSNorm from torch: full, full, ne, divide, where -> full)
    identity    x*1, x/1, x+0, x-0, typecast to its own dtype, reshape to its own shape -> x
    scalar      a binary op with a uniform operand of x's broadcast -> the op with a scalar
    chains      reshape(reshape(x)) -> reshape(x); permute(permute(x)) -> one permute or x
    After fusion (simplify_after_fusion; fusion's patterns read the permutes and reshapes):
    transpose   matmul(permute(a, swap last two), ...) -> matmul(a, ..., transpose_a=True)
                (and transpose_b): the permute goes when nothing else reads it
    sink        elementwise(reshape(a), reshape(b)) -> reshape(elementwise(a, b)), so reshape
                chains meet and cancel (a conv's output and the next conv's input)
    cse         the same op on the same operands twice -> the first result

Never renamed: a program output (outputs are fresh tensors the framework owns, so an output
is never made an alias of an input or of another output).
"""
from __future__ import annotations

import dataclasses
import math

import ml_dtypes
import numpy as np

from pjrt_tt.compile_context import CompileContext
from pjrt_tt.passes.liveness import prune_dead
from pjrt_tt.passes.fusion import _max_id
from pjrt_tt.program import DEVICE, STRUCTURED, Attr, Op, Program, ShapeArg, TensorType, Value, While

_NP = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "int32": np.int32, "uint32": np.uint32,
       "uint16": np.uint16, "uint8": np.uint8}

_BINARY = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
           "maximum": np.maximum, "minimum": np.minimum, "pow": np.power,
           "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
           "ge": np.greater_equal, "logical_and": np.logical_and, "logical_or": np.logical_or}
_UNARY = {"neg": np.negative, "abs": np.abs, "reciprocal": lambda a: np.divide(1, a), "sqrt": np.sqrt,
          "rsqrt": lambda a: 1 / np.sqrt(a), "exp": np.exp, "log": np.log, "logical_not": np.logical_not}
_RANDOM = ("rand", "uniform", "bernoulli", "dropout")


def _num(a) -> bool:
    return isinstance(a, (int, float, np.number)) and not isinstance(a, bool)


class _Graph:
    def __init__(self, ops: list, outputs: set[int], counter: list[int]):
        self.counter = counter
        self.prod = {op.result.id: op for op in ops if isinstance(op, Op)}
        self.users: dict[int, int] = {}
        for op in ops:
            for v in op.operands():
                self.users[v.id] = self.users.get(v.id, 0) + 1
        self.outputs = outputs

    def new_id(self) -> int:
        self.counter[0] += 1
        return self.counter[0]

    def uniform(self, a):
        """The one value `a` holds everywhere (a scalar literal or a ttnn.full, seen through
        reshapes and typecasts, rounded to `a`'s dtype), else None."""
        if _num(a):
            return a
        v = a
        p = self.prod.get(v.id) if isinstance(v, Value) else None
        while p is not None and p.fn in ("reshape", "typecast") and isinstance(p.args[0], Value):
            v = p.args[0]
            p = self.prod.get(v.id)
        if p is not None and p.fn == "full" and len(p.args) >= 2 and _num(p.args[1]):
            if v is a or a.type.dtype not in _NP:
                return p.args[1]
            return _in(a.type.dtype, _in(v.type.dtype, p.args[1])).item()
        return None


def _full(t: TensorType, value, origin: str) -> Op:
    fill = float(value) if t.dtype in ("float32", "bfloat16") else int(value)
    return Op("full", (ShapeArg(t.shape), fill), {"dtype": Attr(t.dtype), "layout": Attr(
        "TILE_LAYOUT" if t.layout == "TILE" else "ROW_MAJOR_LAYOUT"), "device": DEVICE}, None, origin)


def _in(dtype: str, x):
    """x rounded to what a `dtype` tensor holds (bfloat16 rounds to nearest even)."""
    return np.asarray(x).astype(_NP[dtype])


def fold(op: Op, g: _Graph):
    t = op.result.type
    if not isinstance(t, TensorType) or t.dtype not in _NP:
        return None
    tensors = [a for a in op.args if isinstance(a, Value)]
    if not tensors or set(op.kwargs) - {"dtype"}:
        return None
    vals = [g.uniform(a) for a in op.args]
    if any(v is None for v in vals):
        return None
    srcs = [_in(a.type.dtype, v) if isinstance(a, Value) else np.asarray(v, np.float32)
            for a, v in zip(op.args, vals)]
    with np.errstate(all="ignore"):
        if op.fn in _BINARY and len(srcs) == 2:
            r = _BINARY[op.fn](srcs[0].astype(np.float32), srcs[1].astype(np.float32))
        elif op.fn in _UNARY and len(srcs) == 1:
            r = _UNARY[op.fn](srcs[0].astype(np.float32))
        elif op.fn == "where" and len(srcs) == 3:
            r = srcs[1] if srcs[0].astype(np.float32) != 0 else srcs[2]
        else:
            return None
    value = _in(t.dtype, r).astype(np.float64 if t.dtype in ("float32", "bfloat16") else np.int64).item()
    if isinstance(value, float) and not math.isfinite(value) and t.dtype not in ("float32", "bfloat16"):
        return None
    return _full(t, value, op.origin)


_NEUTRAL = {"multiply": (1, 1), "divide": (None, 1), "add": (0, 0), "subtract": (None, 0)}


def identity(op: Op, g: _Graph):
    if op.fn in _NEUTRAL and len(op.args) == 2 and not op.kwargs:
        left, right = _NEUTRAL[op.fn]
        for x, c, want in ((op.args[0], op.args[1], right), (op.args[1], op.args[0], left)):
            if want is not None and isinstance(x, Value) and x.type == op.result.type and g.uniform(c) == want:
                return x
    if op.fn == "typecast" and isinstance(op.args[0], Value) and op.args[0].type == op.result.type:
        return op.args[0]
    if op.fn == "reshape" and isinstance(op.args[0], Value) and op.args[0].type == op.result.type:
        return op.args[0]
    return None


def scalar(op: Op, g: _Graph):
    """binary(x, full(c)) with the full only broadcasting to x -> binary(x, c)."""
    if op.fn not in ("add", "subtract", "multiply", "divide", "maximum", "minimum") or op.kwargs or len(op.args) != 2:
        return None
    a, b = op.args
    if isinstance(a, Value) and isinstance(b, Value) and a.type == op.result.type and b.type.dtype == a.type.dtype \
            and a.type.dtype in ("float32", "bfloat16") and g.prod.get(b.id) is not None:
        c = g.uniform(b)
        if c is not None:
            return dataclasses.replace(op, args=(a, float(_in(b.type.dtype, c))), result=None)
    return None


def chains(op: Op, g: _Graph):
    if not op.args or not isinstance(op.args[0], Value):
        return None
    p = g.prod.get(op.args[0].id)
    if p is None or p.fn != op.fn or p.kwargs or op.kwargs:
        return None
    if op.fn == "reshape":
        return dataclasses.replace(op, args=(p.args[0],) + tuple(op.args[1:]), result=None)
    if op.fn == "permute":
        inner, outer = list(p.args[1]), list(op.args[1])
        perm = [inner[i] for i in outer]
        if perm == sorted(perm):
            return p.args[0] if p.args[0].type == op.result.type else None
        return dataclasses.replace(op, args=(p.args[0], perm), result=None)
    return None


def transpose(op: Op, g: _Graph):
    """matmul / linear reading a permute that swaps the last two dims -> transpose_a/_b."""
    if op.fn not in ("matmul", "linear") or len(op.args) != 2:
        return None
    args, kwargs = list(op.args), dict(op.kwargs)
    for k, flag in ((0, "transpose_a"), (1, "transpose_b")):
        p = g.prod.get(args[k].id) if isinstance(args[k], Value) else None
        if p is None or p.fn != "permute" or kwargs.get(flag) or p.kwargs:
            continue
        perm, r = list(p.args[1]), len(args[k].type.shape)
        if r >= 2 and perm == list(range(r - 2)) + [r - 1, r - 2] and p.args[0].type.layout == "TILE":
            args[k], kwargs[flag] = p.args[0], True
    if kwargs == op.kwargs:
        return None
    return dataclasses.replace(op, args=tuple(args), kwargs=kwargs, result=None)


# (op names, rule); None: any op
RULES = [
    (set(_BINARY) | set(_UNARY) | {"where"}, fold),
    (set(_NEUTRAL) | {"typecast", "reshape"}, identity),
    ({"add", "subtract", "multiply", "divide", "maximum", "minimum"}, scalar),
    ({"reshape", "permute"}, chains),
]
_ELEMENTWISE_UNARY = {"relu", "gelu", "silu", "tanh", "sigmoid", "exp", "neg", "abs", "sqrt", "rsqrt",
                      "reciprocal", "typecast"}
_ELEMENTWISE_BINARY = {"add", "subtract", "multiply", "maximum", "minimum"}


def sink_reshape(op: Op, g: _Graph):
    """elementwise(reshape(a) [, reshape(b) | scalar]) -> reshape(elementwise(a [, b])), the
    reshapes read only here and a, b of one shape: the op runs in its operands' own shape, so
    a conv's [1, 1, N*H*W, C] output reshaped to [N, H, W, C] for a relu or a residual add and
    back for the next conv is never regrouped (a TILE reshape of rows that are not a
    multiple of 32 moves the data)."""
    tensors = [a for a in op.args if isinstance(a, Value)]
    if op.fn not in _ELEMENTWISE_UNARY | _ELEMENTWISE_BINARY or not tensors or \
            any(isinstance(v, Value) for v in op.kwargs.values()):
        return None
    if op.fn in _ELEMENTWISE_UNARY and len(op.args) != 1 and op.fn != "typecast":
        return None
    srcs = []
    for a in tensors:
        p = g.prod.get(a.id)
        if p is None or p.fn != "reshape" or g.users.get(a.id, 0) != 1 or a.id in g.outputs:
            return None
        srcs.append(p.args[0])
    shape = srcs[0].type.shape
    if any(v.type.shape != shape or v.type.layout != "TILE" for v in srcs) or \
            tuple(tensors[0].type.shape) != tuple(op.result.type.shape) or op.result.type.layout != "TILE":
        return None
    it = iter(srcs)
    args = tuple(next(it) if isinstance(a, Value) else a for a in op.args)
    inner = Value(g.new_id(), TensorType(tuple(shape), op.result.type.dtype, "TILE"))
    return [dataclasses.replace(op, args=args, result=inner),
            Op("reshape", (inner, ShapeArg(tuple(op.result.type.shape))), {}, None, op.origin)]


# after fusion (its patterns read the permutes and reshapes these move): transposes into
# matmul flags, elementwise ops sunk below reshapes, and the chains and identities that leaves
AFTER_FUSION_RULES = [({"matmul", "linear"}, transpose),
                      (_ELEMENTWISE_UNARY | _ELEMENTWISE_BINARY, sink_reshape),
                      ({"reshape", "permute"}, chains),
                      ({"typecast", "reshape"}, identity)]


def _key(op: Op):
    def k(a):
        if isinstance(a, Value):
            return ("v", a.id)
        if isinstance(a, (list, tuple)) and not isinstance(a, ShapeArg):
            return tuple(k(x) for x in a)
        if isinstance(a, dict):
            return tuple(sorted((n, k(v)) for n, v in a.items()))
        return (type(a).__name__, repr(a))
    return (op.fn, k(op.args), k(op.kwargs))


def _subst(x, mapping):
    if isinstance(x, Value):
        return mapping.get(x.id, x)
    if isinstance(x, list):
        return [_subst(y, mapping) for y in x]
    if isinstance(x, tuple) and not isinstance(x, ShapeArg):
        return tuple(_subst(y, mapping) for y in x)
    if isinstance(x, dict):
        return {k: _subst(v, mapping) for k, v in x.items()}
    return x


def _rename_nested(ops: list, mapping: dict) -> None:
    for op in ops:
        if isinstance(op, STRUCTURED):
            if isinstance(op, While):
                op.inits = _subst(op.inits, mapping)
            else:
                op.index = _subst(op.index, mapping)
            for b in op.blocks():
                for inner in b.ops:
                    if isinstance(inner, Op):
                        inner.args, inner.kwargs = _subst(inner.args, mapping), _subst(inner.kwargs, mapping)
                _rename_nested(b.ops, mapping)
                b.results = _subst(b.results, mapping)


def _pass(ops: list, outputs: set[int], rules: list, counter: list[int]) -> tuple[list, bool]:
    g = _Graph(ops, outputs, counter)
    mapping: dict[int, Value] = {}
    seen: dict = {}
    out, changed = [], False
    for op in ops:
        if not isinstance(op, Op):
            out.append(op)
            continue
        if mapping:
            op.args, op.kwargs = _subst(op.args, mapping), _subst(op.kwargs, mapping)
        new = None
        if not op.fn.startswith("host.") or op.fn == "host.read":
            for names, rule in rules:
                if op.fn in names:
                    new = rule(op, g)
                    if new is not None:
                        break
        if isinstance(new, Value) and op.result.id not in outputs:
            mapping[op.result.id] = new
            changed = True
            continue
        if isinstance(new, list):   # ops ending in the one computing op.result
            new[-1].result = op.result
            for extra in new[:-1]:
                g.prod[extra.result.id] = extra
                out.append(extra)
            new = new[-1]
        if isinstance(new, Op):
            new.result = op.result
            g.prod[op.result.id] = new
            op, changed = new, True
        if op.result.id not in outputs and not any(r in op.fn for r in _RANDOM):
            key = _key(op)
            if key in seen:
                mapping[op.result.id] = seen[key]
                changed = True
                continue
            seen[key] = op.result
        out.append(op)
    if mapping:
        _rename_nested(out, mapping)
    return out, changed


def simplify(program: Program, ctx: CompileContext, rules: list = RULES) -> Program:
    if ctx.optimization_level < 1:
        return program
    outputs = {v.id for v in program.outputs}
    ops = list(program.ops)
    counter = [max([_max_id(ops)] + [v.id for v in program.inputs] + [c.value.id for c in program.constants])]
    for _ in range(8):   # to a fixed point (each round is linear; a few suffice)
        ops, changed = _pass(ops, outputs, rules, counter)
        ops = prune_dead(ops, set(outputs))
        if not changed:
            break
    return dataclasses.replace(program, ops=ops)


def simplify_after_fusion(program: Program, ctx: CompileContext) -> Program:
    """AFTER_FUSION_RULES, run after fusion."""
    return simplify(program, ctx, AFTER_FUSION_RULES)
