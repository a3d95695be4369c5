"""Scatters the lowering does not compute by name, rewritten into gathers, the body's own
elementwise ops and overwriting scatters, which it does.

The lowering computes a scatter of one operand whose body combines by name (set, add,
subtract, multiply, max, min, and, or: bodies.combiner). Any other body (jax's
`lax.scatter_apply` applies a function to the operand where the indices point; a
scatter of several operands at once combines them together) is written out here:

- Every update in turn, in the order of the update's scatter dims (row-major), as XLA:CPU
  applies them: the j-th index's window of each operand is gathered, the body computes the
  new values from them and the j-th updates (its scalar ops applied elementwise, as
  reductions.py does for window bodies), and an overwriting scatter puts them back. So an
  index that occurs twice gets the body twice, the second time on the first's result, and
  an update whose window leaves the operand is dropped (the overwrite drops it; the
  gather's clamped read is never written).
- With `unique_indices` (the user's promise that no two updates meet), all updates at once:
  one gather, one body, one overwriting scatter per operand.

A batched scatter (jax's vmap of one) keeps each update's batch position: the one-by-one
form indexes the batching dims explicitly. At most MAX_SEQUENTIAL updates are written out
one by one; a larger scatter with such a body is left to the lowering, which refuses it
naming the size.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from pjrt_tt.ingest import bodies
from pjrt_tt.ingest.inline import functions
from pjrt_tt.ingest.mlir_compat import create, named_attributes

MAX_SEQUENTIAL = 64   # updates written out one at a time (each: a gather, the body, a scatter)


def write_out_scatters(module: ir.Module) -> None:
    found = []
    module.operation.walk(lambda op: (found.append(op) if op.name == "stablehlo.scatter" else None)
                          or ir.WalkResult.ADVANCE)
    funcs = functions(module)
    for op in found:
        body = [o.operation for o in op.regions[0].blocks[0].operations]
        if needs_writing_out(op) and bodies.scalar_only(body, funcs) and _Scatter(op).fits():
            _write_out(op, funcs)


def needs_writing_out(op) -> bool:
    """A scatter the lowering does not name: several operands, or an unnamed body."""
    return len(op.results) > 1 or bodies.combiner(op.regions[0]) is None


def update_count(op) -> int:
    """How many updates (index vectors) a scatter applies."""
    return _Scatter(op).count()


@dataclasses.dataclass(frozen=True)
class _Dims:
    """A scatter's dimension numbers (the gather that reads what it writes has the same)."""
    window: tuple          # update_window_dims: the gather's offset_dims
    inserted: tuple        # inserted_window_dims: the gather's collapsed_slice_dims
    batching: tuple        # input_batching_dims: the gather's operand_batching_dims
    index_batching: tuple  # scatter_indices_batching_dims
    to_operand: tuple      # scattered_dims_to_operand_dims: the gather's start_index_map
    index_dim: int         # index_vector_dim

    def unbatched(self) -> _Dims:
        """The numbers for one update whose batch coordinates are appended to its index
        vector: the batching dims become indexed dims."""
        return _Dims(self.window, tuple(sorted(self.inserted + self.batching)), (), (),
                     self.to_operand + self.batching, self.index_dim)

    def scatter_attr(self):
        return stablehlo.ScatterDimensionNumbers.get(list(self.window), list(self.inserted), list(self.batching),
                                                     list(self.index_batching), list(self.to_operand),
                                                     self.index_dim)

    def gather_attr(self):
        return stablehlo.GatherDimensionNumbers.get(list(self.window), list(self.inserted), list(self.batching),
                                                    list(self.index_batching), list(self.to_operand),
                                                    self.index_dim)


