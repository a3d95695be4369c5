"""Matmul accuracy on the sim's model of the card: data format x math fidelity x accumulation.

    .venv/bin/python tests/benchmarks/numerics.py [--size 256] [--seed 0]

A random N x N @ N x N (standard normal) through sim ttnn.matmul, compared with float64 numpy:
relative Frobenius error ||C - C_ref|| / ||C_ref|| and PCC. Prints the markdown table of
docs/numerics.md. Rows: the operands' formats (a = activations, b = weights) and the output.
"""
from __future__ import annotations

import argparse

import numpy as np

from pjrt_tt.targets import sim as ttnn

FORMATS = [  # (label, a dtype, b dtype, output dtype)
    ("f32 x f32 -> f32", "float32", "float32", "float32"),
    ("bf16 x bf16 -> bf16", "bfloat16", "bfloat16", "bfloat16"),
    ("bf16 x bfp8 -> bf16", "bfloat16", "bfloat8_b", "bfloat16"),
    ("bf16 x bfp4 -> bf16", "bfloat16", "bfloat4_b", "bfloat16"),
]
FIDELITIES = ["LoFi", "HiFi2", "HiFi4"]


def measure(size: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    ttnn.sim_reset()
    dev = ttnn.open_device(device_id=0)
    rows = []
    try:
        for label, da, db, do in FORMATS:
            ta = ttnn.Tensor(a, getattr(ttnn, da), dev, ttnn.TILE_LAYOUT)
            tb = ttnn.Tensor(b, getattr(ttnn, db), dev, ttnn.TILE_LAYOUT)
            configs = [("default", None)] + [
                (f"{f}{' +fp32acc' if acc else ''}", ttnn.WormholeComputeKernelConfig(
                    math_fidelity=getattr(ttnn.MathFidelity, f), math_approx_mode=False, fp32_dest_acc_en=acc,
                    packer_l1_acc=not acc))
                for acc in (False, True) for f in FIDELITIES]
            for name, cfg in configs:
                out = ttnn.matmul(ta, tb, dtype=getattr(ttnn, do), compute_kernel_config=cfg)
                c = np.asarray(ttnn.to_dtype(ttnn.from_device(out), ttnn.float32).to_numpy(), np.float64)
                if name == "default":
                    d = ttnn.fpu.matmul_config(dev.arch().name, ta.dtype, tb.dtype, out.dtype)
                    name = (f"default ({d.math_fidelity.name}"
                            f"{', fp32 acc' if d.fp32_dest_acc_en else ', bf16 acc'})")
                err = np.linalg.norm(c - ref) / np.linalg.norm(ref)
                pcc = np.corrcoef(c.ravel(), ref.ravel())[0, 1]
                rows.append((label, name, err, pcc))
    finally:
        ttnn.close_device(dev)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"{args.size}x{args.size} @ {args.size}x{args.size}, standard normal, seed {args.seed}; "
          f"sim (n150 / Wormhole defaults) vs float64 numpy\n")
    print("| operands -> output | compute kernel config | rel. Frobenius error | PCC |")
    print("|---|---|---|---|")
    for label, name, err, pcc in measure(args.size, args.seed):
        print(f"| {label} | {name} | {err:.2e} | {pcc:.6f} |")


if __name__ == "__main__":
    main()
