"""A small transformer language model and its optax training step (for training tests)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from models import gpt2

CONFIG = gpt2.Config(vocab=128, seq=32, d_model=64, heads=4, layers=2)


def batches(steps: int, batch: int = 8, seed: int = 0):
    """A learnable synthetic language: each sequence counts up modulo the vocabulary
    from a random start, with a random stride."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        start = rng.integers(0, CONFIG.vocab, (batch, 1))
        stride = rng.integers(1, 4, (batch, 1))
        yield ((start + stride * np.arange(CONFIG.seq + 1)) % CONFIG.vocab).astype(np.int32)


def make_train_step(model, optimizer):
    def loss_fn(params, seq):
        logits = model.apply(params, seq[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, seq[:, 1:]).mean()

    def step(params, opt_state, seq):
        loss, grads = jax.value_and_grad(loss_fn)(params, seq)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def train(device, steps: int = 50, lr: float = 3e-3) -> list[float]:
    """Loss per step of `steps` Adam steps on `device`, from fixed initial weights."""
    model, params = gpt2.init(CONFIG)
    optimizer = optax.adam(lr)
    params = jax.device_put(params, device)
    with jax.default_device(jax.devices("cpu")[0]):
        opt_state = jax.device_put(jax.tree.map(np.asarray, optimizer.init(params)), device)
    step = jax.jit(make_train_step(model, optimizer), donate_argnums=(0, 1))
    losses = []
    for seq in batches(steps):
        params, opt_state, loss = step(params, opt_state, jax.device_put(seq, device))
        losses.append(float(loss))
    return losses
