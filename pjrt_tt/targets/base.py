"""What a target is to the runtime: the `Target` interface and the `MeshRunner` it hands out.

Two implementations (targets/__init__.py chooses one through a table):
    SimTarget   (sim_target.py)   pjrt_tt.targets.sim, the simulator
    TtnnTarget  (ttnn_target.py)  the real ttnn package: `TtnnTarget.mock` (mock cluster)
                                  or `TtnnTarget.device` (real chips); they differ only there

The runtime uses only what the Target and MeshRunner docstrings list.
"""
from __future__ import annotations

import abc
import math

import numpy as np

from pjrt_tt import systems
from pjrt_tt.errors import ResourceExhausted
from pjrt_tt.program import Program, TensorType
from pjrt_tt.targets.executor import BoundProgram, out_of_memory, read_tensor, ttnn_host_form
from pjrt_tt.targets.tensors import DeviceTensors
from pjrt_tt.ttnn_facts import TILE_BYTES


def device_bytes(t: TensorType) -> int:
    """Bytes a ttnn tensor of type `t` takes in DRAM (TILE pads the last two dims to 32)."""
    shape = [1, 1] + list(t.shape)
    if t.layout != "TILE":
        return math.prod(shape) * TILE_BYTES[t.dtype] // 1024
    tiles = math.prod(shape[:-2]) * math.ceil(shape[-2] / 32) * math.ceil(shape[-1] / 32)
    return tiles * TILE_BYTES[t.dtype]


