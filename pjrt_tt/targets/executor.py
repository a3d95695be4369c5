"""The one program executor: calls a ttnn-shaped module (sim, mock or real ttnn).

A program is bound once per (target, chip): ttnn functions and symbolic arguments are
resolved up front, so running it is a tight loop of calls. Every op's result shape, dtype
and layout is checked against the program the first time the op runs, which is how the sim
and real ttnn (mock) keep the lowering honest; later runs skip the check, as they get the
same metadata (a program's input types are checked on every call by the runtime, and no
op's result metadata depends on values).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from pjrt_tt import host_callbacks
from pjrt_tt.dtypes import DEVICE_NUMPY, check_carrier_fits
from pjrt_tt.errors import ResourceExhausted, TTError, Unimplemented
from pjrt_tt.program import (DEVICE, HOST_OPS, HOST_READ, Attr, Construct, HostCallback, Program, ShapeArg, Switch,
                             TensorType, Value, While, device_array, device_type, layout_attr, storage_roots)
from pjrt_tt.program import host_array as framework_array


def resolve_attr(module, path: str):
    path, _, pick = path.partition("[")  # "sort[1]": element 1 of a multi-result op's list
    obj = module
    for part in path.split("."):
        obj = getattr(obj, part)
    if pick:
        fn, k = obj, int(pick.rstrip("]"))
        return lambda *args, **kwargs: fn(*args, **kwargs)[k]
    return obj


def ttnn_message(e: Exception) -> str:
    """The informative part of a ttnn exception (without the TT_FATAL header and backtrace)."""
    text = str(e)
    if "info:" in text:
        text = text.split("info:", 1)[1]
    return text.split("backtrace:", 1)[0].strip()


def out_of_memory(e: Exception, where: str) -> ResourceExhausted | None:
    """ttnn's out-of-memory failure as our ResourceExhausted (its message names the sizes);
    None for any other failure."""
    message = ttnn_message(e)
    if "Out of Memory" in message:
        return ResourceExhausted(f"out of TT device memory {where}: {message}")
    return None


def op_error(op, e: Exception) -> TTError:
    if isinstance(e, TTError):   # ours, from a host step: keeps its code, gains the op it was for
        return type(e)(f"{op.origin}: {e}")
    return (out_of_memory(e, f"in ttnn.{op.fn} for {op.origin}")
            or TTError(f"ttnn.{op.fn} failed for {op.origin}: {ttnn_message(e)}"))


def host_array(ttnn, tensor, dtype: str) -> np.ndarray:
    """A device tensor of `dtype` (by name) read back to a host numpy array. A host sync."""
    host = ttnn.from_device(tensor)
    if dtype == "bfloat16":  # ttnn's to_numpy() of bfloat16 is an unusable object array
        host = ttnn.to_dtype(host, ttnn.float32)
    return np.asarray(host.to_numpy())   # (bfloat8_b / bfloat4_b come back as float32)


def read_tensor(ttnn, tensor, t: TensorType) -> np.ndarray:
    """A device tensor of type `t` read back as a host array of t's numpy form and shape."""
    return host_array(ttnn, tensor, t.dtype).astype(DEVICE_NUMPY[t.dtype]).reshape(t.shape)


def ttnn_host_form(data: np.ndarray, dtype: str) -> np.ndarray:
    """The host array real ttnn.Tensor takes: it refuses non-contiguous arrays (stride-0
    broadcasts too; measured, mock) and converts bfloat16 and block floats from float32, so
    those cost one copy here; anything else is passed as it is."""
    if dtype in ("bfloat16", "bfloat8_b", "bfloat4_b"):
        return np.ascontiguousarray(data, dtype=np.float32)
    return np.ascontiguousarray(data)


def _read(ttnn, t: TensorType, kind: str, on_mesh: bool) -> Callable:
    """host.read: a rank-0/(1,) device tensor -> Python int, bool or float. A host sync.
    On a mesh every chip's copy is read (ttnn refuses to read a mesh tensor whole without a
    mesh composer): the host drives all chips with one value, so they must agree. When
    several processes share the mesh (the sim's `agree`), each reads its own chips and every
    process gets all processes' values, so all of them take the same branch or fail alike."""
    def scalar(x):
        return host_array(ttnn, x, t.dtype).reshape(-1)[0].item()

    agree = getattr(ttnn, "agree", None)   # the sim's MeshModule; real ttnn has no such thing

    def read(x):
        if on_mesh:
            values = [scalar(s) for s in ttnn.get_device_tensors(x) if s is not None]
            if agree is not None:
                values = [v for mine in agree(values) for v in mine]
            if any(v != values[0] for v in values):
                raise Unimplemented(f"a value the host must read differs across the mesh's chips "
                                    f"({values}), but the host drives every chip with one value (a loop "
                                    f"count, a branch, an offset); pjrt-tt does not run this partitioned "
                                    f"program on a mesh")
            v = values[0]
        else:
            v = scalar(x)
        return bool(v) if kind == "bool" else float(v) if kind == "float" else int(v)
    return read


