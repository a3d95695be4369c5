"""Targets: where a ttnn program runs. One executor, three ttnn-shaped modules.

    device  the real ttnn package on real chips
    sim     pjrt_tt.targets.sim, a functional simulator with ttnn numerics (no card)
    mock    the real ttnn package in mock-cluster mode: real validation, zeros back

Selection: PJRT_TT_TARGET=auto|device|sim|mock (auto: device when a card is found,
else sim) and PJRT_TT_SYSTEM=n150|n300|p150|p300|t3k|galaxy.
"""
from __future__ import annotations

import dataclasses
import glob
import sys

import numpy as np

from pjrt_tt import systems
from pjrt_tt.dtypes import DEVICE_NUMPY
from pjrt_tt.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from pjrt_tt.program import TensorType
from pjrt_tt.ttnn_facts import L1_SMALL_SIZE
from pjrt_tt.targets.executor import BoundProgram, ttnn_message

TARGET_NAMES = ("auto", "device", "sim", "mock")


def card_present() -> bool:
    """True when the Tenstorrent kernel driver exposes at least one chip."""
    return bool(glob.glob("/dev/tenstorrent/*"))


class Target:
    """An opened system: a ttnn-shaped module and one device handle per chip."""

    def __init__(self, name: str, system: systems.System, ttnn, mesh, chips: list):
        self.name, self.system, self.ttnn, self.mesh, self.chips = name, system, ttnn, mesh, chips
        self._layouts = {"TILE": ttnn.TILE_LAYOUT, "ROW_MAJOR": ttnn.ROW_MAJOR_LAYOUT}
        self._submeshes: dict = {}   # (R, C) -> submeshes, made once (see MeshRunner)
        self._shared: dict[int, _Shared] = {}   # id(per-chip view) -> the mesh tensor it shares

    # --- host <-> device --------------------------------------------------------------
    def upload(self, data: np.ndarray, t: TensorType, chip):
        """`data` (already in the numpy form of t.dtype) as a ttnn tensor on `chip`."""
        host = np.ascontiguousarray(data)
        if t.dtype in ("bfloat16", "bfloat8_b", "bfloat4_b"):
            host = host.astype(np.float32)  # ttnn converts (rounding) from float32
        try:
            return self.ttnn.Tensor(host, data_type=getattr(self.ttnn, t.dtype),
                                    layout=self._layouts[t.layout], device=chip)
        except RuntimeError as e:
            if "Out of Memory" in str(e):   # ttnn's message names the sizes
                raise ResourceExhausted(f"out of TT device memory for a {t.dtype}{list(t.shape)} "
                                        f"tensor: {ttnn_message(e)}") from None
            raise

    def download(self, tensor, t: TensorType) -> np.ndarray:
        host = self.ttnn.from_device(tensor)
        if t.dtype == "bfloat16":  # ttnn's to_numpy() of bfloat16 is an unusable object array
            host = self.ttnn.to_dtype(host, self.ttnn.float32)
        return np.asarray(host.to_numpy()).astype(DEVICE_NUMPY[t.dtype]).reshape(t.shape)

    def free(self, tensor) -> None:
        shared = self._shared.pop(id(tensor), None)
        if shared is None:
            self.ttnn.deallocate(tensor)
            return
        shared.live -= 1   # deallocating one view frees the whole mesh buffer (measured, mock)
        if not shared.live:
            self.ttnn.deallocate(shared.mesh)

    def share(self, mesh_tensor, views: list, device_ids: list) -> None:
        """Per-chip views (ttnn.get_device_tensors) of a mesh tensor, each held by one PJRT
        buffer: the mesh buffer lives until the last of them is freed."""
        shared = _Shared(mesh_tensor, list(views), list(device_ids), len(views))
        for v in views:
            self._shared[id(v)] = shared

    def bind(self, program, chip):
        bound = BoundProgram(program, self.ttnn, chip)
        return bound if self.name == "sim" else _OnChip(self, bound, chip)

    # --- SPMD programs on a mesh of chips ----------------------------------------------
    def mesh_runner(self, program, chips: list, mesh_shape: tuple[int, int]) -> "MeshRunner":
        """`program` (per-device) bound to run on `chips` (1x1 devices, row-major) as an R x C mesh."""
        return MeshRunner(self, program, chips, tuple(mesh_shape))

    def memory_stats(self, chip_index: int) -> dict[str, int]:
        stats = getattr(self.ttnn, "sim_memory_stats", None)
        if stats is None:
            return {"bytes_limit": self.system.arch.dram_bytes}
        return dict(stats(self.mesh, chip_index))

    def close(self) -> None:
        close = getattr(self.ttnn, "close_mesh_device", None)
        if close is not None:
            close(self.mesh)


