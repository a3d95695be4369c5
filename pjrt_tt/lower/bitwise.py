"""Bit rules: and/or/xor/not, shifts, popcnt, count_leading_zeros, bitcast_convert,
reduce_precision (on the float32 bit pattern).

Booleans (bfloat16 0/1 on the chip) use ttnn's logical ops; integers its bitwise ops, which take
int32 / uint32 (uint16 partly; uint8 never), so uint8 / uint16 are computed in uint32.
XLA's shift semantics are kept for every amount: an amount outside [0, bits) gives 0 (sign fill
for an arithmetic right shift); ttnn documents that only for its binary left shift, so other
amounts are guarded with a where.
"""
from __future__ import annotations

import numpy as np
from jaxlib.mlir import ir

from pjrt_tt.lower.builder import Lowering, Splat
from pjrt_tt.lower.helpers import (NARROW, WIDE, binary, entries, host_type, like, narrow_back, predicate,
                                   result_type, retype, tensor_operands, where)
from pjrt_tt.lower.registry import rule
from pjrt_tt.program import TensorType, Value, dtype_attr

LOGICAL = {"stablehlo.and": "logical_and", "stablehlo.or": "logical_or", "stablehlo.xor": "logical_xor"}
BITWISE = {"stablehlo.and": "bitwise_and", "stablehlo.or": "bitwise_or", "stablehlo.xor": "bitwise_xor"}


def _widened(lo: Lowering, op, compute) -> list:
    """Run compute(entries, out) in WIDE for uint8 / uint16 results, then wrap back."""
    out = result_type(op)
    es = entries(lo, op)
    if out.dtype not in NARROW:
        return [compute(es, out)]
    wide = [retype(lo, e, WIDE) if host_type(v).element.device == out.dtype else e
            for e, v in zip(es, op.operands)]
    return [narrow_back(lo, compute(wide, like(out, WIDE)), out.dtype)]


@rule(*LOGICAL)
def _and_or_xor(lo: Lowering, op) -> list:
    name = op.operation.name
    if host_type(op.results[0]).element.is_bool:
        out = result_type(op)
        return [lo.emit(LOGICAL[name], *tensor_operands(lo, entries(lo, op), out.shape), result=out)]
    return _widened(lo, op, lambda es, out: binary(lo, BITWISE[name], *es, out, commutative=True))


@rule("stablehlo.not")
def _not(lo: Lowering, op) -> list:
    if host_type(op.results[0]).element.is_bool:
        return [lo.emit("logical_not", lo.get(op.operands[0]), result=result_type(op))]
    return _widened(lo, op, lambda es, out: lo.emit("bitwise_not", lo.materialize(es[0]), result=out))


# ---------------------------------------------------------------------------------------------
# shifts
# ---------------------------------------------------------------------------------------------

SHIFTS = {"stablehlo.shift_left": "bitwise_left_shift",
          "stablehlo.shift_right_logical": "logical_right_shift",
          "stablehlo.shift_right_arithmetic": "bitwise_right_shift"}


def shift(lo: Lowering, kind: str, x: Value, amount, out: TensorType, bits: int = 32) -> Value:
    """x shifted by `amount` (a splat, or a tensor of x's dtype) with XLA's semantics for
    `bits`-wide values held in out.dtype (int32 or uint32)."""
    fn = SHIFTS[kind]
    arith = fn == "bitwise_right_shift"
    if arith and out.dtype == "uint32":  # sign-extend the uint32 bit pattern: shift it as int32
        xi = lo.emit("bitcast", x, dtype_attr("int32"), result=like(out, "int32"))
        ai = retype_bits(lo, amount, "int32")
        r = shift(lo, kind, xi, ai, like(out, "int32"), bits)
        return lo.emit("bitcast", r, dtype_attr("uint32"), result=out)
    if isinstance(amount, Splat):
        s = int(amount.value)
        if 0 <= s < bits:
            return lo.emit(fn, x, s, result=out)
        if arith:
            return lo.emit(fn, x, bits - 1, result=out)
        return lo.emit("multiply", x, 0, result=out)  # zeros shaped like x
    r = lo.emit(fn, *tensor_operands(lo, [x, amount], out.shape), result=out)
    cond = predicate(lo, "ge", amount, Splat(bits, None), out.shape)
    if out.dtype == "int32":  # negative amounts are huge unsigned ones
        cond = lo.emit("logical_or", cond, predicate(lo, "lt", amount, Splat(0, None), out.shape),
                       result=cond.type)
    fill = lo.emit(fn, x, bits - 1, result=out) if arith else 0
    return where(lo, cond, fill, r, out)


def retype_bits(lo: Lowering, e, dtype: str):
    """A shift amount moved between int32 and uint32 (only small values matter)."""
    if isinstance(e, Splat):
        return e
    v = lo.materialize(e)
    return lo.emit("bitcast", v, dtype_attr(dtype), result=like(v.type, dtype))


