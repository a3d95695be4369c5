"""Elementwise rules: unary and binary math, comparisons, select, clamp, convert.

Results follow XLA, not ttnn, where the two differ: integer division truncates toward zero
(x / 0 = -1, x % 0 = x), remainder takes the dividend's sign, float -> int conversion truncates
and saturates (NaN -> 0), int -> int conversion wraps. uint8 / uint16, which most ttnn ops
refuse (docs/ttnn-facts.md §1.3), are computed in uint32 and masked back. Bit ops and shifts
are in bitwise.py.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from pjrt_tt import dtypes
from pjrt_tt.lower.registry import Broadcast, Lowering, Splat, device_type, host_type, rule
from pjrt_tt.lower.structure import CUSTOM_CALLS
from pjrt_tt.program import DEVICE, ShapeArg, TensorType, Value, dtype_attr, layout_attr

FLOATS = ("float32", "bfloat16")
NARROW = {"uint8": 0xFF, "uint16": 0xFFFF}   # computed in WIDE, then masked back
WIDE = "uint32"
INT_RANGE = {"int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1),
             "uint16": (0, 2**16 - 1), "uint8": (0, 2**8 - 1)}
BITWISE = {"bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_left_shift", "bitwise_right_shift",
           "logical_right_shift"}


def result_type(op: ir.Operation, i: int = 0) -> TensorType:
    return device_type(host_type(op.results[i]))


def dtype_of(lo: Lowering, e) -> str:
    if isinstance(e, Value):
        return e.type.dtype
    return device_type(e.host).dtype if isinstance(e, (Splat, Broadcast)) else type(e).__name__



def like(t: TensorType, dtype: str) -> TensorType:
    return dataclasses.replace(t, dtype=dtype)


def fill(lo: Lowering, value, t: TensorType) -> Value:
    value = float(value) if t.dtype in FLOATS else int(value)
    return lo.emit("full", ShapeArg(t.shape), value, result=t, dtype=dtype_attr(t.dtype),
                   layout=layout_attr(t.layout), device=DEVICE)


def retype(lo: Lowering, e, dtype: str):
    """An entry converted (by value) to another device dtype, keeping splats and broadcasts lazy."""
    if isinstance(e, Splat):
        return Splat(e.value, dataclasses.replace(e.host, element=_element_for(dtype)))
    if isinstance(e, Broadcast):
        return Broadcast(lo.typecast(e.source, dtype), dataclasses.replace(e.host, element=_element_for(dtype)))
    return lo.typecast(e, dtype)


def _element_for(dtype: str):
    return next(t for t in dtypes.ELEMENT_TYPES if t.device == dtype and not t.is_bool)


def tensor_operands(lo: Lowering, entries: list, out_shape: tuple[int, ...]) -> list[Value]:
    """Operands for a ttnn elementwise op: pending broadcasts are passed un-repeated, as
    ttnn broadcasts like numpy, unless together they would not reach the result shape."""
    sources = [e.source if isinstance(e, Broadcast) else lo.materialize(e) for e in entries]
    if np.broadcast_shapes(*(v.type.shape for v in sources)) == tuple(out_shape):
        return sources
    return [lo.materialize(e) for e in entries]


def scalar_form(e, dtype: str, fn: str):
    """The Python scalar to hand ttnn's tensor-scalar form for a splat operand, or None.
    Integer scalars are bound as C++ int32 by the bitwise ops, so uint32 bit patterns
    >= 2^31 travel as their signed twin; other out-of-int32 values stay tensors."""
    if not isinstance(e, Splat):
        return None
    if dtype in FLOATS:
        return float(e.value)
    v = int(e.value)
    if fn in BITWISE and dtype == "uint32" and v >= 2**31:
        v -= 2**32
    return v if -2**31 <= v < 2**31 else None


def binary(lo: Lowering, fn: str, a, b, out: TensorType, commutative: bool = False, **kwargs) -> Value:
    """Emit a ttnn binary op on two entries, using its tensor-scalar form for a splat."""
    if isinstance(a, Splat) and not isinstance(b, Splat) and commutative:
        a, b = b, a
    if not isinstance(a, Splat):
        s = scalar_form(b, dtype_of(lo, a), fn)
        if s is not None:
            return lo.emit(fn, lo.materialize(a), s, result=out, **kwargs)
        if isinstance(b, Splat) and b.host is None:  # a rule's own constant: a (1,) tensor broadcasts
            b = fill(lo, b.value, TensorType((1,), dtype_of(lo, a)))
    return lo.emit(fn, *tensor_operands(lo, [a, b], out.shape), result=out, **kwargs)


def where(lo: Lowering, cond: Value, a, b, out: TensorType) -> Value:
    """ttnn.where with tensor branches (an integer tensor with a scalar branch is refused)."""
    ops = [cond] + [fill(lo, x, out) if isinstance(x, (int, float)) else x for x in (a, b)]
    return lo.emit("where", *tensor_operands(lo, ops, out.shape), result=out)


def predicate(lo: Lowering, fn: str, a, b, shape: tuple[int, ...]) -> Value:
    """A comparison as a bfloat16 0/1 mask (ttnn.where's favourite condition)."""
    out = TensorType(shape, "bfloat16")
    return binary(lo, fn, a, b, out, dtype=dtype_attr("bfloat16"))


def narrow_back(lo: Lowering, v: Value, dtype: str) -> Value:
    """A WIDE / int32 result wrapped to uint8 / uint16 as XLA does (mask, then a typecast that
    only sees in-range values)."""
    if dtype not in NARROW:
        return lo.typecast(v, dtype)
    return lo.typecast(lo.emit("bitwise_and", v, NARROW[dtype], result=v.type), dtype)


def entries(lo: Lowering, op) -> list:
    return [lo.entry(v) for v in op.operands]


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


# jax hands chlo ops without a StableHLO decomposition over as custom calls
for _target in ("erf",):
    CUSTOM_CALLS[f"mhlo.{_target}"] = lambda lo, op, _n=f"chlo.{_target}": _unary(lo, op, _n)


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
