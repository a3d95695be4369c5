"""torch_xla calling the plugin over and over, and from several threads: no deadlock, no
crash, right results. Each case runs in a fresh process under a timeout, so a deadlock
fails the test instead of hanging the run.

torch_xla's own limits (torch_xla 2.9, measured): lazy tensor work from several Python
threads at once fails inside torch_xla ("Check failed: tensor_data"), on its CPU device
too, so the eager threads here hold a lock around their device work (executions still run
on torch_xla's threads). The "tt" backend serialises graph runs itself (see backend.py).
"""
from __future__ import annotations

import os
import textwrap

import pytest

from conftest import forward_mock_unchecked, run_python

pytest.importorskip("torch_xla", reason="torch_xla is not installed (pip install torch_xla==2.9.0)")

PRELUDE = """
import os, threading
os.environ["PJRT_DEVICE"] = "TT"
import torch, torch_xla
import torch_xla.debug.metrics as met
dev = torch_xla.device()
"""


def run(body: str, timeout: float = 240, **env_vars: str) -> str:
    """Runs `body` after PRELUDE in a fresh Python process; returns its stdout."""
    env = dict(os.environ, PJRT_DEVICE="TT", **env_vars)
    proc = run_python(PRELUDE + textwrap.dedent(body), env=env, timeout=timeout)
    forward_mock_unchecked(proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_thousand_steps_one_compile():
    out = run("""
        x = torch.full((4, 32), 2.0).to(dev)
        for i in range(1000):
            x = x * 0.5 + 1.0          # fixed point 2.0, kept exactly in float32
            torch_xla.sync()
        assert torch.equal(x.cpu(), torch.full((4, 32), 2.0)), x.cpu()
        assert met.metric_data("CompileTime")[0] == 1, met.metric_data("CompileTime")
        print("executions", met.metric_data("ExecuteTime")[0])
    """)
    assert "executions 1000" in out


@pytest.mark.parametrize("mode", ["locked_sync", "compiled"])
def test_python_threads_share_the_device(mode):
    """Four threads compute on the device at once, each checked against the CPU; lazy
    tensor syncs and reads hold a lock (see the module docstring), the executions they
    start run on torch_xla's own threads."""
    run(f"""
        mode = {mode!r}
        lock = threading.Lock()
        lin = torch.nn.Linear(16, 16)
        fn = torch.compile(lambda a: torch.relu(lin(a)) + 1.0, backend="tt")
        results, errors = {{}}, []

        def work(k):
            try:
                a = torch.randn(16, 16, generator=torch.Generator().manual_seed(k))
                with lock:
                    x = a.to(dev)
                for _ in range(10):
                    if mode == "compiled":
                        with torch.no_grad():
                            x, a = fn(a), torch.relu(lin(a)) + 1.0
                        continue
                    with lock:
                        x = torch.relu(x @ x.T * 0.01 + 1.0)
                        torch_xla.sync()
                    a = torch.relu(a @ a.T * 0.01 + 1.0)
                with lock:
                    got = x.cpu()
                results[k] = float((got - a).abs().max() / a.abs().max())
            except Exception as e:  # reported by the main thread
                errors.append(repr(e))

        with torch.no_grad():
            fn(torch.zeros(16, 16))  # compile once up front: dynamo's tracing is not for threads
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads: t.start()
        for t in threads: t.join(60)
        assert not any(t.is_alive() for t in threads), "a thread hung"
        assert not errors, errors
        assert len(results) == 4 and max(results.values()) < 1e-2, results
    """)


@pytest.mark.parametrize("stablehlo", [False, True], ids=["hlo_proto", "stablehlo"])
def test_both_program_formats(stablehlo):
    """torch_xla sends an HloModuleProto ("hlo"), or StableHLO ("mlir") with
    XLA_STABLEHLO_COMPILE=1; both run, eager and compiled, and match the CPU."""
    out = run("""
        from pjrt_tt.runtime.client import CLIENTS
        torch.manual_seed(0)
        a, b = torch.randn(8, 16), torch.randn(16, 4)
        got = torch.nn.functional.gelu(a.to(dev) @ b.to(dev)).cpu()
        assert torch.allclose(got, torch.nn.functional.gelu(a @ b), rtol=1e-2, atol=1e-3)
        m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
        with torch.no_grad():
            got, want = torch.compile(m, backend="tt")(a), m(a)
        assert torch.allclose(got, want, rtol=1e-2, atol=1e-3), (got - want).abs().max()
        print("formats", sorted({c.format for cl in CLIENTS for c in cl.compiler._cache.values()}))
    """, XLA_STABLEHLO_COMPILE="1" if stablehlo else "0")
    assert f"formats {['mlir'] if stablehlo else ['hlo']}" in out, out
