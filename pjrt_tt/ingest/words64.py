"""64-bit integers computed exactly as (low, high) uint32 word pairs, for the values that
must keep all 64 bits on a chip that has no 64-bit type.

narrow64.py carries a 64-bit integer in 32 bits where it proves every value fits. A random
state cannot: torch_xla seeds `rng_bit_generator` from an int64 scalar, advanced as a 64-bit
linear congruence (seed * 214013 + 2531011) that leaves int32 after a step or two, and whose
high word is half of Philox's key. So the ops that compute a generator's uint64 state are
written here in uint32 ops on word pairs (adds and subtracts with carries, products from
16-bit halves), ending in the bitcast of uint32 words that rng.py reads. A @main argument
only that computation reads becomes its words, uint32 [2, *shape] (low, high planes
leading), which the runtime hands over exactly whatever the value (runtime/buffer.py); one
that other ops also read stays narrowed and is sign- or zero-extended into words.

`Uint32` builds the uint32 ops, for rng.py's generators too.
"""
from __future__ import annotations

import numpy as np
from jaxlib.mlir import ir

from pjrt_tt.ingest.attributes import constant_array
from pjrt_tt.ingest.inline import inline_calls
from pjrt_tt.ingest.mlir_compat import as_operation, create, defining_op, named_attributes, users

_MASK = 2**32 - 1
WORDS_ATTR = "pjrt_tt.words"   # on a @main argument made words: the 64-bit type the framework sees
_WIDE = ("i64", "ui64")
# ops that act on each word alone, their attributes unchanged (operand 0 of select: the predicate)
_PER_WORD = {"stablehlo.reshape", "stablehlo.broadcast_in_dim", "stablehlo.transpose", "stablehlo.slice",
             "stablehlo.reverse", "stablehlo.concatenate", "stablehlo.select", "stablehlo.and",
             "stablehlo.or", "stablehlo.xor", "stablehlo.not", "stablehlo.optimization_barrier"}
_ARITHMETIC = {"stablehlo.constant", "stablehlo.convert", "stablehlo.add", "stablehlo.subtract",
               "stablehlo.multiply", "stablehlo.negate"}


def _etype(t: ir.Type) -> str:
    return str(ir.RankedTensorType(t).element_type)


def _shape(v: ir.Value) -> list[int]:
    return list(ir.RankedTensorType(v.type).shape)


