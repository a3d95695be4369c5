"""Indexing and sorting: gather, scatter, reverse, sort, top_k.

What each becomes (ttnn 0.81.1 as measured in mock, docs/ttnn-facts.md "Indexing, sort, pooling"):
- gather of whole rows of a bfloat16 (V, D) table (`table[ids]`, an embedding) -> ttnn.embedding
  (its table must be bf16).
- take_along_axis's form (one index per element along dim d, every other dim batching) ->
  ttnn.gather(x, d, index) directly (also the cross-entropy of optax / flax); its transpose
  (the gradient) -> ttnn.scatter_add(x, d, index, updates) directly.
- every other gather -> ttnn.gather (torch.gather) along dim 0 of a *rows view* of the operand:
  the operand as (N/W, W), W its last dim when the gather takes that dim whole, else 1. The
  row each output row reads is computed on device in int32 from the start indices, clamped
  as XLA clamps them; ttnn.gather wants a uint32/uint16 index of the output's shape.
  uint32 start indices (every gather and scatter) are made int32 first, values of 2**31 and
  more saturating to int32's maximum (out of bounds either way).
- scatter with a set or add combiner -> ttnn.scatter / ttnn.scatter_add on the same rows view
  (int32 index). ttnn refuses float32 TILE scatters, so float32 goes through ROW_MAJOR.
  Updates XLA would drop (window out of bounds) are sent to an extra dummy row.
- scatter max / min (ttnn.scatter has no such reduction) -> a one-hot (rows, updates) mask,
  ttnn.where(mask, update, operand row) + ttnn.max / min over the updates;
  refused when the mask would exceed MAX_ONE_HOT elements. Other combiners are rejected.
- reverse -> ttnn.gather per flipped dim with a reversed iota index (ttnn has no flip).
- sort with one key (jnp.sort, argsort's iota payload) -> the indices of ttnn.sort, then
  ttnn.gather for every operand (an iota payload is the indices themselves).
- top_k (custom_call @mhlo.topk) -> the indices of ttnn.topk, then ttnn.gather.
ttnn.sort / ttnn.topk take floats only: int32 keys are ordered exactly by two stable sorts of
their 16-bit digits as float32 (float32 itself merges distinct keys past 2**24); the values
returned are gathered from the int32 operand, so they stay exact.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from pjrt_tt import dtypes
from pjrt_tt.ingest import bodies, scatters
from pjrt_tt.ingest.mlir_compat import defining_op
from pjrt_tt.lower.builder import Broadcast, Lowering, Splat
from pjrt_tt.lower.helpers import WIDE, host_type, integer_product, narrow_back, result_type, slice_
from pjrt_tt.lower.registry import custom_call, rule
from pjrt_tt.program import DEVICE, HostType, ShapeArg, TensorType, Value, dtype_attr, layout_attr

I32, U32 = dtypes.BY_MLIR["i32"], dtypes.BY_MLIR["ui32"]


def _ints(attr) -> list[int]:
    return [int(d) for d in attr]


def _typed(x: Value, shape=None, dtype=None, layout=None) -> TensorType:
    t = x.type
    return TensorType(tuple(shape) if shape is not None else t.shape, dtype or t.dtype, layout or t.layout)


def _i32_const(lo: Lowering, data: np.ndarray) -> Value:
    return lo.constant(data.astype(np.int32), HostType(I32, data.shape))


def _binary(lo: Lowering, fn: str, a, b) -> Value:
    """int32 elementwise op, numpy-broadcasting tensors (or a tensor and a Python int)."""
    shape = np.broadcast_shapes(*(v.type.shape for v in (a, b) if isinstance(v, Value)))
    return lo.emit(fn, a, b, result=TensorType(shape, "int32"))


def _int32_index(lo: Lowering, idx: Value) -> Value:
    """Indices as int32, the type the index arithmetic below computes in: ttnn's maximum /
    minimum keep a uint32 operand's type (and refuse uint8 / uint16), so unsigned indices
    are widened to uint32 and capped at 2**31 - 1 first (still out of bounds wherever they
    were, never wrapped to a negative index), then reinterpreted."""
    if idx.type.dtype == "int32":
        return idx
    if idx.type.dtype != "uint32":
        idx = lo.typecast(idx, "uint32")
    idx = lo.emit("minimum", idx, 2**31 - 1, result=idx.type)
    return lo.emit("bitcast", idx, dtype_attr("int32"), result=dataclasses.replace(idx.type, dtype="int32"))


def _component(lo: Lowering, idx: Value, ishape: tuple, ivd: int, k: int, embed: tuple) -> Value:
    """Component k of the index vectors, shaped `embed` (the batch dims with 1s between)."""
    if ivd < len(ishape):
        starts = [k if d == ivd else 0 for d in range(len(ishape))]
        ends = [k + 1 if d == ivd else n for d, n in enumerate(ishape)]
        idx = slice_(lo, idx, starts, ends, [1] * len(ishape))
    return lo.reshape(idx, embed)


@dataclasses.dataclass
class RowMap:
    """How the elements of an index space (gather: the result; scatter: the updates) map to
    rows of the operand viewed as (rows, width). Positions are dims of the index space."""
    shape: tuple             # operand shape
    space: tuple             # index space shape
    window: list             # (operand dim, space position) per window dim
    batch_pos: list          # space positions of the index batch dims, in order
    index_map: list          # operand dim of each index vector component
    batching: list           # (operand dim, index dim) pairs
    sizes: list              # window size per operand dim (1 for collapsed / batching dims)

    @property
    def width(self) -> int:
        r = len(self.shape)
        whole_last = r > 0 and (r - 1, len(self.space) - 1) in self.window \
            and self.sizes[r - 1] == self.shape[r - 1] and r - 1 not in self.index_map
        return self.shape[-1] if whole_last else 1

    @property
    def rows(self) -> int:
        return math.prod(self.shape) // self.width

    def row_space(self) -> tuple:
        return self.space[:-1] if self.width > 1 else self.space

    def row_stride(self, d: int) -> int:
        return math.prod(self.shape[d + 1:]) // self.width

    def index(self, lo: Lowering, idx: Value, ishape: tuple, ivd: int, clamp: bool) -> Value:
        """int32 (M, 1) row index for ttnn.gather / scatter along dim 0. clamp: XLA gather
        semantics; else (scatter) rows out of bounds become `self.rows` (a dummy row)."""
        rs, rank = self.row_space(), len(self.row_space())
        embed = [1] * rank
        for p, n in zip(self.batch_pos, [n for d, n in enumerate(ishape) if d != ivd]):
            embed[p] = n
        total, valid = None, None
        for k, d in enumerate(self.index_map):
            c = _component(lo, idx, ishape, ivd, k, tuple(embed) or (1,))
            hi = self.shape[d] - self.sizes[d]
            if clamp:
                c = _binary(lo, "minimum", _binary(lo, "maximum", c, 0), hi)
            else:
                ok = _binary(lo, "logical_and", _binary(lo, "ge", c, 0), _binary(lo, "le", c, hi))
                valid = ok if valid is None else _binary(lo, "logical_and", valid, ok)
            if self.row_stride(d) != 1:
                c = _binary(lo, "multiply", c, self.row_stride(d))
            total = c if total is None else _binary(lo, "add", total, c)
        # The parts known at compile time: window offsets and batching dims, one constant.
        const = np.zeros([1] * rank or [1], np.int64)
        parts = [(d, p, self.sizes[d]) for d, p in self.window if p < rank]
        parts += [(od, self.batch_pos[i - (i > ivd)], self.shape[od]) for od, i in self.batching]
        for d, p, n in parts:
            line = np.arange(n) * self.row_stride(d)
            const = const + line.reshape([n if q == p else 1 for q in range(rank)])
        if total is None or const.any():
            c = _i32_const(lo, const)
            total = c if total is None else _binary(lo, "add", total, c)
        if valid is not None:  # rows + (row - rows) * valid
            total = _binary(lo, "add", _binary(lo, "multiply", _binary(lo, "subtract", total, self.rows), valid),
                            self.rows)
        full = tuple(rs) or (1,)
        if tuple(total.type.shape) != full:
            total = lo.materialize(Broadcast(total, HostType(I32, full)))
        return lo.reshape(total, (math.prod(full), 1))

    def widen(self, lo: Lowering, index: Value) -> Value:
        """(m, 1) row index -> (m, W): ttnn.gather / scatter want the result's shape."""
        m = index.type.shape[0]
        return lo.materialize(Broadcast(index, HostType(I32, (m, self.width)))) if self.width > 1 else index


