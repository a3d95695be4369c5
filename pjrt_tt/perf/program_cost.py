"""Estimated time of a whole ttnn program (pjrt_tt/program.py) on a chip, without running it.

Each op gets its device estimate (estimator.py) and a host dispatch cost (host.py: measured
on mock, or the caller's measured times). ttnn's command queue is asynchronous: the host
enqueues op i+1 while the device runs op i, so a run without trace is the pipeline

    host_done[i]  = host_done[i-1] + host[i]
    dev_start[i]  = max(dev_done[i-1], host_done[i]);  dev_done[i] = dev_start[i] + device[i]

and with trace the host cost is one replay call per program. Ops inside a loop or a
branch are counted once (the trip count is data the estimate does not have); the rows say
so. Everything here is an estimate.
"""
from __future__ import annotations

import dataclasses

from pjrt_tt import program as prog
from pjrt_tt.perf import host
from pjrt_tt.perf.estimator import Estimator, OpCost


@dataclasses.dataclass
class OpRow:
    index: int
    op: prog.Op
    cost: OpCost
    host_ns: float
    where: str = ""          # "" at top level, else "loop body" / "branch k" (counted once)
    host_start_ns: float = 0.0
    device_start_ns: float = 0.0


@dataclasses.dataclass
class ProgramEstimate:
    name: str
    chip: str
    trace: bool
    rows: list[OpRow]
    wall_ns: float            # one run: host and device pipelined (see the module doc)

    @property
    def device_ns(self) -> float:
        return sum(r.cost.device_ns for r in self.rows)

    @property
    def host_ns(self) -> float:
        return host.trace_replay_ns() if self.trace else sum(r.host_ns for r in self.rows)

    @property
    def flops(self) -> float:
        return sum(r.cost.flops for r in self.rows)

    @property
    def bytes(self) -> float:
        return sum(r.cost.bytes for r in self.rows)

    def ops(self) -> int:
        return sum(1 for r in self.rows if not r.op.fn.startswith("host."))


def flatten(ops: list, where: str = "") -> list[tuple[prog.Op, str]]:
    out = []
    for op in ops:
        if isinstance(op, prog.While):
            out += flatten(op.cond.ops, "loop cond") + flatten(op.body.ops, "loop body")
        elif isinstance(op, prog.Switch):
            for k, b in enumerate(op.branches):
                out += flatten(b.ops, f"branch {k}")
        else:
            out.append((op, where))
    return out


def l1_values(ops: list) -> frozenset:
    """Ids of the values that live in L1: results of ops placed there (level 2's
    memory_config) and the reshape views of them."""
    placed = {op.result.id for op in ops if isinstance(op, prog.Op) and "L1" in str(op.kwargs.get("memory_config"))}
    roots = prog.storage_roots(ops)
    return frozenset(placed | {v for v, r in roots.items() if r in placed})


def estimate_program(program: prog.Program, chip: str, trace: bool = False, mesh_chips: int = 1,
                     measured_host_ns: dict[int, float] | None = None,
                     estimator: Estimator | None = None) -> ProgramEstimate:
    """`measured_host_ns`: host ns per op (by id(op)) from a real run, used instead of the
    mock-measured table when given."""
    est = estimator or Estimator(chip)
    rows, host_t, dev_t = [], 0.0, 0.0
    if trace:
        host_t = host.trace_replay_ns()
    l1 = l1_values(program.ops)
    for i, (op, where) in enumerate(flatten(program.ops)):
        cost = est.op(op, mesh_chips, l1)
        if op.fn.startswith("host."):
            h = 0.0 if op.fn != prog.HOST_READ else host.dispatch_ns("from_device")
        elif measured_host_ns is not None and id(op) in measured_host_ns:
            h = measured_host_ns[id(op)]
        else:
            h = host.dispatch_ns(op.fn)
        row = OpRow(i, op, cost, 0.0 if trace else h, where)
        row.host_start_ns = host_t
        host_t += row.host_ns
        if op.fn == prog.HOST_READ:   # a sync: the host waits for the device to drain
            host_t = max(host_t, dev_t)
        row.device_start_ns = max(dev_t, host_t)
        dev_t = row.device_start_ns + cost.device_ns
        rows.append(row)
    return ProgramEstimate(program.name, chip, trace, rows, max(dev_t, host_t))
