"""Data movement of uint8 / uint16 values computed on the chip, against XLA:CPU (exact).

ttnn 0.81 refuses reshape of uint8/uint16 and slice / concat / repeat / gather of uint8
TILE tensors; the lowering runs those on uint32 (ttnn_facts.NARROW_REFUSED)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_close, run_both

X = (np.arange(5 * 7, dtype=np.int32).reshape(5, 7) * 37) % 1000  # odd, non-tile shape
LIMIT = {jnp.uint8: 251, jnp.uint16: 997}

CASES = {
    "reshape": lambda v: v.reshape(7, 5),
    "flatten": lambda v: v.reshape(-1),
    "expand_dims": lambda v: v[None],
    "transpose": lambda v: v.T,
    "broadcast": lambda v: jnp.broadcast_to(v[:, None, :], (5, 3, 7)),
    "slice": lambda v: v[1:4, 2:6],
    "strided_slice": lambda v: v[::2, 1::3],
    "concat": lambda v: jnp.concatenate([v, v[:, :2]], axis=1),
    "gather": lambda v: v[jnp.array([3, 0, 4, 4])],
    "iota": lambda v: jnp.concatenate([v, jnp.arange(7, dtype=v.dtype)[None]]),
    "take_along": lambda v: jnp.take_along_axis(v, jnp.array([[2], [0], [6], [1], [3]]), axis=1),
}


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.uint16], ids=["u8", "u16"])
@pytest.mark.parametrize("name", CASES)
def test_small_int_data_movement(tt, cpu, name, dtype):
    f = lambda x: CASES[name]((x % LIMIT[dtype]).astype(dtype))  # noqa: E731
    got, want = run_both(f, X, tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        assert w.dtype == np.dtype(dtype)
        assert_close(g, w)