@rule(*SHIFTS)
def _shift(lo: Lowering, op) -> list:
    out = result_type(op)
    x, amount = entries(lo, op)
    kind = op.operation.name
    if isinstance(x, Splat) and isinstance(amount, Splat) and out.dtype in ("int32", "uint32"):
        return [Splat(_fold_shift(kind, int(x.value), int(amount.value), out.dtype), host_type(op.results[0]))]
    if out.dtype in NARROW:
        bits = 8 if out.dtype == "uint8" else 16
        xw, aw = lo.typecast(lo.materialize(x), WIDE), retype(lo, amount, WIDE)
        if kind == "stablehlo.shift_right_arithmetic":  # sign-extend from the narrow width first
            xw = lo.emit("bitwise_right_shift",
                         lo.emit("bitcast", lo.emit("bitwise_left_shift", xw, 32 - bits, result=like(out, WIDE)),
                                 dtype_attr("int32"), result=like(out, "int32")),
                         32 - bits, result=like(out, "int32"))
            r = shift(lo, kind, xw, retype_bits(lo, aw, "int32"), like(out, "int32"), bits)
            return [narrow_back(lo, lo.emit("bitcast", r, dtype_attr(WIDE), result=like(out, WIDE)), out.dtype)]
        return [narrow_back(lo, shift(lo, kind, xw, aw, like(out, WIDE), bits), out.dtype)]
    return [shift(lo, kind, lo.materialize(x), amount, out)]


def _fold_shift(kind: str, x: int, amount: int, dtype: str) -> int:
    """A 32-bit shift of constants with XLA's semantics (the amount read as unsigned)."""
    s, u = amount & 0xFFFFFFFF, x & 0xFFFFFFFF
    if kind == "stablehlo.shift_left":
        r = (u << s) & 0xFFFFFFFF if s < 32 else 0
    elif kind == "stablehlo.shift_right_logical":
        r = u >> s if s < 32 else 0
    else:
        r = ((u ^ 0x80000000) - 0x80000000) >> min(s, 31)
    r &= 0xFFFFFFFF
    return r - (1 << 32) if dtype == "int32" and r >= 1 << 31 else r


# ---------------------------------------------------------------------------------------------
# popcnt, count_leading_zeros: SWAR from shifts, masks and adds (no multiply)
# ---------------------------------------------------------------------------------------------

def _as_u32(lo: Lowering, x: Value) -> Value:
    if x.type.dtype == "int32":
        return lo.emit("bitcast", x, dtype_attr("uint32"), result=like(x.type, "uint32"))
    return lo.typecast(x, "uint32")


def _back(lo: Lowering, r: Value, out: TensorType) -> Value:
    if out.dtype == "int32":
        return lo.emit("bitcast", r, dtype_attr("int32"), result=out)
    return lo.typecast(r, out.dtype)  # counts fit every unsigned type


def _srl(lo, x, s):
    return lo.emit("logical_right_shift", x, s, result=x.type)


def _and(lo, x, m):
    return lo.emit("bitwise_and", x, m - 2**32 if m >= 2**31 else m, result=x.type)


def _add(lo, x, y):
    return lo.emit("add", x, y, result=x.type)


@rule("stablehlo.popcnt")
def _popcnt(lo: Lowering, op) -> list:
    out = result_type(op)
    x = _as_u32(lo, lo.get(op.operands[0]))
    x = lo.emit("subtract", x, _and(lo, _srl(lo, x, 1), 0x55555555), result=x.type)
    x = _add(lo, _and(lo, x, 0x33333333), _and(lo, _srl(lo, x, 2), 0x33333333))
    x = _and(lo, _add(lo, x, _srl(lo, x, 4)), 0x0F0F0F0F)
    x = _add(lo, x, _srl(lo, x, 8))
    x = _and(lo, _add(lo, x, _srl(lo, x, 16)), 0x3F)
    return [_back(lo, x, out)]


@rule("stablehlo.count_leading_zeros")
def _clz(lo: Lowering, op) -> list:
    """Binary search: if the top s bits are zero, count s and shift them out."""
    out = result_type(op)
    bits = {"uint8": 8, "uint16": 16}.get(out.dtype, 32)
    x = _as_u32(lo, lo.get(op.operands[0]))
    if bits < 32:  # move the narrow value to the top of the word
        x = lo.emit("bitwise_left_shift", x, 32 - bits, result=x.type)
    n = None
    s = 16
    while s:
        z = lo.emit("eq", _srl(lo, x, 32 - s), 0, result=x.type)              # 1 where the top s bits are 0
        k = lo.emit("bitwise_left_shift", z, s.bit_length() - 1, result=x.type)  # s or 0
        n = k if n is None else _add(lo, n, k)
        x = lo.emit("bitwise_left_shift", x, k, result=x.type)
        s //= 2
    n = _add(lo, n, lo.emit("eq", x, 0, result=x.type))  # x == 0: 31 + 1
    if bits < 32:  # a zero narrow value counted 32
        n = lo.emit("minimum", n, bits, result=n.type)
    return [_back(lo, n, out)]