def _take(lo: Lowering, x: Value, dim: int, idx: Value) -> Value:
    """ttnn.gather(x, dim, idx) (torch.gather); ttnn needs rank >= 2, so rank 1 goes as (1, n)."""
    if len(x.type.shape) >= 2:
        return lo.emit("gather", x, dim, idx, result=_typed(x, idx.type.shape))
    n = idx.type.shape[0]
    out = lo.emit("gather", lo.reshape(x, (1, x.type.shape[0])), 1, lo.reshape(idx, (1, n)),
                  result=_typed(x, (1, n)))
    return lo.reshape(out, (n,))


def _along_axis(shape, ishape, ivd, index_map, collapsed, batching, window_dims) -> int | None:
    """The dim d if the gather / scatter is take_along_axis's form (one index per element,
    every other dim a batching dim matched position for position), else None."""
    r = len(shape)
    if len(index_map) != 1 or collapsed != index_map or window_dims or ivd != r or len(ishape) not in (r, r + 1):
        return None
    d = index_map[0]
    return d if sorted(batching) == [(p, p) for p in range(r) if p != d] else None


# --- gather -----------------------------------------------------------------------------

@rule("stablehlo.gather")
def _gather(lo: Lowering, op) -> list:
    dn = stablehlo.GatherDimensionNumbers(op.attributes["dimension_numbers"])
    operand, indices = op.operands
    shape, ishape = host_type(operand).shape, host_type(indices).shape
    out = result_type(op)
    out_shape = host_type(op.results[0]).shape
    sizes = _ints(ir.DenseI64ArrayAttr(op.attributes["slice_sizes"]))
    offset_dims, collapsed = _ints(dn.offset_dims), _ints(dn.collapsed_slice_dims)
    index_map, ivd = _ints(dn.start_index_map), dn.index_vector_dim
    batching = list(zip(_ints(dn.operand_batching_dims), _ints(dn.start_indices_batching_dims)))
    start = lo.entry(indices)
    if isinstance(start, Splat) and not batching and math.prod(ishape) == len(index_map):
        # One constant start (x[..., 0] through a gather): a static slice.
        starts = [min(max(int(start.value), 0), shape[d] - sizes[d]) if d in index_map else 0
                  for d in range(len(shape))]
        ends = [a + n for a, n in zip(starts, sizes)]
        return [lo.reshape(slice_(lo, lo.get(operand), starts, ends, [1] * len(shape)), out.shape)]
    x, idx = lo.get(operand), _int32_index(lo, lo.get(indices))
    if x.type.dtype == "bfloat16" and len(shape) == 2 and index_map == [0] and collapsed == [0] \
            and sizes == [1, shape[1]] and offset_dims == [len(out_shape) - 1] and not batching:
        # An embedding lookup: whole rows of a bf16 table.
        m = math.prod(out_shape[:-1])
        ids = _binary(lo, "minimum", _binary(lo, "maximum", lo.reshape(idx, (1, m)), 0), shape[0] - 1)
        rows = lo.emit("embedding", lo.typecast(ids, "uint32"), x, result=TensorType((1, m, shape[1]), "bfloat16"),
                       layout=layout_attr("TILE"))
        return [lo.reshape(rows, out.shape)]
    d = _along_axis(shape, ishape, ivd, index_map, collapsed, batching, offset_dims)
    if d is not None:  # take_along_axis: torch.gather itself, no flattening
        idx = _binary(lo, "minimum", _binary(lo, "maximum", lo.reshape(idx, out.shape), 0), shape[d] - 1)
        return [_take(lo, x, d, lo.typecast(idx, "uint32"))]
    skipped = set(collapsed) | {d for d, _ in batching}
    window = list(zip([d for d in range(len(shape)) if d not in skipped], offset_dims))
    batch_pos = [p for p in range(len(out_shape)) if p not in offset_dims]
    rows = RowMap(shape, out_shape, window, batch_pos, index_map, batching, sizes)
    index = lo.typecast(rows.widen(lo, rows.index(lo, idx, ishape, ivd, clamp=True)), "uint32")
    table = lo.reshape(x, (rows.rows, rows.width))
    got = lo.emit("gather", table, 0, index, result=_typed(x, index.type.shape))
    return [lo.reshape(got, out.shape)]


