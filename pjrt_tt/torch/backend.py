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

from pjrt_tt.dtypes import BY_MLIR, check_carrier_fits
from pjrt_tt.errors import InvalidArgument
from pjrt_tt.torch import rewrites


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
        x = _to_device(sent, device, name)
        with self._lock:
            self.uploads += 1
            try:
                ref = weakref.ref(t, lambda _, k=key, c=self._cache: c.pop(k, None))
            except TypeError:  # not weak-referenceable: no caching
                return x
            self._cache[key] = (ref, self._identity(t), t.untyped_storage(), sent, x)
        return x


_UPLOADS = _Uploads()
# One thread at a time runs or extracts a graph (upload to results on the CPU; extraction
# starts with torch_xla.sync(), which syncs every live device tensor, other threads' too).
# torch_xla 2.9 is not thread-safe here: concurrent syncs fail its "tensor_data" checks (on
# its CPU device too), and a run beside another thread's extraction failed in CI with
# "_check_tensor_need_materialization ... XLATensor without XLAData and IR".
_RUN_LOCK = threading.RLock()


def _to_device(t: torch.Tensor, device, name: str) -> torch.Tensor:
    """`t` on the device; a refused transfer names the graph input it was for. An int64 value
    beyond int32 is refused here: every program a graph compiles to computes int64 in int32
    (the device would hold it exactly, as words, and the program would refuse it without
    knowing the input's name)."""
    try:
        if t.dtype == torch.int64 and t.numel():
            check_carrier_fits(t.detach().numpy(), BY_MLIR["i64"],
                               f"the int64 tensor of shape {list(t.shape)}")
        return t.to(device)
    except (RuntimeError, InvalidArgument) as e:
        if "INVALID_ARGUMENT" not in str(e) and not isinstance(e, InvalidArgument):
            raise
        raise RuntimeError(f"torch.compile(backend='tt'): {name}: {e}") from None


def _retarget(gm: torch.fx.GraphModule, device) -> None:
    """Ops that create tensors on the CPU inside the graph (arange, full, _to_copy...)
    create them on the XLA device instead, where the rest of the graph lives."""
    def move(v):
        return device if isinstance(v, torch.device) and v.type == "cpu" else v
    for node in gm.graph.nodes:
        if node.op == "get_attr":  # constants the graph holds (lifted tensors, buffers)
            owner, _, name = node.target.rpartition(".")
            mod = gm.get_submodule(owner) if owner else gm
            value = getattr(mod, name)
            if isinstance(value, torch.Tensor) and value.device.type == "cpu":
                moved = _to_device(value, device, f"the graph constant {node.target!r}")
                if isinstance(value, torch.nn.Parameter):
                    moved = torch.nn.Parameter(moved, requires_grad=value.requires_grad)
                setattr(mod, name, moved)
        elif node.op == "call_function":
            node.args = torch.fx.node.map_aggregate(node.args, move)
            node.kwargs = torch.fx.node.map_aggregate(node.kwargs, move)
    gm.recompile()


def _compile_graph(gm: torch.fx.GraphModule, example_inputs, input_names: list[str], options=None):
    from functorch.compile import make_boxed_func

    from pjrt_tt.torch.options import compile_options

    device = _xla_device()
    on_cpu = any(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in example_inputs)
    if on_cpu:
        from torch._subclasses.fake_tensor import unset_fake_temporarily
        with unset_fake_temporarily():  # aot calls us under its fake mode; constants are real
            _retarget(gm, device)
    with compile_options(options):   # torch.compile(..., options=): for this graph's programs
        compiled = _watch_fallbacks(_extract(gm, example_inputs, device))
    if not on_cpu:
        return make_boxed_func(compiled)
    # aot's forward takes dynamo's graph inputs in order (parameters included); names
    # from the user's code where they line up, positions otherwise
    names = (input_names if len(input_names) == len(example_inputs)
             else [f"graph input {i}" for i in range(len(example_inputs))])

    def run(*args):
        with _RUN_LOCK:
            return _to_cpu(compiled(*_upload(args, names, device)))

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
        args = [torch.zeros(tuple(int(d) for d in t.shape), dtype=t.dtype).to(device)
                if isinstance(t, torch.Tensor) else t for t in example_inputs]
        # torch_xla's IR debug mode, for this trace only: every op of the program carries
        # the aten op and the line of the graph's code it came from, which a lowering
        # failure names (`_in_model_terms` turns that line into the model's own)
        traces = {n.name: n.meta.get("stack_trace") for n in gm.graph.nodes}  # before torch_xla partitions gm
        debug = torch_xla._XLAC._get_ir_debug()
        torch_xla._XLAC._set_ir_debug(True)
        try:
            with _RUN_LOCK:
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


