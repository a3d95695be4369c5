"""First-call time of `torch.compile(model, backend="tt")` on zoo models (tests/zoo.py: small
Hugging Face configs, float32), split into where it goes, against torch_xla's own
`backend="openxla"` on its CPU device in the same run (the reference: the same dynamo and
torch_xla tracing, XLA:CPU's compiler instead of ours).

    PYTHONPATH=$PWD python tests/benchmarks/torch_compile_time.py [model ...]

Each model and backend runs in a fresh process (nothing cached). Columns:

  tt first    first call on PJRT_DEVICE=TT (the sim): dynamo, aot_autograd, torch_xla's
              tracing, pjrt-tt's compiles, the run
  pjrt-tt     pjrt-tt's share: its compile spans (runtime/profiler.py), summed over the
              programs the call compiled, by phase: read (the helper process reading the
              framework's bytes), ingest, lower, passes, mock (the conformance check on
              real ttnn, on in tests and off by default for users: PJRT_TT_CHECK_WITH_MOCK)
  rest        tt first - pjrt-tt: torch's side and the run
  cpu first   first call of backend="openxla" on PJRT_DEVICE=CPU
  ratio       tt first / cpu first

Last line: `torch_compile_time: median first-call ratio R (tt / openxla on CPU) over N models`.
Wall-clock times on a shared machine: read them as ratios in one run.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

MODELS = ["gpt2", "llama", "t5", "bert", "vit", "resnet"]
PHASES = ("read", "ingest", "lower", "passes", "mock check")
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))


def child(name: str, backend: str) -> dict:
    """One model's first and second call with `backend`, in this (fresh) process."""
    import time
    sys.path.insert(0, os.path.join(_ROOT, "tests"))
    import torch
    import torch_xla
    import zoo
    case = next(m for m in zoo.MODELS if m.name == name)
    model, inputs = case.build(), case.inputs()
    session = None
    if backend == "tt":
        import pjrt_tt.torch  # noqa: F401  (registers the backend)
        from pjrt_tt.runtime.profiler import RECORDER, Session
        session = Session(RECORDER, b"")
        session.op_spans = False   # compile spans only
        session.start()
    device = torch_xla.device()
    compiled = torch.compile(model.to(device), backend=backend)
    moved = {k: v.to(device) for k, v in inputs.items()}
    times = []
    with torch.no_grad():
        for _ in range(2):
            t0 = time.perf_counter()
            case.pick(compiled(**moved)).float().cpu()
            times.append(time.perf_counter() - t0)
    out = {"first": times[0], "second": times[1]}
    if session is not None:
        session.stop()
        spans = [(n, (e - s) / 1e9) for _, line, n, s, e, _ in session.spans if line == "Compile"]
        out["phases"] = {p: sum(t for n, t in spans if n == p) for p in PHASES}
        out["pjrt_tt"] = sum(t for n, t in spans if n.startswith("compile "))
        out["programs"] = sum(1 for n, _ in spans if n.startswith("compile "))
    return out


def run(name: str, backend: str) -> dict:
    env = dict(os.environ, PJRT_DEVICE="TT" if backend == "tt" else "CPU", PYTHONPATH=_ROOT)
    code = f"import sys; sys.path.insert(0, {_HERE!r}); import json, torch_compile_time as b; " \
           f"print('RESULT', json.dumps(b.child({name!r}, {backend!r})))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{name} on {backend} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main(names: list[str]) -> None:
    print(f"{'model':8} {'tt first':>9} {'pjrt-tt':>8} = " + " + ".join(f"{p:>6}" for p in PHASES)
          + f" {'progs':>5} {'rest':>6} {'cpu first':>9} {'ratio':>6}")
    ratios = []
    for name in names:
        tt, cpu = run(name, "tt"), run(name, "openxla")
        ratio = tt["first"] / cpu["first"]
        ratios.append(ratio)
        phases = " + ".join(f"{tt['phases'][p]:6.2f}" for p in PHASES)
        print(f"{name:8} {tt['first']:9.2f} {tt['pjrt_tt']:8.2f} = {phases} {tt['programs']:5d} "
              f"{tt['first'] - tt['pjrt_tt']:6.2f} {cpu['first']:9.2f} {ratio:6.2f}", flush=True)
    print(f"torch_compile_time: median first-call ratio {statistics.median(ratios):.2f} (tt / openxla on CPU) "
          f"over {len(ratios)} models")


if __name__ == "__main__":
    main(sys.argv[1:] or MODELS)
