"""stablehlo.batch_norm_{inference,training,grad} (torch_xla emits them for nn.BatchNorm2d and
nn.LayerNorm; jax never does), decomposed into sums over the non-feature dims, rsqrt and
numpy-broadcast binary ops, with the per-feature vectors reshaped to (1,..,C,..,1)."""
from __future__ import annotations

import dataclasses
import math

from jaxlib.mlir import ir

from pjrt_tt.lower.builder import Lowering
from pjrt_tt.lower.helpers import host_type
from pjrt_tt.lower.registry import rule


class _Norm:
    """The operand's layout around the feature dim, and the ops the three rules share."""

    def __init__(self, lo: Lowering, op):
        self.lo = lo
        self.eps = ir.FloatAttr(op.attributes["epsilon"]).value
        f = ir.IntegerAttr(op.attributes["feature_index"]).value
        shape = host_type(op.operands[0]).shape
        self.features = shape[f]
        self.count = math.prod(shape) // max(self.features, 1)       # elements per feature
        self.aligned = tuple(s if d == f else 1 for d, s in enumerate(shape))
        self.others = [d for d in range(len(shape)) if d != f]
        self.x = lo.get(op.operands[0])

    def feature(self, v: ir.Value):
        """A per-feature (C,) operand, shaped to broadcast against the operand."""
        return self.lo.reshape(self.lo.get(v), self.aligned)

    def op(self, fn: str, a, b=None):
        args = (a,) if b is None else (a, b)
        return self.lo.emit(fn, *args, result=a.type)  # `a` is the larger operand wherever they differ

    def total(self, t):
        """Sum over the non-feature dims, kept aligned."""
        if not self.others:
            return t
        return self.lo.emit("sum", t, dim=self.others, keepdim=True,
                            result=dataclasses.replace(t.type, shape=self.aligned))

    def mean(self, t):
        return self.op("multiply", self.total(t), 1.0 / self.count)

    def inv_std(self, var):
        return self.op("rsqrt", self.op("add", var, self.eps))

    def vector(self, t):
        return self.lo.reshape(t, (self.features,))


@rule("stablehlo.batch_norm_inference")
def _batch_norm_inference(lo: Lowering, op) -> list:
    n = _Norm(lo, op)
    _, scale, offset, mean, var = op.operands
    gain = n.op("multiply", n.feature(scale), n.inv_std(n.feature(var)))
    centered = n.op("subtract", n.x, n.feature(mean))
    return [n.op("add", n.op("multiply", centered, gain), n.feature(offset))]


@rule("stablehlo.batch_norm_training")
def _batch_norm_training(lo: Lowering, op) -> list:
    """(output, batch mean, biased batch variance)."""
    n = _Norm(lo, op)
    _, scale, offset = op.operands
    mean = n.mean(n.x)
    centered = n.op("subtract", n.x, mean)
    var = n.mean(n.op("multiply", centered, centered))
    gain = n.op("multiply", n.feature(scale), n.inv_std(var))
    out = n.op("add", n.op("multiply", centered, gain), n.feature(offset))
    return [out, n.vector(mean), n.vector(var)]


@rule("stablehlo.batch_norm_grad")
def _batch_norm_grad(lo: Lowering, op) -> list:
    """The spec's (XLA batchnorm_expander's) formulas, with inv = 1/sqrt(var + eps), c = x - mean:
    grad_offset = sum(g), grad_scale = sum(g * c) * inv,
    grad_operand = scale * inv * (g - sum(g) / N - c * sum(g * c) * inv^2 / N)."""
    n = _Norm(lo, op)
    _, scale, mean, var, grad = op.operands
    g = lo.get(grad)
    inv = n.inv_std(n.feature(var))
    centered = n.op("subtract", n.x, n.feature(mean))
    sum_g, sum_gc = n.total(g), n.total(n.op("multiply", g, centered))
    grad_scale = n.op("multiply", sum_gc, inv)
    k = n.op("multiply", n.op("multiply", grad_scale, 1.0 / n.count), inv)  # sum(g*c) inv^2 / N
    inner = n.op("subtract", n.op("subtract", g, n.op("multiply", sum_g, 1.0 / n.count)),
                 n.op("multiply", centered, k))
    grad_x = n.op("multiply", inner, n.op("multiply", n.feature(scale), inv))
    return [grad_x, n.vector(grad_scale), n.vector(sum_g)]
