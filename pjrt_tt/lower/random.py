"""The PRNG: jax's threefry needs only uint32 bit ops (bitwise.py) plus one 64-bit detail.

jax (threefry_partitionable, the default since 0.5) numbers the random values with a uint64
iota split into two uint32 words (`iota_2x32_shape`): iota, multiply by strides, add, shift
right by 32, convert to uint32. The chip has no 64-bit integers, but these counters are
bounded by the element count, so `narrow_counters` rewrites such uint64 computations to
uint32 before lowering when interval arithmetic proves no value reaches 2^32 (then every
op gives the same bits in 32 bits: no add or multiply wraps, and a shift right by >= 32 is 0
in both widths). Everything else 64-bit is still refused with the usual dtype error.

`stablehlo.rng_bit_generator` (jax's 'rbg' / 'unsafe_rbg' key implementations) is refused:
reproducing XLA:CPU's bits would need its Philox / ThreeFry expanders on a uint64 state.
"""
from __future__ import annotations

import numpy as np
from jaxlib.mlir import ir

from pjrt_tt.ingest import constant_array
from pjrt_tt.ingest.mlir_compat import users
from pjrt_tt.lower.builder import Lowering
from pjrt_tt.lower.registry import rule

# ops whose uint64 results may be narrowed, given narrowed uint64 operands
_SHAPE_OPS = {"stablehlo.broadcast_in_dim", "stablehlo.reshape", "stablehlo.transpose",
              "stablehlo.slice", "stablehlo.concatenate"}
_NARROWABLE = _SHAPE_OPS | {"stablehlo.constant", "stablehlo.iota", "stablehlo.add", "stablehlo.multiply",
                            "stablehlo.shift_right_logical", "stablehlo.and", "stablehlo.or",
                            "stablehlo.xor", "stablehlo.convert"}
_LIMIT = 2**32


def _is_u64(t: ir.Type) -> bool:
    return isinstance(t, ir.RankedTensorType) and str(ir.RankedTensorType(t).element_type) == "ui64"


def _u32(t: ir.Type) -> ir.Type:
    rt = ir.RankedTensorType(t)
    return ir.RankedTensorType.get(rt.shape, ir.IntegerType.get_unsigned(32))


def _bound(op, bounds: dict) -> int | None:
    """An upper bound of a uint64 result of `op`, None if unknown or not narrowable."""
    name = op.name
    ins = [bounds.get(v) if _is_u64(v.type) else None for v in op.operands]
    if name == "stablehlo.constant":
        return int(constant_array(op.attributes["value"], np.uint64).max(initial=0))
    if name == "stablehlo.iota":
        rt = ir.RankedTensorType(op.results[0].type)
        return rt.shape[ir.IntegerAttr(op.attributes["iota_dimension"]).value] - 1
    if name not in _NARROWABLE or name == "stablehlo.convert" or any(b is None for b in ins):
        return None
    if name in _SHAPE_OPS:
        return max(ins)
    a, b = ins
    if name == "stablehlo.add":
        return a + b
    if name == "stablehlo.multiply":
        return a * b
    if name == "stablehlo.shift_right_logical":
        return a  # a shift right never grows a value
    if name == "stablehlo.and":
        return min(a, b)
    return (1 << max(a, b).bit_length()) - 1  # or, xor


def narrow_counters(module: ir.Module) -> int:
    """Rewrite provably small uint64 computations to uint32; returns how many values changed."""
    with module.context, ir.Location.unknown():
        return _narrow(module)


def _narrow(module: ir.Module) -> int:
    bounds: dict = {}
    producers: list = []
    for func in module.body.operations:
        if func.operation.name != "func.func":
            continue

        def visit(op):
            for region in op.regions:
                for block in region.blocks:
                    for inner in block.operations:
                        inner = inner.operation
                        if len(inner.results) == 1 and _is_u64(inner.results[0].type):
                            b = _bound(inner, bounds)
                            if b is not None and b < _LIMIT:
                                bounds[inner.results[0]] = b
                                producers.append(inner)
                        visit(inner)
        visit(func.operation)
    # keep only values whose every user is a narrowed op or a convert out of uint64
    narrowed = {p.results[0] for p in producers}
    changed = True
    while changed:
        changed = False
        for p in list(producers):
            v = p.results[0]
            if v not in narrowed:
                continue
            for user in users(v):
                ok = user.name == "stablehlo.convert" or (
                    len(user.results) == 1 and user.results[0] in narrowed)
                if not ok:
                    narrowed.discard(v)
                    changed = True
                    break
        for p in producers:  # and whose uint64 operands are all narrowed
            v = p.results[0]
            if v in narrowed and any(_is_u64(o.type) and o not in narrowed for o in p.operands):
                narrowed.discard(v)
                changed = True
    for p in producers:
        v = p.results[0]
        if v not in narrowed:
            continue
        t = _u32(v.type)
        if p.name == "stablehlo.constant":
            data = constant_array(p.attributes["value"], np.uint64).astype(np.uint32)
            p.attributes["value"] = ir.DenseElementsAttr.get(np.ascontiguousarray(data), type=t)
        v.set_type(t)
    return len(narrowed)


@rule("stablehlo.rng_bit_generator")
def _rng_bit_generator(lo: Lowering, op) -> list:
    raise lo.unsupported("rng_bit_generator (jax's 'rbg' / 'unsafe_rbg' PRNG implementations) is not "
                         "lowered; use the default threefry implementation (jax.random.key(seed)), "
                         "which runs on the chip bit-identical to XLA:CPU")
