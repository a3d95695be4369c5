"""The model zoo (tests/zoo.py) on TT against eager CPU, as people bring models:

- torch: `torch.compile(model.to(device), backend="tt")` called with its inputs moved by
  `.to(device)`, float32 and bfloat16, against eager torch on the CPU in the same dtype;
  nothing may fall back to the host (torch_xla's `aten::*` counters stay at 0);
- JAX: the Flax class transformers ships for the family, under `jax.jit` on tt, against
  XLA:CPU;
- the Getting Started flow (tokenizer -> input_ids -> compiled model -> argmax -> decode);
- `model.generate()` with a static KV cache, greedy and sampled: 32 tokens equal to CPU,
  with the compile count.

Every torch case runs in a fresh child process (zoo.Isolated): torch_xla syncs every live
device tensor of the process at once, so one failed model would make every later one fail.
The children inherit the environment, so under CI=true their programs go through mock too.

Bounds (conftest.TOLERANCES): float32 results come through the matrix unit, so kind
"matmul" (PCC >= 0.999 and max |err| <= 2**-7 * (max|want| + |want|), ||err||/||want|| <=
2**-7); bfloat16: PCC >= 0.99 and ||err||/||want|| <= 2**-5 (elementwise 2**-5 likewise).

Cases that fail on merged code are `xfail(strict=True)` naming the op and the root cause,
so a fix turns them into failures (to be un-marked) the moment it lands.
"""
from __future__ import annotations

import functools
import inspect
import os
import re
import sys

os.environ.setdefault("PJRT_DEVICE", "TT")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.9.0)")
torch_xla = pytest.importorskip("torch_xla", reason="torch_xla is not installed (pip install torch_xla==2.9.0)")
pytest.importorskip("transformers", reason="transformers is not installed")


sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demos"))

import zoo  # noqa: E402
from conftest import assert_close  # noqa: E402

# Root causes of today's failures (none is a lowering gap: each is in the model's own code or
# in what the card computes).
TF32_DEPTH = ("mobilenet_v2 float32: the card's float32 matrix / FPU ops read operands as TF32 (the low 13 "
              "mantissa bits dropped, always toward zero; docs/numerics.md), and the bias compounds over "
              "MobileNetV2's 52 convs + batch norms: logits 2.6e-2 relative off exact CPU (PCC 1.00000) "
              "against the 2**-7 float32 bound; CPU with the same truncation emulated on conv and "
              "batch-norm operands is 2.2e-2 off exact CPU and 5e-3 off the sim")
BF16_DEPTH = ("{name} bfloat16: {detail}; PCC {pcc} meets the issue's 0.99 but ||err||/||want|| {rel} misses "
              "the suite's 2**-5 bfloat16 bound (the same figures under jax 0.7.1 and 0.12: the sim is "
              "deterministic). Both sides round every op to bfloat16 in a different order (CPU eager: one "
              "kernel per aten op; the card: ttnn's tile math, bfloat16 accumulation in the FPU)")
MINILM_BF16 = BF16_DEPTH.format(name="minilm", pcc="0.99944", rel="3.49e-2",
                                detail="the real all-MiniLM-L6-v2 weights over 6 layers; worst element -2.27 vs -2.09")
MOBILENET_BF16 = BF16_DEPTH.format(name="mobilenet_v2", pcc="0.99909", rel="7.98e-2",
                                   detail="the tiny random config's logits are ~1e-25 after 52 convs + batch "
                                          "norms, so every rounding difference is relative to a vanishing signal")
T5_FLAX_JAX012 = ("transformers' FlaxT5 calls jnp.clip(a_max=...), a keyword jax 0.12 removed (TypeError "
                  "in the model's own code before anything reaches the plugin); passes under jax 0.7.1")

# The first failure each model meets today in the torch form (keyed by name, or by (name, dtype)).
# A root cause no dtype changes runs in one dtype only (the other is an xfail not run): CI time.
RUN_ONE_DTYPE: set = set()
TORCH_XFAIL = {("mobilenet_v2", "float32"): TF32_DEPTH,
               ("minilm", "bfloat16"): MINILM_BF16, ("mobilenet_v2", "bfloat16"): MOBILENET_BF16}
# The first failure of the Flax class today (same for both dtypes unless keyed by dtype).
FLAX_XFAIL: dict = {} if "a_max" in inspect.signature(jnp.clip).parameters else {"t5": T5_FLAX_JAX012}
# The quick set (`pytest -m "not slow"`): one case of each kind, one dtype each (each case costs
# a fresh process, a dynamo trace, a lowering and the sim: 10-40 s on 2 shared cores); a Llama
# in float32 on the device also runs in the Getting Started and generate() tests. The rest of
# the zoo is `slow`: `make test` runs it all (CI measured 993 s for the whole suite with it),
# and tools/model_report.py runs all of it into docs/model-report.md.
FAST_TORCH = {("llama", "bfloat16"), ("bert", "float32"), ("vit", "bfloat16"), ("convnext", "float32")}
FAST_FLAX = {("bert", "float32")}


