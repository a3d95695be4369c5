"""Passes over the ttnn program, run in order after lowering."""
from __future__ import annotations

from pjrt_tt.passes.data_formats import data_formats
from pjrt_tt.passes.fusion import fuse
from pjrt_tt.passes.liveness import eliminate_dead_ops, plan_frees
from pjrt_tt.program import Program

PIPELINE = [fuse, data_formats, eliminate_dead_ops, plan_frees]


def run_passes(program: Program) -> Program:
    for p in PIPELINE:
        program = p(program)
    return program
