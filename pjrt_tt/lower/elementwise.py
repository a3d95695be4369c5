"""Elementwise rules: unary and binary math, comparisons, select, clamp, convert.

Results follow XLA, not ttnn, where the two differ: integer division truncates toward zero
(x / 0 = -1, x % 0 = x), remainder takes the dividend's sign, float -> int conversion truncates
and saturates (NaN -> 0), int -> int conversion wraps. uint8 / uint16, which most ttnn ops
refuse (docs/ttnn-facts.md §1.3), are computed in uint32 and masked back. Bit ops and shifts
are in bitwise.py.
"""
from __future__ import annotations

import numpy as np
from jaxlib.mlir.dialects import stablehlo

from pjrt_tt import dtypes
from pjrt_tt.lower.builder import Lowering, Splat
from pjrt_tt.lower.helpers import (FLOATS, INT_RANGE, NARROW, WIDE, binary, dtype_of, entries, fill,
                                   host_type, like, narrow_back, predicate, result_type, retype,
                                   tensor_operands, where)
from pjrt_tt.lower.registry import custom_call, rule
from pjrt_tt.program import TensorType, Value, device_type, dtype_attr

# ---------------------------------------------------------------------------------------------
# unary
# ---------------------------------------------------------------------------------------------

FLOAT_UNARY = {
    "stablehlo.negate": "neg", "stablehlo.abs": "abs", "stablehlo.exponential": "exp",
    "stablehlo.log": "log", "stablehlo.sqrt": "sqrt", "stablehlo.rsqrt": "rsqrt",
    "stablehlo.tanh": "tanh", "stablehlo.logistic": "sigmoid",
    "stablehlo.exponential_minus_one": "expm1", "stablehlo.log_plus_one": "log1p",
    "stablehlo.cbrt": "cbrt", "stablehlo.sine": "sin", "stablehlo.cosine": "cos",
    "stablehlo.tan": "tan", "chlo.tan": "tan", "stablehlo.floor": "floor", "stablehlo.ceil": "ceil",
    "stablehlo.sign": "sign", "chlo.erf": "erf", "chlo.erf_inv": "erfinv",
}


@rule(*FLOAT_UNARY)
def _unary(lo: Lowering, op, name: str | None = None) -> list:
    name, out = name or op.operation.name, result_type(op)
    x = lo.get(op.operands[0])
    if out.dtype in FLOATS and name == "stablehlo.sign":
        # ttnn.sign gives +0.0 for -0.0 (its SFPU kernel writes the constant 0 for any zero);
        # StableHLO's sign of a zero is that zero, sign bit included.
        zero = predicate(lo, "eq", x, Splat(0.0, None), out.shape)
        return [where(lo, zero, x, lo.emit("sign", x, result=out), out)]
    if out.dtype in FLOATS:
        return [lo.emit(FLOAT_UNARY[name], x, result=out)]
    rule_ = INT_UNARY.get(name)
    if rule_ is None:
        raise lo.unsupported(f"{name} is defined for floating-point types only")
    if out.dtype in NARROW:
        w = rule_(lo, lo.typecast(x, WIDE), like(out, WIDE))
        return [narrow_back(lo, w, out.dtype)]
    return [rule_(lo, x, out)]


@custom_call("mhlo.erf")   # jax hands chlo ops without a StableHLO decomposition over as custom calls
def _erf_call(lo: Lowering, op) -> list:
    return _unary(lo, op, "chlo.erf")


def _int_negate(lo: Lowering, x: Value, out: TensorType) -> Value:
    if out.dtype == "int32":
        return lo.emit("neg", x, result=out)
    return lo.emit("add", lo.emit("bitwise_not", x, result=out), 1, result=out)  # -x = ~x + 1


def _int_sign(lo: Lowering, x: Value, out: TensorType) -> Value:
    if out.dtype == "int32":  # (x > 0) - (x < 0), comparisons give int32 0/1
        return lo.emit("subtract", lo.emit("gt", x, 0, result=out), lo.emit("lt", x, 0, result=out), result=out)
    return lo.emit("ne", x, 0, result=out)


