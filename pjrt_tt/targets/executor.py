"""The one program executor: calls a ttnn-shaped module (sim, mock or real ttnn).

A program is bound once per (target, chip): ttnn functions and symbolic arguments are
resolved up front, so running it is a tight loop of calls. Every result's shape, dtype
and layout is checked against the program, which is how the sim and real ttnn (mock)
keep the lowering honest.
"""
from __future__ import annotations

from typing import Any, Callable

from pjrt_tt.errors import ResourceExhausted, TTError
from pjrt_tt.program import DEVICE, Attr, Program, ShapeArg, TensorType, Value, storage_roots


def resolve_attr(module, path: str):
    obj = module
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def ttnn_message(e: Exception) -> str:
    """The informative part of a ttnn exception (without the TT_FATAL header and backtrace)."""
    text = str(e)
    if "info:" in text:
        text = text.split("info:", 1)[1]
    return text.split("backtrace:", 1)[0].strip()


def op_error(op, e: Exception) -> TTError:
    message = ttnn_message(e)
    if "Out of Memory" in message:
        return ResourceExhausted(f"out of TT device memory in ttnn.{op.fn} for {op.origin}: {message}")
    return TTError(f"ttnn.{op.fn} failed for {op.origin}: {message}")


class BoundProgram:
    def __init__(self, program: Program, ttnn, device):
        self.program = program
        self.ttnn = ttnn
        views = storage_roots(program.ops)
        self.steps: list[tuple[Callable, Callable, Any]] = []
        for i, op in enumerate(program.ops):
            try:
                fn = resolve_attr(ttnn, op.fn)
            except AttributeError:
                raise TTError(f"the target's ttnn has no `{op.fn}` (needed for {op.origin})") from None
            build = self._arg_builder((op.args, op.kwargs), device)
            frees = [(v.id, v.id not in views) for v in program.frees.get(i, ())]
            self.steps.append((fn, build, op, frees))
        self.input_ids = [v.id for v in program.inputs]
        self.const_ids = [c.value.id for c in program.constants]
        self.output_ids = [v.id for v in program.outputs]
        self._expected = {op.result.id: self._expected_meta(op.result.type) for op in program.ops}

    def _arg_builder(self, spec, device) -> Callable[[dict], Any]:
        ttnn = self.ttnn

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
        build_args, build_kwargs = build(list(args)), build(kwargs)
        return lambda env: (build_args(env), build_kwargs(env))

    def _expected_meta(self, t: TensorType):
        layout = "TILE_LAYOUT" if t.layout == "TILE" else "ROW_MAJOR_LAYOUT"
        return tuple(t.shape), resolve_attr(self.ttnn, t.dtype), resolve_attr(self.ttnn, layout)

    def run(self, inputs: list, constants: list) -> list:
        env = dict(zip(self.input_ids, inputs))
        env.update(zip(self.const_ids, constants))
        deallocate = self.ttnn.deallocate
        for fn, build, op, frees in self.steps:
            args, kwargs = build(env)
            try:
                out = fn(*args, **kwargs)
            except Exception as e:
                raise op_error(op, e) from e
            shape, dtype, layout = self._expected[op.result.id]
            if tuple(out.shape) != shape or out.dtype != dtype or out.layout != layout:
                raise TTError(
                    f"ttnn.{op.fn} for {op.origin} returned {list(out.shape)} {out.dtype} "
                    f"{out.layout} where the program expects {op.result.type} "
                    f"(a pjrt-tt lowering bug; please report it)")
            env[op.result.id] = out
            for vid, owns in frees:
                t = env.pop(vid)
                if owns:
                    deallocate(t)
        return [env[i] for i in self.output_ids]