# --- scatter ----------------------------------------------------------------------------

# scatter body -> how: ttnn.scatter / scatter_add, or the one-hot form (max, min, prod).
# Booleans: or / and are max / min of 0/1; subtract adds the negated updates.
COMBINERS = {"set": "scatter", "add": "scatter_add", "sub": "scatter_add", "max": "max", "min": "min",
             "or": "max", "and": "min", "mul": "prod"}
MAX_ONE_HOT = 1 << 22  # elements of the (rows, updates, width) mask of a scatter max / min


def _combiner(lo: Lowering, op) -> tuple[str, str]:
    """(what the body computes, how: COMBINERS' value). Other bodies, and scatters of
    several operands, ingest wrote out (ingest/scatters.py) unless they had too many updates."""
    kind = bodies.combiner(op.regions[0])
    if len(op.results) > 1 or kind not in COMBINERS:
        what = f"a scatter {'of several operands' if len(op.results) > 1 else 'with a body'} " \
               f"({', '.join(bodies.op_names(op.regions[0]))})"
        count = scatters.update_count(op)
        if count <= scatters.MAX_SEQUENTIAL:
            raise lo.unsupported(f"{what}: only bodies of elementwise scalar ops are applied")
        raise lo.unsupported(
            f"{what} and {count} updates: pjrt-tt applies such a scatter one update at a time (at most "
            f"{scatters.MAX_SEQUENTIAL}), or all at once when the indices are declared unique "
            f"(unique_indices=True, e.g. `x.at[i].apply(f, unique_indices=True)`)")
    return kind, COMBINERS[kind]