INT_UNARY = {
    "stablehlo.negate": _int_negate,
    "stablehlo.abs": lambda lo, x, out: lo.emit("abs", x, result=out) if out.dtype == "int32" else x,
    "stablehlo.sign": _int_sign,
}


@rule("stablehlo.round_nearest_afz", "stablehlo.round_nearest_even")
def _round(lo: Lowering, op) -> list:
    """From exact float ops (trunc, subtract, compares): t = trunc(x), f = x - t; step away
    from zero when |f| > 1/2, or |f| == 1/2 and (afz, or t is odd)."""
    out = result_type(op)
    x = lo.get(op.operands[0])
    t = lo.emit("trunc", x, result=out)
    af = lo.emit("abs", lo.emit("subtract", x, t, result=out), result=out)
    step = lo.emit("add", t, lo.emit("sign", x, result=out), result=out)
    if op.operation.name == "stablehlo.round_nearest_afz":
        up = predicate(lo, "ge", af, Splat(0.5, None), out.shape)
    else:
        half = lo.emit("multiply", lo.emit("trunc", lo.emit("multiply", t, 0.5, result=out), result=out),
                       2.0, result=out)
        odd = predicate(lo, "ne", t, half, out.shape)
        tie_odd = lo.emit("logical_and", predicate(lo, "eq", af, Splat(0.5, None), out.shape), odd,
                          result=like(out, "bfloat16"))
        up = lo.emit("logical_or", predicate(lo, "gt", af, Splat(0.5, None), out.shape), tie_odd,
                     result=like(out, "bfloat16"))
    return [where(lo, up, step, t, out)]


@rule("stablehlo.is_finite")
def _is_finite(lo: Lowering, op) -> list:
    x, out = lo.get(op.operands[0]), result_type(op)
    return [lo.typecast(lo.emit("isfinite", x, result=like(out, x.type.dtype)), out.dtype)]


# ---------------------------------------------------------------------------------------------
# binary
# ---------------------------------------------------------------------------------------------

# StableHLO op -> (ttnn op for floats and ints, commutative)
ARITH = {
    "stablehlo.add": ("add", True),
    "stablehlo.subtract": ("subtract", False),
    "stablehlo.multiply": ("multiply", True),
    "stablehlo.maximum": ("maximum", True),
    "stablehlo.minimum": ("minimum", True),
}


@rule(*ARITH)
def _arith(lo: Lowering, op) -> list:
    fn, commutative = ARITH[op.operation.name]
    out = result_type(op)
    a, b = entries(lo, op)
    if out.dtype in NARROW:
        w = binary(lo, fn, retype(lo, a, WIDE), retype(lo, b, WIDE), like(out, WIDE), commutative)
        return [narrow_back(lo, w, out.dtype)]
    return [binary(lo, fn, a, b, out, commutative)]


@rule("stablehlo.divide", "stablehlo.remainder")
def _divide(lo: Lowering, op) -> list:
    out = result_type(op)
    a, b = entries(lo, op)
    div = op.operation.name == "stablehlo.divide"
    if out.dtype in FLOATS:
        return [binary(lo, "divide" if div else "fmod", a, b, out)]
    if out.dtype in NARROW:  # exact in int32 (remainder: in uint32)
        wide = "int32" if div else WIDE
        return [narrow_back(lo, _int_divide(lo, retype(lo, a, wide), retype(lo, b, wide), like(out, wide), div),
                            out.dtype)]
    if div and out.dtype == "uint32":
        return [_u32_divide(lo, a, b, out)]
    return [_int_divide(lo, a, b, out, div)]


