"""Compile options from torch: `torch_xla.set_custom_compile_options({...})` and
`torch.compile(model, backend="tt", options={...})` (names: pjrt_tt/compile_context.py,
docs/optimizer.md).

torch_xla 2.9 has no way to pass options to a PJRT plugin's compile (its CompileOptions
carry no env_option_overrides from Python; `set_custom_compile_options` exists only in
tt-xla's fork), so the bridge is the environment variable PJRT_TT_COMPILE_OPTIONS, a JSON
object the compiler reads at every compile, under the options a compile carries itself.
`set_custom_compile_options` is installed into torch_xla when it lacks one (plugin.py), so
scripts written for the TT-Forge stack run unchanged.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading

from pjrt_tt.compile_context import ENV, env_options, parse_options

_LOCK = threading.Lock()


def _checked(options: dict) -> dict:
    """Raises, naming the known options, on a name or value the compiler would refuse."""
    if not isinstance(options, dict):
        raise TypeError(f"compile options must be a dict of name -> value, not {type(options).__name__}")
    out = {str(k): (v if isinstance(v, (bool, int, float)) else str(v)) for k, v in options.items()}
    parse_options(list(out.items()))
    return out


def set_custom_compile_options(options: dict) -> None:
    """Options for every program compiled from now on in this process (replacing earlier
    ones); an empty dict clears them."""
    opts = _checked(options)
    with _LOCK:
        if opts:
            os.environ[ENV] = json.dumps(opts)
        else:
            os.environ.pop(ENV, None)


@contextlib.contextmanager
def compile_options(options: dict | None):
    """The process options plus `options` (which win) while a torch.compile graph is
    compiled (torch_xla compiles it on this thread, inside the backend call)."""
    if not options:
        yield
        return
    opts = _checked(options)
    with _LOCK:
        before = os.environ.get(ENV)
        merged = {**dict(env_options(os.environ)), **opts}
        os.environ[ENV] = json.dumps(merged)
    try:
        yield
    finally:
        with _LOCK:
            if before is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = before


def install_into_torch_xla() -> None:
    """torch_xla.set_custom_compile_options, where torch_xla has none of its own."""
    import sys
    torch_xla = sys.modules.get("torch_xla")
    if torch_xla is not None and not hasattr(torch_xla, "set_custom_compile_options"):
        torch_xla.set_custom_compile_options = set_custom_compile_options
