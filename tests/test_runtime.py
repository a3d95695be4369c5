"""The plugin as JAX sees it: discovery, transfers, errors, caching, lifetimes, dumps."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
from jax import lax
import ml_dtypes
import numpy as np
import pytest

from conftest import assert_close


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (clean plugin registration) with extra env."""
    full_env = {**os.environ, **env}
    full_env.pop("PJRT_TT_TARGET", None) if env.get("PJRT_TT_TARGET") == "" else None
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, cwd=REPO, timeout=300)


def test_discovery_in_fresh_process():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PJRT_TT_")}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import jax
        devs = jax.devices('tt')
        print(len(devs), devs[0].device_kind, devs[0].platform, jax.default_backend())
        print(jax.devices()[0].platform)
    """)], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0] == "1 wormhole_b0 tt tt"
    notes = [line for line in r.stderr.splitlines() if line.startswith("pjrt-tt:")]
    assert len(notes) == 1, r.stderr
    assert "simulated n150" in notes[0] and "PJRT_TT_TARGET" in notes[0]


def test_system_selection_names_the_chip():
    r = run_python("import jax; d = jax.devices('tt')[0]; print(d.device_kind, d.system)",
                   PJRT_TT_SYSTEM="p150", PJRT_TT_CHECK_WITH_MOCK="0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "blackhole p150"


def test_unknown_system_is_a_clear_error():
    r = run_python("import jax\ntry:\n jax.devices('tt')\nexcept Exception as e: print('ERR', e)",
                   PJRT_TT_SYSTEM="n999", PJRT_TT_CHECK_WITH_MOCK="0")
    assert "unknown Tenstorrent system 'n999'" in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16, np.int32, np.uint32, np.uint8,
                                   np.bool_], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (2, 33, 65)], ids=str)
def test_round_trip_exact(tt, dtype, shape):
    rng = np.random.default_rng(1)
    if dtype == np.bool_:
        x = rng.random(shape) > 0.5
    elif np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        x = rng.integers(max(info.min, -2**31), min(info.max, 2**31 - 1), shape, endpoint=True).astype(dtype)
    else:
        x = rng.standard_normal(shape).astype(dtype)
        x.reshape(-1)[:2] = [-0.0, np.inf][:x.size]   # a sign bit array_equal would not see
    y = jax.device_put(x, tt)
    assert y.devices() == {tt}
    assert_close(np.asarray(y), x, exact=True)
    assert_close(jax.device_get(y), x, exact=True)


def test_a_bool_whose_byte_is_not_0_or_1_is_true(tt):
    """numpy lets a bool hold any byte (a uint8 buffer viewed as bool, as jax's own test
    generators make); it is True, and every program sees it as 1 (on XLA:CPU the raw byte
    leaks into astype and bitcasts: undefined there)."""
    raw = np.array([96, 0, 1, 255], np.uint8).view(np.bool_)
    x = jax.device_put(raw, tt)
    assert_close(np.asarray(x), np.array([True, False, True, True]), exact=True)
    assert_close(np.asarray(x.astype(jnp.uint8)), np.array([1, 0, 1, 1], np.uint8), exact=True)
    assert_close(np.asarray(x.view(jnp.int8)), np.array([1, 0, 1, 1], np.int8), exact=True)


@pytest.mark.parametrize("view", ["strided", "reversed", "reversed_strided", "transposed_reversed"])
def test_non_contiguous_host_array(tt, view):
    """Host arrays reach the plugin with their byte strides (negative for a reversed view:
    element [0, ..] is not the lowest address)."""
    base = np.arange(60, dtype=np.float32).reshape(6, 10)
    x = {"strided": base[:, ::3], "reversed": base[::-1], "reversed_strided": base[::-2, ::-3],
         "transposed_reversed": base.T[::-1, 1:]}[view]
    np.testing.assert_array_equal(np.asarray(jax.device_put(x, tt)), x)


def test_unsupported_op_names_op_and_source_line(tt):
    x = jax.device_put(np.ones((4, 4), np.float32), tt)

    def uses_rng(a):
        return a + lax.rng_uniform(0.0, 1.0, (4, 4))  # line with the unsupported op (stablehlo.rng)

    with pytest.raises(Exception) as info:
        jax.jit(uses_rng)(x)
    message = str(info.value)
    assert "stablehlo.rng" in message
    assert f"test_runtime.py:{uses_rng.__code__.co_firstlineno + 1}" in message, message
    # the process keeps working
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda a: a * 2)(x)), 2 * np.ones((4, 4)))


def test_program_cache_avoids_recompiling(tt, tt_client):
    client = tt_client
    x = jax.device_put(np.ones((5, 7), np.float32), tt)
    jax.jit(lambda a: jnp.sin(a) * 0 + a * 3.25)  # (not called: only defines)
    before = client.compiler.compilations
    for _ in range(3):
        jax.jit(lambda a: a * 3.25 + 1)(x).block_until_ready()  # a new jit object each time
    assert client.compiler.compilations == before + 1


def test_deleted_buffers_free_device_memory(tt):
    # Earlier tests' arrays in reference cycles would otherwise be freed by a collection in
    # the middle and move the baseline (seen in CI: 32 KiB less than the two buffers).
    gc.collect()
    gc.disable()
    try:
        _check_deleted_buffers_free_device_memory(tt)
    finally:
        gc.enable()


def _check_deleted_buffers_free_device_memory(tt):
    stats = lambda: tt.memory_stats()["bytes_in_use"]  # noqa: E731
    base = stats()
    x = jax.device_put(np.ones((1024, 1024), np.float32), tt)
    size = x.on_device_size_in_bytes()
    assert size == 1024 * 4096  # 1024 float32 tiles
    # ttnn interleaves pages over the 12 DRAM banks; each bank rounds up to whole pages
    page_slack = 12 * 4096
    assert size <= stats() - base <= size + page_slack
    y = jax.jit(lambda a: a + 1)(x)
    assert 2 * size <= stats() - base <= 2 * (size + page_slack)
    x.delete()
    del y
    assert stats() == base
    # an n150 has 12 GiB of DRAM, less what ttnn reserves at the bottom of each bank
    assert 0.99 * 12 * 2**30 <= tt.memory_stats()["bytes_limit"] <= 12 * 2**30


def test_donation_deletes_the_donated_input(tt):
    x = jax.device_put(np.ones((8, 8), np.float32), tt)
    y = jax.jit(lambda a: a * 2, donate_argnums=0)(x)
    assert x.is_deleted()
    with pytest.raises(RuntimeError, match="deleted"):
        np.asarray(x)
    np.testing.assert_array_equal(np.asarray(y), 2 * np.ones((8, 8)))


def test_block_until_ready_and_device_get(tt):
    y = jax.jit(lambda a: jnp.exp(a))(jax.device_put(np.zeros((3, 3), np.float32), tt))
    assert y.block_until_ready() is y
    np.testing.assert_array_equal(jax.device_get(y), np.ones((3, 3), np.float32))


def test_dump_writes_stablehlo_and_ttnn_program(tmp_path):
    r = run_python("""
        import jax, jax.numpy as jnp, numpy as np
        jax.jit(lambda x: jnp.tanh(x) + 1)(np.ones((3, 5), np.float32)).block_until_ready()
    """, PJRT_TT_DUMP=str(tmp_path), PJRT_TT_CHECK_WITH_MOCK="0")
    assert r.returncode == 0, r.stderr
    files = sorted(os.listdir(tmp_path))
    assert any(f.endswith(".stablehlo.mlir") for f in files), files
    program = next(f for f in files if f.endswith(".ttnn.txt"))
    text = (tmp_path / program).read_text()
    assert "ttnn.tanh(" in text and "ttnn.add(" in text and "<string>" in text, text
    shlo = (tmp_path / next(f for f in files if f.endswith(".stablehlo.mlir"))).read_text()
    assert "stablehlo.tanh" in shlo


def test_out_of_device_memory_is_a_clear_error():
    # In a subprocess without the mock check: real ttnn.full builds the whole tensor on
    # the host before it allocates on the device (14 GB here), which the sim does not.
    r = run_python("""
        import jax, jax.numpy as jnp, numpy as np
        try:
            jax.jit(lambda: jnp.zeros((60000, 60000)) + 1)().block_until_ready()  # 14.4 GB > 12 GB
        except Exception as e:
            print(e)
        print(jax.jit(lambda: jnp.ones(3))())
    """, PJRT_TT_CHECK_WITH_MOCK="0")
    assert r.returncode == 0, r.stderr
    message, after = r.stdout.strip().splitlines()[0], r.stdout.strip().splitlines()[-1]
    assert message.startswith("RESOURCE_EXHAUSTED: out of TT device memory"), message
    assert "14400000000 B" in message and "<string>:4" in message, message
    assert after == "[1. 1. 1.]"