class _Scatter:
    def __init__(self, op):
        self.op = op
        n = len(op.results)
        self.operands, self.indices, self.updates = list(op.operands[:n]), op.operands[n], list(op.operands[n + 1:])
        dn = stablehlo.ScatterDimensionNumbers(op.attributes["scatter_dimension_numbers"])
        self.dims = _Dims(tuple(dn.update_window_dims), tuple(dn.inserted_window_dims),
                          tuple(dn.input_batching_dims), tuple(dn.scatter_indices_batching_dims),
                          tuple(dn.scattered_dims_to_operand_dims), dn.index_vector_dim)
        self.ishape = list(ir.RankedTensorType(self.indices.type).shape)
        self.ushape = list(ir.RankedTensorType(self.updates[0].type).shape)
        # the indices' dims other than the index vector, in order, are the updates' scatter dims
        self.index_batch = [d for d in range(len(self.ishape)) if d != self.dims.index_dim]
        self.update_batch = [d for d in range(len(self.ushape)) if d not in self.dims.window]
        self.unique = "unique_indices" in op.attributes and ir.BoolAttr(op.attributes["unique_indices"]).value

    def count(self) -> int:
        return math.prod(self.ushape[d] for d in self.update_batch)

    def fits(self) -> bool:
        return self.unique or self.count() <= MAX_SEQUENTIAL

    def one(self, at: tuple) -> tuple[ir.Value, list, _Dims]:
        """The at-th update alone (size 1 along every scatter dim): its indices, updates
        and dimension numbers."""
        istart, isize = [0] * len(self.ishape), list(self.ishape)
        for d, k in zip(self.index_batch, at):
            istart[d], isize[d] = k, 1
        ustart, usize = [0] * len(self.ushape), list(self.ushape)
        for d, k in zip(self.update_batch, at):
            ustart[d], usize[d] = k, 1
        indices, dims = _slice(self.indices, istart, isize), self.dims
        updates = [_slice(u, ustart, usize) for u in self.updates]
        if dims.batching:   # slicing loses the batch position the batching dims read: index it
            indices = _append_to_index_vector(indices, dims.index_dim, [istart[d] for d in dims.index_batching])
            dims = dims.unbatched()
        return indices, updates, dims

    @staticmethod
    def gather(operand, indices, shape, dims: _Dims) -> ir.Value:
        """operand's windows at `indices`, shaped like the updates (`shape`)."""
        rank = len(ir.RankedTensorType(operand.type).shape)
        skipped = set(dims.inserted) | set(dims.batching)
        sizes = [1] * rank
        for d, u in zip([d for d in range(rank) if d not in skipped], dims.window):
            sizes[d] = shape[u]
        out = ir.RankedTensorType.get(shape, ir.RankedTensorType(operand.type).element_type)
        return create("stablehlo.gather", out, [operand, indices],
                      {"dimension_numbers": dims.gather_attr(), "slice_sizes": ir.DenseI64ArrayAttr.get(sizes),
                       "indices_are_sorted": ir.BoolAttr.get(False)})

    @staticmethod
    def overwrite(operand, indices, values, dims: _Dims) -> ir.Value:
        """operand with `values` written at `indices` (a scatter whose body is `set`)."""
        new = ir.Operation.create("stablehlo.scatter", results=[operand.type], operands=[operand, indices, values],
                                  attributes={"scatter_dimension_numbers": dims.scatter_attr()}, regions=1)
        scalar = ir.RankedTensorType.get([], ir.RankedTensorType(operand.type).element_type)
        block = new.regions[0].blocks.append(scalar, scalar)
        with ir.InsertionPoint(block):
            ir.Operation.create("stablehlo.return", operands=[block.arguments[1]])
        return new.results[0]


def _append_to_index_vector(indices, index_dim: int, values: list[int]) -> ir.Value:
    """indices (every dim but the index vector's of size 1) with `values` appended to its
    index vector."""
    t = ir.RankedTensorType(indices.type)
    shape = list(t.shape)
    if index_dim == len(shape):   # an implicit index vector of one element
        shape.append(1)
        indices = create("stablehlo.reshape", ir.RankedTensorType.get(shape, t.element_type), [indices])
    extra_shape = [1] * len(shape)
    extra_shape[index_dim] = len(values)
    extra_type = ir.RankedTensorType.get(extra_shape, t.element_type)
    extra = create("stablehlo.constant", extra_type, [],
                   {"value": ir.DenseElementsAttr.get(np.array(values, _NUMPY[str(t.element_type)]).reshape(extra_shape),
                                                      type=extra_type)})
    shape[index_dim] += len(values)
    return create("stablehlo.concatenate", ir.RankedTensorType.get(shape, t.element_type), [indices, extra],
                  {"dimension": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), index_dim)})


_NUMPY = {"i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
          "ui8": np.uint8, "ui16": np.uint16, "ui32": np.uint32, "ui64": np.uint64}


def _slice(value, starts: list, sizes: list) -> ir.Value:
    shape = list(ir.RankedTensorType(value.type).shape)
    if starts == [0] * len(shape) and sizes == shape:
        return value
    out = ir.RankedTensorType.get(sizes, ir.RankedTensorType(value.type).element_type)
    arrays = ir.DenseI64ArrayAttr.get
    return create("stablehlo.slice", out, [value],
                  {"start_indices": arrays(starts), "limit_indices": arrays([s + n for s, n in zip(starts, sizes)]),
                   "strides": arrays([1] * len(shape))})


def _write_out(op, funcs: dict) -> None:
    s = _Scatter(op)
    block = op.regions[0].blocks[0]
    with op.context, op.location, ir.InsertionPoint(op):
        current = list(s.operands)
        if s.unique:
            steps = [(s.indices, s.updates, s.dims)]
        else:
            steps = (s.one(at) for at in itertools.product(*(range(s.ushape[d]) for d in s.update_batch)))
        for indices, updates, dims in steps:
            shape = list(ir.RankedTensorType(updates[0].type).shape)
            old = [s.gather(x, indices, shape, dims) for x in current]
            new = bodies.elementwise(block, old + updates, shape, funcs)
            current = [s.overwrite(x, indices, v, dims) for x, v in zip(current, new)]
        for result, value in zip(op.results, current):
            result.replace_all_uses_with(value)
    op.erase()
