"""The persistent compile cache: PJRT_Executable_Serialize / DeserializeAndLoad
(pjrt_tt/runtime/serialized.py) behind jax's `jax_compilation_cache_dir`.

Each cross-process case runs fresh child processes (this file as a script) sharing one cache
directory: the second process must run the program without lowering it (the compiler's
`compilations` stays 0, `loads` counts the programs read back), with results equal to XLA:CPU
computed in the same child. A corrupt entry, or one made by other code, is an error the
framework turns into a recompile (jax warns, and keeps the file): the process lives and the
results stay right. Garbage bytes through the C API fail with a fitting code, never a crash.
"""
from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pjrt_tt
from conftest import assert_close

LIBRARY = Path(pjrt_tt.__file__).resolve().parent / "libpjrt_tt.so"
FITTING = {"INVALID_ARGUMENT", "FAILED_PRECONDITION"}
MAGIC = b"PJRTTT\x00\x01"


def _child(cache: Path, mode: str = "jax") -> dict:
    # level 1 with bfloat16 weights: each program has a const-eval block (the weight's typecast),
    # which must travel with the program and run again after a load
    env = dict(os.environ, PJRT_TT_COMPILE_OPTIONS='{"optimization_level": "1", "tt_weight_dtype": "bfloat16"}')
    if mode == "spmd":
        env["PJRT_TT_SYSTEM"] = "n300"
    proc = subprocess.run([sys.executable, __file__, mode, str(cache)],
                          capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"the child died (exit code {proc.returncode})\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["stderr"] = proc.stderr
    for got, want in zip(out.pop("tt"), out.pop("cpu")):
        assert_close(np.array(got, np.float32), np.array(want, np.float32), kind="bfloat16")   # bf16 weights
    return out


def _entries(cache: Path) -> list[Path]:
    """The cache files of the tt executables (the CPU reference's entry is beside them)."""
    from jax._src import compilation_cache as cc
    ours = [p for p in cache.iterdir()
            if MAGIC in cc.extract_executable_and_time(cc.decompress_executable(p.read_bytes()))[0]]
    assert len(ours) == 2, sorted(p.name for p in cache.iterdir())   # (the child's 2 tt programs)
    return ours


def _rewrite(path: Path, change) -> None:
    """Applies `change` (keeping the length) to our serialized executable inside jax's cache
    entry: jax compresses it with its compile time, and jax 0.12 wraps it in a proto of its own."""
    from jax._src import compilation_cache as cc
    from pjrt_tt.runtime.serialized import read_header
    entry, compile_time = cc.extract_executable_and_time(cc.decompress_executable(path.read_bytes()))
    start = entry.index(MAGIC)
    header_bytes = int.from_bytes(entry[start + len(MAGIC):start + len(MAGIC) + 4], "big")
    header, _ = read_header(entry[start:])   # (a whole, valid entry so far)
    end = start + len(MAGIC) + 4 + header_bytes + header["body_bytes"]
    ours = entry[start:end]
    changed = change(ours)
    assert len(changed) == len(ours) and changed != ours
    entry = entry[:start] + changed + entry[end:]
    path.write_bytes(cc.compress_executable(cc.combine_executable_and_time(entry, compile_time)))


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> tuple[Path, dict]:
    """A cache directory a first process filled, and what that process counted."""
    cache = tmp_path_factory.mktemp("warm")
    first = _child(cache)
    assert first["compilations"] >= 1 and first["loads"] == 0, first
    _entries(cache)
    return cache, first


def _copy(warm, tmp_path: Path) -> Path:
    shutil.copytree(warm[0], tmp_path / "cache")
    return tmp_path / "cache"


def test_second_process_hits_without_lowering(warm, tmp_path):
    second = _child(_copy(warm, tmp_path))
    assert second["compilations"] == 0, second["stderr"][-3000:]   # nothing lowered, passed or mock-checked
    assert second["loads"] == warm[1]["compilations"], second


@pytest.mark.parametrize("damage", ["body_byte", "file_garbage"])
def test_corrupt_entry_recompiles(warm, tmp_path, damage):
    cache = _copy(warm, tmp_path)
    for path in _entries(cache):
        if damage == "body_byte":   # a flipped byte in our body: the checksum refuses it
            _rewrite(path, lambda b: b[:-7] + bytes([b[-7] ^ 0x40]) + b[-6:])
        else:                        # not even jax's compression: jax's own reader refuses it
            path.write_bytes(b"\x00garbage" * 50)
    again = _child(cache)
    assert again["compilations"] == 2 and again["loads"] == 0, again
    if damage != "file_garbage":   # jax's warning carries our error
        assert "serialized pjrt-tt executable" in again["stderr"], again["stderr"][-2000:]
    # (jax never overwrites an entry that exists, lru_cache.LRUCache.put: every later process
    # recompiles too, with the same warning, until the file is removed; docs/compile-cache.md)


def test_entry_from_another_version_recompiles(warm, tmp_path):
    cache = _copy(warm, tmp_path)

    def other_version(b: bytes) -> bytes:
        old = b'"pjrt_tt": "%s"' % pjrt_tt.__version__.encode()
        assert old in b
        return b.replace(old, b'"pjrt_tt": "0.0.0"')
    for path in _entries(cache):
        _rewrite(path, other_version)
    again = _child(cache)
    assert again["compilations"] == 2 and again["loads"] == 0, again
    assert "other code or another system" in again["stderr"], again["stderr"][-2000:]


def test_spmd_program_hits(tmp_path):
    """A program partitioned for a 2-chip mesh (n300): the mesh shape, the device assignment
    and the output shardings (the optimized program jax reads them from) come back too."""
    first = _child(tmp_path, "spmd")
    assert first["compilations"] == 1 and first["loads"] == 0, first
    second = _child(tmp_path, "spmd")
    assert second["compilations"] == 0 and second["loads"] == 1, second["stderr"][-3000:]
    assert second["sharding"] == first["sharding"], (first["sharding"], second["sharding"])


def test_jax_serialize_round_trip_in_process(tt_client):
    """jax's own serialize / deserialize_and_load (jax.experimental.serialize_executable):
    the loaded executable runs without a lowering and gives the same results."""
    import jax
    from jax.experimental import serialize_executable as se
    x, w = _inputs()
    tt = jax.devices("tt")[0]
    compiled = jax.jit(_mlp).lower(jax.device_put(x, tt), jax.device_put(w, tt)).compile()
    payload, in_tree, out_tree = se.serialize(compiled)
    before = tt_client.compiler.compilations, tt_client.compiler.loads
    loaded = se.deserialize_and_load(payload, in_tree, out_tree, backend=tt.client)
    got = loaded(jax.device_put(x, tt), jax.device_put(w, tt))
    assert tt_client.compiler.compilations == before[0] and tt_client.compiler.loads == before[1] + 1
    cpu = jax.devices("cpu")[0]
    want = jax.jit(_mlp)(jax.device_put(x, cpu), jax.device_put(w, cpu))
    assert_close(np.asarray(got), np.asarray(want), kind="matmul")
    del compiled, loaded, got
    gc.collect()   # (jax's executables sit in cycles: free their device memory before the next test)


def _vhlo() -> bytes:
    import jax
    from jax import export
    x, w = _inputs()
    return bytes(export.export(jax.jit(_mlp), platforms=["cpu"])(x, w).mlir_module_serialized)


def test_c_api_round_trip_and_garbage(tt_client):
    """DeserializeAndLoad driven directly: a real serialization loads; garbage, truncations,
    bit flips and other versions fail with INVALID_ARGUMENT / FAILED_PRECONDITION."""
    import random

    from pjrt_capi import Api, PjrtError
    api = Api(LIBRARY)
    client = api.client()
    try:
        exe = api.compile(client, _vhlo(), "mlir")
        data = api.serialize(exe)
        api.destroy("PJRT_LoadedExecutable_Destroy", exe)
        assert data.startswith(b"PJRTTT")
        api.destroy("PJRT_LoadedExecutable_Destroy", api.deserialize(client, data))
        rng = random.Random(12)
        cases = [b"", b"P", b"PJRTTT\x00\x01", b"PJRTTT\x00\x01\xff\xff\xff\xff", data[:20], data[:-1],
                 data + b"x", data.replace(b'"format": 1', b'"format": 9'),
                 data.replace(b'"system": "', b'"system": "x'), bytes(rng.randrange(256) for _ in range(4000))]
        for _ in range(300):
            flipped = bytearray(data)
            for _ in range(rng.choice([1, 1, 2, 8])):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            cases.append(bytes(flipped))
        codes = {}
        for case in cases:
            try:
                api.destroy("PJRT_LoadedExecutable_Destroy", api.deserialize(client, case))
                codes["OK"] = codes.get("OK", 0) + 1   # a flip in a spot nothing reads (JSON spacing)
            except PjrtError as e:
                from pjrt_capi import CODES
                name = CODES.get(e.code, str(e.code))
                assert name in FITTING, f"{name}: {e.message}"
                assert "serialized pjrt-tt executable" in e.message, e.message
                codes[name] = codes.get(name, 0) + 1
        print(codes)
        assert codes.get("OK", 0) < 10, codes
    finally:
        api.destroy("PJRT_Client_Destroy", client)


def test_torch_xla_initialize_cache_second_process(tmp_path):
    """torch_xla 2.9's persistent cache serializes our executables (PJRT_Executable_Serialize)
    but cannot read them back through any PJRT C API plugin: its DeserializeComputation calls
    PjRtClient::DeserializeExecutable, which the C API client leaves UNIMPLEMENTED (it never
    reaches PJRT_Executable_DeserializeAndLoad). So the second process recompiles, and this
    checks it does so correctly; when torch_xla reads entries back, `loads` becomes 1 here."""
    pytest.importorskip("torch_xla")
    first = _child(tmp_path, "torch")
    assert first["compilations"] >= 1, first
    assert any(tmp_path.iterdir()), "torch_xla wrote no cache entry"
    second = _child(tmp_path, "torch")
    assert second["compilations"] + second["loads"] >= 1, second
    if second["loads"] == 0:
        assert "Deserializing serialized executable not supported" in second["stderr"], second["stderr"][-2000:]


# --- the children -----------------------------------------------------------------------

def _mlp(x, w):
    import jax.numpy as jnp
    return jnp.tanh(x @ w.T + 1.0).sum(axis=0)


def _rows(x, w):   # an SPMD program: rows split over the mesh
    import jax.numpy as jnp
    return jnp.tanh(x @ w.T + 1.0)


def _inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal((16, 32)).astype(np.float32) / 8


def _configure(jax, cache: str) -> None:
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    # jax 0.7.1 writes <cache dir>/xla_gpu_per_fusion_autotune_cache_dir into the compile
    # options, so its keys name the directory; the tests copy one filled directory
    jax.config.update("jax_persistent_cache_enable_xla_caches", "none")


def _jax_child(cache: str) -> dict:
    import jax
    _configure(jax, cache)
    x, w = _inputs()
    tt, cpu = jax.devices("tt")[0], jax.devices("cpu")[0]
    want = jax.jit(_mlp)(jax.device_put(x, cpu), jax.device_put(w, cpu))
    # (at level 1 with a const-eval block, see _child; and as a Metal trace)
    got = [jax.jit(_mlp, compiler_options=options)(jax.device_put(x, tt), jax.device_put(w, tt))
           for options in ({}, {"enable_trace": True})]
    return {"tt": [np.asarray(g).tolist() for g in got], "cpu": [np.asarray(want).tolist()] * len(got)}


def _spmd_child(cache: str) -> dict:
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    _configure(jax, cache)
    x, w = _inputs()
    mesh = Mesh(np.array(jax.devices("tt")[:2]), ("x",))
    got = jax.jit(_rows)(jax.device_put(x, NamedSharding(mesh, PartitionSpec("x", None))),
                         jax.device_put(w, NamedSharding(mesh, PartitionSpec())))
    cpu = jax.devices("cpu")[0]
    want = jax.jit(_rows)(jax.device_put(x, cpu), jax.device_put(w, cpu))
    return {"tt": [np.asarray(got).tolist()], "cpu": [np.asarray(want).tolist()],
            "sharding": str(got.sharding.spec)}


def _torch_child(cache: str) -> dict:
    os.environ["PJRT_DEVICE"] = "TT"
    import torch
    import torch_xla
    import torch_xla.runtime as xr
    xr.initialize_cache(cache)
    x, w = (torch.from_numpy(a) for a in _inputs())
    dev = torch_xla.device()
    got = torch.tanh(x.to(dev) @ w.to(dev).T + 1.0).sum(0)
    torch_xla.sync()
    want = torch.tanh(x @ w.T + 1.0).sum(0)
    return {"tt": [got.cpu().numpy().tolist()], "cpu": [want.numpy().tolist()]}


if __name__ == "__main__":
    result = {"jax": _jax_child, "spmd": _spmd_child, "torch": _torch_child}[sys.argv[1]](sys.argv[2])
    from pjrt_tt.runtime.client import CLIENTS
    result.update(compilations=sum(c.compiler.compilations for c in CLIENTS),
                  loads=sum(c.compiler.loads for c in CLIENTS))
    print(json.dumps(result))