def _scatter_extreme(lo: Lowering, fn: str, rows: RowMap, x: Value, index: Value, src: Value, op) -> Value:
    """Scatter max / min / multiply, which ttnn.scatter lacks: a one-hot mask (rows, updates,
    1) of which update hits which row selects the update or else the operand's row (for a
    product: 1), reduced over the updates axis (then times the operand). max / min are
    exact, duplicates included; a product multiplies in another order than XLA's sequence
    (one rounding per factor either way; integers: exact, wrapping). Dropped updates (row ==
    rows) match no row."""
    r, w, m = rows.rows, rows.width, index.type.shape[0]
    if r * m * w > MAX_ONE_HOT:
        raise lo.unsupported(f"scatter {fn} of {m} x {w} updates into {r} rows: the one-hot mask "
                             f"({r * m * w} elements) would be too large")
    ids = _i32_const(lo, np.arange(r).reshape(r, 1, 1))
    hit = lo.emit("eq", ids, lo.reshape(index, (1, m, 1)), result=TensorType((r, m, 1), x.type.dtype),
                  dtype=dtype_attr(x.type.dtype))
    if fn == "prod":   # where no update hits, a factor of 1; one dim at a time (ttnn.prod)
        ones = lo.emit("full", ShapeArg((r, 1, w)), 1.0, result=_typed(x, (r, 1, w)), dtype=dtype_attr(x.type.dtype),
                       layout=layout_attr("TILE"), device=DEVICE)
        masked = lo.emit("where", hit, lo.reshape(src, (1, m, w)), ones, result=_typed(x, (r, m, w)))
        factor = lo.emit("prod", masked, dim=1, keepdim=True, result=_typed(x, (r, 1, w))) \
            if x.type.dtype in ("float32", "bfloat16") else integer_product(lo, masked, [1])   # (ttnn.prod: floats)
        best = lo.emit("multiply", lo.reshape(x, (r, 1, w)), factor, result=factor.type)
        return lo.reshape(best, result_type(op).shape)
    # Where no update hits, the operand's own row stands in: no fill value needed.
    masked = lo.emit("where", hit, lo.reshape(src, (1, m, w)), lo.reshape(x, (r, 1, w)),
                     result=_typed(x, (r, m, w)))
    best = lo.emit(fn, masked, dim=[1], keepdim=True, result=_typed(x, (r, 1, w)))
    return lo.reshape(best, result_type(op).shape)


