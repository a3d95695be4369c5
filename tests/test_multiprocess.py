"""Several processes sharing one simulated system (issue 14): `mpirun -n 2` runs
tests/multiprocess_cases.py, each process driving 4 chips of a t3k after
`jax.distributed.initialize`, the collectives crossing processes through MPI; each process
checks its shards against XLA:CPU. The same cases from one process (8 local chips) run
through the mock check, and the ttnn programs both runs compile are compared: equal, so
real ttnn has validated what the two processes run (a process of a multi-process run
cannot open the single-host mock: conformance.NotOneHost, counted in the report).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import forward_mock_unchecked
from multiprocess_cases import CASES

HERE = Path(__file__).parent
MPIRUN = Path(sys.executable).parent / "mpirun"   # the openmpi package's launcher (requirements.lock)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = dict(os.environ, PJRT_TT_SYSTEM="t3k", PJRT_TT_TARGET="sim", JAX_PLATFORMS="tt,cpu",
               COORDINATOR_PORT=str(_free_port()), **extra)
    env.pop("PJRT_TT_DUMP", None)
    env.pop("XLA_FLAGS", None)   # one CPU device per process is the reference
    return env


def mpirun(processes: int, argv: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python argv...` in `processes` processes of one MPI job; a hang fails the test."""
    # OpenMPI refuses root unless told twice; tcp + self: no shared-memory probing (1 s less)
    env = dict(env, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = [str(MPIRUN), "-n", str(processes), "--bind-to", "none", "--mca", "btl", "self,tcp", sys.executable, *argv]
    try:
        return subprocess.run(cmd, env=env, cwd=HERE, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"no answer from {processes} processes within {timeout} s\n{(e.stderr or '')[-3000:]}")


def launch(processes: int, dump: Path) -> subprocess.CompletedProcess:
    return mpirun(processes, [str(HERE / "multiprocess_cases.py")], _env(DUMP_BASE=str(dump)))


def verdicts(proc: subprocess.CompletedProcess) -> dict[tuple[int, str], str]:
    """(process, case) -> 'OK' or the failure, from the processes' CASE lines."""
    out = {}
    for line in proc.stdout.splitlines():
        if "] CASE " in line:
            who, rest = line.split("] CASE ", 1)
            name, _, verdict = rest.partition(" ")
            out[(int(who.rsplit(" ", 1)[1]), name)] = verdict
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The cases from one process (mock-checked) and from two, with their ttnn programs."""
    base = tmp_path_factory.mktemp("multiprocess")
    return {n: (launch(n, base / str(n)), base / str(n)) for n in (1, 2)}


@pytest.mark.parametrize("name", list(CASES))
def test_case_matches_cpu_in_every_process(runs, name):
    for n, (proc, _) in runs.items():
        got = verdicts(proc)
        for p in range(n):
            assert got.get((p, name)) == "OK", (f"{n} processes, process {p}: {got.get((p, name))}\n"
                                                f"{proc.stderr[-4000:]}")


def test_processes_exit_cleanly(runs):
    for n, (proc, _) in runs.items():
        assert proc.returncode == 0, f"{n} processes: exit {proc.returncode}\n{proc.stderr[-4000:]}"


def test_two_processes_run_the_programs_one_process_checked_on_mock(runs):
    """Every process of the two compiles the very ttnn programs the one process compiled,
    which the mock check validated there; the two-process run's own mock check reports
    each program as unchecked (NotOneHost), counted in the suite's report."""
    (one, one_dump), (two, two_dump) = runs[1], runs[2]
    assert "mock check skipped" not in one.stderr, one.stderr[-3000:]
    programs = sorted(p.name for p in (one_dump / "process0").glob("*.ttnn.txt"))
    assert len(programs) == len(CASES) - 1, programs   # (topology compiles nothing)
    for p in (0, 1):
        assert sorted(q.name for q in (two_dump / f"process{p}").glob("*.ttnn.txt")) == programs
        for name in programs:
            assert (two_dump / f"process{p}" / name).read_text() == (one_dump / "process0" / name).read_text(), name
    forward_mock_unchecked(two.stderr)


T3K_TWO_HOSTS = """
mesh_descriptors {
  name: "M0"
  arch: WORMHOLE_B0
  device_topology { dims: [ %s ] }
  host_topology   { dims: [ 2, 1 ] }
  channels { count: 2 policy: RELAXED }
}
top_level_instance { mesh { mesh_descriptor: "M0" mesh_id: 0 } }
"""


def tt_run(tmp_path: Path, host_ranks=(0, 1), device_topology="2, 4", timeout: float = 600):
    """multiprocess_cases.py under ttnn's own launcher (legacy mode: rank bindings and a mesh
    graph descriptor of a t3k split over 2 hosts, rows 0 and 1), on the sim."""
    mgd = tmp_path / "t3k_two_hosts.textproto"
    mgd.write_text(T3K_TWO_HOSTS % device_topology)
    bindings = tmp_path / "rank_bindings.yaml"
    bindings.write_text("rank_bindings:\n" + "".join(
        f"  - rank: {r}\n    mesh_id: 0\n    mesh_host_rank: {h}\n" for r, h in enumerate(host_ranks))
        + f"mesh_graph_desc_path: \"{mgd}\"\n")
    env = dict(_env(), PATH=f"{MPIRUN.parent}{os.pathsep}{os.environ.get('PATH', '')}",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = [str(MPIRUN.parent / "tt-run"), "--rank-binding", str(bindings),
           "--mpi-args", "--bind-to none --mca btl self,tcp", sys.executable, str(HERE / "multiprocess_cases.py")]
    try:   # (tt-run writes generated/ under its working directory)
        return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"no answer from tt-run within {timeout} s\n{(e.stderr or '')[-3000:]}")


def test_tt_run_launches_the_processes(tmp_path):
    """`tt-run --rank-binding ... python script.py` (ttnn's MPI launcher, as on a multi-host
    system) starts the same run as mpirun: every case equals XLA:CPU in both processes."""
    proc = tt_run(tmp_path)
    got = verdicts(proc)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert got == {(p, name): "OK" for p in (0, 1) for name in CASES}, proc.stderr[-4000:]


@pytest.mark.parametrize("host_ranks,topology,message", [
    ((1, 0), "2, 4", "bind process 0 to mesh_host_rank 1"),
    ((0, 1), "1, 8", "describes a 1x8 mesh over 2 host(s)")], ids=["swapped host ranks", "other system"])
def test_a_tt_run_binding_pjrt_tt_cannot_follow_is_refused(tmp_path, host_ranks, topology, message):
    """Rank bindings or a mesh graph descriptor that disagree with how pjrt-tt splits the
    system: a clear error naming both in every process, never a run on other chips."""
    proc = tt_run(tmp_path, host_ranks, topology, timeout=300)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-4000:]