@dataclasses.dataclass(eq=False)
class _Shared:
    mesh: object          # the mesh tensor a program produced
    views: list           # its per-chip views, in mesh order (device ids `ids`)
    ids: list
    live: int             # views not yet freed


class _OnChip:
    """A single-chip program on real ttnn: a per-chip view of a mesh tensor lives on the
    mesh, not on the chip, so it is copied onto the chip (through the host) for the run."""

    def __init__(self, target: Target, bound: BoundProgram, chip):
        self.target, self.bound, self.chip = target, bound, chip

    def run(self, inputs: list, constants: list) -> list:
        target = self.target   # (a host copy of a view keeps its mesh coordinate: rebuild it)
        copies = [target.upload(target.download(t, v.type), v.type, self.chip) if id(t) in target._shared else None
                  for t, v in zip(inputs, self.bound.program.inputs)]
        try:
            return self.bound.run([c if c is not None else t for c, t in zip(copies, inputs)], constants)
        finally:
            for c in copies:
                if c is not None:
                    target.ttnn.deallocate(c)


class MeshRunner:
    """Runs a per-device program on a mesh; PJRT buffers stay per-chip tensors.

    sim: a MeshTensor is just the per-chip tensors (no copies); ops run chip by chip.
    real ttnn (mock, device): the program runs on the submesh of those chips. Its outputs
    stay on the device: each per-chip PJRT buffer holds a view (ttnn.get_device_tensors) of
    the output mesh tensor, which lives until the last view is freed (Target.share). Views
    of one mesh tensor on this submesh, in order, are that mesh tensor again (no copy). Other
    per-chip tensors (device_put, another mesh) go through the host once (ttnn.from_host_shards,
    to_device; ttnn combines only shards of one mesh buffer, measured, mock: "tensor shards
    must be allocated on the same mesh buffer"), and their buffers then become views of the
    copy (adopt). `HOST_COPIES` counts the copies.
    """

    HOST_COPIES = 0

    def __init__(self, target: Target, program, chips: list, shape: tuple[int, int]):
        self.target, self.chips, self.shape = target, chips, shape
        self._copies: set[int] = set()   # ids of the mesh tensors combine() made through the host
        ttnn = target.ttnn
        if target.name == "sim":
            module = ttnn.MeshModule(ttnn, chips, shape)
            self.mesh, self.bound = module.device, BoundProgram(program, module, module.device)
            return
        ids = [c.get_device_ids()[0] for c in chips]
        subs = target._submeshes.get(shape)
        if subs is None:
            if not target._submeshes:   # drop them before ttnn's bindings go away at exit
                import atexit
                atexit.register(target._submeshes.clear)
            subs = target._submeshes[shape] = list(target.mesh.create_submeshes(ttnn.MeshShape(*shape)))
        match = [m for m in subs if list(m.get_device_ids()) == ids]
        if not match:
            from pjrt_tt.errors import Unimplemented
            raise Unimplemented(f"devices {ids} are not a {shape[0]}x{shape[1]} submesh of the "
                                f"{target.system.name} mesh in row-major order")
        self.mesh = match[0]
        self.ids = ids
        self.bound = BoundProgram(program, ttnn, self.mesh)

    def upload(self, data: np.ndarray, t: TensorType):
        """The same data on every chip of the mesh."""
        if self.target.name == "sim":
            return self.combine([self.target.upload(data, t, c) for c in self.chips])
        return self.target.upload(data, t, self.mesh)

    def combine(self, tensors: list):
        ttnn = self.target.ttnn
        if self.target.name == "sim":
            return ttnn.combine_device_tensors(tensors, self.shape)
        shared = self.target._shared.get(id(tensors[0]))
        if (shared is not None and shared.ids == self.ids and len(tensors) == len(shared.views)
                and all(a is b for a, b in zip(tensors, shared.views))):
            return shared.mesh           # still on the device: no copy
        MeshRunner.HOST_COPIES += 1
        host = ttnn.from_host_shards([ttnn.from_device(x) for x in tensors], ttnn.MeshShape(*self.shape))
        copy = ttnn.to_device(host, self.mesh)
        self._copies.add(id(copy))
        return copy

    def adopt(self, tensor) -> list:
        """If combine() made `tensor` through the host: its per-chip views, which replace the
        arguments' own tensors (so the next execute needs no copy); else []."""
        if id(tensor) not in self._copies:
            return []
        self._copies.discard(id(tensor))
        views = list(self.target.ttnn.get_device_tensors(tensor))
        self.target.share(tensor, views, self.ids)
        return views

    def release(self, tensor) -> None:
        """After a run: free the argument `tensor` if combine() made it."""
        if id(tensor) in self._copies:
            self._copies.discard(id(tensor))
            self.target.free(tensor)

    def split(self, tensor) -> list:
        ttnn = self.target.ttnn
        views = list(ttnn.get_device_tensors(tensor))
        if self.target.name != "sim":
            self.target.share(tensor, views, self.ids)
        return views

    def free(self, tensor) -> None:
        for t in (self.target.ttnn.get_device_tensors(tensor) if self.target.name == "sim" else [tensor]):
            self.target.free(t)

    def run(self, inputs: list, constants: list) -> list:
        return self.bound.run(inputs, constants)