# ---------------------------------------------------------------------------------------------
# bitcast_convert
# ---------------------------------------------------------------------------------------------

# ttnn.bitcast's documented pairs; others go through uint32
_PAIRS = {("uint32", "float32"), ("float32", "uint32"), ("uint32", "int32"), ("int32", "uint32"),
          ("uint16", "bfloat16"), ("bfloat16", "uint16")}


@rule("stablehlo.bitcast_convert")
def _bitcast_convert(lo: Lowering, op) -> list:
    src, dst = host_type(op.operands[0]), host_type(op.results[0])
    out = result_type(op)
    if src.element.is_bool or dst.element.is_bool or src.element.numpy.itemsize != dst.element.numpy.itemsize:
        raise lo.unsupported(f"bitcast_convert {src.element.mlir} -> {dst.element.mlir}: only same-width "
                             f"types other than booleans are lowered")
    x = lo.get(op.operands[0])
    a, b = x.type.dtype, out.dtype
    if a == b:
        return [x]
    if (a, b) in _PAIRS:
        return [lo.emit("bitcast", x, dtype_attr(b), result=out)]
    if a in ("float32", "int32") and b in ("float32", "int32"):
        u = lo.emit("bitcast", x, dtype_attr("uint32"), result=like(out, "uint32"))
        return [lo.emit("bitcast", u, dtype_attr(b), result=out)]
    raise lo.unsupported(f"bitcast_convert {src.element.mlir} -> {dst.element.mlir} has no ttnn bitcast")


# ---------------------------------------------------------------------------------------------
# reduce_precision: XLA's algorithm on the float32 bit pattern, in uint32 integer ops
# ---------------------------------------------------------------------------------------------

@rule("stablehlo.reduce_precision")
def _reduce_precision(lo: Lowering, op) -> list:
    """The mantissa rounded to `mantissa_bits` (to nearest, ties to even: add half an ulp less
    one plus the last kept bit, then truncate); exponents above the reduced range give +-inf,
    those at or below its smallest normal +-0 (XLA flushes the reduced type's denormals too);
    NaN stays NaN. float16 values (carried as float32, ingest/widen.py) are rounded with
    (5, 10) where they are converted."""
    out = result_type(op)
    e_bits = ir.IntegerAttr(op.attributes["exponent_bits"]).value
    m_bits = ir.IntegerAttr(op.attributes["mantissa_bits"]).value
    entry = lo.entry(op.operands[0])
    if isinstance(entry, Splat):   # (a pad value, a constant operand: kept a constant)
        return [Splat(_reduced(float(entry.value), e_bits, m_bits), host_type(op.results[0]))]
    x = lo.typecast(lo.materialize(entry), "float32")   # bf16: exactly
    if m_bits >= 23 and e_bits >= 8:
        return [lo.typecast(x, out.dtype)]
    u32 = like(x.type, "uint32")
    b = lo.emit("bitcast", x, dtype_attr("uint32"), result=u32)
    if m_bits < 23:
        cut = 23 - m_bits
        b = _add(lo, _add(lo, b, _and(lo, _srl(lo, b, cut), 1)), (1 << (cut - 1)) - 1)
        b = _and(lo, b, (0xFFFFFFFF << cut) & 0xFFFFFFFF)
    if e_bits < 8:
        bias = (1 << (e_bits - 1)) - 1
        exponent, sign = _and(lo, b, 0x7F800000), _and(lo, b, 0x80000000)
        over = predicate(lo, "gt", exponent, Splat((127 + bias) << 23, None), x.type.shape)
        under = predicate(lo, "le", exponent, Splat((127 - bias) << 23, None), x.type.shape)
        b = where(lo, under, sign, b, u32)
        b = where(lo, over, lo.emit("bitwise_or", sign, 0x7F800000, result=u32), b, u32)
    r = lo.emit("bitcast", b, dtype_attr("float32"), result=x.type)
    if m_bits < 23:   # a NaN whose payload was cut would read as an infinity
        r = where(lo, lo.emit("isnan", x, result=x.type), x, r, x.type)
    return [lo.typecast(r, out.dtype)]


def _reduced(value: float, e_bits: int, m_bits: int) -> float:
    """reduce_precision of one float32 value, as the rule above computes it."""
    x = np.float32(value)
    if np.isnan(x) or (m_bits >= 23 and e_bits >= 8):
        return float(x)
    b = int(np.array(x).view(np.uint32))
    if m_bits < 23:
        cut = 23 - m_bits
        b = ((b + ((b >> cut) & 1) + (1 << (cut - 1)) - 1) & (0xFFFFFFFF << cut)) & 0xFFFFFFFF
    if e_bits < 8:
        bias = (1 << (e_bits - 1)) - 1
        exponent, sign = b & 0x7F800000, b & 0x80000000
        if exponent > (127 + bias) << 23:
            b = sign | 0x7F800000
        elif exponent <= (127 - bias) << 23:
            b = sign
    return float(np.array(b, np.uint32).view(np.float32))
