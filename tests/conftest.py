"""Test setup: the sim target for results, real ttnn (mock) validating every program.

Set before jax initialises its backends, so every test process sees the same plugin
configuration. Under CI the mock check is mandatory (a run with it off, or without the
RISC-V binutils it needs, stops here); elsewhere it is skipped (with a note) only when
those binutils are missing.

Also here: the suite's one comparison helper (`assert_close`) and the report of programs
the mock could not check (`MOCK_UNCHECKED_MARKER`, `forward_mock_unchecked`).
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import textwrap

os.environ.setdefault("HOME", pwd.getpwuid(os.getuid()).pw_dir)
os.environ.setdefault("PJRT_TT_TARGET", "sim")
# make test runs pytest-xdist workers side by side (one per core): each worker's spinning
# thread pools (OpenMP: torch's intra-op threads) get its share of the cores, so they do not
# spin for each other's. Set before torch is imported anywhere in this process.
_XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _XDIST_WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _XDIST_WORKERS)))
MOCK_AVAILABLE = shutil.which("riscv64-unknown-elf-ld") is not None
if os.environ.get("CI") == "true":
    if not MOCK_AVAILABLE:
        sys.exit("CI needs binutils-riscv64-unknown-elf for the mock target (make test installs it)")
    if os.environ.get("PJRT_TT_CHECK_WITH_MOCK", "1") != "1":
        sys.exit(f"CI runs every program through the mock check: PJRT_TT_CHECK_WITH_MOCK="
                 f"{os.environ['PJRT_TT_CHECK_WITH_MOCK']!r} is not allowed under CI=true (unset it)")
    os.environ["PJRT_TT_CHECK_WITH_MOCK"] = "1"
os.environ.setdefault("PJRT_TT_CHECK_WITH_MOCK", "1" if MOCK_AVAILABLE else "0")
# Every program the suite lowers is logged for the op coverage report (python -m tools.op_coverage)
# by the compiler's hook. tools/ is not part of the package: the repository root goes on sys.path
# here and on PYTHONPATH for the Python subprocesses tests start, which inherit the hook.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != REPO])
# make test's second environment logs to its own file, so its run does not erase the first's.
COVERAGE_LOG = os.environ.setdefault("OP_COVERAGE_LOG", os.path.join(REPO, ".op-coverage.jsonl"))
os.environ.setdefault("PJRT_TT_COMPILE_HOOK", "tools.op_coverage:log_program")

import jax  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pjrt_tt.targets import card_present  # noqa: E402


def pytest_sessionstart(session):
    if os.path.exists(COVERAGE_LOG) and not hasattr(session.config, "workerinput"):
        os.remove(COVERAGE_LOG)


def pytest_report_header(config):
    return (f"pjrt-tt: jax={jax.__version__} numpy={np.__version__} "
            f"target={os.environ['PJRT_TT_TARGET']} "
            f"system={os.environ.get('PJRT_TT_SYSTEM', 'n150')} "
            f"mock check={'on' if os.environ['PJRT_TT_CHECK_WITH_MOCK'] == '1' else 'OFF'}")


# The longest files first: make test hands whole files to two xdist workers in collection
# order, so a long file collected last (the zoo, ~40% of the default run) would run alone at
# the end while the other worker idles.
LONGEST_FIRST = ("test_zoo.py", "test_fuzz.py", "test_program_cache.py", "test_deep_programs.py",
                 "test_spmd.py", "test_models.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: files keep their order
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
def tt_client(tt):
    """pjrt-tt's client behind jax's `tt` devices: the one that compiles a jit on them (a
    torch_xla client may live in the same process, made before or after jax's)."""
    from pjrt_tt.runtime.client import CLIENTS
    before = {id(c): c.compiler.compilations for c in CLIENTS}
    x = jax.device_put(np.zeros((3, 29), np.float32), tt)   # a shape no test uses
    jax.jit(lambda a: a * 7.0 - 0.5)(x).block_until_ready()
    (client,) = [c for c in CLIENTS if c.compiler.compilations != before.get(id(c), 0)]
    return client


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


# ---------------------------------------------------------------------------------------------
# comparing results
# ---------------------------------------------------------------------------------------------

def pcc(a, b) -> float:
    """Pearson correlation; blind to scale and offset, so never a check on its own."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return 1.0 if np.allclose(a, b, rtol=1e-2, atol=1e-2) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


# The bounds a float result must meet, by what computed it (docs/numerics.md). Every float
# comparison bounds the error elementwise, |got - want| <= atol + rtol * |want|, where a
# fraction atol_of_max of max|want| is the absolute floor (a reduction's error scales with
# the magnitudes it summed, not with an output element that cancelled to near zero); "rel"
# bounds ||got - want|| / ||want||, which a result scaled by 1 + e or shifted by c * rms
# exceeds once e or c does; "pcc" catches a wrong pattern the others average away.
TOLERANCES = {
    # Elementwise float32 (the sim computes exactly and rounds once): the project's float32
    # standard as it was; its elementwise rtol already fails a 2% scale or a 1e-3 offset.
    "float32": dict(pcc=None, rtol=1e-2, atol=1e-3, atol_of_max=0.0, rel=None),
    # Float32 through the matrix unit (matmul, conv, and every result downstream of one):
    # operands arrive as TF32, truncated to 10 mantissa bits (each <= 2**-10 relative, so a
    # product <= 2**-9), HiFi3 (docs/numerics.md: 1.27e-3 measured for one 256-deep matmul).
    # 2**-7 allows four such matmuls in a chain at the worst-case truncation.
    "matmul": dict(pcc=0.999, rtol=2 ** -7, atol=0.0, atol_of_max=2 ** -7, rel=2 ** -7),
    # 8 significant bits: one rounding is <= 2**-8 relative, and the two sides round
    # independently; 2**-5 (four bf16 ulps) also covers bf16 accumulation in a matmul
    # (8.4e-3 measured at HiFi2, 2.7e-2 at LoFi, docs/numerics.md).
    "bfloat16": dict(pcc=0.99, rtol=2 ** -5, atol=0.0, atol_of_max=2 ** -5, rel=2 ** -5),
}


def _bits(a: np.ndarray) -> np.ndarray:
    """The bit patterns of a float array, every NaN made one pattern (XLA and numpy do not
    agree on NaN payloads, and no claim here is about them)."""
    a = np.array(a)
    nan = np.isnan(a.astype(np.float32))
    a[nan] = np.nan
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def _where(index, shape) -> str:
    return str(tuple(int(i) for i in np.unravel_index(index, shape))) if shape else "()"


def assert_close(got, want, *, exact: bool = False, kind: str | None = None, pcc: float | None = None,
                 rtol: float | None = None, atol: float | None = None, rel: float | None = None,
                 f32_pcc_only: bool = False, what: str = "") -> None:
    """The suite's one comparison. Shapes and dtypes always equal; integers and bools equal;
    `exact=True`: float bit patterns equal too (so -0.0 vs 0.0 and a 1-ulp difference fail).
    Floats otherwise meet every bound of TOLERANCES[kind]; kind defaults to the result's
    dtype ("bfloat16" or "float32"); say kind="matmul" for float32 computed through the
    matrix unit, kind="bfloat16" for float32 results of bf16 math. `pcc` / `rtol` / `atol` /
    `rel` override one bound (say why where you do). The failure names PCC, the max abs and
    max rel error and where. (`f32_pcc_only=True` is the old spelling of kind="matmul",
    kept only while tests written in parallel still use it.)"""
    got, want = np.asarray(got), np.asarray(want)
    label = f"{what}: " if what else ""
    assert got.shape == want.shape, f"{label}shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{label}dtype {got.dtype} != {want.dtype}"
    if want.dtype.kind in "iub":
        np.testing.assert_array_equal(got, want, err_msg=label)
        return
    if exact:
        g, w = _bits(got), _bits(want)
        if not np.array_equal(g, w):
            i = int(np.flatnonzero(g != w)[0])
            raise AssertionError(f"{label}bit patterns differ at {int(np.sum(g != w))} of {g.size} elements; first "
                                 f"at {_where(i, got.shape)}: got {got.flat[i]!r} (0x{int(g.flat[i]):x}), "
                                 f"want {want.flat[i]!r} (0x{int(w.flat[i]):x})")
        return
    if want.dtype == ml_dtypes.bfloat16:   # whatever computed it, the result has bf16's 8 bits
        kind = "bfloat16"
    elif kind is None:
        kind = "matmul" if f32_pcc_only else "float32"
    tol = dict(TOLERANCES[kind])
    for name, value in (("pcc", pcc), ("rtol", rtol), ("atol", atol), ("rel", rel)):
        if value is not None:
            tol[name] = value
    g, w = got.astype(np.float64), want.astype(np.float64)
    same_nan = np.isnan(g) == np.isnan(w)
    assert same_nan.all(), f"{label}NaN at {_where(int(np.flatnonzero(~same_nan)[0]), got.shape)} on one side only"
    same_inf = np.where(np.isinf(w), g == w, ~np.isinf(g))
    assert same_inf.all(), f"{label}inf mismatch at {_where(int(np.flatnonzero(~same_inf)[0]), got.shape)}"
    finite = np.isfinite(w)
    g, w = g[finite], w[finite]
    if w.size == 0:
        return
    err = np.abs(g - w)
    scale = float(np.max(np.abs(w)))
    bound = tol["atol"] + tol["atol_of_max"] * scale + tol["rtol"] * np.abs(w)
    norm = float(np.linalg.norm(w))
    rel_err = float(np.linalg.norm(g - w)) / norm if norm else float(np.linalg.norm(g - w))
    corr = _pearson(g, w)
    worst = int(np.argmax(err - bound))
    at = _where(int(np.flatnonzero(finite.ravel())[worst]), got.shape)
    summary = (f"{label}{kind}: PCC {corr:.6f}, ||err||/||want|| {rel_err:.3e}, max abs err {err.max():.3e}, "
               f"max rel err {np.max(err / np.maximum(np.abs(w), 1e-30)):.3e}; worst vs bound at {at}: "
               f"got {g[worst]!r}, want {w[worst]!r} (bound {bound[worst]:.3e}); tolerances {tol}")
    failed = []
    if tol["pcc"] is not None and corr < tol["pcc"]:
        failed.append(f"PCC < {tol['pcc']}")
    if tol["rel"] is not None and rel_err > tol["rel"]:
        failed.append(f"||err||/||want|| > {tol['rel']:.3e}")
    if np.any(err > bound):
        failed.append(f"{int(np.sum(err > bound))} of {err.size} elements outside "
                      f"atol {tol['atol']:.1e} + {tol['atol_of_max']:.1e}*max|want| + rtol {tol['rtol']:.1e}*|want|")
    assert not failed, f"{'; '.join(failed)}\n  {summary}"


_pearson = pcc   # assert_close's `pcc` argument shadows the function


def opt_level(n: int):
    """optimization_level n as `jax.jit(compiler_options=...)` takes it in the installed jax:
    jax 0.12 parses that key into its own `jax.CompilerEffortLevel` (a plain 1 is refused by
    jax itself, before the plugin), which pjrt-tt maps O0/O1/O2 -> 0/1/2; 0.7.1 passes the int."""
    effort = getattr(jax, "CompilerEffortLevel", None)
    return n if effort is None else effort[f"O{n}"]


def enable_x64():
    """JAX's 64-bit mode for a `with` block: `jax.enable_x64(True)` in jax 0.12,
    `jax.experimental.enable_x64()` in 0.7.1 (gone from 0.12)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as x64_0_7
    return x64_0_7()


class NewPrograms:
    """The ttnn programs compiled inside a `with NewPrograms() as new:` block, on any client
    (jax's and torch_xla's clients live side by side in one test process): `new.programs`."""

    @staticmethod
    def _cached() -> dict:
        from pjrt_tt.runtime.client import CLIENTS
        return {(id(c), k): e for c in CLIENTS for k, e in c.compiler._cache.items()}

    def __enter__(self):
        self._before = set(self._cached())
        return self

    def __exit__(self, *exc):
        self.programs = [e.program for k, e in self._cached().items() if k not in self._before]

    def one(self):
        assert len(self.programs) == 1, \
            f"expected exactly one new program, got {len(self.programs)} (use unique shapes)"
        return self.programs[0]

    def biggest(self):
        assert self.programs, "no program was compiled"
        return max(self.programs, key=lambda p: len(p.ops))


def run_both(f, *args, tt_device, cpu_device, **jit_kwargs):
    """Run jit(f) on TT and on XLA:CPU with the same host inputs; returns (tt, cpu) leaves."""
    outs = []
    for dev in (tt_device, cpu_device):
        placed = jax.tree.map(lambda a: jax.device_put(a, dev), args)
        out = jax.jit(f, **jit_kwargs)(*placed)
        outs.append([np.asarray(x) for x in jax.tree.leaves(out)])
    return outs


# ---------------------------------------------------------------------------------------------
# programs the mock could not check: counted, reported at the end, and a failure unless allowed
# ---------------------------------------------------------------------------------------------

# The line the plugin prints (to sys.stderr) when the mock check cannot run a program
# (pjrt_tt/targets/conformance.py, which also records it in conformance.UNCHECKED).
MOCK_UNCHECKED_MARKER = "pjrt-tt: mock check skipped"

# Tests whose programs the mock may leave unchecked (pytest node id suffix: why). Keep it
# short: the compiler chooses a submesh of the system whenever the program allows
# (spmd/prepare.py), so a test needing an entry here says why no submesh fits.
MOCK_UNCHECKED_ALLOWED = {
    # the test of the record itself: a 1x2 program checked against the one-chip n150 mock
    "test_conformance.py::test_a_mesh_that_is_not_a_submesh_is_recorded": "asks for the record",
    # a process of a multi-process run: ttnn opens only a multi-host mesh there; the test
    # shows the same programs from one process pass the check (conformance.NotOneHost)
    "test_multiprocess.py::test_two_processes_run_the_programs_one_process_checked_on_mock":
        "programs equal to the one-process run's, which the mock checked",
    "test_multiprocess.py::test_torch_xla_megatron_block_over_two_processes":
        "programs equal to the one-process run's, which the mock checked",
}

_UNCHECKED: list[tuple[str, str, bool]] = []   # (test node id, the plugin's line, allowed)
_UNCAPTURED: list[str] = []                    # marker lines seen with pytest's capture off (-s)


def forward_mock_unchecked(stderr: str) -> None:
    """Tests that run programs in a child process pass the child's stderr here, so the
    programs the mock could not check there count against the test that ran them."""
    for line in stderr.splitlines():
        if MOCK_UNCHECKED_MARKER in line:
            print(line.strip(), file=sys.stderr)


# What a fresh Python process for a test imports before the fork (modules only: no runtime,
# thread or device exists before it): torch and torch_xla cost ~4 s of every child started
# with `python -c`, transformers the zoo's (tests/zoo.py). One forkserver per test process
# serves both, so this one list is the zoo's too. Modules missing here (the jax 0.7.1
# environment has no torch) are skipped by the forkserver.
def fork_preload() -> list[str]:
    import zoo
    return ["torch", "torch_xla", "torch_xla._dynamo.dynamo_bridge", "transformers", "transformers.generation.utils",
            "transformers.modeling_utils", *zoo.model_modules(), "pjrt_tt.runtime.bridge", "pjrt_tt.compiler",
            "pjrt_tt.torch.backend", "zoo"]


def fork_context():
    import multiprocessing
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(fork_preload())
    return ctx


def run_python(code: str, *, env: dict, timeout: float, argv: tuple = ()) -> subprocess.CompletedProcess:
    """`python -c code argv...` with `env`, as subprocess.run(capture_output=True, text=True)
    returns it (TimeoutExpired past `timeout`, the child killed), but forked from the
    forkserver that imported fork_preload(): a fresh process without the imports' seconds.
    The script runs as __main__, its atexit functions at its end."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        removed = [k for k in os.environ if k not in env]
        proc = fork_context().Process(target=_script_main, args=(code, dict(env), removed, list(argv), out, err))
        proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            raise subprocess.TimeoutExpired(["python", "-c", "..."], timeout, _read(out).encode(), _read(err).encode())
        return subprocess.CompletedProcess(["python", "-c", "...", *argv], proc.exitcode, _read(out), _read(err))


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _script_main(code: str, env: dict, removed: list, argv: list, out: str, err: str) -> None:
    import atexit
    import io
    import traceback
    for k in removed:
        os.environ.pop(k, None)
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), line_buffering=True)
    sys.argv = ["-c", *argv]
    status = 0
    try:
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:   # noqa: BLE001 -- as `python -c` reports it
        traceback.print_exc()
        status = 1
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def torch_script(body: str) -> str:
    """Runs `body` in a child Python with torch_xla on the TT device (`dev`; skipped when
    torch_xla is not installed, as in the jax 0.7.1 environment); returns its stdout."""
    pytest.importorskip("torch_xla", reason="torch_xla is not installed (pip install torch_xla==2.9.0)")
    code = "import torch, torch_xla\ndev = torch_xla.device()\n" + textwrap.dedent(body)
    proc = run_python(code, env=dict(os.environ, PJRT_DEVICE="TT"), timeout=600)
    forward_mock_unchecked(proc.stderr)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


class _StderrTee:
    """With capture off (-s) pytest has no captured stderr to read: watch sys.stderr itself."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        _UNCAPTURED.extend(line for line in text.splitlines() if MOCK_UNCHECKED_MARKER in line)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def pytest_configure(config):
    if config.getoption("capture", "fd") == "no":
        sys.stderr = _StderrTee(sys.stderr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    section = f"Captured stderr {call.when}"
    text = "\n".join(content for name, content in report.sections if name == section)
    lines = [line.strip() for line in text.splitlines() if MOCK_UNCHECKED_MARKER in line] + _UNCAPTURED
    _UNCAPTURED.clear()
    if not lines:
        return
    allowed = any(item.nodeid.endswith(key) for key in MOCK_UNCHECKED_ALLOWED)
    # on the report, which pytest-xdist carries to the controller (pytest_runtest_logreport)
    report.mock_unchecked = [(item.nodeid, line, allowed) for line in lines]
    if not allowed and report.passed:
        report.outcome = "failed"
        report.longrepr = ("the mock could not check a program of this test (every program the suite "
                           "lowers must run on real ttnn, or the test be listed in conftest's "
                           "MOCK_UNCHECKED_ALLOWED with why):\n  " + "\n  ".join(lines))


def pytest_runtest_logreport(report):
    _UNCHECKED.extend(tuple(entry) for entry in getattr(report, "mock_unchecked", ()))


def pytest_terminal_summary(terminalreporter):
    if not _UNCHECKED:
        return
    allowed = sum(1 for *_, ok in _UNCHECKED if ok)
    terminalreporter.section(f"programs the mock could not check: {len(_UNCHECKED)} "
                             f"({allowed} allowed in conftest.MOCK_UNCHECKED_ALLOWED)")
    for nodeid, line, ok in _UNCHECKED:
        reason = line.split(MOCK_UNCHECKED_MARKER, 1)[1].strip()
        terminalreporter.write_line(f"{'allowed' if ok else 'FAILED '} {nodeid}: {reason}")
