"""What a jax.profiler session costs a jitted program on tt (docs/profiling.md): per-call
time with no session, with a session (per-op spans on), and with tt_op_spans=False, in
the same run (jax's own host tracers off in the sessions), interleaved so machine load hits all three alike. Run:
    PJRT_TT_TARGET=sim python tests/benchmarks/profiler_overhead.py
"""
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np


def f(x):
    for _ in range(30):   # 90 ttnn ops
        x = jnp.tanh(x) * 0.5 + x
    return x


def main(rounds: int = 5, calls: int = 100) -> None:
    tt = jax.devices("tt")[0]
    fn, x = jax.jit(f), jax.device_put(np.ones((32, 32), np.float32), tt)
    fn(x).block_until_ready()

    def per_call() -> float:
        t = time.perf_counter()
        for _ in range(calls):
            fn(x).block_until_ready()
        return (time.perf_counter() - t) / calls * 1e6

    # jax's own host and Python tracers off, so the sessions differ from no session by the
    # plugin's recording only
    ops, no_ops = jax.profiler.ProfileOptions(), jax.profiler.ProfileOptions()
    for o in (ops, no_ops):
        o.host_tracer_level, o.python_tracer_level = 0, 0
    no_ops.advanced_configuration = {"tt_op_spans": False}
    times = {"no session": [], "session": [], "session, tt_op_spans=False": []}
    for _ in range(rounds):
        times["no session"].append(per_call())
        with tempfile.TemporaryDirectory() as d, jax.profiler.trace(d, profiler_options=ops):
            times["session"].append(per_call())
        with tempfile.TemporaryDirectory() as d, jax.profiler.trace(d, profiler_options=no_ops):
            times["session, tt_op_spans=False"].append(per_call())
    base = statistics.median(times["no session"])
    for k, v in times.items():
        m = statistics.median(v)
        print(f"{k:<28} {m:8.0f} us/call  {m / base:5.2f}x")


if __name__ == "__main__":
    main()
