"""The ttnn ops the lowering uses, computed with numpy on the stored values.

Every op reads its inputs' stored values (bf16 / bfp8_b values as stored), computes in float32
(integers in their own type, wrapping like the device), and writes its output through
`tensor.quantize`, i.e. rounds the way the packer does (RNE for bf16, block-float packing for
bfp8_b / bfp4_b). Elementwise ops are driven by the _UNARY and _BINARY tables below.
Ops that compute read denormal inputs as zeros and flush denormal results (`_f32`, `_out(...,
arithmetic=True)`), as Tensix arithmetic does; ops that move values keep their bits
(docs/numerics.md, "Denormals").
"""
from __future__ import annotations

import builtins as _bi
import enum
import functools
import math
import numbers
from typing import Sequence

import numpy as np

from . import fpu
from .device import MeshDevice
from .trace import _open as trace_open, check_queue, note_deallocate   # trace_open: the open captures (a list kept in place)
from .tensor import (BLOCK_DTYPES, DRAM_MEMORY_CONFIG, FLOAT_DTYPES, INT_DTYPES, DataType, Layout,
                     MemoryConfig, Shape, Tensor, _int_from_float, fatal, flush_denormals, padded_shape,
                     quantize, round_bf16, storage_numpy_dtype)

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def _need_device(op: str, *tensors) -> None:
    for t in tensors:
        if _is_tensor(t):
            t._live_value()
            if t.device() is None:
                raise fatal("input_tensor.storage_type() == StorageType::DEVICE",
                            f"ttnn.{op}: operands need to be on device (use ttnn.to_device first)")


def _need_tile(op: str, *tensors) -> None:
    for t in tensors:
        if _is_tensor(t) and t.layout != Layout.TILE:
            raise fatal("input_tensor.layout() == Layout::TILE",
                        f"ttnn.{op}: input tensors must be in TILE layout, got {t.layout!r}")


def _out(value: np.ndarray, dtype: DataType, layout: Layout, like: Tensor,
         memory_config: MemoryConfig | None = None, arithmetic: bool = False, fresh: bool = False,
         flushed: bool = False) -> Tensor:
    """Result tensor: `value` rounded to `dtype`, placed where `like` lives. `arithmetic`: the
    value was computed by the FPU / SFPU, which never produce a denormal (flushed to zero
    before the packer rounds); values an op only moves or selects keep their bits. `fresh`:
    `value` is a new array nobody else holds, so a float32 result is stored without a copy.
    `flushed`: the op cannot have made a denormal (the caller proved it), so none is looked for."""
    if dtype in BLOCK_DTYPES and layout != Layout.TILE:
        raise fatal("layout == Layout::TILE", "Layout must be Layout::TILE for bfloat8_b or bfloat4_b!")
    dev = like._device if like is not None else None
    mem = memory_config or (like._mem if like is not None else None) or DRAM_MEMORY_CONFIG
    if dtype == DataType.FLOAT32:   # flushing and copying float32 raise no floating-point warnings
        if arithmetic and not flushed:
            value = flush_denormals(value)
        keep = (fresh and type(value) is np.ndarray and value.dtype is _F32 and value.flags.c_contiguous
                and value.flags.writeable)
        v = value if keep else quantize(value, dtype)
    else:
        with np.errstate(all="ignore"):
            value = np.asarray(value)
            if arithmetic and not flushed and dtype in FLOAT_DTYPES:
                value = flush_denormals(value)
            v = quantize(value, dtype)
    t = Tensor._make(v, dtype, layout, dev, mem if dev is not None else None)
    if arithmetic and dtype in _NO_NEW_DENORMALS:   # flushed, and rounding made none
        t._arith = v
    return t


_F32 = np.dtype(np.float32)

# Formats whose rounding of a flushed float32 never gives a denormal (the smallest normal is a
# bfloat16 too); block floats can (a small element under a large shared exponent).
_NO_NEW_DENORMALS = frozenset({DataType.FLOAT32, DataType.BFLOAT16})


def _quiet(fn):
    """`fn` with numpy's floating-point warnings off (overflow to inf, 0/0 are the device's
    answers, not errors), at the least cost per call: numpy 1.x ufuncs take the error mask
    per call (`extobj`, a C-level call); numpy 2 keeps it in a context variable, set here
    directly (np.errstate builds its state anew on every entry: ~1 us of the ~7 us a small
    binary op costs, measured with tests/benchmarks/dispatch.py)."""
    if isinstance(fn, np.ufunc) and _EXTOBJ is not None:
        return functools.partial(fn, extobj=_EXTOBJ)
    if _FP_STATE is not None:
        def run(a, b):
            token = _FP_STATE.set(_IGNORE_ALL)
            try:
                return fn(a, b)
            finally:
                _FP_STATE.reset(token)
        return run

    def run(a, b):
        with np.errstate(all="ignore"):
            return fn(a, b)
    return run


try:   # numpy < 2: [buffer size, error mask (0: ignore all), callback]
    _EXTOBJ = [np.getbufsize(), 0, None]
    np.add(np.float32(1), np.float32(1), extobj=_EXTOBJ)
except TypeError:
    _EXTOBJ = None
try:   # numpy 2 (private, with np.errstate as the fallback): the state np.errstate sets
    from numpy._core._ufunc_config import _extobj_contextvar as _FP_STATE
    from numpy._core.umath import _make_extobj
    _IGNORE_ALL = _make_extobj(all="ignore")
except ImportError:
    _FP_STATE = None


def _f32(t: Tensor) -> np.ndarray:
    """A float tensor as an arithmetic op reads it: float32, denormals as zeros (Tensix)."""
    return t._arith_value()


def _f32_bits(t: Tensor) -> np.ndarray:
    """A float tensor as an op that only moves or selects values reads it: bits unchanged."""
    return t._live_value().astype(np.float32, copy=False)


def _dims(dim, rank: int) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(rank))
    dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
    out = []
    for d in dims:
        if not -_bi.max(rank, 1) <= d < _bi.max(rank, 1):
            raise fatal("dim in range", f"Unsupported dim {d} at index {len(out)}. After possible adjustment, "
                                        f"needs to be at least 0 and less than rank {rank}, or exactly 0 for a "
                                        f"rank 0 tensor.")
        out.append(d % _bi.max(rank, 1))
    return tuple(sorted(set(out)))


# ---------------------------------------------------------------------------------------------
# unary
# ---------------------------------------------------------------------------------------------

def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf
        return erf(x).astype(np.float32)
    except ImportError:  # scipy is optional
        return np.vectorize(math.erf, otypes=[np.float64])(x).astype(np.float32)


_SQRT1_2 = np.float32(1 / math.sqrt(2))


