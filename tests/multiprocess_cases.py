"""One process of a multi-process JAX run on a simulated system shared by the processes
(issue 14), started by tests/test_multiprocess.py as `mpirun -n P python multiprocess_cases.py`.

Each case runs in every process; a process checks the shards it drives against XLA:CPU run
on the whole arrays in this process (numpy for the integer collectives, exact), and prints
`CASE <name> OK` or `CASE <name> FAIL <why>`. The collectives cross processes: the mesh's
'data' axis is split over them.
"""
from __future__ import annotations

import os
import sys
import traceback

import numpy as np

from conftest import assert_close

import jax  # noqa: E402  (after conftest: the plugin's environment)
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

try:
    from jax import shard_map
    UNCHECKED_OUTPUTS = {"check_vma": False}
except ImportError:   # jax 0.7.1
    from jax.experimental.shard_map import shard_map
    UNCHECKED_OUTPUTS = {"check_rep": False}

RANK = SIZE = TT = CPU = MESH = None   # set by start(), in the processes mpirun starts
CASES = {}


def start() -> None:
    """This process joins the run: the process index and count come from mpirun."""
    global RANK, SIZE, TT, CPU, MESH
    RANK, SIZE = int(os.environ["OMPI_COMM_WORLD_RANK"]), int(os.environ["OMPI_COMM_WORLD_SIZE"])
    if os.environ.get("DUMP_BASE"):   # each process's programs, for the test to compare
        os.environ["PJRT_TT_DUMP"] = os.path.join(os.environ["DUMP_BASE"], f"process{RANK}")
    if SIZE > 1:
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{os.environ['COORDINATOR_PORT']}",
                                   num_processes=SIZE, process_id=RANK)
    TT = jax.devices("tt")
    CPU = jax.local_devices(backend="cpu")[0]
    # 2 rows: 'data' crosses the processes when there are 2 (one process runs the same programs)
    MESH = Mesh(np.array(TT).reshape(2, len(TT) // 2), ("data", "model"))


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def global_array(a: np.ndarray, spec: P):
    """`a` laid out over the mesh; each process makes only its own devices' shards."""
    return jax.make_array_from_callback(a.shape, NamedSharding(MESH, spec), lambda index: a[index])


def check_shards(got, want: np.ndarray, **bounds) -> None:
    shards = got.addressable_shards
    assert len(shards) == len(jax.local_devices(backend="tt")) or got.sharding.is_fully_replicated, len(shards)
    for s in shards:
        assert s.device.process_index == RANK, (s.device, RANK)
        assert_close(np.asarray(s.data), want[s.index], what=f"process {RANK}, device {s.device.id}", **bounds)


def on_cpu(f, *args):
    return np.asarray(jax.jit(f)(*jax.device_put(args, CPU)))


@case
def topology():
    n = len(TT)
    assert jax.process_count() == SIZE and jax.process_index() == RANK
    assert [d.id for d in TT] == list(range(n))
    assert [d.process_index for d in TT] == [i * SIZE // n for i in range(n)]
    mine = [d.id for d in jax.local_devices(backend="tt")]
    assert mine == list(range(RANK * n // SIZE, (RANK + 1) * n // SIZE)), mine


@case
def jit_over_processes():
    """A jit whose sum runs over the 'data' axis, i.e. across processes."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((16, 64), np.float32), rng.standard_normal((64, 32), np.float32)
    f = lambda x, w: jnp.tanh(x @ w).sum(axis=0, keepdims=True) * jnp.ones((4, 1), jnp.float32)  # noqa: E731
    got = jax.jit(f, out_shardings=NamedSharding(MESH, P(None, "model")))(
        global_array(x, P("data", None)), global_array(w, P(None, "model")))
    check_shards(got, on_cpu(f, x, w), kind="matmul")


@case
def shard_map_collectives():
    """psum / pmax / all_gather / ppermute over 'data' (across processes) and 'model' (within),
    on integers: exact."""
    rows, cols = MESH.devices.shape
    x = np.arange(rows * 8 * cols * 4, dtype=np.int32).reshape(rows * 8, cols * 4) % 97 - 40

    def body(b):
        perm = [(i, (i + 1) % rows) for i in range(rows)]
        return (lax.psum(b, "data"), lax.pmax(b, "data"), lax.psum(b, "model"),
                lax.all_gather(b, "data", tiled=True), lax.ppermute(b, "data", perm))
    f = shard_map(body, mesh=MESH, in_specs=P("data", "model"),
                  out_specs=(P(None, "model"), P(None, "model"), P("data", None), P(None, "model"), P("data", "model")),
                  **UNCHECKED_OUTPUTS)
    got = jax.jit(f)(global_array(x, P("data", "model")))
    blocks = x.reshape(rows, 8, cols, 4)
    want_psum, want_pmax = blocks.sum(0).reshape(8, cols * 4), blocks.max(0).reshape(8, cols * 4)
    want_psum_model = blocks.sum(2).reshape(rows * 8, 4)
    want_ppermute = np.roll(blocks, 1, axis=0).reshape(rows * 8, cols * 4)
    for g, w in zip(got, (want_psum, want_pmax, want_psum_model, x, want_ppermute)):
        check_shards(g, w.astype(np.int32), exact=True)


@case
def training_steps():
    """Three SGD steps of a tensor-parallel MLP on a data-parallel batch: the gradients'
    sums cross processes. Losses (replicated) and the updated weights match XLA:CPU."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 64), np.float32)
    y = rng.standard_normal((32, 16), np.float32)
    w1 = (rng.standard_normal((64, 128)) / 8).astype(np.float32)
    w2 = (rng.standard_normal((128, 16)) / 11).astype(np.float32)

    def step(w1, w2, x, y):
        def loss(w1, w2):
            return jnp.mean((jax.nn.gelu(x @ w1) @ w2 - y) ** 2)
        value, (g1, g2) = jax.value_and_grad(loss, argnums=(0, 1))(w1, w2)
        return w1 - 0.1 * g1, w2 - 0.1 * g2, value

    tt_step = jax.jit(step, out_shardings=(NamedSharding(MESH, P(None, "model")),
                                           NamedSharding(MESH, P("model", None)), NamedSharding(MESH, P())))
    params = global_array(w1, P(None, "model")), global_array(w2, P("model", None))
    batch = global_array(x, P("data", None)), global_array(y, P("data", None))
    cpu_params = w1, w2
    for _ in range(3):
        *params, loss = tt_step(*params, *batch)
        *cpu_params, cpu_loss = (np.asarray(a) for a in jax.jit(step)(*jax.device_put((*cpu_params, x, y), CPU)))
        check_shards(loss, np.asarray(cpu_loss), kind="matmul")
    check_shards(params[0], cpu_params[0], kind="matmul")
    check_shards(params[1], cpu_params[1], kind="matmul")


@case
def loop_on_a_value_from_every_process():
    """A while loop whose condition reads a sum over all chips: every process reads its own
    chips and all of them must take the same number of iterations."""
    x = np.arange(1, 17, dtype=np.float32).reshape(4, 4)

    def f(x):
        return lax.while_loop(lambda v: v.sum() < 1000.0, lambda v: v * 2.0, x)
    got = jax.jit(f)(global_array(x, P("data", None)))
    check_shards(got, on_cpu(f, x), exact=True)


def main(names: list[str]) -> int:
    start()
    failed = 0
    for name in names or CASES:
        try:
            CASES[name]()
            print(f"[process {RANK}] CASE {name} OK", flush=True)
        except Exception as e:   # every case runs; the test reads each verdict
            failed += 1
            why = "".join(traceback.format_exception_only(e)).strip().replace("\n", " | ")
            print(f"[process {RANK}] CASE {name} FAIL {why}", flush=True)
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