@rule("stablehlo.scatter")
def _scatter(lo: Lowering, op) -> list:
    kind, fn = _combiner(lo, op)
    dn = stablehlo.ScatterDimensionNumbers(op.attributes["scatter_dimension_numbers"])
    operand, indices, updates = op.operands
    shape, ishape, ushape = (host_type(v).shape for v in (operand, indices, updates))
    window_dims, inserted = _ints(dn.update_window_dims), _ints(dn.inserted_window_dims)
    batching = list(zip(_ints(dn.input_batching_dims), _ints(dn.scatter_indices_batching_dims)))
    skipped = set(inserted) | {d for d, _ in batching}
    window = list(zip([d for d in range(len(shape)) if d not in skipped], window_dims))
    sizes = [1] * len(shape)
    for d, p in window:
        sizes[d] = ushape[p]
    index_map = _ints(dn.scattered_dims_to_operand_dims)
    x, idx, src = lo.get(operand), _int32_index(lo, lo.get(indices)), lo.get(updates)
    if kind == "sub":
        src = lo.emit("neg", src, result=src.type)
    d = _along_axis(shape, ishape, dn.index_vector_dim, index_map, inserted, batching, window_dims)
    if d is not None and fn not in ("max", "min", "prod"):  # take_along_axis's transpose: torch.scatter itself
        idx = lo.reshape(idx, src.type.shape)
        ok = _binary(lo, "logical_and", _binary(lo, "ge", idx, 0), _binary(lo, "lt", idx, shape[d]))
        idx = _binary(lo, "add", _binary(lo, "multiply", _binary(lo, "subtract", idx, shape[d]), ok), shape[d])
        return [_scatter_into(lo, fn, x, d, idx, src)]
    rows = RowMap(shape, ushape, window, [p for p in range(len(ushape)) if p not in window_dims],
                  index_map, batching, sizes)
    index = rows.index(lo, idx, ishape, dn.index_vector_dim, clamp=False)
    if fn in ("max", "min", "prod"):
        return [_scatter_extreme(lo, fn, rows, x, index, src, op)]
    index, w = rows.widen(lo, index), rows.width
    got = _scatter_into(lo, fn, lo.reshape(x, (rows.rows, w)), 0, index, lo.reshape(src, index.type.shape))
    return [lo.reshape(got, result_type(op).shape)]


