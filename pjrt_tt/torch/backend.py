"""The dynamo backend "tt": `torch.compile(model, backend="tt")` runs the graph on a TT chip
through torch_xla (PJRT_DEVICE=TT), with torch_xla's own dynamo bridge doing the tracing
and caching (one XLA program per graph; fixed-shape loops reuse it).

Registered through the `torch_dynamo_backends` entry point group, so nothing from the
plugin needs importing first. Two ways in:
- inputs already on the XLA device: the graph runs there and results stay there;
- CPU inputs (a plain CPU model): arguments go to the device (parameters are uploaded
  once and reused until they change), the graph runs there, results come back to the CPU,
  so the compiled model is a drop-in replacement for the eager one, training included
  (aot_autograd compiles the backward graph the same way).
"""
from __future__ import annotations

import os
import pwd
import threading
import weakref

import torch


def _xla_device():
    """torch_xla's device, starting its runtime on TT unless the user chose otherwise."""
    if "HOME" not in os.environ:  # ttnn segfaults on import when HOME is unset
        os.environ["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
    os.environ.setdefault("PJRT_DEVICE", "TT")
    import torch_xla
    import torch_xla.runtime as xr
    if xr.device_type() != "TT":
        raise RuntimeError(f"backend 'tt' needs torch_xla on the TT device, but PJRT_DEVICE="
                           f"{os.environ.get('PJRT_DEVICE')!r} (set PJRT_DEVICE=TT before torch_xla starts)")
    return torch_xla.device()


class _Uploads:
    """Device copies of CPU tensors, reused while the tensor lives and is not modified
    (its `_version` is unchanged), so a compiled model does not re-send its weights."""

    def __init__(self):
        self._cache: dict[int, tuple[weakref.ref, int, torch.Tensor]] = {}
        self.uploads = 0

    def get(self, t: torch.Tensor, device) -> torch.Tensor:
        key = id(t)
        hit = self._cache.get(key)
        if hit is not None and hit[0]() is t and hit[1] == t._version:
            return hit[2]
        x = _narrow(t.detach()).to(device)
        self.uploads += 1
        try:
            ref = weakref.ref(t, lambda _, k=key, c=self._cache: c.pop(k, None))
        except TypeError:  # not weak-referenceable: no caching
            return x
        self._cache[key] = (ref, t._version, x)
        return x


_UPLOADS = _Uploads()
# One thread at a time runs a graph, from upload to results on the CPU. torch_xla 2.9 is
# not thread-safe here: its `_run_cached_graph` blocks holding the GIL while an execution
# started by another thread waits on torch_xla's worker thread for the GIL to call the
# plugin (a deadlock; torch_xla's CPU plugin never takes the GIL, so it does not show
# there), and concurrent syncs fail its "tensor_data" checks.
_RUN_LOCK = threading.RLock()


# The chip has no 64-bit integers and torch_xla's XLA_USE_32BIT_LONG mode fails on every
# cast from or to int64 (torch_xla 2.9, on its CPU device too), so the backend runs
# torch's int64 (token ids, positions, masks) as int32 and restores int64 on the way out.
_NARROW = {torch.int64: torch.int32}


def _narrow(t: torch.Tensor) -> torch.Tensor:
    return t.to(_NARROW[t.dtype]) if t.dtype in _NARROW else t


def _retarget(gm: torch.fx.GraphModule, device) -> None:
    """Ops that create tensors on the CPU inside the graph (arange, full, _to_copy...)
    create them on the XLA device instead, where the rest of the graph lives; int64
    results they ask for become int32."""
    def move(v):
        if isinstance(v, torch.device) and v.type == "cpu":
            return device
        return _NARROW.get(v, v) if isinstance(v, torch.dtype) else v
    for node in gm.graph.nodes:
        if node.op == "get_attr":  # constants the graph holds (lifted tensors, buffers)
            owner, _, name = node.target.rpartition(".")
            mod = gm.get_submodule(owner) if owner else gm
            value = getattr(mod, name)
            if isinstance(value, torch.Tensor) and value.device.type == "cpu":
                moved = _narrow(value).to(device)
                if isinstance(value, torch.nn.Parameter):
                    moved = torch.nn.Parameter(moved, requires_grad=value.requires_grad)
                setattr(mod, name, moved)
        elif node.op == "call_function":
            node.args = torch.fx.node.map_aggregate(node.args, move)
            node.kwargs = torch.fx.node.map_aggregate(node.kwargs, move)
    gm.recompile()


def _compile_graph(gm: torch.fx.GraphModule, example_inputs):
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.torchxla import openxla_eval_boxed

    device = _xla_device()
    on_cpu = any(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in example_inputs)
    if not on_cpu:
        return openxla_eval_boxed(gm, example_inputs)
    want = _output_dtypes(gm)
    from torch._subclasses.fake_tensor import unset_fake_temporarily
    with unset_fake_temporarily():  # aot calls us under its fake mode; constants are real
        _retarget(gm, device)
    compiled = None

    def run(*args):
        nonlocal compiled
        with _RUN_LOCK:
            xargs = [(_UPLOADS.get(a, device) if a.device.type == "cpu" else a)
                     if isinstance(a, torch.Tensor) else a for a in args]
            if compiled is None:
                from torch_xla._dynamo import dynamo_bridge
                compiled = dynamo_bridge.extract_compiled_graph(gm, xargs)
            out = _to_cpu(compiled(*xargs))
        if isinstance(out, (list, tuple)) and want is not None:
            out = type(out)(o.to(w) if isinstance(o, torch.Tensor) and w is not None and o.dtype != w else o
                            for o, w in zip(out, want))
        return out

    return make_boxed_func(run)


def _output_dtypes(gm: torch.fx.GraphModule):
    """The dtype of each graph output (None where unknown), from dynamo's fake values."""
    node = next(n for n in gm.graph.nodes if n.op == "output")
    outs = node.args[0]
    if not isinstance(outs, (list, tuple)):
        return None
    vals = [o.meta.get("val") if isinstance(o, torch.fx.Node) else None for o in outs]
    return [v.dtype if isinstance(v, torch.Tensor) else None for v in vals]


def _to_cpu(out):
    if isinstance(out, torch.Tensor):
        return out.cpu()
    if isinstance(out, (list, tuple)):
        tensors = [o for o in out if isinstance(o, torch.Tensor)]
        if tensors:  # one transfer for all results instead of one per tensor
            import torch_xla
            cpu = iter(torch_xla._XLAC._xla_get_cpu_tensors(tensors))
            return type(out)(next(cpu) if isinstance(o, torch.Tensor) else o for o in out)
    return out


def tt_backend(gm: torch.fx.GraphModule, example_inputs, **kwargs):
    """The `torch.compile` backend "tt" (aot_autograd: forward and backward graphs)."""
    from torch._decomp import get_decompositions
    from torch._dynamo.backends.common import aot_autograd
    _xla_device()
    decompositions = get_decompositions([getattr(torch.ops.aten, n) for n in DECOMPOSE])
    return aot_autograd(fw_compiler=_compile_graph, decompositions=decompositions)(gm, example_inputs, **kwargs)


# aten ops broken into simpler ones before torch_xla sees them, because torch_xla's own
# lowering of them uses an XLA op we do not lower (layer norm -> batch_norm_training,
# batch norm -> batch_norm_inference / batch_norm_training / batch_norm_grad).
DECOMPOSE = ("native_layer_norm", "native_layer_norm_backward", "native_batch_norm",
             "native_batch_norm_backward", "_native_batch_norm_legit",
             "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional")


def compile_counts() -> dict[str, int]:
    """How often each layer compiled so far: dynamo graphs, torch_xla programs (XLA
    compiles, cache misses of torch_xla's graph cache) and pjrt-tt lowerings."""
    from torch._dynamo.utils import counters
    out = {"dynamo_graphs": int(counters["stats"]["unique_graphs"])}
    try:
        import torch_xla.debug.metrics as met
        data = met.metric_data("CompileTime")
        out["xla_compiles"] = int(data[0]) if data else 0
    except ImportError:
        pass
    from pjrt_tt.runtime.client import CLIENTS
    out["tt_lowerings"] = sum(c.compiler.compilations for c in CLIENTS)
    out["weight_uploads"] = _UPLOADS.uploads
    return out
