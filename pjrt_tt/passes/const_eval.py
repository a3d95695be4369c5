"""Const-eval (level 1): what the program computes from parameters alone is computed once
per set of argument buffers, not on every call.

Weights reach a program as inputs (JAX arrays are immutable; torch parameters are uploaded
once and kept while they hold the same values, pjrt_tt/torch/backend.py) and the lowering
prepares them on every call: a bfp8 typecast (tt_weight_dtype), a permute of a conv weight
to OIHW, a to_layout, a batch norm's scale folded into the conv weight (fusion.py). This
pass moves the ops that read nothing but parameters and only prepare them (PREPARE_OPS)
out of the per-call program into `Prepare` blocks (program.py), one per set of sources.
The runtime runs a block once per set of argument buffers and keeps its results with the
buffers until one is deleted (runtime/buffer.py: a new buffer, e.g. a torch parameter
whose `.data` changed and was uploaded again, misses); a block of constants only runs once
per executable. Targets given no prepared values (the conformance check) run the blocks
inline, so the same ops meet real ttnn.

Which inputs: those a prepared form of is used as a parameter (a matmul's weight, a conv's
weight, a norm's gamma, a broadcast bias or scale, an embedding table, a scalar read on the
host: `_parameter_operands`); an activation's conversions stay per call (caching them
would keep a converted copy of every activation alive as long as the framework keeps it).
Not hoisted: chains of views only (a reshape costs nothing), values the program returns
(the framework owns outputs), host reads of ints / bools (loop counts, offsets: they are
per call by nature), donated inputs (they change every call), programs on a mesh (their
arguments are combined per call: later).
"""
from __future__ import annotations

import dataclasses
import math

from pjrt_tt.compile_context import CompileContext
from pjrt_tt.program import Op, Prepare, Program, Value, VIEW_OPS

# ops that only prepare their operands (layout, data format, order, padding; the elementwise
# ones for a scale folded into a weight)
PREPARE_OPS = frozenset({"typecast", "permute", "transpose", "reshape", "to_layout", "tilize",
                         "untilize", "tilize_with_zero_padding", "pad", "multiply",
                         "host.read"})   # a scalar argument a fused op takes as a number (fusion.py)


