"""64-bit types -> the 32-bit types that carry them on the chip, only where that is exact;
and the module's one rewrite of element types the chip lacks (float16, int8 and int16 too,
whose semantics ingest/widen.py keeps; complex64 first, as pairs of float32 values:
ingest/complex64.py).

The chip has no 64-bit types. int64, uint64 and float64 are carried by int32, uint32 and
float32 on the device while the framework keeps seeing its 64-bit types (pjrt_tt/dtypes.py):
this pass rewrites every 64-bit type of the module, @main's signature included, to its
32-bit carrier and returns the `Boundary` (the signature the framework sees, and the value
ranges the program is exact for) that the lowering and the runtime keep.

float64 computes as float32 (docs/numerics.md gives the measured error). 64-bit integers
run in 32 bits only where interval arithmetic proves that every 64-bit value the program
computes fits int32 (uint32 for ui64): then every op gives the same result in either width
(no add or multiply wraps, a comparison or a conversion sees the same value). Arguments hold
what the framework sends, checked at upload to fit the carrier; when arithmetic on them could
leave it (`x + 1` on an int32-range x), the program is exact for a smaller argument range,
the widest [-s, s - 1] (uint64: [0, 2s - 1]) that proves safe, found by bisection
(`Boundary.input_ranges`), which the executable checks at run time against the arguments'
values. A float converted to a 64-bit integer in @main's body has no static bound: its
results are assumed to lie in that same range and checked at run time (`Boundary.guards`:
@main also returns the float operand's min and max). What cannot be proven for any argument
range (a constant beyond int32, a convert from a float elsewhere, a bitcast that needs 64
bits) is refused, naming the op: wrapping would be a silent wrong answer.

Intervals are tracked for every integer value (narrow ones too: an int32 iota times a
stride is bounded by the iota's length, not by int32). `strict` (the tt_strict_64bit
compile option) refuses wherever carrying changes anything: float64 values and 64-bit
integer arguments or results; internal 64-bit integers proven to fit stay allowed.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
from jaxlib.mlir import ir, passmanager
from jaxlib.mlir.dialects import stablehlo

from pjrt_tt import host_callbacks
from pjrt_tt.dtypes import FLOAT8, INT_RANGE
from pjrt_tt.errors import Unimplemented
from pjrt_tt.ingest import complex64, widen
from pjrt_tt.ingest.attributes import constant_array, custom_call_target, describe_location
from pjrt_tt.ingest.inline import functions
from pjrt_tt.ingest.mlir_compat import as_operation, block_argument, create, defining_op, users
from pjrt_tt.ingest.words64 import mulhi, word_arguments

Interval = tuple  # (lo, hi) of Python ints; None: no bound known

# what a 64-bit integer element type becomes, and the values it can then hold
_NARROW = {"i64": ("i32", np.int32), "ui64": ("ui32", np.uint32)}
_CARRIER = {"i64": "i32", "ui64": "ui32", "f64": "f32"}
_REWRITTEN = {**_CARRIER, **widen.WIDENED}   # every type the chip lacks -> its carrier

# ops whose result i holds values of operand i (or of operand 0 when there is one operand)
_SAME_VALUES = {"stablehlo.broadcast_in_dim", "stablehlo.reshape", "stablehlo.transpose",
                "stablehlo.slice", "stablehlo.reverse", "stablehlo.dynamic_slice", "stablehlo.gather",
                "mhlo.copy", "stablehlo.all_gather", "stablehlo.all_to_all",
                "stablehlo.collective_permute", "stablehlo.optimization_barrier"}
# ops whose result holds values of any of these operands
_UNION = {"stablehlo.concatenate": None, "stablehlo.select": (1, 2), "stablehlo.pad": (0, 1),
          "stablehlo.dynamic_update_slice": (0, 1)}
_LOOP_ROUNDS = 8


@dataclasses.dataclass(frozen=True)
class Boundary:
    """@main's signature as the framework sees it, which narrowing leaves to the runtime."""
    inputs: tuple[str, ...] = ()     # MLIR element type of each argument ("i64" stays "i64")
    outputs: tuple[str, ...] = ()    # and of each result
    # per argument: the (lo, hi) the values of a 64-bit integer argument must lie in for the
    # program to be exact (checked at run time); None for other arguments
    input_ranges: tuple = ()
    # per result: a bound of the values of a 64-bit integer result; None for other results
    output_ranges: tuple = ()
    range_limit: str = ""            # the op that limits input_ranges, as `name` at location
    # per float -> 64-bit integer convert of @main (see _guardable): (the op as `name` at
    # location, lo, hi) its results must lie in; @main returns the min and max of the
    # convert's float operand after its own results, two f32 scalars per guard, which the
    # executable checks after each run
    guards: tuple = ()
    # The module as proven (MLIR bytecode, before its types were rewritten), kept when
    # arithmetic narrowed input_ranges: a call whose arguments lie outside them is proven
    # again for the values it holds (`reprove`) before it is refused.
    proof_source: bytes = b""
    # arguments held as their uint32 words [2, *shape] (words64.py): exact for any value
    words: tuple[int, ...] = ()


def narrow_64bit(module: ir.Module, strict: bool = False) -> Boundary:
    """Rewrite the module's 64-bit types to 32 bits (or raise Unimplemented), and its
    float16 / int8 / int16 types to float32 / int32 (widen.py); returns what the framework
    sees of @main."""
    # private functions nothing calls (HLO's reducer computations, left behind by its
    # conversion to StableHLO) would be checked for arguments of any 64-bit value
    with module.context:
        passmanager.PassManager.parse("builtin.module(symbol-dce)").run(module.operation)
    funcs, main, ftype = _functions(module)
    entry = main.regions[0].blocks[0]
    inputs, outputs = tuple(_etype(t) for t in ftype.inputs), tuple(_etype(t) for t in ftype.results)
    _mulhi_in_32_bits(module)
    complex64.split_complex(module, main)
    _saturate_sentinels(module)
    edits = widen.plan(module)
    ops = []
    module.operation.walk(lambda op: ops.append(op) or ir.WalkResult.ADVANCE)
    wide = [(op, v) for op in ops for v in _defined(op) if _etype(v.type) in _CARRIER]
    if strict:
        _check_strict(main, inputs, outputs, wide)
    for op, _ in wide:
        if op.name == "stablehlo.bitcast_convert":
            _check_bitcast(op)
    ranges, out_ranges, limit, guards = (None,) * len(inputs), (None,) * len(outputs), "", []
    if any(_wide(v.type) for _, v in wide) or any(e in _NARROW for e in inputs + outputs):
        guardable = [] if strict else _guardable(entry)
        ranges, out_ranges, limit, guards = _prove(funcs, main, entry, inputs,
                                                   [(o, v) for o, v in wide if _wide(v.type)], guardable)
    source = module.operation.get_asm(binary=True, enable_debug_info=False) if limit else b""
    if any(_etype(v.type) in _REWRITTEN for op in ops for v in _defined(op)):
        _rewrite(ops)
    widen.apply(edits)
    if guards:
        _return_guards(main, [op for op, _, _, _ in guards])
    words = word_arguments(main)
    return Boundary(tuple(words.get(i, e) for i, e in enumerate(inputs)), outputs, ranges, out_ranges, limit,
                    tuple((what, lo, hi) for _, what, lo, hi in guards), source, tuple(sorted(words)))


