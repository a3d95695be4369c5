"""How sim chips driven by different processes exchange collective data: MPI (mpi4py over
the OpenMPI the project installs), the transport tt-metal's own multi-host runtime is
launched with (tt-run is an mpirun wrapper). One process exchanges nothing.

Every process runs the same program in the same order (SPMD), so each collective is one
allgather of this process's chips' shards; every process then computes the collective's
result for its own chips. `STATS` counts the bytes this process sent.

A peer that dies must not leave the others waiting forever. A crash ends the MPI job (the
launcher stops every process); an uncaught Python exception would not (the process exits
through MPI_Finalize), so the job is ended then too; and before each exchange a process
waits for the others without blocking, checking the framework's word on them (jax's
coordination service: `peers()`), and fails naming a peer that disconnected or failed.
"""
from __future__ import annotations

import os
import sys
import time

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

    def finish(self) -> None:
        pass


# PJRT_ProcessState values that mean a peer is gone (pjrt_c_api.h)
GONE = {2: "disconnected", 4: "in error"}


class MpiExchange:
    """Processes `index` of `count`, started as one MPI job (mpirun / tt-run); `peers()`:
    the framework's view of each process ({index: PJRT_ProcessState}), or None."""

    def __init__(self, count: int, index: int, peers=None):
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
        self.processes, self.index, self.peers = count, index, peers
        self.comm = world.Split(0, index)   # ranks ordered as the framework's process indices
        _end_the_job_on_uncaught_exceptions(world, index)

    def _wait_for_peers(self) -> None:
        """Returns when every process has reached this exchange; raises Unavailable naming a
        peer the framework says is gone."""
        arrived = self.comm.Ibarrier()
        pause = 1e-5
        while not arrived.Test():
            states = self.peers() if self.peers is not None else {}
            gone = {p: GONE[s] for p, s in states.items() if s in GONE and p != self.index}
            if gone:
                who = ", ".join(f"process {p} is {what}" for p, what in sorted(gone.items()))
                raise Unavailable(f"a collective waits for the chips of the other processes, but {who} "
                                  f"(the framework's coordination service says so)")
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def all(self, mine: dict) -> dict:
        """{chip position: array} of this process -> the same for every process's chips."""
        self._wait_for_peers()
        parts = self.comm.allgather(mine)
        STATS["bytes_sent"] += (self.processes - 1) * sum(np.asarray(v).nbytes for v in mine.values())
        STATS["exchanges"] += 1
        merged = {}
        for part in parts:
            merged.update(part)
        return merged

    def agree(self, value):
        """Every process's `value` (a host read, which must agree everywhere)."""
        self._wait_for_peers()
        return self.comm.allgather(value)

    def finish(self) -> None:
        """At exit, after the last exchange: MPI_Finalize now rather than after Python's exit
        hooks (mpi4py's default). It is a fence (every process reaches it before any leaves
        it, measured here), so a process that must end last can wait for the others after it."""
        from mpi4py import MPI
        if not MPI.Is_finalized():
            MPI.Finalize()


def _end_the_job_on_uncaught_exceptions(world, index: int) -> None:
    """An uncaught exception ends this process through MPI_Finalize, which the launcher takes
    for a normal exit while the other processes wait in a collective for this one: after
    Python has printed it, the whole job is ended instead (as `python -m mpi4py` does)."""
    previous = sys.excepthook
    if getattr(previous, "ends_the_mpi_job", False):
        return

    def hook(kind, value, tb):
        previous(kind, value, tb)
        print(f"pjrt-tt: process {index} ends the MPI job after an uncaught {kind.__name__}, so the other "
              f"processes do not wait for it", file=sys.stderr, flush=True)
        world.Abort(1)
    hook.ends_the_mpi_job = True
    sys.excepthook = hook
