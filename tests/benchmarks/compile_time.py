"""(b) Compile time of a 4-layer MLP with grad (value_and_grad of a softmax loss), TT vs
XLA:CPU in the same run. Each TT compile starts from an empty program cache."""
from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from pjrt_tt.runtime.client import CLIENTS


def mlp_loss(params, x, y):
    h = x
    for w, b in params[:-1]:
        h = jax.nn.relu(h @ w + b)
    w, b = params[-1]
    logp = jax.nn.log_softmax(h @ w + b)
    return -jnp.mean(jnp.sum(jax.nn.one_hot(y, 10) * logp, axis=-1))


def compile_seconds(device, repeats: int = 5) -> float:
    rng = np.random.default_rng(0)
    sizes = [64, 256, 256, 256, 10]
    params = [(rng.standard_normal((a, b), np.float32), np.zeros(b, np.float32))
              for a, b in zip(sizes, sizes[1:])]
    args = jax.device_put((params, rng.standard_normal((128, 64), np.float32),
                           rng.integers(0, 10, 128).astype(np.int32)), device)
    times = []
    for _ in range(repeats):
        for client in CLIENTS:
            client.compiler.clear_cache()
        lowered = jax.jit(jax.value_and_grad(mlp_loss)).lower(*args)
        start = time.perf_counter()
        lowered.compile()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    tt, cpu = jax.devices("tt")[0], jax.devices("cpu")[0]
    t_tt, t_cpu = compile_seconds(tt), compile_seconds(cpu)
    print(f"compile   4-layer MLP + grad: tt {1e3 * t_tt:.1f} ms, cpu {1e3 * t_cpu:.1f} ms "
          f"(median of 5); tt/cpu ratio {t_tt / t_cpu:.3f}")


if __name__ == "__main__":
    main()
