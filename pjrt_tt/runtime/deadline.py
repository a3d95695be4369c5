"""Device calls with a deadline: a device that stops answering fails the call, not the process.

Every call that waits on the device (a program run, an upload, a host read) runs on a worker
thread while the framework's thread waits for it at most `seconds` (PJRT_TT_EXECUTE_TIMEOUT_S
or the plugin option execute_timeout_s; 0: no limit, the call then runs on the caller's
thread). Nothing is done per op: only when the deadline passes is the op the worker is in read
from the worker's stack, to name it. Per call the handoff costs ~20-45 us on this machine
(tests/benchmarks/dispatch.py), so the default is on only where a device can stop answering:
DEFAULT_SECONDS (the `device` target: 1200 s, room for first runs that build kernels; the sim
and mock run on the host: off unless set).

After a timeout the client's device is *wedged*: the call never came back, and what it left on
the device (half a program, its buffers) is unknown, so every later device call of this client
fails at once with an error saying so (a real chip that stopped answering needs a reset; the
process lives and can open a new client). Frees are skipped then (they would wait too).
"""
from __future__ import annotations

import queue
import sys
import threading
from typing import Callable

from pjrt_tt.errors import DeadlineExceeded, FailedPrecondition
from pjrt_tt.targets.executor import BoundProgram

_RUN_STEPS = BoundProgram._run_steps.__code__   # the executor's op loop (its local `op`: the op)

DEFAULT_SECONDS = {"device": 1200.0, "sim": 0.0, "mock": 0.0}   # by target name, when not set


class _Job:
    __slots__ = ("fn", "args", "done", "result", "error")

    def __init__(self, fn: Callable, args: tuple):
        self.fn, self.args, self.done = fn, args, threading.Event()
        self.result = self.error = None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except BaseException as e:   # handed to the waiting caller
            self.error = e
        self.done.set()


class _Worker(threading.Thread):
    """A daemon thread running jobs (daemon: a wedged one must not hold up the exit)."""

    def __init__(self, idle: list):
        super().__init__(name="pjrt-tt-device-call", daemon=True)
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = idle

    def run(self) -> None:
        while True:
            self.jobs.get().run()
            self._idle.append(self)


class Deadline:
    """Runs device calls, each failing with DeadlineExceeded after `seconds` (0: no limit)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.wedged: str | None = None   # why every device call now fails
        self._idle: list[_Worker] = []   # workers waiting for a job (one per concurrent caller)

    def call(self, what: str, fn: Callable, *args):
        """fn(*args) for `what` (e.g. "program jit_f"), within the deadline."""
        if self.wedged is not None:
            raise FailedPrecondition(f"{what}: the TT device is wedged: {self.wedged}; no call reaches it "
                                     f"any more (restart the process, or reset the card)")
        if not self.seconds:
            return fn(*args)
        try:
            worker = self._idle.pop()
        except IndexError:
            worker = _Worker(self._idle)
            worker.start()
        job = _Job(fn, args)
        worker.jobs.put(job)
        if not job.done.wait(self.seconds):
            where = _current_op(worker)
            self.wedged = (f"{what} did not return within {self.seconds:g} s"
                           f"{f' (in {where})' if where else ''}")
            raise DeadlineExceeded(f"{self.wedged}: the device stopped answering. Every later call "
                                   f"of this client fails; PJRT_TT_EXECUTE_TIMEOUT_S sets the limit "
                                   f"(0: none)")
        if job.error is not None:
            raise job.error
        return job.result


def _current_op(worker: threading.Thread) -> str:
    """The op the worker's innermost executor loop is at ("ttnn.exp for <source line>"), or ""."""
    frame = sys._current_frames().get(worker.ident)
    while frame is not None:
        if frame.f_code is _RUN_STEPS:
            op = frame.f_locals.get("op")
            if op is not None:
                name = f"ttnn.{op.fn}" if hasattr(op, "fn") else type(op).__name__
                return f"{name} for {op.origin}" if op.origin else name
        frame = frame.f_back
    return ""
