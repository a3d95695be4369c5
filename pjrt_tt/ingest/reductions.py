"""Reductions whose bodies the lowering does not compute by name, rewritten into ones it
does (or into their definition).

The lowering computes a reduce whose body is one add / max / min / multiply / and / or, or a
(value, index) argmax / argmin; a reduce_window whose body is one add / max / min (a sum of
strided slices, ttnn's cumulative ops for scans; lower/windows.py). Here:

- A reduce of several operands whose results each combine only their own operand (jax's
  reduce over a pytree: a sum and a max at once) becomes one reduce per operand, each body
  the ops its result needs (`split_reductions`).
- A reduce_window with any other body (jax's cumulative logsumexp, a product over 2-D
  windows, an argmax pool reducing a value and an index together) becomes its definition
  (`write_out_reduce_windows`): the padded operands' strided slice for each window element,
  folded into the init one element at a time by the body's own ops, now on whole tensors
  (each scalar op of the body applied elementwise), padding and base dilation's holes
  skipped as XLA skips them. So any elementwise body runs, at one slice and one body per
  window element, in XLA:CPU's order. Windows of more than MAX_ELEMENTS elements (a
  cumulative logsumexp over a sequence) take log2 steps per dim instead: windows of 2^k
  elements from two of 2^(k-1), then the window from the powers of two its size is made of
  (`_write_out_by_doubling`; the body taken as associative, as StableHLO allows). So do
  add / max / min windows that large, which the lowering computes one slice per element
  (a 9x9 max pool, a cummax over 100), except the scans ttnn computes (cumsum, cumprod).
"""
from __future__ import annotations

import itertools
import math

from jaxlib.mlir import ir

from pjrt_tt.ingest import bodies
from pjrt_tt.ingest.inline import functions
from pjrt_tt.ingest.mlir_compat import create, named_attributes

MAX_ELEMENTS = 64
_NAMED = {"stablehlo.add", "stablehlo.maximum", "stablehlo.minimum"}
_SCANNED = {"stablehlo.add", "stablehlo.multiply"}   # ttnn.cumsum / cumprod: any length


def split_reductions(module: ir.Module) -> None:
    found = []
    module.operation.walk(lambda op: (found.append(op) if op.name == "stablehlo.reduce" and len(op.results) > 1
                                      else None) or ir.WalkResult.ADVANCE)
    for op in found:
        block = op.regions[0].blocks[0]
        n = len(op.results)
        needs = _needs(block)
        ret = _body_ops(op)[-1]
        if all(needs[v] <= {k, k + n} for k, v in enumerate(ret.operands)) and not any(o.regions for o in _body_ops(op)):
            _split(op, needs)


def _needs(block) -> dict:
    """Each value of the block -> the block arguments (indices) it is computed from."""
    needs = {a: {i} for i, a in enumerate(block.arguments)}
    for o in block.operations:
        o = o.operation
        for r in o.results:
            needs[r] = set().union(*(needs.get(v, set()) for v in o.operands))
    return needs


def _split(op, needs: dict) -> None:
    block = op.regions[0].blocks[0]
    n = len(op.results)
    ret = _body_ops(op)[-1]
    with op.context, op.location, ir.InsertionPoint(op):
        for k, result in enumerate(op.results):
            scalar = block.arguments[k].type
            red = ir.Operation.create("stablehlo.reduce", results=[result.type],
                                      operands=[op.operands[k], op.operands[k + n]],
                                      attributes={"dimensions": op.attributes["dimensions"]}, regions=1)
            new_block = red.regions[0].blocks.append(scalar, scalar)
            env = {block.arguments[k]: new_block.arguments[0], block.arguments[k + n]: new_block.arguments[1]}
            with ir.InsertionPoint(new_block):
                for o in _body_ops(op)[:-1]:
                    if all(v in env for v in o.operands) and needs[o.results[0]] <= {k, k + n}:
                        attrs = named_attributes(o)
                        env[o.results[0]] = ir.Operation.create(
                            o.name, results=[r.type for r in o.results], operands=[env[v] for v in o.operands],
                            attributes=attrs).results[0]
                ir.Operation.create("stablehlo.return", operands=[env[ret.operands[k]]])
            result.replace_all_uses_with(red.results[0])
    op.erase()


def write_out_reduce_windows(module: ir.Module) -> None:
    found = []
    module.operation.walk(lambda op: (found.append(op) if op.name == "stablehlo.reduce_window" else None)
                          or ir.WalkResult.ADVANCE)
    funcs = functions(module)
    for op in found:
        if not _writable(op, funcs):
            continue
        rank = len(ir.RankedTensorType(op.operands[0].type).shape)
        big = math.prod(window_ints(op, "window_dimensions", rank)) > MAX_ELEMENTS
        if _named(op) and (not big or (_cumulative(op) and _body_ops(op)[0].name in _SCANNED)):
            continue   # the lowering's slices, or ttnn's scan
        (_write_out_by_doubling if big else _write_out)(op, funcs)


def _body_ops(op) -> list:
    return [o.operation for o in op.regions[0].blocks[0].operations]


