"""torch_xla SPMD on simulated multi-chip systems: `xr.use_spmd()`, `xs.Mesh`,
`xs.mark_sharding`; results (sharded inputs and weights, replicated and sharded outputs)
match the CPU. Each system is a fresh process (the system is chosen when the client starts)."""
from __future__ import annotations

import pytest

pytest.importorskip("torch_xla", reason="torch_xla is not installed (pip install torch_xla==2.9.0)")

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
pcc = np.corrcoef(got.cpu().numpy().ravel(), want.numpy().ravel())[0, 1]
assert pcc >= 0.999, pcc
print("spmd ok", n, torch_xla._XLAC._get_xla_sharding_spec(got) or "replicated")
"""


@pytest.mark.parametrize("system,n", [("n300", 2), ("t3k", 8)])
def test_spmd_mark_sharding(system, n):
    out = run(BODY.format(n=n), PJRT_TT_SYSTEM=system)
    assert f"spmd ok {n}" in out, out
