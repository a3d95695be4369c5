"""Multi-chip SPMD: sharded jit and shard_map on simulated n300 (1x2) and t3k (2x4) systems,
and a few on Blackhole p300 (1x2) and p150x4 (2x2), the mock descriptors of shared/ttnn-mock,
compared with XLA:CPU on the same mesh shape (conftest.assert_close: the "matmul" bounds
for jit cases, bit-exact for shard_map cases that only move values, result.sharding equal
to CPU's). Every program also runs once on real ttnn in mock mode over a submesh of its
shape (PJRT_TT_CHECK_WITH_MOCK=1): n300 checks the 1x2 programs, t3k the 2x2, 1x4 and 2x4
ones (a 1-D mesh over all 8 chips runs as the 2x4 mesh: spmd/prepare.py); a program the
mock could not check fails its case unless conftest allows it.

The cases live in tests/spmd_cases.py and run in two subprocesses (one per system: ttnn
mocks one system per process, and XLA:CPU needs
--xla_force_host_platform_device_count=8 before jax is imported).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import forward_mock_unchecked

HERE = os.path.dirname(os.path.abspath(__file__))

N300 = ["dp_mlp", "tp_column", "tp_row", "megatron_mlp", "megatron_attention", "tp_grad", "fsdp",
        "reshard", "unspecified_out", "bf16_megatron", "psum", "all_gather", "psum_scatter",
        "all_to_all", "gspmd_form", "vocab_parallel_xent", "sharded_random", "narrow_types",
        "psum_scatter_1d", "sort_per_shard", "seed_words", "complex_collectives", "complex_tp"]
T3K = ["devices_memory", "dp_tp_2x2", "dp_tp_2x4", "dp_tp_train_2x2", "tp_1x4", "tp_1x8_column",
       "uneven_internal", "pmean", "pmax", "ppermute", "ppermute_ring_1x8",
       "ppermute_partial_1x8", "axis_index", "psum_2d_rows", "submeshes", "transpose_reshard",
       "scatter_add_rows", "update_at_axis_index", "update_past_the_end", "mesh_3d", "pad_sharded", "fold_reductions", "top_k_sharded", "argmax_sharded",
       "registry_unchanged"]   # last: after every other SPMD compile of the process
# Blackhole meshes (checked by mock on their own cluster descriptors)
BLACKHOLE = {"p300": ["megatron_mlp", "psum_scatter", "all_to_all"],
             "p150x4": ["dp_tp_2x2", "dp_tp_train_2x2"]}


def _spawn(system: str, cases: list[str], target: str = "sim") -> subprocess.Popen:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", PJRT_TT_SYSTEM=system,
               PJRT_TT_TARGET=target, PJRT_TT_CHECK_WITH_MOCK=os.environ.get("PJRT_TT_CHECK_WITH_MOCK", "1"))
    return subprocess.Popen([sys.executable, os.path.join(HERE, "spmd_cases.py"), *cases], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def results():
    procs = {"n300": _spawn("n300", N300), "t3k": _spawn("t3k", T3K)}   # both at once (2 cores)
    if os.environ.get("PJRT_TT_CHECK_WITH_MOCK", "1") == "1":   # mock available
        procs["mock"] = _spawn("n300", ["mock_target", "mock_persist", "mock_seed_words"], target="mock")
    out = {}

    def collect(procs):
        for system, p in procs.items():
            stdout, stderr = p.communicate(timeout=300)
            for line in stdout.splitlines():
                if line.startswith("CASE "):
                    r = json.loads(line[5:])
                    out[(system, r["case"])] = r
            out[(system, "__exit__")] = {"code": p.returncode, "stderr": stderr[-3000:]}

    collect(procs)
    collect({system: _spawn(system, cases) for system, cases in BLACKHOLE.items()})  # 2 cores: later
    return out


@pytest.mark.parametrize("system,case", [("n300", c) for c in N300] + [("t3k", c) for c in T3K]
                         + [(s, c) for s, cases in BLACKHOLE.items() for c in cases])
def test_case_matches_cpu(results, system, case):
    r = results.get((system, case))
    assert r is not None, f"case did not report; subprocess: {results[(system, '__exit__')]}"
    forward_mock_unchecked("\n".join(r.get("mock_unchecked", [])))
    assert r["ok"], json.dumps(r, indent=1)


def test_spmd_runs_on_real_ttnn_mock_target(results):
    """PJRT_TT_TARGET=mock: per-chip buffers -> mesh tensor (from_host_shards) -> the program
    on the 1x2 submesh with real CCL ops -> per-chip buffers; shapes and shardings as CPU."""
    if ("mock", "__exit__") not in results:
        pytest.skip("mock target unavailable")
    r = results.get(("mock", "mock_target"))
    assert r is not None and r["ok"], (r, results[("mock", "__exit__")])


def test_spmd_results_stay_on_real_ttnn_mesh(results):
    """PJRT_TT_TARGET=mock: a program's sharded/replicated results are per-chip views of its
    output mesh tensor; fed to the next program on the same chips they are that mesh tensor
    again (no host copy: DeviceTensors.host_copies stays 0); a device_put sharded array is
    copied through the host once, then its buffers are views of that copy (1 copy in 3 runs);
    one chip's view alone runs in a single-chip program (copied onto the chip)."""
    if ("mock", "__exit__") not in results:
        pytest.skip("mock target unavailable")
    r = results.get(("mock", "mock_persist"))
    assert r is not None and r["ok"], (r, results[("mock", "__exit__")])


