"""complex64 on the chip: carried as (re, im) float32 planes (docs/numerics.md, "complex64").
Each program runs on tt (the sim's model of the card) and on XLA:CPU from the same complex64
inputs; the reference is numpy in complex128 from those inputs. Prints the markdown table of
docs/numerics.md.

    .venv/bin/python tests/benchmarks/complex64.py [--size 4096] [--seed 0]

Columns: max |error| / max |want| and ||error|| / ||want|| over both planes, for tt and for
XLA:CPU against the complex128 reference (float32's unit roundoff is 2^-24 = 6.0e-8).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    c = lambda *s: (rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(np.complex64)  # noqa: E731
    z, w = c(args.size), c(args.size)
    a, b = c(256, 256), c(256, 256)
    cases = [
        ("z * w", lambda x, y: x * y, np.multiply, (z, w)),
        ("z / w", lambda x, y: x / y, np.divide, (z, w)),
        ("abs(z)", lambda x, y: jnp.abs(x), lambda x, y: np.abs(x), (z, w)),
        ("exp(z)", lambda x, y: jnp.exp(x), lambda x, y: np.exp(x), (z, w)),
        ("log(z)", lambda x, y: jnp.log(x), lambda x, y: np.log(x), (z, w)),
        ("sqrt(z)", lambda x, y: jnp.sqrt(x), lambda x, y: np.sqrt(x), (z, w)),
        ("sum(z)", lambda x, y: jnp.sum(x), lambda x, y: np.sum(x), (z, w)),
        ("256x256 @ 256x256", lambda x, y: x @ y, lambda x, y: x @ y, (a, b)),
    ]
    tt, cpu = jax.devices("tt")[0], jax.devices("cpu")[0]
    print("| program | tt max err / max | tt rel L2 | CPU max err / max | CPU rel L2 |")
    print("|---|---|---|---|---|")
    for name, f, ref, ins in cases:
        want = np.asarray(ref(*[x.astype(np.complex128) for x in ins]))
        row = [name]
        for dev in (tt, cpu):
            got = np.asarray(jax.jit(f)(*[jax.device_put(x, dev) for x in ins])).astype(np.complex128)
            err = np.abs(got - want)
            row += [f"{err.max() / np.abs(want).max():.1e}", f"{np.linalg.norm(got - want) / np.linalg.norm(want):.1e}"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
