"""The profile: per program, an op table and a Chrome/Perfetto trace of one run.

Asked for with PJRT_TT_PROFILE=<dir> or the compile option tt_profile=<dir>
(jax.jit(f, compiler_options={"tt_profile": "/tmp/prof"})). The first two runs of each
executable are timed op by op on the host (the executor's timer hook) and written as

    <dir>/<NNNN>.<program>.<system>.perf.txt    the op table and a summary
    <dir>/<NNNN>.<program>.<system>.trace.json  Chrome trace (open in ui.perfetto.dev)

Device times are estimates (estimator.py); host times are what this run measured on its
target (sim: numpy compute included; mock/device: real ttnn's host path); the second
run's files replace the first's (whose host times include ttnn building its programs). docs/perf.md
says how to read both.
"""
from __future__ import annotations

import itertools
import json
import os

from pjrt_tt import program as prog
from pjrt_tt.perf.program_cost import ProgramEstimate, estimate_program

ENV = "PJRT_TT_PROFILE"
OPTION = "tt_profile"
_counter = itertools.count()


def requested_dir(options) -> str:
    """The profile directory a compile asked for (its tt_profile option, else the env)."""
    for key, value in (getattr(options, "env_option_overrides", None) or ()):
        if key == OPTION:
            return str(value)
    return os.environ.get(ENV, "")


class Profiler:
    """The profile of one executable: its first run (ttnn's program cache cold: host times
    include building the programs) and its second (steady state) are timed; the second
    overwrites the first's files, which say which run they show."""

    RUNS = 2

    def __init__(self, directory: str, system: str, target: str, chips: int = 1, trace: bool = False):
        self.directory, self.system, self.target, self.chips = directory, system, target, chips
        self.trace = trace   # the executable replays as a Metal trace from its third run (enable_trace)
        self.runs = 0
        self.index = next(_counter)

    @property
    def active(self) -> bool:
        return self.runs < self.RUNS

    def run(self, program: prog.Program, bound, run):
        """run() once with per-op host timing on `bound` (a BoundProgram), then write the
        profile of `program`; returns run()'s result."""
        times: dict[int, float] = {}
        outer = bound.timer   # a profiler session's op spans (runtime/profiler.py) keep going

        def record(op, ns):
            times[id(op)] = times.get(id(op), 0.0) + ns   # a loop body's op: all its trips
            if outer is not None:
                outer(op, ns)

        bound.timer = record
        try:
            result = run()
        finally:
            bound.timer = outer
        self.runs += 1
        estimate = estimate_program(program, self.system, mesh_chips=self.chips, measured_host_ns=times)
        replay = estimate_program(program, self.system, trace=True, mesh_chips=self.chips) if self.trace else None
        which = "first run, ttnn program cache cold" if self.runs == 1 else (
            f"run {self.runs}, {'trace capture' if self.trace else 'steady state'}")
        write(self.directory, estimate, f"{self.target} target, {which}", self.chips, self.index, replay)
        return result


def profiler_for(options, system: str, target: str, chips: int = 1, trace: bool = False) -> Profiler | None:
    directory = requested_dir(options)
    return Profiler(directory, system, target, chips, trace) if directory else None


def write(directory: str, estimate: ProgramEstimate, target: str, chips: int = 1,
          index: int | None = None, replay: ProgramEstimate | None = None) -> tuple[str, str]:
    """`replay`: the same program's estimate as a trace replay (an enable_trace executable)."""
    os.makedirs(directory, exist_ok=True)
    index = next(_counter) if index is None else index
    stem = os.path.join(directory, f"{index:04d}.{estimate.name}.{estimate.chip}")
    with open(stem + ".perf.txt", "w") as f:
        f.write(table(estimate, target, replay))
    with open(stem + ".trace.json", "w") as f:
        json.dump(chrome_trace(estimate, target, chips), f)
    return stem + ".perf.txt", stem + ".trace.json"


def _shapes(op: prog.Op) -> str:
    ins = [str(v.type) for v in op.operands() if isinstance(v.type, prog.TensorType)]
    return f"{', '.join(ins)} -> {op.result.type}"


def _memory(op: prog.Op) -> str:
    mc = op.kwargs.get("memory_config")
    return str(mc).replace("ttnn.", "") if mc is not None else "DRAM interleaved"


def table(e: ProgramEstimate, target: str, replay: ProgramEstimate | None = None) -> str:
    """The op table: one row per program op, then the summary."""
    lines = [f"pjrt-tt profile of program @{e.name} on {e.chip}: device times are ESTIMATES "
             f"(pjrt_tt/perf, calibration in docs/perf.md); host times measured ({target})",
             "",
             f"{'#':>4}  {'est dev us':>10}  {'host us':>8}  {'bound':<8}  {'GFLOP':>8}  {'MB moved':>8}  "
             f"{'ttnn op':<28}  {'format':<10}  {'memory':<16}  shapes  |  source"]
    for r in e.rows:
        if r.op.fn.startswith("host.") and r.op.fn != prog.HOST_READ:
            continue
        t = r.op.result.type
        fmt = t.dtype if isinstance(t, prog.TensorType) else "host"
        where = f" [{r.where}, counted once]" if r.where else ""
        lines.append(f"{r.index:>4}  {r.cost.device_us:>10.2f}  {r.host_ns / 1e3:>8.1f}  {r.cost.bound:<8}  "
                     f"{r.cost.flops / 1e9:>8.3f}  {r.cost.bytes / 1e6:>8.2f}  {r.op.fn:<28}  {fmt:<10}  "
                     f"{_memory(r.op):<16}  {_shapes(r.op)}  |  {r.op.origin}{where}")
    lines += ["", *summary(e, target, replay)]
    return "\n".join(lines) + "\n"


