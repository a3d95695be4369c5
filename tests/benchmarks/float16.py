"""float16 on the chip: computed in float32, rounded to float16 when read back (docs/numerics.md,
"float16, int8, int16, int4, uint4"). How far is it from XLA:CPU's float16 (which rounds some
intermediates to float16), and which of the two is nearer the exact value? Each program runs
on tt (the sim's model of the card) and on XLA:CPU from the same float16 inputs; the reference
is XLA:CPU in float32 from those inputs. Prints the markdown table of docs/numerics.md.

    .venv/bin/python tests/benchmarks/float16.py [--size 4096] [--seed 0]

Columns: max |error| / max |want| and ||error|| / ||want||, for tt against CPU's float16, tt
against the float32 reference and CPU's float16 against it; float16's unit roundoff is
2^-11 = 4.9e-4.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

PROGRAMS = [  # (label, function)
    ("round trip (upload + download)", lambda x: x),
    ("x * 3.7 + 1e-3", lambda x: x * 3.7 + 1e-3),
    ("exp(x) * x", lambda x: jnp.exp(x) * x),
    ("tanh(x)", jnp.tanh),
    ("gelu(x)", jax.nn.gelu),
    ("sum over 64", lambda x: jnp.sum(x.reshape(-1, 64), axis=1)),
    ("cumsum over 64", lambda x: jnp.cumsum(x.reshape(-1, 64), axis=1)),
    ("softmax over 64", lambda x: jax.nn.softmax(x.reshape(-1, 64), axis=1)),
    ("layer norm over 64", lambda x: jax.nn.standardize(x.reshape(-1, 64), axis=1)),
    ("matmul 64x64 @ 64x64", lambda x: x[:4096].reshape(64, 64) @ x[:4096].reshape(64, 64).T),
]


def _errors(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    got, want = got.astype(np.float64), want.astype(np.float64)
    return (float(np.abs(got - want).max() / np.abs(want).max()),
            float(np.linalg.norm(got - want) / np.linalg.norm(want)))


def measure(size: int, seed: int) -> list[tuple]:
    tt, cpu = jax.devices("tt")[0], jax.devices("cpu")[0]
    x = np.random.default_rng(seed).standard_normal(size).astype(np.float16)
    rows = []
    for label, f in PROGRAMS:
        got = np.asarray(jax.jit(f)(jax.device_put(x, tt)))
        cpu16 = np.asarray(jax.jit(f)(jax.device_put(x, cpu)))
        exact = np.asarray(jax.jit(f)(jax.device_put(x.astype(np.float32), cpu)))
        rows.append((label, *_errors(got, cpu16), *_errors(got, exact), *_errors(cpu16, exact)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = measure(args.size, args.seed)
    print(f"float16 programs on tt (float32 on the chip, rounded once) vs XLA:CPU float16 and a "
          f"float32 reference; standard normal inputs, {args.size} elements, seed {args.seed}\n")
    print("| program | tt vs CPU: max abs / scale | rel. Frobenius | tt vs f32: max abs / scale | "
          "rel. Frobenius | CPU vs f32: max abs / scale | rel. Frobenius |")
    print("|---|---|---|---|---|---|---|")
    for label, *errs in rows:
        print(f"| {label} | " + " | ".join(f"{e:.2e}" for e in errs) + " |")


if __name__ == "__main__":
    main()
