"""Passes over the ttnn program, run in order after lowering.

A pass is `(program, ctx) -> program`: it reads what it needs of the compile (numerics
options, mesh shape, system, and the optimizer's options to come) from the CompileContext
the compiler built, never from ambient state. A new pass goes into PIPELINE.
"""
from __future__ import annotations

from pjrt_tt.compile_context import CompileContext
from pjrt_tt.passes.data_formats import data_formats
from pjrt_tt.passes.fusion import fuse
from pjrt_tt.passes.liveness import eliminate_dead_ops, plan_frees
from pjrt_tt.program import Program

# data formats first: fusion then sees the dtypes the program runs in (bf16-only fused ops
# such as SDPA for a float32 program compiled with tt_compute_dtype=bfloat16)
PIPELINE = [data_formats, fuse, eliminate_dead_ops, plan_frees]


def run_passes(program: Program, ctx: CompileContext) -> Program:
    for p in PIPELINE:
        program = p(program, ctx)
    return program
