"""Dead-op elimination and deallocation planning.

Device memory is the scarce resource: an intermediate tensor is freed right after its
last use. Views (see program.VIEW_OPS) share their source's storage, so a storage is
freed only once every value living in it is dead, and never when it belongs to a
program input, a constant or an output.
"""
from __future__ import annotations

import dataclasses

from pjrt_tt.program import Program, storage_roots


def eliminate_dead_ops(program: Program) -> Program:
    live = {v.id for v in program.outputs}
    kept = []
    for op in reversed(program.ops):
        if op.result.id in live:
            kept.append(op)
            live.update(v.id for v in op.operands())
    constants = [c for c in program.constants if c.value.id in live]
    return dataclasses.replace(program, ops=kept[::-1], constants=constants)


def plan_frees(program: Program) -> Program:
    roots = storage_roots(program.ops)
    root = lambda vid: roots.get(vid, vid)  # noqa: E731
    pinned = {root(v.id) for v in program.inputs} | {root(c.value.id) for c in program.constants} \
        | {root(v.id) for v in program.outputs}
    last_use: dict[int, int] = {}
    members: dict[int, list] = {}
    for i, op in enumerate(program.ops):
        members.setdefault(root(op.result.id), []).append(op.result)
        last_use[root(op.result.id)] = max(last_use.get(root(op.result.id), i), i)
        for v in op.operands():
            last_use[root(v.id)] = i
    frees: dict[int, list] = {}
    for r, i in last_use.items():
        if r not in pinned and r in members:
            # The owner (first member) is deallocated; its views are only forgotten.
            frees.setdefault(i, []).extend(members[r])
    return dataclasses.replace(program, frees=frees)