class _Fallbacks:
    """aten ops torch_xla ran on the CPU (its fallback: a host round trip and a split
    program) while a compiled graph ran, counted from torch_xla's `aten::*` counters around
    each call and reported once per graph and op set, so users learn it from the backend
    rather than from torch_xla's metrics."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def snapshot() -> dict[str, int]:
        import torch_xla.debug.metrics as met
        return {n: met.counter_value(n) or 0 for n in met.counter_names() if n.startswith("aten::")}

    def record(self, before: dict[str, int], after: dict[str, int], reported: set) -> None:
        ran = {n: c - before.get(n, 0) for n, c in after.items() if c > before.get(n, 0)}
        if not ran:
            return
        with self._lock:
            for n, c in ran.items():
                self.counts[n] = self.counts.get(n, 0) + c
        new = frozenset(ran) - reported
        if new:
            reported.update(new)
            import warnings
            warnings.warn(
                f"torch.compile(backend='tt'): {', '.join(sorted(n[6:] for n in new))} ran on the CPU "
                f"(torch_xla has no lowering for it, so each call splits the graph and moves tensors "
                f"to the host and back); pjrt_tt.torch.backend.compile_counts()['cpu_fallbacks'] "
                f"counts such calls", RuntimeWarning, stacklevel=3)


_FALLBACKS = _Fallbacks()


def _watch_fallbacks(compiled):
    reported: set = set()

    def run(*args):
        before = _FALLBACKS.snapshot()
        out = compiled(*args)
        _FALLBACKS.record(before, _FALLBACKS.snapshot(), reported)
        return out

    return run


def _upload(args, names, device) -> list:
    return [(_UPLOADS.get(a, device, name) if a.device.type == "cpu" else a)
            if isinstance(a, torch.Tensor) else a for a, name in zip(args, names)]


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


def tt_backend(gm: torch.fx.GraphModule, example_inputs, options: dict | None = None, **kwargs):
    """The `torch.compile` backend "tt" (aot_autograd: forward and backward graphs).
    `options`: compile options (pjrt_tt/torch/options.py), e.g. {"optimization_level": 1}."""
    from torch._decomp import get_decompositions
    from torch._dynamo.backends.common import aot_autograd
    import functools

    from pjrt_tt.torch.options import _checked
    if options:
        _checked(options)   # a bad name fails here, naming the known ones
    _xla_device()
    rewrites.install()   # (for the next graphs, if the model's module came after the lookup)
    _rewrite_calls(gm)
    decompositions = get_decompositions([getattr(torch.ops.aten, n) for n in DECOMPOSE])
    fw_compiler = functools.partial(_compile_graph, input_names=_input_names(gm), options=options)
    bw_compiler = functools.partial(_compile_graph, input_names=[], options=options)  # inputs named by position
    return aot_autograd(fw_compiler=fw_compiler, bw_compiler=bw_compiler,
                        decompositions=decompositions)(gm, example_inputs, **kwargs)


def _rewrite_calls(gm: torch.fx.GraphModule) -> None:
    """Calls in dynamo's graph that become another form before aot_autograd traces it
    (REWRITE). scaled_dot_product_attention: left alone, aot picks the kernel for the example
    inputs' device: traced from CPU tensors that is `_scaled_dot_product_flash_attention_for_cpu`,
    which torch_xla runs on the CPU (and whose backward it cannot run at all); its math form
    is traced into ops torch_xla lowers, backward included. adaptive_avg_pool1d: torch_xla's
    own kernel for it is called on aot's fake tensors when the inputs are on the device, and
    fails there ("Expected XLA tensor"); the 2-D pool of a height-1 image is decomposed."""
    changed = False
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in REWRITE:
            node.target = REWRITE[node.target]
            changed = True
    if changed:
        gm.recompile()


def _adaptive_avg_pool1d(input, output_size):
    size = output_size[0] if isinstance(output_size, (list, tuple)) else output_size
    if size == 1:   # a pooler (Swin): the 2-D op on device tensors fails in aot the same way
        return input.mean(-1, keepdim=True)
    return torch.nn.functional.adaptive_avg_pool2d(input.unsqueeze(-2), (1, size)).squeeze(-2)


def _attention_math(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                    enable_gqa=False):
    """Attention written as HF's eager attention writes it (softmax(q k^T * scale + mask) v,
    the softmax in float32, grouped key / value heads expanded), the form optimization
    level 1 fuses into ttnn's SDPA. The causal and boolean masks become additive ones, as
    scaled_dot_product_attention makes them; a query row whose keys are all masked is 0, as
    torch's kernels make it (softmax alone gives NaN): a select on the output, outside the
    fused pattern. With dropout, aten's math form."""
    # scalars as tensors of the query's dtype: a Python float scalar reaches torch_xla as float64
    zero, neg = (torch.scalar_tensor(v, dtype=query.dtype, device=query.device) for v in (0.0, float("-inf")))
    empty = None
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        # what scaled_dot_product_attention does before any kernel: True keeps, False -> -inf
        empty = ~attn_mask.any(-1, keepdim=True)
        attn_mask = torch.where(attn_mask, zero, neg)
    elif attn_mask is not None:
        empty = (attn_mask == neg).all(-1, keepdim=True)
    if dropout_p:
        return torch.ops.aten._scaled_dot_product_attention_math(
            query, key, value, attn_mask, dropout_p, is_causal, None, scale=scale, enable_gqa=enable_gqa)[0]
    lq, lk = query.shape[-2], key.shape[-2]
    if enable_gqa and key.dim() == 4 and key.shape[1] != query.shape[1]:   # HF's repeat_kv
        b, h, s, d = key.shape
        n = query.shape[1] // h
        key = key[:, :, None].expand(b, h, n, s, d).reshape(b, h * n, s, d)
        value = value[:, :, None].expand(b, h, n, s, value.shape[-1]).reshape(b, h * n, s, value.shape[-1])
    if is_causal:   # top-left aligned: row i sees keys 0..i, never none
        attn_mask = torch.where(torch.ones(lq, lk, dtype=torch.bool, device=query.device).tril(), zero, neg)
    scores = torch.matmul(query, key.transpose(-2, -1)) * (query.shape[-1] ** -0.5 if scale is None else scale)
    if attn_mask is not None:
        scores = scores + attn_mask
    out = torch.matmul(scores.softmax(-1, dtype=torch.float32).to(query.dtype), value)
    return out if empty is None else torch.where(empty, zero, out)


