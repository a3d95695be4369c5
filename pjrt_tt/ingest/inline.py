"""Calls inlined into @main's body, for the rewrites that change types in @main alone.

jnp functions are outlined (a func.call of `jit(_where)`, `jit(angle)`...). A rewrite that
gives values another form in @main's own body (complex64.py's planes, words64.py's words)
inlines the calls of functions that touch those values first. MLIR's inliner pass does not
inline StableHLO, and running a pass invalidates the bindings' op handles in jaxlib 0.7.1.
"""
from __future__ import annotations

from typing import Callable

from jaxlib.mlir import ir

from pjrt_tt.ingest.attributes import source_site
from pjrt_tt.ingest.mlir_compat import as_operation, called_from


def functions(module: ir.Module) -> dict[str, ir.Operation]:
    """The module's functions by name."""
    return {ir.StringAttr(op.operation.attributes["sym_name"]).value: op.operation
            for op in module.body.operations if op.operation.name == "func.func"}


def inline_calls(module: ir.Module, entry, wanted: Callable) -> None:
    """Inlines into `entry` (@main's body) the calls (and composites) of the functions
    `wanted(func)` picks, until none is left, and erases those functions once nothing calls
    them."""
    funcs = functions(module)
    # a composite (jax's acos, asinh, ...) is a call of its decomposition for this purpose
    target = {"func.call": "callee", "stablehlo.composite": "decomposition"}
    while True:
        calls = [op.operation for op in entry.operations if op.operation.name in target]
        calls = [c for c in calls
                 if wanted(funcs.get(ir.FlatSymbolRefAttr(c.attributes[target[c.name]]).value))]
        if not calls:
            break
        for call in calls:
            callee = funcs[ir.FlatSymbolRefAttr(call.attributes[target[call.name]]).value]
            body = callee.regions[0].blocks[0]
            mapping = dict(zip(body.arguments, call.operands))
            with ir.InsertionPoint(call):
                for inner in body.operations:
                    inner = inner.operation
                    if inner.name == "func.return":
                        for r, v in zip(call.results, inner.operands):
                            r.replace_all_uses_with(mapping.get(v, v))
                        break
                    copy = as_operation(inner.clone())
                    if source_site(copy.location, None) is None:   # no frames of its own
                        called_from(copy, call.location)
                    remap(copy, mapping)
                    mapping.update(zip(inner.results, copy.results))
            call.erase()
    # the inlined functions nothing calls now go, and then those only they called (not with a
    # pass: running one invalidates the bindings' op handles in jaxlib 0.7.1)
    while True:
        used = set()

        def visit(op):
            for attr in ("callee", "decomposition"):
                if attr in op.attributes:
                    used.add(ir.FlatSymbolRefAttr(op.attributes[attr]).value)
            return ir.WalkResult.ADVANCE

        module.operation.walk(visit)
        dead = [name for name, func in funcs.items() if name != "main" and name not in used and wanted(func)]
        if not dead:
            return
        for name in dead:
            funcs.pop(name).erase()


def remap(op, mapping: dict) -> None:
    """Operands of `op` and of the ops in its regions that are callee values -> the caller's."""
    for i, v in enumerate(op.operands):
        if v in mapping:
            op.operands[i] = mapping[v]
    for region in op.regions:
        for block in region.blocks:
            for inner in block.operations:
                remap(inner.operation, mapping)
