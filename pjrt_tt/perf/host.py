"""Host dispatch cost per ttnn op: measured on the mock target, where real ttnn's host path
(validation, program cache lookup, command building) runs and only the device is absent.

tools/measure_host_dispatch.py times each op of a small transformer-block program through
our executor plus real ttnn on mock, after a warm-up (program cache hits, as in steady
state), and writes the medians to data/host_dispatch.json.
Estimates read that file: without trace every op costs its host dispatch; with trace the
host replays the whole program with one call (ttnn.execute_trace), which we assume costs
one op's dispatch per program run (trace capture segfaults in mock, so replay cannot be
measured here).
"""
from __future__ import annotations

import functools
import json
import os

DATA = os.path.join(os.path.dirname(__file__), "data", "host_dispatch.json")


@functools.lru_cache(maxsize=None)
def host_costs() -> dict:
    with open(DATA) as f:
        return json.load(f)


def dispatch_ns(fn: str) -> float:
    """Measured host cost of dispatching one op named `fn` (the mean over the measured
    program's ops when this op was not in it)."""
    data = host_costs()
    short = fn.split("[", 1)[0].rsplit(".", 1)[-1]
    return 1e3 * data["per_op_us"].get(short, data["mean_us"])


def trace_replay_ns() -> float:
    """Assumed: one execute_trace call costs one average op's dispatch."""
    return 1e3 * host_costs()["mean_us"]


def write(result: dict) -> None:
    with open(DATA, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    host_costs.cache_clear()
