"""Level 2: intermediate activations in L1 where they fit, DRAM otherwise (docs/optimizer.md).

An activation read from L1 is read over the NoC from the cores' SRAM instead of from DRAM
banks, and ttnn's own models keep activations L1-interleaved between ops for that reason.
Only tensors the program makes and frees itself move: program inputs, constants, prepared
weights and outputs stay in DRAM (the runtime owns them across calls).

A storage (a tensor and its reshape views) goes to L1 when
- its producer and every consumer are ops measured in mock to accept L1 operands and a
  `memory_config` (L1_OPS: ttnn 0.81.1, docs/ttnn-facts.md "L1 placement"), at the top level
  (values inside loops / branches, or captured by them, stay where the lowering put them),
  and none takes it as an operand ttnn wants in DRAM (L1_REFUSED_OPERANDS: SDPA's mask);
- at every op of its lifetime the L1 in use per core, plus it, plus that op's own circular
  buffers (cb_bytes_per_core), stays within the per-core L1 bank less a margin.
Storages are taken greedily in program order; one that does not fit spills (stays in DRAM).
Every producer of a placed tensor gets memory_config=L1; an op reading L1 whose result stays in
DRAM gets memory_config=DRAM explicitly (ttnn's default output placement is its input's).
Single-chip programs only (mesh programs: not done, collectives' L1 rules not measured).
"""
from __future__ import annotations

import dataclasses

from pjrt_tt import program as prog
from pjrt_tt.compile_context import CompileContext
from pjrt_tt.program import STRUCTURED, Attr, Program, Value, storage_roots
from pjrt_tt.ttnn_facts import L1_OPS, L1_REFUSED_OPERANDS, L1_SAFETY_FRACTION, TILE_BYTES, TILE_SIZE, l1_bank_bytes

L1 = Attr("L1_MEMORY_CONFIG")
DRAM = Attr("DRAM_MEMORY_CONFIG")


