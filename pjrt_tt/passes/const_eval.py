"""Const-eval (level 1): conversions of arguments that do not change are done once per
argument buffer, not on every call.

Weights reach a program as inputs (JAX arrays are immutable; torch parameters are uploaded
once and kept while they hold the same values, pjrt_tt/torch/backend.py) and the lowering
converts them on every call: a bfp8 typecast (tt_weight_dtype), a permute of a conv
weight to OIHW, a to_layout. This pass moves the ops that read nothing but one program
input (or constant) and only convert it (PREPARE_OPS) out of the per-call program into a
`Prepare` block of that source (program.py). The runtime runs a block once per argument
buffer and keeps its results with the buffer until the buffer is deleted
(runtime/buffer.py: a new buffer, e.g. a torch parameter whose `.data` changed and was
uploaded again, misses); a constant's block runs once per executable. Targets that are
given no prepared values (the conformance check) run the blocks inline, so the same ops
meet real ttnn.

Not hoisted: chains of views only (a reshape costs nothing), values the program returns
(the framework owns outputs), host reads of ints / bools (loop counts, offsets: they are
per call by nature), donated inputs (they change every call), programs on a
mesh (their arguments are combined per call: later).
"""
from __future__ import annotations

import dataclasses

from pjrt_tt.compile_context import CompileContext
from pjrt_tt.program import Op, Prepare, Program, Value, VIEW_OPS

# ops that only convert their one tensor operand (layout, data format, order, padding)
PREPARE_OPS = frozenset({"typecast", "permute", "transpose", "reshape", "to_layout", "tilize",
                         "untilize", "tilize_with_zero_padding", "pad",
                         "host.read"})   # a scalar argument a fused op takes as a number (fusion.py)


def const_eval(program: Program, ctx: CompileContext) -> Program:
    if ctx.optimization_level < 1 or tuple(ctx.mesh_shape) != (1, 1):
        return program
    sources = {c.value.id: c.value for c in program.constants}
    sources.update({v.id: v for i, v in enumerate(program.inputs) if i not in program.donated_inputs})
    source_of: dict[int, int] = {}    # value id -> the source it converts
    converts: dict[int, bool] = {}    # value id -> its chain has a non-view op
    candidates: dict[int, Op] = {}
    for op in program.ops:
        if not isinstance(op, Op) or op.fn not in PREPARE_OPS:
            continue
        ins = op.operands()
        if len(ins) != 1 or ins[0].on_host or (op.fn == "host.read" and op.result.type.dtype != "float"):
            continue   # (int / bool reads drive control flow and dynamic offsets: per call)
        src = ins[0].id
        root = src if src in sources else source_of.get(src)
        if root is None:
            continue
        source_of[op.result.id] = root
        converts[op.result.id] = converts.get(src, False) or op.fn not in VIEW_OPS
        candidates[op.result.id] = op
    outputs = {v.id for v in program.outputs}
    users: dict[int, list] = {}
    for op in program.ops:
        for v in op.operands():
            users.setdefault(v.id, []).append(op)
    # hoist every converting candidate, and the view ops it reads from
    hoisted: set[int] = set()
    for vid in candidates:
        if converts[vid]:
            stack = [vid]
            while stack:
                x = stack.pop()
                if x in candidates and x not in hoisted:
                    hoisted.add(x)
                    stack.append(candidates[x].operands()[0].id)
    bad_sources = {source_of[v] for v in hoisted if v in outputs}
    hoisted = {v for v in hoisted if source_of[v] not in bad_sources}
    if not hoisted:
        return program
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
        block = blocks.setdefault(source_of[rid], Prepare(sources[source_of[rid]], [], []))
        src = op.operands()[0]
        args = tuple(renamed.get(src.id, a) if a is src else a for a in op.args)
        used_in_main = any(u.result.id not in hoisted for u in users.get(rid, ()))
        if converts[rid]:
            block.ops.append(dataclasses.replace(op, args=args))
            if used_in_main:
                block.results.append(op.result)
        else:
            # a view of the source the main ops use as well: the main program keeps its own
            # (a result must never share the argument's storage), the block gets a copy
            counter[0] += 1
            renamed[rid] = Value(counter[0], op.result.type)
            block.ops.append(dataclasses.replace(op, args=args, result=renamed[rid]))
            if used_in_main:
                main.append(op)
    return dataclasses.replace(program, ops=main, prepare=[b for b in blocks.values() if b.results])