def _named(op) -> bool:
    """A body the lowering computes by name: one add / max / min, or a multiply it scans
    (without base dilation, which only the written-out form takes)."""
    ops = _body_ops(op)
    rank = len(ir.RankedTensorType(op.operands[0].type).shape)
    if len(op.results) != 1 or len(ops) != 2 or window_ints(op, "base_dilations", rank) != [1] * rank:
        return False
    return ops[0].name in _NAMED or (ops[0].name == "stablehlo.multiply" and _cumulative(op))


def _cumulative(op) -> bool:
    """One dim's window spans it, padded by n - 1 on one side, unit strides: a scan."""
    shape = ir.RankedTensorType(op.operands[0].type).shape
    window = window_ints(op, "window_dimensions", len(shape))
    low, high = window_padding(op, len(shape))
    spanned = [d for d, w in enumerate(window) if w != 1]
    if len(spanned) != 1 or window_ints(op, "window_strides", len(shape)) != [1] * len(shape):
        return False
    d, n = spanned[0], shape[spanned[0]]
    return window[d] == n and (low[d], high[d]) in ((n - 1, 0), (0, n - 1))




def _writable(op, funcs: dict) -> bool:
    return bodies.scalar_only(_body_ops(op), funcs)


def window_ints(op, name: str, rank: int) -> list[int]:
    """A reduce_window / select_and_scatter int array attribute (1 per dim when absent)."""
    return [int(d) for d in ir.DenseI64ArrayAttr(op.attributes[name])] if name in op.attributes else [1] * rank


def window_padding(op, rank: int) -> tuple[list[int], list[int]]:
    """(low, high) edge padding per dim (0 when absent)."""
    if "padding" not in op.attributes:
        return [0] * rank, [0] * rank
    flat = [int(v) for v in ir.DenseIntElementsAttr(op.attributes["padding"])]
    return flat[0::2], flat[1::2]


class _Window:
    """A reduce_window's geometry: its operands and inits, shapes, window attributes, and the
    operand's shape once padded (base dilation's holes included)."""

    def __init__(self, op):
        n = len(op.results)
        self.xs, self.inits = list(op.operands[:n]), list(op.operands[n:])
        self.shape = list(ir.RankedTensorType(op.operands[0].type).shape)
        self.out = list(ir.RankedTensorType(op.results[0].type).shape)
        rank = self.rank = len(self.shape)
        self.window, self.strides = window_ints(op, "window_dimensions", rank), window_ints(op, "window_strides", rank)
        self.dilations = window_ints(op, "window_dilations", rank)
        self.low, self.high = window_padding(op, rank)
        self.holes = [b - 1 for b in window_ints(op, "base_dilations", rank)]   # holes between elements
        self.padded = [(s - 1) * (h + 1) + 1 + a + b if s else a + b
                       for s, h, a, b in zip(self.shape, self.holes, self.low, self.high)]
        self.pads = any(self.low + self.high + self.holes)

    def padded_operands(self) -> list:
        """The operands padded with their inits (at the insertion point), or as they are."""
        if not self.pads:
            return self.xs
        arrays = ir.DenseI64ArrayAttr.get
        return [create("stablehlo.pad", ir.RankedTensorType.get(self.padded, ir.RankedTensorType(x.type).element_type),
                       [x, init], {"edge_padding_low": arrays(self.low), "edge_padding_high": arrays(self.high),
                                   "interior_padding": arrays(self.holes)}) for x, init in zip(self.xs, self.inits)]

    def in_bounds(self) -> ir.Value | None:
        """i1 [padded shape], true on the operand's elements (None: no padding, no holes)."""
        return _in_bounds(self.shape, self.low, self.high, self.holes, self.padded) if self.pads else None


def _write_out(op, funcs: dict) -> None:
    g = _Window(op)
    inits, out, window, strides, dilations = g.inits, g.out, g.window, g.strides, g.dilations
    arrays = ir.DenseI64ArrayAttr.get
    with op.context, op.location, ir.InsertionPoint(op):
        xs = g.padded_operands()
        acc = [create("stablehlo.broadcast_in_dim", r.type, [init], {"broadcast_dimensions": arrays([])})
               for r, init in zip(op.results, inits)]
        valid = g.in_bounds()
        for offset in itertools.product(*(range(w) for w in window)):
            starts = [o * d for o, d in zip(offset, dilations)]
            ends = [s + (m - 1) * st + 1 for s, m, st in zip(starts, out, strides)]
            window_slice = {"start_indices": arrays(starts), "limit_indices": arrays(ends), "strides": arrays(strides)}
            parts = [create("stablehlo.slice", r.type, [x], window_slice) for r, x in zip(op.results, xs)]
            folded = bodies.elementwise(op.regions[0].blocks[0], acc + parts, out, funcs)
            if valid is None:
                acc = folded
                continue
            # XLA skips the padding (the init is no identity of every body): folded where in bounds
            inside = create("stablehlo.slice", ir.RankedTensorType.get(out, ir.IntegerType.get_signless(1)), [valid],
                             window_slice)
            acc = [create("stablehlo.select", a.type, [inside, f, a]) for f, a in zip(folded, acc)]
    for r, v in zip(op.results, acc):
        r.replace_all_uses_with(v)
    op.erase()


