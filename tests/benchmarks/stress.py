"""Stress: calls per second from 1 thread and from 8 threads at once, for JAX (jit) and
torch_xla (lazy tensors, torch.compile on XLA tensors, torch.compile on a CPU model,
eager mode), on TT (the simulated chip unless a card is present; PJRT_TT_TARGET=mock for
real ttnn in mock mode) with the CPU reference measured in the same run (XLA:CPU for JAX,
eager PyTorch on the CPU for torch).

    PYTHONPATH=$PWD python tests/benchmarks/stress.py [--seconds 3]

Each framework runs in its own process (torch_xla drives one PJRT device type per
process). A call is one small matmul + activation on a 32x32 float32 input, read back
to the host every 10 calls.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

THREADS = (1, 8)


def rate(step, threads: int, seconds: float, warmup: int = 3) -> float:
    """Calls per second of `step(k)` (k: thread index) run by `threads` threads for `seconds`."""
    for k in range(threads):
        for _ in range(warmup):
            step(k)
    counts, stop, errors = [0] * threads, threading.Event(), []

    def loop(k):
        try:
            while not stop.is_set():
                step(k)
                counts[k] += 1
        except BaseException as e:  # reported, never swallowed
            errors.append(repr(e))
            stop.set()

    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join(120)
    if any(w.is_alive() for w in workers):
        raise RuntimeError("a thread did not finish within 120 s: deadlock")
    if errors:
        raise RuntimeError(errors[0])
    return sum(counts) / (time.perf_counter() - start)


def jax_rows(seconds: float) -> list[tuple[str, str, float]]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    f = jax.jit(lambda w, x: jnp.tanh(x @ w) + 1.0)
    rows = []
    for name in ("tt", "cpu"):
        device = jax.devices(name)[0]
        w = jax.device_put(np.eye(32, dtype=np.float32) * 0.5, device)
        xs = [jax.device_put(np.full((32, 32), k, np.float32), device) for k in range(max(THREADS))]
        calls = [0] * max(THREADS)

        def step(k):
            y = f(w, xs[k])
            calls[k] += 1
            if calls[k] % 10 == 0:
                np.asarray(y)
        for n in THREADS:
            rows.append(("jax jit", f"{name} x{n}", rate(step, n, seconds)))
    return rows


def torch_rows(seconds: float) -> list[tuple[str, str, float]]:
    import torch
    import torch_xla
    dev = torch_xla.device()
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 32)
    lin_x = torch.nn.Linear(32, 32).to(dev)
    lin_x.load_state_dict(lin.state_dict())
    xs = [torch.full((32, 32), float(k)) for k in range(max(THREADS))]
    xs_dev = [x.to(dev) for x in xs]
    compiled_x = torch.compile(lambda a: torch.tanh(lin_x(a)) + 1.0, backend="tt")
    compiled_cpu_model = torch.compile(lambda a: torch.tanh(lin(a)) + 1.0, backend="tt")
    lock = threading.Lock()  # lazy graph building + sync take turns (torch_xla's own limit)
    calls = [0] * max(THREADS)
    torch.set_grad_enabled(False)

    def read_every_10(k, y):
        calls[k] += 1
        if calls[k] % 10 == 0:
            y.cpu()

    def lazy(k):
        with lock:
            y = torch.tanh(lin_x(xs_dev[k])) + 1.0
            torch_xla.sync()
        read_every_10(k, y)

    def compiled_on_xla(k):
        read_every_10(k, compiled_x(xs_dev[k]))

    def compiled_cpu(k):
        compiled_cpu_model(xs[k])       # results come back to the CPU on every call

    def eager_cpu(k):
        torch.tanh(lin(xs[k])) + 1.0

    rows = []
    for label, step in (("torch lazy", lazy), ("torch.compile xla inputs", compiled_on_xla),
                        ("torch.compile cpu model", compiled_cpu)):
        for n in THREADS:
            rows.append((label, f"tt x{n}", rate(step, n, seconds)))
    for n in THREADS:
        rows.append(("torch eager", f"cpu x{n}", rate(eager_cpu, n, seconds)))
    return rows


def torch_eager_rows(seconds: float) -> list[tuple[str, str, float]]:
    """torch_xla's eager mode (each op runs at once) in a process of its own: the mode is global."""
    import torch
    import torch_xla
    torch_xla.experimental.eager_mode(True)
    dev = torch_xla.device()
    torch.manual_seed(0)
    lin_x = torch.nn.Linear(32, 32).to(dev)
    xs_dev = [torch.full((32, 32), float(k)).to(dev) for k in range(max(THREADS))]
    torch.set_grad_enabled(False)
    calls = [0] * max(THREADS)

    def eager(k):
        y = torch.tanh(lin_x(xs_dev[k])) + 1.0
        calls[k] += 1
        if calls[k] % 10 == 0:
            y.cpu()
    return [("torch_xla eager mode", f"tt x{n}", rate(eager, n, seconds)) for n in THREADS]


PARTS = {"jax": jax_rows, "torch": torch_rows, "torch_eager": torch_eager_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # a child process: print rows as name|where|rate
        for name, where, r in PARTS[args.part](args.seconds):
            print(f"ROW|{name}|{where}|{r}")
        return
    env = dict(os.environ, PJRT_DEVICE="TT")
    print(f"stress: calls/s, 1 vs 8 threads, target={os.environ.get('PJRT_TT_TARGET', 'auto')}")
    for part in PARTS:
        proc = subprocess.run([sys.executable, __file__, "--part", part, "--seconds", str(args.seconds)],
                              env=env, capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            print(f"  {part}: FAILED\n{proc.stderr[-2000:]}")
            continue
        for line in proc.stdout.splitlines():
            if line.startswith("ROW|"):
                _, name, where, r = line.split("|")
                print(f"  {name:28s} {where:8s} {float(r):10,.0f} calls/s")


if __name__ == "__main__":
    main()
