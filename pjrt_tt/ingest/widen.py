"""float16, int8 and int16 -> the wider types carrying them on the chip, with their semantics.

The chip has no float16, int8 or int16. They are carried by float32 and int32 on the device
while the framework keeps seeing its own types (pjrt_tt/dtypes.py): narrow64.py's rewrite,
the one road that changes a module's element types, rewrites them like the 64-bit types.
This module makes the wider arithmetic give the narrow type's results, as XLA:CPU computes
them (docs/numerics.md):

- int8 / int16 values are kept sign-extended in int32. After every op whose 32-bit result
  can leave the narrow range (add, subtract, multiply, negate, abs, shift_left, divide of
  MIN by -1, power, dot_general, reductions, scatter, collectives, converts from wider or
  unsigned integers, a long iota) the low 8 / 16 bits are sign-extended again (a shift left
  then an arithmetic shift right): two's complement wrap-around, exactly. Reducer bodies
  are left alone (the lowering reads them) and the reduction's results are wrapped: add and
  multiply are exact modulo 2^8 / 2^16 whichever width they run in. Ops that cannot leave
  the range (max, min, compare, select, clamp, remainder, sign, bit ops of sign-extended
  values, data movement) need nothing. A logical shift right, popcnt and
  count_leading_zeros read the narrow bit pattern: their operand is masked first.
- float -> int8 / int16 converts saturate (XLA:CPU: +-inf and values beyond the range give
  the type's extremes, NaN gives 0): the int32 convert's result is clamped.
- Bitcasts (`_split_width`): between int8 and uint8 (int16 and uint16) it is the
  wrap-around convert; others from or to these types, and those between widths (f32 ->
  4 x uint8, 2 x bf16 -> f32), take the bits apart or put them together in uint32 integer
  ops; a float16's bits are computed from its float32 carrier (exactly, subnormals, inf and
  NaN payloads included), and E8M0's from its carrier's exponent field. Other float8 bitcasts
  are refused (UNIMPLEMENTED naming the op and its line).
- float16 computes in float32 and is rounded to float16 where it leaves float16: when
  downloaded, and at every convert to float16 (its result) or from a computed float16 value
  (its operand), with float8's rounding below (reduce_precision (5, 10) would flush float16's
  subnormals, which XLA:CPU's convert keeps). No rounding after other ops: it
  would cost about ten integer ops per op, and results already stay within about a float16
  ulp of XLA:CPU's and nearer the exact value (tests/benchmarks/float16.py); a value beyond
  float16's range inside a program stays finite until then.
- float8 (e4m3fn, e5m2 and the other flavours ml_dtypes knows) computes in float32 too, but is
  rounded after every op that computes a float8 result (a convert into float8 included), not
  only at converts: a float8 ulp is 2^-3 or 2^-2 of the value, and XLA:CPU rounds each op's
  result. The rounding (`_round_float`) works on the float32 bit pattern in integer ops, to
  nearest even with the type's subnormals (reduce_precision flushes them); beyond the largest
  finite value it gives +-inf (e5m2, e4m3, e3m4) or NaN (the types without an infinity), as
  XLA:CPU does. Ops that only move or pick values (reshape, slice, select, max...) are exact.

`plan` reads the module while it still has the narrow types; `apply` edits it after the
rewrite made them 32-bit.
"""
from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np

from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from pjrt_tt.dtypes import BY_MLIR, FLOAT8, INT_RANGE
from pjrt_tt.errors import Unimplemented
from pjrt_tt.ingest.attributes import constant_array, describe_location, splat_value
from pjrt_tt.ingest.mlir_compat import defining_op

# marks a convert to float16 / float8 of a value that is one already (a bitcast's): not rounded
EXACT = "pjrt_tt.exact"
E8M0 = "f8E8M0FNU"   # MX scales: powers of two only, unsigned (a negative value is NaN)
WIDENED = {"f16": "f32", "i8": "i32", "i16": "i32", "i4": "i32", "ui4": "i32",
           **{name: "f32" for name in FLOAT8}}   # the type the chip computes each in
_BITS = {"i8": 8, "i16": 16, "i4": 4, "ui4": 4}
_ZERO_EXTENDED = {"ui4"}   # kept in int32 as its value, 0 .. 2^bits - 1: wrapped by a mask
_UNSIGNED = {"i8": "ui8", "i16": "ui16", "i4": "ui4"}

# ops with a reducer / comparator body the lowering reads: their bodies get no wraps
_BODIED = {"stablehlo.reduce", "stablehlo.reduce_window", "stablehlo.scatter",
           "stablehlo.select_and_scatter", "stablehlo.all_reduce", "stablehlo.reduce_scatter",
           "stablehlo.sort"}
