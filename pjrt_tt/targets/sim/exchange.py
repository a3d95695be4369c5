"""How sim chips driven by different processes exchange collective data: MPI (mpi4py over
the OpenMPI the project installs), the transport tt-metal's own multi-host runtime is
launched with (tt-run is an mpirun wrapper). One process exchanges nothing.

Every process runs the same program in the same order (SPMD), so each collective is one
allgather of this process's chips' shards; every process then computes the collective's
result for its own chips. `STATS` counts the bytes this process sent.
"""
from __future__ import annotations

import os

import numpy as np

from pjrt_tt.errors import Unavailable

STATS = {"bytes_sent": 0, "exchanges": 0}


def sim_reset_exchange_stats() -> None:
    STATS.update(bytes_sent=0, exchanges=0)


class LocalExchange:
    """One process drives every chip: nothing to exchange."""
    processes = 1

    def all(self, mine: dict) -> dict:
        return mine

    def agree(self, value):
        return [value]


class MpiExchange:
    """Processes `index` of `count`, started as one MPI job (mpirun / tt-run)."""

    def __init__(self, count: int, index: int):
        # ttnn (the mock check) bundles its own MPI library; both in one process crash in
        # PMIx's shared-memory store unless it keeps to its hash store (measured here)
        os.environ.setdefault("PMIX_MCA_gds", "hash")
        from mpi4py import MPI
        world = MPI.COMM_WORLD
        if world.Get_size() != count:
            raise Unavailable(
                f"the simulated system is shared by {count} processes, whose chips exchange collective data "
                f"through MPI, but this process is in an MPI job of {world.Get_size()}: start the processes "
                f"with `mpirun -n {count} ...` or tt-run (then jax.distributed.initialize() finds them), not "
                f"one by one")
        self.processes = count
        self.comm = world.Split(0, index)   # ranks ordered as the framework's process indices

    def all(self, mine: dict) -> dict:
        """{chip position: array} of this process -> the same for every process's chips."""
        parts = self.comm.allgather(mine)
        STATS["bytes_sent"] += (self.processes - 1) * sum(np.asarray(v).nbytes for v in mine.values())
        STATS["exchanges"] += 1
        merged = {}
        for part in parts:
            merged.update(part)
        return merged

    def agree(self, value):
        """Every process's `value` (a host read, which must agree everywhere)."""
        return self.comm.allgather(value)
