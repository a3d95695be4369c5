"""Test setup: the sim target for results, real ttnn (mock) validating every program.

Set before jax initialises its backends, so every test process sees the same plugin
configuration. Under CI the mock check is mandatory; elsewhere it is skipped (with a
note) only when the RISC-V binutils it needs are missing.
"""
from __future__ import annotations

import os
import pwd
import shutil
import sys

os.environ.setdefault("HOME", pwd.getpwuid(os.getuid()).pw_dir)
os.environ.setdefault("PJRT_TT_TARGET", "sim")
MOCK_AVAILABLE = shutil.which("riscv64-unknown-elf-ld") is not None
if os.environ.get("CI") == "true" and not MOCK_AVAILABLE:
    sys.exit("CI needs binutils-riscv64-unknown-elf for the mock target (make test installs it)")
os.environ.setdefault("PJRT_TT_CHECK_WITH_MOCK", "1" if MOCK_AVAILABLE else "0")
# Every program the suite lowers is logged for the op coverage report (python -m pjrt_tt.coverage).
COVERAGE_LOG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".op-coverage.jsonl")
os.environ.setdefault("PJRT_TT_COVERAGE_LOG", COVERAGE_LOG)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pjrt_tt.targets import card_present  # noqa: E402


def pytest_sessionstart(session):
    if os.path.exists(COVERAGE_LOG) and not hasattr(session.config, "workerinput"):
        os.remove(COVERAGE_LOG)


def pytest_report_header(config):
    return (f"pjrt-tt: target={os.environ['PJRT_TT_TARGET']} "
            f"system={os.environ.get('PJRT_TT_SYSTEM', 'n150')} "
            f"mock check={'on' if os.environ['PJRT_TT_CHECK_WITH_MOCK'] == '1' else 'OFF'}")


def pytest_terminal_summary(terminalreporter):
    """Programs of this process the mock check could not run (targets/conformance.py)."""
    from pjrt_tt.targets.conformance import UNCHECKED
    if UNCHECKED:
        terminalreporter.write_sep("-", f"pjrt-tt: {len(UNCHECKED)} program(s) not checked on mock")
        for skipped in UNCHECKED:
            terminalreporter.write_line(str(skipped))


def pytest_collection_modifyitems(config, items):
    if card_present():
        return
    skip = pytest.mark.skip(reason="needs a Tenstorrent card (none found in /dev/tenstorrent)")
    for item in items:
        if "device" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tt():
    return jax.devices("tt")[0]


@pytest.fixture(scope="session")
def cpu():
    return jax.devices("cpu")[0]


@pytest.fixture
def dev():
    """A freshly opened device of the sim module itself (for tests that call the sim's ttnn API)."""
    from pjrt_tt.targets import sim
    sim.sim_reset()
    d = sim.open_device(device_id=0)
    yield d
    sim.close_device(d)
    sim.sim_reset()


def pcc(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return 1.0 if np.allclose(a, b, rtol=1e-2, atol=1e-2) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def assert_close(got, want, *, f32_pcc_only: bool = False):
    """The project's thresholds: exact for integers, bools and shapes; bfloat16 PCC >= 0.99;
    float32 allclose(rtol=1e-2, atol=1e-3) or, where the chip's float32 math is
    approximate (f32_pcc_only), PCC >= 0.999."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"dtype {got.dtype} != {want.dtype}"
    if want.dtype.kind in "iub":
        np.testing.assert_array_equal(got, want)
    elif want.dtype.name == "bfloat16":
        assert pcc(got, want) >= 0.99, f"PCC {pcc(got, want):.5f} < 0.99"
    elif f32_pcc_only:
        assert pcc(got, want) >= 0.999, f"PCC {pcc(got, want):.6f} < 0.999"
    else:
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-2, atol=1e-3)


def run_both(f, *args, tt_device, cpu_device, **jit_kwargs):
    """Run jit(f) on TT and on XLA:CPU with the same host inputs; returns (tt, cpu) leaves."""
    outs = []
    for dev in (tt_device, cpu_device):
        placed = jax.tree.map(lambda a: jax.device_put(a, dev), args)
        out = jax.jit(f, **jit_kwargs)(*placed)
        outs.append([np.asarray(x) for x in jax.tree.leaves(out)])
    return outs
