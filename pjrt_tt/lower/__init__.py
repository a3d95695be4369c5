"""StableHLO module -> ttnn program.

`lower_module` walks @main, dispatching each op to its rule in `registry.RULES`. The rule
families live beside it, one module each; importing them fills the registry.
"""
from __future__ import annotations

from jaxlib.mlir import ir

from pjrt_tt.errors import UnsupportedOp
from pjrt_tt.ingest import Parsed
from pjrt_tt.lower import data_movement, elementwise, linalg, reduce, structure  # noqa: F401
from pjrt_tt.lower import control_flow  # noqa: F401
from pjrt_tt.lower import composite, conv  # noqa: F401
from pjrt_tt.lower import indexing, windows  # noqa: F401
from pjrt_tt.lower import bitwise, random  # noqa: F401
from pjrt_tt.lower import normalization  # noqa: F401
from pjrt_tt.spmd import collectives  # noqa: F401  (SPMD rules: collectives, mesh slices)
from pjrt_tt.lower.registry import RULES, Lowering, device_type, host_type, unsupported_ops
from pjrt_tt.program import Program, Value, storage_roots

__all__ = ["lower_module", "RULES"]


def lower_module(parsed: Parsed) -> Program:
    module = parsed.module
    name = ir.StringAttr(module.operation.attributes["sym_name"]).value \
        if "sym_name" in module.operation.attributes else "main"
    random.narrow_counters(module)  # jax's uint64 PRNG counters, provably < 2^32, to uint32
    missing = unsupported_ops(module)
    if missing:
        (op, loc), others = missing[0], missing[1:]
        raise UnsupportedOp(op, loc, "no TT lowering exists for this op yet", others)
    funcs = {ir.StringAttr(op.attributes["sym_name"]).value: op
             for op in module.body.operations if op.operation.name == "func.func"}
    main = funcs["main"]
    ftype = ir.FunctionType(ir.TypeAttr(main.attributes["function_type"]).value)
    in_hosts = [host_type(t) for t in ftype.inputs]
    out_hosts = [host_type(t) for t in ftype.results]
    for i, h in enumerate(in_hosts):
        h.element.check_supported(f"argument {i} of {name}")
    for i, h in enumerate(out_hosts):
        h.element.check_supported(f"result {i} of {name}")

    lo = Lowering(funcs, name)
    inputs = [lo.new_value(device_type(h)) for h in in_hosts]
    results = lo.lower_block(main.regions[0].blocks[0], inputs)

    # Every output must be a tensor of its own: inputs, constants and repeated values are
    # cloned so that freeing one PJRT buffer never frees another's storage.
    lo.origin, lo.location = "func.return", ""
    outputs: list[Value] = []
    reserved = {v.id for v in inputs} | {c.value.id for c in lo.constants}
    roots = storage_roots(lo.ops)  # ops materialize/clone add below are never views
    for entry in results:
        v = lo.materialize(entry)
        if roots.get(v.id, v.id) in reserved:
            v = lo.emit("clone", v, result=v.type)
        reserved.add(roots.get(v.id, v.id))
        outputs.append(v)
    return Program(name=name, inputs=inputs, input_host_types=in_hosts, constants=lo.constants,
                   ops=lo.ops, outputs=outputs, output_host_types=out_hosts,
                   donated_inputs=frozenset(_donated_args(main)))


def _donated_args(main) -> list[int]:
    if "arg_attrs" not in main.attributes:
        return []
    donated = []
    for i, attrs in enumerate(ir.ArrayAttr(main.attributes["arg_attrs"])):
        d = ir.DictAttr(attrs)
        if "tf.aliasing_output" in d or "jax.buffer_donor" in d:
            donated.append(i)
    return donated
