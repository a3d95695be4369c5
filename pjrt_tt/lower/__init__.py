"""StableHLO module -> ttnn program.

`lower_module` walks @main, dispatching each op to its rule in `registry.RULES` (through
`Lowering.lower_block`, builder.py), after `unsupported_ops` has checked that every op the
walk can reach has a rule. The rule families live beside it, one module each; importing
them fills the registry. The SPMD rules (collectives, mesh slices) are registered by
pjrt_tt.spmd, which the compiler imports: lower/ never imports spmd/.

    registry.py   the tables (RULES, CUSTOM_CALLS, FUSED_COMPOSITES) and their decorators
    builder.py    Lowering, the builder rules emit into; Splat / Broadcast entries
    helpers.py    emitting helpers the families share
    <family>.py   the rules: elementwise, data_movement, reduce, indexing, conv, ...
"""
from __future__ import annotations

from jaxlib.mlir import ir

from pjrt_tt.compile_context import CompileContext
from pjrt_tt.errors import UnsupportedOp
from pjrt_tt.ingest import Parsed, describe_location, source_site
from pjrt_tt.lower import data_movement, elementwise, linalg, reduce, structure  # noqa: F401
from pjrt_tt.lower import control_flow  # noqa: F401
from pjrt_tt.lower import composite, conv  # noqa: F401
from pjrt_tt.lower import indexing, windows  # noqa: F401
from pjrt_tt.lower import bitwise  # noqa: F401
from pjrt_tt.lower import normalization  # noqa: F401
from pjrt_tt.lower import factorizations  # noqa: F401
from pjrt_tt.lower.builder import Lowering
from pjrt_tt.lower.helpers import host_type
from pjrt_tt.lower.registry import CUSTOM_CALLS, FUSED_COMPOSITES, RULES
from pjrt_tt import dtypes
from pjrt_tt.program import HostType, Program, Value, device_type, storage_roots

__all__ = ["lower_module", "unsupported_ops", "RULES", "CUSTOM_CALLS"]

# Ops that only structure the module; the walker handles them itself.
STRUCTURAL = {"func.return", "stablehlo.return", "func.func"}


def lower_module(parsed: Parsed, ctx: CompileContext) -> Program:
    module = parsed.module
    name = ir.StringAttr(module.operation.attributes["sym_name"]).value \
        if "sym_name" in module.operation.attributes else "main"
    missing = unsupported_ops(module)
    if missing:
        (op, loc), others = missing[0], missing[1:]
        raise UnsupportedOp(op, loc, "no TT lowering exists for this op yet", others)
    funcs = {ir.StringAttr(op.attributes["sym_name"]).value: op
             for op in module.body.operations if op.operation.name == "func.func"}
    main = funcs["main"]
    ftype = ir.FunctionType(ir.TypeAttr(main.attributes["function_type"]).value)
    # what the framework sees: the 64-bit types narrowing rewrote (carried as 32-bit values)
    boundary = parsed.boundary
    in_hosts = [_framework_type(t, boundary.inputs[i] if boundary else "", boundary and i in boundary.words)
                for i, t in enumerate(ftype.inputs)]
    out_hosts = [_framework_type(t, boundary.outputs[i] if boundary and i < len(boundary.outputs) else "")
                 for i, t in enumerate(ftype.results)]   # (the guards' min / max come last)
    for i, h in enumerate(in_hosts):
        h.element.check_supported(f"argument {i} of {name}")
    for i, h in enumerate(out_hosts):
        h.element.check_supported(f"result {i} of {name}")

    lo = Lowering(funcs, name, ctx)
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
                   donated_inputs=frozenset(_donated_args(main)),
                   input_ranges=_ranges(boundary.input_ranges if boundary else ()),
                   output_ranges=_ranges(boundary.output_ranges if boundary else ()),
                   range_limit=boundary.range_limit if boundary else "",
                   range_source=boundary.proof_source if boundary else b"",
                   guards=tuple(boundary.guards) if boundary else ())