def choose(target: str | None, system: str | None) -> tuple[str, systems.System]:
    name = (target or "auto").strip().lower()
    if name not in TARGET_NAMES:
        raise InvalidArgument(f"unknown PJRT_TT_TARGET {target!r}; choose one of {', '.join(TARGET_NAMES)}")
    sysdesc = systems.get_system(system)
    if name == "auto":
        if card_present():
            return "device", sysdesc
        print(f"pjrt-tt: no Tenstorrent card found; using the simulated {sysdesc.name} "
              f"({sysdesc.description}). Set PJRT_TT_TARGET=device|sim|mock and "
              f"PJRT_TT_SYSTEM={'|'.join(systems.SYSTEMS)} to choose.", file=sys.stderr)
        return "sim", sysdesc
    return name, sysdesc


def open_target(name: str, system: systems.System, sim_dram_mb: int = 0) -> Target:
    """`sim_dram_mb`: simulated DRAM per chip (PJRT_TT_SIM_DRAM_MB; sim only, 0 = the chip's)."""
    if name == "sim":
        from pjrt_tt.targets import sim as ttnn
        try:
            ttnn.configure(system.name, sim_dram_mb)
        except ValueError as e:   # PJRT_TT_SIM_DRAM_MB too small
            raise InvalidArgument(str(e)) from None
        mesh = ttnn.open_mesh_device(ttnn.MeshShape(*system.mesh_shape))
    elif name == "mock":
        from pjrt_tt.targets import mock
        ttnn, mesh = mock.open(system.name)
    elif name == "device":
        if not card_present():
            raise FailedPrecondition("PJRT_TT_TARGET=device but no Tenstorrent card was found "
                                     "(/dev/tenstorrent is empty); use PJRT_TT_TARGET=sim")
        import ttnn

        mesh = ttnn.open_mesh_device(ttnn.MeshShape(*system.mesh_shape), l1_small_size=L1_SMALL_SIZE)
    else:
        raise InvalidArgument(f"cannot open target {name!r}")
    chips = [mesh] if system.num_chips == 1 else list(mesh.create_submeshes(ttnn.MeshShape(1, 1)))
    return Target(name, system, ttnn, mesh, chips)