def test_processes_started_one_by_one_are_refused_with_a_reason(tmp_path):
    """jax.distributed.initialize in two processes started by hand: the sim's chips exchange
    data through MPI, so the plugin refuses, naming how to start them; nothing hangs."""
    script = textwrap.dedent("""
        import os, sys, jax
        jax.distributed.initialize(coordinator_address="127.0.0.1:" + os.environ["COORDINATOR_PORT"],
                                   num_processes=2, process_id=int(sys.argv[1]))
        try:
            jax.devices("tt")
        except Exception as e:
            print("REFUSED", e)
    """)
    env = _env()
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for out, err in outs:
        assert "REFUSED" in out and "mpirun -n 2" in out, (out, err[-2000:])


PEER_DIES = """
import os, sys, numpy as np, jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
rank, size = int(os.environ["OMPI_COMM_WORLD_RANK"]), int(os.environ["OMPI_COMM_WORLD_SIZE"])
jax.distributed.initialize(coordinator_address="127.0.0.1:" + os.environ["COORDINATOR_PORT"],
                           num_processes=size, process_id=rank)
mesh = Mesh(np.array(jax.devices("tt")).reshape(2, 4), ("data", "model"))
x = np.ones((8, 8), np.float32)
g = jax.make_array_from_callback(x.shape, NamedSharding(mesh, P("data")), lambda i: x[i])
f = jax.jit(lambda a: a.sum(0))
print(rank, "first", float(np.asarray(f(g).addressable_shards[0].data)[0]), flush=True)
if rank == 1:
    if sys.argv[1] == "raise":
        raise RuntimeError("process 1 fails in user code")
    os.kill(os.getpid(), 9)
print(rank, "second", float(np.asarray(f(g * 2).addressable_shards[0].data)[0]), flush=True)
"""


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_process_that_dies_ends_the_others(how):
    """Process 1 dies after a first collective program (an uncaught exception, or SIGKILL)
    while process 0 runs a second one that needs its chips: the job ends within seconds,
    naming the dead process, instead of process 0 waiting forever."""
    proc = mpirun(2, ["-c", PEER_DIES, how], _env(), timeout=120)
    assert proc.returncode != 0
    assert "0 first 8.0" in proc.stdout and "1 first 8.0" in proc.stdout, proc.stdout
    assert "second" not in proc.stdout, proc.stdout
    said = {"raise": "pjrt-tt: process 1 ends the MPI job after an uncaught RuntimeError",
            "kill": "process rank 1"}[how]
    assert said in proc.stderr, proc.stderr[-3000:]


