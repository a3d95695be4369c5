"""The Tenstorrent systems pjrt-tt knows by name: chips, mesh shape and memory sizes.

One table serves every target: `sim` builds its simulated chips from it, `mock` writes
its cluster descriptor from it, and the runtime names devices after it.
"""
from __future__ import annotations

import dataclasses

from pjrt_tt.errors import InvalidArgument

GiB = 1 << 30
KiB = 1 << 10


@dataclasses.dataclass(frozen=True)
class Arch:
    name: str            # ttnn / tt-metal architecture name, also the PJRT device kind
    dram_bytes: int      # DRAM per chip
    dram_banks: int      # interleaved DRAM banks per chip (ttnn spreads buffers over them)
    l1_bytes: int        # L1 SRAM per Tensix core
    compute_grid: tuple[int, int]  # (x, y) Tensix cores available to ops
    # Performance figures (pjrt_tt/perf reads them; sources in docs/perf.md):
    clock_hz: float = 1.0e9          # Tensix clock (tt-metal tech_reports/GEMM_FLOPS)
    dram_bytes_per_s: float = 288e9  # card DRAM bandwidth (Tenstorrent product specs)
    noc_bytes_per_cycle: int = 32    # one NoC link's width: a core's L1 read rate from another core
    eth_bytes_per_s: float = 12.5e9  # one Ethernet link between chips (100 Gb/s WH, 400 Gb/s BH)


WORMHOLE_B0 = Arch("wormhole_b0", dram_bytes=12 * GiB, dram_banks=12, l1_bytes=1464 * KiB,
                   compute_grid=(8, 8))
BLACKHOLE = Arch("blackhole", dram_bytes=32 * GiB, dram_banks=8, l1_bytes=1536 * KiB,
                 compute_grid=(13, 10), clock_hz=1.35e9, dram_bytes_per_s=512e9,
                 noc_bytes_per_cycle=64, eth_bytes_per_s=50e9)

# The matrix engine (FPU) does an 8x16 by 16x16 multiply-accumulate per cycle at LoFi
# (4096 FLOPs/cycle/core); higher fidelities take more passes over the mantissa bits
# (tt-metal tech_reports/GEMM_FLOPS and matrix_engine: 16, 32, 48, 64 cycles per 32x32x32 tile).
FPU_FLOPS_PER_CYCLE = 4096
FIDELITY_PHASES = {"LoFi": 1, "HiFi2": 2, "HiFi3": 3, "HiFi4": 4}


@dataclasses.dataclass(frozen=True)
class System:
    name: str
    arch: Arch
    mesh_shape: tuple[int, int]  # (rows, cols) of the ttnn mesh device
    description: str

    @property
    def num_chips(self) -> int:
        return self.mesh_shape[0] * self.mesh_shape[1]


SYSTEMS: dict[str, System] = {s.name: s for s in [
    System("n150", WORMHOLE_B0, (1, 1), "Wormhole n150 card (1 chip)"),
    System("n300", WORMHOLE_B0, (1, 2), "Wormhole n300 card (2 chips)"),
    System("p150", BLACKHOLE, (1, 1), "Blackhole p150 card (1 chip)"),
    System("p300", BLACKHOLE, (1, 2), "Blackhole p300 card (2 chips)"),
    System("t3k", WORMHOLE_B0, (2, 4), "TT-LoudBox / T3000 (8 Wormhole chips)"),
    System("galaxy", WORMHOLE_B0, (4, 8), "Wormhole Galaxy (32 chips)"),
    System("p150x4", BLACKHOLE, (2, 2), "four Blackhole p150 cards as a 2x2 mesh"),
]}

DEFAULT_SYSTEM = "n150"


# Several processes, one system (multi-controller, as jax.distributed and torch_xla run it).
# Process p of P drives the p-th contiguous, row-major block of the system's chips (a 2x4
# t3k over 2 processes: row 0 and row 1), as tt-run's rank bindings give each host its rows
# of a multi-host mesh. Device ids are global and the same in every process. The framework
# says how many processes there are: PJRT create options `num_nodes` / `node_id`, which jax
# passes after `jax.distributed.initialize`.
@dataclasses.dataclass(frozen=True)
class Processes:
    count: int = 1
    index: int = 0

    @classmethod
    def from_options(cls, options: dict) -> "Processes":
        """From the framework's create options (`num_nodes`, `node_id`); one process without them."""
        opts = {k.lower(): v for k, v in (options or {}).items()}
        try:
            count, index = int(opts.get("num_nodes", 1)), int(opts.get("node_id", 0))
        except (TypeError, ValueError):
            raise InvalidArgument(f"num_nodes / node_id must be integers, got {opts.get('num_nodes')!r} / "
                                  f"{opts.get('node_id')!r}") from None
        if count < 1 or not 0 <= index < count:
            raise InvalidArgument(f"node_id {index} is not one of num_nodes {count} processes")
        return cls(count, index)

    def chips_of(self, process: int, num_chips: int) -> range:
        per = self.chips_per_process(num_chips)
        return range(process * per, (process + 1) * per)

    def chips_per_process(self, num_chips: int) -> int:
        if num_chips % self.count:
            raise InvalidArgument(f"{self.count} processes cannot share a system of {num_chips} chips evenly: "
                                  f"each process drives the same number of chips (start a divisor of "
                                  f"{num_chips} processes)")
        return num_chips // self.count

    def owner(self, chip: int, num_chips: int) -> int:
        return chip // self.chips_per_process(num_chips)

    @property
    def local(self) -> bool:
        return self.count == 1


def get_system(name: str | None) -> System:
    """The system called `name` (case-insensitive); a clear error for unknown names."""
    key = (name or DEFAULT_SYSTEM).strip().lower()
    if key not in SYSTEMS:
        raise ValueError(
            f"unknown Tenstorrent system {name!r} (from PJRT_TT_SYSTEM or the 'system' plugin "
            f"option); known systems: {', '.join(SYSTEMS)}")
    return SYSTEMS[key]