def _mulhi_in_32_bits(module: ir.Module) -> None:
    """The high half of a 32 x 32-bit product (jax's lax.mulhi, which Philox random draws
    use): jax legalizes chlo.mulhi to a 64-bit multiply shifted right by 32, whose product
    no carrier holds. Computed here from 16-bit halves in uint32 (each partial product
    fits), with the two's complement correction for int32: hi = hi_u - (a < 0 ? b : 0) -
    (b < 0 ? a : 0). The shift's result becomes that value widened back to 64 bits."""
    shifts = []
    module.operation.walk(lambda op: (shifts.append(op) if op.name in (
        "stablehlo.shift_right_logical", "stablehlo.shift_right_arithmetic") else None) or ir.WalkResult.ADVANCE)
    for shift in shifts:
        mul, amount = defining_op(shift.operands[0]), shift.operands[1]
        if mul is None or mul.name != "stablehlo.multiply" or _etype(shift.results[0].type) not in _NARROW:
            continue
        owner = defining_op(amount)
        if owner is None or owner.name != "stablehlo.constant" or set(
                constant_array(owner.attributes["value"], np.int64).reshape(-1).tolist()) != {32}:
            continue
        ext = [defining_op(v) for v in mul.operands]
        if any(e is None or e.name != "stablehlo.convert" or _etype(e.operands[0].type) not in ("i32", "ui32")
               for e in ext) or _etype(ext[0].operands[0].type) != _etype(ext[1].operands[0].type):
            continue
        with shift.context, shift.location, ir.InsertionPoint(shift):
            hi = mulhi(*(e.operands[0] for e in ext))
            wide = create("stablehlo.convert", shift.results[0].type, [hi])
        shift.results[0].replace_all_uses_with(wide)
        shift.erase()
        for dead in [mul, *ext]:
            if not list(dead.results[0].uses):
                dead.erase()


def _guardable(entry) -> list:
    """Converts of a float to a 64-bit integer in @main's body (torch's integer floor
    division, `.long()` of a float): no bound is known for their values at compile time, so
    the program assumes they lie in its argument range and checks that at run time."""
    return [op.operation for op in entry.operations
            if op.operation.name == "stablehlo.convert" and _wide(op.operation.results[0].type)
            and not _is_int(op.operation.operands[0].type)]


def _return_guards(main, converts: list) -> None:
    """@main also returns the min and max of each guarded convert's float operand, over the
    values int64 can hold: converting an infinity, a NaN or a float beyond +-2^63 is
    implementation-defined in StableHLO (T5's `log(0).long()`, which a `where` then drops):
    those count as 0 here and convert to whatever the chip gives."""
    entry = main.regions[0].blocks[0]
    ret = entry.operations[len(entry.operations) - 1]
    extra = []
    with main.context, ir.Location.unknown(), ir.InsertionPoint(ret):
        for op in converts:
            x = op.operands[0]
            rt = ir.RankedTensorType(x.type)
            f32 = ir.RankedTensorType.get(rt.shape, ir.F32Type.get())
            if not isinstance(rt.element_type, ir.F32Type):   # bf16: its values, as f32
                x = stablehlo.ConvertOp(f32, x).result
            splat = lambda v: stablehlo.ConstantOp(ir.DenseElementsAttr.get(  # noqa: E731
                np.full(rt.shape, v, np.float32), type=f32)).result
            defined = stablehlo.CompareOp(stablehlo.AbsOp(x).result, splat(2.0**63),
                                          stablehlo.ComparisonDirectionAttr.get("LT")).result
            x = stablehlo.SelectOp(defined, x, splat(0.0)).result
            scalar = ir.RankedTensorType.get([], ir.F32Type.get())
            for kind, start in (("min", np.inf), ("max", -np.inf)):
                init = stablehlo.ConstantOp(ir.DenseElementsAttr.get(
                    np.array(start, np.float32), type=scalar)).result
                red = stablehlo.ReduceOp([scalar], [x], [init], ir.DenseI64ArrayAttr.get(list(range(rt.rank))))
                body = red.regions[0].blocks.append(scalar, scalar)
                with ir.InsertionPoint(body):
                    a, b = body.arguments
                    m = (stablehlo.MinOp if kind == "min" else stablehlo.MaxOp)(a, b).result
                    stablehlo.ReturnOp([m])
                extra.append(red.results[0])
        ir.Operation.create("func.return", operands=list(ret.operands) + extra)
        ret.erase()
        ftype = ir.FunctionType(ir.TypeAttr(main.attributes["function_type"]).value)
        main.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(
            list(ftype.inputs), list(ftype.results) + [v.type for v in extra]))
        if "res_attrs" in main.attributes:
            attrs = list(ir.ArrayAttr(main.attributes["res_attrs"]))
            main.attributes["res_attrs"] = ir.ArrayAttr.get(attrs + [ir.DictAttr.get({})] * len(extra))


