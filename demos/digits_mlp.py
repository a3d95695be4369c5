"""Train an MLP on scikit-learn's 8x8 digits with jax.grad, on TT and on CPU, and compare.

    make demo        # or: python demos/digits_mlp.py [--epochs N]

The same initial weights, batches and step function run on both backends; the script
prints test accuracy and wall time for each. Without a card, TT is the simulated
n150 (PJRT_TT_SYSTEM / PJRT_TT_TARGET choose another).
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HIDDEN = 128
CLASSES = 10


def load_data(seed: int = 0):
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    return train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)


def init_params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    glorot = lambda fan_in, fan_out: (rng.standard_normal((fan_in, fan_out)) *  # noqa: E731
                                      np.sqrt(2.0 / (fan_in + fan_out))).astype(np.float32)
    return {"w1": glorot(64, HIDDEN), "b1": np.zeros(HIDDEN, np.float32),
            "w2": glorot(HIDDEN, HIDDEN), "b2": np.zeros(HIDDEN, np.float32),
            "w3": glorot(HIDDEN, CLASSES), "b3": np.zeros(CLASSES, np.float32)}


def logits_fn(params, x):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    h = jax.nn.relu(h @ params["w2"] + params["b2"])
    return h @ params["w3"] + params["b3"]


def loss_fn(params, x, y):
    logp = jax.nn.log_softmax(logits_fn(params, x))
    return -jnp.mean(jnp.sum(jax.nn.one_hot(y, CLASSES) * logp, axis=-1))


def sgd_step(params, velocity, x, y, lr=0.1, momentum=0.9):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    velocity = jax.tree.map(lambda v, g: momentum * v + g, velocity, grads)
    params = jax.tree.map(lambda p, v: p - lr * v, params, velocity)
    return params, velocity, loss


def train(device, epochs: int = 30, batch: int = 128, seed: int = 0) -> dict:
    """Train on `device`; returns test accuracy, final loss and wall time."""
    x_train, x_test, y_train, y_test = load_data(seed)
    step = jax.jit(sgd_step, donate_argnums=(0, 1))
    predict = jax.jit(logits_fn)
    put = lambda a: jax.device_put(a, device)  # noqa: E731
    params = jax.tree.map(put, init_params(seed))
    velocity = jax.tree.map(lambda p: put(np.zeros_like(p)), init_params(seed))
    order_rng = np.random.default_rng(seed)
    start = time.perf_counter()
    losses = []
    for _ in range(epochs):
        order = order_rng.permutation(len(x_train))
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            params, velocity, loss = step(params, velocity, put(x_train[idx]), put(y_train[idx]))
        losses.append(float(loss))
    logits = np.asarray(predict(params, put(x_test)))
    elapsed = time.perf_counter() - start
    accuracy = float(np.mean(np.argmax(logits, axis=1) == y_test))
    return {"accuracy": accuracy, "loss": losses[-1], "losses": losses, "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    tt = jax.devices("tt")[0]
    cpu = jax.devices("cpu")[0]
    print(f"training a {64}-{HIDDEN}-{HIDDEN}-{CLASSES} MLP on sklearn digits for {args.epochs} epochs")
    results = {}
    for name, dev in (("tt", tt), ("cpu", cpu)):
        results[name] = r = train(dev, epochs=args.epochs)
        print(f"  {name:>3} ({dev.device_kind}): test accuracy {100 * r['accuracy']:.2f}%  "
              f"final loss {r['loss']:.4f}  wall {r['seconds']:.2f} s")
    gap = 100 * abs(results["tt"]["accuracy"] - results["cpu"]["accuracy"])
    print(f"accuracy gap tt vs cpu: {gap:.2f} points ({'within' if gap <= 1.0 else 'OUTSIDE'} 1 point)")


if __name__ == "__main__":
    main()
