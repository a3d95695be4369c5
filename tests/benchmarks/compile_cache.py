"""First-call time of a model in a fresh process with a cold vs a warm persistent compile
cache (jax_compilation_cache_dir; docs/compile-cache.md), both in the same run.

Each sample is a new child process: the model is built and its inputs placed on `tt` (not
timed), then the first call of its jitted forward is timed (trace, lowering to StableHLO,
our compile or the cache read, the run, the read-back). Cold: an empty cache directory;
warm: the directory a cold run of the same program filled. Also printed: the programs each
child lowered (compilations) and read back (loads), and the largest difference between the
warm and cold results (0: the same program ran).

    python tests/benchmarks/compile_cache.py [model=gpt2] [repeats=3]

model: a tests/zoo.py model with a Flax class (gpt2, bert, ...), or "mlp" (a small jitted MLP).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(model: str, cache: str) -> dict:
    import jax
    import numpy as np
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    tt = jax.devices("tt")[0]
    if model == "mlp":
        rng = np.random.default_rng(0)
        args = [rng.standard_normal(s).astype(np.float32) for s in [(64, 256), (256, 512), (512, 256), (256, 16)]]

        def fn(x, *ws):
            for w in ws[:-1]:
                x = jax.nn.gelu(x @ w)
            return x @ ws[-1]
    else:
        sys.path.insert(0, str(HERE.parent))
        import zoo
        m = zoo.BY_NAME[model]
        fm, params = m.flax(np.float32)
        inputs = zoo.flax_inputs(m, np.float32)
        args = [params, inputs]

        def fn(p, kw):
            return m.pick(fm(**kw, params=p))
    placed = jax.device_put(args, tt)
    start = time.perf_counter()
    out = np.asarray(jax.jit(fn)(*placed))
    seconds = time.perf_counter() - start
    from pjrt_tt.runtime.client import CLIENTS
    return {"first_call_s": seconds, "compilations": sum(c.compiler.compilations for c in CLIENTS),
            "loads": sum(c.compiler.loads for c in CLIENTS), "out": out.astype(np.float32).ravel()[:4096].tolist()}


def spawn(model: str, cache: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", model, cache], capture_output=True, text=True,
                          env=dict(os.environ), timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(model: str, repeats: int) -> None:
    import numpy as np
    cold, warm, diffs = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="pjrt-tt-cache-") as cache:
            c = spawn(model, cache)
            w = spawn(model, cache)
        cold.append(c)
        warm.append(w)
        diffs.append(float(np.max(np.abs(np.array(c["out"]) - np.array(w["out"])))))
    tc = statistics.median(r["first_call_s"] for r in cold)
    tw = statistics.median(r["first_call_s"] for r in warm)
    print(f"model {model}, {repeats} pairs of fresh processes, target {os.environ.get('PJRT_TT_TARGET', 'auto')}, "
          f"mock check {'on' if os.environ.get('PJRT_TT_CHECK_WITH_MOCK') == '1' else 'off'}")
    print(f"  cold cache: first call {tc:.3f} s (median; {[round(r['first_call_s'], 3) for r in cold]}), "
          f"lowered {[r['compilations'] for r in cold]}, loaded {[r['loads'] for r in cold]}")
    print(f"  warm cache: first call {tw:.3f} s (median; {[round(r['first_call_s'], 3) for r in warm]}), "
          f"lowered {[r['compilations'] for r in warm]}, loaded {[r['loads'] for r in warm]}")
    print(f"  cold / warm: {tc / tw:.2f}x; largest |warm - cold| in the results: {max(diffs):.3g}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "gpt2", int(sys.argv[2]) if len(sys.argv) > 2 else 3)