# integer ops whose 32-bit result can leave the int8 / int16 range
_WRAP = {"stablehlo.add", "stablehlo.subtract", "stablehlo.multiply", "stablehlo.negate",
         "stablehlo.abs", "stablehlo.shift_left", "stablehlo.shift_right_logical",
         "stablehlo.divide", "stablehlo.power", "stablehlo.dot_general", "stablehlo.dot",
         "stablehlo.reduce", "stablehlo.reduce_window", "stablehlo.scatter",
         "stablehlo.select_and_scatter", "stablehlo.all_reduce", "stablehlo.reduce_scatter"}
# ops reading the narrow bit pattern of their first operand
_MASK_FIRST = {"stablehlo.shift_right_logical", "stablehlo.popcnt", "stablehlo.count_leading_zeros"}
# reducer bodies that only pick one of their arguments (max, min, argmax's compare and select)
_PICKS = {"stablehlo.maximum", "stablehlo.minimum", "stablehlo.compare", "stablehlo.select",
          "stablehlo.and", "stablehlo.or", "stablehlo.not", "stablehlo.constant", "stablehlo.return"}
# ops whose float8 results are values of their float8 operands (or constants): not rounded
_EXACT8 = {"stablehlo.constant", "stablehlo.broadcast_in_dim", "stablehlo.reshape", "stablehlo.transpose",
           "stablehlo.slice", "stablehlo.reverse", "stablehlo.concatenate", "stablehlo.select",
           "stablehlo.pad", "stablehlo.dynamic_slice", "stablehlo.dynamic_update_slice", "stablehlo.gather",
           "stablehlo.maximum", "stablehlo.minimum", "stablehlo.clamp", "stablehlo.negate", "stablehlo.abs",
           "stablehlo.sign", "mhlo.copy", "stablehlo.optimization_barrier", "stablehlo.all_gather",
           "stablehlo.all_to_all", "stablehlo.collective_permute", "stablehlo.while", "stablehlo.if",
           "stablehlo.case", "func.call", "stablehlo.sort", "stablehlo.get_tuple_element", "stablehlo.tuple"}
# of those, the ones whose result may be negative: no value of an unsigned float8 (E8M0)
_SIGNED_RESULT = {"stablehlo.negate"}


@dataclasses.dataclass
class _Edit:
    # "wrap" / "saturate" / "round" (to float16) the value; "mask" / "sign operand" / "round operand": op's
    # operand 0; "clz": adjust the count; "sentinel": replace op's init operand `index`
    kind: str
    op: ir.Operation     # the op defining / reading the value
    value: ir.Value      # the result to edit, or the operand
    bits: int
    before: ir.Operation   # the op the edit is inserted before
    index: int = 0         # "sentinel": the operand of `op` to replace
    unsigned: bool = False   # "wrap" / "saturate": a zero-extended type (uint4)
    fmt: str = ""          # "round8": the float8 type rounded into


def plan(module: ir.Module) -> list:
    """The edits the module's int8 / int16 values need once they are int32 (read before the
    rewrite); refuses bitcasts the carrier cannot do, naming the op. A same-width integer
    bitcast becomes the convert it equals here."""
    bitcasts = []
    module.operation.walk(lambda op: (bitcasts.append(op) if op.name == "stablehlo.bitcast_convert"
                                      else None) or ir.WalkResult.ADVANCE)
    for op in bitcasts:
        for same_width in _split_width(op):
            _bitcast(same_width)
    edits: list[_Edit] = []
    for func in module.body.operations:
        for region in func.operation.regions:
            _plan_region(region, func.operation.name, edits)
    return edits


def _plan_region(region, owner: str, edits: list) -> None:
    for block in region.blocks:
        ops = [op.operation for op in block.operations]
        for op, after in zip(ops, ops[1:] + [None]):
            for inner in op.regions:
                _plan_region(inner, op.name, edits)
            if owner in _BODIED:
                continue
            _plan_op(op, after, edits)


