"""Control flow and dynamic indexing: while, case, if, dynamic_slice, dynamic_update_slice.

Loops and branches stay on the host: a `While` / `Switch` in the program holds nested
blocks; its predicate / branch index, and dynamic start indices (used as Python ints in
the ttnn calls, clamped as StableHLO says: start in [0, dim - size]), are host scalars.
A host scalar is known without touching the device when the host can follow it (a
literal, a loop counter, int math on those: `Lowering.shadow`); otherwise it is a
`host.read` of the device scalar, a host sync (once per value and block execution).
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
from jaxlib.mlir import ir

from pjrt_tt.ingest.attributes import custom_call_target
from pjrt_tt.ingest.mlir_compat import defining_op
from pjrt_tt.lower.builder import Broadcast, Lowering, Splat
from pjrt_tt.lower.helpers import host_type, predicate
from pjrt_tt.lower.registry import rule
from pjrt_tt.program import (DEVICE, HOST_READ, ROW_MAJOR, TILE, Block, ScalarType, ShapeArg, Switch,
                             TensorType, Value, While, device_type, dtype_attr, layout_attr, has_effect, storage_roots)


def _conform(lo: Lowering, v: Value, t: TensorType) -> Value:
    """`v` in exactly the type `t` a carried value / case result has."""
    if v.type.layout != t.layout:
        v = lo.emit("to_layout", v, layout_attr(t.layout), result=dataclasses.replace(v.type, layout=t.layout))
    v = lo.typecast(v, t.dtype)
    return lo.reshape(v, t.shape) if v.type.shape != t.shape else v


def _yield(lo: Lowering, entries: list, types: list[TensorType]) -> list[Value]:
    """A block's results as tensors the block itself made, one storage each (cloned
    otherwise): the executor may free them, and the block's params, once replaced."""
    made = {r.id for op in lo.ops for r in op.results}
    out, seen = [], set()
    for e, t in zip(entries, types):
        v = _conform(lo, lo.materialize(e), t)
        root = storage_roots(lo.ops).get(v.id, v.id)
        if root not in made or root in seen:
            v = lo.emit("clone", v, result=v.type)
            root = v.id
        seen.add(root)
        out.append(v)
    return out


def _terminator(block: ir.Block):
    return list(block.operations)[-1]


def _check_tensors(lo: Lowering, op) -> None:
    for v in list(op.operands) + list(op.results):
        if not isinstance(v.type, ir.RankedTensorType):
            raise lo.unsupported(f"operands and results of type {v.type} (only tensors; ordered effects' "
                                 f"tokens are empty arrays by now: ingest/tokens.py)")


def _live_ids(ops: list, live: set[int]) -> set[int]:
    """`live` plus every value the ops that produce live values, or have an effect, use."""
    for op in reversed(ops):
        if any(r.id in live for r in op.results) or has_effect(op):
            live |= {v.id for v in op.operands()}
    return live


def _kind(h) -> str:
    return h.type.dtype if isinstance(h, Value) else "bool" if isinstance(h, bool) else "int"


def _ids(*entries) -> set[int]:
    return {e.id if isinstance(e, Value) else e.source.id for e in entries if isinstance(e, (Value, Broadcast))}


def _hoist_reads(lo: Lowering, ops: list, params: set[int]) -> bool:
    """When the loop reads the device every iteration, read once, before the loop, the
    one-element int32 outer values it uses (a trip count passed as an argument), so
    the host can follow what is computed from them. True if it read any."""
    if not any(o.fn == HOST_READ for o in ops):
        return False
    outer = [v for v in Block(ops, []).captured() if not v.on_host and v.id not in params
             and v.type.dtype == "int32" and all(d == 1 for d in v.type.shape) and v.id not in lo.shadows]
    for v in outer:
        lo.host_scalar(v)
    return bool(outer)