class BoundProgram:
    """A program bound to a ttnn-shaped module and a device. Every block (the top level,
    loop conditions and bodies, case branches) is bound once into a list of steps, so
    each loop iteration is the same tight loop of pre-resolved calls.

    on_mesh: `device` is a mesh of several chips (an SPMD per-device program).

    validate_only: run each nested block exactly once (a loop's cond and body once, every
    branch of a switch), whatever the host reads say: for the mock target, whose reads
    are zeros, so every op is still checked without trusting loop counts.
    """

    def __init__(self, program: Program, ttnn, device, validate_only: bool = False, on_mesh: bool = False):
        self.program = program
        self.ttnn = ttnn
        self.device = device
        self.validate_only = validate_only
        self.on_mesh = on_mesh   # `device` is a mesh of several chips (see _read)
        self.timer: Callable | None = None   # perf hook: timer(op, host ns) per op (pjrt_tt/perf)
        self._views = storage_roots(program.ops)
        self.steps = self._bind_block(program.ops, program.frees)
        self.prepares = [self._bind_prepare(p) for p in program.prepare]
        self.prepared_ids = [v.id for p in program.prepare for v in p.results]
        self.input_ids = [v.id for v in program.inputs]
        self.const_ids = [c.value.id for c in program.constants]
        self.output_ids = [v.id for v in program.outputs]

    # --- binding --------------------------------------------------------------------
    def _bind_block(self, ops: list, frees: dict) -> list[list]:
        """[fn, build, op, expect, frees, result id] per op; `expect` (the result metadata to
        check) is dropped once the op's first result passed."""
        steps = []
        for i, op in enumerate(ops):
            drop = [(v.id, v.id not in self._views) for v in frees.get(i, ()) if not v.on_host]
            if isinstance(op, While):
                steps.append([self._bind_while(op), None, op, None, drop, None])
            elif isinstance(op, Switch):
                steps.append([self._bind_switch(op), None, op, None, drop, None])
            elif isinstance(op, HostCallback):
                steps.append([self._bind_callback(op), None, op, None, drop, None])
            else:
                if op.fn == HOST_READ:
                    fn, expect = _read(self.ttnn, op.operands()[0].type, op.result.type.dtype, self.on_mesh), None
                elif op.fn in HOST_OPS:
                    fn, expect = HOST_OPS[op.fn], None
                else:
                    try:
                        fn = resolve_attr(self.ttnn, op.fn)
                    except AttributeError:
                        raise TTError(f"the target's ttnn has no `{op.fn}` (needed for {op.origin})") from None
                    expect = self._expected_meta(op.result.type)
                steps.append([fn, self._arg_builder((op.args, op.kwargs), flat=True), op, expect, drop, op.result.id])
        return steps

    def _bind_prepare(self, p) -> tuple:
        """A const-eval block: (steps, source ids, result ids, ids to free once run (the
        intermediates owning storage no result lives in), ids the results' storage belongs to)."""
        roots = storage_roots(p.ops)
        kept = {roots.get(v.id, v.id) for v in p.results}
        made = [op.result.id for op in p.ops if not op.result.on_host]   # (host scalars: nothing to free)
        drop = [i for i in made if i not in kept and i not in roots]
        return self._bind_block(p.ops, {}), [v.id for v in p.sources], [v.id for v in p.results], drop, \
            [i for i in made if i in kept]

    def prepare(self, k: int, sources: list) -> tuple[list, list]:
        """Runs const-eval block k on its source tensors: (its results, the tensors to
        deallocate when they are dropped)."""
        steps, srcs, results, drop, owners = self.prepares[k]
        env = dict(zip(srcs, sources))
        self._run_steps(steps, env)
        for vid in drop:
            self.ttnn.deallocate(env[vid])
        return [env[i] for i in results], [env[i] for i in owners]

    def _bind_results(self, block) -> Callable[[dict], list]:
        build = self._arg_builder((block.results, {}))
        return lambda env: build(env)[0]

    def _bind_callback(self, op: HostCallback) -> Callable[[dict], None]:
        """Reads the operands back as the framework's arrays, calls the callable, uploads what
        it returns. validate_only (the mock check): the callable is the user's code (it
        prints, it writes files), so it is not called; zeros of the result types stand in."""
        ttnn, device = self.ttnn, self.device
        reads = [(a.id, a.type, h) for a, h in zip(op.args, op.hosts_in)]
        writes = [(r.id, h) for r, h in zip(op.results, op.hosts_out)]
        marker = None if op.hosts_out else op.results[0].id
        if self.on_mesh:
            raise Unimplemented(f"a Python callback ({op.origin}) in a program partitioned over several chips: "
                                f"pjrt-tt runs callbacks in single-device programs only so far")

        def run_callback(env: dict) -> None:
            if self.validate_only:
                values = [np.zeros(h.shape, h.element.numpy) for _, h in writes]
            else:
                args = [framework_array(read_tensor(ttnn, env[i], t), h) for i, t, h in reads]
                values = host_callbacks.lookup(op.index)(*args)
            for (rid, h), value in zip(writes, values):
                value = np.asarray(value)
                check_carrier_fits(value, h.element, f"the result of the Python callback at {op.origin}")
                t = device_type(h)
                env[rid] = ttnn.Tensor(ttnn_host_form(device_array(value, h), t.dtype),
                                       data_type=resolve_attr(ttnn, t.dtype),
                                       layout=resolve_attr(ttnn, layout_attr(t.layout).path), device=device)
            if marker is not None:
                env[marker] = 0
        return run_callback

    def _bind_while(self, op: While) -> Callable[[dict], None]:
        cond, body = self._bind_block(op.cond.ops, op.cond.frees), self._bind_block(op.body.ops, op.body.frees)
        cond_out, body_out = self._bind_results(op.cond), self._bind_results(op.body)
        build_inits = self._arg_builder((op.inits, {}))  # values, or literals for host scalars
        param_ids, result_ids = [v.id for v in op.params], [v.id for v in op.results]
        run, validate_only, ttnn = self._run_steps, self.validate_only, self.ttnn
        # Host scalars (followed loop counters) are carried too, but never freed / cloned.
        donated = [not p.on_host and d for p, d in zip(op.params, op.donated or [False] * len(op.params))]
        device = [not p.on_host for p in op.params]

        def run_while(env: dict) -> None:
            inits = build_inits(env)[0]
            carried = inits
            while True:
                env.update(zip(param_ids, carried))
                run(cond, env)
                if not validate_only and not cond_out(env)[0]:
                    break
                run(body, env)
                new = body_out(env)
                # The old carried tensors die here (the body made fresh ones), except the
                # inits the enclosing block still owns.
                for old, init, given, dev in zip(carried, inits, donated, device):
                    if dev and (old is not init or given):
                        ttnn.deallocate(old)
                carried = new
                if validate_only:
                    break
            for pid in param_ids:
                env.pop(pid, None)
            for rid, t, init, given, dev in zip(result_ids, carried, inits, donated, device):
                env[rid] = ttnn.clone(t) if dev and t is init and not given else t  # 0 trips: no aliasing
        return run_while

    def _bind_switch(self, op: Switch) -> Callable[[dict], None]:
        branches = [(self._bind_block(b.ops, b.frees), self._bind_results(b)) for b in op.branches]
        index_id, result_ids, last = op.index.id, [v.id for v in op.results], len(op.branches) - 1
        run, validate_only, deallocate = self._run_steps, self.validate_only, self.ttnn.deallocate

        def run_switch(env: dict) -> None:
            if validate_only:  # every branch once; keep the first one's results
                outs = []
                for steps, out in branches:
                    run(steps, env)
                    outs.append(out(env))
                for extra in outs[1:]:
                    for t in extra:
                        deallocate(t)
                env.update(zip(result_ids, outs[0]))
                return
            k = int(env[index_id])
            steps, out = branches[k if 0 <= k <= last else last]
            run(steps, env)
            env.update(zip(result_ids, out(env)))
        return run_switch

    def _arg_builder(self, spec, flat: bool = False):
        """env -> (args, kwargs) for `spec` (args, kwargs). `flat`: for the usual op, whose Values
        sit directly in its positional list, (template, slots, kwargs) instead: the op loop
        copies the template and fills those slots itself (no call per op)."""
        ttnn, device = self.ttnn, self.device

        def build(a) -> Callable[[dict], Any]:
            if isinstance(a, Value):
                vid = a.id
                return lambda env: env[vid]
            if isinstance(a, Attr):
                obj = resolve_attr(ttnn, a.path)
                return lambda env: obj
            if isinstance(a, ShapeArg):
                shape = ttnn.Shape(list(a.dims))
                return lambda env: shape
            if isinstance(a, Construct):
                obj = resolve_attr(ttnn, a.path)(*[build(v)(None) for v in a.args],
                                                 **{k: build(v)(None) for k, v in a.kwargs})
                return lambda env: obj
            if a is DEVICE:
                return lambda env: device
            if isinstance(a, (list, tuple)):
                parts = [build(x) for x in a]
                kind = type(a)
                if all(isinstance(x, (int, float, bool, str, type(None))) for x in a):
                    return lambda env: a  # a constant list: no work per call
                return lambda env: kind(p(env) for p in parts)
            if isinstance(a, dict):
                items = [(k, build(v)) for k, v in a.items()]
                return lambda env: {k: p(env) for k, p in items}
            return lambda env: a

        args, kwargs = spec
        # The usual op: its Values sit directly in the positional list, everything else is
        # fixed. Then a call copies a template and fills those slots.
        slots = [(i, a.id) for i, a in enumerate(args) if isinstance(a, Value)]
        nested = any(isinstance(a, (list, tuple, dict)) for a in args) or any(
            isinstance(v, (Value, list, tuple, dict)) for v in kwargs.values())
        if not nested:
            template = [None if isinstance(a, Value) else build(a)(None) for a in args]
            fixed_kwargs = {k: build(v)(None) for k, v in kwargs.items()}
            if flat:
                return template, slots, fixed_kwargs

            def fill(env):
                call = template.copy()
                for i, vid in slots:
                    call[i] = env[vid]
                return call, fixed_kwargs
            return fill
        build_args, build_kwargs = build(list(args)), build(kwargs)
        return lambda env: (build_args(env), build_kwargs(env))

    def _expected_meta(self, t: TensorType):
        layout = "TILE_LAYOUT" if t.layout == "TILE" else "ROW_MAJOR_LAYOUT"
        return tuple(t.shape), resolve_attr(self.ttnn, t.dtype), resolve_attr(self.ttnn, layout)

    # --- running --------------------------------------------------------------------
    def _run_steps(self, steps: list[list], env: dict) -> None:
        deallocate, timer = self.ttnn.deallocate, self.timer
        for step in steps:
            fn, build, op, expect, frees, rid = step
            if build is None:  # While / Switch: runs its blocks against env
                fn(env)
            else:
                if timer is not None:   # perf: host cost of building the args and the ttnn call
                    start = time.perf_counter_ns()
                if type(build) is tuple:   # (template, slots, kwargs): see _arg_builder
                    args = build[0].copy()
                    for i, vid in build[1]:
                        args[i] = env[vid]
                    kwargs = build[2]
                else:
                    args, kwargs = build(env)
                try:
                    out = fn(*args, **kwargs)
                except Exception as e:
                    raise op_error(op, e) from e
                if timer is not None:
                    timer(op, time.perf_counter_ns() - start)
                if expect is not None:
                    if (tuple(out.shape), out.dtype, out.layout) != expect:
                        raise TTError(
                            f"ttnn.{op.fn} for {op.origin} returned {list(out.shape)} {out.dtype} "
                            f"{out.layout} where the program expects {op.result.type} "
                            f"(a pjrt-tt lowering bug; please report it)")
                    step[3] = None   # checked: later runs of this op get the same metadata
                env[rid] = out
            for vid, owns in frees:
                t = env.pop(vid)
                if owns:
                    deallocate(t)

    def run(self, inputs: list, constants: list, prepared: list | None = None) -> list:
        """`prepared`: the const-eval results (program.prepare's, in order) the caller keeps;
        None runs the blocks here and frees their results after the run."""
        env = dict(zip(self.input_ids, inputs))
        env.update(zip(self.const_ids, constants))
        owned = []
        if prepared is None and self.prepares:
            prepared = []
            for k, (_, srcs, _, _, _) in enumerate(self.prepares):
                results, owners = self.prepare(k, [env[i] for i in srcs])
                prepared += results
                owned += owners
        if prepared:
            env.update(zip(self.prepared_ids, prepared))
        try:
            self._run_steps(self.steps, env)
        finally:
            for t in owned:
                self.ttnn.deallocate(t)
        return [env[i] for i in self.output_ids]
