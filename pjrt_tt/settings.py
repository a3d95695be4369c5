"""User settings, from the environment and from PJRT plugin options (which win)."""
from __future__ import annotations

import dataclasses
import os

from pjrt_tt.errors import InvalidArgument


@dataclasses.dataclass(frozen=True)
class Settings:
    target: str = "auto"            # PJRT_TT_TARGET: auto | device | sim | mock
    system: str = "n150"            # PJRT_TT_SYSTEM: n150 | n300 | p150 | p300 | t3k | galaxy
    dump_dir: str = ""              # PJRT_TT_DUMP: write StableHLO + ttnn program per compile
    check_with_mock: bool = False   # PJRT_TT_CHECK_WITH_MOCK=1: real ttnn validates every program
    compile_hook: str = ""          # PJRT_TT_COMPILE_HOOK=module:function, called (parsed, program, ctx)
                                    # after each new compile (the test suite's op coverage log)
    sim_dram_mb: int = 0            # PJRT_TT_SIM_DRAM_MB: simulated DRAM per chip (0: the chip's own)
    program_cache_size: int = 256   # PJRT_TT_PROGRAM_CACHE_SIZE: compiled programs kept (LRU; 0: none)
    execute_timeout_s: float | None = None   # PJRT_TT_EXECUTE_TIMEOUT_S: longest a device call may
                                             # take before it fails and the device counts as wedged;
                                             # 0: no limit; unset: the target's default
                                             # (runtime/deadline.py, docs/reliability.md)

    @classmethod
    def load(cls, options: dict | None = None) -> "Settings":
        env = os.environ
        opts = {k.lower(): v for k, v in (options or {}).items()}
        return cls(
            target=str(opts.get("target", env.get("PJRT_TT_TARGET", "auto"))),
            system=str(opts.get("system", env.get("PJRT_TT_SYSTEM", "n150"))),
            dump_dir=str(opts.get("dump", env.get("PJRT_TT_DUMP", ""))),
            check_with_mock=str(opts.get("check_with_mock", env.get("PJRT_TT_CHECK_WITH_MOCK", "0")))
            .lower() in ("1", "true", "yes", "on"),
            compile_hook=env.get("PJRT_TT_COMPILE_HOOK", ""),
            sim_dram_mb=int(opts.get("sim_dram_mb", env.get("PJRT_TT_SIM_DRAM_MB", "0")) or 0),
            program_cache_size=_count("program_cache_size", opts.get(
                "program_cache_size", env.get("PJRT_TT_PROGRAM_CACHE_SIZE", cls.program_cache_size))),
            execute_timeout_s=_seconds("execute_timeout_s", opts.get(
                "execute_timeout_s", env.get("PJRT_TT_EXECUTE_TIMEOUT_S"))),
        )


def _count(name: str, value) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        n = -1
    if n < 0:
        raise InvalidArgument(f"{name} (PJRT_TT_{name.upper()}) must be a whole number >= 0, not {value!r}")
    return n


def _seconds(name: str, value) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0:   # (NaN too)
        from pjrt_tt.errors import InvalidArgument
        raise InvalidArgument(f"{name} (PJRT_TT_{name.upper()}) must be a number of seconds >= 0 "
                              f"(0: no limit), got {value!r}")
    return seconds
