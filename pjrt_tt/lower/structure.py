"""Calls, barriers and the custom calls that carry no computation on one chip."""
from __future__ import annotations

from jaxlib.mlir import ir

from pjrt_tt import host_callbacks
from pjrt_tt.ingest import CALLBACK_TYPES_ATTR
from pjrt_tt.ingest.attributes import custom_call_target
from pjrt_tt.ingest.tokens import TOKEN
from pjrt_tt.lower.builder import Lowering, Splat
from pjrt_tt.lower.helpers import host_type
from pjrt_tt.lower.registry import CUSTOM_CALLS, custom_call, rule
from pjrt_tt.program import HostCallback, ScalarType, device_type

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
    target = custom_call_target(op)
    if target in IDENTITY_CUSTOM_CALLS and len(op.operands) == len(op.results):
        return [lo.entry(v) for v in op.operands]
    if target in SINK_CUSTOM_CALLS and not op.results:
        return []
    lo.origin = f"stablehlo.custom_call @{target}"
    if target in CUSTOM_CALLS:
        return CUSTOM_CALLS[target](lo, op)
    raise lo.unsupported("this custom_call target has no TT lowering")


@custom_call(host_callbacks.TARGET)
def _python_callback(lo: Lowering, op) -> list:
    """A Python callback (jax_plugin.py, host_callbacks.py): its operands in the form the
    framework's arrays take on the chip, read back and handed to the callable as those
    arrays (CALLBACK_TYPES_ATTR: the types before float16 / int64 / complex64 were carried in
    others), its results uploaded in that form."""
    noted = [ir.TypeAttr(t).value for t in ir.ArrayAttr(op.attributes[CALLBACK_TYPES_ATTR])]
    n = len(op.operands)
    token = [str(t) == TOKEN for t in noted]   # (ordered effects: nothing to pass, ingest/tokens.py)
    hosts_in = [host_type(t) for t, tok in zip(noted[:n], token[:n]) if not tok]
    hosts_out = [host_type(t) for t, tok in zip(noted[n:], token[n:]) if not tok]
    args = [lo.typecast(lo.get(v), device_type(h).dtype)
            for v, h in zip([v for v, tok in zip(op.operands, token) if not tok], hosts_in)]
    results = [lo.new_value(device_type(h)) for h in hosts_out] or [lo.new_value(ScalarType("int"))]
    effect = "has_side_effect" in op.attributes and ir.BoolAttr(op.attributes["has_side_effect"]).value
    origin = f"{lo.origin} {lo.location}" if lo.location else lo.origin
    lo.ops.append(HostCallback(args, hosts_in, results, hosts_out,
                               int(ir.StringAttr(op.attributes["backend_config"]).value), effect, origin))
    made = iter(results)
    return [Splat(False, host_type(r)) if tok else next(made) for r, tok in zip(op.results, token[n:])]
