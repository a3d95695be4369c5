"""Program bytes -> ttnn program: ingest, lower, passes; cached, dumped, checked.

The cache key is the program bytes, its format and the compile settings that change
the result, so a repeated jit of the same function never lowers twice.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import threading

from pjrt_tt.ingest import parse
from pjrt_tt.lower import lower_module
from pjrt_tt.passes import run_passes
from pjrt_tt.passes.data_formats import from_overrides, using
from pjrt_tt.perf.profile import without_profile_option   # tt_profile is read by the runtime
from pjrt_tt.program import Program
from pjrt_tt.systems import get_system

_dump_counter = itertools.count()


@dataclasses.dataclass
class Compiled:
    program: Program
    fingerprint: str
    code: bytes
    format: str
    stablehlo_text: str
    mesh_shape: tuple[int, int] = (1, 1)   # the ttnn mesh an SPMD program runs on
    optimized: tuple[bytes, str] | None = None  # what PJRT_Executable_OptimizedProgram returns


class Compiler:
    def __init__(self, settings, validator=None):
        self.settings = settings
        self.validator = validator   # called with each new Program (the mock check)
        self._cache: dict[str, Compiled] = {}
        self._lock = threading.Lock()
        self.compilations = 0        # programs lowered (cache misses), for tests and stats

    def compile(self, code: bytes, fmt: str, options=None) -> Compiled:
        """`options` (a parsed CompileOptions): SPMD programs (more than one partition) are
        partitioned first (pjrt_tt.spmd) and run on a ttnn mesh; its env_option_overrides carry
        the tt_* numerics options (passes/data_formats.py)."""
        spmd = options is not None and options.num_replicas * options.num_partitions > 1
        salt = f"spmd{options.num_replicas}x{options.num_partitions}".encode() if spmd else b""
        numerics = from_overrides(without_profile_option(options.env_option_overrides if options is not None else ()),
                                  get_system(self.settings.system).arch.name)  # tt_* options (numerics.md)
        salt += numerics.key().encode()
        key = hashlib.sha256(fmt.encode() + salt + b"\0" + code).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        mesh_shape, optimized = (1, 1), None
        if spmd:
            from pjrt_tt import spmd as spmd_mod
            parsed, mesh_shape, optimized = spmd_mod.partition_module(code, fmt, options)
        else:
            parsed = parse(code, fmt)
        text = parsed.text()
        dump = self.settings.dump_dir
        index = next(_dump_counter)
        if dump:  # the StableHLO goes out first, so it is there even when lowering fails
            self._write(f"{index:04d}.stablehlo.mlir", text)
        with using(numerics):
            if spmd:
                program = run_passes(spmd_mod.lower_on_mesh(parsed, mesh_shape))
            else:
                program = run_passes(lower_module(parsed))
        if self.settings.coverage_log:
            from pjrt_tt.coverage import log_program
            log_program(self.settings.coverage_log, parsed.module)
        if dump:
            self._write(f"{index:04d}.{program.name}.ttnn.txt", program.format())
        if spmd:
            spmd_mod.validate_on_mock(self.settings, program, mesh_shape)
        elif self.validator is not None:
            self.validator(program)
        compiled = Compiled(program, key[:32], code, fmt, text, mesh_shape, optimized)
        with self._lock:
            self._cache[key] = compiled
            self.compilations += 1
        return compiled

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _write(self, name: str, body: str) -> None:
        os.makedirs(self.settings.dump_dir, exist_ok=True)
        with open(os.path.join(self.settings.dump_dir, name), "w") as f:
            f.write(body)
