"""Metal trace (compile option enable_trace): the sim's capture/replay gives the untraced
results, replays skip the executor, programs the host drives are refused, and the device path
runs on a card (skipped without one: the mock segfaults in trace capture)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_close, opt_level
from pjrt_tt.targets import sim
from pjrt_tt.targets.executor import BoundProgram

TRACE = {"enable_trace": True}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _block(x, w):
    return jnp.tanh(x @ w) * 2.0 + jnp.sum(x, axis=-1, keepdims=True)


@pytest.fixture
def counts(monkeypatch):
    """Counts of trace replays and of executor runs."""
    n = {"replays": 0, "executor": 0}
    replay, run = sim.execute_trace, BoundProgram.run

    def counting_replay(*a, **k):
        n["replays"] += 1
        return replay(*a, **k)

    def counting_run(self, *a):
        n["executor"] += 1
        return run(self, *a)
    monkeypatch.setattr(sim, "execute_trace", counting_replay)
    monkeypatch.setattr(BoundProgram, "run", counting_run)
    return n


def test_traced_runs_equal_untraced_and_cpu(tt, cpu, counts):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 64)).astype(np.float32) / 8
    traced = jax.jit(_block, compiler_options=TRACE)
    plain = jax.jit(_block)
    wt = jax.device_put(w, tt)
    for i in range(5):   # run 1 plain, run 2 captures, runs 3-5 replay with new inputs
        x = rng.standard_normal((32, 64)).astype(np.float32) + i
        got = np.asarray(traced(jax.device_put(x, tt), wt))
        assert_close(got, np.asarray(plain(jax.device_put(x, tt), wt)), exact=True, what=f"call {i}")
        assert_close(got, np.asarray(jax.jit(_block)(jax.device_put(x, cpu), jax.device_put(w, cpu))),
                     kind="matmul", what=f"call {i} vs cpu")
    assert counts["replays"] == 4   # the capture's own execution, then calls 3-5


def test_a_replay_skips_the_executor(tt, counts):
    f = jax.jit(lambda x: x * 3.0 + 1.0, compiler_options=TRACE)
    x = jax.device_put(np.ones((32, 32), np.float32), tt)
    f(x).block_until_ready()
    f(x).block_until_ready()   # captured
    before = counts["executor"]
    for _ in range(5):
        out = f(x)
    assert counts["executor"] == before   # five calls, no op dispatched by the executor
    np.testing.assert_array_equal(np.asarray(out), np.full((32, 32), 4.0, np.float32))


def test_outputs_of_earlier_calls_survive_later_replays(tt):
    f = jax.jit(lambda x: x + 1.0, compiler_options=TRACE)
    outs = [f(jax.device_put(np.full((32, 32), i, np.float32), tt)) for i in range(5)]
    for i, o in enumerate(outs):   # each call's output is its own copy, not the trace's buffer
        np.testing.assert_array_equal(np.asarray(o), np.full((32, 32), i + 1, np.float32))


def test_new_input_shapes_get_their_own_trace(tt, cpu):
    f = jax.jit(lambda x: jnp.exp(x) - x, compiler_options=TRACE)
    for shape in [(32, 32), (64, 96), (32, 32), (64, 96), (32, 32), (7, 5)]:
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        assert_close(np.asarray(f(jax.device_put(x, tt))), np.asarray(jnp.exp(x) - x), what=str(shape))


def test_donated_inputs_with_trace(tt):
    f = jax.jit(lambda x: x * 2.0, donate_argnums=0, compiler_options=TRACE)
    for i in range(4):
        x = jax.device_put(np.full((32, 32), i, np.float32), tt)
        y = f(x)
        assert x.is_deleted()
        np.testing.assert_array_equal(np.asarray(y), np.full((32, 32), 2 * i, np.float32))


def test_host_driven_loop_is_refused(tt):
    def loop(x):
        return jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 2.0), (0, x))[1]
    with pytest.raises(Exception, match="cannot run as a Metal trace: its loop at .*driven by the host"):
        jax.jit(loop, compiler_options=TRACE)(jax.device_put(np.ones((4, 4), np.float32), tt))


def test_host_chosen_branch_is_refused(tt):
    def branch(i, x):
        return jax.lax.switch(i, [lambda v: v + 1.0, lambda v: v * 2.0], x)
    with pytest.raises(Exception, match="cannot run as a Metal trace: (its branch at|it reads a device value back to the host at stablehlo.case)"):
        jax.jit(branch, compiler_options=TRACE)(jax.device_put(np.int32(1), tt),
                                                jax.device_put(np.ones((4, 4), np.float32), tt))


def test_bad_option_value_is_refused(tt):
    with pytest.raises(Exception, match="enable_trace='maybe' is not valid"):
        jax.jit(lambda x: x + 1, compiler_options={"enable_trace": "maybe"})(
            jax.device_put(np.ones(4, np.float32), tt))


def test_sim_refuses_what_ttnn_refuses():
    sim.sim_reset()
    plain = sim.open_device(device_id=0)
    with pytest.raises(RuntimeError, match="trace_region_size > 0"):
        sim.begin_trace_capture(plain, cq_id=0)
    sim.close_device(plain)
    d = sim.open_mesh_device(sim.MeshShape(1, 1), trace_region_size=1 << 20)
    a = sim.Tensor(np.ones((32, 32), np.float32), data_type=sim.float32, layout=sim.TILE_LAYOUT, device=d)
    tid = sim.begin_trace_capture(d, cq_id=0)
    with pytest.raises(RuntimeError, match="already active"):
        sim.begin_trace_capture(d, cq_id=0)
    b = sim.add(a, 1.0)
    with pytest.raises(RuntimeError, match="not allowed during trace capture"):
        sim.from_device(b)
    with pytest.raises(RuntimeError, match="was not captured"):
        sim.execute_trace(d, tid, cq_id=0)
    sim.end_trace_capture(d, tid, cq_id=0)
    sim.execute_trace(d, tid, cq_id=0)
    sim.copy(sim.Tensor(np.full((32, 32), 5, np.float32), data_type=sim.float32, layout=sim.TILE_LAYOUT,
                        device=d), a)
    sim.execute_trace(d, tid, cq_id=0)
    assert sim.from_device(b).to_numpy()[0, 0] == 6.0
    sim.release_trace(d, tid)
    with pytest.raises(RuntimeError, match="was not captured"):
        sim.execute_trace(d, tid, cq_id=0)
    with pytest.raises(RuntimeError, match="Command queue 1 does not exist"):
        sim.record_event(sim.open_device(device_id=0), 1)
    sim.sim_reset()


def test_sim_command_queues_and_events():
    """Two queues ordered by events, as ttnn has them: an upload on queue 1, its event waited
    for on queue 0 (the sim runs everything in order, so a recorded event is complete);
    a queue the device was not opened with, a third queue and a waited-for non-event refused."""
    sim.sim_reset()
    with pytest.raises(RuntimeError, match="num_command_queues must be 1 or 2"):
        sim.open_mesh_device(sim.MeshShape(1, 1), num_command_queues=3)
    d = sim.open_mesh_device(sim.MeshShape(1, 1), num_command_queues=2)
    host = sim.Tensor(np.full((32, 32), 2, np.float32), data_type=sim.float32, layout=sim.TILE_LAYOUT)
    dst = sim.Tensor(np.zeros((32, 32), np.float32), data_type=sim.float32, layout=sim.TILE_LAYOUT, device=d)
    sim.copy_host_to_device_tensor(host, dst, cq_id=1)
    written = sim.record_event(d, 1)
    sim.wait_for_event(0, written)
    assert sim.from_device(sim.add(dst, 1.0)).to_numpy()[0, 0] == 3.0
    with pytest.raises(RuntimeError, match="Command queue 2 does not exist"):
        sim.record_event(d, 2)
    with pytest.raises(RuntimeError, match="never recorded"):
        sim.wait_for_event(0, object())
    sim.sim_reset()


def test_the_runtime_opens_the_queues_the_card_gets(tt, tt_client):
    """Every target opens ttnn_facts.NUM_COMMAND_QUEUES (1: the runtime uses no second queue),
    so the sim refuses queue 1 as the card would."""
    from pjrt_tt.ttnn_facts import NUM_COMMAND_QUEUES
    target = tt_client.target
    assert target.mesh.num_command_queues == NUM_COMMAND_QUEUES == 1
    with pytest.raises(RuntimeError, match="Command queue 1 does not exist"):
        target.ttnn.record_event(target.mesh, 1)


@pytest.mark.device
def test_trace_on_the_card_matches_untraced():
    code = textwrap.dedent("""
        import numpy as np, jax, jax.numpy as jnp
        tt = jax.devices("tt")[0]
        assert tt.target == "device", tt.target
        f = lambda x, w: jnp.tanh(x @ w) + x
        w = jax.device_put(np.random.rand(64, 64).astype(np.float32), tt)
        traced, plain = jax.jit(f, compiler_options={"enable_trace": True}), jax.jit(f)
        for i in range(5):
            x = jax.device_put(np.random.rand(32, 64).astype(np.float32) + i, tt)
            np.testing.assert_allclose(np.asarray(traced(x, w)), np.asarray(plain(x, w)), rtol=0, atol=0)
        print("ok")
    """)
    env = {**os.environ, "PJRT_TT_TARGET": "device", "PJRT_TT_CHECK_WITH_MOCK": "0"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                       timeout=1200)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr


def test_trace_reads_const_eval_results_and_recaptures_when_a_weight_changes(tt, cpu, counts):
    """Level 1 prepares a weight once per buffer (const-eval, outside the trace); the trace
    reads the prepared tensor in place, so a new weight buffer means a new capture, never a
    replay of the old weight's values."""
    opts = {**TRACE, "optimization_level": opt_level(1), "experimental_enable_weight_bfp8_conversion": True}
    f = jax.jit(lambda x, w: jnp.tanh(x @ w) * 2.0, compiler_options=opts)
    untraced = jax.jit(lambda x, w: jnp.tanh(x @ w) * 2.0,
                       compiler_options={k: v for k, v in opts.items() if k != "enable_trace"})
    ref = jax.jit(lambda x, w: jnp.tanh(x @ w) * 2.0)
    rng = np.random.default_rng(1)
    for k in range(2):   # a second weight buffer after the first's replays
        w = (rng.standard_normal((64, 64)) / 8).astype(np.float32)
        wt = jax.device_put(w, tt)
        for i in range(4):
            x = rng.standard_normal((32, 64)).astype(np.float32)
            got = np.asarray(f(jax.device_put(x, tt), wt))
            assert_close(got, np.asarray(untraced(jax.device_put(x, tt), wt)), exact=True,
                         what=f"weight {k} call {i} vs untraced")
            # bfp8 weights: 7 mantissa bits per block (docs/numerics.md), bf16 bounds
            assert_close(got, np.asarray(ref(jax.device_put(x, cpu), jax.device_put(w, cpu))),
                         kind="bfloat16", atol=2 ** -2, what=f"weight {k} call {i} vs cpu")
    # weight 0: call 2 captures (and runs the trace), calls 3-4 replay; weight 1: its first call
    # finds other prepared tensors and captures again, its calls 2-4 replay
    assert counts["replays"] == 3 + 4
