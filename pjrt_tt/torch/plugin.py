"""torch_xla finds the plugin through the `torch_xla.plugins` entry point group; with
PJRT_DEVICE=TT it loads our PJRT library and `torch_xla.device()` is a TT chip."""
from __future__ import annotations

import os
import pwd

from torch_xla.experimental import plugins

from pjrt_tt.jax_plugin import LIBRARY
from pjrt_tt.torch.options import install_into_torch_xla


def _opaque_to_dynamo() -> None:
    """The runtime's Python runs inside torch calls: a transfer for `.item()` or `print()`
    reaches Buffer.to_host through the shim on the calling thread. Between the graphs of a
    compiled function dynamo's frame hook is live on that thread and would trace the
    runtime's own frames; in dynamo's skip list they run as plain Python."""
    from torch._dynamo import trace_rules
    trace_rules.add("pjrt_tt")


_opaque_to_dynamo()
install_into_torch_xla()   # scripts written for tt-xla call torch_xla.set_custom_compile_options


class TTPlugin(plugins.DevicePlugin):
    def library_path(self) -> str:
        if "HOME" not in os.environ:  # ttnn segfaults on import when HOME is unset
            os.environ["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
        return str(LIBRARY)

    def physical_chip_count(self) -> int:
        return 1   # one process drives every chip of the system (no multi-process PJRT)

    def requires_xla_coordinator(self) -> bool:
        return False