def _plan_op(op, after, edits: list) -> None:
    name = op.name
    for r in op.results:
        etype = _etype(r.type)
        if etype in FLOAT8 and name not in _EXACT8 and EXACT not in op.attributes and not (
                name == "stablehlo.convert" and _etype(op.operands[0].type) == etype) or (
                etype == E8M0 and name in _SIGNED_RESULT):
            edits.append(_Edit("round8", op, r, 0, after, fmt=_etype(r.type)))
    if name == "stablehlo.convert":
        src, dst = _etype(op.operands[0].type), _etype(op.results[0].type)
        if dst == "f16" and src != "f16" and EXACT not in op.attributes:
            edits.append(_Edit("round", op, op.results[0], 0, after))
        elif src == "f16" and dst != "f16" and _computed(op.operands[0]):
            edits.append(_Edit("round operand", op, op.operands[0], 0, op))
    if name == "stablehlo.shift_right_arithmetic" and _etype(op.operands[0].type) in _ZERO_EXTENDED:
        # XLA reads the top bit of an unsigned nibble as its sign here (uint4 8 >> 1 is 12)
        edits.append(_Edit("sign operand", op, op.operands[0], _BITS[_etype(op.operands[0].type)], op))
    if name in _MASK_FIRST and op.operands and _etype(op.operands[0].type) in _BITS:
        bits = _BITS[_etype(op.operands[0].type)]
        edits.append(_Edit("mask", op, op.operands[0], bits, op))
        if name == "stablehlo.count_leading_zeros":
            edits.append(_Edit("clz", op, op.results[0], bits, after))
    picks = _sentinels(op, after, edits)
    for r in op.results:
        etype = _etype(r.type)
        if etype not in _BITS:
            continue
        bits = _BITS[etype]
        unsigned = etype in _ZERO_EXTENDED
        if picks:   # a picked element or the init, which saturating gives back as it was
            edits.append(_Edit("saturate", op, r, bits, after, unsigned=unsigned))
        elif name == "stablehlo.convert":
            src = _etype(op.operands[0].type)
            if src in ("f16", "bf16", "f32", "f64"):
                edits.append(_Edit("saturate", op, r, bits, after, unsigned=unsigned))
            elif src not in INT_RANGE or not _fits(INT_RANGE[src], INT_RANGE[etype]):
                edits.append(_Edit("wrap", op, r, bits, after, unsigned=unsigned))
        elif name == "stablehlo.iota":
            size = ir.RankedTensorType(r.type).shape[ir.IntegerAttr(op.attributes["iota_dimension"]).value]
            if size > INT_RANGE[etype][1] + 1:
                edits.append(_Edit("wrap", op, r, bits, after, unsigned=unsigned))
        elif name in _WRAP or (unsigned and name in ("stablehlo.not", "stablehlo.shift_right_arithmetic")):
            edits.append(_Edit("wrap", op, r, bits, after, unsigned=unsigned))


def _sentinels(op, after, edits: list) -> bool:
    """A max / min / argmax reduction of int8 / int16 starts from the type's minimum /
    maximum, which the lowering takes as the identity only as int32's: a reduction whose body
    only picks among its arguments gets int32's extreme instead (an empty one gives it back,
    and the saturation its result gets makes it the narrow extreme again). True for such
    a reduction (its results are then saturated, not wrapped)."""
    if op.name not in ("stablehlo.reduce", "stablehlo.reduce_window"):
        return False
    if not {o.operation.name for o in op.regions[0].blocks[0].operations} <= _PICKS:
        return False
    n = len(op.results)
    for i in range(n, 2 * n):
        init = op.operands[i]
        etype = _etype(init.type)
        owner = defining_op(init)
        while owner is not None and owner.name in ("stablehlo.broadcast_in_dim", "stablehlo.reshape"):
            owner = defining_op(owner.operands[0])
        if etype in _BITS and owner is not None and owner.name == "stablehlo.constant":
            value = splat_value(owner.attributes["value"])
            lo, hi = INT_RANGE[etype]
            if value in (lo, hi):
                edits.append(_Edit("sentinel", op, init, -(2**31) if value == lo else 2**31 - 1, op, i))
    return True


def _computed(v: ir.Value) -> bool:
    """Whether a float16 value may hold more than float16 precision here (computed in float32):
    not an argument, a constant, a convert's result (rounded already) or a bitcast's (a
    float16 bit pattern: exact, NaN payloads included)."""
    owner = defining_op(v)
    while owner is not None and owner.name in _KEEPS_FLOAT16:
        owner = defining_op(owner.operands[0])
    return owner is not None and owner.name not in ("stablehlo.constant", "stablehlo.convert",
                                                    "stablehlo.bitcast_convert")


# ops whose float16 result is exactly a float16 operand's value moved (or its sign changed)
_KEEPS_FLOAT16 = {"stablehlo.reshape", "stablehlo.transpose", "stablehlo.broadcast_in_dim", "stablehlo.slice",
                  "stablehlo.reverse", "stablehlo.negate", "stablehlo.abs", "mhlo.copy"}


def _fits(inner, outer) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


_WIDTH = {"i4": 4, "ui4": 4, "i8": 8, "ui8": 8, "i16": 16, "ui16": 16, "f16": 16, "bf16": 16, "i32": 32, "ui32": 32,
          "f32": 32, E8M0: 8}
_UNSIGNED_OF = {4: "ui4", 8: "ui8", 16: "ui16", 32: "ui32"}


