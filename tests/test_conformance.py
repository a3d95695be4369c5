"""The conformance check (pjrt_tt/targets/conformance.py) and the ownership of device tensors
(pjrt_tt/targets/tensors.py).

The mesh case runs in a subprocess (1x2 meshes of a t3k system, XLA:CPU with 8 devices): SPMD
programs with host-driven control flow (a fori_loop with a cond inside, a data-dependent
while, a scan) run on the sim and are compared with XLA:CPU on the same mesh (allclose
rtol=1e-2, atol=1e-3: float32 throughout); one whose host reads differ per chip is refused
with a clear error; then each program the compiler lowered is
handed to the check with its mesh shape, which runs it on real ttnn (mock) with every
loop body and branch once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pjrt_tt import systems
from pjrt_tt.runtime.client import CLIENTS
from pjrt_tt.targets import conformance
from pjrt_tt.targets.tensors import DeviceTensors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOCK = os.environ.get("PJRT_TT_CHECK_WITH_MOCK") == "1"

MESH_PROGRAMS = """
import json
import numpy as np, jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from pjrt_tt.runtime.client import CLIENTS
from pjrt_tt.targets.conformance import ConformanceCheck, UNCHECKED

def f(x, w):   # a loop whose body holds a case, then a case on a reduced value
    def body(i, c):
        return jnp.tanh(c @ w + x) + jax.lax.cond(i % 2 == 0, lambda: 1.0, lambda: 0.5)
    y = jax.lax.fori_loop(0, 3, body, jnp.zeros((16, 64)))
    return jax.lax.cond(y.sum() > 0, lambda a: a * 2, lambda a: a - 1, y)

def tp_loop(x, w):   # the partitioner slices w per chip inside the loop: offsets differ by chip
    return jax.lax.fori_loop(0, 3, lambda i, c: jnp.tanh(c @ w), x)

def g(x, w):
    def step(c, xs):
        c = c + jnp.sum(xs @ w)
        return c, xs * c
    return jax.lax.scan(step, jnp.float32(0), x.reshape(4, 4, 64))

def h(x):      # trip count read from the device: a sum over a sharded array
    return jax.lax.while_loop(lambda c: c[1] < c[0].sum() / 64, lambda c: (c[0], c[1] + 1.0), (x, 0.0))

rng = np.random.default_rng(0)
X, W = rng.standard_normal((16, 64)).astype(np.float32), (rng.standard_normal((64, 64)) * 0.1).astype(np.float32)
out = {}
for platform in ("tt", "cpu"):
    mesh = Mesh(np.array(jax.devices(platform)[:2]).reshape(1, 2), ("x", "y"))
    ns = lambda s: NamedSharding(mesh, s)
    x, w = jax.device_put(X, ns(P(None, "y"))), jax.device_put(W, ns(P("y", None)))
    rows, full = jax.device_put(X, ns(P("y", None))), jax.device_put(W, ns(P()))
    out[platform] = {"f": jax.jit(f, out_shardings=ns(P("y", None)))(rows, full), "g": jax.jit(g)(x, w),
                     "h": jax.jit(h)(jax.device_put(np.abs(X), ns(P(None, "y"))))}
    if platform == "tt":
        try:
            refused = str(jax.jit(tp_loop, out_shardings=ns(P()))(x, w))
        except Exception as e:
            refused = str(e)
close = {k: all(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-2, atol=1e-3)
                for a, b in zip(jax.tree.leaves(out["tt"][k]), jax.tree.leaves(out["cpu"][k])))
         for k in out["tt"]}
trips = float(np.asarray(out["tt"]["h"][1]))
check = ConformanceCheck(CLIENTS[0].target.system)
checked, errors = [], []
for c in list(CLIENTS[0].compiler._cache.values()):
    try:
        check(c.program, c.mesh_shape)
        checked.append(list(c.mesh_shape))
    except Exception as e:
        errors.append(str(e)[:1000])
print("RESULT " + json.dumps({"close": close, "refused": refused, "trips": trips, "checked": checked, "errors": errors,
                              "unchecked": [str(u) for u in UNCHECKED]}))