class Uint32:
    """uint32 ops at the insertion point."""

    def __init__(self):
        self.element = ir.IntegerType.get_unsigned(32)

    def type(self, shape) -> ir.Type:
        return ir.RankedTensorType.get(list(shape), self.element)

    def const(self, value: int, shape) -> ir.Value:
        t = self.type(shape)
        return create("stablehlo.constant", t, [], {
            "value": ir.DenseElementsAttr.get_splat(t, ir.IntegerAttr.get(self.element, value & _MASK))})

    def array(self, data: np.ndarray) -> ir.Value:
        return create("stablehlo.constant", self.type(data.shape), [], {"value": ir.DenseElementsAttr.get(
            np.array(data, np.uint32), type=self.element)})   # (a copy: C order, 0-d kept)

    def empty(self, shape) -> ir.Value:
        return self.array(np.zeros(shape, np.uint32))

    def op(self, name: str, *operands: ir.Value) -> ir.Value:
        return create(name, operands[0].type, list(operands))

    def add(self, a, b):
        return self.op("stablehlo.add", a, b)

    def xor(self, a, b):
        return self.op("stablehlo.xor", a, b)

    def scalar(self, value: int, like: ir.Value) -> ir.Value:
        return self.const(value, _shape(like))

    def below(self, a: ir.Value, b: ir.Value) -> ir.Value:
        """1 where a < b (unsigned), else 0."""
        i1 = ir.RankedTensorType.get(_shape(a), ir.IntegerType.get_signless(1))
        less = create("stablehlo.compare", i1, [a, b], {
            "comparison_direction": ir.Attribute.parse("#stablehlo<comparison_direction LT>"),
            "compare_type": ir.Attribute.parse("#stablehlo<comparison_type UNSIGNED>")})
        return create("stablehlo.convert", a.type, [less])

    def carry(self, total: ir.Value, addend: ir.Value) -> ir.Value:
        """1 where total = x + addend wrapped past 2^32 (then total < addend), else 0."""
        return self.below(total, addend)

    def add_with_carry(self, words: list, addend: ir.Value) -> list:
        """(low word first) words + addend, the carry rippling through every word."""
        out = []
        for w in words:
            total = self.add(w, addend)
            out.append(total)
            addend = self.carry(total, addend)
        return out

    def rotate_left(self, v, distance: int):
        return self.op("stablehlo.or", self.op("stablehlo.shift_left", v, self.scalar(distance, v)),
                       self.op("stablehlo.shift_right_logical", v, self.scalar(32 - distance, v)))

    def reshape(self, v, shape):
        return create("stablehlo.reshape", self.type(shape), [v])

    def word(self, words: ir.Value, row: int, col: int, n: int) -> ir.Value:
        """words[row, col] broadcast to a uint32[n] (n = 1: the word as a uint32[1])."""
        one = create("stablehlo.slice", self.type([1, 1]), [words], {
            "start_indices": ir.DenseI64ArrayAttr.get([row, col]),
            "limit_indices": ir.DenseI64ArrayAttr.get([row + 1, col + 1]),
            "strides": ir.DenseI64ArrayAttr.get([1, 1])})
        return create("stablehlo.broadcast_in_dim", self.type([n]), [self.reshape(one, [])],
                      {"broadcast_dimensions": ir.DenseI64ArrayAttr.get([])})

    def iota(self, n: int) -> ir.Value:
        return create("stablehlo.iota", self.type([n]), [], {"iota_dimension": ir.IntegerAttr.get(
            ir.IntegerType.get_signless(64), 0)})

    def concat(self, values: list, dim: int, shape) -> ir.Value:
        return create("stablehlo.concatenate", self.type(shape), values,
                      {"dimension": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), dim)})

    def slice(self, v, limits, starts=None) -> ir.Value:
        starts = starts or [0] * len(limits)
        return create("stablehlo.slice", self.type([b - a for a, b in zip(starts, limits)]), [v], {
            "start_indices": ir.DenseI64ArrayAttr.get(list(starts)),
            "limit_indices": ir.DenseI64ArrayAttr.get(list(limits)),
            "strides": ir.DenseI64ArrayAttr.get([1] * len(limits))})

    def rows(self, rows: list) -> ir.Value:
        """uint32[rows, 2] from (low, high) pairs of uint32[1]."""
        return self.concat([self.reshape(self.concat(list(r), 0, [2]), [1, 2]) for r in rows], 0, [len(rows), 2])


