"""Dead-op elimination and deallocation planning.

Device memory is the scarce resource: an intermediate tensor is freed right after its
last use. Views (see program.VIEW_OPS) share their source's storage, so a storage is
freed only once every value living in it is dead, and never when it belongs to a
program input, a constant or an output.

Nested blocks (loop cond / body, case branches) are planned the same way, each on its
own: a block frees only the tensors it creates, after their last use in it. A value
defined outside a block and used inside counts as an operand of the While / Switch that
holds the block, so it lives until that op is done (all iterations). A block's params
(the loop-carried values) and results are never freed by the block: the executor frees
each iteration's old carried tensors once the body has made the new ones.
"""
from __future__ import annotations

import dataclasses

from pjrt_tt.compile_context import CompileContext
from pjrt_tt.program import STRUCTURED, Program, Value, While, has_effect, storage_roots


def prune_dead(ops: list, live: set[int]) -> list:
    """`ops` without those whose results nothing in `live` (or a later kept op) reads, in
    nested blocks too; an op with an effect (a debug callback) is always kept."""
    kept = []
    for op in reversed(ops):
        if any(r.id in live for r in op.results) or has_effect(op):
            if isinstance(op, STRUCTURED):
                for b in op.blocks():
                    b.ops = prune_dead(b.ops, {v.id for v in b.results if isinstance(v, Value)})
            kept.append(op)
            live.update(v.id for v in op.operands())
    return kept[::-1]


def eliminate_dead_ops(program: Program, ctx: CompileContext) -> Program:
    live = {v.id for v in program.outputs}
    ops = prune_dead(program.ops, live)
    constants = [c for c in program.constants if c.value.id in live]
    return dataclasses.replace(program, ops=ops, constants=constants)


def _plan(ops: list, pinned: set[int], root) -> dict[int, list]:
    """Frees for one op list: each storage created here dies after its last use here."""
    last_use: dict[int, int] = {}
    members: dict[int, list] = {}
    defined = set()
    for i, op in enumerate(ops):
        for v in op.operands():
            if not v.on_host:
                last_use[root(v.id)] = i
        for r in op.results:
            if not r.on_host:
                defined.add(r.id)
                members.setdefault(root(r.id), []).append(r)
                last_use[root(r.id)] = max(last_use.get(root(r.id), i), i)
    frees: dict[int, list] = {}
    for r, vals in members.items():
        if r not in pinned:
            # The owner (when it is defined here) is deallocated; views are only forgotten.
            frees.setdefault(last_use[r], []).extend(vals)
    for i, op in enumerate(ops):
        if isinstance(op, While):
            _donate(op, frees.get(i, []), root)
    return frees


def _donate(op: While, dying: list, root) -> None:
    """Hand the loop the inits that die with it (no views, carried once, not read
    inside), so it frees each one after the first iteration instead of the block
    freeing it after the loop."""
    captured = {v.id for b in op.blocks() for v in b.captured()}
    ids = [v.id for v in op.inits if isinstance(v, Value)]
    sole = {v.id for v in dying if root(v.id) == v.id and [d.id for d in dying if root(d.id) == v.id] == [v.id]}
    op.donated = [isinstance(v, Value) and v.id in sole and ids.count(v.id) == 1 and v.id not in captured
                  for v in op.inits]
    gone = {v.id for v, d in zip(op.inits, op.donated) if d}
    dying[:] = [v for v in dying if v.id not in gone]


def plan_frees(program: Program, ctx: CompileContext) -> Program:
    roots = storage_roots(program.ops)
    root = lambda vid: roots.get(vid, vid)  # noqa: E731

    def plan_nested(ops: list) -> None:
        for op in ops:
            if isinstance(op, STRUCTURED):
                params = getattr(op, "params", [])
                for b in op.blocks():
                    pinned = {root(v.id) for v in params} | \
                        {root(v.id) for v in b.results if isinstance(v, Value)}
                    b.frees = _plan(b.ops, pinned, root)
                    plan_nested(b.ops)

    pinned = {root(v.id) for v in program.inputs} | {root(c.value.id) for c in program.constants} \
        | {root(v.id) for v in program.outputs} | {v.id for b in program.prepare for v in b.results}
    frees = _plan(program.ops, pinned, root)
    plan_nested(program.ops)
    return dataclasses.replace(program, frees=frees)

