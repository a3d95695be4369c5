"""Targets: where a ttnn program runs. One executor, one interface, two implementations.

    sim     SimTarget: pjrt_tt.targets.sim, a functional simulator with ttnn numerics (no card)
    mock    TtnnTarget.mock: the real ttnn package in mock-cluster mode: real validation, zeros back
    device  TtnnTarget.device: the real ttnn package on real chips

Selection: PJRT_TT_TARGET=auto|device|sim|mock (auto: device when a card is found,
else sim) and PJRT_TT_SYSTEM=n150|n300|p150|p300|t3k|galaxy. The interface the runtime
uses is written down in targets/base.py; targets/conformance.py is the mock check the
compiler runs on every program.

Modules, lowest first (each imports only those above it):
    executor.py     BoundProgram: runs a program on a ttnn-shaped module; host reads, ttnn errors
    tensors.py      DeviceTensors: the one owner of a target's device tensors
    base.py         Target (the interface) and MeshRunner
    sim_target.py   SimTarget (imports sim/ when it opens)
    mock.py         opening real ttnn on a mock cluster (no pjrt_tt imports but ttnn_facts)
    ttnn_target.py  TtnnTarget (imports mock.py / ttnn when it opens)
    conformance.py  the mock check (ttnn_target, executor)
    sim/            the simulator, a ttnn-shaped package of its own
"""
from __future__ import annotations

import sys
from typing import Callable

from pjrt_tt import systems
from pjrt_tt.errors import InvalidArgument
from pjrt_tt.targets.base import MeshRunner, Target  # noqa: F401  (the interface, for callers)
from pjrt_tt.targets.sim_target import SimTarget
from pjrt_tt.targets.ttnn_target import TtnnTarget, card_present

# How each target opens: (system, simulated DRAM MB per chip (sim only), the processes
# sharing the system, the framework's view of them (a callable, or None)) -> Target.
OPENERS: dict[str, Callable[[systems.System, int, systems.Processes, Callable | None], Target]] = {
    "device": lambda system, _dram_mb, processes, _peers: TtnnTarget.device(system, processes),
    "sim": SimTarget.open,
    "mock": lambda system, _dram_mb, processes, _peers: TtnnTarget.mock(system, processes),
}
TARGET_NAMES = ("auto", *OPENERS)


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


def open_target(name: str, system: systems.System, sim_dram_mb: int = 0,
                processes: systems.Processes = systems.Processes(), peers: Callable | None = None) -> Target:
    """`sim_dram_mb`: simulated DRAM per chip (PJRT_TT_SIM_DRAM_MB; sim only, 0 = the chip's).
    `processes`: the processes that share the system (multi-process runs); `peers()`: the
    framework's view of them ({process: PJRT_ProcessState})."""
    opener = OPENERS.get(name)
    if opener is None:
        raise InvalidArgument(f"cannot open target {name!r}")
    return opener(system, sim_dram_mb, processes, peers)
