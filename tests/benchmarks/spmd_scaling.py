"""Tensor-parallel scaling on the simulated t3k: wall time per training step on 1, 2 and 8
chips, and the bytes the collectives moved per step next to what the sharding predicts.

Model: a Megatron MLP y = relu(x @ w1) @ w2, w1 split by columns and w2 by rows over a
1 x n mesh, x replicated; one SGD step on mean((y - t)^2). The sharding math: the forward
pass needs one all-reduce of y ([B, D] f32) and nothing else (the weight gradients are
local to each chip's shard; the loss is computed on replicated y). A ring all-reduce of S
bytes over n chips sends 2 (n - 1) / n * S per chip, 2 (n - 1) S in total; the sim counts
what its collectives move (tile pages; the shapes here are tile-aligned, so no padding).

    PJRT_TT_CHECK_WITH_MOCK=0 python tests/benchmarks/spmd_scaling.py [--steps 5]

Wall time on the sim measures our host-side simulation, not a chip: the figures show the
per-step overhead of running n chips' programs and collectives (each chip's ops run
one after another on the host), not a hardware speed-up.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("PJRT_TT_SYSTEM", "t3k")
os.environ.setdefault("PJRT_TT_TARGET", "sim")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

B, D, F = 64, 256, 1024


def step(x, t, w1, w2):
    def loss(w1, w2):
        return jnp.mean((jax.nn.relu(x @ w1) @ w2 - t) ** 2)
    value, (g1, g2) = jax.value_and_grad(loss, argnums=(0, 1))(w1, w2)
    return value, w1 - 0.1 * g1, w2 - 0.1 * g2


def run(n: int, steps: int):
    from pjrt_tt.targets.sim import ccl
    rng = np.random.RandomState(0)
    x, t = rng.randn(B, D).astype(np.float32), rng.randn(B, D).astype(np.float32)
    w1, w2 = (rng.randn(D, F) * 0.05).astype(np.float32), (rng.randn(F, D) * 0.05).astype(np.float32)
    devs = jax.devices("tt")[:n]
    if n == 1:
        f = jax.jit(step)
        args = [jax.device_put(a, devs[0]) for a in (x, t, w1, w2)]
    else:
        mesh = Mesh(np.array(devs).reshape(1, n), ("dp", "tp"))
        s = lambda spec: NamedSharding(mesh, spec)  # noqa: E731
        shard = (s(P()), s(P()), s(P(None, "tp")), s(P("tp", None)))
        f = jax.jit(step, in_shardings=shard, out_shardings=(s(P()), shard[2], shard[3]))
        args = [jax.device_put(a, sh) for a, sh in zip((x, t, w1, w2), shard)]
    value, *w = f(*args)              # compile + first run
    jax.block_until_ready(w)
    ccl.sim_reset_ccl_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        value, *w = f(args[0], args[1], *w)
        jax.block_until_ready(w)
    dt = (time.perf_counter() - t0) / steps
    moved = ccl.STATS["bytes"] / steps
    predicted = 2 * (n - 1) * B * D * 4
    return dt, moved, predicted, ccl.STATS["calls"] / steps, float(value)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    print(f"Megatron MLP B={B} D={D} F={F} (f32), one SGD step; simulated {os.environ['PJRT_TT_SYSTEM']}")
    print(f"{'chips':>5} {'ms/step':>9} {'collectives/step':>17} {'bytes moved/step':>17} {'predicted':>10}  loss")
    for n in (1, 2, 8):
        dt, moved, predicted, calls, loss = run(n, args.steps)
        print(f"{n:>5} {dt * 1e3:>9.1f} {calls:>17.0f} {moved:>17,.0f} {predicted:>10,}  {loss:.5f}")


if __name__ == "__main__":
    main()
