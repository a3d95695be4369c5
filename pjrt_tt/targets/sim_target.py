"""The `sim` target: programs run on pjrt_tt.targets.sim, the simulator.

A sim mesh tensor is just its per-chip tensors (sim.MeshTensor), so per-chip PJRT buffers
and mesh tensors convert into each other without copies, and a mesh program runs chip by
chip through sim.MeshModule. When several processes share the system (systems.Processes),
each runs its own chips and the collectives exchange data through MPI (sim/exchange.py).
"""
from __future__ import annotations

import numpy as np

from pjrt_tt import systems
from pjrt_tt.errors import InvalidArgument
from pjrt_tt.program import Program, TensorType
from pjrt_tt.targets.base import MeshRunner, Target
from pjrt_tt.targets.executor import BoundProgram
from pjrt_tt.targets.trace import TracedProgram
from pjrt_tt.ttnn_facts import NUM_COMMAND_QUEUES, TRACE_REGION_SIZE


class SimTarget(Target):
    @classmethod
    def open(cls, system: systems.System, dram_mb: int = 0,
             processes: systems.Processes = systems.Processes(), peers=None) -> "SimTarget":
        """`dram_mb`: simulated DRAM per chip (PJRT_TT_SIM_DRAM_MB; 0 = the chip's own).
        `processes`: the processes sharing the system; this one drives its block of chips.
        `peers()`: the framework's view of the processes (sim/exchange.py)."""
        from pjrt_tt.targets import sim
        try:
            sim.configure(system.name, dram_mb)
        except ValueError as e:   # PJRT_TT_SIM_DRAM_MB too small
            raise InvalidArgument(str(e)) from None
        target = cls("sim", system, sim, sim.open_mesh_device(sim.MeshShape(*system.mesh_shape),
                                                            trace_region_size=TRACE_REGION_SIZE,
                                                            num_command_queues=NUM_COMMAND_QUEUES))
        target.processes = processes
        target.exchange = sim.LocalExchange() if processes.local else sim.MpiExchange(processes.count,
                                                                                      processes.index, peers)
        return target

    def _host_form(self, data: np.ndarray, t: TensorType) -> np.ndarray:
        return data   # the sim's Tensor stores its own (one) quantized copy of any numpy array

    def bind(self, program: Program, chip, trace: bool = False):
        bound = BoundProgram(program, self.ttnn, chip)
        return TracedProgram(bound, self.ttnn, chip) if trace else bound

    def memory_stats(self, chip_index: int) -> dict[str, int]:
        return dict(self.ttnn.sim_memory_stats(self.mesh, chip_index))

    def close(self) -> None:
        self.ttnn.close_mesh_device(self.mesh)

    def leave(self) -> None:
        self.exchange.finish()

    def _local_positions(self, chips: list) -> list[int]:
        """The positions in `chips` (a mesh, row-major) of the chips this process drives."""
        mine = set(self.processes.chips_of(self.processes.index, len(self.chips)))
        return [k for k, c in enumerate(chips) if self.chips.index(c) in mine]

    def _mesh_open(self, chips: list, shape: tuple[int, int]):
        module = self.ttnn.MeshModule(self.ttnn, chips, shape, self._local_positions(chips), self.exchange)
        return module, module.device

    def _mesh_upload(self, runner: MeshRunner, data: np.ndarray, t: TensorType):
        local = set(self._local_positions(runner.chips))
        return self._mesh_combine(runner, [self.upload(data, t, c) if k in local else None
                                           for k, c in enumerate(runner.chips)])

    def _mesh_combine(self, runner: MeshRunner, tensors: list):
        return self.ttnn.combine_device_tensors(tensors, runner.shape)

    def _mesh_split(self, runner: MeshRunner, tensor) -> list:
        return list(self.ttnn.get_device_tensors(tensor))

    def _mesh_free(self, tensor) -> None:
        for t in self.ttnn.get_device_tensors(tensor):
            if t is not None:   # (another process's chip)
                self.free(t)