def _saturate_sentinels(module: ir.Module) -> None:
    """A max / min reduction (argmax included) of 64-bit integers starts from the type's
    minimum / maximum (-2^63), which no 32-bit carrier holds. Where the reducer gives the same
    results from the carrier's minimum / maximum for values across the carrier (its extremes
    included; evaluated on samples, the other operands, e.g. an argmax's index, at their own
    inits: torch's and jax's argmax start from index 0, the first element's), that init is
    replaced by it before the check."""
    reduces = []
    module.operation.walk(lambda op: (reduces.append(op) if op.name in (
        "stablehlo.reduce", "stablehlo.reduce_window") else None) or ir.WalkResult.ADVANCE)
    for op in reduces:
        n = len(op.results)
        inits = [_scalar_constant(v) for v in list(op.operands)[n:2 * n]]
        if any(c is None for c in inits):
            continue
        slots = {i: INT_RANGE[_NARROW[_etype(op.operands[n + i].type)][0]] for i, c in enumerate(inits)
                 if _etype(op.operands[n + i].type) in _NARROW and c in INT_RANGE[_etype(op.operands[n + i].type)]}
        if not slots:
            continue
        saturated = [(slots[i][0] if c < 0 else slots[i][1]) if i in slots else c for i, c in enumerate(inits)]
        body = op.regions[0].blocks[0]
        samples = [sorted({lo, lo + 1, -1, 0, 1, hi - 1, hi}) if i in slots else [c]
                   for i, c in enumerate(inits) for lo, hi in [slots.get(i, (0, 0))]]
        same = True
        for x in itertools.product(*samples):
            a = (_evaluate(body, list(inits) + list(x)), _evaluate(body, list(x) + list(inits)))
            b = (_evaluate(body, list(saturated) + list(x)), _evaluate(body, list(x) + list(saturated)))
            if None in a or a != b:
                same = False
                break
        if not same:
            continue
        with op.context, op.location, ir.InsertionPoint(op):
            for i in slots:
                old = op.operands[n + i]
                wide = np.array(saturated[i], np.int64 if _etype(old.type) == "i64" else np.uint64)
                op.operands[n + i] = stablehlo.ConstantOp(ir.DenseElementsAttr.get(wide, type=old.type)).result
                if not list(old.uses):
                    defining_op(old).erase()


def _scalar_constant(v: ir.Value):
    """The value of a scalar integer constant, or None."""
    owner = defining_op(v)
    if owner is None or owner.name != "stablehlo.constant" or not _is_int(v.type):
        return None
    data = constant_array(owner.attributes["value"], np.uint64 if _etype(v.type).startswith("ui") else np.int64)
    return int(data.reshape(-1)[0]) if data.size == 1 else None


_COMPARE = {"EQ": lambda a, b: a == b, "NE": lambda a, b: a != b, "LT": lambda a, b: a < b,
            "LE": lambda a, b: a <= b, "GT": lambda a, b: a > b, "GE": lambda a, b: a >= b}


def _evaluate(block, args: list):
    """The results of a reducer body on Python ints (None: it computes with an op this
    small evaluator does not know, or with floats)."""
    env = dict(zip(block.arguments, args))
    for op in block.operations:
        op = op.operation
        try:
            ins = [env[v] for v in op.operands]
        except KeyError:
            return None
        name = op.name
        if name == "stablehlo.return":
            return tuple(ins)
        if not all(_is_int(r.type) for r in op.results) or not all(_is_int(v.type) for v in op.operands):
            return None
        if name == "stablehlo.compare":
            out = _COMPARE[str(op.attributes["comparison_direction"]).split()[-1].rstrip(">")](*ins)
        elif name == "stablehlo.select":
            out = ins[1] if ins[0] else ins[2]
        elif name in ("stablehlo.maximum", "stablehlo.minimum"):
            out = (max if name == "stablehlo.maximum" else min)(*ins)
        elif name in ("stablehlo.and", "stablehlo.or", "stablehlo.xor") and all(isinstance(i, bool) for i in ins):
            out = {"stablehlo.and": ins[0] and ins[1], "stablehlo.or": ins[0] or ins[1],
                   "stablehlo.xor": ins[0] != ins[1]}[name]
        elif name == "stablehlo.not" and isinstance(ins[0], bool):
            out = not ins[0]
        elif name == "stablehlo.constant":
            c = _scalar_constant(op.results[0])
            if c is None:
                return None
            out = bool(c) if _etype(op.results[0].type) == "i1" else c
        else:
            return None
        env[op.results[0]] = out
    return None


def _prove(funcs, main, entry, inputs, wide, guardable=()):
    """The widest argument range [lo, hi] (the same for every 64-bit integer argument and
    every guardable convert's result; uint64 ones take its non-negative part) for which every
    64-bit integer value fits its carrier, the result bounds then, and the guards:
    (convert op, its name and location, lo, hi). Values only used modulo 2^32 need not fit."""
    modular = _modular([v for _, v in wide])
    guarded = [op for op in guardable if op.results[0] not in modular]
    etypes: dict = {}

    def attempt(lo: int, hi: int):
        return _attempt(funcs, entry, wide, modular,
                        {op.results[0]: _arg_range(_etype(op.results[0].type), lo, hi) for op in guarded},
                        [_arg_range(e, lo, hi) if e in _NARROW else None for e in inputs], etypes)

    lo, hi = -2**31, 2**31 - 1
    analysis, failed = attempt(lo, hi)
    limit = ""
    if failed and (any(e in _NARROW for e in inputs) or guarded):   # exact for smaller arguments?
        fits = lambda lo, hi: _excess(attempt(lo, hi)[1])  # noqa: E731
        s = _widest(1, 2**31 - 1, lambda s: fits(-s, s - 1),   # symmetric first, then each side
                    failed_above=_excess(failed))
        if s is not None:
            hi = _widest(s - 1, 2**31 - 1, lambda h: fits(-s, h))
            lo = -_widest(s, 2**31, lambda m: fits(-m, hi))
        else:   # exact for non-negative arguments only (a logical shift right, a seed split in words)?
            h = _widest(0, 2**31 - 1, lambda h: fits(0, h))
            lo, hi = (0, h) if h is not None else (0, 0)
        if s is not None or h is not None:
            op, _ = _named_op(*min(failed, key=_most_telling)[:2])
            where = describe_location(op.location)
            limit = f"`{op.name}`{' at ' + where if where else ''}"
        analysis, failed = attempt(lo, hi)
    if failed:
        raise _refusal(*min(failed, key=_most_telling))
    ranges = tuple(_arg_range(e, lo, hi) if e in _NARROW else None for e in inputs)
    outs = _result_bounds(analysis, main)
    guards = [(op, _describe(op)) + _arg_range(_etype(op.results[0].type), lo, hi) for op in guarded]
    return ranges, outs, limit, guards


def _excess(failed: list) -> float:
    """How far the values that left their carrier went: 1 + the largest overshoot past either
    end, in units of the carrier's upper limit (0 when none left it, so > 1 for any failure,
    a uint32 carrier's negative values included; inf when one has no bound)."""
    worst = 0.0
    for _, v, got in failed:
        if got is None:
            return math.inf
        lo_, hi_ = INT_RANGE[_NARROW[_etype(v.type)][0]]
        worst = max(worst, 1.0 + max(got[1] - hi_, lo_ - got[0], 1) / hi_)
    return worst