def summary(e: ProgramEstimate, target: str, replay: ProgramEstimate | None = None) -> list[str]:
    """The summary lines; HOST-BOUND when the measured host dispatch of a run exceeds its
    estimated device time; TRACE (with `replay`) what replaying the program as a trace saves."""
    by_bound: dict[str, float] = {}
    by_op: dict[str, tuple[int, float]] = {}
    for r in e.rows:
        by_bound[r.cost.bound] = by_bound.get(r.cost.bound, 0.0) + r.cost.device_ns
        n, t = by_op.get(r.op.fn, (0, 0.0))
        by_op[r.op.fn] = (n + 1, t + r.cost.device_ns)
    dev = e.device_ns or 1.0
    top = sorted(by_op.items(), key=lambda kv: -kv[1][1])[:8]
    flag = []
    if e.host_ns > e.device_ns and e.ops():   # the card would wait for the host on every op
        flag = [f"  HOST-BOUND: host dispatch {e.host_ns / e.ops() / 1e3:.1f} us per op ({target}, measured) "
                f"against {e.device_ns / e.ops() / 1e3:.1f} us estimated device time per op: the host "
                f"bounds throughput ({e.host_ns / dev:.1f}x the device time per call); "
                + ("its trace replays remove the per-op dispatch (TRACE below)" if replay is not None else
                   "replay it as a trace (compile option enable_trace) or fuse its small ops")]
    if replay is not None:
        flag.append(f"  TRACE (enable_trace): from run 3 on a replay dispatches the whole program in one call: "
                    f"host {replay.host_ns / 1e3:.1f} us (estimate) instead of {e.host_ns / 1e3:.1f} us, one run "
                    f"{replay.wall_ns / 1e3:.1f} us instead of {e.wall_ns / 1e3:.1f} us (estimates)")
    return [
        f"summary (estimates): {e.ops()} ttnn ops; device {e.device_ns / 1e3:.1f} us; host dispatch "
        f"{e.host_ns / 1e3:.1f} us ({target}); one run without trace {e.wall_ns / 1e3:.1f} us "
        f"({'host' if e.host_ns > e.device_ns else 'device'}-bound)",
        f"  {e.flops / 1e9:.3f} GFLOP, {e.bytes / 1e6:.2f} MB moved; device time by bound: "
        + ", ".join(f"{k} {100 * v / dev:.0f}%" for k, v in sorted(by_bound.items(), key=lambda kv: -kv[1])),
        "  top ops by estimated device time: "
        + ", ".join(f"{fn} x{n} {t / 1e3:.1f} us" for fn, (n, t) in top),
        *flag,
    ]


def chrome_trace(e: ProgramEstimate, target: str, chips: int = 1) -> dict:
    """Trace Event Format: one process for the host (measured dispatch) and one per chip
    (estimated device time, the same SPMD program on each chip), times in µs."""
    events = [{"ph": "M", "pid": 0, "tid": 0, "name": "process_name", "args": {"name": f"host ({target})"}},
              {"ph": "M", "pid": 0, "tid": 1, "name": "thread_name",
               "args": {"name": "host dispatch (measured)"}}]
    for c in range(chips):
        events += [{"ph": "M", "pid": c + 1, "tid": 0, "name": "process_name",
                    "args": {"name": f"{e.chip} chip {c} (estimate)"}},
                   {"ph": "M", "pid": c + 1, "tid": 1, "name": "thread_name",
                    "args": {"name": "device time (estimate)"}}]
    for r in e.rows:
        args = {"source": r.op.origin, "shapes": _shapes(r.op), "bound": r.cost.bound,
                "flops": r.cost.flops, "bytes": r.cost.bytes, "estimate": True}
        if r.host_ns > 0:
            events.append({"ph": "X", "pid": 0, "tid": 1, "name": r.op.fn, "ts": r.host_start_ns / 1e3,
                           "dur": r.host_ns / 1e3, "args": {"source": r.op.origin}})
        if r.cost.device_ns > 0:
            for c in range(chips):
                events.append({"ph": "X", "pid": c + 1, "tid": 1, "name": r.op.fn,
                               "ts": r.device_start_ns / 1e3, "dur": r.cost.device_ns / 1e3, "args": args})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"program": e.name, "system": e.chip, "device_times": "estimates (pjrt_tt/perf)"}}
