"""Real models on TT against XLA:CPU: GPT-2-style decoder (logits and KV-cache greedy
generation), all-MiniLM-L6-v2 with its real weights and tokenizer, a ResNet-style CNN,
a ViT, and optax training of a small transformer."""
from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demos"))

from conftest import assert_close, run_both  # noqa: E402
from models import gpt2, minilm, tiny_lm, vision  # noqa: E402
from models.sentences import CORPUS as DEMO_CORPUS  # noqa: E402

# The demo corpus without its last sentence: with it, one query ("Two men pushed carts...")
# has two sentences tied at cosine -0.0380 on CPU (equal to 4 decimals), whose order is
# not meaningful and flips on TT.
CORPUS = DEMO_CORPUS[:8]


@pytest.fixture(scope="module")
def gpt():
    return gpt2.init()


def test_gpt2_logits_match_cpu(tt, cpu, gpt):
    model, params = gpt
    tokens = np.random.default_rng(0).integers(0, model.cfg.vocab, (2, model.cfg.seq)).astype(np.int32)
    got, want = run_both(model.apply, params, tokens, tt_device=tt, cpu_device=cpu)
    assert_close(got[0], want[0], kind="matmul")


def test_gpt2_greedy_generation_with_kv_cache_matches_cpu(tt, cpu, gpt):
    model, params = gpt
    prompt = np.random.default_rng(1).integers(0, model.cfg.vocab, (2, 8)).astype(np.int32)
    generate = lambda p, pr: gpt2.generate(model, p, pr, 32)  # noqa: E731
    got, want = run_both(generate, params, prompt, tt_device=tt, cpu_device=cpu)
    np.testing.assert_array_equal(got[0], want[0])


@pytest.fixture(scope="module")
def minilm_model():
    return minilm.load()


def test_minilm_sentence_embeddings_and_ranking_match_cpu(tt, cpu, minilm_model):
    params, tokenizer, config = minilm_model
    ids, mask = minilm.tokenize(tokenizer, CORPUS)
    embed = lambda p, i, m: minilm.embed(p, i, m, config)  # noqa: E731
    (got,), (want,) = run_both(embed, params, ids, mask, tt_device=tt, cpu_device=cpu)
    cosine = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() >= 0.99, cosine
    assert_close(got, want, kind="matmul")   # cosine is blind to scale: the values themselves
    sim_tt, sim_cpu = got @ got.T, want @ want.T
    for i in range(len(CORPUS)):  # the same ranking of the other sentences for every query
        np.testing.assert_array_equal(np.argsort(-sim_tt[i]), np.argsort(-sim_cpu[i]))


@pytest.mark.parametrize("model", [vision.ResNet(), vision.ViT()], ids=["resnet", "vit"])
def test_vision_models_match_cpu(tt, cpu, model):
    params = vision.init(model)
    images = np.random.default_rng(2).standard_normal((2, 32, 32, 3)).astype(np.float32)
    got, want = run_both(model.apply, params, images, tt_device=tt, cpu_device=cpu)
    assert_close(got[0], want[0], kind="matmul")


def test_transformer_training_with_optax_follows_cpu(tt, cpu):
    on_tt, on_cpu = tiny_lm.train(tt), tiny_lm.train(cpu)
    assert on_cpu[-1] < 0.5 * on_cpu[0]  # the model learns at all
    assert abs(on_tt[-1] - on_cpu[-1]) / on_cpu[-1] < 0.02, (on_tt[-1], on_cpu[-1])
