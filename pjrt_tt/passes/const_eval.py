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

Which inputs: those a converted form of is used as a parameter (a matmul's weight, a
conv's weight, a norm's gamma, a broadcast bias or scale, an embedding table, a scalar
read on the host: `_parameter_operands`); an activation's conversions stay per call.
Not hoisted: chains of views only (a reshape costs nothing), values the program returns
(the framework owns outputs), host reads of ints / bools (loop counts, offsets: they are
per call by nature), donated inputs (they change every call), programs on a
mesh (their arguments are combined per call: later).
"""
from __future__ import annotations

import dataclasses
import math

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
    # an input is taken for a parameter when a converted form of it is used as one (below);
    # an activation's conversions stay per call (caching them would keep a converted copy
    # of every activation alive as long as the framework keeps the activation)
    params = {source_of[v.id] for op in program.ops if isinstance(op, Op)
              for v in _parameter_operands(op) if v.id in hoisted}
    params |= {source_of[op.result.id] for op in program.ops
               if isinstance(op, Op) and op.fn == "host.read" and op.result.id in hoisted}
    params |= {c.value.id for c in program.constants}
    hoisted = {v for v in hoisted if source_of[v] not in bad_sources and source_of[v] in params}
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


def _parameter_operands(op: Op) -> list:
    """The operands `op` reads as a parameter: a matmul / linear's second operand, a conv's
    weight and bias, a norm's weight and bias, an embedding's table, a scalar read on the
    host, and an operand an elementwise op broadcasts (a bias or scale row)."""
    if op.fn in ("matmul", "linear"):
        return [a for a in op.args[1:2] if isinstance(a, Value)] + \
            [v for k, v in op.kwargs.items() if k == "bias" and isinstance(v, Value)]
    if op.fn in ("conv2d", "conv_transpose2d"):
        return [op.kwargs[k] for k in ("weight_tensor", "bias_tensor") if isinstance(op.kwargs.get(k), Value)]
    if op.fn in ("rms_norm", "layer_norm", "group_norm", "batch_norm"):
        return [v for v in op.kwargs.values() if isinstance(v, Value)]
    if op.fn == "embedding":
        return [a for a in op.args[1:2] if isinstance(a, Value)]
    if op.fn == "host.read":
        return op.operands()
    out_size = _size(op.result.type)
    return [v for v in op.operands() if not v.on_host and _size(v.type) < out_size]


def _size(t) -> int:
    return math.prod(t.shape) if hasattr(t, "shape") else 0
