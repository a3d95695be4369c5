"""Several processes, one system (multi-controller, as jax.distributed and torch_xla run it):
the check that every process opened the same system, through the framework's key-value
store, before any device is listed. Which chips each process drives is systems.Processes.
"""
from __future__ import annotations

import json
import os
import re
import socket
import sys
import time

from pjrt_tt import __version__
from pjrt_tt.errors import InvalidArgument, Unavailable
from pjrt_tt.systems import Processes

# How long a process waits for its peers to publish their view of the system (a peer that
# never starts or died before it published); PJRT_TT_PEER_TIMEOUT_S overrides it.
PEER_TIMEOUT_S = 300.0
# How long process 0 waits at exit for the other processes on its host to end
LEAVE_TIMEOUT_S = 60.0


def agree(processes: Processes, store, facts: dict) -> dict[int, dict]:
    """Publishes this process's `facts` (what it opened) in the framework's key-value store
    and checks every peer's against them: each process must open the same system on the
    same target with the same pjrt-tt, or no device is listed. `store` is (get, put), the
    shim's wrappers of the framework's callbacks. Returns each peer's facts by process index."""
    if processes.local:
        return {}
    if store is None:
        raise InvalidArgument(f"{processes.count} processes were asked for (num_nodes), but the framework "
                              f"gave pjrt-tt no key-value store to agree on the system through")
    get, put = store
    mine = dict(facts, version=__version__, host=socket.gethostname(), pid=os.getpid())
    put(f"pjrt_tt/process/{processes.index}", json.dumps(mine, sort_keys=True))
    timeout_ms = int(float(os.environ.get("PJRT_TT_PEER_TIMEOUT_S", PEER_TIMEOUT_S)) * 1000)
    seen = {}
    for peer in range(processes.count):
        if peer == processes.index:
            continue
        try:
            theirs = json.loads(get(f"pjrt_tt/process/{peer}", timeout_ms))
        except RuntimeError as e:
            raise Unavailable(f"process {peer} of {processes.count} did not publish its view of the system "
                              f"within {timeout_ms / 1000:g} s (PJRT_TT_PEER_TIMEOUT_S): it has not started, "
                              f"or it died; {e}") from None
        differ = {k: (mine.get(k), theirs.get(k)) for k in ("system", "target", "version", "count")
                  if mine.get(k) != theirs.get(k)}
        if differ:
            what = "; ".join(f"{k}: {a!r} here, {b!r} in process {peer}" for k, (a, b) in differ.items())
            raise InvalidArgument(f"the processes of this run disagree on the TT system ({what}): start every "
                                  f"process with the same PJRT_TT_TARGET, PJRT_TT_SYSTEM and pjrt-tt")
        seen[peer] = theirs
    return seen


def check_tt_run_binding(processes: Processes, system, env=os.environ) -> None:
    """Under tt-run (ttnn's MPI launcher), the rank bindings say which block of the mesh each
    rank drives (TT_MESH_HOST_RANK) and the mesh graph descriptor the mesh's shape and hosts
    (TT_MESH_GRAPH_DESC_PATH). pjrt-tt gives process p the p-th block of chips (systems.
    Processes), so a binding that says otherwise, or a descriptor of another system, is an
    error naming both rather than a run whose chips differ from what tt-run set up."""
    if "TT_MESH_HOST_RANK" not in env and "TT_MESH_GRAPH_DESC_PATH" not in env:
        return
    where = "tt-run's rank bindings"
    mesh_id, host_rank = env.get("TT_MESH_ID", "0"), env.get("TT_MESH_HOST_RANK")
    if mesh_id != "0":
        raise InvalidArgument(f"{where} put process {processes.index} in mesh {mesh_id} (TT_MESH_ID); pjrt-tt "
                              f"runs one mesh, the system {system.name}: bind every rank to mesh_id 0")
    if host_rank is not None and host_rank != str(processes.index):
        raise InvalidArgument(f"{where} bind process {processes.index} to mesh_host_rank {host_rank} "
                              f"(TT_MESH_HOST_RANK), but pjrt-tt has process p drive the p-th block of the "
                              f"{system.name}'s chips: bind rank r to mesh_host_rank r")
    path = env.get("TT_MESH_GRAPH_DESC_PATH")
    if not path:
        return
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise InvalidArgument(f"{where} name the mesh graph descriptor {path} (TT_MESH_GRAPH_DESC_PATH), "
                              f"which cannot be read: {e}") from None
    dims = {k: [int(d) for d in re.findall(r"\d+", m.group(1))]
            for k in ("device_topology", "host_topology")
            for m in [re.search(k + r"\s*\{\s*dims:\s*\[([^\]]*)\]", text)] if m}
    if len(dims) < 2 or text.count("mesh_descriptors") != 1:
        print(f"pjrt-tt: the mesh graph descriptor {path} was not checked against PJRT_TT_SYSTEM "
              f"{system.name}: it is not one mesh with device_topology and host_topology dims",
              file=sys.stderr, flush=True)
        return
    hosts = 1
    for d in dims["host_topology"]:
        hosts *= d
    if tuple(dims["device_topology"]) != tuple(system.mesh_shape) or hosts != processes.count:
        raise InvalidArgument(
            f"the mesh graph descriptor {path} (TT_MESH_GRAPH_DESC_PATH, from tt-run) describes a "
            f"{'x'.join(map(str, dims['device_topology']))} mesh over {hosts} host(s), but this run is "
            f"{processes.count} process(es) on the {system.name} "
            f"({'x'.join(map(str, system.mesh_shape))}): set PJRT_TT_SYSTEM to the descriptor's system, "
            f"or give tt-run a descriptor of this one")


def outlive_local_peers(processes: Processes, peers: dict[int, dict], timeout_s: float = LEAVE_TIMEOUT_S) -> None:
    """Process 0 returns once the other processes on its host have ended (or after
    `timeout_s`). torch_xla's coordination service lives in process 0 and its clients are
    never shut down: a process still exiting when process 0 is gone is killed by its client
    ("the JAX distributed service detected fatal errors"), an abort after correct results.
    Called at exit after the processes' last fence (sim: MPI_Finalize), so no peer waits for
    process 0 any more. Processes on other hosts cannot be watched from here (docs/multihost.md)."""
    if processes.local or processes.index != 0:
        return
    here = socket.gethostname()
    pids = [f["pid"] for f in peers.values() if f.get("host") == here and isinstance(f.get("pid"), int)]
    end = time.monotonic() + timeout_s
    while any(_running(pid) for pid in pids) and time.monotonic() < end:
        time.sleep(0.02)


def _running(pid: int) -> bool:
    """False once `pid` has exited (a zombie its launcher has not reaped yet has exited too)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False
