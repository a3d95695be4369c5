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
from pjrt_tt.program import Program

_dump_counter = itertools.count()


@dataclasses.dataclass
class Compiled:
    program: Program
    fingerprint: str
    code: bytes
    format: str
    stablehlo_text: str


class Compiler:
    def __init__(self, settings, validator=None):
        self.settings = settings
        self.validator = validator   # called with each new Program (the mock check)
        self._cache: dict[str, Compiled] = {}
        self._lock = threading.Lock()
        self.compilations = 0        # programs lowered (cache misses), for tests and stats

    def compile(self, code: bytes, fmt: str) -> Compiled:
        key = hashlib.sha256(fmt.encode() + b"\0" + code).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        parsed = parse(code, fmt)
        text = parsed.text()
        dump = self.settings.dump_dir
        index = next(_dump_counter)
        if dump:  # the StableHLO goes out first, so it is there even when lowering fails
            self._write(f"{index:04d}.stablehlo.mlir", text)
        program = run_passes(lower_module(parsed))
        if dump:
            self._write(f"{index:04d}.{program.name}.ttnn.txt", program.format())
        if self.validator is not None:
            self.validator(program)
        compiled = Compiled(program, key[:32], code, fmt, text)
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
