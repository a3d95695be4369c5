"""(a) Dispatch overhead: a jitted `x + 1` on a 32x32 float32 array, calls per second on
TT (the simulated chip unless a card is present) and on XLA:CPU, in the same run.

The two are timed in alternating short windows and the ratio is the median of the
per-window ratios: on a shared machine the load changes within seconds, and timing one
after the other measured the load as much as the plugin. Also printed: the ratio of each
side's best window (closest to an idle machine) and the ratio per CPU-second.

    python tests/benchmarks/dispatch.py [rounds]
"""
from __future__ import annotations

import statistics
import sys
import time

import jax
import numpy as np


def _setup(device):
    f = jax.jit(lambda x: x + 1)
    x = jax.device_put(np.ones((32, 32), np.float32), device)
    for _ in range(50):
        f(x).block_until_ready()
    return f, x


def _window(f, x, seconds: float) -> tuple[float, float]:
    """(calls per wall second, calls per CPU second of this process)."""
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            y = f(x)
        y.block_until_ready()
        n += 50
    return n / (time.perf_counter() - start), n / max(time.process_time() - cpu, 1e-9)


def calls_per_second(device, seconds: float = 2.0) -> float:
    f, x = _setup(device)
    return _window(f, x, seconds)[0]


def main(rounds: int = 10, window: float = 0.25) -> None:
    tt, cpu = _setup(jax.devices("tt")[0]), _setup(jax.devices("cpu")[0])
    rates_tt, rates_cpu, ratios, cpu_ratios = [], [], [], []
    for _ in range(rounds):
        (a, a_cpu), (b, b_cpu) = _window(*tt, window), _window(*cpu, window)
        rates_tt.append(a)
        rates_cpu.append(b)
        ratios.append(a / b)
        cpu_ratios.append(a_cpu / b_cpu)
    rate_tt, rate_cpu = statistics.median(rates_tt), statistics.median(rates_cpu)
    print(f"dispatch  x+1 on f32[32,32]: tt {rate_tt:,.0f} calls/s ({1e6 / rate_tt:.1f} us/call), "
          f"cpu {rate_cpu:,.0f} calls/s ({1e6 / rate_cpu:.1f} us/call); "
          f"tt/cpu throughput ratio {statistics.median(ratios):.3f} (median of {rounds} alternating windows; "
          f"best window of each: {max(rates_tt) / max(rates_cpu):.3f}; per CPU-second of the process: "
          f"{statistics.median(cpu_ratios):.3f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
