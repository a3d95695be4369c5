"""torch_xla finds the plugin through the `torch_xla.plugins` entry point group; with
PJRT_DEVICE=TT it loads our PJRT library and `torch_xla.device()` is a TT chip."""
from __future__ import annotations

import os
import pwd

from torch_xla.experimental import plugins

from pjrt_tt.jax_plugin import LIBRARY


class TTPlugin(plugins.DevicePlugin):
    def library_path(self) -> str:
        if "HOME" not in os.environ:  # ttnn segfaults on import when HOME is unset
            os.environ["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
        return str(LIBRARY)

    def physical_chip_count(self) -> int:
        return 1   # one process drives every chip of the system (no multi-process PJRT)

    def client_create_options(self) -> dict:
        return {"framework": "torch"}  # errors advise in torch's terms (Settings.framework)

    def requires_xla_coordinator(self) -> bool:
        return False
