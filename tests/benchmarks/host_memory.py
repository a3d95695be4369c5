"""Host memory of an upload: the peak RSS a jax.device_put of a float32 array adds, in host
copies of the array, on TT and on XLA:CPU (each in a fresh child process, so nothing else
counts).

    python tests/benchmarks/host_memory.py [MiB]     # default 512
"""
from __future__ import annotations

import os
import subprocess
import sys

_CHILD = """
import resource, sys
import numpy as np
import jax
x = np.arange(int(sys.argv[1]) * 1024 * 256, dtype=np.float32).reshape(-1, 1024)   # touched: resident
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
jax.device_put(x, jax.devices(sys.argv[2])[0]).block_until_ready()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(f"{(after - before) / x.nbytes:.2f} {(after - before) >> 20}")
"""


def extra_copies(mib: int, platform: str) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(mib), platform], capture_output=True,
                         text=True, check=True, env=dict(os.environ, PJRT_TT_TARGET=os.environ.get(
                             "PJRT_TT_TARGET", "sim"))).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    for platform in ("tt", "cpu"):
        copies, extra = extra_copies(mib, platform)
        print(f"device_put of {mib} MiB f32 on {platform}: peak RSS +{extra} MiB = {copies:.2f} host copies")


if __name__ == "__main__":
    main()
