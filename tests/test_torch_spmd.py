"""torch_xla SPMD on simulated multi-chip systems: `xr.use_spmd()`, `xs.Mesh`,
`xs.mark_sharding`; results (sharded inputs and weights, replicated and sharded outputs)
match the CPU. Each system is a fresh process (the system is chosen when the client starts)."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("torch_xla", reason="torch_xla is not installed (pip install torch_xla==2.9.0)")

from conftest import assert_close, forward_mock_unchecked, run_python  # noqa: E402
from test_torch_stress import run  # noqa: E402

BODY = """
import numpy as np
import torch_xla.runtime as xr
import torch_xla.distributed.spmd as xs
xr.use_spmd()
n = xr.global_runtime_device_count()
assert n == {n}, n
rows = 2 if n > 2 else 1
mesh = xs.Mesh(np.arange(n), (rows, n // rows), ("data", "model"))
torch.manual_seed(0)
a, w1, w2 = torch.randn(8 * n, 32), torch.randn(32, 8 * n) / 6, torch.randn(8 * n, 16) / 6
xa, x1, x2 = (t.to(dev) for t in (a, w1, w2))
xs.mark_sharding(xa, mesh, ("data", None))        # batch over rows
xs.mark_sharding(x1, mesh, (None, "model"))       # column-parallel
xs.mark_sharding(x2, mesh, ("model", None))       # row-parallel: an all-reduce
got = torch.tanh(torch.relu(xa @ x1) @ x2)
want = torch.tanh(torch.relu(a @ w1) @ w2)
np.save({out!r}, np.stack([got.cpu().numpy(), want.numpy()]))
print("spmd ok", n, torch_xla._XLAC._get_xla_sharding_spec(got) or "replicated")
"""


@pytest.mark.parametrize("system,n", [("n300", 2), ("t3k", 8)])
def test_spmd_mark_sharding(system, n, tmp_path):
    out = run(BODY.format(n=n, out=str(tmp_path / "r.npy")), PJRT_TT_SYSTEM=system)
    assert f"spmd ok {n}" in out, out
    got, want = np.load(tmp_path / "r.npy")
    assert_close(got, want, kind="matmul")


# SPMD mode set before the device is first used, as torch_xla asks (with the device
# initialised first, as in test_torch_stress.PRELUDE, this block segfaults inside _XLAC).
BLOCK = """
import os, sys
os.environ["PJRT_DEVICE"] = "TT"
import numpy as np
import torch, torch_xla
import torch.nn.functional as F
import torch_xla.runtime as xr
import torch_xla.distributed.spmd as xs
xr.use_spmd()
dev = torch_xla.device()
n = xr.global_runtime_device_count()
mesh = xs.Mesh(np.arange(n), (1, n), ("data", "model"))
torch.manual_seed(0)
B, S, D, H = 2, 16, 64, 8                     # H heads split over the model axis
p = {k: torch.randn(*s) / np.sqrt(s[0]) for k, s in dict(
    wq=(D, D), wk=(D, D), wv=(D, D), wo=(D, D), w1=(D, 4 * D), w2=(4 * D, D)).items()}
x = torch.randn(B, S, D)

def block(x, p):
    def heads(t):
        return t.reshape(B, S, H, D // H).transpose(1, 2)
    q, k, v = (heads(x @ p[w]) for w in ("wq", "wk", "wv"))
    a = torch.softmax(q @ k.transpose(-1, -2) / np.sqrt(D // H), dim=-1) @ v
    x = F.layer_norm(x + a.transpose(1, 2).reshape(B, S, D) @ p["wo"], (D,))
    return F.layer_norm(x + F.gelu(x @ p["w1"]) @ p["w2"], (D,))

xp = {k: v.to(dev) for k, v in p.items()}
for w in ("wq", "wk", "wv", "w1"):
    xs.mark_sharding(xp[w], mesh, (None, "model"))    # column-parallel: heads / hidden split
for w in ("wo", "w2"):
    xs.mark_sharding(xp[w], mesh, ("model", None))    # row-parallel: an all-reduce each
got = block(x.to(dev), xp).cpu()
want = block(x, p)
np.save(sys.argv[1], np.stack([got.numpy(), want.numpy()]))
print("block ok", n)
"""


@pytest.mark.parametrize("system,n", [("n300", 2), ("t3k", 8)])
def test_spmd_megatron_transformer_block(system, n, tmp_path):
    """A transformer block (attention + MLP) with Megatron sharding via xs.mark_sharding."""
    env = dict(os.environ, PJRT_DEVICE="TT", PJRT_TT_SYSTEM=system)
    proc = run_python(BLOCK, env=env, timeout=300, argv=(str(tmp_path / "r.npy"),))
    forward_mock_unchecked(proc.stderr)
    assert proc.returncode == 0 and f"block ok {n}" in proc.stdout, proc.stderr[-3000:]
    got, want = np.load(tmp_path / "r.npy")
    assert_close(got, want, kind="matmul")
