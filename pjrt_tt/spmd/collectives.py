"""Lowering rules for the collectives of a partitioned program -> ttnn CCL ops on a mesh.

The program runs on an R x C ttnn mesh (chosen by prepare.py; the rules read it as
`lo.ctx.mesh_shape`; a single-chip program is the 1x1 mesh). prepare.py has already
rewritten the chip-dependent patterns into custom_calls (@tt.mesh_slice, @tt.per_device)
whose rules live here, beside the collectives' rules: one rule per op,
registered at import (pjrt_tt.spmd imports this module). Replica groups become
`cluster_axis` (0: down a column, 1: along a row). A group spanning both axes in order
p = r*C + c is done axis by axis: gathers minor axis first, scatters/partitions major axis
first, which keeps XLA's device order.

    all_reduce(sum)            ttnn.all_reduce(x, cluster_axis) per axis
    all_gather(dim)            ttnn.all_gather(x, dim, cluster_axis)
    reduce_scatter / all_reduce + tt.mesh_slice
                               ttnn.reduce_scatter(x, dim, cluster_axis)
    tt.mesh_slice (dynamic_slice(partition_id): take my shard)
                               ttnn.mesh_partition(x, dim, cluster_axis)
    all_to_all(split s, concat c)
                               all_gather(c) then mesh_partition(s): moves N x the bytes
                               of a true all_to_all, but every chip runs the same op
    collective_permute         all_gather(dim 0), a static reorder of the blocks (zeros
                               for chips nobody sends to), mesh_partition(dim 0): along
                               one mesh axis when the pairs are one shift along it, else
                               over the whole mesh
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from jaxlib.mlir import ir

from pjrt_tt import dtypes
from pjrt_tt.ingest.mlir_compat import defining_op
from pjrt_tt.lower.builder import Lowering, Splat
from pjrt_tt.lower.helpers import host_type, slice_, where
from pjrt_tt.lower.registry import custom_call, rule
from pjrt_tt.program import HostType
from pjrt_tt.spmd.prepare import (NotOnMesh, decode, group_axes, permute_plan, replica_groups,
                                  source_target_pairs)


def _info(op) -> str:
    return ir.StringAttr(op.attributes["tt.info"]).value


def _axes(lo: Lowering, groups) -> tuple[int, ...]:
    R, C = lo.ctx.mesh_shape
    try:
        return group_axes(groups, R, C)
    except NotOnMesh as e:
        raise lo.unsupported(str(e)) from None


def _size(lo: Lowering, axis: int) -> int:
    return lo.ctx.mesh_shape[axis]


def _with_dim(x, dim: int, size: int):
    shape = list(x.type.shape)
    shape[dim] = size
    return dataclasses.replace(x.type, shape=tuple(shape))


def gather(lo, x, dim, axes):
    for a in reversed(axes):
        x = lo.emit("all_gather", x, dim=dim, cluster_axis=a,
                    result=_with_dim(x, dim, x.type.shape[dim] * _size(lo, a)))
    return x


def partition(lo, x, dim, axes):
    for a in axes:
        x = _mesh_partition(lo, x, dim, _size(lo, a), a)
    return x


def _mesh_partition(lo, x, dim, n, axis):
    """ttnn.mesh_partition slices each chip's part out; on TILE tensors the slice must start
    on a tile boundary in the last two dims (measured, mock): unaligned parts are split off
    into a leading dim first (a reshape, and a permute for the last dim)."""
    shape = tuple(x.type.shape)
    rank, chunk = len(shape), shape[dim] // n
    out = dataclasses.replace(x.type, shape=shape[:dim] + (chunk,) + shape[dim + 1:])
    if x.type.layout != "TILE" or dim < rank - 2 or chunk % 32 == 0:
        return lo.emit("mesh_partition", x, dim=dim, cluster_axis=axis, result=out)
    if rank == 1:         # [n * chunk] -> [n, 1, chunk]
        y, at = lo.reshape(x, (n, 1, chunk)), 0
    elif dim == rank - 1:  # [.., H, n, chunk] -> [.., n, H, chunk]
        y = lo.reshape(x, shape[:dim] + (n, chunk))
        y, at = lo.permute(y, list(range(rank - 2)) + [rank - 1, rank - 2, rank]), rank - 2
    else:                  # [.., n, chunk, W]
        y, at = lo.reshape(x, shape[:dim] + (n, chunk) + shape[dim + 1:]), dim
    ys = tuple(y.type.shape)
    y = lo.emit("mesh_partition", y, dim=at, cluster_axis=axis,
                result=dataclasses.replace(y.type, shape=ys[:at] + (1,) + ys[at + 1:]))
    return lo.reshape(y, out.shape)


def reduce_scatter(lo, x, dim, axes):
    if len(x.type.shape) == 1:   # ttnn's reduce_scatter takes rank >= 2: [n] -> [1, n]
        return lo.reshape(reduce_scatter(lo, lo.reshape(x, (1, x.type.shape[0])), 1, axes),
                          (x.type.shape[0] // math.prod(_size(lo, a) for a in axes),))
    for a in axes:
        x = lo.emit("reduce_scatter", x, dim=dim, cluster_axis=a,
                    result=_with_dim(x, dim, x.type.shape[dim] // _size(lo, a)))
    return x


def all_reduce(lo, x, axes):
    for a in axes:
        x = lo.emit("all_reduce", x, cluster_axis=a, result=x.type)
    return x


def _reducer(op) -> str:
    body = [o.name for o in op.regions[0].blocks[0].operations]
    return body[0].split(".")[-1] if len(body) == 2 else "?"


# reductions ttnn has no collective or reduction op for (jnp.any / all / percentile, a
# sharded product): the chips' values gathered, then combined one chip's slice at a time with
# this elementwise op (integers, booleans); the neutral element fills other groups' slots
_FOLDS = {"multiply": ("multiply", "multiply", 1, 1), "and": ("bitwise_and", "logical_and", -1, 1),
          "or": ("bitwise_or", "logical_or", 0, 0), "xor": ("bitwise_xor", "logical_xor", 0, 0)}


@rule("stablehlo.all_reduce")
def _all_reduce(lo: Lowering, op) -> list:
    if "tt.fused" in op.attributes:    # done by the reduce_scatter of its dynamic_slice
        return [lo.entry(v) for v in op.operands]
    kind = _reducer(op)
    if kind not in ("add", "maximum", "minimum", *_FOLDS):
        raise lo.unsupported(f"all_reduce with a `{kind}` reduction")
    groups = replica_groups(op)
    span = _span(lo, groups)
    booleans = [host_type(v).element.is_bool for v in op.operands]
    if span is not None:   # not rows/columns: gather, then keep my group's
        return [_all_reduce_of_groups(lo, lo.get(v), groups, span, kind, b) for v, b in zip(op.operands, booleans)]
    axes = _axes(lo, groups)
    out = []
    for v, boolean in zip(op.operands, booleans):
        e = lo.entry(v)
        if isinstance(e, Splat) and kind in ("add", "maximum", "minimum"):    # the same constant on every chip
            n = int(np.prod([_size(lo, a) for a in axes])) if kind == "add" else 1
            out.append(Splat(e.value * n, e.host))
            continue
        x = lo.materialize(e)
        out.append(all_reduce(lo, x, axes) if kind == "add" else _all_reduce_by_gather(lo, x, axes, kind, boolean))
    return out


def _all_reduce_by_gather(lo, x, axes, kind, boolean=False):
    """max / min / a fold over the chips (ttnn.all_reduce only sums): gather along a new
    leading dim, then reduce it away."""
    shape = tuple(x.type.shape)
    for a in axes:
        g = gather(lo, lo.reshape(x, (1,) + shape), 0, (a,))
        x = _reduce_leading(lo, g, kind, boolean)
    return x


def _reduce_leading(lo, g, kind, boolean):
    """[S, *shape] -> [*shape]: the S slices reduced by `kind`."""
    shape = tuple(g.type.shape[1:])
    if kind in _FOLDS:
        fn = _FOLDS[kind][1 if boolean else 0]
        out = dataclasses.replace(g.type, shape=shape)
        parts = [lo.reshape(slice_(lo, g, [k] + [0] * len(shape), [k + 1, *shape], [1] * (len(shape) + 1)), shape)
                 for k in range(g.type.shape[0])]
        acc = parts[0]
        for p in parts[1:]:
            acc = lo.emit(fn, acc, p, result=out)
        return acc
    fn = {"add": "sum", "maximum": "max", "minimum": "min"}[kind]
    keep = dataclasses.replace(g.type, shape=(1,) + shape)
    return lo.reshape(lo.emit(fn, g, dim=[0], keepdim=True, result=keep), shape)


@rule("stablehlo.all_gather")
def _all_gather(lo: Lowering, op) -> list:
    dim = ir.IntegerAttr(op.attributes["all_gather_dim"]).value
    groups = replica_groups(op)
    span = _span(lo, groups)
    if span is not None:
        return [_all_gather_of_groups(lo, lo.get(v), groups, span, dim) for v in op.operands]
    axes = _axes(lo, groups)
    return [gather(lo, lo.get(v), dim, axes) for v in op.operands]


# --- groups that are no row / column (jax's 3-axis meshes on a 2-D ttnn mesh) -----------
# E.g. a (2, 2, 2) jax mesh on a 2x4 t3k: its middle axis groups chips {0, 2}, {1, 3}, ...,
# a strided part of each row. ttnn's CCLs take whole rows or columns (cluster_axis), so
# every chip gathers the mesh axes its group spans and keeps its own group's members, by
# a per-chip 0/1 table (the same ops on every chip).

def _span(lo, groups) -> tuple[int, ...] | None:
    """None when the groups are rows / columns (ttnn's CCLs take them as they are); else
    the mesh axes the groups span (their members gathered along them)."""
    R, C = lo.ctx.mesh_shape
    try:
        group_axes(groups, R, C)
        return None
    except NotOnMesh:
        pass
    groups = [g for g in groups if g]
    if sorted(p for g in groups for p in g) != list(range(R * C)) or len({len(g) for g in groups}) != 1:
        raise lo.unsupported(f"replica groups {groups} do not split the {R}x{C} mesh's chips into equal groups")
    rows = any(len({p // C for p in g}) > 1 for g in groups)
    cols = any(len({p % C for p in g}) > 1 for g in groups)
    return tuple(a for a, spans in ((0, rows), (1, cols)) if spans)


def _gathered(lo, x, span):
    """x of every chip along the span axes, stacked on a new leading dim, and for chip p
    the chip each row came from: (tensor [S, ...], source(p, j))."""
    R, C = lo.ctx.mesh_shape
    g = gather(lo, lo.reshape(x, (1, *x.type.shape)), 0, span)

    def source(p: int, j: int) -> int:
        r, c = divmod(p, C)
        if span == (0, 1):
            return j
        return j * C + c if span == (0,) else r * C + j
    return g, source


def _members(lo, groups, span, source, pick):
    """A per-chip bfloat16 0/1 table [S] (reshaped to broadcast over the gathered rows):
    1 where row j of chip p's gather is `pick(p's group)` (a set of chips)."""
    R, C = lo.ctx.mesh_shape
    size = math.prod(_size(lo, a) for a in span)
    group_of = {p: g for g in groups for p in g}
    vals = np.array([[source(p, j) in pick(group_of[p]) for j in range(size)] for p in range(R * C)],
                    dtype=np.float32)
    return per_chip_table(lo, vals, HostType(dtypes.BY_MLIR["bf16"], (size,)))


def _masked(lo, g, mask, other):
    """where(mask, g, other) with the [S] mask broadcast over g's trailing dims."""
    m = lo.reshape(mask, (g.type.shape[0],) + (1,) * (len(g.type.shape) - 1))
    return where(lo, m, g, other, g.type)


def _all_reduce_of_groups(lo, x, groups, span, kind, boolean=False):
    g, source = _gathered(lo, x, span)
    mask = _members(lo, groups, span, source, lambda group: set(group))
    floats = x.type.dtype in ("float32", "bfloat16")
    if kind in _FOLDS:
        neutral = _FOLDS[kind][3 if boolean else 2]
    else:
        neutral = {"add": 0, "maximum": -math.inf if floats else -2**31,
                   "minimum": math.inf if floats else 2**31 - 1}[kind]
    return _reduce_leading(lo, _masked(lo, g, mask, neutral), kind, boolean)


def _all_gather_of_groups(lo, x, groups, span, dim):
    """Member k of my group's x, for k in group order, concatenated along dim."""
    g, source = _gathered(lo, x, span)
    parts = []
    for k in range(len(groups[0])):
        mask = _members(lo, groups, span, source, lambda group, k=k: {group[k]})
        one = lo.emit("sum", _masked(lo, g, mask, 0), dim=[0], keepdim=True,
                      result=dataclasses.replace(g.type, shape=(1, *x.type.shape)))
        parts.append(lo.reshape(one, x.type.shape))
    if len(parts) == 1:
        return parts[0]
    return lo.emit("concat", parts, dim, result=_with_dim(x, dim, x.type.shape[dim] * len(parts)))


def _reduce_scatter_of_groups(lo, x, groups, span, dim):
    """My group's sum, then block k of it along dim for the group's k-th member."""
    return _my_block(lo, _all_reduce_of_groups(lo, x, groups, span, "add"), groups, dim)


def _my_block(lo, x, groups, dim):
    """Block k of `x` along dim for the k-th member of each group: the K blocks stacked and
    my own kept by a per-chip 0/1 table."""
    K = len(groups[0])
    n = x.type.shape[dim] // K
    rank, ones = len(x.type.shape), [1] * len(x.type.shape)
    blocks = [lo.reshape(slice_(lo, x, [k * n if d == dim else 0 for d in range(rank)],
                                [(k + 1) * n if d == dim else s for d, s in enumerate(x.type.shape)], ones),
                         (1, *_with_dim(x, dim, n).shape)) for k in range(K)]
    stacked = lo.emit("concat", blocks, 0, result=dataclasses.replace(blocks[0].type, shape=(K, *blocks[0].type.shape[1:])))
    R, C = lo.ctx.mesh_shape
    group_of = {p: g for g in groups for p in g}
    mine = np.array([[group_of[p].index(p) == k for k in range(K)] for p in range(R * C)], dtype=np.float32)
    kept = _masked(lo, stacked, per_chip_table(lo, mine, HostType(dtypes.BY_MLIR["bf16"], (K,))), 0)
    out = lo.emit("sum", kept, dim=[0], keepdim=True, result=blocks[0].type)
    return lo.reshape(out, _with_dim(x, dim, n).shape)


@rule("stablehlo.reduce_scatter")
def _reduce_scatter(lo: Lowering, op) -> list:
    if _reducer(op) != "add":
        raise lo.unsupported(f"reduce_scatter with a `{_reducer(op)}` reduction")
    dim = ir.IntegerAttr(op.attributes["scatter_dimension"]).value
    groups = replica_groups(op)
    span = _span(lo, groups)
    if span is not None:   # not rows/columns: my group's sum, my block of it
        return [_reduce_scatter_of_groups(lo, lo.get(op.operands[0]), [g for g in groups if g], span, dim)]
    return [reduce_scatter(lo, lo.get(op.operands[0]), dim, _axes(lo, groups))]


@rule("stablehlo.all_to_all")
def _all_to_all(lo: Lowering, op) -> list:
    split = ir.IntegerAttr(op.attributes["split_dimension"]).value
    concat = ir.IntegerAttr(op.attributes["concat_dimension"]).value
    groups = replica_groups(op)
    span = _span(lo, groups)
    if span is not None:   # not rows/columns: my group's blocks gathered, then my block of them
        groups = [g for g in groups if g]
        return [_all_to_all_of_groups(lo, lo.get(v), groups, span, split, concat) for v in op.operands]
    axes = _axes(lo, groups)
    out = []
    for v in op.operands:
        x = lo.get(v)
        if split == concat:   # split and concat along one dim: blocks swap places (a transpose of blocks)
            n = int(np.prod([_size(lo, a) for a in axes]))
            shape = x.type.shape
            blocks = lo.reshape(x, shape[:split] + (n, shape[split] // n) + shape[split + 1:])
            x = gather(lo, blocks, split + 1, axes)
            x = partition(lo, x, split, axes)
            out.append(lo.reshape(x, shape))
            continue
        out.append(partition(lo, gather(lo, x, concat, axes), split, axes))
    return out


def _all_to_all_of_groups(lo, x, groups, span, split, concat):
    """all_to_all within groups that are not mesh rows / columns: the members' x concatenated
    along `concat` in group order, then my block of that along `split` (when split is
    concat, the blocks are moved to a dim of their own first, as on rows / columns)."""
    if split != concat:
        return _my_block(lo, _all_gather_of_groups(lo, x, groups, span, concat), groups, split)
    n, shape = len(groups[0]), x.type.shape
    blocks = lo.reshape(x, shape[:split] + (n, shape[split] // n) + shape[split + 1:])
    y = _my_block(lo, _all_gather_of_groups(lo, blocks, groups, span, split + 1), groups, split)
    return lo.reshape(y, shape)


@rule("stablehlo.collective_permute")
def _collective_permute(lo: Lowering, op) -> list:
    """Every chip gathers the blocks, reorders them (the same static reorder on every chip)
    and keeps its own: along one mesh axis when the pairs are one shift along it, else over
    the whole mesh (any permutation, e.g. a ring over all 8 chips of a 2x4 t3k)."""
    R, C = lo.ctx.mesh_shape
    pairs = source_target_pairs(op)
    try:
        axis, src_of = permute_plan(pairs, R, C)
        axes = (axis,)
    except NotOnMesh:   # partition p sits at (p // C, p % C): block p of a gather over both axes
        axes = tuple(a for a in (0, 1) if (R, C)[a] > 1)
        src_of = {t: s for s, t in pairs}
    x = lo.get(op.operands[0])
    d0, n = x.type.shape[0], int(np.prod([_size(lo, a) for a in axes]))
    g = gather(lo, x, 0, axes)
    parts = []
    for j in range(n):
        if j in src_of:
            s = src_of[j]
            parts.append(lo.emit("slice", g, [s * d0] + [0] * (len(x.type.shape) - 1),
                                 [(s + 1) * d0] + list(x.type.shape[1:]), [1] * len(x.type.shape),
                                 result=x.type))
        else:
            parts.append(lo.materialize(Splat(0, host_type(op.results[0]))))
    reordered = lo.emit("concat", parts, 0, result=g.type) if len(parts) > 1 else parts[0]
    return [partition(lo, reordered, 0, axes)]


@custom_call("tt.mesh_slice")
def _mesh_slice(lo: Lowering, op) -> list:
    """dynamic_slice(x, my shard's offsets) -> static slice + ttnn.mesh_partition, or with
    a `tt.fused` sum all_reduce as operand, ttnn.reduce_scatter."""
    plan = decode(_info(op))
    sizes = list(ir.DenseI64ArrayAttr(op.attributes["slice_sizes"]))
    src = defining_op(op.operands[0])
    fused = src is not None and "tt.fused" in src.attributes
    x = lo.get(op.operands[0])
    shape = list(x.type.shape)
    # a static slice first: fixed offsets, and the part of each sharded dim that is shards
    starts, limits = [], []
    for (dim, start, axes), size in zip(plan, sizes):
        n = int(np.prod([_size(lo, a) for a in axes])) if axes else 1
        starts.append(start)
        limits.append(start + size * n)
    if starts != [0] * len(shape) or limits != shape:
        x = lo.emit("slice", x, starts, limits, [1] * len(shape), result=dataclasses.replace(
            x.type, shape=tuple(b - a for a, b in zip(starts, limits))))
    sliced_axes = [a for _, _, axes in plan for a in axes]
    if fused:
        reduce_axes = _axes(lo, replica_groups(src))
        if set(sliced_axes) <= set(reduce_axes):
            x = all_reduce(lo, x, [a for a in reduce_axes if a not in sliced_axes])
            for dim, _, axes in plan:
                x = reduce_scatter(lo, x, dim, axes)
            return [x]
        x = all_reduce(lo, x, reduce_axes)
    for dim, _, axes in plan:
        x = partition(lo, x, dim, axes)
    return [x]


def per_device_value(lo, v, vals=None):
    """A value computed from partition_id and constants only: its value on every chip,
    evaluated on the host, as a table replicated on every chip from which
    ttnn.mesh_partition leaves each chip its own entry (the same ops on every chip)."""
    from pjrt_tt.spmd.prepare import _eval
    R, C = lo.ctx.mesh_shape
    vals = np.stack([np.asarray(_eval(v, p, {})) if vals is None else np.asarray(vals[p])
                     for p in range(R * C)])
    return per_chip_table(lo, vals, host_type(v))


def per_chip_table(lo, vals: np.ndarray, h: HostType):
    """vals[p] (of h's shape) on chip p: a constant replicated on every chip, split by
    ttnn.mesh_partition over both mesh axes."""
    R, C = lo.ctx.mesh_shape
    shape = (1,) * max(0, 2 - len(h.shape)) + tuple(h.shape)
    x = lo.constant(vals.reshape((R, C) + shape), HostType(h.element, (R, C) + shape))
    for dim, axis in ((0, 0), (1, 1)):
        if _size(lo, axis) > 1:
            x = _mesh_partition(lo, x, dim, _size(lo, axis), axis)
    return lo.reshape(x, tuple(h.shape) or (1,))


@custom_call("tt.per_device")
def _per_device(lo: Lowering, op) -> list:
    import json
    vals = json.loads(_info(op))
    return [per_device_value(lo, op.results[0], vals)]


@rule("stablehlo.partition_id")
def _partition_id(lo: Lowering, op) -> list:
    """What is left of partition_id after prepare.py (masks for uneven shards, axis_index):
    the table [[0 .. C-1], [C .. 2C-1], ..] (R x C x 1 x 1) replicated on every chip, from
    which ttnn.mesh_partition leaves each chip its own entry: the same ops on every chip."""
    return [per_device_value(lo, op.results[0])]


@rule("stablehlo.replica_id")
def _replica_id(lo: Lowering, op) -> list:
    return [Splat(0, host_type(op.results[0]))]   # SPMD programs have one replica
