"""The conformance check: every program also runs once on real ttnn (mock cluster).

A program the sim accepts must be one real ttnn accepts. The check runs it once on a
`TtnnTarget.mock` of the same system, on an R x C submesh (1x1: one chip) with zeros in,
and runs every loop body and every case branch once whatever the host reads say (reads are
zeros on mock), so every op meets real ttnn; the executor checks each result's shape,
dtype and layout against the program. The compiler calls it for each new program:

    check = ConformanceCheck(system)     # runtime/client.py, when PJRT_TT_CHECK_WITH_MOCK=1
    check(program, mesh_shape)           # raises what real ttnn refused, naming the op

A mesh that is not a submesh of the mocked system cannot be checked: the check records a
`NotASubmesh` in `UNCHECKED`, says so on stderr (tests and CI count and report those
lines) and returns.

In a multi-process run (several processes share the system: systems.Processes) each process
opens the mock as its host of a multi-host mesh (mock.open(hosts=...)), ttnn's only choice
inside an MPI job, and checks each program on a submesh of the program's shape: one of its
own chips only when there is one (a process-local program), else one spanning the processes,
which every process checks together (the same programs compile in the same order in every
process of an SPMD run, so their collectives meet). A submesh of other processes' chips only
is checked by those processes. Reads see only this process's chips (another host's cannot be
read).

One mock target per process (ttnn creates its cluster once per process), opened on first
use and dropped at exit before targets/mock.py closes the device.
"""
from __future__ import annotations

import atexit
import sys
import threading

import numpy as np

from pjrt_tt import systems
from pjrt_tt.dtypes import DEVICE_NUMPY
from pjrt_tt.program import Program
from pjrt_tt.targets.executor import BoundProgram
from pjrt_tt.targets.ttnn_target import TtnnTarget


class NotASubmesh(Exception):
    """A program's mesh is not a submesh of the mocked system, so real ttnn never saw it."""

    def __init__(self, program: str, mesh_shape: tuple[int, int], system: systems.System):
        self.program, self.mesh_shape, self.system = program, tuple(mesh_shape), system.name
        rows, cols = system.mesh_shape
        super().__init__(f"mock check skipped for {program}: a {mesh_shape[0]}x{mesh_shape[1]} mesh is "
                         f"not a submesh of the {system.name} mesh {rows}x{cols}")


UNCHECKED: list[NotASubmesh] = []   # every program the check could not run, in this process

_mock: dict[str, TtnnTarget] = {}
_LOCK = threading.Lock()   # opening the mock device and running on it: one thread at a time   # the process's mock target, by system name


def _drop_mock() -> None:
    """At exit, before mock.py's own hook (registered at the first open, so it runs later
    and closes the device): drop every handle to the device first (the target's submeshes
    went already, TtnnTarget.submeshes), or nanobind reports them leaked at exit."""
    _mock.clear()


def mock_target(system: systems.System, processes: systems.Processes = systems.Processes()) -> TtnnTarget:
    """The process's mock target of `system`, opened on first use (as this process's host of
    a multi-host mesh when several processes share the system)."""
    target = _mock.get(system.name)
    if target is None:
        target = TtnnTarget.mock(system, processes)
        if not _mock:
            atexit.register(_drop_mock)
        _mock[system.name] = target
    return target


class ConformanceCheck:
    """Runs programs once on real ttnn (mock) of `system`; see the module docstring."""

    def __init__(self, system: systems.System, processes: systems.Processes = systems.Processes()):
        self.system, self.processes = system, processes

    def __call__(self, program: Program, mesh_shape: tuple[int, int] = (1, 1)) -> None:
        R, C = mesh_shape
        rows, cols = self.system.mesh_shape
        if rows % R or cols % C:
            skipped = NotASubmesh(program.name, (R, C), self.system)
            UNCHECKED.append(skipped)
            print(f"pjrt-tt: {skipped}", file=sys.stderr)   # the test suite counts these lines
            return
        with _LOCK:   # frameworks compile from several threads; one mock device serves them all
            target = mock_target(self.system, self.processes)
            device, ttnn = _submesh(target, (R, C))
            if device is None:   # other processes' chips only: they check it
                return
            inputs = [target.upload(np.zeros(v.type.shape, DEVICE_NUMPY[v.type.dtype]), v.type, device)
                      for v in program.inputs]
            consts = [target.upload(c.data, c.value.type, device) for c in program.constants]
            outputs = []
            try:
                outputs = BoundProgram(program, ttnn, device, validate_only=True,
                                       on_mesh=R * C > 1).run(inputs, consts)
            finally:
                for t in inputs + consts + outputs:
                    target.free(t)


def _submesh(target: TtnnTarget, shape: tuple[int, int]):
    """(the R x C submesh a program is checked on, the ttnn module to run it with), or
    (None, None) when this process drives none of the chips of any such submesh."""
    subs = target.submeshes(shape)
    size = shape[0] * shape[1]
    held = [len(sub.get_device_ids()) for sub in subs]   # (a multi-host mesh lists its local chips)
    if size in held:
        return subs[held.index(size)], target.ttnn
    if not any(held):
        return None, None
    sub = next(sub for sub, n in zip(subs, held) if n)
    view, ttnn = sub.get_view(), target.ttnn
    local = {k for k in range(size) if view.is_local(ttnn.MeshCoordinate(k // shape[1], k % shape[1]))}
    return sub, _LocalViews(ttnn, local)


class _LocalViews:
    """Real ttnn, except that a mesh tensor's per-chip views are only this process's chips'
    (ttnn cannot read another host's: "Can't convert a tensor distributed on MeshShape")."""

    def __init__(self, ttnn, local: set[int]):
        self._ttnn, self._local = ttnn, local

    def __getattr__(self, name):
        return getattr(self._ttnn, name)

    def get_device_tensors(self, tensor) -> list:
        return [v for k, v in enumerate(self._ttnn.get_device_tensors(tensor)) if k in self._local]
