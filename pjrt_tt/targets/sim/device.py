"""Simulated chips, mesh devices and the per-chip DRAM / L1 bank allocators.

Which system is simulated comes from `configure(name)` or, failing that, the environment
variable PJRT_TT_SYSTEM (default n150); the chips' sizes come from pjrt_tt.systems.

Buffers are allocated the way tt-metal's interleaved allocator does it: a buffer of
`num_pages` pages is spread round-robin over all banks of its buffer type, every bank reserves
ceil(num_pages / banks) pages of the page size rounded up to the bank alignment, at the same
address in every bank (lockstep). Each bank is a first-fit free list, so fragmentation is real.
"""
from __future__ import annotations

import bisect
import dataclasses
import os

from ... import systems
from .tensor import (BufferType, Layout, MemoryConfig, Tensor, element_size,
                     fatal, tile_bytes, TILE_SIZE)

_configured: str | None = None
_dram_bytes: int | None = None   # DRAM per chip when set by configure(dram_mb=...) (a test/demo knob)
_chips: dict[int, "Chip"] = {}

DEFAULT_L1_SMALL_SIZE = 0
DEFAULT_TRACE_REGION_SIZE = 0
DEFAULT_WORKER_L1_SIZE = 0

# Bank geometry measured with ttnn 0.81.1 in mock-cluster mode (ttnn.get_memory_view and
# buffer_aligned_page_size on n150 / p150): per arch, (bytes of each DRAM bank reserved below the
# allocator's base, bytes of each L1 bank reserved for firmware, DRAM page alignment = allocation
# granule of every bank). L1 pages align to 16 B; Wormhole DRAM banks are 1 GiB - 1048640 B.
_RESERVED = {"wormhole_b0": (1048640, 138592, 32), "blackhole": (17825920, 144512, 64)}
_L1_ALIGN = 16


def _arch_params(arch: systems.Arch) -> tuple[int, int, int]:
    return _RESERVED.get(arch.name, (0, 0, 64))


def configure(system_name: str | None, dram_mb: int = 0) -> systems.System:
    """Select the simulated system (n150, n300, p150, p300, t3k, galaxy) before opening devices.
    `dram_mb` > 0 gives every chip that much DRAM instead of its own (PJRT_TT_SIM_DRAM_MB): the
    banks shrink or grow, the firmware reservation and allocation rules stay as measured."""
    global _configured, _dram_bytes
    system = systems.get_system(system_name)
    dram = (dram_mb << 20) if dram_mb else None
    if _chips and (system.name != current_system().name or dram != _dram_bytes):
        raise RuntimeError(f"sim: cannot switch to system {system.name!r} (DRAM {dram_mb or 'default'} MB) "
                           f"while devices of {current_system().name!r} are open")
    if dram is not None and dram // system.arch.dram_banks <= _arch_params(system.arch)[0]:
        raise ValueError(f"sim: {dram_mb} MB of DRAM leaves nothing in the {system.arch.dram_banks} banks "
                         f"after the {_arch_params(system.arch)[0]} B each reserves")
    _configured, _dram_bytes = system.name, dram
    return system


def current_system() -> systems.System:
    return systems.get_system(_configured or os.environ.get("PJRT_TT_SYSTEM"))


def GetNumAvailableDevices() -> int:
    return current_system().num_chips


GetNumPCIeDevices = GetNumAvailableDevices


def get_num_devices() -> int:
    return GetNumAvailableDevices()


def get_device_ids() -> list[int]:
    return list(range(GetNumAvailableDevices()))


# ---------------------------------------------------------------------------------------------
# Allocator
# ---------------------------------------------------------------------------------------------