def _split_width(op) -> list:
    """A bitcast the carriers cannot do as one (between widths: f32 -> [..., 4] x ui8,
    [..., 2] x bf16 -> f32; from or to int8 / int16 / float16, carried wider) as the bits
    in uint32 integer ops: each value's bits taken out (a same-width bitcast, or float16's /
    E8M0's computed from its float32 carrier), split (shift right, mask) or joined (shift left, or:
    the last dim's first element lowest, as XLA does) and put back. Returns the same-width
    bitcasts it leaves for `_bitcast` (the op itself when the chip's bitcast does it, or a
    type is 64-bit, boolean or a float8 other than E8M0: narrow64 refuses the 64-bit ones,
    `_bitcast` the rest)."""
    src, dst = _etype(op.operands[0].type), _etype(op.results[0].type)
    if src not in _WIDTH or dst not in _WIDTH:
        return [op]
    ws, wd = _WIDTH[src], _WIDTH[dst]
    carried = {src, dst} & {"i4", "ui4", "i8", "i16", "f16", E8M0}
    if ws == wd and (not carried or (src, dst) in _UNSIGNED.items() or (dst, src) in _UNSIGNED.items()):
        return [op]
    b = _Bits()
    with op.context, op.location, ir.InsertionPoint(op):
        x = op.operands[0]
        in_shape = list(ir.RankedTensorType(x.type).shape)
        out_shape = list(ir.RankedTensorType(op.results[0].type).shape)
        if ws == wd:
            y = b.from_bits(b.bits(x, src, in_shape), dst, out_shape)
        elif ws > wd:   # [..] -> [.., r]: part k is bits [wd * k, wd * (k + 1))
            u, parts = b.bits(x, src, in_shape), []
            for k in range(ws // wd):
                v = b.op("stablehlo.shift_right_logical", [u, b.const(in_shape, wd * k)]) if k else u
                v = b.from_bits(b.op("stablehlo.and", [v, b.const(in_shape, (1 << wd) - 1)]), dst, in_shape)
                parts.append(b.op("stablehlo.reshape", [v], in_shape + [1], dst))
            y = b.op("stablehlo.concatenate", parts, out_shape, dst,
                     {"dimension": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), len(in_shape))})
        else:           # [.., r] -> [..]: part k shifted left by ws * k, or'ed together
            u = None
            for k in range(wd // ws):
                v = b.op("stablehlo.slice", [x], out_shape + [1], src, {
                    "start_indices": ir.DenseI64ArrayAttr.get([0] * len(out_shape) + [k]),
                    "limit_indices": ir.DenseI64ArrayAttr.get(out_shape + [k + 1]),
                    "strides": ir.DenseI64ArrayAttr.get([1] * (len(out_shape) + 1))})
                v = b.bits(b.op("stablehlo.reshape", [v], out_shape, src), src, out_shape)
                v = b.op("stablehlo.shift_left", [v, b.const(out_shape, ws * k)]) if k else v
                u = v if u is None else b.op("stablehlo.or", [u, v])
            y = b.from_bits(u, dst, out_shape)
    op.results[0].replace_all_uses_with(y)
    op.erase()
    return b.bitcasts


class _Bits:
    """Builds the uint32 bit arithmetic of `_split_width` before `op`."""

    def __init__(self):
        self.bitcasts = []   # the same-width bitcasts made (int8 <-> uint8... become converts)

    def op(self, name, operands, shape=None, etype=None, attrs=None) -> ir.Value:
        """`name` of `operands`, its result of shape and etype (default: the first operand's)."""
        shape = list(ir.RankedTensorType(operands[0].type).shape) if shape is None else shape
        etype = etype or _etype(operands[0].type)
        new = ir.Operation.create(name, results=[ir.RankedTensorType.get(shape, _element(etype))],
                                  operands=list(operands), attributes=attrs or {})
        if name == "stablehlo.bitcast_convert":
            self.bitcasts.append(new)
        return new.results[0]

    def const(self, shape, value, etype="ui32") -> ir.Value:
        t = ir.RankedTensorType.get(shape, _element(etype))
        attr = ir.FloatAttr.get(t.element_type, value) if etype == "f32" else ir.IntegerAttr.get(t.element_type, value)
        return self.op("stablehlo.constant", [], shape, etype, {"value": ir.DenseElementsAttr.get_splat(t, attr)})

    def cmp(self, x, direction: str, value: int) -> ir.Value:
        shape = list(ir.RankedTensorType(x.type).shape)
        return self.op("stablehlo.compare", [x, self.const(shape, value)], shape, "i1", {
            "comparison_direction": ir.Attribute.parse(f"#stablehlo<comparison_direction {direction}>"),
            "compare_type": ir.Attribute.parse("#stablehlo<comparison_type UNSIGNED>")})

    def select(self, p, a, b) -> ir.Value:
        return self.op("stablehlo.select", [p, a, b], list(ir.RankedTensorType(a.type).shape),
                       _etype(a.type))

    def field(self, u, shift: int, mask: int) -> ir.Value:
        shape = list(ir.RankedTensorType(u.type).shape)
        v = self.op("stablehlo.shift_right_logical", [u, self.const(shape, shift)]) if shift else u
        return self.op("stablehlo.and", [v, self.const(shape, mask)])

    def bits(self, x, etype: str, shape) -> ir.Value:
        """x's bit pattern, zero-extended to uint32."""
        if etype == "f16":
            return self._f16_bits(self.op("stablehlo.convert", [x], shape, "f32"), shape)
        if etype == E8M0:   # the float32 carrier's exponent field (2^-127: 0, NaN: 0xff)
            u = self.op("stablehlo.bitcast_convert", [self.op("stablehlo.convert", [x], shape, "f32")], shape, "ui32")
            return self.field(u, 23, 0xFF)
        w = _WIDTH[etype]
        u = x if etype == _UNSIGNED_OF[w] else self.op("stablehlo.bitcast_convert", [x], shape, _UNSIGNED_OF[w])
        return u if w == 32 else self.op("stablehlo.convert", [u], shape, "ui32")

    def from_bits(self, u, etype: str, shape) -> ir.Value:
        """The value of etype whose bit pattern is u's low bits."""
        if etype in ("f16", E8M0):   # (a value of the type already: the convert must not round it again)
            value = self._f16_value(u, shape) if etype == "f16" else self._e8m0_value(u, shape)
            exact = self.op("stablehlo.convert", [value], shape, etype)
            exact.owner.attributes[EXACT] = ir.UnitAttr.get()
            return exact
        w = _WIDTH[etype]
        v = u if w == 32 else self.op("stablehlo.convert", [u], shape, _UNSIGNED_OF[w])
        return v if etype == _UNSIGNED_OF[w] else self.op("stablehlo.bitcast_convert", [v], shape, etype)

    def _f16_bits(self, f, shape) -> ir.Value:
        """The float16 bit pattern of a float32 holding a float16 value: sign, exponent
        rebiased (127 -> 15) and the top 10 mantissa bits; subnormals (float32 exponents
        103..112) shifted in with their leading one; zero; inf; NaN with its top 10 payload
        bits (a float16 NaN's own: bitcasts round-trip), the quiet NaN where those are 0."""
        u = self.op("stablehlo.bitcast_convert", [f], shape, "ui32")
        sign, e, m = self.field(u, 16, 0x8000), self.field(u, 23, 0xFF), self.field(u, 0, 0x7FFFFF)
        orr = lambda a, b: self.op("stablehlo.or", [a, b])  # noqa: E731
        normal = orr(sign, orr(self.op("stablehlo.shift_left", [self.op("stablehlo.subtract",
                                                                          [e, self.const(shape, 112)]),
                                                                 self.const(shape, 10)]),
                               self.op("stablehlo.shift_right_logical", [m, self.const(shape, 13)])))
        shift = self.op("stablehlo.subtract", [self.const(shape, 126), self.select(self.cmp(e, "LT", 103),
                                                                                   self.const(shape, 103), e)])
        sub = orr(sign, self.op("stablehlo.shift_right_logical", [orr(m, self.const(shape, 0x800000)),
                                                                  self.select(self.cmp(shift, "GT", 31),
                                                                              self.const(shape, 31), shift)]))
        payload = self.op("stablehlo.shift_right_logical", [m, self.const(shape, 13)])
        nan = self.select(self.cmp(payload, "EQ", 0), self.const(shape, 0x7E00), orr(self.const(shape, 0x7C00), payload))
        special = orr(sign, self.select(self.cmp(m, "EQ", 0), self.const(shape, 0x7C00), nan))
        return self.select(self.cmp(e, "EQ", 255), special,
                           self.select(self.cmp(e, "GE", 113), normal,
                                       self.select(self.cmp(e, "GE", 103), sub, sign)))

    def _e8m0_value(self, u, shape) -> ir.Value:
        """The float32 value of the E8M0 bit pattern in u's low 8 bits: 2^(u - 127); u = 0 is
        2^-127 (a float32 subnormal), u = 255 NaN."""
        e = self.op("stablehlo.and", [u, self.const(shape, 0xFF)])
        bits = self.op("stablehlo.shift_left", [e, self.const(shape, 23)])
        bits = self.select(self.cmp(e, "EQ", 0), self.const(shape, 0x00400000), bits)
        bits = self.select(self.cmp(e, "EQ", 0xFF), self.const(shape, 0x7FC00000), bits)
        return self.op("stablehlo.bitcast_convert", [bits], shape, "f32")

    def _f16_value(self, h, shape) -> ir.Value:
        """The float32 value of the float16 bit pattern in h's low 16 bits (subnormals are
        m * 2^-24, normal in float32)."""
        sign, e, m = self.field(h, 15, 1), self.field(h, 10, 0x1F), self.field(h, 0, 0x3FF)
        shl = lambda v, n: self.op("stablehlo.shift_left", [v, self.const(shape, n)])  # noqa: E731
        orr = lambda a, b: self.op("stablehlo.or", [a, b])  # noqa: E731
        exp = self.select(self.cmp(e, "EQ", 31), self.const(shape, 255), self.op("stablehlo.add", [e, self.const(shape, 112)]))
        bits = orr(shl(sign, 31), orr(shl(exp, 23), shl(m, 13)))
        value = self.op("stablehlo.bitcast_convert", [bits], shape, "f32")
        tiny = self.op("stablehlo.multiply", [self.op("stablehlo.convert", [m], shape, "f32"),
                                              self.const(shape, 2.0 ** -24, "f32")])
        tiny = self.select(self.cmp(sign, "EQ", 1), self.op("stablehlo.negate", [tiny]), tiny)
        return self.select(self.cmp(e, "EQ", 0), tiny, value)


def _element(etype: str) -> ir.Type:
    floats = {"f32": ir.F32Type, "bf16": ir.BF16Type, "f16": ir.F16Type}
    if etype in floats:
        return floats[etype].get()
    if etype in FLOAT8:
        return ir.Type.parse(etype)
    bits = int(etype.lstrip("ui"))
    return ir.IntegerType.get_unsigned(bits) if etype.startswith("ui") else ir.IntegerType.get_signless(bits)


def _bitcast(op):
    """A same-width bitcast from or to int8 / int16 (what `_split_width` leaves): the convert
    it equals (int8 <-> uint8, int16 <-> uint16: two's complement both ways); one from or to
    a float8 other than E8M0 (carried as float32, its bits not computed) is refused. Returns the op now
    standing in its place (None: none is involved)."""
    src, dst = _etype(op.operands[0].type), _etype(op.results[0].type)
    if src not in WIDENED and dst not in WIDENED:
        return None
    same_shape = ir.RankedTensorType(op.operands[0].type).shape == ir.RankedTensorType(op.results[0].type).shape
    if same_shape and (_UNSIGNED.get(src) == dst or _UNSIGNED.get(dst) == src):
        with op.context, op.location, ir.InsertionPoint(op):
            new = stablehlo.ConvertOp(op.results[0].type, op.operands[0]).operation
        op.results[0].replace_all_uses_with(new.results[0])
        op.erase()
        return new
    where = describe_location(op.location)
    what = "; ".join(f"{t} as {WIDENED[t]}" for t in dict.fromkeys((src, dst)) if t in WIDENED)
    raise Unimplemented(
        f"`stablehlo.bitcast_convert`{' at ' + where if where else ''} reinterprets the bits of "
        f"{src} as {dst}: the chip carries {what}, and pjrt-tt computes the bits of float16, int8 and "
        f"int16 values only; convert the values (astype) instead of bitcasting them")


def apply(edits: list) -> None:
    """Inserts the wraps, clamps and masks `plan` found, now that the values are int32."""
    for e in edits:
        with e.op.context, ir.Location.unknown():
            if e.kind == "sentinel":   # (bits: int32's extreme)
                with ir.InsertionPoint(e.before):
                    e.op.operands[e.index] = _splat(e.value, e.bits)
                continue
            # the operand as it is now (an edit of its definer, e.g. a saturation, went first)
            if e.kind == "round operand":
                with ir.InsertionPoint(e.before):
                    e.op.operands[0] = _round_float(e.op.operands[0], "f16")[0]
                continue
            if e.kind == "round8":
                with ir.InsertionPoint(e.before):
                    out, first = _round_float(e.value, e.fmt)
                e.value.replace_all_uses_with(out)
                if first is not None:
                    first.operands[0] = e.value
                continue
            if e.kind == "mask":
                x = e.op.operands[0]
                with ir.InsertionPoint(e.before):
                    e.op.operands[0] = stablehlo.AndOp(x, _splat(x, (1 << e.bits) - 1)).result
                continue
            if e.kind == "sign operand":
                x = e.op.operands[0]
                with ir.InsertionPoint(e.before):
                    shift = _splat(x, 32 - e.bits)
                    e.op.operands[0] = stablehlo.ShiftRightArithmeticOp(stablehlo.ShiftLeftOp(x, shift).result,
                                                                        shift).result
                continue
            with ir.InsertionPoint(e.before):   # (the op after the value's: no terminator has results)
                v = e.value
                if e.kind == "wrap" and e.unsigned:   # zero-extended: the low bits
                    first = stablehlo.AndOp(v, _splat(v, (1 << e.bits) - 1))
                    out = first.result
                elif e.kind == "wrap":   # sign-extended: the low bits' sign copied up
                    shift = _splat(v, 32 - e.bits)
                    first = stablehlo.ShiftLeftOp(v, shift)
                    out = stablehlo.ShiftRightArithmeticOp(first.result, shift).result
                elif e.kind == "round":
                    out, first = _round_float(v, "f16")
                    if first is None:   # (a constant, rounded here)
                        v.replace_all_uses_with(out)
                        continue
                elif e.kind == "saturate":
                    lo, hi = (0, (1 << e.bits) - 1) if e.unsigned else (-(1 << (e.bits - 1)), (1 << (e.bits - 1)) - 1)
                    first = stablehlo.MaxOp(v, _splat(v, lo))
                    out = stablehlo.MinOp(first.result, _splat(v, hi)).result
                else:   # clz: counted over 32 bits of the masked value
                    first = stablehlo.SubtractOp(v, _splat(v, 32 - e.bits))
                    out = first.result
            v.replace_all_uses_with(out)
            (first if isinstance(first, ir.Operation) else first.operation).operands[0] = v


def _splat(like: ir.Value, n: int) -> ir.Value:
    rt = ir.RankedTensorType(like.type)
    attr = ir.DenseElementsAttr.get_splat(rt, ir.IntegerAttr.get(rt.element_type, n))
    return stablehlo.ConstantOp(attr).result


def _f32_bits(x: float) -> int:
    return int(np.array(x, np.float32).view(np.uint32))


def _round_float(v: ir.Value, fmt: str):
    """`v` (float32) rounded to the float16 / float8 type `fmt` (E8M0: `_round_e8m0`): to nearest, ties to even, in int32 ops
    on the bit pattern. A value in fmt's normal range rounds its mantissa at bit 23 - m (the
    carry moves into the exponent); one below it keeps n = the significand (implicit bit
    included) shifted right by as many more bits as its exponent is short, rounded the same
    way, and becomes n * 2^(emin - m), exactly (n has at most m + 1 bits). Returns (the
    rounded value, the first op, whose operand 0 is `v`; None when `v` is a constant behind
    value-keeping converts, rounded here so that it stays a constant: a splat the lowering
    folds, no device ops)."""
    owner = defining_op(v)
    while owner is not None and owner.name == "stablehlo.convert" and _exact_convert(owner):
        owner = defining_op(owner.operands[0])
    if owner is not None and owner.name == "stablehlo.constant":
        data = constant_array(owner.attributes["value"], np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            data = np.ascontiguousarray(data.astype(BY_MLIR[fmt].numpy).astype(np.float32))
        return stablehlo.ConstantOp(ir.DenseElementsAttr.get(data, type=v.type)).result, None
    if fmt == E8M0:
        return _round_e8m0(v)
    info = ml_dtypes.finfo(BY_MLIR[fmt].numpy)
    m, emin = int(info.nmant), int(info.minexp)
    has_inf = bool(np.isinf(np.array(np.inf, np.float32).astype(BY_MLIR[fmt].numpy).astype(np.float32)))
    fnuz = fmt.endswith("FNUZ")
    f32 = ir.RankedTensorType(v.type)
    i32t = ir.RankedTensorType.get(f32.shape, ir.IntegerType.get_signless(32))
    first = stablehlo.BitcastConvertOp(i32t, v)
    b = first.result

    def k(n):
        return _splat(b, n - (1 << 32) if n >= 1 << 31 else n)

    def cmp(x, y, direction):
        return stablehlo.CompareOp(x, y, stablehlo.ComparisonDirectionAttr.get(direction)).result

    a = stablehlo.AndOp(b, k(0x7FFFFFFF)).result
    sign = stablehlo.AndOp(b, k(0x80000000)).result
    cut = 23 - m
    lsb = stablehlo.AndOp(stablehlo.ShiftRightLogicalOp(a, k(cut)).result, k(1)).result
    normal = stablehlo.AddOp(stablehlo.AddOp(a, lsb).result, k((1 << (cut - 1)) - 1)).result
    normal = stablehlo.AndOp(normal, k((0xFFFFFFFF << cut) & 0xFFFFFFFF)).result
    exponent = stablehlo.ShiftRightLogicalOp(a, k(23)).result
    first_normal = 127 + emin   # fmt's smallest normal exponent, biased as float32's
    c = stablehlo.SubtractOp(k(cut + first_normal), exponent).result
    c = stablehlo.ClampOp(k(cut), c, k(31)).result
    s = stablehlo.OrOp(stablehlo.AndOp(a, k(0x7FFFFF)).result, k(0x800000)).result
    slsb = stablehlo.AndOp(stablehlo.ShiftRightLogicalOp(s, c).result, k(1)).result
    half = stablehlo.ShiftLeftOp(k(1), stablehlo.SubtractOp(c, k(1)).result).result
    n = stablehlo.AddOp(stablehlo.AddOp(s, slsb).result, stablehlo.SubtractOp(half, k(1)).result).result
    n = stablehlo.ShiftRightLogicalOp(n, c).result
    quantum = ir.DenseElementsAttr.get_splat(f32, ir.FloatAttr.get(ir.F32Type.get(), 2.0 ** (emin - m)))
    sub = stablehlo.MulOp(stablehlo.ConvertOp(f32, n).result, stablehlo.ConstantOp(quantum).result).result
    sub = stablehlo.BitcastConvertOp(i32t, sub).result
    r = stablehlo.SelectOp(cmp(exponent, k(first_normal), "LT"), sub, normal).result
    nan = k(0x7FC00000)
    r = stablehlo.SelectOp(cmp(r, k(_f32_bits(float(info.max))), "GT"), k(0x7F800000) if has_inf else nan, r).result
    # a NaN: float16 keeps its top payload bits, made quiet (XLA:CPU's convert); float8 the one NaN
    quiet = stablehlo.OrOp(stablehlo.AndOp(a, k((0xFFFFFFFF << cut) & 0xFFFFFFFF)).result, k(0x7FC00000)).result \
        if fmt == "f16" else nan
    r = stablehlo.SelectOp(cmp(a, k(0x7F800000), "GT"), quiet, r).result
    if fnuz:   # no -0 and one NaN: a zero is +0, a NaN reads back as float32's +NaN
        sign = stablehlo.SelectOp(cmp(r, k(0), "EQ"), k(0), sign).result
        sign = stablehlo.SelectOp(cmp(r, nan, "EQ"), k(0), sign).result
    r = stablehlo.OrOp(r, sign).result
    return stablehlo.BitcastConvertOp(f32, r).result, first.operation


def _round_e8m0(v: ir.Value):
    """`v` (float32) as XLA:CPU converts it to E8M0: a positive normal value to the power of
    two its mantissa rounds to (half up: 1.5 -> 2, 0.75 -> 1); a positive subnormal to
    2^-127, or to 2^-126 when above 2^-127 (XLA's rule, not nearest: ml_dtypes differs
    there); everything else (zero, negative, inf, NaN, beyond 2^127) to NaN. Returns (the
    value, the first op)."""
    f32 = ir.RankedTensorType(v.type)
    i32t = ir.RankedTensorType.get(f32.shape, ir.IntegerType.get_signless(32))
    first = stablehlo.BitcastConvertOp(i32t, v)
    b = first.result

    def k(n):
        return _splat(b, n)

    def cmp(x, y, direction):
        return stablehlo.CompareOp(x, y, stablehlo.ComparisonDirectionAttr.get(direction)).result

    exponent = stablehlo.ShiftRightLogicalOp(b, k(23)).result   # (the sign bit too: negatives are >= 256)
    mantissa = stablehlo.AndOp(b, k(0x7FFFFF)).result
    half = stablehlo.SelectOp(cmp(exponent, k(0), "EQ"), k(0x400001), k(0x400000)).result
    code = stablehlo.AddOp(exponent, stablehlo.SelectOp(cmp(mantissa, half, "GE"), k(1), k(0)).result).result
    bits = stablehlo.ShiftLeftOp(code, k(23)).result
    bits = stablehlo.SelectOp(cmp(code, k(0), "EQ"), k(0x00400000), bits).result
    nan = stablehlo.OrOp(cmp(b, k(0), "LE"), cmp(code, k(255), "GE")).result   # (<= 0: zero or negative)
    bits = stablehlo.SelectOp(nan, k(0x7FC00000), bits).result
    return stablehlo.BitcastConvertOp(f32, bits).result, first.operation


def _exact_convert(op) -> bool:
    """A convert that keeps every value (into float32 from float32 or bfloat16): the constant
    behind it may be rounded in its place. Not one that truncates or rounds (float -> int,
    float32 -> bfloat16): folding past it would skip that step."""
    return _etype(op.results[0].type) == "f32" and _etype(op.operands[0].type) in ("f32", "bf16")


def _etype(t: ir.Type) -> str:
    return str(ir.RankedTensorType(t).element_type) if isinstance(t, ir.RankedTensorType) else ""