@rule("stablehlo.while")
def _while(lo: Lowering, op) -> list:
    _check_tensors(lo, op)
    origin = f"{lo.origin} {lo.location}" if lo.location else lo.origin
    cond_ir, body_ir = (op.regions[i].blocks[0] for i in range(2))
    inits = [lo.entry(v) for v in op.operands]
    # A value the body passes through unchanged is loop-invariant: its block argument is
    # the outer entry itself (splats stay lazy) and it is not carried at all.
    nexts = list(_terminator(body_ir).operands)
    invariant = [n == a for n, a in zip(nexts, body_ir.arguments)]
    carried = [j for j, inv in enumerate(invariant) if not inv]
    if not carried:  # nothing changes: the loop's only effect would be not terminating
        return inits
    types = {j: device_type(host_type(op.results[j])) for j in carried}
    init_vals = {j: _conform(lo, lo.materialize(inits[j]), types[j]) for j in carried}
    # Carried one-element int / bool values the host can follow (loop counters) are also
    # carried on the host, so the condition and the indices need no device read; when
    # nothing on the device reads one, it is carried on the host only. Retried without
    # those whose next value the host cannot follow.
    follow = {j for j in carried if lo.shadow(inits[j]) is not None}
    hoisted = False
    while True:
        params = {j: lo.new_value(types[j]) for j in carried}
        hparams = {j: lo.new_value(ScalarType(_kind(lo.shadow(inits[j])))) for j in sorted(follow)}
        for j in follow:
            lo.shadows[params[j].id] = hparams[j]
        args = list(inits)
        for j in carried:
            args[j] = params[j]
        with lo.block() as cond_ops:
            pred = lo.host_scalar(lo.lower_block(cond_ir, args)[0], "bool")
        with lo.block() as body_ops:
            entries = lo.lower_block(body_ir, args)
            hnext = {j: lo.shadow(entries[j]) for j in sorted(follow)}
            lost = {j for j, h in hnext.items() if h is None}
            if not lost:
                device = set(carried)
                for j in sorted(follow):  # drop followed int32 values only their own next reads
                    others = device - {j}
                    used = _live_ids(body_ops, _ids(*(entries[k] for k in others), *hnext.values())) \
                        | _live_ids(cond_ops, _ids(pred))
                    if types[j].dtype == "int32" and params[j].id not in used:
                        device = others
                device = sorted(device)
                nxt = _yield(lo, [entries[j] for j in device], [types[j] for j in device])
        if not hoisted and _hoist_reads(lo, cond_ops + body_ops, {p.id for p in params.values()}):
            hoisted = True  # outer scalars read once before the loop: lower again with them
            continue
        if not lost:
            break
        follow -= lost
    hosted = sorted(follow)
    results = {j: lo.new_value(types[j]) for j in device}
    hresults = {j: lo.new_value(hparams[j].type) for j in hosted}
    lo.ops.append(While([init_vals[j] for j in device] + [lo.shadow(inits[j]) for j in hosted],
                        [params[j] for j in device] + [hparams[j] for j in hosted],
                        Block(cond_ops, [pred]), Block(body_ops, nxt + [hnext[j] for j in hosted]),
                        list(results.values()) + list(hresults.values()), origin))
    out = list(inits)
    for j in carried:
        if j in results:
            out[j] = results[j]
            if j in hresults:
                lo.shadows[results[j].id] = hresults[j]
        else:  # carried on the host only: on the device when (if) something reads it
            t = types[j]
            out[j] = lo.emit("full", ShapeArg(t.shape), hresults[j], result=t, dtype=dtype_attr(t.dtype),
                             layout=layout_attr(t.layout), device=DEVICE)
    return out


def _branches(lo: Lowering, op, index, regions: list) -> list:
    _check_tensors(lo, op)
    types = [device_type(host_type(r)) for r in op.results]
    if not isinstance(index, Value):  # known now: lower just that branch, inline
        k = index if 0 <= index < len(regions) else len(regions) - 1
        return lo.lower_block(regions[k].blocks[0], [])
    origin = f"{lo.origin} {lo.location}" if lo.location else lo.origin
    blocks = []
    for region in regions:
        with lo.block() as ops:
            blocks.append(Block(ops, _yield(lo, lo.lower_block(region.blocks[0], []), types)))
    if not types and not any(has_effect(o) for b in blocks for o in b.ops):
        return []   # (a branch with only effects, e.g. a debug print, still runs)
    results = [lo.new_value(t) for t in types]
    lo.ops.append(Switch(index, blocks, results, origin))
    return results


@rule("stablehlo.case")
def _case(lo: Lowering, op) -> list:
    return _branches(lo, op, lo.host_scalar(lo.entry(op.operands[0])), list(op.regions))