def _u32_divide(lo: Lowering, a, b, out: TensorType) -> Value:
    """ttnn has no unsigned divide. For b < 2^31: q0 = 2 * ((a >> 1) // b) in exact int32
    division of non-negative values, then q = q0 + (a - q0 * b >= b). For b >= 2^31:
    q = (a >= b). x / 0 = 2^32 - 1 (XLA)."""
    a = lo.materialize(a)
    i32 = like(out, "int32")
    if isinstance(b, Splat):
        bv = int(b.value)
        if bv == 0:
            return fill(lo, 2**32 - 1, out)
        if bv & (bv - 1) == 0:
            return lo.emit("logical_right_shift", a, bv.bit_length() - 1, result=out)
        if bv >= 2**31:
            return binary(lo, "ge", a, b, out)
    ah = lo.emit("bitcast", lo.emit("logical_right_shift", a, 1, result=out), dtype_attr("int32"), result=i32)
    bi = b if isinstance(b, Splat) else lo.emit("bitcast", lo.materialize(b), dtype_attr("int32"), result=i32)
    q0 = lo.emit("bitcast", binary(lo, "divide", ah, bi, i32, rounding_mode="trunc"), dtype_attr("uint32"),
                 result=out)
    q0 = lo.emit("bitwise_left_shift", q0, 1, result=out)
    r = lo.emit("subtract", a, binary(lo, "multiply", q0, b, out, True), result=out)
    q = lo.emit("add", q0, binary(lo, "ge", r, b, out), result=out)
    if isinstance(b, Splat):
        return q
    q = where(lo, predicate(lo, "ge", b, Splat(2**31, None), out.shape), binary(lo, "ge", a, b, out), q, out)
    return where(lo, predicate(lo, "eq", b, Splat(0, None), out.shape), 2**32 - 1, q, out)


def _int_divide(lo: Lowering, a, b, out: TensorType, div: bool) -> Value:
    """XLA integer division / remainder: truncating divide (ttnn rounding_mode='trunc'), fmod
    (int32) or remainder (uint32: equal for unsigned values); x / 0 = -1, x % 0 = x."""
    if div:
        r = binary(lo, "divide", a, b, out, rounding_mode="trunc")
    else:
        r = binary(lo, "fmod" if out.dtype == "int32" else "remainder", a, b, out)
    if isinstance(b, Splat) and b.value != 0:
        return r
    # XLA's x / 0 = -1 and x % 0 = x
    fb = -1 if div else int(a.value) if isinstance(a, Splat) else lo.materialize(a)
    if isinstance(b, Splat):
        return fill(lo, fb, out) if isinstance(fb, int) else fb
    return where(lo, predicate(lo, "eq", b, Splat(0, None), out.shape), fb, r, out)


@rule("stablehlo.power")
def _power(lo: Lowering, op) -> list:
    out = result_type(op)
    a, b = entries(lo, op)
    if out.dtype in FLOATS:
        return [binary(lo, "pow", a, b, out)]
    if isinstance(b, Splat) and int(b.value) >= 0 and out.dtype in ("int32", "uint32"):
        return [lo.emit("pow", lo.materialize(a), int(b.value), result=out)]
    raise lo.unsupported("integer power with a tensor (or negative) exponent: ttnn 0.81 takes only a "
                         "scalar non-negative integer exponent for integer bases")


@rule("stablehlo.atan2")
def _atan2(lo: Lowering, op) -> list:
    out = result_type(op)
    if out.dtype not in FLOATS:
        raise lo.unsupported("atan2 is defined for floating-point types only")
    return [lo.emit("atan2", *[lo.materialize(e) for e in entries(lo, op)], result=out)]  # no scalar form


@rule("stablehlo.clamp")
def _clamp(lo: Lowering, op) -> list:
    lo_, x, hi = entries(lo, op)
    out = result_type(op)
    dt = WIDE if out.dtype in NARROW else out.dtype
    lo_, x, hi = (retype(lo, e, dt) for e in (lo_, x, hi)) if dt != out.dtype else (lo_, x, hi)
    r = binary(lo, "minimum", binary(lo, "maximum", x, lo_, like(out, dt), True), hi, like(out, dt), True)
    return [lo.typecast(r, out.dtype)]


# ---------------------------------------------------------------------------------------------
# comparisons, select
# ---------------------------------------------------------------------------------------------

COMPARE = {"EQ": "eq", "NE": "ne", "LT": "lt", "LE": "le", "GT": "gt", "GE": "ge"}
SWAPPED = {"EQ": "EQ", "NE": "NE", "LT": "GT", "LE": "GE", "GT": "LT", "GE": "LE"}


