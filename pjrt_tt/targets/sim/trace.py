"""Metal trace on the sim: begin_trace_capture / end_trace_capture / execute_trace /
release_trace, and the two queues' events, with ttnn's semantics.

Capture: between begin and end, every op whose result lands on the capturing device is
recorded (the op, its arguments, its result tensors); deallocations too. The sim computes
while it records (real ttnn only records: its results hold garbage until the first
execute_trace; the runtime always executes the trace after capturing, so no caller sees the
difference). Replay: each recorded op is computed again from the tensors it read, and its
new values are written into the *same* result tensors, so a program's outputs and every
tensor the trace made keep their identity, as trace buffers keep their addresses on a card.
Tensors the capture deallocated are read during the replay as the card's trace reads their
(freed) addresses. A replay skips the executor and its per-op dispatch: only the ops run.

What the card refuses, the sim refuses: capture without a trace region (open the device with
trace_region_size > 0), a second capture while one is open, a host read during capture,
replaying a trace that is being captured or was released.

Events: `record_event(device, cq_id)` / `wait_for_event(cq_id, event)` order two command
queues (num_command_queues=2). The sim runs every command when it is issued, so both are
bookkeeping: an event records which queue it was recorded on, and waiting for an event that
was never recorded is refused as ttnn does.
"""
from __future__ import annotations

import itertools

from .tensor import Tensor, fatal

_ids = itertools.count(1)
_open: list = []   # the captures open on any sim device: ops look for theirs only while one is
                   # (changed in place only: ops.py holds it)


class MeshTraceId(int):
    """ttnn.MeshTraceId: the handle begin_trace_capture returns."""


class _Trace:
    def __init__(self, trace_id: int, device):
        self.id, self.device = trace_id, device
        self.records: list[tuple] = []   # (fn, args, kwargs, results)
        self.freed: list[Tensor] = []    # tensors deallocated while capturing
        self.captured = False            # end_trace_capture was called


def _tensors(out) -> list:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for t in out if isinstance(t, Tensor)]
    return []


def recorded(fn):
    """`fn` (a sim op) recording itself into its device's open capture, if any."""
    def op(*args, **kwargs):
        out = fn(*args, **kwargs)
        if _open:
            results = _tensors(out)
            trace = getattr(results[0]._device, "capturing", None) if results else None
            if trace is not None:
                trace.records.append((fn, args, kwargs, results))
        return out
    op.__name__ = op.__qualname__ = getattr(fn, "__name__", "op")
    op.__doc__ = fn.__doc__
    op.__wrapped__ = fn
    return op


def note_deallocate(tensor: Tensor) -> None:
    """A deallocation during capture: the trace still reads the tensor's (freed) buffer."""
    trace = getattr(tensor._device, "capturing", None) if _open else None
    if trace is not None:
        trace.freed.append(tensor)


def begin_trace_capture(mesh_device, *, cq_id=None) -> MeshTraceId:
    if mesh_device.capturing is not None:
        raise fatal("!this->trace_capture_active", "Trace capture is already active on this device: "
                                                   "end it before beginning another")
    if not mesh_device.trace_region_size:
        raise fatal("trace_region_size > 0",
                    "Trace capture needs a trace region: open the device with trace_region_size > 0")
    trace = _Trace(MeshTraceId(next(_ids)), mesh_device)
    mesh_device.capturing = trace
    mesh_device.traces[trace.id] = trace
    _open.append(trace)
    return trace.id


def end_trace_capture(mesh_device, trace_id, *, cq_id=None) -> None:
    trace = mesh_device.traces.get(trace_id)
    if trace is None or mesh_device.capturing is not trace:
        raise fatal("trace capture is active", f"Trace {trace_id} is not being captured on this device")
    mesh_device.capturing = None
    trace.captured = True
    _open.remove(trace)


def execute_trace(mesh_device, trace_id, *, cq_id=None, blocking: bool = True) -> None:
    trace = mesh_device.traces.get(trace_id)
    if trace is None or not trace.captured:
        raise fatal("trace exists", f"Trace {trace_id} was not captured on this device (or was released)")
    revived = [t for t in trace.freed if t._deallocated]
    for t in revived:   # read where the card's trace reads: the freed buffers
        t._deallocated = False
    try:
        for fn, args, kwargs, results in trace.records:
            fresh = _tensors(fn(*args, **kwargs))
            for old, new in zip(results, fresh):
                old._overwrite(new)
                new.deallocate()
    finally:
        for t in revived:
            t._deallocated = True


def release_trace(mesh_device, trace_id) -> None:
    if mesh_device.traces.pop(trace_id, None) is None:
        raise fatal("trace exists", f"Trace {trace_id} was not captured on this device (or was released)")


class MeshEvent:
    """ttnn.MeshEvent: a point in one command queue's stream."""

    def __init__(self, device, cq_id):
        self.device, self.cq_id = device, cq_id


def record_event(mesh_device, cq_id=None, sub_device_ids=(), device_range=None) -> MeshEvent:
    check_queue(mesh_device, cq_id)
    return MeshEvent(mesh_device, cq_id)


def wait_for_event(cq_id, mesh_event) -> None:
    if not isinstance(mesh_event, MeshEvent):
        raise fatal("event is recorded", "wait_for_event: the event was never recorded")
    check_queue(mesh_event.device, cq_id)


def check_queue(mesh_device, cq_id) -> None:
    q = int(cq_id or 0)
    if not 0 <= q < mesh_device.num_command_queues:
        raise fatal("cq_id < num_hw_cqs", f"Command queue {q} does not exist: the device was opened with "
                                          f"num_command_queues={mesh_device.num_command_queues}")
