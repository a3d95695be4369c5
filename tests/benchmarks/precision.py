"""Precision of float32 dots on the chip: what each `precision=` / `algorithm=` setting costs and
how far from float64 it lands (docs/numerics.md, "Precision of dots"). Prints the markdown table.

    PYTHONPATH=$PWD .venv/bin/python tests/benchmarks/precision.py [--size 512] [--seed 0]

Each setting runs `lax.dot(a, b, precision=...)` on tt (the sim's model of the card) from
standard normal float32 inputs (size x size @ size x size), compared with the float64 numpy
product of the same inputs. Error columns: |C - C64| divided by (|A| @ |B|), the scale a dot's
rounding errors are measured in (it stays meaningful where terms cancel), max and mean over the
elements; float32's unit roundoff is 2^-24 = 6.0e-8. "XLA:CPU" is jax on the CPU for reference.
Device time is an **estimate** (pjrt_tt/perf: the ttnn program the setting lowers to, costed
op by op on an n150 and a p150; no card was used) with the ttnn op count; "x DEFAULT" is the
n150 estimate relative to DEFAULT's. A second table estimates a larger matmul (--large), where
the matmuls' compute rather than per-op cost dominates.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("PJRT_TT_TARGET", "sim")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from pjrt_tt.compiler import Compiler  # noqa: E402
from pjrt_tt.perf.program_cost import estimate_program  # noqa: E402
from pjrt_tt.settings import Settings  # noqa: E402

P, A = lax.Precision, lax.DotAlgorithmPreset
SETTINGS = [  # (label, precision argument)
    ("DEFAULT", P.DEFAULT),
    ("HIGH", P.HIGH),
    ("HIGHEST", P.HIGHEST),
    ("BF16_BF16_F32", A.BF16_BF16_F32),
    ("BF16_BF16_F32_X3", A.BF16_BF16_F32_X3),
    ("BF16_BF16_F32_X6", A.BF16_BF16_F32_X6),
    ("BF16_BF16_F32_X9", A.BF16_BF16_F32_X9),
    ("TF32_TF32_F32", A.TF32_TF32_F32),
    ("F32_F32_F32", A.F32_F32_F32),
]
CHIPS = ("n150", "p150")


def errors(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    scaled = np.abs(np.asarray(c, np.float64) - a64 @ b64) / (np.abs(a64) @ np.abs(b64))
    return float(scaled.max()), float(scaled.mean())


def estimate(precision, size: int) -> dict[str, tuple[float, int]]:
    from jax._src.lib import _jax
    spec = jax.ShapeDtypeStruct((size, size), np.float32)
    text = jax.jit(lambda x, y: lax.dot(x, y, precision=precision)).lower(spec, spec).as_text().encode()
    program = Compiler(Settings(target="sim")).compile(text, "mlir", _jax.CompileOptions()).program
    out = {}
    for chip in CHIPS:
        e = estimate_program(program, chip)
        out[chip] = (e.device_ns, e.ops())
    return out


def measure(size: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    tt, cpu = jax.devices("tt")[0], jax.devices("cpu")[0]
    rows = []
    for label, precision in SETTINGS:
        f = jax.jit(lambda x, y, p=precision: lax.dot(x, y, precision=p))
        c = np.asarray(f(jax.device_put(a, tt), jax.device_put(b, tt)))
        rows.append((label, *errors(c, a, b), estimate(precision, size)))
    c = np.asarray(jax.jit(lambda x, y: lax.dot(x, y, precision=P.HIGHEST))(jax.device_put(a, cpu),
                                                                              jax.device_put(b, cpu)))
    rows.append(("XLA:CPU (HIGHEST)", *errors(c, a, b), None))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--large", type=int, default=2048, help="a second size, estimated only (not run)")
    args = ap.parse_args()
    rows = measure(args.size, args.seed)
    print(f"{args.size}x{args.size} @ {args.size}x{args.size} float32, standard normal, seed {args.seed}; "
          f"tt = sim (n150) vs float64 numpy; jax {jax.__version__}\n")
    print("| setting | max err / (\\|A\\|\\|B\\|) | mean err / (\\|A\\|\\|B\\|) | n150 device (est.) | "
          "x DEFAULT | p150 device (est.) | ttnn ops |")
    print("|---|---|---|---|---|---|---|")
    base = rows[0][3]["n150"][0]
    for label, mx, mean, est in rows:
        if est is None:
            print(f"| {label} | {mx:.2e} | {mean:.2e} | | | | |")
            continue
        n150, p150 = est["n150"], est["p150"]
        print(f"| {label} | {mx:.2e} | {mean:.2e} | {n150[0] / 1e3:.1f} us | {n150[0] / base:.2f} | "
              f"{p150[0] / 1e3:.1f} us | {n150[1]} |")
    print(f"\n{args.large}^3, estimated device time only (not run)\n")
    print("| setting | n150 (est.) | x DEFAULT | p150 (est.) | x DEFAULT |")
    print("|---|---|---|---|---|")
    large = {label: estimate(p, args.large) for label, p in SETTINGS[:3] + SETTINGS[7:8]}
    for label, est in large.items():
        print(f"| {label} | {est['n150'][0] / 1e3:.1f} us | {est['n150'][0] / large['DEFAULT']['n150'][0]:.2f} | "
              f"{est['p150'][0] / 1e3:.1f} us | {est['p150'][0] / large['DEFAULT']['p150'][0]:.2f} |")


if __name__ == "__main__":
    main()
