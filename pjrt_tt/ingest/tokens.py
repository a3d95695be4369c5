"""Ordered effects' tokens as empty arrays.

jax orders the effects of `ordered=True` callbacks (jax.debug.print, io_callback) by
threading a `!stablehlo.token` through the program: into @main and out of it (the framework
hands a token over as a bool[0] buffer), through calls, loops and branches, and into and out
of each callback. The chip has nothing to order: a program runs its ops one after the other
on one queue, callbacks included, so a token carries no data. Every token becomes a
`tensor<0xi1>` here (the form it has at the PJRT boundary), `create_token` / `after_all`
an empty constant, and the rest of the compiler sees ordinary (empty) tensors; the callback
rule skips the token operands and results it was given (CALLBACK_TYPES_ATTR keeps which).
"""
from __future__ import annotations

import numpy as np
from jaxlib.mlir import ir

from pjrt_tt.ingest.mlir_compat import create

TOKEN = "!stablehlo.token"
_MAKERS = ("stablehlo.create_token", "stablehlo.after_all")


def tokens_as_empty_arrays(module: ir.Module, ops: list) -> None:
    """`ops`: every op of the module (ingest.parse walks it once for this and the callbacks)."""
    funcs = [op for op in ops if op.name == "func.func"]
    if not any(TOKEN in str(f.attributes["function_type"]) for f in funcs) and \
            not any(op.name in _MAKERS for op in ops):
        return
    with module.context, ir.Location.unknown():
        empty = ir.RankedTensorType.get([0], ir.IntegerType.get_signless(1))
        for op in ops:
            if op.name in _MAKERS:
                with ir.InsertionPoint(op):
                    value = create("stablehlo.constant", empty, [], {
                        "value": ir.DenseElementsAttr.get(np.zeros(0, np.bool_), type=empty)})
                op.results[0].replace_all_uses_with(value)
                op.erase()
            else:
                for r in op.results:
                    if str(r.type) == TOKEN:
                        r.set_type(empty)
                for region in op.regions:
                    for block in region.blocks:
                        for a in block.arguments:
                            if str(a.type) == TOKEN:
                                a.set_type(empty)
        for f in funcs:
            ftype = ir.FunctionType(ir.TypeAttr(f.attributes["function_type"]).value)
            swap = lambda types: [empty if str(t) == TOKEN else t for t in types]   # noqa: E731
            f.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(swap(ftype.inputs),
                                                                                 swap(ftype.results)))