def mulhi(a: ir.Value, b: ir.Value | int) -> ir.Value:
    """mulhi(a, b) of two int32 or uint32 values, in uint32 ops; b may be a uint32 constant
    (a Python int: its 16-bit halves are then constants too)."""
    signed = _etype(a.type) == "i32"
    assert not (signed and isinstance(b, int)), "a constant multiplier is uint32"
    u = Uint32()
    shape = _shape(a)
    au, bu = (create("stablehlo.bitcast_convert", u.type(shape), [v]) if signed else v for v in (a, b))
    lo16 = lambda v: u.op("stablehlo.and", v, u.scalar(0xFFFF, v))  # noqa: E731
    hi16 = lambda v: u.op("stablehlo.shift_right_logical", v, u.scalar(16, v))  # noqa: E731
    a0, a1 = lo16(au), hi16(au)
    b0, b1 = (u.const(b & 0xFFFF, shape), u.const(b >> 16, shape)) if isinstance(b, int) else (lo16(bu), hi16(bu))
    p00, p01, p10, p11 = (u.op("stablehlo.multiply", x, y) for x, y in ((a0, b0), (a0, b1), (a1, b0), (a1, b1)))
    mid = u.add(u.add(hi16(p00), lo16(p01)), lo16(p10))
    hi = u.add(u.add(p11, hi16(p01)), u.add(hi16(p10), hi16(mid)))
    if not signed:
        return hi
    i1 = ir.RankedTensorType.get(shape, ir.IntegerType.get_signless(1))
    zero = create("stablehlo.constant", a.type, [], {
        "value": ir.DenseElementsAttr.get_splat(a.type, ir.IntegerAttr.get(ir.RankedTensorType(a.type).element_type, 0))})
    for x, y in ((a, bu), (b, au)):   # minus y where x < 0 (mod 2^32)
        neg = create("stablehlo.compare", i1, [x, zero], {
            "comparison_direction": ir.Attribute.parse("#stablehlo<comparison_direction LT>"),
            "compare_type": ir.Attribute.parse("#stablehlo<comparison_type SIGNED>")})
        hi = u.op("stablehlo.subtract", hi, create("stablehlo.select", hi.type, [neg, y, u.scalar(0, hi)]))
    return create("stablehlo.bitcast_convert", a.type, [hi])


def states_as_words(rbgs: list, module: ir.Module, main) -> None:
    """Rewrites the ops computing the uint64[rows] states of the rng_bit_generators `rbgs` in
    word pairs, so that each state is the bitcast of uint32[rows, 2] words. A state with an
    op that has no word form (a float converted to 64 bits, a value carried into a loop) is
    left as it is (rng.py refuses it). The states are done together: torch_xla derives every
    dropout's seed in a program from one argument, each the previous one advanced. Calls of
    functions with 64-bit integer arguments or results (jnp's outlined `_where`) are inlined
    into @main first."""
    entry = main.regions[0].blocks[0]
    inline_calls(module, entry, _touches_wide)
    rbgs = [as_operation(r) for r in rbgs]
    order: list = []   # the ops computing the states, operands first
    seen: set = set()
    done = [r for r in rbgs if _collect(r.operands[0], entry, order, seen)]
    if not done:
        return
    inside = set(order) | set(rbgs)
    closed = all(u in inside for op in order for r in op.results for u in users(r))
    states = [r.operands[0] for r in done]
    args = {ir.BlockArgument(a).arg_number: a for a in [*states, *(x for op in order for x in op.operands)]
            if isinstance(a.owner, ir.Block) and _etype(a.type) in _WIDE}
    as_words = [a for a in args.values() if closed and all(u in inside for u in users(a))]
    words: dict = {}
    with main.context, ir.Location.unknown(), ir.InsertionPoint.at_block_begin(entry):
        u = Uint32()
        for a in args.values():
            words[a] = _argument_words(u, a, a in as_words)
    for op in order:   # each beside the op it replaces: what it reads is defined there
        with op.context, op.location, ir.InsertionPoint(op):
            words[op.results[0]] = _rule(u, op, words)
    for rbg, state in zip(done, states):
        with rbg.context, rbg.location, ir.InsertionPoint(rbg):
            lo, hi = words[state]
            rows = _shape(state)[0]
            pairs = u.concat([u.reshape(lo, [rows, 1]), u.reshape(hi, [rows, 1])], 1, [rows, 2])
            rbg.operands[0] = create("stablehlo.bitcast_convert", state.type, [pairs])
    for op in reversed(order):
        if not any(list(r.uses) for r in op.results):
            op.erase()
    with main.context, ir.Location.unknown():
        for a in as_words:
            _make_words_argument(main, a)


def _touches_wide(func) -> bool:
    if func is None or not func.regions[0].blocks:
        return False
    ftype = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
    return any(isinstance(t, ir.RankedTensorType) and _etype(t) in _WIDE for t in [*ftype.inputs, *ftype.results])