_PREDICTIONS = 4


def _widest(low: int, high: int, excess, failed_above: float | None = None) -> int | None:
    """The largest x in [low, high] with excess(x) == 0, excess being 0 up to some x and
    positive above it (None if it is positive at low). Bisection would take ~31 proofs of the
    whole module; but the excess grows about linearly with x (an index plus a constant, a
    product with a constant: the limits torch programs hit), so the secant through the last
    two failures, or the proportion from one, predicts the boundary, and a guess is kept only
    once checked. After _PREDICTIONS guesses the search is plain bisection, so a shape the
    secant misses (a square) costs at most 2 * _PREDICTIONS proofs more than bisection.
    `failed_above`: the excess at high + 1, if known."""
    good, bad = low - 1, high + 1           # excess(good) == 0 (or none known); excess(bad) > 0
    failures: list[tuple[int, float]] = [] if failed_above is None else [(high + 1, failed_above)]
    confirm, predictions = None, _PREDICTIONS
    while bad - good > 1:
        guess, predicted = confirm, False
        if guess is None and not failures:
            guess = high                     # the whole range first: it often fits
        elif guess is None and predictions and math.isfinite(failures[-1][1]):
            (x1, e1), (x2, e2) = (failures[-2] if len(failures) > 1 else (0, 0.0)), failures[-1]
            # e(x) ~ linear: through (x1, e1), (x2, e2); the boundary is where it reaches 1
            # (a bound equal to the carrier's limit); one failure: through the origin. Clamped
            # into (good, bad): a boundary predicted at `good` is checked next to it.
            if e2 != e1:
                guess = min(max(math.floor(x2 - (e2 - 1.0) * (x2 - x1) / (e2 - e1)), good + 1), bad - 1)
                predicted, predictions = True, predictions - 1
        if guess is None or not good < guess < bad:
            guess, predicted = (good + bad) // 2, False
        e = excess(guess)
        if e == 0:   # a prediction that fits: is guess + 1 the boundary?
            good, confirm = guess, (guess + 1 if predicted and guess + 1 < bad else None)
        else:
            bad, confirm = guess, None
            failures.append((guess, e))
    return good if good >= low else None


def _attempt(funcs, entry, wide, modular, assumed: dict, arg_ranges: list, etypes: dict | None = None):
    """Interval analysis with 64-bit integer argument i in arg_ranges[i] (None: not such an
    argument) and each guarded convert's results in `assumed` (value -> range); returns the
    analysis and the 64-bit values that could then leave their carrier (op, value, bound)."""
    analysis = _Ranges(funcs, assumed, etypes)
    analysis.block(entry, [r if r is not None else _type_range(a.type)
                           for r, a in zip(arg_ranges, entry.arguments)])
    for name, func in funcs.items():   # functions main never reaches may be called by anything
        if name != "main" and func not in analysis.reached and func.regions[0].blocks:
            block = func.regions[0].blocks[0]
            analysis.block(block, [_type_range(a.type) for a in block.arguments])
    failed = []
    for op, v in wide:
        if v in modular:
            continue
        lo_, hi_ = INT_RANGE[_NARROW[_etype(v.type)][0]]
        got = analysis.bounds.get(v)
        if got is None or got[0] < lo_ or got[1] > hi_:
            failed.append((op, v, got))
    return analysis, failed


def reprove(module: ir.Module, arg_ranges: tuple, guard_ranges: tuple) -> tuple | None:
    """The 64-bit integer results' bounds of `module` (a Boundary's proof_source) when each
    64-bit integer argument i holds values in arg_ranges[i] and each guarded convert's results
    lie in its guard's range, or None if some 64-bit value could then leave its carrier. The
    proof narrow_64bit made holds for one range shared by all arguments; a call whose
    arguments lie outside it may still be exact (a product of two arguments, one of them
    small), and is proven again for the values it holds."""
    funcs, main, _ = _functions(module)
    entry = main.regions[0].blocks[0]
    ops = []
    module.operation.walk(lambda op: ops.append(op) or ir.WalkResult.ADVANCE)
    wide = [(op, v) for op in ops for v in _defined(op) if _wide(v.type)]
    modular = _modular([v for _, v in wide])
    guarded = [op for op in _guardable(entry) if op.results[0] not in modular]
    if len(guarded) != len(guard_ranges):
        return None
    analysis, failed = _attempt(funcs, entry, wide, modular,
                                {op.results[0]: r for op, r in zip(guarded, guard_ranges)}, list(arg_ranges))
    return None if failed else _result_bounds(analysis, main)


def _functions(module: ir.Module):
    """The module's functions by name, @main, and @main's function type."""
    funcs = functions(module)
    main = funcs["main"]   # ingest.check_module made sure it exists
    return funcs, main, ir.FunctionType(ir.TypeAttr(main.attributes["function_type"]).value)


def _result_bounds(analysis, main) -> tuple:
    block = main.regions[0].blocks[0]
    ret = block.operations[len(block.operations) - 1]
    return tuple(analysis.get(v) if _etype(v.type) in _NARROW else None for v in ret.operands)


def _describe(op) -> str:
    where = describe_location(op.location)
    return f"`{op.name}`{' at ' + where if where else ''}"


# ops whose result's low 32 bits depend only on the low 32 bits of these operands
_MODULAR = {"stablehlo.add": None, "stablehlo.subtract": None, "stablehlo.multiply": None,
            "stablehlo.and": None, "stablehlo.or": None, "stablehlo.xor": None, "stablehlo.not": None,
            "stablehlo.negate": None, "stablehlo.shift_left": (0,), "stablehlo.select": (1, 2),
            "stablehlo.broadcast_in_dim": None, "stablehlo.reshape": None, "stablehlo.transpose": None,
            "stablehlo.slice": None, "stablehlo.reverse": None, "stablehlo.concatenate": None,
            "stablehlo.pad": None, "stablehlo.dynamic_slice": (0,), "stablehlo.gather": (0,)}
_WRAPPING = {"i4", "ui4", "i8", "ui8", "i16", "ui16", "i32", "ui32"}   # converts to these keep the low bits


