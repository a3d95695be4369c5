"""JAX discovers the plugin through the `jax_plugins` entry point group."""
from __future__ import annotations

import os
import pwd
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent / "libpjrt_tt.so"


def initialize() -> None:
    from jax._src import xla_bridge
    if "HOME" not in os.environ:  # ttnn segfaults on import when HOME is unset
        os.environ["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
    xla_bridge.register_plugin("tt", priority=500, library_path=str(LIBRARY))
    # jax 0.7.1 keeps a fixed list of platforms whose executables honour donation; ours
    # do (donated inputs are freed at execution), so join it.
    from jax._src.interpreters import mlir
    if "tt" not in mlir._platforms_with_donation:
        mlir._platforms_with_donation.append("tt")