def _erfinv(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erfinv
        return erfinv(x).astype(np.float32)
    except ImportError:  # Newton on erf from a rough start (float64: converges in a few steps)
        x = np.asarray(x, np.float64)
        y = np.sign(x) * np.sqrt(-np.log1p(-np.minimum(np.abs(x), 1.0) ** 2))
        erf = np.vectorize(math.erf, otypes=[np.float64])
        for _ in range(40):
            y = y - (erf(y) - x) / (2 / math.sqrt(math.pi) * np.exp(-y * y))
        return np.where(np.abs(x) == 1, np.sign(x) * np.inf, y).astype(np.float32)


def _erfc(x: np.ndarray) -> np.ndarray:
    """1 - erf(x) without the cancellation (the tail for x >> 0 keeps its relative precision)."""
    try:
        from scipy.special import erfc
    except ImportError:  # scipy is optional
        erfc = np.vectorize(math.erfc, otypes=[np.float64])
    return np.asarray(erfc(x)).astype(np.float32)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    c = np.float32(math.sqrt(2 / math.pi))
    return np.float32(0.5) * x * (np.float32(1) + np.tanh(c * (x + np.float32(0.044715) * x * x * x)))


def _round_even(x: np.ndarray) -> np.ndarray:
    return np.round(x)  # numpy rounds halves to even, as ttnn.round (decimals=0)

# name -> (float32 function, integer function or None if ttnn rejects integer inputs)
_UNARY = {
    "neg": (np.negative, np.negative),
    "abs": (np.abs, np.abs),
    "exp": (np.exp, None),
    "log": (np.log, None),
    "sqrt": (np.sqrt, None),
    "rsqrt": (lambda x: np.float32(1) / np.sqrt(x), None),
    "tanh": (np.tanh, None),
    "sigmoid": (lambda x: np.float32(1) / (np.float32(1) + np.exp(-x)), None),
    "reciprocal": (lambda x: np.float32(1) / x, None),
    "logical_not": (lambda x: (x == 0).astype(np.float32), lambda x: (x == 0).astype(x.dtype)),
    "floor": (np.floor, None),
    "ceil": (np.ceil, None),
    "sign": (np.sign, None),
    "erf": (_erf, None),
    "erfc": (_erfc, None),
    "relu": (lambda x: np.maximum(x, np.float32(0)), lambda x: np.maximum(x, 0).astype(x.dtype)),
    "gelu": (lambda x: np.float32(0.5) * x * (np.float32(1) + _erf(x * _SQRT1_2)), None),
    "gelu_tanh": (_gelu_tanh, None),  # ttnn.gelu(variant=GeluVariant.Tanh); see gelu() below
    "square": (np.square, np.square),
    "silu": (lambda x: x / (np.float32(1) + np.exp(-x)), None),
    "sin": (np.sin, None),
    "cos": (np.cos, None),
    "log1p": (np.log1p, None),
    "expm1": (np.expm1, None),
    "isnan": (lambda x: np.isnan(x).astype(np.float32), None),
    "isinf": (lambda x: np.isinf(x).astype(np.float32), None),
    "isfinite": (lambda x: np.isfinite(x).astype(np.float32), None),
    "trunc": (np.trunc, None),
    "round": (_round_even, None),
    "cbrt": (np.cbrt, None),
    "tan": (np.tan, None),
    "atan": (np.arctan, None),
    "erfinv": (_erfinv, None),
    # bit ops: integers only here (ttnn 0.81 also accepts float inputs, which we never emit)
    "bitwise_not": (None, np.invert),
}


# (op, integer dtype) pairs ttnn 0.81 rejects although the op takes some integer dtypes
_UNARY_INT_REJECTED = {("neg", DataType.UINT32), ("neg", DataType.UINT16), ("neg", DataType.UINT8),
                       ("logical_not", DataType.UINT8), ("bitwise_not", DataType.UINT16),
                       ("bitwise_not", DataType.UINT8)}


_UNARY_OP_TYPE = {"logical_not": "LOGICAL_NOT_UNARY", "bitwise_not": "BITWISE_NOT"}
# ops that only change a float's sign bit: a denormal keeps its bits (XLA:CPU's neg / abs too)
_SIGN_BIT_OPS = frozenset({"neg", "abs"})


def _unary(name: str, x: Tensor, *, memory_config=None, output_tensor=None, **_ignored) -> Tensor:
    if not _is_tensor(x):
        raise TypeError(f"ttnn.{name}: expected a ttnn.Tensor, got {type(x).__name__}")
    _need_device(name, x)
    ffn, ifn = _UNARY[name]
    with np.errstate(all="ignore"):
        if x.dtype in INT_DTYPES:
            if ifn is None or (name, x.dtype) in _UNARY_INT_REJECTED:
                raise fatal("unary_op_supports_integer_dtype(op.type(), input_dtype)",
                            f"Unary: UnaryOpType::{_UNARY_OP_TYPE.get(name, name.upper())} does not support "
                            f"integer input dtype "
                            f"DataType::{x.dtype.name}")
            v = ifn(x._live_value())
        elif ffn is None:
            raise fatal("is_integer_dtype(input_dtype)", f"sim: ttnn.{name} on DataType::{x.dtype.name} "
                                                          f"is not modelled (the lowering never emits it)")
        elif name in _SIGN_BIT_OPS:
            return _out(ffn(_f32_bits(x)), x.dtype, x.layout, x, memory_config)
        else:
            v = ffn(_f32(x))
    return _out(v, x.dtype, x.layout, x, memory_config, arithmetic=True)


def _make_unary(name):
    def op(input_tensor, *, memory_config=None, **kwargs):
        return _unary(name, input_tensor, memory_config=memory_config, **kwargs)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"ttnn.{name}(input_tensor, *, memory_config=None) -- sim: elementwise {name}."
    return op


for _name in _UNARY:
    globals()[_name] = _make_unary(_name)
del globals()["gelu_tanh"]  # not a ttnn function: a variant of ttnn.gelu


class GeluVariant(enum.Enum):
    Accurate = 0
    FastLut = 1
    Tanh = 2


def gelu(input_tensor, *, variant=None, memory_config=None, **kwargs):
    """ttnn.gelu: the erf form (Accurate, the default; FastLut is modelled as exact too), or
    the tanh approximation with variant=GeluVariant.Tanh (jax's default gelu)."""
    name = "gelu_tanh" if variant == GeluVariant.Tanh else "gelu"
    return _unary(name, input_tensor, memory_config=memory_config, **kwargs)


# ---------------------------------------------------------------------------------------------
# binary
# ---------------------------------------------------------------------------------------------

def _b(x):  # truthiness as 1/0
    return x != 0


# name -> (kind, float32 function, integer function or None)
# kind: "arith" keeps A's dtype, "cmp"/"logical" give a 1/0 mask in the output dtype
_BINARY = {
    "add": ("arith", np.add, np.add),
    "subtract": ("arith", np.subtract, np.subtract),
    "multiply": ("arith", np.multiply, np.multiply),
    "divide": ("arith", np.divide, None),
    "maximum": ("arith", np.maximum, np.maximum),
    "minimum": ("arith", np.minimum, np.minimum),
    "pow": ("arith", np.power, np.power),
    "eq": ("cmp", np.equal, np.equal),
    "ne": ("cmp", np.not_equal, np.not_equal),
    "lt": ("cmp", np.less, np.less),
    "le": ("cmp", np.less_equal, np.less_equal),
    "gt": ("cmp", np.greater, np.greater),
    "ge": ("cmp", np.greater_equal, np.greater_equal),
    "logical_and": ("logical", lambda a, b: _b(a) & _b(b), lambda a, b: _b(a) & _b(b)),
    "logical_or": ("logical", lambda a, b: _b(a) | _b(b), lambda a, b: _b(a) | _b(b)),
    "logical_xor": ("logical", lambda a, b: _b(a) ^ _b(b), lambda a, b: _b(a) ^ _b(b)),
    "bitwise_and": ("arith", None, np.bitwise_and),
    "bitwise_or": ("arith", None, np.bitwise_or),
    "bitwise_xor": ("arith", None, np.bitwise_xor),
    "bitwise_left_shift": ("arith", None, lambda a, b: _shift(a, b, "left")),
    "bitwise_right_shift": ("arith", None, lambda a, b: _shift(a, b, "arith")),
    "logical_right_shift": ("arith", None, lambda a, b: _shift(a, b, "logical")),
    "remainder": ("arith", lambda a, b: a - b * np.floor(a / b), lambda a, b: _int_rem(a, b, np.remainder)),
    "fmod": ("arith", np.fmod, lambda a, b: _int_rem(a, b, np.fmod)),
    "atan2": ("arith", np.arctan2, None),
}


def _shift(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """Integer shifts on the stored type. Amounts outside [0, bits) give 0 (sign fill for an
    arithmetic right shift): the binary left-shift kernel does so; for the others ttnn's result
    is undocumented and the lowering never relies on it. bitwise_right_shift is arithmetic on
    int32 (the kernel flips negative inputs around a logical shift), logical on unsigned."""
    dt = np.result_type(a, b)
    bits = dt.itemsize * 8
    a, b = np.asarray(a).astype(dt), np.asarray(b).astype(np.int64)
    ok = (b >= 0) & (b < bits)
    s = np.where(ok, b, 0).astype(dt)
    if kind == "left":
        return np.where(ok, np.left_shift(a, s), 0).astype(dt)
    if kind == "arith":
        return np.where(ok, np.right_shift(a, s), np.right_shift(a, bits - 1)).astype(dt)
    u = a.view(np.dtype(f"u{dt.itemsize}")) if dt.kind == "i" else a
    return np.where(ok, np.right_shift(u, s.astype(u.dtype)), 0).astype(u.dtype).view(dt)


def _int_rem(a: np.ndarray, b: np.ndarray, fn) -> np.ndarray:
    """Integer remainder; x % 0 is not defined by ttnn: the sim gives x (XLA's answer)."""
    with np.errstate(all="ignore"):
        return np.where(b == 0, a, fn(a, np.where(b == 0, 1, b)))
_ALIASES = {"sub": "subtract", "mul": "multiply", "div": "divide"}


_SCALAR_FIRST = {"add", "subtract", "multiply", "divide", "pow"}
_BINARY_INT_REJECTED = {("divide", DataType.UINT32), ("divide", DataType.UINT16),
                        ("maximum", DataType.UINT16), ("minimum", DataType.UINT16),
                        ("logical_right_shift", DataType.UINT16), ("remainder", DataType.UINT16),
                        ("fmod", DataType.UINT32), ("fmod", DataType.UINT16)}
_OP_TYPE = {"subtract": "SUB", "multiply": "MUL", "divide": "DIV", "maximum": "MAXIMUM",
            "minimum": "MINIMUM", "pow": "POWER", "bitwise_left_shift": "LEFT_SHIFT",
            "bitwise_right_shift": "RIGHT_SHIFT"}
# ops whose Python-scalar operand is bound as a C++ int32 (larger ints: no matching overload)
_INT32_SCALAR = {"bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_left_shift", "bitwise_right_shift"}


def _broadcast_shape(sa: tuple, sb: tuple) -> tuple:
    """ttnn's broadcasting: numpy rules, except that dims beyond rank 6 must match."""
    rank = _bi.max(len(sa), len(sb))
    pa, pb = (1,) * (rank - len(sa)) + tuple(sa), (1,) * (rank - len(sb)) + tuple(sb)
    out = []
    for i, (x, y) in enumerate(zip(pa, pb)):
        if x != y and (x != 1 and y != 1 or rank - i > 6):
            if rank - i > 6:
                raise fatal("a_dim == b_dim",
                            f"Broadcasting rule violation for rank >= 7 at dimension index {i - rank} "
                            f"(output rank {rank}). Broadcast is supported up to rank 6. dim a: {x}, dim b: {y}")
            raise fatal("a_dim == b_dim", f"Broadcasting rule violation at dimension index {i - rank} "
                                          f"(output rank {rank}), dim a: {x}, dim b: {y}")
        out.append(y if x == 1 else x)
    return tuple(out)


def _scalar_array(s, dtype: DataType) -> np.ndarray:
    """A Python scalar as a 0-d array of the computation type (integers wrap like C++ casts)."""
    if dtype in INT_DTYPES:
        return np.asarray(int(s)).astype(np.int64).astype(storage_numpy_dtype(dtype))
    return np.asarray(s, np.float32)


def _activation_kinds(activations) -> tuple:
    return tuple(getattr(getattr(a, "op_type", a), "name", None) for a in activations)


def _fused_relu(name: str, activations) -> bool:
    """A binary op's `activations` (applied to its result before it is written): the sim
    models relu (ttnn.UnaryWithParam(RELU) or ttnn.UnaryOpType.RELU) and refuses the rest."""
    if not activations:
        return False
    kinds = list(_activation_kinds(activations))
    if kinds != ["RELU"]:
        raise fatal("activations", f"ttnn.{name}: fused activations {kinds} are not modelled by the sim "
                                   f"(relu only)")
    return True


# The sim's program cache: an op's checks depend only on its operands' metadata (dtype, layout,
# shape, placement; a scalar's type and value) and its options, so they run once per such key and
# the validated plan computes every later call. Failing checks are never cached: they raise each time.
_PLANS: dict = {}
_PLANS_LIMIT = 4096


def _binary_plan(name: str, a, b, dtype, memory_config, rounding_mode, activations):
    """Checks `name(a, b)` as ttnn does and returns run(a, b) -> Tensor for operands with the
    same metadata (see _PLANS)."""
    kind, ffn, ifn = _BINARY[name]
    relu = _fused_relu(name, activations)
    if not (_is_tensor(a) or _is_tensor(b)):
        raise TypeError(f"ttnn.{name}: at least one operand must be a ttnn.Tensor")
    if not _is_tensor(a) and name not in _SCALAR_FIRST:
        raise TypeError(f"{name}(): incompatible function arguments: input_tensor_a must be a "
                        f"ttnn.Tensor (only {', '.join(sorted(_SCALAR_FIRST))} take a Number first)")
    if name == "atan2" and not (_is_tensor(a) and _is_tensor(b)):
        raise TypeError("atan2(): incompatible function arguments: both operands must be ttnn.Tensor")
    if name in _INT32_SCALAR and not _is_tensor(b) and not (
            isinstance(b, numbers.Integral) and -2**31 <= int(b) < 2**31):
        raise TypeError(f"{name}(): incompatible function arguments: the scalar must be a 32-bit signed int")
    _need_device(name, a, b)
    lead = a if _is_tensor(a) else b
    da = a.dtype if _is_tensor(a) else None
    db = b.dtype if _is_tensor(b) else None
    op_type = _OP_TYPE.get(name, name.upper())
    mixed_err = fatal(
        "is_dtype_combination_supported(attributes.binary_op_type, input_tensor_a.dtype(), dtype_b)",
        f"Mixed dtype is not supported for binary operation BinaryOpType::{op_type}, "
        f"dtype A: DataType::{getattr(da, 'name', None)}, dtype B: DataType::{getattr(db, 'name', None)}")
    comp = da or db  # the result dtype (before dtype=): the first tensor operand's
    if da is not None and db is not None and da != db:
        if da in FLOAT_DTYPES and db in FLOAT_DTYPES:
            if name in ("maximum", "minimum"):
                raise mixed_err
        elif name in ("multiply", "divide") and (da in FLOAT_DTYPES) != (db in FLOAT_DTYPES) \
                and {da, db} & {DataType.INT32, DataType.UINT32}:
            comp = da if da in FLOAT_DTYPES else db  # the int operand is typecast to the float dtype
        else:
            raise mixed_err
    if name == "pow" and comp in INT_DTYPES and _is_tensor(b):
        raise fatal("!is_integer_pow_base(input.dtype())",
                    f"Input tensor A dtype DataType::{comp.name} is not supported for binary operation POWER: "
                    f"tensor exponents are not supported for integer inputs, use a scalar integer exponent")
    scalars = [s_ for s_ in (a, b) if not _is_tensor(s_)]
    fractional = [s_ for s_ in scalars if not (np.isfinite(float(s_)) and float(s_) == int(s_))]
    if comp in INT_DTYPES and fractional and name in ("multiply", "divide"):
        comp = DataType.FLOAT32  # promoted by a non-integral scalar
    if (name, comp) in _BINARY_INT_REJECTED or (comp == DataType.UINT8 and kind != "cmp"):
        raise fatal("dtype_policy::is_supported(attributes.binary_op_type, input_tensor_a.dtype())",
                    f"Input tensor A dtype DataType::{comp.name} is not supported for binary operation "
                    f"BinaryOpType::{op_type}")
    if comp == DataType.UINT8:
        comp = DataType.UINT16  # comparisons cast uint8 operands to uint16
    keep_int_via_float = False
    if comp in INT_DTYPES and fractional:
        if name in ("maximum", "minimum"):
            keep_int_via_float = True  # computed on the values, result keeps the integer dtype
        else:
            raise fatal("scalar_fits_integer_dtype(scalar_value, a_dtype)",
                        f"Binary operation BinaryOpType::{op_type} with a DataType::{comp.name} tensor "
                        f"cannot represent the scalar {fractional[0]}: only a finite integer within the "
                        f"range of DataType::{comp.name} survives being packed as one")
    int_div = name == "divide" and comp in INT_DTYPES
    if int_div:  # int32 / int32: float32 result, or int32 with rounding_mode floor / trunc
        comp = DataType.INT32 if rounding_mode in ("floor", "trunc") else DataType.FLOAT32
    is_float = comp in FLOAT_DTYPES and not int_div
    wide = int_div or keep_int_via_float  # computed in float64 (exact for every int32)
    fn = ffn if is_float or wide else ifn
    if fn is None:
        raise fatal("dtype_policy::is_supported(attributes.binary_op_type, input_tensor_a.dtype())",
                    f"Input tensor A dtype DataType::{comp.name} is not supported for binary operation "
                    f"BinaryOpType::{op_type}")

    def tensor_val(v, is_int: bool):
        if wide:
            return v.astype(np.float64)
        if is_float and is_int:
            return quantize(v, comp)  # typecast to the float operand's dtype first
        return v.astype(np.float32 if is_float else storage_numpy_dtype(comp), copy=False)

    def scalar_val(x):
        if wide:
            return np.asarray(x, np.float64)
        if is_float and comp != DataType.FLOAT32:
            # the kernel gets the scalar packed in the operand's format: bf16 (RNE) for bf16 and
            # block-float operands
            return round_bf16(np.asarray(x, np.float32))
        return _scalar_array(x, DataType.FLOAT32 if is_float else comp)

    flush = is_float and not wide   # the FPU / SFPU read denormal operands as zeros

    def operand(x):
        """Per call: the tensor's stored values as the kernel reads them. A scalar: once, now."""
        if not _is_tensor(x):
            v = scalar_val(x)
            v = flush_denormals(v) if flush else v
            return lambda _: v
        is_int = x.dtype in INT_DTYPES
        if flush and not is_int:
            return Tensor._arith_value
        if flush:
            return lambda t: flush_denormals(tensor_val(t._live_value(), is_int))
        return lambda t: tensor_val(t._live_value(), is_int)

    read_a, read_b = operand(a), operand(b)
    # a Python scalar is no tensor: ttnn takes it at any rank (rank 8 measured on mock)
    sa, sb = np.shape(read_a(a)), np.shape(read_b(b))
    shape = (_broadcast_shape(sa, sb) if _is_tensor(a) and _is_tensor(b) else np.broadcast_shapes(sa, sb))
    if relu and (not is_float or kind != "arith"):
        raise fatal("activations", f"ttnn.{name}: a fused relu is modelled for float arithmetic only")
    out_dtype = dtype or comp
    layout = lead.layout
    if out_dtype in BLOCK_DTYPES:
        layout = Layout.TILE
    a_is_lead = lead is a
    quiet_fn = _quiet(fn)
    flushed = flush and _no_new_denormals(name, kind, a, b, read_a, read_b)

    # a scalar operand's value, read once (one call less per op)
    const_a = None if _is_tensor(a) else read_a(a)
    const_b = None if _is_tensor(b) else read_b(b)

    def run(a, b) -> Tensor:
        va = read_a(a) if const_a is None else const_a
        vb = read_b(b) if const_b is None else const_b
        if int_div:  # float64 holds every int32 quotient's integer part exactly
            with np.errstate(all="ignore"):
                q = np.divide(va, vb)
            v = q.astype(np.float32) if rounding_mode is None else (
                np.floor(q) if rounding_mode == "floor" else np.trunc(q))
        elif keep_int_via_float:
            v = _int_from_float(quiet_fn(va, vb), storage_numpy_dtype(comp))
        elif name == "divide" and rounding_mode is not None:
            q = quiet_fn(va, vb)
            v = np.floor(q) if rounding_mode == "floor" else np.trunc(q)
        else:
            v = quiet_fn(va, vb)
        fresh = v.shape == shape
        if not fresh:
            v = np.broadcast_to(v, shape)
        if relu:   # (commutes with the rounding to the result dtype)
            v, fresh = np.maximum(v, np.float32(0)), True
        if kind != "arith":
            v = v.astype(np.float32)
        return _out(v, out_dtype, layout, a if a_is_lead else b, memory_config, arithmetic=True, fresh=fresh,
                    flushed=flushed)
    return run


# |s| >= 2**-102: then x + s and x - s (x flushed, float32 arithmetic) is 0 or at least 2**-126.
_ADD_SAFE = 2.0 ** -102


def _no_new_denormals(name: str, kind: str, a, b, read_a, read_b) -> bool:
    """Whether float32 `name(a, b)` on flushed operands (0 or |x| >= 2**-126) can never give a
    denormal, whatever the tensors' values: then the result is not searched for one (a pass
    over it per op). A comparison gives 0 / 1; maximum / minimum select a flushed operand;
    x * s with |s| >= 1 (or s = 0) is 0 or at least |x|; x +- s with |s| >= 2**-102 (or
    s = 0): the exact sum of two float32 whose exponents are >= -103 is a multiple of
    2**-126, so it is 0 or normal, and rounding keeps it so."""
    if kind != "arith" or name in ("maximum", "minimum"):
        return True
    if _is_tensor(a) == _is_tensor(b):
        return False
    s = float(np.asarray(read_b(b) if _is_tensor(a) else read_a(a)).reshape(()))
    if name in ("add", "subtract"):
        return s == 0 or _bi.abs(s) >= _ADD_SAFE
    if name == "multiply":
        return s == 0 or _bi.abs(s) >= 1
    return False


def _make_binary(name):
    def op(input_tensor_a, input_tensor_b, *, dtype=None, memory_config=None, rounding_mode=None,
           activations=None, **_ignored):
        a, b = input_tensor_a, input_tensor_b
        # The plan of this call's key (made and cached on first use; see _PLANS). The key: per
        # operand (dtype, layout, shape, on host?) of a tensor, (type, value) of a scalar (a float,
        # numpy's too, by its hex form: -0.0 == 0.0 and hashes alike, and sharing a plan made
        # x / -0.0 give x / 0.0's sign; a NaN, never equal, would make a plan per call); an operand's memory config is no part of it (no check reads it; the
        # result's is found per call, _out). Written out, not a helper: this runs for every binary op.
        ka = (a._dtype, a._layout, a._value.shape, a._device is None) if type(a) is Tensor else (
            (type(a), float(a).hex()) if isinstance(a, (float, np.floating)) else (type(a), a))
        kb = (b._dtype, b._layout, b._value.shape, b._device is None) if type(b) is Tensor else (
            (type(b), float(b).hex()) if isinstance(b, (float, np.floating)) else (type(b), b))
        try:
            key = (name, ka, kb, dtype, memory_config, rounding_mode,
                   _activation_kinds(activations) if activations else None)
            plan = _PLANS.get(key)
        except TypeError:   # an unhashable scalar: plan every call
            key = plan = None
        if plan is None:
            plan = _binary_plan(name, a, b, dtype, memory_config, rounding_mode, activations)
            if key is not None:
                if len(_PLANS) >= _PLANS_LIMIT:
                    _PLANS.clear()
                _PLANS[key] = plan
        return plan(a, b)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = (f"ttnn.{name}(a, b, *, dtype=None, memory_config=None) -- sim: elementwise {name} "
                  f"with numpy broadcasting; a or b may be a Python scalar.")
    return op


for _name in _BINARY:
    globals()[_name] = _make_binary(_name)
for _alias, _name in _ALIASES.items():
    globals()[_alias] = globals()[_name]


def rsub(input_tensor_a, input_tensor_b, **kwargs) -> Tensor:
    return subtract(input_tensor_b, input_tensor_a, **kwargs)  # noqa: F821 (table-made)


def where(predicate: Tensor, true_value, false_value, *, memory_config=None, output_tensor=None,
          **_ignored) -> Tensor:
    _need_device("where", predicate, true_value, false_value)
    for t in (predicate, true_value, false_value):
        if _is_tensor(t) and t.layout != Layout.TILE:
            raise fatal("input_a.layout() == Layout::TILE",
                        "Ternary operation requires tensor to be in Tile layout when working with "
                        f"non-sharded input tensor. Input tensor layout: {t.layout.value}")
    tensors = [t for t in (true_value, false_value) if _is_tensor(t)]
    cd = predicate.dtype
    mixed = fatal("dtypes match", f"ttnn.where: Mixed dtype is not supported: predicate DataType::{cd.name}, "
                                  f"value DataType::{tensors[0].dtype.name if tensors else None}")
    if len(tensors) == 2:  # the true value's dtype (a mixed pair is accepted)
        out_dtype = tensors[0].dtype
    elif tensors:  # one tensor, one scalar: a float predicate must have the tensor's dtype
        out_dtype = tensors[0].dtype
        if cd in FLOAT_DTYPES and cd != out_dtype:
            raise mixed
    else:  # two scalars: the predicate's float dtype, float32 for int32/uint32 predicates
        if cd in (DataType.UINT16, DataType.UINT8):
            raise fatal("predicate dtype is supported",
                        f"ttnn.where: scalar values need a float, INT32 or UINT32 predicate, got DataType::{cd.name}")
        out_dtype = cd if cd in FLOAT_DTYPES else DataType.FLOAT32
    is_float = out_dtype in FLOAT_DTYPES

    def val(x):
        if _is_tensor(x):
            return _f32_bits(x) if is_float else x._live_value()   # selected, not computed
        return _scalar_array(x, DataType.FLOAT32 if is_float else out_dtype)

    c = predicate._live_value() != 0
    vt, vf = val(true_value), val(false_value)
    _broadcast_shape(_broadcast_shape(c.shape, vt.shape), vf.shape)
    v = np.where(c, vt, vf)
    return _out(v, out_dtype, predicate.layout, predicate, memory_config)


# ---------------------------------------------------------------------------------------------
# matmul / linear
# ---------------------------------------------------------------------------------------------

_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "silu": "silu", "sigmoid": "sigmoid", "tanh": "tanh"}


def _matmul_value(a: Tensor, b: Tensor, transpose_a: bool, transpose_b: bool, op: str, dtype, config,
                  user_grid: bool) -> np.ndarray:
    """a @ b as the card's matrix unit computes it (fpu.py: src formats, fidelity phases, Dst
    accumulation) under `config`, or ttnn's default config for these dtypes."""
    _need_device(op, a, b)
    _need_tile(op, a, b)
    for t, which in ((a, "A"), (b, "B")):
        if t.dtype not in FLOAT_DTYPES:
            raise fatal("is_floating_point(input_tensor.dtype())",
                        f"Unsupported data format for input {which}: DataType::{t.dtype.name}")
    va, vb = _f32(a), _f32(b)
    if transpose_a and va.ndim >= 2:
        va = np.swapaxes(va, -1, -2)
    if transpose_b and vb.ndim >= 2:
        vb = np.swapaxes(vb, -1, -2)
    ka = va.shape[-1] if va.ndim else 1
    kb = vb.shape[-2] if vb.ndim >= 2 else vb.shape[0] if vb.ndim else 1
    if va.ndim == 0 or vb.ndim == 0 or ka != kb:
        raise fatal("a_shape[-1] == b_shape[-2]",
                    f"The width of the first tensor must be equal to the height of the second tensor. "
                    f"Mismatch: width={ka} height={kb}")
    a_batch, b_batch = va.shape[:-2], vb.shape[:-2]
    if any(d != 1 for d in b_batch):  # b is batched: "bmm" rules, no numpy-style broadcasting
        if va.ndim != vb.ndim:
            raise fatal("a_shape.rank() == b_shape.rank()",
                        f"Batched (non-bcast) matmul requires inputs of the same rank, got a_shape rank: "
                        f"{va.ndim} vs b_shape rank: {vb.ndim}")
        if any(d != 1 for d in a_batch) and a_batch != b_batch:
            i = next(i for i, (x, y) in enumerate(zip(a_batch, b_batch)) if x != y)
            raise fatal("a_shape[i] == b_shape[i]",
                        f"bmm (non-bcast matmul) expects input tensors of shapes BCMK*BCKN=BCMN or batch "
                        f"dimension {i} mismatch: a={a_batch[i]} vs b={b_batch[i]}")
    try:
        np.broadcast_shapes(va.shape[:-2], vb.shape[:-2])
    except ValueError:
        raise fatal("batch dims broadcast", f"ttnn.{op}: batch dimensions of {list(a.shape)} and "
                                            f"{list(b.shape)} do not broadcast") from None
    cfg = fpu.matmul_config(a.device().arch().name, a.dtype, b.dtype, dtype or a.dtype, config, user_grid)
    return fpu.fpu_matmul(va, vb, a.dtype, b.dtype, cfg)


def matmul(input_tensor_a: Tensor, input_tensor_b: Tensor, *, transpose_a: bool = False,
           transpose_b: bool = False, memory_config=None, dtype=None, program_config=None,
           activation=None, compute_kernel_config=None, core_grid=None, output_tile=None,
           optional_output_tensor=None, **_ignored) -> Tensor:
    v = _matmul_value(input_tensor_a, input_tensor_b, transpose_a, transpose_b, "matmul", dtype,
                      compute_kernel_config, core_grid is not None or program_config is not None)
    v = _activate(v, activation)
    return _out(v, dtype or input_tensor_a.dtype, Layout.TILE, input_tensor_a,
                memory_config or DRAM_MEMORY_CONFIG, arithmetic=True)


def linear(input_tensor_a: Tensor, input_tensor_b: Tensor, *, bias: Tensor | None = None,
           transpose_a: bool = False, transpose_b: bool = False, memory_config=None, dtype=None,
           program_config=None, activation=None, compute_kernel_config=None, core_grid=None,
           output_tile=None, optional_output_tensor=None, **_ignored) -> Tensor:
    v = _matmul_value(input_tensor_a, input_tensor_b, transpose_a, transpose_b, "linear", dtype,
                      compute_kernel_config, core_grid is not None or program_config is not None)
    if bias is not None:
        _need_device("linear", bias)
        _need_tile("linear", bias)
        v = v + _f32(bias)
    v = _activate(v, activation)
    return _out(v, dtype or input_tensor_a.dtype, Layout.TILE, input_tensor_a,
                memory_config or DRAM_MEMORY_CONFIG, arithmetic=True)


def _activate(v: np.ndarray, activation) -> np.ndarray:
    if activation is None:
        return v
    name = activation if isinstance(activation, str) else getattr(activation, "op_type", str(activation))
    name = str(name).lower().split(".")[-1]
    if name not in _ACTIVATIONS:
        raise fatal("activation is supported", f"sim: unsupported fused activation {activation!r}")
    with np.errstate(all="ignore"):
        return _UNARY[_ACTIVATIONS[name]][0](v.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------------------------

def _reduce(name: str, x: Tensor, dim=None, keepdim: bool = False, *, memory_config=None,
            scalar: float = 1.0, **_ignored) -> Tensor:
    _need_device(name, x)
    if name == "mean" and x.dtype in INT_DTYPES:
        raise fatal("is_floating_point(dtype)", f"ttnn.mean does not support integer inputs - got DataType::{x.dtype.name}.")
    if x.dtype not in FLOAT_DTYPES | {DataType.INT32, DataType.UINT32}:
        raise fatal("dtype is supported", "Only FLOAT32, BFLOAT16, BFLOAT8_B, and UINT32 are supported for generic "
                                          f"reduction (INT32 is supported for MAX/MIN/SUM) - got DataType::{x.dtype.name}.")
    v = x._live_value()
    axes = _dims(dim, v.ndim) if v.ndim else ()
    with np.errstate(all="ignore"):
        if x.dtype in FLOAT_DTYPES:
            v = _f32(x)
        if name == "sum":
            r = np.sum(v, axis=axes, keepdims=keepdim, dtype=v.dtype)
        elif name == "mean":
            n = math.prod(v.shape[a] for a in axes) if axes else 1
            r = np.sum(v, axis=axes, keepdims=keepdim, dtype=np.float32) * np.float32(1.0 / _bi.max(n, 1))
        elif name == "max":
            r = np.max(v, axis=axes, keepdims=keepdim) if v.size else v
        else:
            r = np.min(v, axis=axes, keepdims=keepdim) if v.size else v
        if scalar != 1.0:
            r = r * np.float32(scalar)
    # ttnn 0.81 keeps ROW_MAJOR for sum / mean of ROW_MAJOR inputs (any rank / dim); max / min tile
    layout = x.layout if name in ("sum", "mean") and x.dtype in FLOAT_DTYPES else Layout.TILE
    return _out(np.asarray(r), x.dtype, layout, x, memory_config, arithmetic=True)


def sum(input_tensor, dim=None, keepdim=False, **kwargs):  # noqa: A001 (ttnn name)
    return _reduce("sum", input_tensor, dim, keepdim, **kwargs)


def mean(input_tensor, dim=None, keepdim=False, **kwargs):
    return _reduce("mean", input_tensor, dim, keepdim, **kwargs)


def max(input_tensor, dim=None, keepdim=False, **kwargs):  # noqa: A001
    return _reduce("max", input_tensor, dim, keepdim, **kwargs)


def min(input_tensor, dim=None, keepdim=False, **kwargs):  # noqa: A001
    return _reduce("min", input_tensor, dim, keepdim, **kwargs)


def argmax(input_tensor: Tensor, dim=None, keepdim: bool = False, *, memory_config=None,
           **_ignored) -> Tensor:
    """Index of the largest element along `dim` (first on ties): a UINT32 ROW_MAJOR tensor."""
    _need_device("argmax", input_tensor)
    if input_tensor.dtype not in (DataType.BFLOAT16, DataType.FLOAT32, DataType.INT32):
        raise fatal("dtype is BFLOAT16 or FLOAT32",
                    f"ttnn.argmax: unsupported input data type DataType::{input_tensor.dtype.name}")
    if dim is None and input_tensor.layout == Layout.TILE:
        raise fatal("dim or ROW_MAJOR", "ttnn.argmax: dim=None needs a ROW_MAJOR input")
    v = _f32(input_tensor)
    if (dim is not None and input_tensor.dtype == DataType.INT32
            and _dims(dim, v.ndim)[0] != _bi.max(v.ndim - 1, 0)):
        raise fatal("normalized_dim == (rank - 1)", f"ROW_MAJOR: only argmax on the last dim is supported. "
                                                    f"Got dim={dim}, expected {v.ndim - 1}")
    if dim is None:
        r = np.argmax(v.reshape(-1))
        r = np.reshape(r, (1,) * v.ndim) if keepdim else r
    else:
        r = np.argmax(v, axis=_dims(dim, v.ndim)[0], keepdims=keepdim)
    return _out(np.asarray(r), DataType.UINT32, Layout.ROW_MAJOR, input_tensor, memory_config)


# ---------------------------------------------------------------------------------------------
# data movement
# ---------------------------------------------------------------------------------------------

def _unblock(dtype: DataType) -> DataType:
    """ttnn 0.81's slice / concat / untilize give bfloat16 results for block-float inputs."""
    return DataType.BFLOAT16 if dtype in BLOCK_DTYPES else dtype


def _same(x: Tensor, v: np.ndarray, memory_config=None, dtype=None, layout=None) -> Tensor:
    return _out(v, dtype or x.dtype, layout or x.layout, x, memory_config)


def reshape(input_tensor: Tensor, shape, *, memory_config=None, pad_value=0, **_ignored) -> Tensor:
    v = input_tensor._live_value()
    shape = tuple(int(d) for d in shape)
    if input_tensor.dtype in (DataType.UINT16, DataType.UINT8) and input_tensor.device() is not None:
        raise fatal("input_tensor_a.dtype() is BFLOAT16, FLOAT32, INT32 or UINT32",
                    "Can only work with bfloat16/float32 or int32/uint32 tensors")
    try:
        r = v.reshape(shape)
    except ValueError:
        raise fatal("logical_volume matches", f"Invalid arguments to reshape: {list(v.shape)} (volume "
                                              f"{v.size}) cannot become {list(shape)}") from None
    return _same(input_tensor, r, memory_config)


def permute(input_tensor: Tensor, dims, *, memory_config=None, pad_value=0.0, **_ignored) -> Tensor:
    v = input_tensor._live_value()
    if input_tensor.device() is None:
        raise fatal("is_device_tensor(input_tensor)", "Tensor must already be on device")
    dims = tuple(int(d) % _bi.max(v.ndim, 1) for d in dims)
    if sorted(dims) != list(range(v.ndim)):
        raise fatal("dims is a permutation", f"ttnn.permute: {list(dims)} is not a permutation of "
                                             f"the {v.ndim} dims of {list(v.shape)}")
    return _same(input_tensor, np.transpose(v, dims), memory_config)


def transpose(input_tensor: Tensor, dim1: int, dim2: int, *, memory_config=None, **_ignored) -> Tensor:
    v = input_tensor._live_value()
    return _same(input_tensor, np.swapaxes(v, dim1, dim2), memory_config)


def _refuse_uint8_tile(*tensors: Tensor) -> None:
    """ttnn 0.81 refuses uint8 TILE tensors in slice / concat / repeat / gather (measured in
    mock): those ops untilize and retilize, and uint8 cannot be tilized on device."""
    if any(t.dtype == DataType.UINT8 and t.layout == Layout.TILE for t in tensors):
        raise fatal("input dtype can be tilized",
                    "Can only tilize bfloat16/float32 or int32/uint32/uint16 or fp8_e4m3 tensors")


def slice(input_tensor: Tensor, slice_start, slice_end, slice_step=None, *, memory_config=None,
          **_ignored) -> Tensor:  # noqa: A001
    _refuse_uint8_tile(input_tensor)
    v = input_tensor._live_value()
    starts, ends = list(slice_start), list(slice_end)
    steps = list(slice_step) if slice_step is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(steps) == v.ndim:
        raise fatal("slice lists match rank", f"ttnn.slice: start/end/step must have {v.ndim} entries "
                                              f"for a tensor of shape {list(v.shape)}")
    if input_tensor.dtype in BLOCK_DTYPES and any(s != 1 for s in steps):
        raise fatal("step == 1 for bfloat8_b", "Strided slice is not supported for BFLOAT8 tensors")
    if any(s <= 0 for s in steps):
        raise fatal("step > 0", f"ttnn.slice: steps must be positive, got {steps}")
    starts = [s + d if s < 0 else s for s, d in zip(starts, v.shape)]
    ends = [e + d if e < 0 else e for e, d in zip(ends, v.shape)]
    if any(not (0 <= s <= e <= d) for s, e, d in zip(starts, ends, v.shape)):
        # (real ttnn 0.81 accepts ends past the dim and returns garbage-filled results)
        raise fatal("0 <= start <= end <= dim", f"ttnn.slice: start {starts} / end {ends} out of range for "
                                                f"shape {list(v.shape)}")
    _need_device("slice", input_tensor)
    idx = tuple(_bi.slice(s, e, st) for s, e, st in zip(starts, ends, steps))
    return _same(input_tensor, v[idx], memory_config, _unblock(input_tensor.dtype))


def concat(tensors: Sequence[Tensor], dim: int = 0, *, memory_config=None, **_ignored) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise fatal("!input_tensors.empty()", "ttnn.concat: need at least one tensor")
    first = tensors[0]
    _need_device("concat", *tensors)  # (real ttnn 0.81 aborts the process on host tensors)
    _refuse_uint8_tile(*tensors)
    for t in tensors[1:]:
        if t.dtype != first.dtype:
            raise fatal("dtypes match", f"All Tensors should have same dtypes. ({first.dtype!r} vs {t.dtype!r})")
        if t.layout != first.layout:
            raise fatal("layouts match", "ttnn.concat: expected all input tensors to be in tile layout")
    vs = [t._live_value() for t in tensors]
    try:
        v = np.concatenate(vs, axis=dim)
    except (ValueError, np.AxisError) as e:
        raise fatal("shapes match except along dim",
                    "All dimensions must be the same size except for the dimension along which the "
                    f"contenation is taking place. ({e})") from None
    return _same(first, v, memory_config, _unblock(first.dtype))


def expand(input_tensor: Tensor, output_shape, *, memory_config=None, **_ignored) -> Tensor:
    """numpy broadcast_to (with rank extension); -1 keeps a dim."""
    _need_device("expand", input_tensor)
    v = input_tensor._live_value()
    shape = list(int(d) for d in output_shape)
    off = len(shape) - v.ndim
    shape = [v.shape[i - off] if d == -1 and i >= off else d for i, d in enumerate(shape)]
    try:
        r = np.broadcast_to(v, shape)
    except ValueError:
        raise fatal("shape is expandable", f"ttnn.expand: cannot expand {list(v.shape)} to {shape}") from None
    return _same(input_tensor, r, memory_config)


def repeat(input_tensor: Tensor, repetition_vector, *, memory_config=None, **_ignored) -> Tensor:
    _refuse_uint8_tile(input_tensor)
    v = input_tensor._live_value()
    if input_tensor.device() is None:
        raise fatal("has_storage_type_of(tensor, StorageType::DEVICE)",
                    "View requires the tensor be stored on device, use reshape instead")
    reps = tuple(int(r) for r in repetition_vector)
    if len(reps) < v.ndim:
        raise fatal("repetition_vector.rank() >= input rank",
                    f"ttnn.repeat: repetition vector {list(reps)} shorter than rank {v.ndim}")
    return _same(input_tensor, np.tile(v, reps), memory_config)


def pad(input_tensor: Tensor, padding, value=0.0, *args, memory_config=None, **_ignored) -> Tensor:
    v = input_tensor._live_value()
    if args:  # legacy form pad(t, output_tensor_shape, input_tensor_start, value)
        out_shape, start, value = padding, value, args[0]
        padding = [(s, o - d - s) for o, d, s in zip(out_shape, v.shape, start)]
    padding = [tuple(p) for p in padding]
    if len(padding) < v.ndim:
        padding = [(0, 0)] * (v.ndim - len(padding)) + padding
    if any(p < 0 for pp in padding for p in pp):
        raise fatal("padding >= 0", f"ttnn.pad: negative padding {padding}")
    if input_tensor.layout == Layout.TILE and input_tensor.device() is not None and any(
            p[0] for p in padding[-2:]):
        raise fatal("front padding is zero for TILE",
                    "ttnn.pad: on device tile padding does not support front padding")
    if input_tensor.layout == Layout.TILE and input_tensor.device() is None:
        # real ttnn 0.81 returns a host TILE tensor unchanged (logical shape not padded)
        raise fatal("device tensor or ROW_MAJOR", "sim: ttnn.pad of a host TILE tensor silently does nothing "
                                                  "in ttnn 0.81; pad on device or in ROW_MAJOR layout")
    fill = value if input_tensor.dtype in FLOAT_DTYPES else int(value)
    return _same(input_tensor, np.pad(v, padding, constant_values=fill), memory_config)


def to_layout(tensor: Tensor, layout: Layout, dtype=None, memory_config=None, **_ignored) -> Tensor:
    dt = dtype or tensor.dtype
    on_device = tensor.device() is not None
    if dt in BLOCK_DTYPES and layout != Layout.TILE:
        if dtype is not None or not on_device:
            raise fatal("layout == Layout::TILE", "Only TILE layout is supported for BFLOAT8_B dtype!")
        dt = DataType.BFLOAT16  # untilizing a block-float tensor on device gives bfloat16
    if on_device and layout == Layout.TILE and tensor.layout != Layout.TILE and tensor.dtype == DataType.UINT8:
        raise fatal("input dtype can be tilized",
                    "Can only tilize bfloat16/float32 or int32/uint32/uint16 or fp8_e4m3 tensors")
    return _same(tensor, tensor._live_value(), memory_config, dt, layout)


def _convert(x: Tensor, dtype: DataType) -> np.ndarray:
    """Values of `x` converted to `dtype` (float -> int as ttnn's host conversion does it;
    quantize() then rounds floats to the target's precision and wraps integers)."""
    v = x._live_value()
    if dtype in INT_DTYPES and x.dtype in FLOAT_DTYPES:
        return _int_from_float(v, storage_numpy_dtype(dtype))
    return v


def typecast(input_tensor: Tensor, dtype: DataType, *, memory_config=None, output_tensor=None,
             **_ignored) -> Tensor:
    if dtype in BLOCK_DTYPES and input_tensor.layout != Layout.TILE:
        raise fatal("layout == Layout::TILE", "Only TILE layout is supported for BFLOAT8_B dtype!")
    return _same(input_tensor, _convert(input_tensor, dtype), memory_config, dtype)


# the pairs ttnn 0.81 documents for bitcast (the mock accepts every pair, even of unequal
# widths; what the others do is unknown, so the sim refuses them)
_BITCAST = {(DataType.UINT32, DataType.FLOAT32), (DataType.FLOAT32, DataType.UINT32),
            (DataType.UINT32, DataType.INT32), (DataType.INT32, DataType.UINT32),
            (DataType.UINT16, DataType.BFLOAT16), (DataType.BFLOAT16, DataType.UINT16)}


def bitcast(input_tensor: Tensor, dtype: DataType, *, memory_config=None, output_tensor=None,
            **_ignored) -> Tensor:
    """Reinterpret the bits (bf16 values are held as float32 whose low 16 bits are zero)."""
    _need_device("bitcast", input_tensor)
    src = input_tensor.dtype
    if src == dtype:
        return _same(input_tensor, input_tensor._live_value(), memory_config)
    if (src, dtype) not in _BITCAST:
        raise fatal("supported bitcast pair", f"sim: bitcast DataType::{src.name} -> DataType::{dtype.name} is "
                                              f"not one of the pairs ttnn documents")
    v = np.ascontiguousarray(input_tensor._live_value())
    if src == DataType.BFLOAT16:
        r = (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    elif dtype == DataType.BFLOAT16:
        r = (v.astype(np.uint32) << 16).view(np.float32)
    else:
        r = v.view(storage_numpy_dtype(dtype))
    return Tensor._make(r, dtype, input_tensor.layout, input_tensor.device(),
                        memory_config or input_tensor.memory_config())


def to_dtype(tensor: Tensor, dtype: DataType, **_ignored) -> Tensor:
    if tensor.device() is not None:
        raise fatal("tensor is on host", "ttnn.to_dtype: tensor must be on the host")
    layout = tensor.layout
    if dtype in BLOCK_DTYPES and layout != Layout.TILE:
        if tuple(tensor.padded_shape) != tuple(padded_shape(tensor.shape, Layout.TILE)):
            raise fatal("input_tensor.tensor_spec().physical_shape() == output_spec.physical_shape()",
                        f"to_dtype: Converting layout to Layout::TILE implicitly changed physical shape from "
                        f"{tuple(tensor.padded_shape)} to {tuple(padded_shape(tensor.shape, Layout.TILE))} due "
                        f"to alignment constraints. This is currently unsupported.")
        layout = Layout.TILE
    return _same(tensor, _convert(tensor, dtype), None, dtype, layout)


def clone(input_tensor: Tensor, *, dtype=None, memory_config=None, **_ignored) -> Tensor:
    dt = dtype or input_tensor.dtype
    return _same(input_tensor, _convert(input_tensor, dt), memory_config, dt)


def to_device(tensor: Tensor, device: MeshDevice, memory_config=None, **_ignored) -> Tensor:
    if tensor.device() is device:
        return tensor
    if tensor.device() is not None:
        raise fatal("tensor is on host", "ttnn.to_device: tensor is already on another device")
    return Tensor._make(tensor._live_value(), tensor.dtype, tensor.layout, device,
                        memory_config or DRAM_MEMORY_CONFIG)


def from_device(tensor: Tensor, blocking: bool = True, **_ignored) -> Tensor:
    if getattr(tensor.device(), "capturing", None) is not None:
        raise fatal("!trace_capture_active", "Reads from the device are not allowed during trace capture")
    return Tensor._make(tensor._live_value(), tensor.dtype, tensor.layout)


def copy(input_a: Tensor, input_b: Tensor, **_ignored) -> None:
    """ttnn.copy: input_a's values into input_b (same shape; converted to input_b's dtype)."""
    _need_device("copy", input_a, input_b)
    if tuple(input_a.shape) != tuple(input_b.shape):
        raise fatal("input_a.logical_shape() == input_b.logical_shape()",
                    f"ttnn.copy: shapes differ: {list(input_a.shape)} and {list(input_b.shape)}")
    input_b._overwrite(Tensor._make(quantize(_convert(input_a, input_b.dtype), input_b.dtype),
                                    input_b.dtype, input_b.layout))


def copy_host_to_device_tensor(host_tensor: Tensor, device_tensor: Tensor, cq_id=0, **_ignored) -> None:
    """ttnn.copy_host_to_device_tensor: a host tensor's values written into an allocated device
    tensor of the same shape, dtype and layout, on command queue `cq_id` (the way inputs reach
    a trace's persistent tensors; a write cannot be captured into a trace)."""
    if not isinstance(host_tensor, Tensor) or host_tensor.device() is not None:
        raise fatal("host_tensor.storage_type() == StorageType::HOST",
                    "copy_host_to_device_tensor: the source must be a host tensor")
    if not isinstance(device_tensor, Tensor) or device_tensor.device() is None:
        raise fatal("device_tensor.storage_type() == StorageType::DEVICE",
                    "copy_host_to_device_tensor: the destination must be a device tensor")
    device_tensor._live_value()
    check_queue(device_tensor.device(), cq_id)
    if getattr(device_tensor.device(), "capturing", None) is not None:
        raise fatal("!trace_capture_active", "Writes to the device are not allowed during trace capture")
    for what, a, b in (("shape", tuple(host_tensor.shape), tuple(device_tensor.shape)),
                       ("dtype", host_tensor.dtype, device_tensor.dtype),
                       ("layout", host_tensor.layout, device_tensor.layout)):
        if a != b:
            raise fatal(f"host_tensor.{what}() == device_tensor.{what}()",
                        f"copy_host_to_device_tensor: the host tensor's {what} {a} differs from the "
                        f"device tensor's {b}")
    device_tensor._overwrite(host_tensor)


def to_memory_config(tensor: Tensor, memory_config: MemoryConfig, dtype=None, **_ignored) -> Tensor:
    _need_device("to_memory_config", tensor)
    return _same(tensor, _convert(tensor, dtype or tensor.dtype), memory_config, dtype)


def deallocate(tensor: Tensor, force: bool = True) -> None:
    if trace_open:
        note_deallocate(tensor)   # a trace being captured still reads it
    tensor.deallocate(force)


def is_tensor_storage_on_device(tensor: Tensor) -> bool:
    return tensor.device() is not None


# ---------------------------------------------------------------------------------------------
# creation
# ---------------------------------------------------------------------------------------------

def full(shape, fill_value, dtype=None, layout=None, device=None, memory_config=None, **_ignored) -> Tensor:
    dtype = dtype or DataType.BFLOAT16
    layout = layout or (Layout.TILE if dtype in BLOCK_DTYPES else Layout.ROW_MAJOR)
    if dtype in BLOCK_DTYPES and layout != Layout.TILE:
        raise fatal("layout == Layout::TILE", "Only TILE layout is supported for BFLOAT8_B dtype!")
    shape = tuple(int(d) for d in shape)
    # one quantized element broadcast to the shape: no host memory is spent before the device
    # allocation has succeeded (a constant block-float group quantizes like its single value)
    one = np.full((1,), fill_value, np.float32 if dtype in FLOAT_DTYPES else np.int64)
    with np.errstate(all="ignore"):
        v = np.broadcast_to(quantize(one, dtype).reshape(()), shape)
    return Tensor._make(v, dtype, layout, device, memory_config or DRAM_MEMORY_CONFIG)


def zeros(shape, dtype=None, layout=None, device=None, memory_config=None, **kwargs) -> Tensor:
    return full(shape, 0, dtype, layout, device, memory_config)


def ones(shape, dtype=None, layout=None, device=None, memory_config=None, **kwargs) -> Tensor:
    return full(shape, 1, dtype, layout, device, memory_config)


def full_like(tensor: Tensor, fill_value, dtype=None, layout=None, device=None, memory_config=None,
              **_ignored) -> Tensor:
    return full(tensor.shape, fill_value, dtype or tensor.dtype, layout or tensor.layout,
                device or tensor.device(), memory_config)


def zeros_like(tensor, **kwargs):
    return full_like(tensor, 0, **kwargs)


def ones_like(tensor, **kwargs):
    return full_like(tensor, 1, **kwargs)


def arange(start=0, end=None, step=1, *, dtype=None, device=None, layout=None, memory_config=None,
           **_ignored) -> Tensor:
    if end is None:
        start, end = 0, start
    if not all(isinstance(v, numbers.Integral) for v in (start, end, step)):
        raise TypeError("arange(): incompatible function arguments: start, end and step must be int")
    dtype = dtype or DataType.BFLOAT16
    if dtype not in {DataType.BFLOAT16, DataType.FLOAT32, DataType.UINT16, DataType.UINT32, DataType.INT32}:
        raise fatal("dtype is supported", "Unsupported dtype")
    if step == 0 or (end - start) * step < 0:
        raise fatal("step != 0 and in direction of end",
                    "Invalid range: Step direction does not match range bounds")
    v = np.arange(start, end, step, dtype=np.float64)
    return Tensor._make(quantize(v.astype(np.float32) if dtype in FLOAT_DTYPES else v.astype(np.int64), dtype),
                        dtype, layout or Layout.ROW_MAJOR, device, memory_config or DRAM_MEMORY_CONFIG)




__all__ = [*(n for n in _UNARY if n != "gelu_tanh"), "GeluVariant", *_BINARY, *_ALIASES, "rsub", "where", "matmul", "linear", "sum", "mean", "max",
           "min", "argmax", "expand", "reshape", "permute", "transpose", "slice", "concat", "repeat", "pad", "to_layout",
           "typecast", "bitcast", "to_dtype", "clone", "to_device", "from_device", "copy", "copy_host_to_device_tensor",
           "to_memory_config",
           "deallocate", "is_tensor_storage_on_device", "full", "zeros", "ones", "full_like",
           "zeros_like", "ones_like", "arange"]
