"""Issue 13 item 6(b): program length never drives Python recursion. A chain of ~1,000 adds
hit the recursion limit in the fusion pass; every pass, the lowering and the executor's
binding must take chains far longer than Python's recursion limit (1,000 frames)."""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from conftest import assert_close

CHAIN = 2500   # two and a half times Python's default recursion limit


def _both(f, *args):
    tt, cpu = jax.devices("tt")[0], jax.devices("cpu")[0]
    got = jax.jit(f)(*jax.device_put(args, tt))
    want = jax.jit(f)(*jax.device_put(args, cpu))
    return np.asarray(got), np.asarray(want)


def test_recursion_limit_is_the_default():
    assert 2 * sys.getrecursionlimit() <= CHAIN   # else the chains below prove nothing


def test_chain_of_2500_adds_is_exact():
    def f(x):
        for _ in range(CHAIN):
            x = x + 1.0
        return x
    x = np.arange(-16, 16, dtype=np.float32).reshape(4, 8)
    got, want = _both(f, x)
    assert_close(got, want, exact=True)
    assert_close(got, x + CHAIN, exact=True)


def test_chain_of_2500_multiplies_and_divides_is_exact():
    """Products are what the fusion pass's factor walk reads (gelu, norms)."""
    def f(x):
        for i in range(CHAIN):
            x = x * 2.0 if i % 2 == 0 else x / 2.0
        return x
    x = np.linspace(-3, 3, 64, dtype=np.float32).reshape(8, 8)
    got, want = _both(f, x)
    assert_close(got, want, exact=True)
    assert_close(got, x, exact=True)


def test_deep_chain_of_different_elementwise_ops_is_exact():
    """Every op exact in float32 on both sides, so any difference is a lowering bug."""
    steps = [jnp.abs, jnp.negative, lambda v: v + 0.5, jnp.floor, lambda v: v * 2.0,
             lambda v: jnp.maximum(v, -7.0), lambda v: v - 1.0, lambda v: jnp.minimum(v, 9.0),
             jnp.ceil, lambda v: v / 2.0, lambda v: jnp.where(v > 0, v, v + 3.0)]

    def f(x, y):
        for i in range(CHAIN):
            x = steps[i % len(steps)](x)
            if i % 97 == 0:
                x = x + y   # a second input joins the chain now and then
        return x
    rng = np.random.default_rng(0)
    x = rng.integers(-8, 8, (16, 32)).astype(np.float32)
    y = rng.integers(-2, 3, (16, 32)).astype(np.float32)
    got, want = _both(f, x, y)
    assert_close(got, want, exact=True)


def test_chain_of_2500_integer_ops_is_exact():
    def f(x):
        for i in range(CHAIN):
            x = (x + 3) if i % 3 else (x - 2)
        return x
    x = np.arange(64, dtype=np.int32).reshape(8, 8)
    got, want = _both(f, x)
    assert_close(got, want)