REWRITE = {torch._C._nn.scaled_dot_product_attention: _attention_math,
           torch.adaptive_avg_pool1d: _adaptive_avg_pool1d}


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
# batch norm -> batch_norm_inference / batch_norm_training / batch_norm_grad), or it has
# none and runs them on the CPU: adaptive average pooling whose output size does not divide
# the input (torch_xla lowers only the divisible case), or its lowering is wrong (dropout).
# Attention and 1-D adaptive pooling: REWRITE.
DECOMPOSE = ("native_layer_norm", "native_layer_norm_backward", "native_batch_norm",
             "native_batch_norm_backward", "_native_batch_norm_legit",
             "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional",
             "_adaptive_avg_pool2d",
             # torch_xla 2.9's native_dropout scales the kept values by 1 / p instead of
             # 1 / (1 - p) (measured on its CPU device too: x4 at p = 0.25): torch's own form,
             # a uniform draw compared with p, is exact
             "native_dropout", "native_dropout_backward")


def compile_counts() -> dict[str, int]:
    """How often each layer compiled so far: dynamo graphs, torch_xla programs (XLA
    compiles, cache misses of torch_xla's graph cache) and pjrt-tt lowerings; and how
    many aten ops compiled graphs ran on the CPU (torch_xla fallbacks; goal 0, by op in
    `cpu_fallback_ops()`)."""
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
    out["cpu_fallbacks"] = sum(_FALLBACKS.counts.values())
    return out


def cpu_fallback_ops() -> dict[str, int]:
    """aten op -> how many times compiled graphs ran it on the CPU so far."""
    with _FALLBACKS._lock:
        return {n[6:]: c for n, c in _FALLBACKS.counts.items()}


rewrites.install()   # imported when torch.compile looks "tt" up: the model's classes exist by then