class Target(abc.ABC):
    """An opened system: a ttnn-shaped module, its mesh device and one device handle per chip.

    The runtime uses exactly this (nothing else of a target, nothing of ttnn):

        target.name, target.system          "sim" | "mock" | "device", and the pjrt_tt.systems.System
        target.chips                        one device handle per chip, row-major (PJRT devices)
        target.upload(data, t, device)      host numpy (already t.dtype's numpy form) -> device tensor
        target.download(tensor, t)          device tensor -> host numpy of t.dtype's numpy form
        target.free(tensor)                 give a tensor back (a view frees its mesh tensor with
                                            the last view; targets/tensors.py)
        target.bind(program, chip, trace)   a single-chip program, ready: .run(inputs, constants);
                                            trace: run it as a Metal trace from its second run on
                                            (targets/trace.py; the caller checked trace_refusal)
        target.mesh_runner(program, chips, mesh_shape)
                                            an SPMD per-device program on an R x C mesh (MeshRunner)
        target.memory_stats(chip_index)     PJRT Device_MemoryStats keys (bytes_in_use, bytes_limit...)
        target.close()                      release the devices

        target.check_fits(t, device)        refuses a tensor the chip's DRAM has no room for, before
                                            any host copy is made for it

    Failures: an upload that does not fit raises errors.ResourceExhausted naming the sizes;
    a failing op raises the executor's TTError / ResourceExhausted naming the op's source line.

    Subclasses open the system (their constructors) and say how a program meets the chips
    (`bind` and the `_mesh_*` hooks MeshRunner calls); host transfers and ownership are shared.
    """

    def __init__(self, name: str, system: systems.System, ttnn, mesh):
        self.name, self.system, self.ttnn, self.mesh = name, system, ttnn, mesh
        self.tensors = DeviceTensors(ttnn.deallocate)   # the one owner of this target's tensors
        self._layouts = {"TILE": ttnn.TILE_LAYOUT, "ROW_MAJOR": ttnn.ROW_MAJOR_LAYOUT}
        self.chips = [mesh] if system.num_chips == 1 else list(mesh.create_submeshes(ttnn.MeshShape(1, 1)))

    # --- host <-> device --------------------------------------------------------------
    def upload(self, data: np.ndarray, t: TensorType, device):
        """`data` (already in the numpy form of t.dtype; any strides, the caller's memory
        read only during the call) as a ttnn tensor on `device` (a chip, or a mesh: then the
        same data on every chip of it). Host memory: at most the one copy the target needs
        (issue 13 item 4); `check_fits` first when `data` is not materialised yet."""
        try:
            return self.ttnn.Tensor(self._host_form(data, t), data_type=getattr(self.ttnn, t.dtype),
                                    layout=self._layouts[t.layout], device=device)
        except RuntimeError as e:
            oom = out_of_memory(e, f"for a {t.dtype}{list(t.shape)} tensor")
            if oom is None:
                raise
            raise oom from None

    def check_fits(self, t: TensorType, device) -> None:
        """Refuse (ResourceExhausted, naming the sizes) a tensor of type `t` that cannot fit in
        the DRAM `device` has free. A lower bound of the allocator's need (its page and bank
        rounding left out), so nothing that fits is refused; the allocator decides the rest."""
        view = self.ttnn.get_memory_view(device, self.ttnn.BufferType.DRAM)
        need = device_bytes(t)
        if -(-need // view.num_banks) > view.largest_contiguous_bytes_free_per_bank:
            raise ResourceExhausted(
                f"out of TT device memory for a {t.dtype}{list(t.shape)} tensor: Out of Memory: it needs "
                f"{need} B of DRAM ({-(-need // view.num_banks)} B in each of {view.num_banks} banks) and "
                f"the chip's largest free block is {view.largest_contiguous_bytes_free_per_bank} B per bank "
                f"(of {view.total_bytes_per_bank} B); refused before any host copy")

    def _host_form(self, data: np.ndarray, t: TensorType) -> np.ndarray:
        """The host array this target's ttnn.Tensor takes (executor.ttnn_host_form)."""
        return ttnn_host_form(data, t.dtype)

    def download(self, tensor, t: TensorType) -> np.ndarray:
        return read_tensor(self.ttnn, tensor, t)

    def free(self, tensor) -> None:
        self.tensors.free(tensor)

    # --- programs -------------------------------------------------------------------------
    @abc.abstractmethod
    def bind(self, program: Program, chip, trace: bool = False):
        """`program` bound to one chip: an object with .run(inputs, constants) -> outputs."""

    def mesh_runner(self, program: Program, chips: list, mesh_shape: tuple[int, int]) -> "MeshRunner":
        """`program` (per-device) bound to run on `chips` (1x1 devices, row-major) as an R x C mesh."""
        return MeshRunner(self, program, chips, tuple(mesh_shape))

    @abc.abstractmethod
    def memory_stats(self, chip_index: int) -> dict[str, int]:
        """What this target can tell of one chip's memory (PJRT Device_MemoryStats keys)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the system's devices."""

    def leave(self) -> None:
        """This process has run its last program (at exit): the processes sharing the system
        meet a last time; nothing to do for one process."""

    # --- how a mesh program meets the chips (called by MeshRunner) -------------------------
    @abc.abstractmethod
    def _mesh_open(self, chips: list, shape: tuple[int, int]):
        """(the ttnn-shaped module to run on, the device handle standing for the mesh)."""

    @abc.abstractmethod
    def _mesh_upload(self, runner: "MeshRunner", data: np.ndarray, t: TensorType):
        """The same data on every chip of the runner's mesh, as a mesh tensor."""

    @abc.abstractmethod
    def _mesh_combine(self, runner: "MeshRunner", tensors: list):
        """Per-chip tensors (in mesh order) as one mesh tensor on the runner's mesh."""

    @abc.abstractmethod
    def _mesh_split(self, runner: "MeshRunner", tensor) -> list:
        """A mesh tensor the program made, as per-chip tensors each freed on its own."""

    @abc.abstractmethod
    def _mesh_free(self, tensor) -> None:
        """Free a mesh tensor the runner made (the program's constants)."""


class MeshRunner:
    """A per-device program bound to an R x C mesh of chips; PJRT buffers stay per-chip tensors.

    Per execute, the runtime calls: `combine` per argument (per-chip tensors -> a mesh
    tensor), `adopt` per argument (if combine had to copy through the host: the copy's
    per-chip views, which replace the buffers' tensors so the next run needs no copy),
    `run`, `release` per argument (frees copies nobody adopted) and `split` per output.
    `upload` and `free` serve the program's constants. The target decides how (its `_mesh_*`
    methods); ownership of every tensor involved is the target's DeviceTensors.
    """

    def __init__(self, target: Target, program: Program, chips: list, shape: tuple[int, int]):
        self.target, self.chips, self.shape = target, chips, shape
        self.ids = [c.get_device_ids()[0] for c in chips]
        module, self.mesh = target._mesh_open(chips, shape)
        self.bound = BoundProgram(program, module, self.mesh, on_mesh=len(chips) > 1)

    def upload(self, data: np.ndarray, t: TensorType):
        """The same data on every chip of the mesh."""
        return self.target._mesh_upload(self, data, t)

    def combine(self, tensors: list):
        return self.target._mesh_combine(self, tensors)

    def adopt(self, tensor) -> list:
        return self.target.tensors.adopt(tensor, self.target.ttnn.get_device_tensors, self.ids)

    def release(self, tensor) -> None:
        self.target.tensors.release(tensor)

    def split(self, tensor) -> list:
        return self.target._mesh_split(self, tensor)

    def free(self, tensor) -> None:
        self.target._mesh_free(tensor)

    def run(self, inputs: list, constants: list) -> list:
        return self.bound.run(inputs, constants)
