"""Train the GPT-2-style model (demos/models/gpt2.py) tensor-parallel on a simulated T3K.

Megatron-style sharding over the 8 chips (a 1 x 8 mesh axis "tp"): the attention qkv and
MLP fc kernels split by columns, the proj / proj_out kernels by rows, everything else
replicated; the batch is replicated. XLA's SPMD partitioner (pjrt_tt.spmd) inserts the
collectives, which run as ttnn CCL ops on the mesh. Prints the loss per step next to the
same training run on XLA:CPU, the step time, and each chip's memory in use.

    PJRT_TT_SYSTEM=t3k python demos/gpt2_tp.py [--steps 5] [--chips 8]

Several processes, each driving its share of the chips (issue 14; docs/multihost.md):

    mpirun -n 2 python demos/gpt2_tp.py      (as root: OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)

Each process then calls jax.distributed.initialize (its index and count from mpirun, the
coordinator on 127.0.0.1:$COORDINATOR_PORT, default 23456), drives 4 of the 8 chips, and
prints the same losses.

XLA:CPU needs 8 host devices for the reference run (in every process); this script sets
XLA_FLAGS=--xla_force_host_platform_device_count=8 before importing jax.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("PJRT_TT_SYSTEM", "t3k")
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from models import gpt2  # noqa: E402

COLUMN = ("qkv", "fc")          # Dense kernels split by output features
ROW = ("proj", "proj_out")      # Dense kernels split by input features


def spec(path, leaf) -> P:
    names = [getattr(k, "key", str(k)) for k in path]
    layer, kind = (names[-2] if len(names) > 1 else ""), names[-1]
    if layer in COLUMN:
        return P(None, "tp") if kind == "kernel" else P("tp")
    if layer in ROW and kind == "kernel":
        return P("tp", None)
    return P()


def loss_fn(model, params, tokens):
    logits = model.apply(params, tokens[:, :-1])
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1))


def make_step(model, mesh, shardings, lr=0.1):
    repl = NamedSharding(mesh, P())

    def step(params, tokens):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(model, p, tokens))(params)
        return loss, jax.tree.map(lambda p, g: p - lr * g, params, grads)

    return jax.jit(step, in_shardings=(shardings, repl), out_shardings=(repl, shardings))


def put(value: np.ndarray, sharding: NamedSharding):
    """`value` laid out by `sharding`; each process makes its own devices' shards (one
    process: all of them)."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def train(devices, chips: int, steps: int, cfg, params, tokens):
    mesh = Mesh(np.array(devices[:chips]).reshape(1, chips), ("dp", "tp"))
    shardings = jax.tree_util.tree_map_with_path(lambda p, x: NamedSharding(mesh, spec(p, x)), params)
    model = gpt2.GPT2(cfg)
    step = make_step(model, mesh, shardings)
    p = jax.tree.map(put, params, shardings)
    t = put(tokens, NamedSharding(mesh, P()))
    losses, times = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss, p = step(p, t)
        losses.append(float(loss))
        times.append(time.perf_counter() - t0)
    return losses, times, p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--chips", type=int, default=8)
    args = ap.parse_args()
    processes = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))   # started by mpirun / tt-run
    if processes > 1:
        jax.distributed.initialize(f"127.0.0.1:{os.environ.get('COORDINATOR_PORT', '23456')}",
                                   num_processes=processes, process_id=int(os.environ["OMPI_COMM_WORLD_RANK"]))
    cfg = gpt2.Config(vocab=256, seq=32, d_model=128, heads=8, layers=2)
    _, params = gpt2.init(cfg)
    tokens = np.random.RandomState(0).randint(0, cfg.vocab, (4, cfg.seq + 1)).astype(np.int32)
    tt, mine = jax.devices("tt"), jax.local_devices(backend="tt")
    print(f"{len(tt)} TT devices: {tt[0].device_kind}, mesh coords "
          f"{[tuple(d.coords) for d in tt]}; process {jax.process_index()} of {jax.process_count()} "
          f"drives {[d.id for d in mine]}")
    before = [d.memory_stats()["bytes_in_use"] for d in mine]
    tl, tt_times, p = train(tt, args.chips, args.steps, cfg, params, tokens)
    cl, _, _ = train(jax.local_devices(backend="cpu"), args.chips, args.steps, cfg, params, tokens)
    for i, (a, b, s) in enumerate(zip(tl, cl, tt_times)):
        print(f"step {i}: loss tt {a:.4f}  cpu {b:.4f}  ({s * 1e3:.0f} ms on tt{' incl. compile' if i == 0 else ''})")
    used = [d.memory_stats()["bytes_in_use"] - b0 for d, b0 in zip(mine, before)]
    full = sum(x.nbytes for x in jax.tree.leaves(params))
    print(f"parameters: {full / 1e6:.2f} MB in f32 (host); per chip of this process in use now "
          f"(tensor-parallel over {args.chips}): " + ", ".join(f"{u / 1e6:.2f}" for u in used) + " MB")
    ok = np.allclose(tl, cl, rtol=2e-2)
    print("losses match XLA:CPU (rtol 2e-2)" if ok else "LOSSES DIFFER from XLA:CPU")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
