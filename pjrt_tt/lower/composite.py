"""stablehlo.composite -> the fused ttnn op, else its decomposition.

Frameworks wrap layers in composites (`jax.lax.composite`, torch_xla's StableHLO
composites) named like "tenstorrent.gelu_tanh", "tenstorrent.layer_norm"; the op's
`decomposition` names a function of the module computing the same thing. A composite
whose name (the part after the last '.') is registered here with `@fused_composite` and whose
attributes fit the fused op is lowered to it; every other composite is lowered by lowering its
decomposition body, like a call.
"""
from __future__ import annotations

from jaxlib.mlir import ir

from pjrt_tt.lower.builder import Lowering
from pjrt_tt.lower.helpers import host_type, result_type
from pjrt_tt.lower.registry import FUSED_COMPOSITES, fused_composite, rule
from pjrt_tt.program import Attr


class _Decompose(Exception):
    """The composite does not fit its fused op: lower the decomposition."""


def _attr(a):
    for kind, get in ((ir.BoolAttr, lambda x: x.value), (ir.IntegerAttr, lambda x: x.value),
                      (ir.FloatAttr, lambda x: x.value), (ir.StringAttr, lambda x: x.value),
                      (ir.DenseIntElementsAttr, lambda x: [int(v) for v in x]),
                      (ir.DenseI64ArrayAttr, lambda x: [int(v) for v in x]),
                      (ir.ArrayAttr, lambda x: [_attr(v) for v in x])):
        if isinstance(a, kind):   # both jaxlibs hand back downcast attributes (ingest/mlir_compat.py)
            return get(a)
    return str(a)


def _attrs(op) -> dict:
    if "composite_attributes" not in op.attributes:
        return {}
    d = ir.DictAttr(op.attributes["composite_attributes"])
    return {d[i].name: _attr(d[i].attr) for i in range(len(d))}


def _float_in(lo: Lowering, op):
    out = result_type(op)
    if out.dtype not in ("float32", "bfloat16") or len(op.results) != 1:
        raise _Decompose
    x = lo.get(op.operands[0])
    if x.type != out:
        raise _Decompose
    return x, out


def _unary(fn: str, **kwargs):
    def lower(lo: Lowering, op, attrs: dict):
        x, out = _float_in(lo, op)
        return lo.emit(fn, x, result=out, **kwargs)
    return lower


fused_composite("gelu_tanh")(_unary("gelu", variant=Attr("GeluVariant.Tanh")))
for _name in ("relu", "silu", "sigmoid", "tanh",
              # pjrt_tt.jax_plugin emits jax's erf / erfc / erf_inv as "tt.*" composites (their chlo
              # ops would be expanded into polynomials by serialisation)
              "erf", "erfc", "erfinv"):
    fused_composite(_name)(_unary(_name))


@fused_composite("gelu")
def _gelu(lo: Lowering, op, attrs: dict):
    approximate = attrs.get("approximate", False)
    tanh = approximate is True or approximate == "tanh"
    x, out = _float_in(lo, op)
    return lo.emit("gelu", x, result=out, **({"variant": Attr("GeluVariant.Tanh")} if tanh else {}))


@fused_composite("softmax")
def _softmax(lo: Lowering, op, attrs: dict):
    x, out = _float_in(lo, op)
    dim = attrs.get("dim", attrs.get("axis", -1))
    if not isinstance(dim, int) or dim % max(len(out.shape), 1) != len(out.shape) - 1 or len(op.operands) != 1:
        raise _Decompose
    return lo.emit("softmax", x, result=out, dim=-1)


def _norm(fn: str):
    def lower(lo: Lowering, op, attrs: dict):
        x, out = _float_in(lo, op)
        n = out.shape[-1]
        shape = attrs.get("normalized_shape", [n])
        eps = attrs.get("epsilon", attrs.get("eps"))
        if list(shape) != [n] or not isinstance(eps, float) or len(op.operands) > 3:
            raise _Decompose
        kwargs = {}
        for name, v in zip(("weight", "bias"), op.operands[1:]):
            if host_type(v).shape not in ((n,), (1, n)):
                raise _Decompose
            kwargs[name] = lo.get(v)
        return lo.emit(fn, x, result=out, epsilon=eps, **kwargs)
    return lower


for _name in ("layer_norm", "rms_norm"):
    fused_composite(_name)(_norm(_name))


@rule("stablehlo.composite")
def _composite(lo: Lowering, op) -> list:
    name = ir.StringAttr(op.attributes["name"]).value
    lower = FUSED_COMPOSITES.get(name.rsplit(".", 1)[-1])
    if lower is not None:
        try:
            return [lower(lo, op, _attrs(op))]
        except _Decompose:
            pass
    callee = ir.FlatSymbolRefAttr(op.attributes["decomposition"]).value
    saved = lo.origin, lo.location
    results = lo.lower_block(lo.funcs[callee].regions[0].blocks[0], [lo.entry(v) for v in op.operands])
    lo.origin, lo.location = saved
    return results