def test_a_narrowed_seed_read_as_words_keeps_its_own_form_on_mock(results):
    """PJRT_TT_TARGET=mock: an int64 seed within int32 (a narrowed buffer) that a mesh program
    reads as uint32 words goes through a copy in that form; the buffers then adopted views of
    the words copy and read back as garbage ("cannot reshape array of size 2 into shape
    (1,)"). They keep their own tensors; a seed held as words adopts its views as before.
    (Values on mock are zeros: the sim's seed_words case checks them.)"""
    if ("mock", "__exit__") not in results:
        pytest.skip("mock target unavailable")
    r = results.get(("mock", "mock_seed_words"))
    assert r is not None and r["ok"], (r, results[("mock", "__exit__")])


@pytest.mark.parametrize("system", ["n300", "t3k", *BLACKHOLE])
def test_subprocess_exits_cleanly(results, system):
    r = results[(system, "__exit__")]
    assert r["code"] == 0, r["stderr"]


# --- the sim's collectives against numpy, in-process (no jax) -----------------------------

@pytest.fixture
def sim_mesh():
    """Four shards on one sim chip (the process's sim system is whatever is open; the
    collectives' semantics do not depend on which chip holds a shard; per-chip memory is
    tested through PJRT in the `devices_memory` case)."""
    from pjrt_tt.targets import sim
    from pjrt_tt.targets.sim import device
    ours = 0 not in device._chips          # close only a chip this test opened
    dev = sim.open_device(0)
    yield sim, [dev] * 4
    if ours:
        sim.close_device(dev)


def _mesh_tensor(sim, chips, values, dtype=None):
    dtype = dtype or sim.float32
    shards = [sim.Tensor(v, data_type=dtype, layout=sim.TILE_LAYOUT, device=c) for v, c in zip(values, chips)]
    return sim.combine_device_tensors(shards, (2, 2))


def _values(t):
    return [s.cpu().to_numpy() for s in t.shards]


def test_sim_collectives_follow_ttnn_semantics(sim_mesh):
    sim, chips = sim_mesh
    rng = np.random.RandomState(0)
    vals = [rng.randn(32, 64).astype(np.float32) for _ in range(4)]   # chip p at (p // 2, p % 2)
    t = _mesh_tensor(sim, chips, vals)
    g = sim.all_gather(t, dim=1, cluster_axis=1)                      # along each row
    assert tuple(g.shape) == (32, 128)
    np.testing.assert_array_equal(_values(g)[3], np.concatenate([vals[2], vals[3]], 1))
    r = sim.all_reduce(t, cluster_axis=0)                             # down each column
    np.testing.assert_allclose(_values(r)[1], vals[1] + vals[3], rtol=1e-6)
    rs = sim.reduce_scatter(t, dim=1, cluster_axis=1)
    assert tuple(rs.shape) == (32, 32)
    np.testing.assert_allclose(_values(rs)[1], (vals[0] + vals[1])[:, 32:], rtol=1e-6)
    with pytest.raises(RuntimeError, match="height begin index aligned"):
        sim.mesh_partition(t, dim=0, cluster_axis=0)                  # 16-row parts: not tile aligned
    mp = sim.mesh_partition(_mesh_tensor(sim, chips, [np.tile(v, (2, 1)) for v in vals]), dim=0, cluster_axis=0)
    np.testing.assert_array_equal(_values(mp)[2], vals[2])            # row 1 of the mesh keeps part 1


def test_mesh_shapes_that_are_submeshes_of_the_system_come_first():
    """Real ttnn runs a program only on a submesh (a 1x8 mesh is none of the 2x4 t3k: it refuses
    it), so the compiler tries those shapes first; 1 x N stays first where it is a submesh."""
    from pjrt_tt.spmd.prepare import mesh_candidates
    assert mesh_candidates(8, (2, 4)) == [(2, 4), (1, 8), (4, 2), (8, 1)]
    assert mesh_candidates(4, (2, 4)) == [(1, 4), (2, 2), (4, 1)]
    assert mesh_candidates(2, (1, 2)) == [(1, 2), (2, 1)]
    assert mesh_candidates(32, (4, 8))[0] == (4, 8)
    assert mesh_candidates(8, (4, 8))[0] == (1, 8)


def test_permute_pairs_choose_the_mesh_too():
    """A ring shift over all 8 chips is no shift along an axis of the 2x4 mesh, so the compiler
    must not choose 2x4 for it (the rule would refuse it); a swap within rows is one."""
    from pjrt_tt.spmd.prepare import NotOnMesh, permute_plan
    ring = [[i, (i + 1) % 8] for i in range(8)]
    assert permute_plan(ring, 1, 8) == (1, {(i + 1) % 8: i for i in range(8)})
    with pytest.raises(NotOnMesh, match="not one shift along a mesh axis of the 2x4 mesh"):
        permute_plan(ring, 2, 4)
    swap = [[i, i ^ 1] for i in range(8)]
    assert permute_plan(swap, 2, 4) == (1, {0: 1, 1: 0, 2: 3, 3: 2})
    down = [[i, (i + 4) % 8] for i in range(8)]
    assert permute_plan(down, 2, 4) == (0, {1: 0, 0: 1})
