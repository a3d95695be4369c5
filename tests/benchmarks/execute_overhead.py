"""(c) The plugin's own overhead per Execute, with the target's work excluded.

Times jitted calls end to end and, inside the same calls, the time spent in the
target (the executor's ttnn calls); the difference is what jax dispatch, the C++ shim
and the Python runtime add per call. XLA:CPU's whole per-call time is printed beside it.
"""
from __future__ import annotations

import time

import jax
import numpy as np

from pjrt_tt.targets.executor import BoundProgram


def main(calls: int = 3000) -> None:
    tt, cpu = jax.devices("tt")[0], jax.devices("cpu")[0]
    in_target = [0.0]
    original = BoundProgram.run

    def timed_run(self, inputs, constants):
        start = time.perf_counter()
        try:
            return original(self, inputs, constants)
        finally:
            in_target[0] += time.perf_counter() - start

    results = {}
    for name, dev in (("tt", tt), ("cpu", cpu)):
        f = jax.jit(lambda x, y: x * y + 1)
        x = jax.device_put(np.ones((32, 32), np.float32), dev)
        for _ in range(50):
            f(x, x).block_until_ready()
        BoundProgram.run = timed_run
        in_target[0] = 0.0
        start = time.perf_counter()
        for _ in range(calls):
            f(x, x).block_until_ready()
        total = time.perf_counter() - start
        BoundProgram.run = original
        results[name] = (total / calls, in_target[0] / calls)
    (tt_total, tt_target), (cpu_total, _) = results["tt"], results["cpu"]
    overhead = tt_total - tt_target
    print(f"execute   x*y+1 on f32[32,32]: tt {1e6 * tt_total:.1f} us/call, of which target "
          f"{1e6 * tt_target:.1f} us and plugin+jax overhead {1e6 * overhead:.1f} us; "
          f"cpu {1e6 * cpu_total:.1f} us/call; overhead/cpu-call ratio {overhead / cpu_total:.2f}")


if __name__ == "__main__":
    main()