@rule("stablehlo.if")
def _if(lo: Lowering, op) -> list:
    # index = pred: False -> branch 0 (false_branch), True -> branch 1 (true_branch)
    true_r, false_r = op.regions[0], op.regions[1]
    return _branches(lo, op, lo.host_scalar(lo.entry(op.operands[0]), "bool"), [false_r, true_r])


def _starts(lo: Lowering, indices, shape, sizes) -> list:
    """Clamped start indices: Python ints, or host values read from the device."""
    starts = []
    for v, dim, size in zip(indices, shape, sizes):
        if host_type(v).element.numpy.kind not in "iu":
            raise lo.unsupported(f"start index of type {host_type(v).element.mlir}")
        hi = dim - size
        starts.append(0 if hi == 0 else lo.host_op("clamp", lo.host_scalar(lo.entry(v)), 0, hi))
    return starts


@rule("stablehlo.dynamic_slice")
def _dynamic_slice(lo: Lowering, op) -> list:
    out_h = host_type(op.results[0])
    entry = lo.entry(op.operands[0])
    if isinstance(entry, Splat):
        return [Splat(entry.value, out_h)]
    x = lo.materialize(entry)
    shape = host_type(op.operands[0]).shape
    if not shape or tuple(shape) == out_h.shape:
        return [x]
    chips = [_per_chip_ints(v) for v in op.operands[1:]]
    if any(c is not None for c in chips):   # (the offsets follow no mesh axis: spmd/prepare.py left it)
        return [_slice_per_chip(lo, op, chips)]
    sizes = out_h.shape
    starts = _starts(lo, op.operands[1:], shape, sizes)
    ends = [lo.host_op("add", s, n) for s, n in zip(starts, sizes)]
    return [lo.emit("slice", x, starts, ends, [1] * len(shape), result=device_type(out_h))]


@rule("stablehlo.dynamic_update_slice")
def _dynamic_update_slice(lo: Lowering, op) -> list:
    """x with `update` written at the (run-time) starts. ttnn has no strided write into a
    tensor, and the pieces around the update have run-time shapes, so: pad the update
    (and a ones mask) out to x's shape in ROW_MAJOR (the layout where ttnn pads the
    front), then select with ttnn.where."""
    x_h, u_h = host_type(op.operands[0]), host_type(op.operands[1])
    out = device_type(x_h)
    if u_h.shape == x_h.shape:
        return [lo.entry(op.operands[1])]
    chips = [_per_chip_ints(v) for v in op.operands[2:]]
    if any(c is not None for c in chips):
        return [_update_per_chip(lo, op, chips)]
    starts = _starts(lo, op.operands[2:], x_h.shape, u_h.shape)
    x, u = lo.get(op.operands[0]), lo.get(op.operands[1])
    mask, placed = _placed(lo, u, starts, out)
    return [lo.emit("where", mask, placed, x, result=out)]


def _placed(lo: Lowering, u: Value, starts: list, out: TensorType) -> tuple[Value, Value]:
    """(a 0/1 mask of where the update goes, the update padded out to `out`'s shape)."""
    padding = [(s, lo.host_op("sub", d - n, s)) for s, d, n in zip(starts, out.shape, u.type.shape)]

    def place(v: Value) -> Value:
        rm = dataclasses.replace(v.type, layout=ROW_MAJOR)
        if v.type.layout != ROW_MAJOR:
            v = lo.emit("to_layout", v, layout_attr(ROW_MAJOR), result=rm)
        fill = 0.0 if v.type.dtype in ("float32", "bfloat16") else 0
        padded = lo.emit("pad", v, padding, fill, result=dataclasses.replace(rm, shape=out.shape))
        tiled = dataclasses.replace(padded.type, layout=TILE)
        return lo.emit("to_layout", padded, layout_attr(TILE), result=tiled)

    def mask() -> Value:  # 1 where the update goes (shared by updates at the same place)
        ones = lo.emit("full", ShapeArg(u.type.shape), 1.0, result=TensorType(u.type.shape, "bfloat16", ROW_MAJOR),
                       dtype=dtype_attr("bfloat16"), layout=layout_attr(ROW_MAJOR), device=DEVICE)
        return place(ones)

    where = [(p.id if isinstance(p, Value) else p) for pair in padding for p in pair]
    key = ("dynamic_update_slice mask", u.type.shape, out.shape, *where)
    return lo.memo(key, mask), place(u)


