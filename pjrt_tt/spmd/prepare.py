"""Per-device StableHLO (from XLA's partitioner) -> a module every chip of a mesh can run.

On a ttnn mesh every chip runs the same op, so nothing may depend on which chip runs it.
XLA's partitioner uses `partition_id` in one way that matters: dynamic_slice offsets
(`table[partition_id] * size`) that pick this device's shard. Their values are evaluated
here on the host for every device; where device p's offset along a dim is
`size * (its index along some mesh axes)`, the slice is ttnn.mesh_partition along those
axes (the same op on every chip), and when its operand is a sum all_reduce used only
there, the pair is ttnn.reduce_scatter. The rewritten module holds the decisions as ops with
ordinary lowering rules (collectives.py), so the registry never changes:
    dynamic_slice(x, offsets(partition_id))  -> custom_call @tt.mesh_slice(x) {tt.info = plan}
                                                (its all_reduce operand marked `tt.fused`)
    ... following no mesh axis               -> left as it is (its offsets fold to per-chip
                                                values: lower/control_flow._slice_per_chip)
    values of partition_id and constants     -> custom_call @tt.per_device() {tt.info = values}
The offset arithmetic is then dead and erased.

The execution mesh: partition p sits at (p // C, p % C) of an R x C mesh; R x C is the
first factorisation of N for which every collective's replica groups are the rows, the
columns, or all chips of the mesh, and every partition-dependent slice follows a mesh axis
(a collective_permute fits any mesh: collectives.py moves it over the whole mesh when its
pairs are not one shift along an axis).
Shapes that are submeshes of the system's mesh are tried first (1 x N first among them):
real ttnn runs a program only on a submesh (a 1x8 mesh is none of a 2x4 t3k: ttnn
refuses it, docs/ttnn-facts.md), and the framework's logical mesh does not matter, since
replica groups and slice offsets name devices, not mesh coordinates: a 1-D shard_map over
the 8 chips of a t3k runs on its 2x4 mesh, its all-chip collectives over both axes.
"""
from __future__ import annotations

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from pjrt_tt.ingest import constant_array
from pjrt_tt.ingest.attributes import custom_call_target
from pjrt_tt.ingest.mlir_compat import defining_op, mesh_axes_replica_groups

COLLECTIVES = ("stablehlo.all_reduce", "stablehlo.all_gather", "stablehlo.reduce_scatter",
               "stablehlo.all_to_all", "stablehlo.collective_permute")
_NP = {"i32": np.int32, "ui32": np.uint32, "i64": np.int64, "ui64": np.uint64, "i1": np.bool_,
       "i8": np.int8, "i16": np.int16, "ui8": np.uint8, "ui16": np.uint16, "f32": np.float32}


class NotOnMesh(Exception):
    pass


def axis_orders(R: int, C: int):
    """The ways a set of chips can be ordered along mesh axes: axes list (major first) ->
    index of partition p in that order."""
    out = {(): lambda p: 0}
    if C > 1:
        out[(1,)] = lambda p: p % C
    if R > 1:
        out[(0,)] = lambda p: p // C
    if R > 1 and C > 1:
        out[(0, 1)] = lambda p: p
        out[(1, 0)] = lambda p: (p % C) * R + p // C
    return out


