"""dot_general -> ttnn.matmul.

Any dot_general is brought to ttnn's batched form [B..., M, K] x [B..., K, N] by
permuting and reshaping the operands, then reshaped back to StableHLO's result order
(batch dims, lhs free dims, rhs free dims), and multiplied at the precision it asks for
(matmul.py).
"""
from __future__ import annotations

import math

from jaxlib.mlir.dialects import stablehlo

from pjrt_tt.lower.builder import Lowering
from pjrt_tt.lower.helpers import host_type, result_type
from pjrt_tt.lower.matmul import matmul
from pjrt_tt.lower.registry import rule
from pjrt_tt.program import TensorType


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
    product = matmul(lo, op, lhs, rhs, TensorType((*batch, m, n), out.dtype))
    return [lo.reshape(product, out.shape)]


@rule("stablehlo.dot")
def _dot(lo: Lowering, op) -> list:
    lhs_rank = len(host_type(op.operands[0]).shape)
    x, y = lo.get(op.operands[0]), lo.get(op.operands[1])
    m = host_type(op.operands[0]).shape[0] if lhs_rank == 2 else 1
    k = host_type(op.operands[0]).shape[-1]
    n = host_type(op.operands[1]).shape[-1] if len(host_type(op.operands[1]).shape) == 2 else 1
    out = result_type(op)
    product = matmul(lo, op, lo.reshape(x, (m, k)), lo.reshape(y, (k, n)), TensorType((m, n), out.dtype))
    return [lo.reshape(product, out.shape)]