def _collect(v: ir.Value, entry, order: list, seen: set) -> bool:
    """The ops computing v in post-order, into `order`; False if one has no word form."""
    op = defining_op(v)
    if op is None:
        return v.owner == entry and _etype(v.type) in _WIDE   # an argument of @main
    if op in seen:
        return True
    seen.add(op)
    if len(op.results) != 1 or (op.name not in _PER_WORD and op.name not in _ARITHMETIC):
        return False
    if op.name == "stablehlo.convert" and _etype(op.operands[0].type) not in _WIDE:
        t = ir.RankedTensorType(op.operands[0].type).element_type
        if not isinstance(t, ir.IntegerType):
            return False   # a float's 64-bit conversion: no word form here
    for x in op.operands:
        if _etype(x.type) in _WIDE and not _collect(x, entry, order, seen):
            return False
    order.append(op)
    return True


def _argument_words(u: Uint32, arg: ir.Value, own: bool) -> tuple:
    """(low, high) of a 64-bit argument: the planes of its words if it becomes words, else
    its narrowed value extended (its values then fit the carrier: checked at run time)."""
    shape = _shape(arg)
    if own:
        return tuple(u.reshape(u.slice(arg, [p + 1] + shape, [p] + [0] * len(shape)), shape) for p in (0, 1))
    narrow = ir.RankedTensorType.get(shape, ir.IntegerType.get_signless(32) if _etype(arg.type) == "i64"
                                     else ir.IntegerType.get_unsigned(32))
    return _extended(u, create("stablehlo.convert", narrow, [arg]))


def _extended(u: Uint32, x: ir.Value) -> tuple:
    """The words of a narrower integer x, sign- or zero-extended."""
    shape, element = _shape(x), ir.RankedTensorType(x.type).element_type
    signed = element.is_signless and element.width > 1 or element.is_signed
    x32 = ir.RankedTensorType.get(shape, ir.IntegerType.get_signless(32) if signed else u.element)
    if element.width != 32:
        x = create("stablehlo.convert", x32, [x])
    if not signed:
        return x, u.const(0, shape)
    sign = create("stablehlo.shift_right_arithmetic", x32, [x, create("stablehlo.constant", x32, [], {
        "value": ir.DenseElementsAttr.get_splat(x32, ir.IntegerAttr.get(x32.element_type, 31))})])
    return tuple(create("stablehlo.bitcast_convert", u.type(shape), [v]) for v in (x, sign))


def _rule(u: Uint32, op: ir.Operation, words: dict) -> tuple:
    """The (low, high) words of op's 64-bit result."""
    name, out = op.name, op.results[0]
    shape = _shape(out)
    operand = [words.get(x) for x in op.operands]
    if name == "stablehlo.constant":
        data = constant_array(op.attributes["value"], np.uint64 if _etype(out.type) == "ui64" else np.int64)
        bits = np.broadcast_to(data, shape).astype(np.uint64)
        return u.array(bits & np.uint64(_MASK)), u.array(bits >> np.uint64(32))
    if name == "stablehlo.convert":
        return operand[0] if operand[0] is not None else _extended(u, op.operands[0])
    if name in _PER_WORD:
        attrs = named_attributes(op)
        return tuple(create(name, u.type(shape), [w[k] if w is not None else x for w, x in zip(operand, op.operands)],
                            attrs) for k in (0, 1))
    if name == "stablehlo.negate":
        (a_lo, a_hi), (b_lo, b_hi) = (u.const(0, shape),) * 2, operand[0]
    else:
        (a_lo, a_hi), (b_lo, b_hi) = operand
    if name in ("stablehlo.add", "stablehlo.subtract", "stablehlo.negate"):
        # (constant words of 0 cost no op: torch's seed adds a constant whose high word is 0)
        add, sub = name == "stablehlo.add", lambda x, y: u.op("stablehlo.subtract", x, y)  # noqa: E731
        if _known(b_lo) == 0:
            return a_lo, _sum(u, [a_hi, b_hi], shape) if add else sub(a_hi, b_hi)
        lo = u.add(a_lo, b_lo) if add else sub(a_lo, b_lo)
        carry = u.carry(lo, b_lo) if add else u.below(a_lo, b_lo)
        hi = _sum(u, [a_hi, b_hi], shape) if add else (a_hi if _known(b_hi) == 0 else sub(a_hi, b_hi))
        return lo, (u.add(hi, carry) if add else sub(hi, carry))
    # multiply: the low 64 bits of the product; a constant factor second, its 16-bit halves
    # constants (mulhi) and its zero words no op
    if _known(a_lo) is not None and _known(a_hi) is not None:
        (a_lo, a_hi), (b_lo, b_hi) = (b_lo, b_hi), (a_lo, a_hi)
    c_lo, c_hi = _known(b_lo), _known(b_hi)
    mul = lambda x, y, k: None if k == 0 else u.op("stablehlo.multiply", x, y)  # noqa: E731
    high = mulhi(a_lo, c_lo if c_lo is not None and c_hi is not None else b_lo) if c_lo != 0 else None
    lo = mul(a_lo, b_lo, c_lo) or u.const(0, shape)
    return lo, _sum(u, [high, mul(a_lo, b_hi, c_hi), mul(a_hi, b_lo, c_lo)], shape)


