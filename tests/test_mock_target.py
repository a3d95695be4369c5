"""The mock target: real ttnn 0.81.1 in mock-cluster mode (pjrt_tt/targets/mock.py).

Device tests run in subprocesses: ttnn creates its (mock) cluster once per process,
so each system needs its own process, and the tests stay independent of whatever
else this pytest process has opened.  They need GNU binutils for RISC-V (Debian
package binutils-riscv64-unknown-elf); without them they are skipped, except under
CI=true, where they fail.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pjrt_tt.targets import mock

REPO = Path(__file__).resolve().parents[1]
BINUTILS = ("riscv64-unknown-elf-as", "riscv64-unknown-elf-ld")


@pytest.fixture
def binutils():
    missing = [t for t in BINUTILS if shutil.which(t) is None]
    if missing:
        msg = (f"{', '.join(missing)} not found: the mock target needs the Debian package "
               "binutils-riscv64-unknown-elf (apt-get install binutils-riscv64-unknown-elf)")
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


# helper available to every run_mock program: spec(t) -> [shape, padded_shape, dtype, layout]
SPEC = """
def spec(t):
    return [list(t.shape), list(t.padded_shape), str(t.dtype).split('.')[-1], str(t.layout).split('.')[-1]]
"""


def run_mock(code: str, tmp_path: Path, timeout: float = 600, **env_vars: str) -> dict:
    """Run `code` in a fresh interpreter (cwd = tmp_path); it must print one JSON
    line prefixed RESULT; return that object."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("LOGURU_LEVEL", "WARNING")
    env.update(env_vars)
    prog = "import json, numpy as np\nfrom pjrt_tt.targets import mock\n" + SPEC + textwrap.dedent(code)
    p = subprocess.run([sys.executable, "-c", prog], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and lines, (
        f"mock subprocess failed (exit {p.returncode})\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
    assert not any(tmp_path.iterdir()), f"ttnn wrote into the working directory: {list(tmp_path.iterdir())}"
    return json.loads(lines[-1][len("RESULT "):])


# --------------------------------------------------------------------------- no ttnn needed

def test_systems_match_the_project_table():
    from pjrt_tt import systems

    for name, s in systems.SYSTEMS.items():
        assert name in mock.SYSTEMS, f"mock cannot mock system {name}"
        assert mock.SYSTEMS[name].mesh_shape == s.mesh_shape, name
        assert mock.SYSTEMS[name].arch == s.arch.name, name


@pytest.mark.parametrize("name", list(mock.SYSTEMS))
def test_cluster_descriptor(name):
    import yaml

    s = mock.SYSTEMS[name]
    d = yaml.safe_load(mock.cluster_descriptor_yaml(name))
    assert sorted(d["arch"]) == list(range(s.num_chips))
    assert set(d["arch"].values()) == {s.arch}
    chips_on_boards = sorted(c for b in d["boards"] for c in b[2]["chips"])
    assert chips_on_boards == list(range(s.num_chips))
    upi = {"n150": 0x18, "n300": 0x14, "p150": 0x40, "p300": 0x45, "ubb": 0x35}[s.board]
    assert all((b[0]["board_id"] >> 36) & 0xFFFFF == upi for b in d["boards"])
    # every chip reaches a PCIe chip; links join distinct chips on distinct channels
    assert d["chips_with_mmio"]
    used = set()
    for a, b in d["ethernet_connections"]:
        assert a["chip"] != b["chip"]
        for end in (a, b):
            key = (end["chip"], end["chan"])
            assert key not in used, f"channel used twice: {key}"
            used.add(key)
            assert end["chan"] < (12 if s.arch == "blackhole" else 16)


def test_unknown_system_is_a_clear_error():
    with pytest.raises(mock.MockUnavailable, match="unknown system 'n999'.*known: n150"):
        mock.cluster_descriptor_yaml("n999")


def test_missing_linker_names_the_debian_package(monkeypatch):
    monkeypatch.setenv("PJRT_TT_RISCV_LD", "/nonexistent/riscv64-unknown-elf-ld")
    with pytest.raises(mock.MockUnavailable, match="binutils-riscv64-unknown-elf"):
        mock.check_toolchain()


def test_stand_in_compiler_is_executable():
    path = REPO / "pjrt_tt" / "targets" / "mock_toolchain" / "riscv-tt-elf-g++"
    assert os.access(path, os.X_OK)
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True).stdout
    assert "riscv-tt-elf-g++" in out


def test_stand_in_compiler_builds_a_linkable_stub(binutils, tmp_path):
    gxx = str(REPO / "pjrt_tt" / "targets" / "mock_toolchain" / "riscv-tt-elf-g++")
    src = tmp_path / "k.cc"
    src.write_text("this is not even C++")
    subprocess.run([gxx, "-O2", "-c", "-o", str(tmp_path / "k.o"), str(src), "-MF", str(tmp_path / "k.d")],
                   check=True, cwd=tmp_path)
    assert (tmp_path / "k.d").read_text().startswith(str(tmp_path / "k.o"))
    subprocess.run([gxx, "-x", "c++-header", str(src), "-o", str(tmp_path / "pch.gch")], check=True)
    assert (tmp_path / "pch.gch").stat().st_size == 0
    script = tmp_path / "t.ld"
    script.write_text("SECTIONS { . = 0x1000; .text : { *(.text) } }\n")
    subprocess.run([gxx, "-T", str(script), "-Wl,-z,max-page-size=16", "-Wl,--emit-relocs",
                    "/elsewhere/runtime/hw/lib/ignored.o", str(tmp_path / "k.o"), "-o", str(tmp_path / "k.elf")],
                   check=True, cwd=tmp_path)
    head = (tmp_path / "k.elf").read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[4] == 1 and int.from_bytes(head[18:20], "little") == 243  # ELF32, RISC-V
    relocs = subprocess.run(["riscv64-unknown-elf-readelf", "-r", str(tmp_path / "k.elf")],
                            capture_output=True, text=True).stdout
    assert "R_RISCV_JAL" in relocs  # ttnn's loader needs a relocation section


# --------------------------------------------------------------------------- real ttnn

def test_n150_validates_calls(binutils, tmp_path):
    r = run_mock("""
        ttnn, dev = mock.open("n150")
        out = {"grid": str(dev.compute_with_storage_grid_size()), "shape": list(dev.shape)}
        def t(shape, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT):
            return ttnn.Tensor(np.ones(shape, np.float32), data_type=dtype, layout=layout, device=dev)
        x = t((7, 33, 65))
        out["upload"] = spec(x)
        out["add_bcast"] = spec(ttnn.add(x, t((33, 1))))
        out["gt"] = spec(ttnn.gt(x, x))
        out["gt_i32"] = spec(ttnn.gt(t((3, 5), ttnn.int32), t((3, 5), ttnn.int32)))
        out["gt_f32"] = spec(ttnn.gt(x, x, dtype=ttnn.float32))
        out["matmul"] = spec(ttnn.matmul(x, t((65, 10))))
        out["sum"] = spec(ttnn.sum(x, dim=1, keepdim=False))
        out["sum_all"] = spec(ttnn.sum(x, dim=None))
        out["reshape_rm"] = spec(ttnn.reshape(t((3, 5), layout=ttnn.ROW_MAJOR_LAYOUT), (5, 3)))
        out["typecast"] = spec(ttnn.typecast(t((3, 5)), ttnn.int32))
        out["to_layout"] = spec(ttnn.to_layout(x, ttnn.ROW_MAJOR_LAYOUT))
        out["rank0"] = spec(ttnn.exp(t(())))
        host = ttnn.to_dtype(ttnn.from_device(ttnn.add(x, x)), ttnn.float32).to_numpy()
        out["readback"] = [list(host.shape), str(host.dtype), float(abs(host).sum())]
        try:
            ttnn.matmul(t((3, 5)), t((6, 7)))
            out["bad_matmul"] = "accepted"
        except RuntimeError as e:
            out["bad_matmul"] = str(e)
        mock.close(dev)
        print("RESULT " + json.dumps(out))
    """, tmp_path)
    assert r["shape"] == [1, 1] and r["grid"] == "8-8"
    assert r["upload"] == [[7, 33, 65], [7, 64, 96], "BFLOAT16", "TILE"]
    assert r["add_bcast"][0] == [7, 33, 65]
    assert r["gt"][2:] == ["BFLOAT16", "TILE"]           # comparisons keep the input dtype
    assert r["gt_i32"][2] == "INT32"
    assert r["gt_f32"][2] == "FLOAT32"                    # unless dtype= says otherwise
    assert r["matmul"][:1] == [[7, 33, 10]]
    assert r["sum"][0] == [7, 65] and r["sum_all"][0] == []
    assert r["reshape_rm"] == [[5, 3], [5, 3], "BFLOAT16", "ROW_MAJOR"]
    assert r["typecast"][2] == "INT32"
    assert r["to_layout"] == [[7, 33, 65], [7, 33, 65], "BFLOAT16", "ROW_MAJOR"]
    assert r["rank0"][:2] == [[], [32, 32]]
    assert r["readback"] == [[7, 33, 65], "float32", 0.0]  # mock reads back zeros
    assert "width=5 height=6" in r["bad_matmul"]


def test_open_is_shared_and_reopenable(binutils, tmp_path):
    r = run_mock("""
        ttnn, a = mock.open("n150")
        _, b = mock.open("n150")
        same = a is b
        mock.close(b)
        x = ttnn.Tensor(np.ones((3, 5), np.float32), data_type=ttnn.float32, device=a)  # still open
        mock.close(a)
        _, c = mock.open("n150")  # a fresh device after the last close
        ok = list(ttnn.add(ttnn.Tensor(np.ones((3, 5), np.float32), data_type=ttnn.float32, device=c),
                           1.0).shape)
        mock.close(c)
        try:
            mock.prepare_environment("p150")
            other = "allowed"
        except mock.MockUnavailable as e:
            other = str(e)
        print("RESULT " + json.dumps({"same": same, "ok": ok, "other": other}))
    """, tmp_path)
    assert r["same"] and r["ok"] == [3, 5]
    assert "needs a new process" in r["other"]


def test_p300_mesh_and_ccl(binutils, tmp_path):
    r = run_mock("""
        ttnn, dev = mock.open("p300")
        x = np.ones((4, 6, 64), np.float32)
        t = ttnn.Tensor(x, data_type=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev,
                        mesh_mapper=ttnn.ShardTensorToMesh(dev, dim=2))
        out = {"shape": list(dev.shape), "n": dev.get_num_devices(), "grid": str(dev.compute_with_storage_grid_size()),
               "shard": spec(t), "add": spec(ttnn.add(t, t)),
               "all_gather": spec(ttnn.all_gather(t, dim=2)),
               "reduce_scatter": spec(ttnn.reduce_scatter(t, dim=2)),
               "all_reduce": spec(ttnn.all_reduce(t))}
        back = ttnn.to_dtype(ttnn.from_device(t), ttnn.float32).to_numpy(
            mesh_composer=ttnn.ConcatMeshToTensor(dev, dim=2))
        out["composed"] = list(back.shape)
        subs = list(dev.create_submeshes(ttnn.MeshShape(1, 1)))
        out["submeshes"] = len(subs)
        mock.close(dev)
        print("RESULT " + json.dumps(out))
    """, tmp_path)
    assert r["shape"] == [1, 2] and r["n"] == 2 and r["grid"] == "11-10"
    assert r["shard"][0] == [4, 6, 32] and r["add"][0] == [4, 6, 32]
    assert r["all_gather"][0] == [4, 6, 64]
    assert r["reduce_scatter"][0] == [4, 6, 16]
    assert r["all_reduce"][0] == [4, 6, 32]
    assert r["composed"] == [4, 6, 64]
    assert r["submeshes"] == 2


def test_jax_and_ttnn_share_a_process(binutils, tmp_path):
    r = run_mock("""
        import jax, jax.numpy as jnp
        f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
        before = float(f(jnp.ones((8, 8))))
        ttnn, dev = mock.open("n150")
        a = ttnn.Tensor(np.ones((64, 64), np.float32), data_type=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev)
        mm = list(ttnn.matmul(a, a).shape)
        after = float(jax.jit(lambda x: jnp.sin(x).sum())(jnp.zeros(4)))
        mock.close(dev)
        print("RESULT " + json.dumps({"before": before, "mm": mm, "after": after,
                                      "backend": jax.default_backend()}))
    """, tmp_path, JAX_PLATFORMS="cpu")  # jax on its CPU backend, not our own plugin
    assert r == {"before": 64.0, "mm": [64, 64], "after": 0.0, "backend": "cpu"}


def test_probe_runs(binutils, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), LOGURU_LEVEL="WARNING")
    p = subprocess.run([sys.executable, str(REPO / "tools" / "mock_probe.py"), "--only", "host,reduce"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ttnn.sum(x, dim=, keepdim=) result shapes" in p.stdout
    assert "| (7,33,65) | False | () | (33,65) | (7,65) | (7,33) |" in p.stdout