def test_how_processes_share_a_system():
    from pjrt_tt.errors import InvalidArgument
    from pjrt_tt.systems import Processes
    two = Processes.from_options({"num_nodes": 2, "node_id": 1})
    assert (two.count, two.index) == (2, 1) and Processes.from_options({}) == Processes(1, 0)
    assert list(two.chips_of(1, 8)) == [4, 5, 6, 7] and [two.owner(c, 8) for c in range(8)] == [0] * 4 + [1] * 4
    with pytest.raises(InvalidArgument, match="3 processes cannot share a system of 8 chips evenly"):
        Processes(3, 0).chips_per_process(8)
    with pytest.raises(InvalidArgument, match="node_id 2 is not one of num_nodes 2"):
        Processes.from_options({"num_nodes": 2, "node_id": 2})


def test_process_0_ends_after_the_others_on_its_host():
    """At exit process 0 (torch_xla's coordinator) waits for the other processes on its host
    to end, within a bound; the others, and processes on other hosts, are not waited for."""
    import time
    from pjrt_tt.runtime.processes import outlive_local_peers
    from pjrt_tt.systems import Processes
    here = socket.gethostname()
    peer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    try:
        facts = {1: {"host": here, "pid": peer.pid}}
        start = time.monotonic()
        outlive_local_peers(Processes(2, 1), facts)                  # not process 0: no wait
        outlive_local_peers(Processes(2, 0), {1: {"host": "elsewhere", "pid": peer.pid}})
        assert time.monotonic() - start < 0.5
        outlive_local_peers(Processes(2, 0), facts, timeout_s=0.3)   # bounded
        assert 0.3 <= time.monotonic() - start < 1.2 and peer.poll() is None
        outlive_local_peers(Processes(2, 0), facts)                  # until it ended (a zombie counts)
        assert time.monotonic() - start >= 1.4
    finally:
        peer.kill()
        peer.wait()


