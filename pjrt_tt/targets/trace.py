"""Metal trace (compile option enable_trace): a program captured on its second run and
replayed with one call afterwards, so the host dispatches one trace instead of every op.

Run 1 is a plain run (ttnn builds and caches each op's device program; capturing a cold
program would record the builds). Run 2 copies the inputs into persistent device tensors,
captures the program run on them (begin_trace_capture / end_trace_capture) and executes the
trace. Every later run copies the new inputs into those tensors (ttnn.copy, a device-to-device
copy: PJRT buffers already live on the device) and executes the trace. The outputs handed to
the framework are clones: the next replay writes the trace's own outputs again.

A program is refused (trace_refusal) when the host takes part in running it: a loop whose
condition, a branch whose index, or any value the host reads back (a trace replays device
commands only; the host cannot decide anything in the middle of one).
"""
from __future__ import annotations

from pjrt_tt.program import HOST_OPS, HOST_READ, HostCallback, Program, Switch, While
from pjrt_tt.targets.executor import BoundProgram


def trace_refusal(program: Program) -> str | None:
    """Why `program` cannot run as a trace, or None when it can."""
    for op in program.ops:
        if isinstance(op, While):
            return (f"its loop at {op.origin} is driven by the host (the loop condition is read back "
                    f"every iteration)")
        if isinstance(op, Switch):
            return f"its branch at {op.origin} is chosen by the host (the branch index is read back)"
        if isinstance(op, HostCallback):
            return f"it calls back into Python on the host at {op.origin}"
        if op.fn == HOST_READ:
            return f"it reads a device value back to the host at {op.origin}"
        if op.fn in HOST_OPS:
            return f"the host computes part of it ({op.fn} at {op.origin})"
    return None


class TracedProgram:
    """A BoundProgram run as a trace from its second run on (see the module doc).
    `.bound` is the BoundProgram (the profile times its plain and capture runs)."""

    def __init__(self, bound: BoundProgram, ttnn, device):
        self.bound, self.ttnn, self.device = bound, ttnn, device
        self.runs = 0          # runs so far
        self.trace_id = None   # the captured trace, once run 2 made it
        self.inputs: list = []     # the persistent inputs the trace reads
        self.outputs: list = []    # the trace's own outputs (rewritten by every replay)
        self.constants: list = []  # the constants it captured (an executable's own: they do not change)
        self.prepared: list = []   # the const-eval results it captured (kept with their argument buffers)
        self._meta: list = []      # the inputs' (shape, dtype, layout) at capture
        self.replays = 0

    def run(self, inputs: list, constants: list, prepared: list | None = None) -> list:
        self.runs += 1
        if self.runs == 1:
            return self.bound.run(inputs, constants, prepared)
        ttnn = self.ttnn
        if self.trace_id is not None and not self._matches(inputs, constants, prepared or []):
            self.release()   # the inputs are not what the trace was captured for: capture again
        if self.trace_id is None:
            self._capture(inputs, constants, prepared or [])
        else:
            for src, dst in zip(inputs, self.inputs):
                ttnn.copy(src, dst)
            ttnn.execute_trace(self.device, self.trace_id, cq_id=0, blocking=False)
            self.replays += 1
        return [ttnn.clone(t) for t in self.outputs]

    @property
    def timer(self):   # the profile's per-op timer lives on the executor
        return self.bound.timer

    @timer.setter
    def timer(self, fn) -> None:
        self.bound.timer = fn

    def prepare(self, k: int, sources: list) -> tuple[list, list]:
        return self.bound.prepare(k, sources)   # const-eval blocks run outside the trace

    def _matches(self, inputs: list, constants: list, prepared: list) -> bool:
        """Constants and const-eval results are read in place by the trace: the same tensors,
        or a new capture (a weight that changed has new prepared tensors)."""
        same = lambda xs, ys: len(xs) == len(ys) and all(a is b for a, b in zip(xs, ys))  # noqa: E731
        return (same(constants, self.constants) and same(prepared, self.prepared)
                and [(tuple(t.shape), t.dtype, t.layout) for t in inputs] == self._meta)

    def _capture(self, inputs: list, constants: list, prepared: list) -> None:
        ttnn, device = self.ttnn, self.device
        self.inputs = [ttnn.clone(t) for t in inputs]   # allocated before the capture: they persist
        self._meta = [(tuple(t.shape), t.dtype, t.layout) for t in inputs]
        self.constants, self.prepared = list(constants), list(prepared)
        trace_id = ttnn.begin_trace_capture(device, cq_id=0)
        try:
            outputs = self.bound.run(self.inputs, constants, prepared or None)
        except BaseException:
            ttnn.end_trace_capture(device, trace_id, cq_id=0)
            ttnn.release_trace(device, trace_id)
            self._free(self.inputs)
            self.inputs = []
            raise
        ttnn.end_trace_capture(device, trace_id, cq_id=0)
        self.trace_id, self.outputs = trace_id, outputs
        ttnn.execute_trace(device, trace_id, cq_id=0, blocking=False)   # a capture records, this runs it

    def release(self) -> None:
        """Give the trace and its persistent tensors back (a new capture, or the executable's end)."""
        if self.trace_id is not None:
            self.ttnn.release_trace(self.device, self.trace_id)
            self.trace_id = None
            held = {id(t) for t in (*self.inputs, *self.constants, *self.prepared)}
            self._free([t for t in self.outputs if id(t) not in held])   # an output may be an input
            self._free(self.inputs)
            self.inputs, self.outputs, self.constants, self.prepared = [], [], [], []

    def _free(self, tensors: list) -> None:
        for t in {id(t): t for t in tensors}.values():
            self.ttnn.deallocate(t)
