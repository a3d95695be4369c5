"""A GPT-2-style decoder in flax (pre-LayerNorm, GELU MLP, causal attention, tied
embeddings) with a KV cache for greedy generation under `lax.while_loop`."""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Config:
    vocab: int = 512
    seq: int = 64
    d_model: int = 128
    heads: int = 4
    layers: int = 2

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


class Block(nn.Module):
    cfg: Config

    @nn.compact
    def __call__(self, x, cache=None, pos=None):
        """x: (B, T, D). With a cache (k, v: (B, H, S, Dh)) and the position of x's
        single token, attends over the cache and returns the updated cache."""
        cfg = self.cfg
        b, t, _ = x.shape
        h = nn.LayerNorm(name="ln1")(x)
        qkv = nn.Dense(3 * cfg.d_model, name="qkv")(h).reshape(b, t, 3, cfg.heads, cfg.head_dim)
        q, k, v = (jnp.transpose(qkv[:, :, i], (0, 2, 1, 3)) for i in range(3))  # (B, H, T, Dh)
        if cache is None:
            keys, values = k, v
            mask = jnp.tril(jnp.ones((t, t), bool))
        else:
            keys = jax.lax.dynamic_update_slice(cache[0], k, (0, 0, pos, 0))
            values = jax.lax.dynamic_update_slice(cache[1], v, (0, 0, pos, 0))
            mask = (jnp.arange(cfg.seq) <= pos)[None, :]
        scores = jnp.einsum("bhqd,bhkd->bhqk", q, keys) / np.sqrt(cfg.head_dim)
        scores = jnp.where(mask, scores, -1e9)
        attn = jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(scores, axis=-1), values)
        attn = jnp.transpose(attn, (0, 2, 1, 3)).reshape(b, t, cfg.d_model)
        x = x + nn.Dense(cfg.d_model, name="proj")(attn)
        h = nn.LayerNorm(name="ln2")(x)
        h = nn.Dense(cfg.d_model, name="proj_out")(nn.gelu(nn.Dense(4 * cfg.d_model, name="fc")(h)))
        return x + h, (keys, values)


class GPT2(nn.Module):
    cfg: Config

    def setup(self):
        self.wte = nn.Embed(self.cfg.vocab, self.cfg.d_model)
        self.wpe = nn.Embed(self.cfg.seq, self.cfg.d_model)
        self.blocks = [Block(self.cfg, name=f"block{i}") for i in range(self.cfg.layers)]
        self.ln_f = nn.LayerNorm()

    def __call__(self, tokens):
        """Logits for every position of tokens (B, T)."""
        x = self.wte(tokens) + self.wpe(jnp.arange(tokens.shape[1]))
        for block in self.blocks:
            x, _ = block(x)
        return self.wte.attend(self.ln_f(x))

    def step(self, token, pos, caches):
        """One decoding step: token (B, 1) at position pos -> logits (B, vocab), caches."""
        x = self.wte(token) + self.wpe(pos[None])[None]
        new = []
        for block, cache in zip(self.blocks, caches):
            x, cache = block(x, cache, pos)
            new.append(cache)
        return self.wte.attend(self.ln_f(x))[:, 0], new


def init(cfg: Config = Config(), seed: int = 0):
    model = GPT2(cfg)
    with jax.default_device(jax.local_devices(backend="cpu")[0]):  # initialisation is host-side setup
        params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, cfg.seq), jnp.int32))
    # host numpy so that device placement is the caller's choice
    return model, jax.tree.map(np.asarray, params)


def empty_caches(cfg: Config, batch: int):
    shape = (batch, cfg.heads, cfg.seq, cfg.head_dim)
    return [(jnp.zeros(shape), jnp.zeros(shape)) for _ in range(cfg.layers)]


def generate(model: GPT2, params, prompt, steps: int):
    """Greedy decoding with a KV cache, as one jitted lax.while_loop. prompt: (B, P) int32."""
    cfg = model.cfg
    batch, plen = prompt.shape

    def body(state):
        pos, token, tokens, caches = state
        logits, caches = model.apply(params, token, pos, caches, method=GPT2.step)
        nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)[:, None]
        # while still inside the prompt, feed the prompt's next token instead
        forced = jax.lax.dynamic_slice(prompt, (0, jnp.minimum(pos + 1, plen - 1)), (batch, 1))
        nxt = jnp.where(pos + 1 < plen, forced, nxt)
        tokens = jax.lax.dynamic_update_slice(tokens, nxt, (0, pos + 1))
        return pos + 1, nxt, tokens, caches

    tokens = jnp.zeros((batch, plen + steps), jnp.int32)
    tokens = jax.lax.dynamic_update_slice(tokens, prompt, (0, 0))
    state = (jnp.int32(0), prompt[:, :1], tokens, empty_caches(cfg, batch))
    _, _, tokens, _ = jax.lax.while_loop(lambda s: s[0] < plen + steps - 1, body, state)
    return tokens