def _modular(values: list) -> set:
    """The 64-bit integer values whose every use needs only their low 32 bits: converts to
    32 bits or less, and modular ops (add, multiply, bit ops, data movement) whose own results
    are such values. They run exactly modulo 2^32 whatever their size (jax's PRNG splits a
    64-bit seed into 32-bit words this way)."""
    def uses(v):
        return [(as_operation(u.owner), u.operand_number) for u in v.uses]

    modular = set(values)
    changed = True
    while changed:
        changed = False
        for v in list(modular):
            for user, i in uses(v):
                name = user.name
                ok = (name == "stablehlo.convert" and _etype(user.results[0].type) in _WRAPPING) or (
                    name in _MODULAR and (_MODULAR[name] is None or i in _MODULAR[name])
                    and len(user.results) == 1 and user.results[0] in modular)
                if not ok:
                    modular.discard(v)
                    changed = True
                    break
    return modular


def _arg_range(etype: str, lo: int, hi: int) -> Interval:
    """The values a 64-bit integer argument is assumed to hold for the search's [lo, hi]
    (int32 terms): int64 takes it as it is, uint64 the matching part of [0, 2^32 - 1]."""
    return (lo, hi) if etype == "i64" else (0, 2 * hi + 1)


def _check_strict(main, inputs, outputs, wide) -> None:
    for i, e in enumerate(inputs):
        if e in _CARRIER:
            raise Unimplemented(f"argument {i} of the program is {e} (tt_strict_64bit): the chip has no "
                                f"64-bit types and would carry it as {_CARRIER[e]}")
    for op, v in wide:
        if _etype(v.type) == "f64":
            raise _strict_refusal(op, "f64")
    for i, e in enumerate(outputs):
        if e in _CARRIER:
            raise Unimplemented(f"result {i} of the program is {e} (tt_strict_64bit): the chip has no "
                                f"64-bit types and would carry it as {_CARRIER[e]}")


def _strict_refusal(op, etype: str) -> Unimplemented:
    where = describe_location(op.location)
    return Unimplemented(f"`{op.name}`{' at ' + where if where else ''} computes {etype} "
                         f"(tt_strict_64bit): the chip has no 64-bit types and would compute it in "
                         f"{_CARRIER[etype]}")


def _check_bitcast(op) -> None:
    """A bitcast from or to a 64-bit type reads the bits of the 64-bit value: the same in
    32 bits only between int64 and uint64 (the interval check then proves the values equal)."""
    src, dst = _etype(op.operands[0].type), _etype(op.results[0].type)
    same_shape = ir.RankedTensorType(op.operands[0].type).shape == ir.RankedTensorType(op.results[0].type).shape
    if {src, dst} <= set(_NARROW) and same_shape:
        return
    where = describe_location(op.location)
    hint = ("jax.random makes float64 numbers from the bits of uint64 ones: ask for float32 ones "
            "(e.g. jax.random.normal(key, shape, dtype=jnp.float32))" if (src, dst) == ("ui64", "f64")
            else "convert the values (astype) instead of bitcasting them")
    raise Unimplemented(
        f"`stablehlo.bitcast_convert`{' at ' + where if where else ''} reinterprets the bits of "
        f"{src} as {dst}: the chip has no 64-bit types and carries them in 32 bits, where these "
        f"bits do not exist; {hint}")


# ops that only pass on what their bodies / callees compute: the op inside tells more
_CARRIERS = {"func.call", "stablehlo.composite", "stablehlo.while", "stablehlo.case", "stablehlo.if",
             "func.func", "stablehlo.reduce", "stablehlo.reduce_window", "stablehlo.scatter",
             "stablehlo.sort", "stablehlo.select_and_scatter"}


def _most_telling(failure) -> int:
    """Which refusal to report: an op that computes, then one that moves or holds values,
    then one that carries its body's."""
    name = failure[0].name
    if name in _CARRIERS:
        return 2
    return 1 if name in _SAME_VALUES or name in _UNION or name == "stablehlo.constant" else 0


def _refusal(op, v, got) -> Unimplemented:
    etype = _etype(v.type)
    narrow = _NARROW[etype][0]
    op, what = _named_op(op, v)
    where = describe_location(op.location)
    span = (f"values in [{got[0]}, {got[1]}], beyond {narrow}" if got is not None
            else f"values pjrt-tt cannot bound within {narrow}")
    return Unimplemented(
        f"`{op.name}`{' at ' + where if where else ''} {what} 64-bit integers ({etype}) with {span}: "
        f"the chip has no 64-bit integers, and pjrt-tt runs 64-bit integer arithmetic in 32 bits "
        f"only where it can prove that every value fits. Compute in int32 (or float32), or keep "
        f"the values within {narrow}.")


def _named_op(op, v):
    """The op to name for value `v` of `op`, and what it does with it."""
    if op.name == "stablehlo.constant":   # name the op using it: constants carry no location
        used_by = users(v)
        if used_by:
            return used_by[0], "uses a constant of"
    return op, "computes"