@pytest.fixture(scope="module")
def child():
    """Runs a zoo function in a fresh process (see the module doc), two at a time (the test
    process only waits meanwhile), one torch thread each beside the other pytest-xdist
    worker: the zoo is the longest file, and with one child at a time it ran alone at the
    end of the run while the other worker idled."""
    others = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) - 1
    iso = zoo.Isolated(workers=min(2, len(os.sched_getaffinity(0))), busy_elsewhere=others)
    yield iso
    iso.close()


@pytest.fixture(scope="module")
def torch_runs(child, request):
    """Every selected torch zoo case, started at once (they run `workers` at a time, in the
    order the tests ask for them, on-device generate() first), a model's dtypes in one child
    (zoo.torch_cases: CI measured the suite at 1789 s, the zoo the largest part): (name,
    dtype) -> a function waiting for its result."""
    selected = {getattr(item, "originalname", None) for item in request.session.items}
    runs = {}
    if "test_generate_greedy_on_device_matches_cpu" in selected:   # the longest case first: the rest overlap it
        runs["generate on the device"] = child.submit(zoo.generate_case, "llama", do_sample=False, on_device=True)
    dtypes: dict[str, list[str]] = {}
    for item in request.session.items:
        xfail = item.get_closest_marker("xfail")
        if xfail is not None and not xfail.kwargs.get("run", True):
            continue
        if getattr(item, "originalname", None) == "test_torch_model_matches_cpu_on_chip":
            dtypes.setdefault(item.callspec.params["name"], []).append(item.callspec.params["dtype"])
    for name, wanted in dtypes.items():
        shared = _SharedChild(child, name, wanted)
        runs.update({(name, dtype): functools.partial(shared.result, dtype) for dtype in wanted})
    return runs


class _SharedChild:
    """One child running a model's dtypes (zoo.torch_cases); a dtype it did not return (one
    before it raised, or the child died) runs alone in a fresh child, so every failure is
    that case's own."""

    def __init__(self, child, name: str, dtypes: list[str]):
        self._child, self._name = child, name
        self._wait = child.submit(zoo.torch_cases, name, dtypes)
        self._got: dict | None = None
        self._alone: dict = {}

    def result(self, dtype: str) -> dict:
        if self._got is None:
            self._got = self._wait().get("by_dtype", {})
        got = self._got
        if dtype in got:
            return got[dtype]
        if dtype not in self._alone:
            self._alone[dtype] = self._child(zoo.torch_case, self._name, dtype)
        return self._alone[dtype]


def _ok(result: dict) -> dict:
    if "error" in result:
        pytest.fail(result["error"], pytrace=False)
    return result


def _params(names, xfails, dtypes, fast):
    out = []
    for name in names:
        for dtype in dtypes:
            reason = xfails.get((name, dtype), xfails.get(name))
            marks = [pytest.mark.xfail(strict=True, reason=reason, run=(name, dtype) not in RUN_ONE_DTYPE)
                     ] if reason else []
            if (name, dtype) not in fast:
                marks.append(pytest.mark.slow)
            out.append(pytest.param(name, dtype, marks=marks, id=f"{name}-{dtype}"))
    return out


def _check(got, want, dtype: str, what: str) -> None:
    if dtype == "float32":
        assert_close(got.astype(np.float32), want.astype(np.float32), kind="matmul", what=what)
    else:   # bf16 results compared as bf16 (assert_close's bfloat16 bounds)
        assert_close(got.astype(ml_dtypes.bfloat16), want.astype(ml_dtypes.bfloat16), what=what)


@pytest.mark.parametrize("name,dtype", _params([m.name for m in zoo.MODELS], TORCH_XFAIL,
                                               ["float32", "bfloat16"], FAST_TORCH))
def test_torch_model_matches_cpu_on_chip(torch_runs, name, dtype):
    run = _ok(torch_runs[name, dtype]())
    _check(run["got"], run["want"], dtype, f"{name} {dtype}")
    assert run["per_call"]["fallbacks"] == {}, f"{name}: aten ops ran on the host: {run['per_call']['fallbacks']}"


@pytest.mark.parametrize("name,dtype", _params([m.name for m in zoo.FLAX], FLAX_XFAIL,
                                               ["float32", "bfloat16"], FAST_FLAX))
