"""The real ttnn package as a target: `TtnnTarget.mock` (mock cluster, targets/mock.py) or
`TtnnTarget.device` (real chips). Everything after opening is the same for both.

Mesh programs run on a submesh of the chips; their outputs stay on the device: each
per-chip PJRT buffer holds a view (ttnn.get_device_tensors) of the output mesh tensor
(DeviceTensors.share). Views of one mesh tensor on the same submesh, in order, are that mesh
tensor again (no copy). Other per-chip tensors (device_put, another mesh) go through the host
once (ttnn.from_host_shards, to_device; ttnn combines only shards of one mesh buffer,
measured, mock: "tensor shards must be allocated on the same mesh buffer"), and their
buffers then become views of the copy (MeshRunner.adopt).
"""
from __future__ import annotations

import atexit
import glob
from typing import Callable

import numpy as np

from pjrt_tt import systems
from pjrt_tt.errors import FailedPrecondition, Unimplemented
from pjrt_tt.program import Program, TensorType
from pjrt_tt.targets.base import MeshRunner, Target
from pjrt_tt.targets.executor import BoundProgram
from pjrt_tt.targets.trace import TracedProgram
from pjrt_tt.ttnn_facts import L1_SMALL_SIZE, NUM_COMMAND_QUEUES, TRACE_REGION_SIZE


def card_present() -> bool:
    """True when the Tenstorrent kernel driver exposes at least one chip."""
    return bool(glob.glob("/dev/tenstorrent/*"))


class TtnnTarget(Target):
    def __init__(self, name: str, system: systems.System, ttnn, mesh, release: Callable[[object], None]):
        super().__init__(name, system, ttnn, mesh)
        self._release = release          # closes the mesh device the way it was opened
        self._submeshes: dict = {}       # (R, C) -> the mesh's R x C submeshes, made once

    @classmethod
    def mock(cls, system: systems.System, processes: systems.Processes = systems.Processes()) -> "TtnnTarget":
        _one_process_only("mock", processes)
        from pjrt_tt.targets import mock
        ttnn, mesh = mock.open(system.name)
        return cls("mock", system, ttnn, mesh, mock.close)

    @classmethod
    def device(cls, system: systems.System, processes: systems.Processes = systems.Processes()) -> "TtnnTarget":
        _one_process_only("device", processes)
        if not card_present():
            raise FailedPrecondition("PJRT_TT_TARGET=device but no Tenstorrent card was found "
                                     "(/dev/tenstorrent is empty); use PJRT_TT_TARGET=sim")
        import ttnn
        mesh = ttnn.open_mesh_device(ttnn.MeshShape(*system.mesh_shape), l1_small_size=L1_SMALL_SIZE,
                                     trace_region_size=TRACE_REGION_SIZE, num_command_queues=NUM_COMMAND_QUEUES)
        return cls("device", system, ttnn, mesh, ttnn.close_mesh_device)

    def submeshes(self, shape: tuple[int, int]) -> list:
        """The system's R x C submeshes, row-major (1x1: the chips). Programs always run on
        submeshes, never on a parent mesh that also has submeshes (ttnn aborts at exit then)."""
        shape = tuple(shape)
        if shape == (1, 1):
            return self.chips
        subs = self._submeshes.get(shape)
        if subs is None:
            if not self._submeshes:   # drop them before ttnn's bindings go away at exit
                atexit.register(self._submeshes.clear)
            subs = self._submeshes[shape] = list(self.mesh.create_submeshes(self.ttnn.MeshShape(*shape)))
        return subs

    def bind(self, program: Program, chip, trace: bool = False) -> "_OnChip":
        bound = BoundProgram(program, self.ttnn, chip)
        if trace:
            if self.name == "mock":
                raise Unimplemented("enable_trace: Metal trace cannot run on the mock target (real ttnn "
                                    "0.81.1 segfaults in trace capture in mock mode, docs/ttnn-facts.md); "
                                    "use the device or sim target, or compile without enable_trace")
            bound = TracedProgram(bound, self.ttnn, chip)
        return _OnChip(self, bound, chip)

    def memory_stats(self, chip_index: int) -> dict[str, int]:
        return {"bytes_limit": self.system.arch.dram_bytes}   # ttnn reports no usage per chip

    def close(self) -> None:
        self._submeshes.clear()
        self._release(self.mesh)

    def _mesh_open(self, chips: list, shape: tuple[int, int]):
        ids = [c.get_device_ids()[0] for c in chips]
        match = [m for m in self.submeshes(shape) if list(m.get_device_ids()) == ids]
        if not match:
            raise Unimplemented(f"devices {ids} are not a {shape[0]}x{shape[1]} submesh of the "
                                f"{self.system.name} mesh in row-major order")
        return self.ttnn, match[0]

    def _mesh_upload(self, runner: MeshRunner, data: np.ndarray, t: TensorType):
        return self.upload(data, t, runner.mesh)

    def _mesh_combine(self, runner: MeshRunner, tensors: list):
        mesh_tensor = self.tensors.mesh_of(tensors, runner.ids)
        if mesh_tensor is not None:
            return mesh_tensor           # still on the device: no copy
        ttnn = self.ttnn
        host = ttnn.from_host_shards([ttnn.from_device(x) for x in tensors], ttnn.MeshShape(*runner.shape))
        copy = ttnn.to_device(host, runner.mesh)
        self.tensors.track_copy(copy)
        return copy

    def _mesh_split(self, runner: MeshRunner, tensor) -> list:
        views = list(self.ttnn.get_device_tensors(tensor))
        self.tensors.share(tensor, views, runner.ids)
        return views

    def _mesh_free(self, tensor) -> None:
        self.free(tensor)


class _OnChip:
    """A single-chip program on real ttnn: a per-chip view of a mesh tensor lives on the
    mesh, not on the chip, so it is copied onto the chip (through the host) for the run."""

    def __init__(self, target: TtnnTarget, bound, chip):
        self.target, self.bound, self.chip = target, bound, chip

    def run(self, inputs: list, constants: list, prepared: list | None = None) -> list:
        target = self.target   # (a host copy of a view keeps its mesh coordinate: rebuild it)
        copies = [target.upload(target.download(t, v.type), v.type, self.chip) if target.tensors.is_view(t) else None
                  for t, v in zip(inputs, self.bound.program.inputs)]
        try:
            return self.bound.run([c if c is not None else t for c, t in zip(copies, inputs)], constants, prepared)
        finally:
            for c in copies:
                if c is not None:
                    target.free(c)

    def prepare(self, k: int, sources: list) -> tuple[list, list]:
        """Const-eval block k (its results never share a source's storage: const_eval.py)."""
        target = self.target
        copies = [target.upload(target.download(t, v.type), v.type, self.chip) if target.tensors.is_view(t) else None
                  for t, v in zip(sources, self.bound.program.prepare[k].sources)]
        try:
            return self.bound.prepare(k, [c if c is not None else t for c, t in zip(copies, sources)])
        finally:
            for c in copies:
                if c is not None:
                    target.free(c)


def _one_process_only(name: str, processes: systems.Processes) -> None:
    """A multi-host ttnn mesh opens under tt-run from a mesh graph descriptor and per-rank
    cluster descriptors (ttnn/distributed/README_ttrun.md); that path is not built yet."""
    if not processes.local:
        raise Unimplemented(f"{processes.count} processes sharing one system run on the sim target only so far "
                            f"(PJRT_TT_TARGET=sim): the {name} target does not open ttnn's multi-host mesh yet")
