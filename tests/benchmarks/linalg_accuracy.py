"""Accuracy of tt's cholesky / triangular_solve / qr / eigh (pjrt_tt/lower/factorizations.py)
against float64 (numpy), beside XLA:CPU's float32 in the same run. Prints a markdown table
(docs/numerics.md, "Linear algebra"). Run: python tests/benchmarks/linalg_accuracy.py"""
from __future__ import annotations

import os
import time

os.environ.setdefault("PJRT_TT_TARGET", "sim")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def rel(got, want) -> float:
    return float(np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want))


def main() -> None:
    tt, cpu = jax.devices("tt")[0], jax.devices("cpu")[0]
    rng = np.random.default_rng(0)
    print("| op | n | tt rel. Frobenius error | XLA:CPU float32 | tt first call (s) |")
    print("|---|---|---|---|---|")
    for n in (16, 64):
        x = rng.standard_normal((n, n))
        spd = (x @ x.T + n * np.eye(n)).astype(np.float32)
        sym = (x + x.T).astype(np.float32)
        b = rng.standard_normal((n, 4)).astype(np.float32)
        s64, y64 = spd.astype(np.float64), sym.astype(np.float64)
        cases = [
            ("cholesky: L vs float64", jnp.linalg.cholesky, (spd,), lambda L: rel(L, np.linalg.cholesky(s64))),
            ("solve_triangular (lower)", lambda a, b: jax.scipy.linalg.solve_triangular(a, b, lower=True), (spd, b),
             lambda X: rel(X, np.linalg.solve(np.tril(s64), b))),
            ("qr: Q R vs A", jnp.linalg.qr, (sym,), lambda qr: rel(np.asarray(qr[0], np.float64) @ qr[1], y64)),
            ("qr: Q^T Q vs I", jnp.linalg.qr, (sym,),
             lambda qr: rel(np.asarray(qr[0], np.float64).T @ qr[0], np.eye(n))),
            ("eigh: w vs float64", jnp.linalg.eigh, (sym,), lambda wv: rel(wv[0], np.linalg.eigvalsh(y64))),
            ("eigh: A V - V diag(w)", jnp.linalg.eigh, (sym,),
             lambda wv: rel(y64 @ wv[1], np.asarray(wv[1], np.float64) * wv[0])),
        ]
        for name, f, args, err in cases:
            t0 = time.perf_counter()
            got = jax.tree.map(np.asarray, jax.jit(f)(*[jax.device_put(a, tt) for a in args]))
            dt = time.perf_counter() - t0
            ref = jax.tree.map(np.asarray, jax.jit(f)(*[jax.device_put(a, cpu) for a in args]))
            print(f"| {name} | {n} | {err(got):.2e} | {err(ref):.2e} | {dt:.1f} |")


if __name__ == "__main__":
    main()
