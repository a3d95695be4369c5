"""Compile time per program and RSS over many distinct programs (issue 13 item 7):
jax.jit of one function at N distinct shapes, each lowered and compiled (not run), on tt
and, for comparison, on XLA:CPU in a separate pass. Per window of programs it prints the
median time jax spends lowering, the whole compile, pjrt-tt's share of it (ingest,
lowering, passes, on the compiler's own thread), the isolated reader's share, the program
cache's size and the process RSS.

    python tests/benchmarks/compile_scaling.py [programs=5000] [window=500] [clear_every=0]

clear_every > 0 calls jax.clear_caches() after every that many programs: jax keeps an MLIR
module (and its context) and an executable per program it has compiled (its lowering and
compilation caches, 2,048 entries each), which is what grows RSS and jax's own share.
"""
from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from pjrt_tt import compiler as compiler_module
from pjrt_tt.runtime.client import CLIENTS


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(platform: str, programs: int, window: int, clear_every: int) -> None:
    device = jax.devices(platform)[0]
    ours: list[float] = []
    real = compiler_module.Compiler._lower

    def timed(self, *args):
        start = time.perf_counter()
        try:
            return real(self, *args)
        finally:
            ours.append(time.perf_counter() - start)
    compiler_module.Compiler._lower = timed
    f = jax.jit(lambda x: jnp.tanh(x * 2.0 + 1.0).sum(axis=0))
    sharding = jax.sharding.SingleDeviceSharding(device)
    lower, total = [], []
    reader_before = sum(c.compiler.reader.seconds for c in CLIENTS)
    print(f"--- {platform}: {programs} distinct programs")
    for n in range(programs):
        x = jax.ShapeDtypeStruct((3, 1 + n), np.float32, sharding=sharding)
        start = time.perf_counter()
        lowered = f.lower(x)
        middle = time.perf_counter()
        lowered.compile()
        end = time.perf_counter()
        lower.append(middle - start)
        total.append(end - middle)
        if clear_every and (n + 1) % clear_every == 0:
            jax.clear_caches()
        if (n + 1) % window == 0:
            w = slice(-window, None)
            mine = f"pjrt-tt {1e3 * statistics.median(ours[w]):5.1f} ms" if ours else ""
            reader = sum(c.compiler.reader.seconds for c in CLIENTS) - reader_before
            reader_before += reader
            cache = sum(len(c.compiler._cache) for c in CLIENTS)
            print(f"{n + 1:6d}  lower {1e3 * statistics.median(lower[w]):6.1f} ms  compile "
                  f"{1e3 * statistics.median(total[w]):6.1f} ms  {mine}  reader {1e3 * reader / window:4.1f} ms"
                  f"  cache {cache:4d}  rss {rss_mb():7.1f} MB", flush=True)
    compiler_module.Compiler._lower = real
    jax.clear_caches()


def main() -> None:
    programs = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    window = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    clear_every = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    run("tt", programs, window, clear_every)
    run("cpu", programs, window, clear_every)


if __name__ == "__main__":
    main()