def group_axes(groups: list[list[int]], R: int, C: int) -> tuple[int, ...]:
    """The mesh axes (major first) whose chip groups are exactly `groups` (in order)."""
    n = R * C
    if not groups or groups == [[]]:
        groups = [list(range(n))]
    want = sorted(map(tuple, groups))
    for axes, index in axis_orders(R, C).items():
        if not axes:
            continue
        size = int(np.prod([(R, C)[a] for a in axes]))
        mine = {}
        for p in range(n):   # the group key is the coordinate along the other axes
            key = tuple((p // C, p % C)[a] for a in (0, 1) if a not in axes)
            mine.setdefault(key, [None] * size)[index(p)] = p
        if sorted(tuple(g) for g in mine.values()) == want:
            return axes
    raise NotOnMesh(f"replica groups {groups} are not rows/columns of a {R}x{C} mesh")


def permute_plan(pairs: list[list[int]], R: int, C: int) -> tuple[int, dict[int, int]]:
    """A collective_permute's (source, target) pairs as one shift along a mesh axis of an R x C
    mesh: (axis, {target index along it: source index}), the same in every group; else
    NotOnMesh."""
    coord = lambda p: (p // C, p % C)  # noqa: E731
    for axis in (1, 0):
        other = 1 - axis
        size = (R, C)[axis]
        if size == 1 or any(coord(s)[other] != coord(t)[other] for s, t in pairs):
            continue
        src_of: dict[int, set] = {}
        for s, t in pairs:
            src_of.setdefault(coord(t)[axis], set()).add(coord(s)[axis])
        if any(len(s) != 1 for s in src_of.values()) or len(pairs) != R * C // size * len(src_of):
            continue
        return axis, {t: next(iter(s)) for t, s in src_of.items()}
    raise NotOnMesh(f"collective_permute pairs {pairs} are not one shift along a mesh axis of the "
                    f"{R}x{C} mesh")


def source_target_pairs(op) -> list[list[int]]:
    return np.array(ir.DenseElementsAttr(op.attributes["source_target_pairs"])).reshape(-1, 2).tolist()


def replica_groups(op) -> list[list[int]]:
    """A collective's device groups: dense (jaxlib 0.7.1, and torch_xla's GSPMD programs) or
    as axes of an sdy mesh (what XLA's partitioner emits for jax programs in jaxlib 0.12)."""
    attr = op.attributes["replica_groups"]
    mesh_axes = mesh_axes_replica_groups(attr)
    if mesh_axes is not None:
        return _mesh_axes_groups(op, *mesh_axes)
    return np.array(ir.DenseElementsAttr(attr)).tolist() if ir.DenseElementsAttr(attr).type.shape[0] else []


def dense_replica_groups(module: ir.Module) -> None:
    """Rewrite replica groups given as sdy mesh axes (jaxlib 0.12's partitioner) to the dense
    table, in the program handed back to the framework: torch_xla 2.9's StableHLO (1.13)
    cannot parse the mesh-axes attribute."""
    found = []
    module.operation.walk(lambda op: (found.append(op.operation) if "replica_groups" in op.attributes
                                      else None) or ir.WalkResult.ADVANCE)
    for op in found:
        if mesh_axes_replica_groups(op.attributes["replica_groups"]) is None:
            continue
        groups = replica_groups(op)
        rows = ", ".join("[" + ", ".join(map(str, g)) + "]" for g in groups)
        width = len(groups[0]) if groups else 0
        with op.context:
            op.attributes["replica_groups"] = ir.Attribute.parse(
                f"dense<[{rows}]> : tensor<{len(groups)}x{width}xi64>")


def _mesh_axes_groups(op, mesh_name: str, axes: list[tuple[str, str | None]]) -> list[list[int]]:
    """Groups of the devices that differ only along `axes` (members ordered by those axes,
    in the order given) of the module's `sdy.mesh @mesh_name`."""
    from jaxlib.mlir.dialects import sdy
    module = op
    while module.name != "builtin.module":
        module = module.parent
    mesh = None
    for o in module.regions[0].blocks[0].operations:
        o = o.operation
        if o.name == "sdy.mesh" and ir.StringAttr(o.attributes["sym_name"]).value == mesh_name:
            mesh = sdy.MeshAttr(o.attributes["mesh"])
    if mesh is None:
        raise NotOnMesh(f"replica groups name the mesh @{mesh_name}, which the module does not define")
    sub = [name for name, info in axes if info is not None]
    if sub:
        raise NotOnMesh(f"replica groups over sub-axes of mesh axes {sub} are not supported")
    mesh_axes = [sdy.MeshAxisAttr(a) for a in mesh.axes]
    names, sizes = [a.name for a in mesh_axes], [a.size for a in mesh_axes]
    ids = np.array(list(mesh.device_ids) or range(int(np.prod(sizes))), dtype=np.int64).reshape(sizes)
    group = [names.index(name) for name, _ in axes]
    rest = [d for d in range(len(names)) if d not in group]
    size = int(np.prod([sizes[d] for d in group]))
    return ids.transpose(rest + group).reshape(-1, size).tolist()


def _eval(v: ir.Value, p: int, memo: dict):
    """The value of a small integer computation of partition_id, on device p."""
    if v in memo:
        return memo[v]
    op = defining_op(v)
    if op is None:
        raise NotOnMesh("depends on a block argument")
    name = op.name
    args = [_eval(a, p, memo) for a in op.operands] if name != "stablehlo.constant" else []
    etype = str(ir.RankedTensorType(v.type).element_type)
    if name == "stablehlo.constant":
        out = constant_array(op.attributes["value"], _NP.get(etype, np.int64))
    elif name == "stablehlo.partition_id":
        out = np.array(p, np.uint32)
    elif name == "stablehlo.replica_id":
        out = np.array(0, np.uint32)
    elif name in ("stablehlo.reshape", "stablehlo.convert", "stablehlo.broadcast_in_dim"):
        shape = tuple(ir.RankedTensorType(v.type).shape)
        a = np.asarray(args[0])
        out = (np.full(shape, a.reshape(-1)[0]) if a.size == 1 else a.reshape(shape)).astype(_NP.get(etype, np.int64))
    elif name == "stablehlo.dynamic_slice":
        sizes = list(ir.DenseI64ArrayAttr(op.attributes["slice_sizes"]))
        base = np.asarray(args[0])
        starts = [int(np.clip(int(s), 0, d - n)) for s, d, n in zip(args[1:], base.shape, sizes)]
        out = base[tuple(slice(s, s + n) for s, n in zip(starts, sizes))]
    elif name in _BINARY:
        a, b = (np.asarray(x).astype(np.int64) for x in args)
        out = _BINARY[name](a, b).astype(_NP.get(etype, np.int64))
    elif name == "stablehlo.clamp":
        lo_, x, hi = (np.asarray(a).astype(np.int64) for a in args)
        out = np.clip(x, lo_, hi).astype(_NP.get(etype, np.int64))
    elif name == "stablehlo.select":
        out = np.where(args[0], args[1], args[2])
    elif name == "stablehlo.compare":   # jax wraps negative indices: select(x < 0, x + n, x)
        direction = stablehlo.ComparisonDirectionAttr(op.attributes["comparison_direction"]).value
        a, b = (np.asarray(x).astype(np.int64) for x in args)
        out = _COMPARE[direction](a, b)
    else:
        raise NotOnMesh(f"cannot evaluate {name} per device")
    memo[v] = out
    return out


_COMPARE = {"EQ": np.equal, "NE": np.not_equal, "LT": np.less, "LE": np.less_equal, "GT": np.greater,
            "GE": np.greater_equal}
_BINARY = {"stablehlo.add": np.add, "stablehlo.subtract": np.subtract, "stablehlo.multiply": np.multiply,
           "stablehlo.divide": lambda a, b: np.trunc(a / b).astype(np.int64),
           "stablehlo.remainder": np.fmod, "stablehlo.maximum": np.maximum, "stablehlo.minimum": np.minimum}


def _depends_on_partition(v: ir.Value, memo: dict | None = None) -> bool:
    memo = _DEPENDS if memo is None else memo
    stack = [v]
    while stack:   # iterative, memoised: programs have thousands of ops
        x = stack.pop()
        if x in memo:
            continue
        op = defining_op(x)
        if op is None:
            memo[x] = False
            continue
        pending = [a for a in op.operands if a not in memo]
        if pending and op.name != "stablehlo.partition_id":
            stack.append(x)      # again, after its operands (SSA: no cycles)
            stack.extend(pending)
            continue
        memo[x] = op.name == "stablehlo.partition_id" or any(memo[a] for a in op.operands)
    return memo[v]


_DEPENDS: dict = {}   # reset by prepare() per module


def slice_plan(op, R: int, C: int) -> list[tuple[int, int, tuple[int, ...]]] | None:
    """For a partition-dependent dynamic_slice: [(dim, static_start, axes)] per dim
    (axes empty: a static slice), or None if the offsets do not depend on the device."""
    idx = list(op.operands[1:])
    if not any(_depends_on_partition(v) for v in idx):
        return None
    sizes = list(ir.DenseI64ArrayAttr(op.attributes["slice_sizes"]))
    shape = ir.RankedTensorType(op.operands[0].type).shape
    n = R * C
    offsets = np.array([[int(np.clip(int(_eval(v, p, {})), 0, d - s)) for v, d, s in zip(idx, shape, sizes)]
                        for p in range(n)])
    plan = []
    for dim, (size, extent) in enumerate(zip(sizes, shape)):
        col = offsets[:, dim]
        if (col == col[0]).all():
            plan.append((dim, int(col[0]), ()))
            continue
        for axes, index in axis_orders(R, C).items():
            if axes and all(col[p] == size * index(p) for p in range(n)):
                plan.append((dim, 0, axes))
                break
        else:
            raise NotOnMesh(f"dynamic_slice offsets {col.tolist()} along dim {dim} do not follow "
                            f"an axis of a {R}x{C} mesh")
    return plan


def mesh_candidates(n: int, system_mesh: tuple[int, int]) -> list[tuple[int, int]]:
    """Every R x C with R * C == n, submeshes of `system_mesh` first, 1 x N first within each."""
    shapes = [(1, n)] + [(r, n // r) for r in range(2, n) if n % r == 0] + ([(n, 1)] if n > 1 else [])
    rows, cols = system_mesh
    return sorted(shapes, key=lambda rc: bool(rows % rc[0] or cols % rc[1]))


def choose_mesh(funcs: list, n: int, system_mesh: tuple[int, int]) -> tuple[int, int]:
    """The first mesh shape every collective of `funcs` fits (jaxlib 0.12 outlines shard_map
    bodies into private functions, so their collectives are not in @main)."""
    shapes = mesh_candidates(n, system_mesh)
    for R, C in shapes:
        try:
            for op in (op for func in funcs for op in _ops(func)):
                if op.name in COLLECTIVES and op.name != "stablehlo.collective_permute":
                    group_axes(replica_groups(op), R, C)
                elif op.name == "stablehlo.dynamic_slice":
                    slice_plan(op, R, C)
            return R, C
        except NotOnMesh:
            continue
    return shapes[0]  # nothing fits: the lowering rules name the op that does not


def _ops(func):
    for block in func.regions[0].blocks:
        for op in block.operations:
            yield op


def _encode(plan) -> str:
    return ";".join(f"{d},{s},{''.join(map(str, a))}" for d, s, a in plan)


def decode(text: str) -> list[tuple[int, int, tuple[int, ...]]]:
    out = []
    for part in text.split(";"):
        d, s, a = part.split(",")
        out.append((int(d), int(s), tuple(int(c) for c in a)))
    return out


def prepare(module: ir.Module, n: int, system_mesh: tuple[int, int]) -> tuple[int, int]:
    """Rewrite the per-device module in place for an R x C mesh (chosen for a system whose
    mesh is `system_mesh`); returns (R, C)."""
    _DEPENDS.clear()
    funcs = {ir.StringAttr(op.attributes["sym_name"]).value: op
             for op in module.body.operations if op.operation.name == "func.func"}
    main = funcs["main"]
    text = str(module)
    live = [main]
    for name, f in funcs.items():   # reducer clones and other dead private functions
        if name != "main" and text.count(f"@{name}") == 1:
            f.operation.erase()
        elif name != "main":
            live.append(f)
    with module.context, ir.Location.unknown():
        R, C = choose_mesh(live, n, system_mesh)
        plans = []      # decided on the untouched module, then applied
        # (every live function: jaxlib 0.12 outlines shard_map and manual-computation bodies)
        for op in (op for func in live for op in _ops(func)):
            if op.name != "stablehlo.dynamic_slice":
                continue
            src = defining_op(op.operands[0])
            if src is not None and src.name == "stablehlo.constant":
                continue    # an offset table lookup: part of the offset arithmetic
            try:
                plan = slice_plan(op, R, C)
            except NotOnMesh:   # left as it is: its starts fold to per-chip values, which the
                continue        # lowering's dynamic_slice picks from (control_flow._slice_per_chip)
            if plan is not None:
                plans.append((op, plan))
        for op, plan in plans:
            src = defining_op(op.operands[0])
            if (src is not None and src.name == "stablehlo.all_reduce" and _is_sum(src)
                    and len(src.results) == 1 and len(list(src.results[0].uses)) == 1):
                src.attributes["tt.fused"] = ir.UnitAttr.get()
            # the offsets are known: the partition_id arithmetic goes dead
            _replace(op, "tt.mesh_slice", [op.operands[0]], _encode(plan))
        for func in live:
            _dce(func)
        _DEPENDS.clear()   # the module changed
        for func in live:
            _fold_partition_values(func, R * C)
            _dce(func)
    _DEPENDS.clear()
    return R, C


def _replace(op, target: str, operands, info: str) -> ir.Operation:
    """`op` -> `custom_call @target(operands) {tt.info = info}` at its place and location."""
    with ir.InsertionPoint(op):
        new = stablehlo.CustomCallOp([r.type for r in op.results], operands,
                                     call_target_name=ir.StringAttr.get(target), loc=op.location)
    if "slice_sizes" in op.attributes:
        new.attributes["slice_sizes"] = op.attributes["slice_sizes"]
    new.attributes["tt.info"] = ir.StringAttr.get(info)
    for old, r in zip(op.results, new.results):
        old.replace_all_uses_with(r)
    op.erase()
    return new


def _fold_partition_values(func, n: int) -> None:
    """Values computed from partition_id and constants only (axis_index arithmetic, masks of
    uneven shards) are evaluated here for every device and become one
    `custom_call @tt.per_device` each, holding the per-device values (collectives.py turns it
    into a table that ttnn.mesh_partition splits over the chips)."""
    import json
    def foldable(v):   # a broadcast is kept: its (smaller) operand is folded instead
        if not _depends_on_partition(v) or getattr(defining_op(v), "name", "") == "stablehlo.broadcast_in_dim":
            return False
        try:
            _eval(v, 0, {})
            return True
        except NotOnMesh:
            return False
    todo = []
    for op in _ops(func):
        if op.results and all(foldable(r) for r in op.results):
            continue
        for v in op.operands:
            if foldable(v) and v not in todo:
                todo.append(v)
    block = func.regions[0].blocks[0]
    # all evaluated before any is replaced: one may be computed from another
    values = [[np.asarray(_eval(v, p, {})).tolist() for p in range(n)] for v in todo]
    for v, vals in zip(todo, values):
        with ir.InsertionPoint.at_block_begin(block):
            new = stablehlo.CustomCallOp([v.type], [], call_target_name=ir.StringAttr.get("tt.per_device"))
        new.attributes["tt.info"] = ir.StringAttr.get(json.dumps(vals))
        v.replace_all_uses_with(new.results[0])


def _is_sum(op) -> bool:
    body = [o.name for o in op.regions[0].blocks[0].operations]
    return body == ["stablehlo.add", "stablehlo.return"]


def _dce(func) -> None:
    changed = True
    while changed:
        changed = False
        for op in reversed(list(_ops(func))):
            pure = op.name not in COLLECTIVES and op.name != "stablehlo.return" and (
                custom_call_target(op) in (None, "tt.per_device"))
            if (op.name.startswith("stablehlo.") and pure and op.results
                    and all(not list(r.uses) for r in op.results)):
                op.erase()
                changed = True
