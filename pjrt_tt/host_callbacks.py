"""Python callbacks a program makes on the host: jax.debug.print / debug.callback,
pure_callback and io_callback (jax_plugin.py emits them as `stablehlo.custom_call
@pjrt_tt.python_callback` whose backend_config is the index of the callable here).

The index is resolved when the program runs, in this process. A module's text names the
index its own lowering just registered (jax lowers before it compiles or looks anything
up), so even a program loaded from the persistent compilation cache, whose text is the same,
calls the callable this process registered for that text.
"""
from __future__ import annotations

import itertools
import threading
from typing import Callable

TARGET = "pjrt_tt.python_callback"

_CALLBACKS: dict[int, Callable] = {}
_NEXT = itertools.count()
_LOCK = threading.Lock()


def register(fn: Callable) -> int:
    with _LOCK:
        index = next(_NEXT)
        _CALLBACKS[index] = fn
    return index


def lookup(index: int) -> Callable:
    try:
        return _CALLBACKS[index]
    except KeyError:
        raise RuntimeError(f"the program calls Python callback {index}, which this process never registered "
                           f"(a program lowered in another process): lower it again here") from None