class _Ranges:
    """Interval arithmetic over the module, from main's arguments down (calls, loops,
    branches and reducer bodies included)."""

    def __init__(self, funcs: dict, assumed: dict | None = None, etypes: dict | None = None):
        self.funcs = funcs
        self.assumed = assumed or {}   # ir.Value -> (lo, hi) checked at run time (guards)
        self.bounds: dict = {}      # ir.Value -> (lo, hi) or None
        self.reached: set = set()   # func.func ops evaluated
        self.calling: set = set()   # the call stack (a recursive call gives unknown results)
        # ir.Type -> its element type's name, shared by a search's attempts: the bindings'
        # type casts were a third of a 64-bit proof's time (measured: generate()'s programs)
        self.etypes = {} if etypes is None else etypes

    def etype(self, t: ir.Type) -> str:
        e = self.etypes.get(t)
        if e is None:
            e = self.etypes[t] = _etype(t)
        return e

    def get(self, v: ir.Value):
        if v in self.bounds:
            return self.bounds[v]
        return _type_range(v.type, self.etype(v.type))  # not evaluated (yet): anything its type holds

    def set(self, v: ir.Value, iv) -> None:
        e = self.etype(v.type)
        if e not in INT_RANGE:
            return
        iv = _clip(iv, v.type, e)
        self.bounds[v] = _join(self.bounds[v], iv) if v in self.bounds else iv

    def block(self, block, args: list) -> list:
        """Evaluates `block` with argument intervals `args`; returns its terminator's."""
        for a, iv in zip(block.arguments, args):
            self.set(a, iv)
        last = []
        for op in block.operations:
            op = op.operation
            if op.name in ("func.return", "stablehlo.return"):
                last = [self.get(v) for v in op.operands]
            else:
                self.op(op)
        return last

    def op(self, op) -> None:
        name = op.name
        if name == "stablehlo.while":
            return self._while(op)
        if name in ("stablehlo.case", "stablehlo.if"):
            outs = [self.block(r.blocks[0], []) for r in op.regions]
            for i, r in enumerate(op.results):
                self.set(r, _join_all(o[i] if i < len(o) else None for o in outs))
            return
        if name in ("func.call", "stablehlo.composite"):
            callee = ir.FlatSymbolRefAttr(op.attributes["callee" if name == "func.call" else "decomposition"]).value
            func = self.funcs.get(callee)
            outs = []
            if func is not None and func.regions[0].blocks and func not in self.calling:
                self.reached.add(func)
                self.calling.add(func)
                outs = self.block(func.regions[0].blocks[0], [self.get(v) for v in op.operands])
                self.calling.discard(func)
            for i, r in enumerate(op.results):
                self.set(r, outs[i] if i < len(outs) else None)
            return
        if op.regions:   # reducers: reduce, reduce_window, scatter, sort, all_reduce...
            return self._with_body(op)
        if custom_call_target(op) == host_callbacks.TARGET:
            for r in op.results:   # what Python returns: the executor refuses a value beyond the carrier
                self.set(r, _CALLBACK_RESULT.get(self.etype(r.type)))
            return
        ins = [self.get(v) for v in op.operands]
        if len(op.results) == 1 and op.results[0] in self.assumed:
            self.set(op.results[0], self.assumed[op.results[0]])
        elif len(op.results) == 1:
            if self.etype(op.results[0].type) in INT_RANGE:   # (floats are not tracked: never read their constants)
                self.set(op.results[0], _transfer(op, ins))
        else:
            for i, r in enumerate(op.results):
                self.set(r, ins[i] if name in _SAME_VALUES and i < len(ins) else None)

    def _while(self, op) -> None:
        """The carried values' intervals, to a fixed point. The body runs only while the
        condition holds, so a carried value the condition compares with a bound (a loop
        counter: `i < n`) enters the body within it. A counter still growing after
        _LOOP_ROUNDS rounds is widened to that bound plus its last step (it reaches n); the
        values that grew with it then settle, and any still growing after twice as many
        rounds (an accumulator) is unbounded."""
        cond, body = op.regions[0].blocks[0], op.regions[1].blocks[0]
        carried = [self.get(v) for v in op.operands]
        partners = _lockstep(body, carried, self.funcs)
        for round in itertools.count():
            self.block(cond, carried)
            limits = self._loop_limits(cond)
            limits.update({j: limits[k] for j, k in partners.items() if k in limits and j not in limits})
            inside = [_meet(c, limits.get(k)) for k, c in enumerate(carried)]
            new = [_join(c, o) for c, o in zip(carried, self.block(body, inside))]
            if new == carried:
                break
            if round >= 2 * _LOOP_ROUNDS:   # still growing (an accumulator): unbounded
                new = [c if c == m else None for c, m in zip(carried, new)]
            elif round >= _LOOP_ROUNDS:   # counters first; what grows with them follows in the next rounds
                new = [m if c == m or k not in limits else _widen(c, m, limits[k])
                       for k, (c, m) in enumerate(zip(carried, new))]
            carried = new
        for r, c in zip(op.results, carried):
            self.set(r, c)

    def _loop_limits(self, cond) -> dict[int, tuple[int, int]]:
        """{carried index: the interval the condition keeps it in while the loop runs}, for a
        condition that is an integer compare of a carried value with a bounded value."""
        pred = list(cond.operations)[-1].operands[0]
        compare = defining_op(pred)
        if compare is None or compare.name != "stablehlo.compare" or \
                self.etype(compare.operands[0].type) not in INT_RANGE:
            return {}
        direction = str(stablehlo.ComparisonDirectionAttr(compare.attributes["comparison_direction"]).value)
        lhs, rhs = compare.operands
        flip = {"LT": "GT", "LE": "GE", "GT": "LT", "GE": "LE"}
        if direction not in flip:
            return {}
        for arg, other, d in ((lhs, rhs, direction), (rhs, lhs, flip[direction])):
            k = block_argument(arg, cond)
            if k is not None:
                lo, hi = self.get(other) or INT_RANGE[self.etype(other.type)]
                full = INT_RANGE[self.etype(arg.type)]
                limit = {"LT": (full[0], hi - 1), "LE": (full[0], hi), "GT": (lo + 1, full[1]),
                         "GE": (lo, full[1])}[d]
                return {k: limit}
        return {}

    def _with_body(self, op) -> None:
        """Ops with a reducer / comparator region. The result keeps the values of inputs
        and inits when the body only picks among its arguments (max, min, argmax-style
        compare and select: checked by evaluating it); a sum of n elements grows n-fold."""
        name, body = op.name, op.regions[-1].blocks[0]
        ins = [self.get(v) for v in op.operands]
        n = len(op.results)
        if name == "stablehlo.sort":
            self.block(body, [iv for iv in ins for _ in (0, 1)])
            for r, iv in zip(op.results, ins):
                self.set(r, iv)
            return
        if name in ("stablehlo.reduce", "stablehlo.reduce_window"):
            values, inits = ins[:n], ins[n:2 * n]
        elif name == "stablehlo.scatter":
            values, inits = ins[:n], ins[len(ins) - n:]   # operands, updates
        elif name in ("stablehlo.all_reduce", "stablehlo.reduce_scatter"):
            values, inits = ins[:n], ins[:n]
        else:
            values = inits = [None] * n
        picks = {o.operation.name for o in body.operations} - {"stablehlo.return"}
        if name == "stablehlo.reduce" and n == 1 and picks in ({"stablehlo.maximum"}, {"stablehlo.minimum"}) \
                and _summed_count(op) > 0 and values[0] is not None and inits[0] is not None:
            # max(init, max(elements)) over at least one element: the init (jnp.max's is the
            # type's lowest value) bounds the result only from its own side
            f = max if picks == {"stablehlo.maximum"} else min
            iv = (f(values[0][0], inits[0][0]), f(values[0][1], inits[0][1]))
            self.block(body, [iv, iv])
            self.set(op.results[0], iv)
            return
        acc = [_join(v, i) for v, i in zip(values, inits)]
        out = self.block(body, acc + acc)
        if not all(_within(o, a) for o, a, r in zip(out, acc, op.results) if _is_int(r.type)):
            kinds = {o.operation.name for o in body.operations}
            if kinds == {"stablehlo.add", "stablehlo.return"} and name in ("stablehlo.reduce",
                                                                           "stablehlo.reduce_window"):
                count = _summed_count(op)   # partial sums included: join with 0
                acc = [_add(_scale(_join(v, (0, 0)), count), i) for v, i in zip(values, inits)]
                self.block(body, acc + values)
            else:
                acc = [None] * n
                self.block(body, acc + acc)
        for r, a in zip(op.results, acc):
            self.set(r, a)