def test_flax_model_matches_xla_cpu(tt, cpu, name, dtype):
    np_dtype = np.float32 if dtype == "float32" else ml_dtypes.bfloat16
    model = zoo.BY_NAME[name]
    _check(zoo.run_flax(model, tt, np_dtype), zoo.run_flax(model, cpu, np_dtype), dtype, f"flax {name} {dtype}")


def test_lowering_failure_names_the_op_and_the_model_line(child):
    """An op without a lowering, inside a compiled model: the error names the StableHLO op,
    the aten op and the line of the model's forward that made it (not torch.fx's generated
    code)."""
    error = child(zoo.lowering_failure_case)
    assert "pjrt-tt cannot lower `stablehlo.power`" in error, error
    assert re.search(r"zoo\.py:\d+ in forward: `return torch\.pow\(scaled, exponent\)", error), error
    assert "aten__pow" in error and "eval_with_key" not in error, error


# ------------------------------------------------------------------ Getting Started

def test_getting_started_as_documented_is_refused_by_dynamo(child):
    """The official stack's Getting Started compiles a model left on the CPU and calls it with
    `input_ids.to(device)`. Dynamo refuses that before any backend runs: it propagates fake
    tensors through every op, and an op reading a CPU weight and an XLA id (the embedding)
    has no device it could run on. No backend can change it. What to write instead is the
    next test: the model on the device too (or both on the CPU: the backend moves them).
    This test fails the day torch accepts the mixed form (then the docs change)."""
    error = child(zoo.getting_started_as_documented)
    assert re.search("two different devices cpu, xla:0|Mismatching .* device", error), error


@pytest.mark.parametrize("where", ["moved", pytest.param("cpu", marks=pytest.mark.slow)])   # (an id "device" would mean: needs a card)
def test_getting_started_flow(child, where):
    """tokenizer -> input_ids .to(device) -> compiled model -> argmax -> decode, with the model
    moved to the device as well (where="moved"), or model and ids both left on the CPU
    (where="cpu": the backend moves them), equal to eager CPU."""
    run = _ok(child(zoo.getting_started, where))
    assert run["got"] == run["want"]
    assert_close(run["logits"], run["want_logits"], kind="matmul")


# ------------------------------------------------------------------ generate()

SAMPLED_DIVERGES = ("sampled generate(): tokens leave CPU's at the third generated token (index 10 of 40) and "
                    "stay apart. Traced: at that step CPU's 5th and 6th largest logits (tokens 98 and 32) are "
                    "1.6e-4 apart, and the chip's float32 matmul error (TF32 operands: 1.0e-3 max abs on these "
                    "logits) swaps them, so top_k=5 leaves out token 98, which CPU's seeded draw picks. Greedy is "
                    "equal for 32 steps; the draw itself is CPU's (same generator, same state)")


@pytest.mark.parametrize("do_sample", [False, pytest.param(True, marks=[
    pytest.mark.slow, pytest.mark.xfail(strict=True, reason=SAMPLED_DIVERGES)])], ids=["greedy", "sampled"])
def test_generate_with_static_cache_matches_cpu(child, do_sample):
    """`model.forward` compiled, `generate()` with cache_implementation="static", model and
    prompt on the CPU (the backend moves them; generate's own bookkeeping and the sampling
    draw stay on the CPU, so a seeded draw is CPU's draw): 32 tokens equal to CPU, one
    program for the prefill and one for every decode step."""
    run = _ok(child(zoo.generate_case, "llama", do_sample=do_sample, on_device=False))
    np.testing.assert_array_equal(run["got"], run["want"], err_msg="tokens differ from CPU")
    print(f"compiles for 32 steps: {run['compiles']}")
    assert run["compiles"]["dynamo_graphs"] == 2, run["compiles"]          # prefill, decode
    assert run["compiles"]["tt_lowerings"] == 2, run["compiles"]


@pytest.mark.slow
def test_generate_greedy_on_device_matches_cpu(torch_runs):
    """The same with model and prompt moved `.to(device)`: tokens equal to CPU, two model
    graphs. generate's own tensor bookkeeping then runs on the device too, as lazy torch_xla
    programs; the ids it concatenates grow every step, so those compile anew each step
    (measured with torch_xla's CPU device: 106 XLA compiles for 32 steps, 2 of them the
    model's). The count is printed, not bounded. Their int64 cache-position arithmetic is
    proven exact for the first call's values; later steps' wider values are proven again
    (runtime/executable.ArgumentRanges)."""
    run = _ok(torch_runs["generate on the device"]())   # (started first: torch_runs)
    np.testing.assert_array_equal(run["got"], run["want"], err_msg="tokens differ from CPU")
    assert run["compiles"]["dynamo_graphs"] == 2, run["compiles"]
    print(f"programs lowered for 32 steps on the device: {run['compiles']['tt_lowerings']}")
