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
lines) and returns. So does a process of a multi-process run (`NotOneHost`): ttnn sees its
MPI job and opens only a multi-host mesh there (TT_MESH_ID / TT_MESH_HOST_RANK and a mesh
graph descriptor, as tt-run sets them), which this check does not build yet; the same
program compiled by one process on the same mesh is checked (tests/test_multiprocess.py).

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


class NotOneHost(Exception):
    """A program of one of several processes sharing the system: real ttnn never saw it here."""

    def __init__(self, program: str, processes: systems.Processes):
        self.program = program
        super().__init__(f"mock check skipped for {program}: process {processes.index} of {processes.count} "
                         f"sharing the system, where ttnn opens only a multi-host mesh (not built for the "
                         f"check yet)")


UNCHECKED: list[Exception] = []   # every program the check could not run, in this process

_mock: dict[str, TtnnTarget] = {}
_LOCK = threading.Lock()   # opening the mock device and running on it: one thread at a time   # the process's mock target, by system name


def _drop_mock() -> None:
    """At exit, before mock.py's own hook (registered at the first open, so it runs later
    and closes the device): drop every handle to the device first (the target's submeshes
    went already, TtnnTarget.submeshes), or nanobind reports them leaked at exit."""
    _mock.clear()


def mock_target(system: systems.System) -> TtnnTarget:
    """The process's mock target of `system`, opened on first use."""
    target = _mock.get(system.name)
    if target is None:
        target = TtnnTarget.mock(system)
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
        skipped = None
        if not self.processes.local:
            skipped = NotOneHost(program.name, self.processes)
        elif rows % R or cols % C:
            skipped = NotASubmesh(program.name, (R, C), self.system)
        if skipped is not None:
            UNCHECKED.append(skipped)
            print(f"pjrt-tt: {skipped}", file=sys.stderr)   # the test suite counts these lines
            return
        with _LOCK:   # frameworks compile from several threads; one mock device serves them all
            target = mock_target(self.system)
            device = target.submeshes((R, C))[0]
            inputs = [target.upload(np.zeros(v.type.shape, DEVICE_NUMPY[v.type.dtype]), v.type, device)
                      for v in program.inputs]
            consts = [target.upload(c.data, c.value.type, device) for c in program.constants]
            outputs = []
            try:
                outputs = BoundProgram(program, target.ttnn, device, validate_only=True,
                                       on_mesh=R * C > 1).run(inputs, consts)
            finally:
                for t in inputs + consts + outputs:
                    target.free(t)
