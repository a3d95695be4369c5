"""(a) Dispatch overhead: a jitted `x + 1` on a 32x32 float32 array, calls per second on
TT (the simulated chip unless a card is present) and on XLA:CPU, in the same run."""
from __future__ import annotations

import time

import jax
import numpy as np


def calls_per_second(device, seconds: float = 2.0) -> float:
    f = jax.jit(lambda x: x + 1)
    x = jax.device_put(np.ones((32, 32), np.float32), device)
    for _ in range(20):
        f(x).block_until_ready()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            y = f(x)
        y.block_until_ready()
        n += 50
    return n / (time.perf_counter() - start)


def main() -> None:
    tt, cpu = jax.devices("tt")[0], jax.devices("cpu")[0]
    rate_tt, rate_cpu = calls_per_second(tt), calls_per_second(cpu)
    print(f"dispatch  x+1 on f32[32,32]: tt {rate_tt:,.0f} calls/s ({1e6 / rate_tt:.1f} us/call), "
          f"cpu {rate_cpu:,.0f} calls/s ({1e6 / rate_cpu:.1f} us/call); "
          f"tt/cpu throughput ratio {rate_tt / rate_cpu:.3f}")


if __name__ == "__main__":
    main()
