"""Several processes, one system (multi-controller, as jax.distributed and torch_xla run it):
the check that every process opened the same system, through the framework's key-value
store, before any device is listed. Which chips each process drives is systems.Processes.
"""
from __future__ import annotations

import json
import os
import socket

from pjrt_tt import __version__
from pjrt_tt.errors import InvalidArgument, Unavailable
from pjrt_tt.systems import Processes

# How long a process waits for its peers to publish their view of the system (a peer that
# never starts or died before it published); PJRT_TT_PEER_TIMEOUT_S overrides it.
PEER_TIMEOUT_S = 300.0


def agree(processes: Processes, store, facts: dict) -> None:
    """Publishes this process's `facts` (what it opened) in the framework's key-value store
    and checks every peer's against them: each process must open the same system on the
    same target with the same pjrt-tt, or no device is listed. `store` is (get, put), the
    shim's wrappers of the framework's callbacks."""
    if processes.local:
        return
    if store is None:
        raise InvalidArgument(f"{processes.count} processes were asked for (num_nodes), but the framework "
                              f"gave pjrt-tt no key-value store to agree on the system through")
    get, put = store
    mine = dict(facts, version=__version__, host=socket.gethostname(), pid=os.getpid())
    put(f"pjrt_tt/process/{processes.index}", json.dumps(mine, sort_keys=True))
    timeout_ms = int(float(os.environ.get("PJRT_TT_PEER_TIMEOUT_S", PEER_TIMEOUT_S)) * 1000)
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
