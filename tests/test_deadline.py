"""A device that stops answering (issue 13): a device call fails after the documented timeout
(PJRT_TT_EXECUTE_TIMEOUT_S), naming the program and the op it hung in, instead of hanging; the
device then counts as wedged and every later call fails at once saying so; the process lives
and exits cleanly. Simulated by a sim op that blocks forever, in a child process (the wedged
client would fail every later test of this session)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import forward_mock_unchecked

_CHILD = textwrap.dedent("""
    import json, threading, time
    import numpy as np
    import jax, jax.numpy as jnp
    import pjrt_tt.targets.sim as sim
    never = threading.Event()
    def exp_that_never_returns(*args, **kwargs):
        never.wait()
    sim.exp = exp_that_never_returns      # the executor binds ops when a program is loaded
    dev = jax.devices("tt")[0]
    def grows(x):
        return jnp.exp(x) * 2 + 1
    x = jax.device_put(np.ones((4, 4), np.float32), dev)
    ok = np.asarray(jax.jit(lambda y: y * 3)(x)).tolist()   # calls work with the deadline on
    out = {"before": ok[0][0]}
    add = jax.jit(lambda y, k: y + k)      # from several threads at once, too
    sums = {}
    def worker(k):
        sums[k] = [float(np.asarray(add(x, np.float32(k)))[0, 0]) for _ in range(25)]
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    out["threads"] = {str(k): v for k, v in sums.items()}
    start = time.perf_counter()
    try:
        np.asarray(jax.jit(grows)(x))
        out["error"] = None
    except Exception as e:
        out["error"] = str(e)
    out["seconds"] = time.perf_counter() - start
    later = {}
    for name, call in [("transfer", lambda: np.asarray(jax.device_put(np.ones(3, np.float32), dev))),
                       ("program", lambda: np.asarray(jax.jit(lambda y: y - 1)(x)))]:
        start = time.perf_counter()
        try:
            call()
            later[name] = [None, 0]
        except Exception as e:
            later[name] = [str(e), time.perf_counter() - start]
    out["later"] = later
    print("RESULT " + json.dumps(out), flush=True)
""")


def test_a_device_call_that_never_returns_fails_after_the_timeout():
    env = dict(os.environ, PJRT_TT_TARGET="sim", PJRT_TT_SYSTEM="n150", PJRT_TT_EXECUTE_TIMEOUT_S="2")
    p = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120)
    forward_mock_unchecked(p.stderr)
    lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    assert p.returncode == 0 and lines, f"child exited {p.returncode}: {p.stderr[-3000:]}"
    r = json.loads(lines[0][len("RESULT "):])
    assert r["before"] == 3.0
    assert r["threads"] == {str(k): [1.0 + k] * 25 for k in range(4)}
    err = r["error"]
    assert err is not None and err.startswith("DEADLINE_EXCEEDED"), err
    assert "program jit_grows" in err and "within 2 s" in err, err
    assert "ttnn.exp for stablehlo.exponential" in err, err     # the op, with its source line
    assert 2.0 <= r["seconds"] < 30, r["seconds"]
    for name, (message, seconds) in r["later"].items():
        assert message is not None and message.startswith("FAILED_PRECONDITION"), (name, message)
        assert "wedged" in message and "jit_grows" in message, (name, message)
        assert seconds < 1.0, (name, seconds)   # at once, not after another timeout


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_a_bad_timeout_setting_is_refused(value):
    from pjrt_tt.errors import InvalidArgument
    from pjrt_tt.settings import Settings
    with pytest.raises(InvalidArgument, match="execute_timeout_s"):
        Settings.load({"execute_timeout_s": value})


def test_the_timeout_is_an_env_var_and_a_plugin_option(monkeypatch):
    from pjrt_tt.runtime.deadline import DEFAULT_SECONDS
    from pjrt_tt.settings import Settings
    monkeypatch.delenv("PJRT_TT_EXECUTE_TIMEOUT_S", raising=False)
    assert Settings.load({}).execute_timeout_s is None     # the target's default then:
    assert DEFAULT_SECONDS == {"device": 1200.0, "sim": 0.0, "mock": 0.0}
    monkeypatch.setenv("PJRT_TT_EXECUTE_TIMEOUT_S", "7.5")
    assert Settings.load({}).execute_timeout_s == 7.5
    assert Settings.load({"execute_timeout_s": 0}).execute_timeout_s == 0.0   # the option wins