def _scatter_into(lo: Lowering, fn: str, x: Value, d: int, index: Value, src: Value) -> Value:
    """ttnn.scatter / scatter_add along d, where index == x.shape[d] marks an update XLA
    drops: it lands in an extra slab, cut off afterwards. uint8 scatters in uint32 (ttnn
    tilizes the table and has no uint8 tile: measured on mock) and wraps back."""
    if x.type.dtype == "uint8":
        wide = _scatter_into(lo, fn, lo.typecast(x, WIDE), d, index, lo.typecast(src, WIDE))
        return narrow_back(lo, wide, "uint8")
    shape = list(x.type.shape)
    slab = shape[:d] + [1] + shape[d + 1:]
    grown = shape[:d] + [shape[d] + 1] + shape[d + 1:]
    table = lo.emit("concat", [x, lo.materialize(_zeros(x, tuple(slab)))], d, result=_typed(x, grown))
    layout = "ROW_MAJOR" if x.type.dtype == "float32" else "TILE"  # no f32 TILE scatter in ttnn
    if layout != "TILE":
        table, index, src = (lo.emit("to_layout", v, layout_attr(layout), result=_typed(v, layout=layout))
                             for v in (table, index, src))
    got = lo.emit(fn, table, d, index, src, result=table.type)
    got = slice_(lo, got, [0] * len(shape), shape, [1] * len(shape))
    if layout != "TILE":
        got = lo.emit("to_layout", got, layout_attr("TILE"), result=_typed(got, layout="TILE"))
    return got


def _zeros(x: Value, shape: tuple) -> Splat:
    element = {"float32": "f32", "bfloat16": "bf16", "int32": "i32", "uint32": "ui32", "uint16": "ui16",
               "uint8": "ui8"}[x.type.dtype]
    return Splat(0, HostType(dtypes.BY_MLIR[element], shape))


# --- reverse ----------------------------------------------------------------------------

@rule("stablehlo.reverse")
def _reverse(lo: Lowering, op) -> list:
    x = lo.get(op.operands[0])
    shape = host_type(op.operands[0]).shape
    for d in _ints(ir.DenseI64ArrayAttr(op.attributes["dimensions"])):
        if shape[d] < 2:
            continue
        line = np.arange(shape[d] - 1, -1, -1).reshape([shape[d] if q == d else 1 for q in range(len(shape))])
        idx = lo.constant(line, HostType(U32, line.shape))
        if idx.type.shape != x.type.shape:
            idx = lo.materialize(Broadcast(idx, HostType(U32, shape)))
        x = _take(lo, x, d, idx)
    return [x]


# --- sort and top_k ---------------------------------------------------------------------

def _sources(v: ir.Value, args: list) -> set[int]:
    """Which block arguments `v` is computed from."""
    for i, a in enumerate(args):
        if v == a:
            return {i}
    op = defining_op(v)
    return set().union(set(), *(_sources(o, args) for o in (op.operands if op else ())))


def _op_name(v: ir.Value) -> str:
    """Name of the op defining v ('' for a block argument)."""
    op = defining_op(v)
    return op.name if op is not None else ""


def _sort_keys(lo: Lowering, region) -> list[tuple[int, bool]]:
    """The comparator's keys, most significant first, as (operand, descending): one
    `key(a) < key(b)` (or >), or the lexicographic chain jax's `lax.sort(num_keys=k)` writes,
    `lt_0 | (eq_0 & (lt_1 | (eq_1 & ...)))`."""
    block = region.blocks[0]
    args = list(block.arguments)
    keys = _key_chain(list(block.operations)[-1].operands[0], args)
    if keys is None or len({i for i, _ in keys}) != len(keys):
        raise lo.unsupported("sorts whose comparator is not a < or > of operands, or the lexicographic "
                             "chain of them that lax.sort(num_keys=k) writes")
    return keys


