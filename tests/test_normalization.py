"""stablehlo.batch_norm_{inference,training,grad} (what torch_xla emits; jax never does):
hand-written StableHLO modules through the plugin vs a numpy reference of the spec's
formulas, and eager torch BatchNorm2d / LayerNorm through torch_xla when it is importable."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from conftest import assert_close
from test_control_flow import run_mlir

RNG = np.random.default_rng(3)
EPS = 1e-3


def _t(shape) -> str:
    return f"tensor<{'x'.join(map(str, shape))}xf32>"


def _module(kind: str, shape, f: int) -> str:
    """One batch_norm op on an operand of `shape` with its features on dim `f`."""
    x, v = _t(shape), _t((shape[f],))
    ins, outs = {"inference": ([x, v, v, v, v], [x]), "training": ([x, v, v], [x, v, v]),
                 "grad": ([x, v, v, v, x], [x, v, v])}[kind]
    args = ", ".join(f"%a{i}: {t}" for i, t in enumerate(ins))
    names = ", ".join(f"%r{i}" for i in range(len(outs)))
    return f"""
func.func public @main({args}) -> ({", ".join(outs)}) {{
  {names} = "stablehlo.batch_norm_{kind}"({", ".join(f"%a{i}" for i in range(len(ins)))})
      {{epsilon = {EPS:e} : f32, feature_index = {f} : i64}} : ({", ".join(ins)}) -> ({", ".join(outs)})
  return {names} : {", ".join(outs)}
}}
"""


def _reference(kind: str, f: int, x, *vs):
    """The StableHLO spec's definitions, in float64."""
    axes = tuple(d for d in range(x.ndim) if d != f)
    b = lambda v: np.expand_dims(np.asarray(v, np.float64), axes)  # noqa: E731  (C,) -> broadcastable
    x = x.astype(np.float64)
    if kind == "inference":
        scale, offset, mean, var = map(b, vs)
        return [(x - mean) / np.sqrt(var + EPS) * scale + offset]
    if kind == "training":
        scale, offset = map(b, vs)
        mean = x.mean(axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axes, keepdims=True)  # biased
        return [(x - mean) / np.sqrt(var + EPS) * scale + offset, mean.ravel(), var.ravel()]
    scale, mean, var = map(b, vs[:3])
    g = vs[3].astype(np.float64)
    n = x.size / x.shape[f]                                 # elements_per_feature
    centered, stddev = x - mean, np.sqrt(var + EPS)
    i1 = g * n
    i2 = g.sum(axes, keepdims=True)
    i3 = (g * centered).sum(axes, keepdims=True)
    i6 = i1 - i2 - i3 * centered / (var + EPS)
    return [scale / stddev / n * i6, (g * centered / stddev).sum(axes), g.sum(axes)]


@pytest.mark.parametrize("shape,f", [((2, 3, 5, 7), 1), ((4, 9), 1), ((6, 5, 3), 2), ((3, 10, 4), 0)],
                         ids=["nchw", "nc", "last", "first"])
@pytest.mark.parametrize("kind", ["inference", "training", "grad"])
def test_batch_norm(kind, shape, f):
    c = shape[f]
    x = RNG.normal(0.5, 2.0, shape).astype(np.float32)
    vec = lambda lo, hi: RNG.uniform(lo, hi, c).astype(np.float32)  # noqa: E731
    args = {"inference": [x, vec(0.5, 2), vec(-1, 1), vec(-1, 1), vec(0.2, 3)],
            "training": [x, vec(0.5, 2), vec(-1, 1)],
            "grad": [x, vec(0.5, 2), x.mean(tuple(d for d in range(x.ndim) if d != f)), vec(0.2, 3),
                     RNG.normal(0, 1, shape).astype(np.float32)]}[kind]
    got = run_mlir(_module(kind, shape, f), *args)
    want = _reference(kind, f, *args)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w.astype(np.float32))


def _has_torch_xla() -> bool:
    # find_spec, not import: importing torch_xla here would fix PJRT_DEVICE to its default
    # (CPU) for the whole test process before tests/test_torch.py can choose TT.
    return importlib.util.find_spec("torch_xla") is not None


TORCH_NORM = r"""
import json, torch, torch_xla.core.xla_model as xm
torch.manual_seed(0)
dev = xm.xla_device()
res = {}
def pair(name, got, want):   # (tt, cpu) values, compared by the parent
    res[name] = (got.detach().cpu().tolist(), want.detach().tolist())
x = torch.randn(2, 4, 6, 5) * 2 + 0.5
bn = torch.nn.BatchNorm2d(4)
with torch.no_grad():
    bn.weight.uniform_(0.5, 2); bn.bias.uniform_(-1, 1)
bn_tt = torch.nn.BatchNorm2d(4).to(dev); bn_tt.load_state_dict(bn.state_dict())
pair("train", bn_tt(x.to(dev)), bn(x))
pair("running_mean", bn_tt.running_mean, bn.running_mean)
# torch_xla 2.9 updates running_var with the biased batch variance (the same on its own CPU
# device, measured), eager PyTorch with the unbiased one: 4.7e-3 apart here. The plugin runs
# what torch_xla sends, so the reference is torch_xla's formula, and eval uses those stats.
pair("running_var", bn_tt.running_var, 0.9 + 0.1 * x.var((0, 2, 3), unbiased=False))
xg, xg_tt = x.clone().requires_grad_(), x.to(dev).requires_grad_()
w = torch.randn(x.shape)
(bn(xg) * w).sum().backward(); (bn_tt(xg_tt) * w.to(dev)).sum().backward()  # batch_norm_grad
pair("grad_x", xg_tt.grad, xg.grad)
pair("grad_weight", bn_tt.weight.grad, bn.weight.grad)
pair("grad_bias", bn_tt.bias.grad, bn.bias.grad)
bn.eval(); bn_tt.eval()
with torch.no_grad():
    bn.running_var.copy_(bn_tt.running_var.cpu())
pair("eval", bn_tt(x.to(dev)), bn(x))
ln = torch.nn.LayerNorm(5)
with torch.no_grad():
    ln.weight.uniform_(0.5, 2); ln.bias.uniform_(-1, 1)
ln_tt = torch.nn.LayerNorm(5).to(dev); ln_tt.load_state_dict(ln.state_dict())
pair("layernorm", ln_tt(x.to(dev)), ln(x))
print("RESULT " + json.dumps(res))
"""


@pytest.mark.skipif(not _has_torch_xla(), reason="torch_xla not importable")
def test_torch_batchnorm_layernorm_eager():
    import json
    import os
    import subprocess
    import sys
    env = dict(os.environ, PJRT_DEVICE="TT")
    p = subprocess.run([sys.executable, "-c", TORCH_NORM], env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and lines, p.stderr[-3000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert len(res) == 8, sorted(res)
    for name, (got, want) in res.items():   # no matmul: the float32 standard
        assert_close(np.array(got, np.float32), np.array(want, np.float32), what=name)