def _ranges(ranges) -> tuple:
    """Per-value ranges, or () when none is known: the executable's per-call checks are then
    skipped outright (the usual program has no 64-bit integer)."""
    ranges = tuple(ranges)
    return ranges if any(r is not None for r in ranges) else ()


def _framework_type(t: ir.Type, logical: str, words: bool = False) -> HostType:
    """The type of a @main argument or result as the framework sees it: `logical`, the
    64-bit type narrowing replaced by its carrier (or, `words`, its uint32 words), or the
    type itself."""
    h = host_type(t)
    if logical and logical != h.element.mlir:
        element = dtypes.from_mlir(logical)
        # complex64 and words are [2, *shape] on the chip: planes (ingest/complex64.py, words64.py)
        return HostType(element, h.shape[1:] if element.is_complex or words else h.shape, bool(words))
    return h


def _donated_args(main) -> list[int]:
    if "arg_attrs" not in main.attributes:
        return []
    donated = []
    for i, attrs in enumerate(ir.ArrayAttr(main.attributes["arg_attrs"])):
        d = ir.DictAttr(attrs)
        if "tf.aliasing_output" in d or "jax.buffer_donor" in d:
            donated.append(i)
    return donated


def _nested(op):
    """op and every op inside its regions, at any depth."""
    yield op
    for region in op.operation.regions:
        for block in region.blocks:
            for inner in block.operations:
                yield from _nested(inner)


def unsupported_ops(module: ir.Module) -> list[tuple[str, str]]:
    """Every op in the module that has no lowering rule, with its source location. A
    composite's decomposition counts only where the composite is decomposed: one lowered to
    its fused op (registry.FUSED_COMPOSITES) never runs its body."""
    funcs = {ir.StringAttr(op.attributes["sym_name"]).value: op
             for op in module.body.operations if op.operation.name == "func.func"}
    sym = lambda op, attr: ir.FlatSymbolRefAttr(op.attributes[attr]).value  # noqa: E731
    found: list[tuple[str, str]] = []
    # module-level ops other than functions (sdy.mesh) carry no compute; decompositions are
    # reached through the composites that use them
    decompositions = {sym(o, "decomposition") for f in funcs.values() for o in _nested(f)
                      if o.operation.name == "stablehlo.composite"}
    # function -> (location of its first call or composite, the function holding that op)
    calls: dict[str, tuple[ir.Location, str]] = {}
    for fname, f in funcs.items():
        for o in _nested(f):
            n = o.operation.name
            c = (sym(o, "decomposition") if n == "stablehlo.composite"
                 else sym(o, "callee") if n == "func.call" else None)
            if c in funcs and c != fname:
                calls.setdefault(c, (o.location, fname))

    def caller_site(fname: str, depth: int = 0):   # where a function's ops came from in the source
        if fname not in calls or depth > len(funcs):
            return None
        loc, parent = calls[fname]
        return source_site(loc, caller_site(parent, depth + 1))

    todo = [name for name in funcs if name not in decompositions]
    seen = set(todo)
    while todo:
        func = todo.pop()
        for op in _nested(funcs[func]):
            name = op.operation.name
            if name not in RULES and name not in STRUCTURAL and name != "builtin.module":
                found.append((name, describe_location(op.location, caller_site(func))))
            callee = (sym(op, "decomposition") if name == "stablehlo.composite" and not _fuses(op)
                      else sym(op, "callee") if name == "func.call" else None)
            if callee in funcs and callee not in seen:   # a decomposed composite, a call
                seen.add(callee)
                todo.append(callee)
    return found


def _fuses(composite) -> bool:
    """Whether the composite has a fused lowering (its decomposition then runs only when
    the attributes or types do not fit the fused op, which the pre-scan cannot know)."""
    return ir.StringAttr(composite.attributes["name"]).value.rsplit(".", 1)[-1] in FUSED_COMPOSITES