"""


@pytest.mark.skipif(not MOCK, reason="needs the mock target (binutils-riscv64-unknown-elf)")
def test_mesh_programs_with_control_flow_pass_the_check():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", PJRT_TT_SYSTEM="t3k",
               PJRT_TT_TARGET="sim", PJRT_TT_CHECK_WITH_MOCK="0", PYTHONPATH=REPO)
    p = subprocess.run([sys.executable, "-c", MESH_PROGRAMS], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "leaked" not in p.stderr, p.stderr[-3000:]   # the check's mock target went down in order
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, p.stderr[-3000:]
    r = json.loads(line[0][7:])
    assert r["close"] == {"f": True, "g": True, "h": True}, r
    assert r["trips"] > 1   # the while ran more than once: its predicate was read from the device
    # a per-chip value the host would have to use for all chips: refused, never a wrong answer
    assert "differs across the mesh's chips ([0, 1])" in r["refused"] and "dynamic_slice" in r["refused"]
    assert r["errors"] == [], r["errors"]
    assert r["checked"] == [[1, 2]] * 4 and r["unchecked"] == []


def test_a_mesh_that_is_not_a_submesh_is_recorded(tt):
    """The check cannot run a 1x2 program on a mocked n150: it records why, it does not print."""
    jax.jit(lambda x: x * 3 + 1)(jax.device_put(jnp.ones((4, 4)), tt)).block_until_ready()
    program = next(iter(CLIENTS[0].compiler._cache.values())).program
    before = len(conformance.UNCHECKED)
    conformance.ConformanceCheck(systems.get_system("n150"))(program, (1, 2))
    assert len(conformance.UNCHECKED) == before + 1
    skipped = conformance.UNCHECKED[-1]
    assert isinstance(skipped, conformance.NotASubmesh)
    assert skipped.mesh_shape == (1, 2) and skipped.system == "n150" and skipped.program == program.name
    assert "not a submesh of the n150 mesh 1x1" in str(skipped)
    del conformance.UNCHECKED[before:]


def test_views_free_their_mesh_tensor_with_the_last_view():
    freed = []
    owner = DeviceTensors(freed.append)
    mesh, a, b, plain = object(), object(), object(), object()
    owner.share(mesh, [a, b], [0, 1])
    assert owner.is_view(a) and owner.mesh_of([a, b], [0, 1]) is mesh
    assert owner.mesh_of([b, a], [0, 1]) is None and owner.mesh_of([a, b], [1, 2]) is None
    owner.free(a)
    assert freed == []          # b still holds the mesh buffer
    owner.free(b)
    assert freed == [mesh]
    owner.free(plain)
    assert freed == [mesh, plain] and not owner.is_view(a)


def test_host_copies_are_freed_unless_adopted():
    freed = []
    owner = DeviceTensors(freed.append)
    before = DeviceTensors.host_copies
    kept, dropped = object(), object()
    views = {id(kept): ["v0", "v1"]}
    owner.track_copy(kept)
    owner.track_copy(dropped)
    assert DeviceTensors.host_copies == before + 2
    assert owner.adopt(kept, lambda t: views[id(t)], [0, 1]) == ["v0", "v1"]
    assert owner.adopt(object(), lambda t: [], [0, 1]) == []   # not a copy: nothing to adopt
    owner.release(kept)
    owner.release(dropped)
    assert freed == [dropped]   # the adopted copy lives on in its views
    assert owner.mesh_of(["v0", "v1"], [0, 1]) is kept


def test_targets_are_chosen_through_the_table():
    from pjrt_tt import targets
    from pjrt_tt.errors import InvalidArgument
    assert set(targets.OPENERS) == {"sim", "mock", "device"}
    assert targets.TARGET_NAMES == ("auto", "device", "sim", "mock")
    with pytest.raises(InvalidArgument, match="cannot open target 'tpu'"):
        targets.open_target("tpu", systems.get_system("n150"))


def test_mock_probe_help_runs_outside_the_package():
    p = subprocess.run([sys.executable, os.path.join(REPO, "tools", "mock_probe.py"), "--help"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=""))
    assert p.returncode == 0 and "--update-doc" in p.stdout, p.stderr
    assert not os.path.exists(os.path.join(REPO, "pjrt_tt", "targets", "mock_probe.py"))


def test_sim_host_tensor_has_no_buffer():
    """As ttnn 0.81.1 (measured, mock): buffer geometry exists only for device tensors."""
    from pjrt_tt.targets import sim
    t = sim.Tensor(np.zeros((32, 32), np.float32), data_type=sim.float32, layout=sim.TILE_LAYOUT)
    with pytest.raises(RuntimeError, match="Expected Tensor with DeviceStorage, got StorageType::HOST"):
        t.buffer_num_pages()
