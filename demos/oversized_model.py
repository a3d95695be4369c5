"""A model whose weights exceed one chip's DRAM: 16 GiB of bf16 weights on a simulated t3k
(one Wormhole chip has 12 GiB).

Sharded over the 8 chips of the t3k (Megatron-style: w1 column-, w2 row-parallel) every chip
holds 2 GiB of them; made on one chip, the same init fails with RESOURCE_EXHAUSTED and
ttnn's out-of-memory message naming the sizes, and the process carries on.

Full size costs no host RAM because the weights are constants (jnp.full inside a jitted
init): the sim's ttnn.full allocates device memory first and keeps the value as a numpy
broadcast view of one element. The forward pass is NOT run at this size: the sim computes
every op with numpy in host RAM, and an op over the weights materialises them (measured with
12 GiB of weights: a jnp.sum of the sharded w1 took 58 s and 14 GB of host RAM on this 23 GB
machine; a matmul needs float32 copies of every shard). The forward pass over weights
larger than a chip is tested at reduced DRAM instead (tests/test_spmd_memory.py,
PJRT_TT_SIM_DRAM_MB=32).

    .venv/bin/python demos/oversized_model.py      (~2 s, 184 MB of host RAM; prints per-chip memory)
"""
from __future__ import annotations

import os
import resource
import time

os.environ.setdefault("PJRT_TT_SYSTEM", "t3k")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P, SingleDeviceSharding  # noqa: E402

D, F = 32768, 131072         # w1 [D, F] + w2 [F, D] in bf16: 2 x 8 GiB = 16 GiB


def init():
    return jnp.full((D, F), 0.01, jnp.bfloat16), jnp.full((F, D), 0.01, jnp.bfloat16)


def rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


def main() -> None:
    tt = jax.devices("tt")
    assert len(tt) == 8, f"needs a t3k (PJRT_TT_SYSTEM=t3k), got {len(tt)} devices"
    GiB = 2 ** 30
    limit = tt[0].memory_stats()["bytes_limit"]
    print(f"weights: w1 {D}x{F} + w2 {F}x{D} bf16 = {2 * D * F * 2 / GiB:.2f} GiB; "
          f"one chip's DRAM allocator: {limit / GiB:.3f} GiB")
    mesh = Mesh(np.array(tt).reshape(1, 8), ("x", "y"))
    ns = lambda s: NamedSharding(mesh, s)  # noqa: E731
    t0 = time.time()
    w1, w2 = jax.jit(init, out_shardings=(ns(P(None, "y")), ns(P("y", None))))()
    print(f"sharded over the t3k: made in {time.time() - t0:.2f} s, host RSS {rss_mb()} MB")
    for d in tt:
        s = d.memory_stats()
        print(f"  chip {d.id} {tuple(d.coords)}: {s['bytes_in_use'] / GiB:.3f} GiB in use "
              f"of {s['bytes_limit'] / GiB:.3f}")
    print(f"  shards: w1 {w1.addressable_shards[0].data.shape}, w2 {w2.addressable_shards[0].data.shape}")
    t0 = time.time()
    try:
        jax.jit(init, out_shardings=(SingleDeviceSharding(tt[0]),) * 2)()
        print("unsharded: ran (unexpected)")
    except Exception as e:  # noqa: BLE001
        print(f"unsharded on chip 0 ({time.time() - t0:.2f} s): {type(e).__name__}: {e}")
    print(f"chip 0 after the failure: {tt[0].memory_stats()['bytes_in_use'] / GiB:.3f} GiB in use; "
          f"host RSS {rss_mb()} MB")


if __name__ == "__main__":
    main()
