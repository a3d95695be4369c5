"""dot_general -> ttnn.matmul.

Any dot_general is brought to ttnn's batched form [B..., M, K] x [B..., K, N] by
permuting and reshaping the operands, then reshaped back to StableHLO's result order
(batch dims, lhs free dims, rhs free dims).
"""
from __future__ import annotations

import math

from jaxlib.mlir.dialects import stablehlo

from pjrt_tt.lower.builder import Lowering
from pjrt_tt.lower.helpers import host_type, result_type
from pjrt_tt.lower.registry import rule
from pjrt_tt.program import TensorType, dtype_attr


@rule("stablehlo.dot_general")
def _dot_general(lo: Lowering, op) -> list:
    dims = stablehlo.DotDimensionNumbers(op.attributes["dot_dimension_numbers"])
    lb, lc = list(dims.lhs_batching_dimensions), list(dims.lhs_contracting_dimensions)
    rb, rc = list(dims.rhs_batching_dimensions), list(dims.rhs_contracting_dimensions)
    lhs_shape, rhs_shape = host_type(op.operands[0]).shape, host_type(op.operands[1]).shape
    lf = [d for d in range(len(lhs_shape)) if d not in lb + lc]
    rf = [d for d in range(len(rhs_shape)) if d not in rb + rc]
    batch = [lhs_shape[d] for d in lb]
    m = math.prod(lhs_shape[d] for d in lf)
    n = math.prod(rhs_shape[d] for d in rf)
    k = math.prod(lhs_shape[d] for d in lc)

    lhs = lo.reshape(lo.permute(lo.get(op.operands[0]), lb + lf + lc), (*batch, m, k))
    rhs = lo.reshape(lo.permute(lo.get(op.operands[1]), rb + rc + rf), (*batch, k, n))
    out = result_type(op)
    if lhs.type.dtype != rhs.type.dtype:  # mixed precision: compute in the result type
        lhs, rhs = lo.typecast(lhs, out.dtype), lo.typecast(rhs, out.dtype)
    kwargs = {} if out.dtype == lhs.type.dtype else {"dtype": dtype_attr(out.dtype)}
    product = lo.emit("matmul", lhs, rhs, result=TensorType((*batch, m, n), out.dtype), **kwargs)
    return [lo.reshape(product, out.shape)]


@rule("stablehlo.dot")
def _dot(lo: Lowering, op) -> list:
    lhs_rank = len(host_type(op.operands[0]).shape)
    x, y = lo.get(op.operands[0]), lo.get(op.operands[1])
    m = host_type(op.operands[0]).shape[0] if lhs_rank == 2 else 1
    k = host_type(op.operands[0]).shape[-1]
    n = host_type(op.operands[1]).shape[-1] if len(host_type(op.operands[1]).shape) == 2 else 1
    out = result_type(op)
    product = lo.emit("matmul", lo.reshape(x, (m, k)), lo.reshape(y, (k, n)),
                      result=TensorType((m, n), out.dtype))
    return [lo.reshape(product, out.shape)]