def _tiles(n: int) -> int:
    return max(1, -(-n // TILE_SIZE))


def _tile_count(shape) -> int:
    shape = tuple(shape) or (1,)
    h, w = (shape[-2] if len(shape) > 1 else 1), shape[-1]
    n = 1
    for d in shape[:-2]:
        n *= d
    return n * _tiles(h) * _tiles(w)


def per_core_bytes(t: prog.TensorType, cores: int) -> int:
    """An L1-interleaved TILE tensor's share of each core's bank: its pages round-robin over
    the cores, ceil(tiles / cores) pages each (tt-metal's lockstep allocator)."""
    return -(-_tile_count(t.shape) // cores) * TILE_BYTES[t.dtype]


def cb_bytes_per_core(op: prog.Op, grid: tuple[int, int]) -> int:
    """What the op's own circular buffers take of each core's L1 (they sit below the L1
    buffers; a clash is ttnn's 'Statically allocated dataflow buffers ... clash with L1
    buffers'). Matmul follows the default 2-D multicast blocking measured in mock (see
    ttnn_facts.L1_OPS); the rest are upper bounds of the measured figures."""
    name = op.fn.rsplit(".", 1)[-1]
    ins = [v.type for v in op.operands() if isinstance(v.type, prog.TensorType)]
    out = op.result.type
    if name in ("matmul", "linear") and len(ins) >= 2:
        a, b = ins[0], ins[1]
        ta, tb = bool(op.kwargs.get("transpose_a")), bool(op.kwargs.get("transpose_b"))
        ash = a.shape if len(a.shape) > 1 else (1,) + tuple(a.shape)
        m, k = (ash[-1], ash[-2]) if ta else (ash[-2], ash[-1])
        n = b.shape[-2] if tb else b.shape[-1]
        batch = _tile_count(out.shape) // (_tiles(m) * _tiles(n))
        mt, kt, nt = _tiles(m) * batch, _tiles(k), _tiles(n)
        gx, gy = grid
        pcm, pcn, w = -(-mt // gy), -(-nt // gx), max(1, kt // gx)
        if mt < gy or nt < gx:   # 1-D: ttnn keeps more of K per block; bound it by all of K
            pcm, pcn, w = mt, -(-nt // (gx * gy)), kt
        return (2 * pcm * w * TILE_BYTES[a.dtype] + 2 * w * pcn * TILE_BYTES[b.dtype]
                + 2 * pcm * pcn * TILE_BYTES[out.dtype])
    if name in ("softmax", "layer_norm", "rms_norm"):   # whole rows of tiles, several buffers
        return 16 * _tiles(out.shape[-1]) * 4096
    if name in ("concat", "pad", "slice", "permute", "transpose", "repeat", "expand", "to_layout"):
        # unaligned data movement re-lays its operands out through temporaries placed like
        # the result (mock: ResNet's max-pool padding concat needed 824,448 B per core beyond
        # its operands): room for a copy of every operand and of the result
        cores = grid[0] * grid[1]
        return 64 << 10 if cores == 0 else (64 << 10) + sum(per_core_bytes(t, cores) for t in ins + [out])
    if name == "conv2d":   # halo and sharded input in L1, not modelled: nothing in L1 beside it
        return 1 << 40
    if "scaled_dot_product_attention" in op.fn:
        return 256 << 10
    return 64 << 10


def _consumers(ops: list) -> dict[int, list[int]]:
    used: dict[int, list[int]] = {}
    for i, op in enumerate(ops):
        for v in op.operands():
            used.setdefault(v.id, []).append(i)
    return used


def place_activations(program: Program, ctx: CompileContext) -> Program:
    if ctx.optimization_level < 2 or tuple(ctx.mesh_shape) != (1, 1):
        return program
    ops = program.ops
    arch = ctx.system.arch
    grid = tuple(arch.compute_grid)
    cores = grid[0] * grid[1]
    budget = int(l1_bank_bytes(arch) * L1_SAFETY_FRACTION)
    roots = storage_roots(ops)
    root = lambda vid: roots.get(vid, vid)  # noqa: E731
    pinned = {root(v.id) for v in program.inputs} | {root(c.value.id) for c in program.constants} \
        | {root(v.id) for v in program.outputs} | {v.id for b in program.prepare for v in b.results}
    used = _consumers(ops)

    # storage root -> (members, first op, last op); who may hold it in L1
    groups: dict[int, list[Value]] = {}
    span: dict[int, list[int]] = {}
    eligible: dict[int, bool] = {}
    for i, op in enumerate(ops):
        if isinstance(op, STRUCTURED):
            for v in op.operands():          # captured / carried by a loop or branch: DRAM
                eligible[root(v.id)] = False
            continue
        for r in op.results:
            if r.on_host:
                continue
            g = root(r.id)
            groups.setdefault(g, []).append(r)
            s = span.setdefault(g, [i, i])
            s[1] = max([s[1]] + used.get(r.id, [i]))
            view = op.fn in prog.VIEW_OPS and g != r.id
            ok = view or (op.fn in L1_OPS and r.type.dtype in TILE_BYTES and r.type.layout == prog.TILE)
            ok = ok and all(not isinstance(ops[j], STRUCTURED)
                            and (ops[j].fn in L1_OPS or ops[j].fn in prog.VIEW_OPS or ops[j].fn == prog.HOST_READ)
                            for j in used.get(r.id, []))
            ok = ok and not any(isinstance(ops[j].kwargs.get(kw), Value) and ops[j].kwargs[kw].id == r.id
                                for j in used.get(r.id, []) for kw in L1_REFUSED_OPERANDS.get(ops[j].fn, ()))
            eligible[g] = eligible.get(g, True) and ok

    reserve = [0 if isinstance(op, STRUCTURED) or op.fn.startswith("host.") else cb_bytes_per_core(op, grid)
               for op in ops]
    in_use = [0] * len(ops)
    placed: set[int] = set()
    for g in sorted(groups, key=lambda g: span[g][0]):
        if g in pinned or not eligible.get(g):
            continue
        size = per_core_bytes(groups[g][0].type, cores)
        lo, hi = span[g]
        if all(in_use[i] + size + reserve[i] <= budget for i in range(lo, hi + 1)):
            placed.add(g)
            for i in range(lo, hi + 1):
                in_use[i] += size
    if not placed:
        return program

    l1_values = {v.id for g in placed for v in groups[g]}
    new_ops = []
    for op in ops:
        if not isinstance(op, STRUCTURED) and op.fn in L1_OPS:
            if op.result.id in l1_values:
                op = dataclasses.replace(op, kwargs={**op.kwargs, "memory_config": L1})
            elif any(v.id in l1_values for v in op.operands()):
                op = dataclasses.replace(op, kwargs={**op.kwargs, "memory_config": DRAM})
        new_ops.append(op)
    return dataclasses.replace(program, ops=new_ops)


def l1_placed(program: Program) -> list[Value]:
    """The values a program's ops place in L1 (tests, profile)."""
    return [op.result for op in program.ops
            if not isinstance(op, STRUCTURED) and op.kwargs.get("memory_config") == L1]
