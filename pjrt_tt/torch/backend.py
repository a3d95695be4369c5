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
import re
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
    """Device copies of CPU tensors, reused while the tensor still holds what was sent, so a
    compiled model does not re-send its weights on every call.

    What can change a tensor's contents, and what torch updates for it (torch 2.9):
    in-place ops (also under no_grad), `copy_`, `load_state_dict` bump `_version`;
    `t.data = other` swaps the storage (new StorageImpl and data_ptr, same `_version`);
    writes through `t.data` (`p.data.add_(...)`, a manual SGD step) go through a tensor
    with its own version counter, so nothing about `t` changes. The cheap identity
    (storage, data_ptr, layout, `_version`) catches the first two; the last needs the
    contents, compared bit for bit with a host copy of what was sent."""

    def __init__(self):
        self._cache: dict[int, tuple] = {}
        self._lock = threading.Lock()
        self.uploads = 0

    @staticmethod
    def _identity(t: torch.Tensor) -> tuple:
        # the cache entry keeps the storage alive, so no other storage can take its address
        return (t.untyped_storage()._cdata, t.data_ptr(), t._version, t.dtype, t.shape, t.stride())

    @staticmethod
    def _same_contents(t: torch.Tensor, sent: torch.Tensor) -> bool:
        if t.dtype.is_floating_point:  # bit patterns: -0.0 vs 0.0 and NaNs count as changes
            bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
            return torch.equal(t.view(bits), sent.view(bits))
        return torch.equal(t, sent)

    def get(self, t: torch.Tensor, device, name: str) -> torch.Tensor:
        key = id(t)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0]() is t and hit[1] == self._identity(t) and self._same_contents(t, hit[3]):
            return hit[4]
        sent = t.detach().clone()
        x = _narrow(sent, name).to(device)
        with self._lock:
            self.uploads += 1
            try:
                ref = weakref.ref(t, lambda _, k=key, c=self._cache: c.pop(k, None))
            except TypeError:  # not weak-referenceable: no caching
                return x
            self._cache[key] = (ref, self._identity(t), t.untyped_storage(), sent, x)
        return x


_UPLOADS = _Uploads()
# One thread at a time runs a graph, from upload to results on the CPU. torch_xla 2.9 is
# not thread-safe here: concurrent syncs fail its "tensor_data" checks (on its CPU device
# too).
_RUN_LOCK = threading.RLock()


# The chip has no 64-bit integers and torch_xla's XLA_USE_32BIT_LONG mode fails on every
# cast from or to int64 (torch_xla 2.9, on its CPU device too), so the backend runs
# torch's int64 (token ids, positions, masks) as int32 and restores int64 on the way out,
# after checking that every value fits.
_NARROW = {torch.int64: torch.int32}