def const_eval(program: Program, ctx: CompileContext) -> Program:
    if ctx.optimization_level < 1 or tuple(ctx.mesh_shape) != (1, 1):
        return program
    sources = {c.value.id: c.value for c in program.constants}
    sources.update({v.id: v for i, v in enumerate(program.inputs) if i not in program.donated_inputs})
    roots: dict[int, frozenset] = {}   # value id -> the sources it is computed from
    converts: dict[int, bool] = {}     # value id -> its chain has a non-view op
    candidates: dict[int, Op] = {}
    for op in program.ops:
        if not isinstance(op, Op) or op.fn not in PREPARE_OPS:
            continue
        ins = op.operands()
        if not ins or any(v.on_host for v in ins) or (op.fn == "host.read" and op.result.type.dtype != "float"):
            continue   # (int / bool reads drive control flow and dynamic offsets: per call)
        if op.fn != "multiply" and len(ins) != 1:
            continue
        if not all(v.id in sources or v.id in roots for v in ins):
            continue
        roots[op.result.id] = frozenset().union(*({v.id} if v.id in sources else roots[v.id] for v in ins))
        converts[op.result.id] = any(converts.get(v.id, False) for v in ins) or op.fn not in VIEW_OPS
        candidates[op.result.id] = op
    outputs = {v.id for v in program.outputs}
    users: dict[int, list] = {}
    for op in program.ops:
        for v in op.operands():
            users.setdefault(v.id, []).append(op)
    # hoist every converting candidate, and the candidates it reads from
    hoisted: set[int] = set()
    for vid in candidates:
        if converts[vid]:
            stack = [vid]
            while stack:
                x = stack.pop()
                if x in candidates and x not in hoisted:
                    hoisted.add(x)
                    stack += [v.id for v in candidates[x].operands()]
    # a source is a parameter when a prepared form of it is used as one
    params = {s for op in program.ops if isinstance(op, Op)
              for v in _parameter_operands(op) if v.id in hoisted for s in roots[v.id]}
    params |= {s for op in program.ops if isinstance(op, Op) and op.fn == "host.read" and op.result.id in hoisted
               for s in roots[op.result.id]}
    params |= {c.value.id for c in program.constants}
    bad = {s for v in hoisted if v in outputs for s in roots[v]}
    hoisted = {v for v in hoisted if roots[v] <= params and not roots[v] & bad}
    hoisted = _closed(hoisted, candidates)
    if not hoisted:
        return program
    # one block per connected group of hoisted values (a weight and the scale folded into it
    # are one block, read from both buffers)
    group = {v: v for v in hoisted}

    def find(v):
        while group[v] != v:
            group[v] = group[group[v]]
            v = group[v]
        return v
    for v in hoisted:
        for x in candidates[v].operands():
            if x.id in hoisted:
                group[find(x.id)] = find(v)
    members: dict[int, frozenset] = {}
    for v in hoisted:
        members[find(v)] = members.get(find(v), frozenset()) | roots[v]
    counter = [max([v.id for v in program.inputs] + [c.value.id for c in program.constants]
                   + [r.id for op in program.ops for r in op.results])]
    blocks: dict[int, Prepare] = {}
    renamed: dict[int, Value] = {}    # a view the main program keeps -> the block's copy of it
    main = []
    for op in program.ops:
        rid = op.result.id if isinstance(op, Op) else None
        if rid not in hoisted:
            main.append(op)
            continue
        g = find(rid)
        block = blocks.setdefault(g, Prepare([sources[s] for s in sorted(members[g])], [], []))
        args = _subst(op.args, renamed)
        used_in_main = any(u.result.id not in hoisted for u in users.get(rid, ()))
        if converts[rid]:
            block.ops.append(dataclasses.replace(op, args=args))
            if used_in_main:
                block.results.append(op.result)
        else:
            # a view of a source the main ops use as well: the main program keeps its own (a
            # result must never share an argument's storage), the block gets a copy
            counter[0] += 1
            renamed[rid] = Value(counter[0], op.result.type)
            block.ops.append(dataclasses.replace(op, args=args, result=renamed[rid]))
            if used_in_main:
                main.append(op)
    return dataclasses.replace(program, ops=main, prepare=[b for b in blocks.values() if b.results])


def _closed(hoisted: set[int], candidates: dict) -> set[int]:
    """Drop hoisted values whose operands are not all hoisted or sources (after the filters)."""
    changed = True
    while changed:
        changed = False
        for v in list(hoisted):
            if any(x.id in candidates and x.id not in hoisted for x in candidates[v].operands()):
                hoisted.discard(v)
                changed = True
    return hoisted


def _subst(x, mapping):
    if isinstance(x, Value):
        return mapping.get(x.id, x)
    if isinstance(x, (list, tuple)) and type(x) in (list, tuple):
        return type(x)(_subst(y, mapping) for y in x)
    return x


def _parameter_operands(op: Op) -> list:
    """The operands `op` reads as a parameter: a matmul / linear's second operand, a conv's
    weight and bias, a norm's weight and bias, an embedding's table, and an operand an
    elementwise op broadcasts (a bias or scale row)."""
    if op.fn in ("matmul", "linear"):
        return [a for a in op.args[1:2] if isinstance(a, Value)] + \
            [v for k, v in op.kwargs.items() if k == "bias" and isinstance(v, Value)]
    if op.fn in ("conv2d", "conv_transpose2d"):
        return [op.kwargs[k] for k in ("weight_tensor", "bias_tensor") if isinstance(op.kwargs.get(k), Value)]
    if op.fn in ("rms_norm", "layer_norm", "group_norm", "batch_norm"):
        return [v for v in op.kwargs.values() if isinstance(v, Value)]
    if op.fn == "embedding":
        return [a for a in op.args[1:2] if isinstance(a, Value)]
    out_size = _size(op.result.type)
    return [v for v in op.operands() if not v.on_host and _size(v.type) < out_size]


def _size(t) -> int:
    return math.prod(t.shape) if hasattr(t, "shape") else 0
