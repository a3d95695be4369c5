"""Passes over the ttnn program, run in order after lowering.

A pass is `(program, ctx) -> program` with one job: it reads what it needs of the compile
(numerics options, mesh shape, system, optimization level) from the CompileContext the
compiler built, never from ambient state; a pass that belongs to a level checks
`ctx.optimization_level` itself. A new pass goes into PIPELINE. Levels: docs/optimizer.md.
"""
from __future__ import annotations

from pjrt_tt.compile_context import CompileContext
from pjrt_tt.passes.const_eval import const_eval
from pjrt_tt.passes.data_formats import data_formats
from pjrt_tt.passes.fusion import fuse
from pjrt_tt.passes.liveness import eliminate_dead_ops, plan_frees
from pjrt_tt.passes.memory import place_activations
from pjrt_tt.passes.simplify import simplify, simplify_after_fusion
from pjrt_tt.program import Program

# data formats first: fusion then sees the dtypes the program runs in (bf16-only fused ops
# such as SDPA for a float32 program compiled with tt_compute_dtype=bfloat16); simplify
# before fusion (folded constants and dropped x*1 let the patterns match) and after it
# (transposes into matmuls, reshapes moved out of the way: fusion's patterns read both);
# const-eval once the per-call ops are final; L1 placement (level 2) on the final per-call
# ops, before frees are planned from the same lifetimes.
PIPELINE = [data_formats, simplify, fuse, simplify_after_fusion, eliminate_dead_ops, const_eval, place_activations,
            plan_frees]


def run_passes(program: Program, ctx: CompileContext) -> Program:
    for p in PIPELINE:
        program = p(program, ctx)
    return program
