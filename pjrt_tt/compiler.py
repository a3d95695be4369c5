"""Program bytes -> ttnn program, one road for one chip and for a mesh:

    ingest (one chip) or partition (SPMD)  ->  CompileContext  ->  lower  ->  passes
        ->  compile hook  ->  conformance check

Bytes the compiler has not seen are first read in a helper process (ingest/isolated.py):
jaxlib's readers crash on some malformed bytes, which must cost a failed compile only.

A single-chip program is the 1x1 case of the mesh path. The CompileContext (mesh shape,
numerics options, system) is built here once per compile and passed explicitly to the
lowering and to every pass. Results are cached, keyed by the program bytes, their format
and the compile settings that change the result, so a repeated jit of the same function
never lowers twice. The cache is bounded (least recently used entries go first; an
executable keeps its own Compiled, so eviction never breaks a program in use).

The MLIR work of a compile (ingest, lowering) runs on one long-lived compile thread of the
Compiler: MLIR keeps per-thread state for every context alive in the process, and jax keeps
one context alive per program it has lowered (its lowering cache), on the thread that calls
us; reading our module on that thread costs time that grows with every program jax has seen
(measured: 2.4x after 1,500 programs). On a thread of our own it stays flat.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import importlib
import itertools
import os
import threading
from collections.abc import Mapping
from typing import Callable

from pjrt_tt.compile_context import CompileContext, build_level, env_options, parse_options
from pjrt_tt.errors import InvalidArgument, StaleEntry
from pjrt_tt.ingest import build_optimization_level, parse
from pjrt_tt.ingest.isolated import IsolatedReader
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
    trace: bool = False   # enable_trace: the runtime runs it as a Metal trace (targets/trace.py)
    key: str = ""         # the cache key: program bytes, format and the settings that change the result
    checked: bool = False   # the conformance check (mock) accepted it


class ProgramCache(Mapping):
    """Compiled programs by key, at most `capacity` of them (0: none kept); the least
    recently used goes first. Thread-safe. Reads as a mapping (tests look programs up)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: collections.OrderedDict[str, Compiled] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def lookup(self, key: str) -> Compiled | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                self.misses += 1
            else:
                self.hits += 1
                self._entries.move_to_end(key)
            return hit

    def store(self, key: str, compiled: Compiled) -> None:
        with self._lock:
            if self.capacity <= 0:
                return
            self._entries[key] = compiled
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
                self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __getitem__(self, key: str) -> Compiled:
        with self._lock:
            return self._entries[key]

    def __iter__(self):
        with self._lock:
            return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