def _key_compare(v: ir.Value, args: list, directions: tuple) -> tuple[int, str] | None:
    """(operand i, direction) if v is `key(a_i) <direction> key(b_i)` (a_i: block argument 2i,
    b_i: 2i + 1, each key computed from its argument alone), else None."""
    cmp = defining_op(v)
    if cmp is None or cmp.name != "stablehlo.compare":
        return None
    direction = stablehlo.ComparisonDirectionAttr(cmp.attributes["comparison_direction"]).value
    lhs, rhs = (_sources(o, args) for o in cmp.operands)
    if direction not in directions or len(lhs) != 1 or len(rhs) != 1 or {min(lhs), min(rhs)} != {
            min(lhs) // 2 * 2, min(lhs) // 2 * 2 + 1}:
        return None
    i = min(lhs) // 2
    return i, direction if min(lhs) == 2 * i else {"LT": "GT", "GT": "LT", "EQ": "EQ"}[direction]


def _key_chain(v: ir.Value, args: list) -> list[tuple[int, bool]] | None:
    first = _key_compare(v, args, ("LT", "GT"))
    if first is not None:
        return [(first[0], first[1] == "GT")]
    op = defining_op(v)
    if op is None or op.name != "stablehlo.or":
        return None
    for less, rest in (op.operands, reversed(list(op.operands))):   # lt_0 | (eq_0 & rest)
        head, tie = _key_compare(less, args, ("LT", "GT")), defining_op(rest)
        if head is None or tie is None or tie.name != "stablehlo.and":
            continue
        for eq, tail in (tie.operands, reversed(list(tie.operands))):
            same = _key_compare(eq, args, ("EQ",))
            chain = _key_chain(tail, args) if same is not None and same[0] == head[0] else None
            if chain is not None:
                return [(head[0], head[1] == "GT")] + chain
    return None


def _float_key(lo: Lowering, x: Value, n: int) -> Value:
    """The sort key as ttnn.sort / topk take it; bf16 gives uint16 indices, so a dim longer
    than 65536 sorts in float32."""
    if x.type.dtype == "float32" or (x.type.dtype == "bfloat16" and n <= 65536):
        return x
    if x.type.dtype in ("bfloat16", "uint8", "uint16"):   # (uint8 / uint16: exact in float32)
        return lo.typecast(x, "float32")
    raise lo.unsupported(f"sorting {x.type.dtype} keys")   # (int32 / uint32: _integer_order)


def _index_dtype(key: Value) -> str:
    return "uint16" if key.type.dtype == "bfloat16" else "uint32"


def _is_iota(v: ir.Value, dim: int) -> bool:
    return _op_name(v) == "stablehlo.iota" and ir.IntegerAttr(defining_op(v).attributes["iota_dimension"]).value == dim


def _gathered(lo: Lowering, operands: list, dim: int, idx: Value) -> list:
    """Each operand permuted by `idx` along dim; an iota along dim is the index itself."""
    outs = []
    for v in operands:
        if _is_iota(v, dim) and host_type(v).element is I32:
            outs.append(lo.typecast(idx, "int32"))
        else:
            outs.append(_take(lo, lo.get(v), dim, idx))
    return outs


def _integer_order(lo: Lowering, x: Value, dim: int, descending: bool) -> Value:
    """The uint32 indices that sort int32 or uint32 keys along dim, exactly: ttnn sorts
    floats only, and float32 merges distinct keys past 2**24 (16777217 sorted before
    16777216). So two stable sorts by 16-bit digits (LSD radix), each exact in float32: the
    low digit `x & 0xFFFF`, then the high digit: `(x >> 16) + 32768` for int32 (biased:
    signed order), `(x >> 16) & 0xFFFF` for uint32 (whatever fills the shifted-in bits)."""
    low = lo.typecast(lo.emit("bitwise_and", x, 0xFFFF, result=x.type), "float32")
    shifted = lo.emit("bitwise_right_shift", x, 16, result=x.type)
    high = lo.typecast(lo.emit("add", shifted, 32768, result=x.type) if x.type.dtype == "int32"
                       else lo.emit("bitwise_and", shifted, 0xFFFF, result=x.type), "float32")
    by_low = lo.emit("sort[1]", low, dim, descending=descending, stable=True, result=_typed(low, dtype="uint32"))
    by_high = lo.emit("sort[1]", _take(lo, high, dim, by_low), dim, descending=descending, stable=True,
                      result=_typed(low, dtype="uint32"))
    return _take(lo, by_low, dim, by_high)


@rule("stablehlo.sort")
def _sort(lo: Lowering, op) -> list:
    """One stable sort per key, least significant first (LSD): each keeps the order of the
    ones before among its equal keys, so the result is the lexicographic order."""
    dim = ir.IntegerAttr(op.attributes["dimension"]).value
    keys = _sort_keys(lo, op.regions[0])
    stable = len(keys) > 1 or ("is_stable" in op.attributes and ir.BoolAttr(op.attributes["is_stable"]).value)
    order = None
    for i, descending in reversed(keys):
        x = lo.get(op.operands[i])
        if order is not None:
            x = _take(lo, x, dim, order)
        if x.type.dtype in ("int32", "uint32"):
            idx = _integer_order(lo, x, dim, descending)
        else:
            key = _float_key(lo, x, host_type(op.operands[i]).shape[dim])
            idx = lo.emit("sort[1]", key, dim, descending=descending, stable=stable,
                          result=_typed(key, dtype=_index_dtype(key)))
        order = idx if order is None else _take(lo, order, dim, idx)
    return _gathered(lo, list(op.operands), dim, order)


@custom_call("ApproxTopK")
def _approx_top_k(lo: Lowering, op) -> list:
    """jax's approx_max_k / approx_min_k: the exact top k along reduction_dim (recall 1,
    which meets any recall_target; XLA's CPU fallback is exact too): a stable sort of the
    keys (the first of equal ones first), its first k, each input taken at them."""
    attrs = ir.DictAttr(op.attributes["mhlo.backend_config"])
    k, dim = ir.IntegerAttr(attrs["top_k"]).value, ir.IntegerAttr(attrs["reduction_dim"]).value
    comparator = ir.FlatSymbolRefAttr(ir.ArrayAttr(op.attributes["called_computations"])[0]).value
    direction = bodies.comparator(lo.funcs[comparator].regions[0])   # (jax writes no is_max_k)
    if direction is None:
        raise lo.unsupported("ApproxTopK whose comparator is not a >, >=, < or <= of the values")
    largest = direction in ("GT", "GE")
    inputs = list(op.operands[:len(op.results)])
    x, h = lo.get(inputs[0]), host_type(inputs[0])
    if x.type.dtype in ("int32", "uint32"):
        order = _integer_order(lo, x, dim, descending=largest)
    else:
        key = _float_key(lo, x, h.shape[dim])
        order = lo.emit("sort[1]", key, dim, descending=largest, stable=True, result=_typed(key, dtype=_index_dtype(key)))
    shape = [k if d == dim else n for d, n in enumerate(h.shape)]
    idx = slice_(lo, order, [0] * len(shape), shape, [1] * len(shape))
    return _gathered(lo, inputs, dim, idx)


@custom_call("mhlo.topk")
def _topk(lo: Lowering, op) -> list:
    attrs = ir.DictAttr(op.attributes["mhlo.attributes"])
    k = ir.IntegerAttr(attrs["k"]).value
    largest = "largest" not in attrs or ir.BoolAttr(attrs["largest"]).value
    x = lo.get(op.operands[0])
    shape = tuple(host_type(op.results[0]).shape) or (1,)
    if x.type.dtype in ("int32", "uint32"):   # the exact order (see _integer_order), its first k
        order = _integer_order(lo, x, len(shape) - 1, descending=largest)
        idx = slice_(lo, order, [0] * len(shape), list(shape), [1] * len(shape))
        return [_take(lo, x, len(shape) - 1, idx), lo.typecast(idx, "int32")]
    key = _float_key(lo, x, host_type(op.operands[0]).shape[-1])
    idx = lo.emit("topk[1]", key, k, dim=-1, largest=largest, sorted=True,
                  result=TensorType(shape, _index_dtype(key)))
    return [_take(lo, x, len(shape) - 1, idx), lo.typecast(idx, "int32")]

