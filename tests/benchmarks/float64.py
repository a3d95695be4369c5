"""float64 on the chip: computed as float32 (docs/numerics.md, "64-bit types"). How far from
float64 is it? Each program runs under jax_enable_x64 on tt (the sim's model of the card) and on
XLA:CPU in float64, from the same float64 inputs; prints the markdown table of docs/numerics.md.

    .venv/bin/python tests/benchmarks/float64.py [--size 4096] [--seed 0]

Columns: max |error| / |want| over elements with |want| >= 1e-3 (max rel), max |error| divided
by max |want| (max abs / scale), ||error|| / ||want|| (rel. Frobenius); float32's own unit
roundoff is 2^-24 = 6.0e-8.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

PROGRAMS = [  # (label, function, input transform)
    ("round trip (upload + download)", lambda x: x, None),
    ("x * 3.7 + 1e-3", lambda x: x * 3.7 + 1e-3, None),
    ("x / 7.1", lambda x: x / 7.1, None),
    ("exp(x)", jnp.exp, None),
    ("log(|x| + 1e-3)", lambda x: jnp.log(jnp.abs(x) + 1e-3), None),
    ("sqrt(|x|)", lambda x: jnp.sqrt(jnp.abs(x)), None),
    ("sin(x)", jnp.sin, None),
    ("tanh(x)", jnp.tanh, None),
    ("sum over 4096", lambda x: jnp.sum(x.reshape(-1, 4096), axis=1), "rows"),
    ("mean over 4096", lambda x: jnp.mean(x.reshape(-1, 4096), axis=1), "rows"),
    ("cumsum over 64", lambda x: jnp.cumsum(x.reshape(-1, 64), axis=1), None),
    ("softmax over 64", lambda x: jax.nn.softmax(x.reshape(-1, 64), axis=1), None),
    ("matmul 64x64 @ 64x64", lambda x: x[:4096].reshape(64, 64) @ x[:4096].reshape(64, 64).T, None),
]


def measure(size: int, seed: int) -> list[tuple]:
    tt, cpu = jax.devices("tt")[0], jax.devices("cpu")[0]
    rng = np.random.default_rng(seed)
    rows = []
    # jax_enable_x64 for the whole script (its context-manager form moved between jax 0.7.1
    # and 0.12)
    jax.config.update("jax_enable_x64", True)
    for label, f, shape in PROGRAMS:
        n = size * 4 if shape == "rows" else size
        x = rng.standard_normal(n)
        got = np.asarray(jax.jit(f)(jax.device_put(x, tt)), np.float64)
        want = np.asarray(jax.jit(f)(jax.device_put(x, cpu)), np.float64)
        err = np.abs(got - want)
        big = np.abs(want) >= 1e-3
        rows.append((label, float(np.max(err[big] / np.abs(want[big]))) if big.any() else 0.0,
                     float(err.max() / np.abs(want).max()),
                     float(np.linalg.norm(got - want) / np.linalg.norm(want))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = measure(args.size, args.seed)
    print(f"float64 programs on tt (float32 on the chip) vs XLA:CPU float64; standard normal "
          f"inputs, {args.size} elements, seed {args.seed}\n")
    print("| program | max rel | max abs / scale | rel. Frobenius |")
    print("|---|---|---|---|")
    for label, rel, scaled, frob in rows:
        print(f"| {label} | {rel:.2e} | {scaled:.2e} | {frob:.2e} |")


if __name__ == "__main__":
    main()