class Compiler:
    def __init__(self, settings, check: ConformanceCheck | None = None, recorder=None):
        self.settings = settings
        self.recorder = recorder     # spans for profiler sessions (runtime/profiler.py), or None
        self.check = check           # called with each newly lowered program, one chip or a mesh
        self.hook = load_hook(settings.compile_hook)   # (parsed, program, ctx) after each new compile
        self.system = get_system(settings.system)
        self._cache = ProgramCache(settings.program_cache_size)
        self._lock = threading.Lock()
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None   # see the module doc
        self.reader = IsolatedReader()   # new bytes are read in a helper process first
        self.reader.start()              # (its start-up overlaps the framework's tracing)
        self.compilations = 0        # programs lowered (cache misses), for tests and stats
        self.loads = 0               # programs read back from serialized executables (not lowered)

    def compile(self, code: bytes, fmt: str, options=None) -> Compiled:
        """`options` (a parsed CompileOptions): SPMD programs (more than one partition) are
        partitioned first (pjrt_tt.spmd) and run on a ttnn mesh; its env_option_overrides carry
        the compile options (compile_context.py: tt_* numerics, docs/numerics.md; the optimizer's,
        docs/optimizer.md), after those of PJRT_TT_COMPILE_OPTIONS (torch's bridge)."""
        rec = self.recorder if self.recorder is not None and self.recorder.active else None
        start = rec.now() if rec else 0
        key, spmd, chosen = self._key(code, fmt, options)
        hit = self._cache.lookup(key)
        if hit is not None:
            if rec:
                rec.host("Compile", f"compile {hit.program.name}", start, rec.now(), {"cache": "hit"})
            return hit
        index = next(_dump_counter)
        parsed_text, program, mesh_shape, optimized = self._on_compile_thread(
            self._lower, code, fmt, options, spmd, chosen, index)
        if self.settings.dump_dir:
            self._write(f"{index:04d}.{program.name}.ttnn.txt", program.format())
        if self.check is not None:
            checked = rec.now() if rec else 0
            self.check(program, mesh_shape)
            if rec:
                rec.host("Compile", "mock check", checked, rec.now())
        if rec:
            rec.host("Compile", f"compile {program.name}", start, rec.now(),
                     {"cache": "miss", "ops": len(program.ops), "format": fmt})
        compiled = Compiled(program, key[:32], code, fmt, parsed_text, mesh_shape, optimized, chosen[1].trace,
                            key, self.check is not None)
        self._cache.store(key, compiled)
        with self._lock:
            self.compilations += 1
        return compiled

    def _key(self, code: bytes, fmt: str, options):
        """(cache key, SPMD?, (numerics, optimizer options)) of a compile of `code`."""
        spmd = options is not None and options.num_replicas * options.num_partitions > 1
        salt = f"spmd{options.num_replicas}x{options.num_partitions}".encode() if spmd else b""
        given = [] if options is None else \
            build_level(build_optimization_level(options)) + list(options.env_option_overrides)
        numerics, optimizer = parse_options(env_options(os.environ) + given, self.system.arch.name)
        salt += numerics.key().encode() + optimizer.key().encode()
        return hashlib.sha256(fmt.encode() + salt + b"\0" + code).hexdigest(), spmd, (numerics, optimizer)

    def load(self, compiled: Compiled, options) -> Compiled:
        """A Compiled read back from a serialized executable (runtime/serialized.py), with the
        (parsed) compile options it is loaded with: used as it is, without lowering, when this
        compiler would have made it from the same bytes with the same settings (else
        StaleEntry: compile afresh); checked with mock here only if it was not when made."""
        key, _, _ = self._key(compiled.code, compiled.format, options)
        if key != compiled.key:
            raise StaleEntry("a serialized pjrt-tt executable compiled with other settings (compile options, "
                             "PJRT_TT_COMPILE_OPTIONS or the system's architecture differ): compile it again")
        if self.check is not None and not compiled.checked:
            self.check(compiled.program, compiled.mesh_shape)
            compiled = dataclasses.replace(compiled, checked=True)
        self._cache.store(key, compiled)
        with self._lock:
            self.loads += 1
        return compiled

    def _lower(self, code: bytes, fmt: str, options, spmd: bool, chosen, index: int):
        """Bytes -> (StableHLO text, ttnn program, mesh shape, optimized program): the part
        of a compile that holds MLIR objects (run on the compile thread)."""
        rec = self.recorder if self.recorder is not None and self.recorder.active else None
        last = [rec.now() if rec else 0]

        def phase(name: str) -> None:   # a profiler span from the previous phase's end
            if rec:
                now = rec.now()
                rec.host("Compile", name, last[0], now)
                last[0] = now

        # the framework's bytes are read in a helper process (a crash there is a refusal); this
        # process reads only the module the helper wrote back (ingest/isolated.py)
        module = self.reader.read(code, fmt)
        phase("read")
        numerics, optimizer = chosen
        strict = numerics.get("tt_strict_64bit") == "true"
        if spmd:
            parsed, mesh_shape, optimized = partition_module(module, "mlir", options, self.system.mesh_shape, strict)
        else:
            parsed = parse(module, "mlir", from_hlo=fmt == "hlo", strict_64bit=strict)
            mesh_shape, optimized = (1, 1), None
        phase("partition" if spmd else "ingest")
        ctx = CompileContext(mesh_shape=tuple(mesh_shape), numerics=numerics, system=self.system,
                             optimizer=optimizer)
        text = parsed.text()
        if self.settings.dump_dir:  # the StableHLO goes out first, so it is there even when lowering fails
            self._write(f"{index:04d}.stablehlo.mlir", text)
        lowered = lower_module(parsed, ctx)
        phase("lower")
        program = run_passes(lowered, ctx)
        phase("passes")
        if self.hook is not None:
            self.hook(parsed, program, ctx)
        return text, program, ctx.mesh_shape, optimized

    def _on_compile_thread(self, fn, *args):
        with self._lock:
            if self._thread is None:
                self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pjrt-tt-compile")
            pool = self._thread
        if threading.current_thread().name.startswith("pjrt-tt-compile"):
            return fn(*args)   # a compile from inside a compile (a hook): no waiting on ourselves
        return pool.submit(fn, *args).result()

    def clear_cache(self) -> None:
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