class BankAllocator:
    """One buffer type (DRAM or L1) of one chip: `num_banks` banks of `bank_size` bytes."""

    def __init__(self, name: str, num_banks: int, bank_size: int, alignment: int):
        # alignment: every bank's share of a buffer is a multiple of it (the allocator granule)
        self.name, self.num_banks, self.bank_size, self.alignment = name, num_banks, bank_size, alignment
        self.buffer_bytes = 0  # sum of the live buffers' sizes (pages x page size)
        self.free_blocks: list[list[int]] = [[0, bank_size]]  # sorted [address, size]
        self.live: dict[int, int] = {}  # address -> per-bank size
        self.allocated = 0  # per bank
        self.peak = 0
        self.num_allocs = 0
        self.largest_alloc = 0

    def largest_free(self) -> int:
        return max((s for _, s in self.free_blocks), default=0)

    def allocate(self, total_size: int, per_bank: int) -> int:
        per_bank = -(-(per_bank if per_bank > 1 else 1) // self.alignment) * self.alignment
        for i, (addr, size) in enumerate(self.free_blocks):
            if size >= per_bank:
                if size == per_bank:
                    del self.free_blocks[i]
                else:
                    self.free_blocks[i] = [addr + per_bank, size - per_bank]
                self.live[addr] = (per_bank, total_size)
                self.allocated += per_bank
                self.buffer_bytes += total_size
                if self.allocated > self.peak:
                    self.peak = self.allocated
                self.num_allocs += 1
                if per_bank * self.num_banks > self.largest_alloc:
                    self.largest_alloc = per_bank * self.num_banks
                return addr
        raise RuntimeError(
            f"TT_FATAL @ tt_metal/impl/allocator/bank_manager.cpp:514: false\ninfo:\n"
            f"Out of Memory: Not enough space to allocate {total_size} B {self.name} buffer across "
            f"{self.num_banks} banks, where each bank needs to store {per_bank} B, but bank size is "
            f"{self.bank_size} B (allocated: {self.allocated} B, free: {self.bank_size - self.allocated} B, "
            f"largest free block: {self.largest_free()} B).")

    def free(self, addr: int) -> None:
        size, total = self.live.pop(addr)
        self.allocated -= size
        self.buffer_bytes -= total
        blocks = self.free_blocks   # sorted, never adjacent: merge with the neighbours only
        i = bisect.bisect_left(blocks, [addr, 0])
        if i < len(blocks) and addr + size == blocks[i][0]:
            size += blocks.pop(i)[1]
        if i > 0 and blocks[i - 1][0] + blocks[i - 1][1] == addr:
            blocks[i - 1][1] += size
        else:
            blocks.insert(i, [addr, size])


@dataclasses.dataclass
class MemoryView:
    """What ttnn.get_memory_view(device, buffer_type) reports (per bank)."""
    num_banks: int
    total_bytes_per_bank: int
    total_bytes_allocated_per_bank: int
    total_bytes_free_per_bank: int
    largest_contiguous_bytes_free_per_bank: int


class Chip:
    """One simulated chip with its DRAM and L1 allocators."""

    def __init__(self, chip_id: int, system: systems.System, l1_small_size: int = 0):
        arch = system.arch
        self.id, self.system, self.arch_name = chip_id, system, arch.name
        gx, gy = arch.compute_grid
        dram_reserved, l1_reserved, granule = _arch_params(arch)
        bank = (_dram_bytes or arch.dram_bytes) // arch.dram_banks - dram_reserved
        self.allocators = {
            BufferType.DRAM: BankAllocator("DRAM", arch.dram_banks, bank // granule * granule, granule),
            BufferType.L1: BankAllocator("L1", gx * gy, arch.l1_bytes - l1_reserved - l1_small_size, granule),
        }

    def memory_stats(self) -> dict[str, int]:
        d = self.allocators[BufferType.DRAM]
        l1 = self.allocators[BufferType.L1]
        # bytes_in_use counts what the buffers reserve: every bank holds the same share of an
        # interleaved buffer (ceil(pages / banks) aligned pages), so a one-tile tensor reserves
        # one tile in each of the 12 DRAM banks of a Wormhole chip.
        return {
            "bytes_in_use": d.allocated * d.num_banks,
            "sim_buffer_bytes_in_use": d.buffer_bytes,
            "peak_bytes_in_use": d.peak * d.num_banks,
            "num_allocs": d.num_allocs,
            "largest_alloc_size": d.largest_alloc,
            "bytes_limit": d.bank_size * d.num_banks,
            "bytes_reservable_limit": d.bank_size * d.num_banks,
            "largest_free_block_bytes": d.largest_free() * d.num_banks,
            "l1_bytes_in_use": l1.allocated * l1.num_banks,
            "l1_peak_bytes_in_use": l1.peak * l1.num_banks,
            "l1_bytes_limit": l1.bank_size * l1.num_banks,
        }


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------

class MeshShape:
    def __init__(self, *dims):
        if len(dims) == 1 and not isinstance(dims[0], int):
            dims = tuple(dims[0])
        self._dims = tuple(int(d) for d in dims)

    def __iter__(self):
        return iter(self._dims)

    def __len__(self):
        return len(self._dims)

    def __getitem__(self, i):
        return self._dims[i]

    def __eq__(self, other):
        return tuple(self) == tuple(other) if isinstance(other, (MeshShape, tuple, list)) else NotImplemented

    def __hash__(self):
        return hash(self._dims)

    def mesh_size(self) -> int:
        n = 1
        for d in self._dims:
            n *= d
        return n

    def dims(self) -> int:
        return len(self._dims)

    def __repr__(self):
        return f"MeshShape({list(self._dims)})"


class CoreCoord:
    def __init__(self, x: int, y: int):
        self.x, self.y = x, y

    def __repr__(self):
        return f"(x={self.x},y={self.y})"


class Arch:
    def __init__(self, name: str):
        self.name = name.upper()

    def __eq__(self, other):
        return isinstance(other, Arch) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f"Arch.{self.name}"


class MeshDevice:
    """A mesh of simulated chips (open_device gives a 1x1 mesh, as real ttnn does).
    A tensor placed on a mesh is replicated: it occupies memory on every chip of the mesh."""

    def __init__(self, chips: list[Chip], shape: MeshShape, trace_region_size: int = 0, num_command_queues: int = 1):
        self.chips, self._shape, self.is_open = chips, shape, True
        # the device's own, as it was opened (a chip's other openers do not change them);
        # submeshes share their parent's
        self._trace_region_size, self._num_command_queues = int(trace_region_size), int(num_command_queues)
        self._geometries: dict = {}   # (shape, dtype, layout, buffer type) -> buffer_geometry's answer
        self.capturing = None          # the trace being captured on this mesh (trace.py)
        self.traces: dict = {}         # trace id -> its captured trace

    @property
    def trace_region_size(self) -> int:   # as the device was opened (trace.py needs > 0)
        return self._trace_region_size

    @property
    def num_command_queues(self) -> int:
        return self._num_command_queues

    # real ttnn surface
    def id(self) -> int:
        return self.chips[0].id

    def get_device_ids(self) -> list[int]:
        return [c.id for c in self.chips]

    def get_num_devices(self) -> int:
        return len(self.chips)

    @property
    def shape(self) -> MeshShape:
        return self._shape

    def arch(self) -> Arch:
        return Arch(self.chips[0].arch_name)

    def compute_with_storage_grid_size(self) -> CoreCoord:
        return CoreCoord(*self.chips[0].system.arch.compute_grid)

    def core_grid(self):
        return self.compute_with_storage_grid_size()

    def dram_grid_size(self) -> CoreCoord:
        return CoreCoord(self.chips[0].allocators[BufferType.DRAM].num_banks, 1)

    def enable_program_cache(self):
        pass

    def disable_and_clear_program_cache(self):
        pass

    def clear_program_cache(self):
        pass

    def num_program_cache_entries(self) -> int:
        return 0

    def create_submeshes(self, submesh_shape) -> list["MeshDevice"]:
        """Split into meshes of `submesh_shape` (row-major order); each owns its chips only."""
        r, c = tuple(submesh_shape)
        rows, cols = tuple(self._shape)
        if rows % r or cols % c:
            raise fatal("submesh fits the mesh", f"cannot split mesh {[rows, cols]} into {[r, c]} submeshes")
        out = []
        for i in range(0, rows, r):
            for j in range(0, cols, c):
                chips = [self.chips[(i + a) * cols + (j + b)] for a in range(r) for b in range(c)]
                out.append(MeshDevice(chips, MeshShape(r, c), self._trace_region_size, self._num_command_queues))
        return out

    def create_submesh(self, submesh_shape, offset=None) -> "MeshDevice":
        r, c = tuple(submesh_shape)
        i, j = tuple(offset) if offset is not None else (0, 0)
        cols = self._shape[1]
        return MeshDevice([self.chips[(i + a) * cols + (j + b)] for a in range(r) for b in range(c)],
                          MeshShape(r, c), self._trace_region_size, self._num_command_queues)

    def get_devices(self) -> list["MeshDevice"]:
        return self.create_submeshes(MeshShape(1, 1))

    # sim-only
    def buffer_geometry(self, t: Tensor, buffer_type=None) -> tuple[int, int, int, int, int]:
        """(num_pages, page_size, aligned_page_size, per_bank_bytes, total_bytes_reserved) of the
        interleaved buffer that holds `t` on one chip of this mesh."""
        bt = buffer_type or (t._mem.buffer_type if t._mem is not None else BufferType.DRAM)
        key = (t._value.shape, t._dtype, t._layout, bt)
        geometry = self._geometries.get(key)
        if geometry is None:   # the same few shapes come again on every run of a program
            if len(self._geometries) >= 4096:
                self._geometries.clear()
            geometry = self._geometries[key] = self._buffer_geometry(t, bt)
        return geometry

    def _buffer_geometry(self, t: Tensor, bt) -> tuple[int, int, int, int, int]:
        arch = self.chips[0].system.arch
        padded = t.padded_shape
        if t.layout == Layout.TILE:
            page = tile_bytes(t.dtype)
            pages = padded.volume() // (TILE_SIZE * TILE_SIZE)
        else:
            page = padded[-1] * element_size(t.dtype)
            pages = padded.volume() // padded[-1] if padded[-1] else 0
        granule = _arch_params(arch)[2]
        if bt == BufferType.DRAM:
            align, banks = granule, arch.dram_banks
        else:
            align, banks = _L1_ALIGN, arch.compute_grid[0] * arch.compute_grid[1]
        aligned = -(-page // align) * align
        per_bank = -(-(-(-pages // banks) * aligned) // granule) * granule
        return pages, page, aligned, per_bank, per_bank * banks

    def allocate_buffers(self, t: Tensor, memory_config: MemoryConfig) -> list:
        """Reserve `t`'s buffer on every chip of this mesh: [(allocator, address)] (ttnn's
        out-of-memory error when a chip has no room; nothing stays reserved then)."""
        if not self.is_open:
            raise fatal("device is open", "sim: the device was closed")
        pages, page, _, per_bank, _ = self.buffer_geometry(t, memory_config.buffer_type)
        allocs = []
        try:
            for chip in self.chips:
                alloc = chip.allocators[memory_config.buffer_type]
                allocs.append((alloc, alloc.allocate(pages * page, per_bank)))
        except RuntimeError:
            for alloc, addr in allocs:
                alloc.free(addr)
            raise
        return allocs

    def sim_memory_stats(self, chip_index: int = 0) -> dict[str, int]:
        """sim-only: DRAM (and L1) bytes in use / peak / limit on one chip of this mesh."""
        return self.chips[chip_index].memory_stats()

    def __repr__(self):
        return f"MeshDevice(sim {self.chips[0].system.name}, shape={list(self._shape)}, chips={self.get_device_ids()})"


Device = MeshDevice


def _open(ids: list[int], shape: MeshShape, l1_small_size: int, trace_region_size: int = 0,
          num_command_queues: int = 1) -> MeshDevice:
    system = current_system()
    for i in ids:
        if not 0 <= i < system.num_chips:
            raise fatal("device_id < num_devices",
                        f"Device index {i} out of range: sim system {system.name} has "
                        f"{system.num_chips} chip(s)")
    if num_command_queues not in (1, 2):
        raise fatal("num_hw_cqs <= 2", f"num_command_queues must be 1 or 2, got {num_command_queues}")
    for i in ids:
        if i not in _chips:
            _chips[i] = Chip(i, system, l1_small_size)
    return MeshDevice([_chips[i] for i in ids], shape, trace_region_size, num_command_queues)


def open_device(device_id: int = 0, l1_small_size: int = DEFAULT_L1_SMALL_SIZE,
                trace_region_size: int = DEFAULT_TRACE_REGION_SIZE, dispatch_core_config=None,
                worker_l1_size: int = DEFAULT_WORKER_L1_SIZE, **_ignored) -> MeshDevice:
    return _open([device_id], MeshShape(1, 1), l1_small_size, trace_region_size)


def open_mesh_device(mesh_shape: MeshShape | None = None, l1_small_size: int = DEFAULT_L1_SMALL_SIZE,
                     trace_region_size: int = DEFAULT_TRACE_REGION_SIZE, num_command_queues: int = 1,
                     dispatch_core_config=None, offset=None, physical_device_ids=(),
                     worker_l1_size: int = DEFAULT_WORKER_L1_SIZE, **_ignored) -> MeshDevice:
    system = current_system()
    shape = MeshShape(*(mesh_shape or system.mesh_shape))
    n = shape.mesh_size()
    if n > system.num_chips:
        raise fatal("mesh fits the system",
                    f"Requested mesh shape {list(shape)} needs {n} devices but sim system "
                    f"{system.name} has {system.num_chips} (mesh {list(system.mesh_shape)})")
    ids = list(physical_device_ids) or list(range(n))
    return _open(ids, shape, l1_small_size, trace_region_size, num_command_queues)


def close_device(device: MeshDevice) -> None:
    for chip in device.chips:
        _chips.pop(chip.id, None)
    device.is_open = False


close_mesh_device = close_device


def synchronize_device(device, *args, **kwargs) -> None:
    pass


def get_memory_view(device: MeshDevice, buffer_type: BufferType) -> MemoryView:
    a = device.chips[0].allocators[buffer_type]
    return MemoryView(a.num_banks, a.bank_size, a.allocated, a.bank_size - a.allocated, a.largest_free())


def sim_memory_stats(device: MeshDevice, chip_index: int = 0) -> dict[str, int]:
    """sim-only: see MeshDevice.sim_memory_stats."""
    return device.sim_memory_stats(chip_index)


def sim_reset() -> None:
    """sim-only: forget every open chip and the configured system (for tests)."""
    global _configured, _dram_bytes
    _chips.clear()
    _configured, _dram_bytes = None, None