def _narrow(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.dtype not in _NARROW:
        return t
    to = _NARROW[t.dtype]
    if t.numel():
        low, high = torch.aminmax(t)
        info = torch.iinfo(to)
        if low < info.min or high > info.max:
            bad = int(high) if high > info.max else int(low)
            raise OverflowError(
                f"torch.compile(backend='tt'): {name} is {t.dtype} and holds {bad}, outside the "
                f"{to} range [{info.min}, {info.max}]; the chip has no 64-bit integers, so int64 "
                f"inputs run as {to}. Keep the values in that range, or compute this part on the CPU")
    return t.to(to)


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
                moved = _narrow(value, f"the graph constant {node.target!r}").to(device)
                if isinstance(value, torch.nn.Parameter):
                    moved = torch.nn.Parameter(moved, requires_grad=value.requires_grad)
                setattr(mod, name, moved)
        elif node.op == "call_function":
            node.args = torch.fx.node.map_aggregate(node.args, move)
            node.kwargs = torch.fx.node.map_aggregate(node.kwargs, move)
    gm.recompile()


def _compile_graph(gm: torch.fx.GraphModule, example_inputs, input_names: list[str]):
    from functorch.compile import make_boxed_func

    device = _xla_device()
    on_cpu = any(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in example_inputs)
    want = _output_dtypes(gm)  # before torch_xla rewrites the graph
    if on_cpu:
        from torch._subclasses.fake_tensor import unset_fake_temporarily
        with unset_fake_temporarily():  # aot calls us under its fake mode; constants are real
            _retarget(gm, device)
    compiled = _extract(gm, example_inputs, device)
    if not on_cpu:
        return make_boxed_func(compiled)
    # aot's forward takes dynamo's graph inputs in order (parameters included); names
    # from the user's code where they line up, positions otherwise
    names = (input_names if len(input_names) == len(example_inputs)
             else [f"graph input {i}" for i in range(len(example_inputs))])

    def run(*args):
        with _RUN_LOCK:
            out = _to_cpu(compiled(*_upload(args, names, device)))
        if isinstance(out, (list, tuple)) and want is not None:
            out = type(out)(o.to(w) if isinstance(o, torch.Tensor) and w is not None and o.dtype != w else o
                            for o, w in zip(out, want))
        return out

    return make_boxed_func(run)


def _extract(gm: torch.fx.GraphModule, example_inputs, device):
    """torch_xla's program for `gm`, built now, inside dynamo's compile (under its compile
    lock), from device tensors shaped like the example inputs. torch_xla's own backend
    builds it on the graph's first run instead, where its torch.fx passes run beside other
    threads' dynamo compiles and share torch.fx's process-global tracing state with them
    (measured: "replace_with already has .meta keys", "assert current_level > 0")."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily
    from torch_xla._dynamo import dynamo_bridge
    import torch_xla
    with unset_fake_temporarily():
        # made on the host and sent: device data, as real inputs are (zeros made on the
        # device would be one more XLA program)
        args = [torch.zeros(tuple(int(d) for d in t.shape), dtype=_NARROW.get(t.dtype, t.dtype)).to(device)
                if isinstance(t, torch.Tensor) else t for t in example_inputs]
        # torch_xla's IR debug mode, for this trace only: every op of the program carries
        # the aten op and the line of the graph's code it came from, which a lowering
        # failure names (`_in_model_terms` turns that line into the model's own)
        traces = {n.name: n.meta.get("stack_trace") for n in gm.graph.nodes}  # before torch_xla partitions gm
        debug = torch_xla._XLAC._get_ir_debug()
        torch_xla._XLAC._set_ir_debug(True)
        try:
            return dynamo_bridge.extract_compiled_graph(gm, args)
        except Exception as e:
            message = _in_model_terms(str(e), traces)
            if message == str(e):
                raise
            try:
                again = type(e)(message)
            except Exception:  # an exception type that does not take one message
                raise e from None
            raise again.with_traceback(e.__traceback__) from None
        finally:
            torch_xla._XLAC._set_ir_debug(debug)


# `<eval_with_key>.3:7:0 via .../torch/_ops.py:841:0`: line 7 of the code torch.fx generated
# for a graph (and the torch frame it went through), as a lowering error's location says it
_GRAPH_LINE = re.compile(r"(<eval_with_key>\.\d+):(\d+):\d+(?: via \S+)?")
_ASSIGNED = re.compile(r"^\s*(\w+)\s*=")
_TORCH_PATH = re.compile(r"/site-packages/(torch|torch_xla|functorch)/")
_USER_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')


def _in_model_terms(message: str, traces: dict) -> str:
    """A lowering error's graph-code locations replaced by the model's source lines: the
    graph line names the node it computes, whose stack trace (`traces`: node name -> the
    trace dynamo recorded from the model's forward) ends at the model's line
    (model.py:12 in forward: `x = torch.all(m)`)."""
    import linecache

    def source(match: re.Match) -> str:
        assigned = _ASSIGNED.match(linecache.getline(match.group(1), int(match.group(2))))
        frames = _USER_FRAME.findall((traces.get(assigned.group(1)) or "") if assigned else "")
        if not frames:
            return match.group(0)
        # the innermost frame outside torch itself (its wrappers, functional forms): the
        # model's line that made the op
        own = [f for f in frames if not _TORCH_PATH.search(f[0])]
        path, line, function, code = (own or frames)[-1]
        return f"{path}:{line} in {function}: `{code.strip()}`"

    return _GRAPH_LINE.sub(source, message)


def _upload(args, names, device) -> list:
    return [(_UPLOADS.get(a, device, name) if a.device.type == "cpu" else a)
            if isinstance(a, torch.Tensor) else a for a, name in zip(args, names)]


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
    import functools
    _xla_device()
    decompositions = get_decompositions([getattr(torch.ops.aten, n) for n in DECOMPOSE])
    fw_compiler = functools.partial(_compile_graph, input_names=_input_names(gm))
    bw_compiler = functools.partial(_compile_graph, input_names=[])  # inputs named by position
    return aot_autograd(fw_compiler=fw_compiler, bw_compiler=bw_compiler,
                        decompositions=decompositions)(gm, example_inputs, **kwargs)


def _input_names(gm: torch.fx.GraphModule) -> list[str]:
    """What each graph input is in the user's code (`L['x']`, `L['self']...weight`)."""
    names = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            arg = node.meta.get("grapharg")
            source = getattr(arg, "source", None)
            names.append(f"input {source.name()}" if source is not None else f"input {node.name}")
    return names


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