def _within(x, y) -> bool:
    return x is not None and y is not None and y[0] <= x[0] and x[1] <= y[1]


def _summed_count(op) -> int:
    """How many elements each output of a reduce / reduce_window sums."""
    if op.name == "stablehlo.reduce_window":
        return math.prod(ir.DenseI64ArrayAttr(op.attributes["window_dimensions"]))
    shape = ir.RankedTensorType(op.operands[0].type).shape
    return math.prod(shape[d] for d in ir.DenseI64ArrayAttr(op.attributes["dimensions"]))


# The values a Python callback's 64-bit integer result may hold on the chip (its carrier's range)
_CALLBACK_RESULT = {"i64": INT_RANGE["i32"], "ui64": INT_RANGE["ui32"]}


def _transfer(op, ins: list):
    """The interval of the single integer result of `op`, given its operands' (None: unknown)."""
    name = op.name
    if name == "stablehlo.constant":
        etype = _etype(op.results[0].type)
        data = constant_array(op.attributes["value"], np.uint64 if etype.startswith("ui") else np.int64)
        return (int(data.min()), int(data.max())) if data.size else (0, 0)
    if name == "stablehlo.iota":
        shape = ir.RankedTensorType(op.results[0].type).shape
        return (0, max(shape[ir.IntegerAttr(op.attributes["iota_dimension"]).value] - 1, 0))
    if name == "stablehlo.convert":
        src = op.operands[0].type
        return ins[0] if _is_int(src) else None   # from a float: any value
    if name in _SAME_VALUES:
        return ins[0]
    if name == "stablehlo.bitcast_convert":   # i64 <-> ui64 (_check_bitcast): the same when >= 0
        return ins[0] if ins[0] is not None and ins[0][0] >= 0 else None
    if name in _UNION:
        picks = _UNION[name] or range(len(ins))
        return _join_all(ins[i] for i in picks)
    if name == "stablehlo.clamp":
        lo_b, x, hi_b = ins
        if None in (lo_b, x, hi_b):
            return None
        return (min(max(x[0], lo_b[0]), hi_b[0]), min(max(x[1], lo_b[1]), hi_b[1]))
    if any(iv is None for iv in ins):
        return None
    if name == "stablehlo.add":
        return _add(*ins)
    if name == "stablehlo.subtract":
        (a, b), (c, d) = ins
        return (a - d, b - c)
    if name == "stablehlo.multiply":
        return _mul(*ins)
    if name == "stablehlo.negate":
        return (-ins[0][1], -ins[0][0])
    if name == "stablehlo.abs":
        a, b = ins[0]
        return (0 if a <= 0 <= b else min(abs(a), abs(b)), max(abs(a), abs(b)))
    if name == "stablehlo.sign":
        return (-1, 1)
    if name in ("stablehlo.maximum", "stablehlo.minimum"):
        pick = max if name == "stablehlo.maximum" else min
        return (pick(ins[0][0], ins[1][0]), pick(ins[0][1], ins[1][1]))
    if name == "stablehlo.divide":   # |a / b| <= |a|; x / 0 is -1 (all ones unsigned) in XLA
        (a, b), (c, d) = ins
        if a >= 0 and c > 0:
            return (a // d, b // c)
        m = max(abs(a), abs(b))
        return (min(-m, -1), m)
    if name == "stablehlo.remainder":   # sign of the dividend, |a % b| <= |a|, < |b|; x % 0 is x
        (a, b), (c, d) = ins
        lo, hi = min(a, 0), max(b, 0)
        if c > 0 or d < 0:
            limit = max(abs(c), abs(d)) - 1
            lo, hi = max(lo, -limit), min(hi, limit)
        return (lo, hi)
    if name in ("stablehlo.and", "stablehlo.or", "stablehlo.xor", "stablehlo.not"):
        return _bitwise(name, ins)
    if name == "stablehlo.shift_left":
        (a, b), (s0, s1) = ins
        if s0 < 0 or s1 > 62:
            return None
        return _mul((a, b), (1 << s0, 1 << s1))   # a shift that stays in range is a multiply
    if name == "stablehlo.shift_right_arithmetic":   # floors towards the sign fill, any shift
        a, b = ins[0]
        return (min(a, 0), max(b, 0))
    if name == "stablehlo.shift_right_logical":   # a non-negative value only shrinks
        a, b = ins[0]
        return (0, b) if a >= 0 else None
    if name == "stablehlo.popcnt":
        return (0, 32) if ins[0][0] >= 0 and ins[0][1] < 2**32 else None
    if name == "stablehlo.dot_general":
        dims = stablehlo.DotDimensionNumbers(op.attributes["dot_dimension_numbers"])
        shape = ir.RankedTensorType(op.operands[0].type).shape
        n = math.prod(shape[d] for d in dims.lhs_contracting_dimensions)
        return _scale(_join(_mul(*ins), (0, 0)), n)
    return None   # count_leading_zeros, bitcast_convert, custom_call, rng...: width-dependent


def _bitwise(name: str, ins: list):
    """Bit ops on values that fit keep the sign extension, so they fit too; non-negative
    operands give a result below the next power of two."""
    if name == "stablehlo.not":
        a, b = ins[0]
        return (-b - 1, -a - 1)
    (a, b), (c, d) = ins
    if a >= 0 and c >= 0:
        if name == "stablehlo.and":
            return (0, min(b, d))
        return (0, (1 << max(b, d).bit_length()) - 1)
    m = max(abs(a), abs(b), abs(c), abs(d))
    bound = 1 << m.bit_length()
    return (-bound, bound - 1)


def _add(x, y):
    if x is None or y is None:
        return None
    return (x[0] + y[0], x[1] + y[1])


def _mul(x, y):
    if x is None or y is None:
        return None
    products = [p * q for p in x for q in y]
    return (min(products), max(products))


def _scale(x, n: int):
    return None if x is None else (x[0] * n, x[1] * n)


def _lockstep(body, carried: list, funcs: dict) -> dict[int, int]:
    """{j: k} for carried values that start equal and step by the same constant each
    iteration, so one equals the other throughout (jax's fori_loop carries the trip counter
    and the index the body sees as two such values, and the condition reads only one)."""
    steps = {}
    for j, ret in enumerate(list(body.operations)[-1].operands):
        if carried[j] is not None and carried[j][0] == carried[j][1]:
            step = _step(ret, body, j, funcs)
            if step is not None:
                steps[j] = (carried[j], step)
    first, partners = {}, {}
    for j, key in steps.items():
        k = first.setdefault(key, j)
        if k != j:
            partners[j] = k
    return partners


def _step(v, block, j: int, funcs: dict, depth: int = 0) -> int | None:
    """c when `v` is `block`'s argument j plus the constant c (also through calls: jax 0.7.1
    puts a fori_loop's index update inside the body's closed_call)."""
    op = defining_op(v)
    if op is None or depth > 4:
        return None
    if op.name == "stablehlo.add":
        for a, b in (tuple(op.operands), tuple(op.operands)[::-1]):
            const = defining_op(b)
            if block_argument(a, block) == j and const is not None and const.name == "stablehlo.constant":
                step = constant_array(const.attributes["value"], np.int64)
                return int(step.reshape(-1)[0]) if step.size == 1 else None
        return None
    if op.name == "func.call":
        callee = funcs.get(ir.FlatSymbolRefAttr(op.attributes["callee"]).value)
        if callee is None or not callee.regions[0].blocks:
            return None
        inner = callee.regions[0].blocks[0]
        result = next(r for r, out in enumerate(op.results) if out == v)
        ret = list(inner.operations)[-1].operands[result]
        for m, arg in enumerate(op.operands):
            if block_argument(arg, block) == j:
                step = _step(ret, inner, m, funcs, depth + 1)
                if step is not None:
                    return step
    return None


def _meet(x, limit):
    """x within `limit` (None: no limit; x None: unknown, so the limit alone)."""
    if limit is None:
        return x
    if x is None:
        return limit
    lo, hi = max(x[0], limit[0]), min(x[1], limit[1])
    return (lo, hi) if lo <= hi else x   # (an empty body interval: keep x, never claim less)


def _widen(old, new, limit):
    """A growing interval widened to the loop condition's bound plus the last step; None
    (unbounded) when there is no bound on the side that grows."""
    if old is None or new is None or limit is None:
        return None
    lo, hi = new
    if new[1] > old[1]:
        if limit[1] >= INT_RANGE["i64"][1]:
            return None
        hi = max(new[1], limit[1] + (new[1] - old[1]))
    if new[0] < old[0]:
        if limit[0] <= INT_RANGE["i64"][0]:
            return None
        lo = min(new[0], limit[0] - (old[0] - new[0]))
    return (lo, hi)


def _join(x, y):
    if x is None or y is None:
        return None
    return (min(x[0], y[0]), max(x[1], y[1]))


def _join_all(ivs):
    out = ()
    for iv in ivs:
        if iv is None:
            return None
        out = iv if out == () else _join(out, iv)
    return out if out != () else None


def _clip(iv, t: ir.Type, etype: str = ""):
    """A narrow integer type wraps: a range past it means any value of the type. A 64-bit
    one keeps its true range, so the check sees it does not fit in 32 bits."""
    etype = etype or _etype(t)
    if iv is None:
        return None if etype in _NARROW else INT_RANGE[etype]
    lo, hi = INT_RANGE[etype]
    if etype not in _NARROW and (iv[0] < lo or iv[1] > hi):
        return (lo, hi)
    return iv


def _defined(op) -> list:
    """The values `op` defines: its results and its regions' block arguments."""
    values = list(op.results)
    for region in op.regions:
        for block in region.blocks:
            values.extend(block.arguments)
    return values


def _etype(t: ir.Type) -> str:
    return str(ir.RankedTensorType(t).element_type) if isinstance(t, ir.RankedTensorType) else ""


def _is_int(t: ir.Type) -> bool:
    return _etype(t) in INT_RANGE


def _wide(t: ir.Type) -> bool:
    return _etype(t) in _NARROW


def _type_range(t: ir.Type, etype: str = ""):
    etype = etype or _etype(t)
    if etype in _NARROW:
        return None
    return INT_RANGE.get(etype)


def _narrow_type(t: ir.Type) -> ir.Type:
    rt = ir.RankedTensorType(t)
    element = {"i32": ir.IntegerType.get_signless, "ui32": ir.IntegerType.get_unsigned,
               "f32": lambda _: ir.F32Type.get()}[_REWRITTEN[_etype(t)]](32)
    return ir.RankedTensorType.get(rt.shape, element)


_NUMPY = {"i64": (np.int64, np.int32), "ui64": (np.uint64, np.uint32), "f64": (np.float64, np.float32),
          "f16": (np.float16, np.float32), "i8": (np.int8, np.int32), "i16": (np.int16, np.int32),
          "i4": (np.int32, np.int32), "ui4": (np.int32, np.int32),
          **{name: (np.float32, np.float32) for name in FLOAT8}}   # (the constant's values are exact in float32)


def _rewrite(ops: list) -> None:
    """Every value, constant and function signature of a type the chip lacks -> its carrier
    (64-bit integers proven to fit; float64 constants rounded to float32, those beyond its
    range becoming infinities; float16, int8, int16 exactly)."""
    with ops[0].context, ir.Location.unknown():
        for op in ops:
            etype = _etype(op.results[0].type) if op.name == "stablehlo.constant" else ""
            if etype in _REWRITTEN:
                wide, narrow = _NUMPY[etype]
                with np.errstate(over="ignore"):
                    data = np.ascontiguousarray(constant_array(op.attributes["value"], wide).astype(narrow))
                op.attributes["value"] = ir.DenseElementsAttr.get(data, type=_narrow_type(op.results[0].type))
            for v in _defined(op):
                if _etype(v.type) in _REWRITTEN:
                    v.set_type(_narrow_type(v.type))
        for op in ops:   # functions (reducers, callees) now take and return 32 bits
            if op.name == "func.func" and op.regions[0].blocks:
                entry = op.regions[0].blocks[0]
                ret = entry.operations[len(entry.operations) - 1]
                op.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(
                    [a.type for a in entry.arguments], [v.type for v in ret.operands]))