def _write_out_by_doubling(op, funcs: dict) -> None:
    """A window of more than MAX_ELEMENTS elements in log2 steps per dim: windows of 2^k
    elements (each the body of two of 2^(k-1), side by side), then the window as the body
    of the powers of two its size is made of, the init folded in last. The body is taken as
    associative, as StableHLO leaves the order of a reduce_window's applications to the
    implementation (XLA:CPU goes element by element: results differ by rounding only).
    Padding and base dilation's holes are skipped: a side that holds none of the operand's
    elements gives the other side as it is."""
    g = _Window(op)
    inits, out, rank, window, strides, dilations, padded = g.inits, g.out, g.rank, g.window, g.strides, \
        g.dilations, g.padded
    arrays = ir.DenseI64ArrayAttr.get
    body = op.regions[0].blocks[0]

    def cut(v, dim, start, length):
        t = ir.RankedTensorType(v.type)
        dims = list(t.shape)
        starts, limits = [0] * rank, list(dims)
        starts[dim], limits[dim], dims[dim] = start, start + length, length
        return create("stablehlo.slice", ir.RankedTensorType.get(dims, t.element_type), [v], {
            "start_indices": arrays(starts), "limit_indices": arrays(limits), "strides": arrays([1] * rank)})

    def combine(a, b):   # (values, mask or None) of two pieces of the same shape
        (va, ma), (vb, mb) = a, b
        dims = list(ir.RankedTensorType(va[0].type).shape)
        both = bodies.elementwise(body, list(va) + list(vb), dims, funcs)
        if ma is None:
            return both, None
        every = create("stablehlo.and", ma.type, [ma, mb])
        pick = [create("stablehlo.select", x.type, [ma, x, y]) for x, y in zip(va, vb)]
        return ([create("stablehlo.select", f.type, [every, f, p]) for f, p in zip(both, pick)],
                create("stablehlo.or", ma.type, [ma, mb]))

    def cut_piece(piece, dim, start, length):
        values, mask = piece
        return [cut(v, dim, start, length) for v in values], (cut(mask, dim, start, length) if mask is not None else None)

    with op.context, op.location, ir.InsertionPoint(op):
        piece = (g.padded_operands(), g.in_bounds())
        for d in range(rank):
            if window[d] == 1:
                continue
            size = padded[d] - (window[d] - 1) * dilations[d]   # windows at every position along d
            powers, p, span = [piece], piece, 1   # powers[k]: windows of 2^k elements
            while 2 * span <= window[d]:
                length = ir.RankedTensorType(p[0][0].type).shape[d] - span * dilations[d]
                p = combine(cut_piece(p, d, 0, length), cut_piece(p, d, span * dilations[d], length))
                powers.append(p)
                span *= 2
            total, offset = None, 0
            for k in reversed(range(len(powers))):
                if window[d] >> k & 1:
                    part = cut_piece(powers[k], d, offset * dilations[d], size)
                    total = part if total is None else combine(total, part)
                    offset += 1 << k
            piece = total
        values, mask = piece
        full = list(ir.RankedTensorType(values[0].type).shape)
        if full != out or strides != [1] * rank:
            take = {"start_indices": arrays([0] * rank), "limit_indices": arrays([(o - 1) * s + 1 for o, s in zip(out, strides)]),
                    "strides": arrays(strides)}
            values = [create("stablehlo.slice", r.type, [v], take) for r, v in zip(op.results, values)]
            if mask is not None:
                mask = create("stablehlo.slice", ir.RankedTensorType.get(out, ir.IntegerType.get_signless(1)),
                              [mask], take)
        start = [create("stablehlo.broadcast_in_dim", r.type, [init], {"broadcast_dimensions": arrays([])})
                 for r, init in zip(op.results, inits)]
        folded = bodies.elementwise(body, start + values, out, funcs)
        if mask is not None:   # a window of padding only gives the init
            folded = [create("stablehlo.select", f.type, [mask, f, s]) for f, s in zip(folded, start)]
    for r, v in zip(op.results, folded):
        r.replace_all_uses_with(v)
    op.erase()


def _in_bounds(shape: list, low: list, high: list, holes: list, padded: list) -> ir.Value:
    """i1 [padded shape]: true on the operand's elements, false on its padding and holes."""
    i1 = ir.IntegerType.get_signless(1)
    t = ir.RankedTensorType.get(shape, i1)
    ones = create("stablehlo.constant", t, [], {"value": ir.DenseElementsAttr.get_splat(t, ir.IntegerAttr.get(i1, 1))})
    scalar = ir.RankedTensorType.get([], i1)
    off = create("stablehlo.constant", scalar, [], {"value": ir.DenseElementsAttr.get_splat(scalar, ir.IntegerAttr.get(i1, 0))})
    arrays = ir.DenseI64ArrayAttr.get
    return create("stablehlo.pad", ir.RankedTensorType.get(padded, i1),
                   [ones, off], {"edge_padding_low": arrays(low), "edge_padding_high": arrays(high),
                                 "interior_padding": arrays(holes)})