def _known(v: ir.Value) -> int | None:
    """The value of a splat uint32 constant word, else None."""
    op = defining_op(v)
    if op is None or op.name != "stablehlo.constant":
        return None
    data = constant_array(op.attributes["value"], np.uint32).reshape(-1)
    return int(data[0]) if data.size and (data == data[0]).all() else None


def _sum(u: Uint32, terms: list, shape) -> ir.Value:
    """The sum of the terms that are not None or a constant 0 (0 if none is left)."""
    terms = [t for t in terms if t is not None and _known(t) != 0]
    if not terms:
        return u.const(0, shape)
    total = terms[0]
    for t in terms[1:]:
        total = u.add(total, t)
    return total


def _make_words_argument(main, arg: ir.Value) -> None:
    """@main's argument `arg` becomes uint32 [2, *shape] words; the framework's type is kept in
    the argument's WORDS_ATTR for narrow64's Boundary."""
    wide = _etype(arg.type)
    t = ir.RankedTensorType.get([2] + _shape(arg), ir.IntegerType.get_unsigned(32))
    ir.BlockArgument(arg).set_type(t)
    ftype = ir.FunctionType(ir.TypeAttr(main.attributes["function_type"]).value)
    inputs = list(ftype.inputs)
    number = ir.BlockArgument(arg).arg_number
    inputs[number] = t
    main.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(inputs, list(ftype.results)))
    attrs = list(ir.ArrayAttr(main.attributes["arg_attrs"])) if "arg_attrs" in main.attributes \
        else [ir.DictAttr.get({})] * len(inputs)
    own = ir.DictAttr(attrs[number])
    # its sharding (one chip's program: replicated) describes the 64-bit shape: dropped
    merged = {own[i].name: own[i].attr for i in range(len(own)) if "sharding" not in own[i].name}
    merged[WORDS_ATTR] = ir.StringAttr.get(wide)
    attrs[number] = ir.DictAttr.get(merged)
    main.attributes["arg_attrs"] = ir.ArrayAttr.get(attrs)


def word_arguments(main) -> dict[int, str]:
    """@main's arguments made words: index -> the 64-bit type the framework sees."""
    if "arg_attrs" not in main.attributes:
        return {}
    out = {}
    for i, d in enumerate(ir.ArrayAttr(main.attributes["arg_attrs"])):
        d = ir.DictAttr(d)
        if WORDS_ATTR in d:
            out[i] = ir.StringAttr(d[WORDS_ATTR]).value
    return out