def _per_chip_ints(v: ir.Value) -> list[int] | None:
    """A start index that differs from chip to chip: its value on each chip, which
    spmd/prepare.py evaluated when it folded the partition_id arithmetic into a
    `custom_call @tt.per_device`; None for any other index."""
    op = defining_op(v)
    if op is None or custom_call_target(op) != "tt.per_device":
        return None
    return [int(np.asarray(x).reshape(-1)[0]) for x in json.loads(ir.StringAttr(op.attributes["tt.info"]).value)]


def _update_per_chip(lo: Lowering, op, chips: list) -> Value:
    """A dynamic_update_slice whose starts depend on the chip (XLA's partitioner writes a
    shard back at its own offset): each chip's starts are known at compile time, so the
    update is placed at each distinct set of (clamped) starts and every chip keeps its own,
    chosen by comparing its index values on the device (the same ops on every chip)."""
    x_h, u_h = host_type(op.operands[0]), host_type(op.operands[1])
    out = device_type(x_h)
    x, u = lo.get(op.operands[0]), lo.get(op.operands[1])
    acc = x
    for place, chosen in _chip_places(lo, op.operands[2:], chips, x_h.shape, u_h.shape, "dynamic_update_slice"):
        mask, placed = _placed(lo, u, list(place), out)
        if chosen is not None:
            mask = lo.emit("multiply", mask, lo.reshape(chosen, (1,) * len(out.shape)), result=mask.type)
        acc = lo.emit("where", mask, placed, acc, result=out)
    return acc


def _slice_per_chip(lo: Lowering, op, chips: list) -> Value:
    """A dynamic_slice whose starts depend on the chip in a way no mesh axis follows (XLA's
    pads and reshards on meshes of several axes): the static slice at each distinct set of
    (clamped) starts, and every chip keeps its own, chosen by comparing its index values on
    the device."""
    x_h, out_h = host_type(op.operands[0]), host_type(op.results[0])
    out = device_type(out_h)
    x, acc = lo.get(op.operands[0]), None
    for place, chosen in _chip_places(lo, op.operands[1:], chips, x_h.shape, out_h.shape, "dynamic_slice"):
        part = lo.emit("slice", x, list(place), [s + n for s, n in zip(place, out_h.shape)], [1] * len(place),
                       result=out)
        if acc is None or chosen is None:
            acc = part
            continue
        acc = lo.emit("where", lo.reshape(chosen, (1,) * len(out.shape)), part, acc, result=out)
    return acc


def _chip_places(lo: Lowering, indices: list, chips: list, shape, sizes, what: str) -> list:
    """[(starts, chosen)] for each distinct set of clamped starts the chips take (in chip
    order): `chosen` is 1 on the chips whose index values (as given, on the device) clamp
    to those starts, None for the first (every other chip's choice overrides it)."""
    n = len(next(c for c in chips if c is not None))
    raw = []   # per dim, each chip's start as given
    for v, c in zip(indices, chips):
        if c is None:
            s = lo.host_scalar(lo.entry(v))
            if isinstance(s, Value):
                raise lo.unsupported(f"a {what} whose starts depend both on the chip and on values computed at "
                                     f"run time")
            c = [s] * n
        raw.append(c)
    his = [d - k for d, k in zip(shape, sizes)]
    starts = [tuple(min(max(raw[d][p], 0), his[d]) for d in range(len(his))) for p in range(n)]
    varies = [d for d in range(len(his)) if len({s[d] for s in starts}) > 1]
    places = []
    for place in dict.fromkeys(starts):   # distinct, in chip order
        chosen = None   # 1 on the chips whose starts are `place`: AND over the dims that vary
        for d in varies:
            v = indices[d]
            index = lo.get(v)
            hit = None  # the index as given on the device is any raw start that clamps to place[d]
            for k in sorted({raw[d][p] for p in range(n) if starts[p][d] == place[d]}):
                eq = predicate(lo, "eq", index, Splat(k, host_type(v)), index.type.shape)
                hit = eq if hit is None else lo.emit("maximum", hit, eq, result=eq.type)
            chosen = hit if chosen is None else lo.emit("multiply", chosen, hit, result=hit.type)
        places.append((place, chosen))
    return places
