"""Matrix products the rule families share (dots, and convolutions as im2col): at the
precision the op asks for, and exact for integers.

`precision_config` and `algorithm` are honoured (docs/numerics.md, "Precision of dots"):
DEFAULT is ttnn's fast default (float32 operands read as TF32); a higher request splits each
float32 operand into bfloat16 parts, x = p0 + p1 (+ p2), whose products the matrix unit
computes exactly at HiFi4 and sums in float32 (fp32_dest_acc_en), and adds the leading part
products: HIGH 3 of them, HIGHEST 6 (float32 accuracy).

Integers: ttnn.matmul takes floats only, so products are elementwise multiplies summed,
exact and wrapping as XLA's.
"""
from __future__ import annotations

import dataclasses
import math

from jaxlib.mlir.dialects import stablehlo

from pjrt_tt.lower.builder import Lowering
from pjrt_tt.lower.helpers import FLOATS, NARROW, WIDE, narrow_back, slice_
from pjrt_tt.program import Attr, Construct, TensorType, Value, dtype_attr


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How a matmul honours a precision request."""
    parts: int             # bfloat16 parts per float32 operand; 0: the operands as they are
    terms: int             # how many part products are summed (_PAIRS order)
    fp32_acc: bool = True  # float32 accumulation (Dst and the sum of the terms), else bfloat16


# Part products by decreasing size (part i is ~2^-8i of the operand): x3 drops p1*p1,
# x6 keeps everything above float32's rounding.
_PAIRS = [(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0), (1, 2), (2, 1), (2, 2)]
_PRECISIONS = {"DEFAULT": 0, "HIGH": 1, "HIGHEST": 2}
_BY_PRECISION = {1: _Plan(2, 3), 2: _Plan(3, 6)}
# (lhs type, rhs type, accumulation type, lhs components, rhs components, primitive ops) -> plan
_ALGORITHMS = {
    ("bf16", "bf16", "f32", 1, 1, 1): _Plan(1, 1),     # BF16_BF16_F32
    ("bf16", "bf16", "f32", 1, 1, 3): _Plan(2, 3),     # BF16_BF16_F32_X3
    ("bf16", "bf16", "f32", 1, 1, 6): _Plan(3, 6),     # BF16_BF16_F32_X6
    ("bf16", "bf16", "f32", 1, 1, 9): _Plan(3, 9),     # BF16_BF16_F32_X9
    ("bf16", "bf16", "bf16", 1, 1, 1): _Plan(1, 1, fp32_acc=False),   # BF16_BF16_BF16
    ("f32", "f32", "f32", 1, 1, 1): _Plan(3, 6),       # F32_F32_F32: x6 is float32-accurate
    # TF32_TF32_F32: the unpacker reads float32 as TF32 when Dst is float32 (sim/fpu.py)
    ("tf32", "tf32", "f32", 1, 1, 1): _Plan(0, 1),
    # Those the matrix unit has no single pass for run at least as accurately as asked: float16
    # values (carried in float32, exactly) multiply exactly and sum in float32 through x6, as
    # XLA:CPU computes them in float32; three TF32 passes (~21 bits) through x6 too.
    ("f16", "f16", "f32", 1, 1, 1): _Plan(3, 6),       # F16_F16_F32
    ("f16", "f16", "f16", 1, 1, 1): _Plan(3, 6),       # F16_F16_F16: float16 at the program's edge
    ("tf32", "tf32", "f32", 1, 1, 3): _Plan(3, 6),     # TF32_TF32_F32_X3
}
_SUPPORTED = ("BF16_BF16_F32, BF16_BF16_F32_X3, BF16_BF16_F32_X6, BF16_BF16_F32_X9, BF16_BF16_BF16, "
              "TF32_TF32_F32, TF32_TF32_F32_X3, F16_F16_F32, F16_F16_F16, F32_F32_F32 (or precision=HIGH / "
              "HIGHEST)")


def plan(lo: Lowering, op) -> _Plan | None:
    """What the op's algorithm / precision_config asks for; None: ttnn's default matmul."""
    attrs = op.attributes
    if "algorithm" in attrs:
        a = stablehlo.DotAlgorithm(attrs["algorithm"])
        key = (str(a.lhs_precision_type), str(a.rhs_precision_type), str(a.accumulation_type),
               a.lhs_component_count, a.rhs_component_count, a.num_primitive_operations)
        if key not in _ALGORITHMS:
            name = f"{key[0]}_{key[1]}_{key[2]}{f'_X{key[5]}' if key[5] > 1 else ''}".upper()  # jax's preset name
            raise lo.unsupported(
                f"dot algorithm {name} (lhs {key[0]}, rhs {key[1]}, accumulation {key[2]}, components {key[3]} x "
                f"{key[4]}, {key[5]} primitive operation(s)) cannot be honoured on the chip, whose matrix unit "
                f"multiplies bfloat16 / TF32 / block floats only and accumulates in float32 or bfloat16; "
                f"algorithms it runs: {_SUPPORTED}")
        return _ALGORITHMS[key]
    if "precision_config" not in attrs:
        return None
    level = max((_PRECISIONS.get(stablehlo.PrecisionAttr(p).value, 0) for p in attrs["precision_config"]),
                default=0)
    return _BY_PRECISION.get(level)


def _config(fp32_acc: bool) -> Construct:
    # HiFi4 multiplies bfloat16 exactly; ttnn uses a given config as is, so every field is set
    return Construct("WormholeComputeKernelConfig", (
        ("math_fidelity", Attr("MathFidelity.HiFi4")), ("math_approx_mode", False),
        ("fp32_dest_acc_en", fp32_acc), ("packer_l1_acc", not fp32_acc)))


def _parts(lo: Lowering, x: Value, n: int) -> list[Value]:
    """x as n bfloat16 parts, each the bf16 rounding of what the previous ones leave. The
    subtractions are exact: a part shares the remainder's leading bits, and ttnn computes a
    float32 - float32 of one shape on the SFPU in float32. Made once per operand and block."""
    if x.type.dtype != "float32":
        return [lo.typecast(x, "bfloat16")]

    def split() -> list[Value]:
        parts, rest = [], x
        for i in range(n):
            parts.append(lo.typecast(rest, "bfloat16"))
            if i + 1 < n:
                rest = lo.emit("subtract", rest, lo.typecast(parts[-1], "float32"), result=rest.type)
        return parts
    return lo.memo(("bf16 parts", x.id, n), split)


def matmul(lo: Lowering, op, lhs: Value, rhs: Value, out: TensorType) -> Value:
    """lhs @ rhs ([..., M, K] x [..., K, N]) in out's dtype, at the op's requested precision."""
    if lhs.type.dtype != rhs.type.dtype:  # mixed precision: compute in the result type
        lhs, rhs = lo.typecast(lhs, out.dtype), lo.typecast(rhs, out.dtype)
    if out.dtype not in FLOATS:
        return integer_matmul(lo, lhs, rhs, out)
    how = plan(lo, op) if lhs.type.dtype in FLOATS else None
    if how is None:
        kwargs = {} if out.dtype == lhs.type.dtype else {"dtype": dtype_attr(out.dtype)}
        return lo.emit("matmul", lhs, rhs, result=out, **kwargs)
    acc = "float32" if how.fp32_acc else "bfloat16"
    kwargs = {"dtype": dtype_attr(acc), "compute_kernel_config": _config(how.fp32_acc)}
    if how.parts == 0:
        a, b, pairs = [lhs], [rhs], [(0, 0)]
    else:
        a, b = _parts(lo, lhs, how.parts), _parts(lo, rhs, how.parts)
        pairs = [(i, j) for i, j in _PAIRS[:how.terms] if i < len(a) and j < len(b)]
    acc_type = TensorType(out.shape, acc)
    total = None
    for i, j in reversed(pairs):  # smallest first, so they add up before meeting the largest
        term = lo.emit("matmul", a[i], b[j], result=acc_type, **kwargs)
        total = term if total is None else lo.emit("add", total, term, result=acc_type)
    return lo.typecast(total, out.dtype)


# Elements of one partial product [..., M, k, N] of an integer dot (64 MB of int32).
INTEGER_PRODUCT_ELEMENTS = 1 << 24
INTEGER_MAX_CHUNKS = 256


def _exact_integer_matmul(lo: Lowering, lhs: Value, rhs: Value, out: TensorType) -> Value:
    """An integer dot, exact with XLA's wrap-around: ttnn.matmul takes floats only (it
    refuses INT32 / UINT32 inputs), and a float matmul would round products past 2^24. So
    the products are an elementwise multiply [..., M, k, 1] x [..., 1, k, N] summed over k,
    in chunks of K that keep each partial product within INTEGER_PRODUCT_ELEMENTS."""
    *batch, m, k = lhs.type.shape
    n = rhs.type.shape[-1]
    rows = math.prod(batch) * m * n
    chunk = max(1, INTEGER_PRODUCT_ELEMENTS // max(rows, 1))
    chunks = -(-k // chunk)
    if chunks > INTEGER_MAX_CHUNKS:
        raise lo.unsupported(
            f"an integer dot of {'x'.join(map(str, (*batch, m, k)))} by {k}x{n}: the chip's matrix unit "
            f"multiplies floats only, so pjrt-tt computes integer dots exactly with elementwise "
            f"products, which this size would need {chunks} steps of (at most {INTEGER_MAX_CHUNKS}); "
            f"convert the operands to float32 if rounding past 2^24 is acceptable")
    total, rank, ones = None, len(lhs.type.shape), [1] * len(lhs.type.shape)
    zeros = [0] * (rank - 2)
    for start in range(0, k, chunk):
        stop = min(k, start + chunk)
        a = slice_(lo, lhs, zeros + [0, start], [*batch, m, stop], ones)
        b = slice_(lo, rhs, zeros + [start, 0], [*batch, stop, n], ones)
        a = lo.reshape(a, (*batch, m, stop - start, 1))
        b = lo.reshape(b, (*batch, 1, stop - start, n))
        product = lo.emit("multiply", a, b, result=TensorType((*batch, m, stop - start, n), out.dtype))
        summed = lo.emit("sum", product, dim=[rank - 1], keepdim=True,
                         result=TensorType((*batch, m, 1, n), out.dtype))
        total = summed if total is None else lo.emit("add", total, summed, result=summed.type)
    return lo.reshape(total, out.shape)


def integer_matmul(lo: Lowering, lhs: Value, rhs: Value, out: TensorType) -> Value:
    """lhs @ rhs ([..., M, K] x [..., K, N]) of integers, exact and wrapping as XLA's (dots,
    and convolutions as im2col). uint8 / uint16 in WIDE (ttnn's multiply refuses them),
    wrapped back."""
    if out.dtype in NARROW:
        wide = dataclasses.replace(out, dtype=WIDE)
        product = _exact_integer_matmul(lo, lo.typecast(lhs, WIDE), lo.typecast(rhs, WIDE), wide)
        return narrow_back(lo, product, out.dtype)
    return _exact_integer_matmul(lo, lo.typecast(lhs, out.dtype), lo.typecast(rhs, out.dtype), out)