def test_processes_agree_on_the_system_through_the_store():
    """Each process publishes what it opened; one that opened another system, or never
    published, is an error naming it (the framework's store is faked here)."""
    import json

    from pjrt_tt.errors import InvalidArgument, Unavailable
    from pjrt_tt.runtime.processes import agree
    from pjrt_tt.systems import Processes
    facts = {"system": "t3k", "target": "sim", "count": 2}
    store = {}

    def get(key, timeout_ms):
        if key not in store:
            raise RuntimeError(f"DEADLINE_EXCEEDED: {key}")
        return store[key]

    def put(key, value):
        store[key] = value
    with pytest.raises(Unavailable, match="process 1 of 2 did not publish"):
        agree(Processes(2, 0), (get, put), facts)
    assert json.loads(store["pjrt_tt/process/0"])["system"] == "t3k"
    store["pjrt_tt/process/1"] = store["pjrt_tt/process/0"]
    agree(Processes(2, 0), (get, put), facts)
    store["pjrt_tt/process/1"] = json.dumps(dict(json.loads(store["pjrt_tt/process/0"]), system="n300"))
    with pytest.raises(InvalidArgument, match="system: 't3k' here, 'n300' in process 1"):
        agree(Processes(2, 0), (get, put), facts)
    with pytest.raises(InvalidArgument, match="no key-value store"):
        agree(Processes(2, 0), None, facts)


def test_torch_xla_megatron_block_over_two_processes(tmp_path):
    """torch_xla with PJRT_DEVICE=TT and xr.use_spmd() in 2 processes under mpirun (torch_xla's
    coordinator gives the plugin its key-value store): test_torch_spmd's Megatron block over
    all 8 chips, its all-reduces crossing the processes, equals eager CPU in each process, and
    its ttnn programs equal those of the same block from one process, mock-checked there.
    Process 1 lingers 3 s after the last fence at exit: torch_xla never shuts its coordinator's
    clients down, and a process alive when process 0 (the coordinator) has gone is aborted by
    its client; process 0 must wait for it (seen as a flake under load before it did)."""
    pytest.importorskip("torch_xla", reason="torch_xla is not installed")
    from conftest import assert_close
    from test_torch_spmd import BLOCK
    import numpy as np
    prefix = textwrap.dedent("""
        import os, sys
        rank = os.environ["OMPI_COMM_WORLD_RANK"]
        sys.argv[1] += "." + rank
        os.environ["PJRT_TT_DUMP"] = os.path.join(os.path.dirname(sys.argv[1]), os.path.basename(sys.argv[1]) + "-dump")
        import atexit, time
        def linger():   # registered first, so it runs after every exit hook of torch_xla and pjrt-tt
            from mpi4py import MPI
            if not MPI.Is_finalized():
                MPI.Finalize()
            if rank == "1":
                time.sleep(3)
        if os.environ["OMPI_COMM_WORLD_SIZE"] != "1":   # (one process: ttnn's own MPI is in the mock check)
            atexit.register(linger)
    """)
    outs = {}
    for n in (1, 2):
        env = _env(PJRT_DEVICE="TT", MASTER_ADDR="127.0.0.1", XLA_COORDINATOR_PORT=str(_free_port()))
        env.pop("JAX_PLATFORMS")
        proc = mpirun(n, ["-c", prefix + BLOCK, str(tmp_path / f"run{n}")], env)
        assert proc.returncode == 0 and proc.stdout.count("block ok 8") == n, proc.stderr[-4000:]
        if n == 1:
            assert "mock check skipped" not in proc.stderr, proc.stderr[-3000:]
        else:
            outs["unchecked"] = proc.stderr
        for rank in range(n):
            got, want = np.load(tmp_path / f"run{n}.{rank}.npy")
            assert_close(got, want, kind="matmul", what=f"{n} processes, process {rank}")
    one = {p.name: p.read_text() for p in (tmp_path / "run1.0-dump").glob("*.ttnn.txt")}
    assert one
    for rank in (0, 1):
        assert {p.name: p.read_text() for p in (tmp_path / f"run2.{rank}-dump").glob("*.ttnn.txt")} == one
    forward_mock_unchecked(outs["unchecked"])
