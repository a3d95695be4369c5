"""Program bytes -> ttnn program, one road for one chip and for a mesh:

    ingest (one chip) or partition (SPMD)  ->  CompileContext  ->  lower  ->  passes
        ->  compile hook  ->  conformance check

A single-chip program is the 1x1 case of the mesh path. The CompileContext (mesh shape,
numerics options, system) is built here once per compile and passed explicitly to the
lowering and to every pass. Results are cached, keyed by the program bytes, their format
and the compile settings that change the result, so a repeated jit of the same function
never lowers twice.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import os
import threading
from typing import Callable

from pjrt_tt.compile_context import CompileContext, from_overrides
from pjrt_tt.errors import InvalidArgument
from pjrt_tt.ingest import parse
from pjrt_tt.lower import lower_module
from pjrt_tt.passes import run_passes
from pjrt_tt.program import Program
from pjrt_tt.spmd import partition_module   # (importing pjrt_tt.spmd registers its lowering rules)
from pjrt_tt.systems import get_system

_dump_counter = itertools.count()

# check(program, mesh_shape): raises when a target would not run the program as lowered.
ConformanceCheck = Callable[[Program, tuple[int, int]], None]


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
    def __init__(self, settings, check: ConformanceCheck | None = None):
        self.settings = settings
        self.check = check           # called with each newly lowered program, one chip or a mesh
        self.hook = load_hook(settings.compile_hook)   # (parsed, program, ctx) after each new compile
        self.system = get_system(settings.system)
        self._cache: dict[str, Compiled] = {}
        self._lock = threading.Lock()
        self.compilations = 0        # programs lowered (cache misses), for tests and stats

    def compile(self, code: bytes, fmt: str, options=None) -> Compiled:
        """`options` (a parsed CompileOptions): SPMD programs (more than one partition) are
        partitioned first (pjrt_tt.spmd) and run on a ttnn mesh; its env_option_overrides carry
        the tt_* numerics options (docs/numerics.md)."""
        spmd = options is not None and options.num_replicas * options.num_partitions > 1
        salt = f"spmd{options.num_replicas}x{options.num_partitions}".encode() if spmd else b""
        numerics = from_overrides(options.env_option_overrides if options is not None else (),
                                  self.system.arch.name)
        salt += numerics.key().encode()
        key = hashlib.sha256(fmt.encode() + salt + b"\0" + code).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        if spmd:
            parsed, mesh_shape, optimized = partition_module(code, fmt, options, self.system.mesh_shape)
        else:
            parsed, mesh_shape, optimized = parse(code, fmt), (1, 1), None
        ctx = CompileContext(mesh_shape=tuple(mesh_shape), numerics=numerics, system=self.system)
        text = parsed.text()
        dump = self.settings.dump_dir
        index = next(_dump_counter)
        if dump:  # the StableHLO goes out first, so it is there even when lowering fails
            self._write(f"{index:04d}.stablehlo.mlir", text)
        program = run_passes(lower_module(parsed, ctx), ctx)
        if self.hook is not None:
            self.hook(parsed, program, ctx)
        if dump:
            self._write(f"{index:04d}.{program.name}.ttnn.txt", program.format())
        if self.check is not None:
            self.check(program, ctx.mesh_shape)
        compiled = Compiled(program, key[:32], code, fmt, text, ctx.mesh_shape, optimized)
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


def load_hook(spec: str) -> Callable | None:
    """The compile hook named `module:function` (PJRT_TT_COMPILE_HOOK), e.g. the op coverage
    logger the test suite sets (tools/op_coverage.py); None when none is named."""
    if not spec:
        return None
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise InvalidArgument(f"PJRT_TT_COMPILE_HOOK={spec!r}: expected module:function")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise InvalidArgument(f"PJRT_TT_COMPILE_HOOK={spec!r} cannot be loaded: {e}") from e