@rule("stablehlo.compare")
def _compare(lo: Lowering, op) -> list:
    direction = stablehlo.ComparisonDirectionAttr(op.attributes["comparison_direction"]).value
    a, b = entries(lo, op)
    if isinstance(a, Splat) and not isinstance(b, Splat):
        a, b, direction = b, a, SWAPPED[direction]
    out = result_type(op)
    # ttnn comparisons return 0/1 in the operands' dtype unless told otherwise with dtype=;
    # booleans are bfloat16 0/1.
    kwargs = {} if dtype_of(lo, a) == out.dtype else {"dtype": dtype_attr(out.dtype)}
    return [binary(lo, COMPARE[direction], a, b, out, **kwargs)]


@rule("stablehlo.select")
def _select(lo: Lowering, op) -> list:
    out = result_type(op)
    return [lo.emit("where", *tensor_operands(lo, entries(lo, op), out.shape), result=out)]


# ---------------------------------------------------------------------------------------------
# convert
# ---------------------------------------------------------------------------------------------

def fold_convert(value, src: dtypes.ElementType, dst: dtypes.ElementType):
    """A scalar converted with XLA's semantics."""
    if dst.is_bool:
        return bool(value)
    if dst.is_float:
        return float(np.asarray(value).astype(dst.numpy))
    if src.is_float:
        if np.isnan(value):
            return 0
        info = np.iinfo(dst.numpy)
        return int(min(max(np.trunc(value), info.min), info.max))
    return int(np.asarray(int(value)).astype(np.int64).astype(dst.numpy))  # wraps


def largest_below(limit: int, dtype: str) -> float:
    """The largest value of float `dtype` (24 / 8 significant bits) not above `limit`."""
    p = 24 if dtype == "float32" else 8
    if limit < 2**p:
        return float(limit)
    ulp = 2 ** (limit.bit_length() - p)
    return float(limit // ulp * ulp)


def float_to_int(lo: Lowering, x: Value, out: TensorType) -> Value:
    """XLA: truncate, saturate, NaN -> 0; built from exact float ops so that whatever ttnn's
    typecast does with fractions, NaN or out-of-range values never matters."""
    src, (lo_i, hi_i) = x.type.dtype, INT_RANGE[out.dtype]
    ft = like(out, src)
    hi_f = largest_below(hi_i, src)
    t = lo.emit("trunc", x, result=ft)
    t = lo.emit("minimum", lo.emit("maximum", t, float(lo_i), result=ft), hi_f, result=ft)
    v = lo.typecast(t, out.dtype)
    if hi_f < hi_i:  # e.g. 2^31 - 1 has no float32: values >= 2^31 saturate to it
        v = where(lo, predicate(lo, "ge", x, Splat(float(hi_i) + 1, None), out.shape), hi_i, v, out)
    return where(lo, predicate(lo, "ne", x, x, out.shape), 0, v, out)


def int_to_int(lo: Lowering, x: Value, src: str, out: TensorType) -> Value:
    """Same-width: reinterpret (XLA wraps); narrowing: mask first; widening: exact."""
    if {src, out.dtype} == {"int32", "uint32"}:
        return lo.emit("bitcast", x, dtype_attr(out.dtype), result=out)
    if out.dtype in NARROW and (src not in NARROW or NARROW[src] > NARROW[out.dtype]):
        return lo.typecast(lo.emit("bitwise_and", x, NARROW[out.dtype], result=x.type), out.dtype)
    return lo.typecast(x, out.dtype)


@rule("stablehlo.convert")
def _convert(lo: Lowering, op) -> list:
    src, dst = host_type(op.operands[0]), host_type(op.results[0])
    entry = lo.entry(op.operands[0])
    if isinstance(entry, Splat):
        return [Splat(fold_convert(entry.value, src.element, dst.element), dst)]
    x = lo.materialize(entry)
    out = device_type(dst)
    if dst.element.is_bool and not src.element.is_bool:
        zero = 0.0 if x.type.dtype in FLOATS else 0
        return [lo.emit("ne", x, zero, result=out, dtype=dtype_attr(out.dtype))]
    if x.type.dtype == out.dtype:
        return [x]
    if out.dtype in FLOATS or src.element.is_bool:
        return [lo.typecast(x, out.dtype)]
    if x.type.dtype in FLOATS:
        return [float_to_int(lo, x, out)]
    return [int_to_int(lo, x, x.type.dtype, out)]
