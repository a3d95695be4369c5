"""Calls, barriers and the custom calls that carry no computation on one chip."""
from __future__ import annotations

from jaxlib.mlir import ir

from pjrt_tt.lower.builder import Lowering
from pjrt_tt.lower.registry import CUSTOM_CALLS, rule

# custom_call targets that are the identity on a single device.
IDENTITY_CUSTOM_CALLS = {"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape",
                         "xla.sdy.FuncResultSharding", "LayoutConstraint"}
# custom_call targets with no results that only keep their operands from XLA's dead-code
# elimination (lax.dce_sink): they change no result, so nothing runs for them
SINK_CUSTOM_CALLS = {"dce_sink"}


@rule("func.call")
def _call(lo: Lowering, op) -> list:
    callee = ir.FlatSymbolRefAttr(op.attributes["callee"]).value
    func = lo.funcs[callee]
    saved = lo.origin, lo.location
    results = lo.lower_block(func.regions[0].blocks[0], [lo.entry(v) for v in op.operands])
    lo.origin, lo.location = saved
    return results


@rule("stablehlo.optimization_barrier", "sdy.sharding_constraint")
def _barrier(lo: Lowering, op) -> list:
    return [lo.entry(v) for v in op.operands]


@rule("stablehlo.custom_call")
def _custom_call(lo: Lowering, op) -> list:
    target = ir.StringAttr(op.attributes["call_target_name"]).value
    if target in IDENTITY_CUSTOM_CALLS and len(op.operands) == len(op.results):
        return [lo.entry(v) for v in op.operands]
    if target in SINK_CUSTOM_CALLS and not op.results:
        return []
    lo.origin = f"stablehlo.custom_call @{target}"
    if target in CUSTOM_CALLS:
        return CUSTOM_CALLS[target](lo, op)
    raise lo.unsupported("this custom_call target has no TT lowering")
