"""The GPT-2-style tensor-parallel training step (demos/gpt2_tp.py) on one process driving the
8 chips of a simulated t3k, and on 2 processes x 4 chips (issue 14): the losses of both runs,
and the bytes each process sent to the others.

    python tests/benchmarks/multihost_gpt2.py [--steps 5]

It starts `mpirun -n 1` and `mpirun -n 2` of itself (--worker); each process prints one JSON
line. "Sent" is what the sim's MPI exchange sent (sim/exchange.py: every collective
allgathers each process's shards, so a process sends its shards to every other process);
"ring bytes" is what the collectives' ring algorithms move between chips (sim/ccl.py), the
same in both runs: the traffic a card's Ethernet links would carry. No device time is
measured here (the sim's wall time is host simulation).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
DEMOS = HERE.parents[2] / "demos"


def worker(steps: int) -> None:
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    sys.path.insert(0, str(DEMOS))
    import jax
    import numpy as np
    import gpt2_tp
    from models import gpt2
    from pjrt_tt.targets.sim import ccl, exchange

    rank, size = int(os.environ["OMPI_COMM_WORLD_RANK"]), int(os.environ["OMPI_COMM_WORLD_SIZE"])
    if size > 1:
        jax.distributed.initialize(f"127.0.0.1:{os.environ['COORDINATOR_PORT']}", num_processes=size, process_id=rank)
    cfg = gpt2.Config(vocab=256, seq=32, d_model=128, heads=8, layers=2)
    _, params = gpt2.init(cfg)
    tokens = np.random.RandomState(0).randint(0, cfg.vocab, (4, cfg.seq + 1)).astype(np.int32)
    exchange.sim_reset_exchange_stats()
    ccl.sim_reset_ccl_stats()
    losses, times, _ = gpt2_tp.train(jax.devices("tt"), 8, steps, cfg, params, tokens)
    cpu, _, _ = gpt2_tp.train(jax.local_devices(backend="cpu"), 8, steps, cfg, params, tokens)
    print("RESULT " + json.dumps({"process": rank, "processes": size, "losses": losses, "cpu": cpu,
                                  "sent": exchange.STATS["bytes_sent"], "exchanges": exchange.STATS["exchanges"],
                                  "ring_bytes": ccl.STATS["bytes"], "step_s": times[1:]}), flush=True)


def launch(processes: int, steps: int) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PJRT_TT_SYSTEM="t3k", PJRT_TT_TARGET="sim", JAX_PLATFORMS="tt,cpu",
               PJRT_TT_CHECK_WITH_MOCK="0", COORDINATOR_PORT=str(port),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = [str(Path(sys.executable).parent / "mpirun"), "-n", str(processes), "--bind-to", "none",
           "--mca", "btl", "self,tcp", sys.executable, str(HERE), "--worker", "--steps", str(steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    results = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or len(results) != processes:
        sys.exit(f"{processes} processes failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return sorted(results, key=lambda r: r["process"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--worker", action="store_true")
    args = ap.parse_args()
    if args.worker:
        return worker(args.steps)
    runs = {n: launch(n, args.steps) for n in (1, 2)}
    print(f"GPT-2-style TP training, {args.steps} steps, 8 simulated t3k chips (tensor-parallel over 8)")
    print(f"{'run':<22} {'losses (tt)':<44} {'sent to other processes':>24} {'ring bytes':>12}")
    for n, results in runs.items():
        for r in results:
            losses = " ".join(f"{x:.4f}" for x in r["losses"])
            print(f"{n} x {8 // n} chips, process {r['process']}  {losses:<44} "
                  f"{r['sent']:>14,} B in {r['exchanges']:>3} {r['ring_bytes']:>12,}")
    one, two = runs[1][0]["losses"], [r["losses"] for r in runs[2]]
    same = all(t == one for t in two)
    print(f"losses of 2 x 4 equal 1 x 8 bit for bit: {same}; XLA:CPU: "
          + " ".join(f"{x:.4f}" for x in runs[1][0]["cpu"]))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
