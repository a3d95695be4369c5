"""Re-measure host dispatch per ttnn op on the mock target (writes pjrt_tt/perf/data/host_dispatch.json).

    python tools/measure_host_dispatch.py

A developer tool beside the package: it drives the compiler and a target, which the
estimator (pjrt_tt/perf) must not import.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pjrt_tt.perf import host  # noqa: E402


def _block(x, wq, wk, wv, wo, w1, w2, g):
    import jax
    import jax.numpy as jnp
    h = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-5) * g
    q, k, v = h @ wq, h @ wk, h @ wv
    s = jax.nn.softmax(jnp.einsum("bqd,bkd->bqk", q, k) * 0.125, axis=-1)
    x = x + jnp.einsum("bqk,bkd->bqd", s, v) @ wo
    return x + jax.nn.gelu(x @ w1) @ w2


def measure(runs: int = 30) -> dict:
    """Per-op host cost (µs) of a transformer block's program on mock n150 (real ttnn)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pjrt_tt import systems
    from pjrt_tt.compiler import Compiler
    from pjrt_tt.settings import Settings
    from pjrt_tt.targets import open_target

    d, f = 256, 1024
    shapes = [(4, 128, d), (d, d), (d, d), (d, d), (d, d), (d, f), (f, d), (d,)]
    specs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
    text = jax.jit(_block).lower(*specs).as_text().encode()
    program = Compiler(Settings(target="mock")).compile(text, "mlir").program
    target = open_target("mock", systems.get_system("n150"))
    chip = target.chips[0]
    bound = target.bind(program, chip)
    bound = getattr(bound, "bound", bound)
    inputs = [target.upload(np.zeros(v.type.shape, np.float32), v.type, chip) for v in program.inputs]
    consts = [target.upload(c.data, c.value.type, chip) for c in program.constants]
    samples: dict[str, list[float]] = {}
    per_run: list[float] = []

    def record(op, ns):
        samples.setdefault(op.fn.split("[", 1)[0].rsplit(".", 1)[-1], []).append(ns / 1e3)

    for i in range(runs + 3):
        bound.timer = record if i >= 3 else None
        start = time.perf_counter_ns()
        outs = bound.run(inputs, consts)
        if i >= 3:
            per_run.append((time.perf_counter_ns() - start) / 1e3)
        for t in outs:
            target.ttnn.deallocate(t)
    bound.timer = None
    all_ops = [x for v in samples.values() for x in v]
    return {
        "what": "host cost per ttnn op (our executor + real ttnn 0.81.1 dispatch, program cache hits) on mock n150",
        "command": "python tools/measure_host_dispatch.py",
        "program_ops": len(program.ops),
        "median_us": round(statistics.median(all_ops), 1),
        "mean_us": round(statistics.median(per_run) / len(program.ops), 1),
        "per_run_us": round(statistics.median(per_run), 1),
        "per_op_us": {k: round(statistics.median(v), 1) for k, v in sorted(samples.items())},
    }



if __name__ == "__main__":
    result = measure()
    host.write(result)
    print(f"host dispatch per op on mock (measured): mean {result['mean_us']} us, per op {result['per_op_us']}")
