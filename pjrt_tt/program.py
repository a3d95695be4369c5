"""The ttnn program IR: a typed list of calls into a ttnn-shaped module.

A program is what the lowering produces and a target runs. Each op names a ttnn
function (`fn`, a dotted path under the module) and its arguments; arguments are
program values, Python literals, or symbolic ttnn attributes (`Attr`, `ShapeArg`)
that the executor resolves on whichever module it runs against (sim, mock or real).
Every value carries the ttnn shape, dtype and layout the op is expected to return,
so a target's results can be checked against the program.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pjrt_tt.dtypes import ElementType

TILE = "TILE"
ROW_MAJOR = "ROW_MAJOR"


@dataclasses.dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]   # the ttnn (logical) shape
    dtype: str               # ttnn DataType name: float32, bfloat16, int32, ...
    layout: str = TILE

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.shape))}]{'' if self.layout == TILE else ' RM'}"


@dataclasses.dataclass(eq=False)
class Value:
    id: int
    type: TensorType

    def __str__(self) -> str:
        return f"%{self.id}"


@dataclasses.dataclass(frozen=True)
class Attr:
    """A ttnn module attribute named by path, e.g. Attr('bfloat16'), Attr('TILE_LAYOUT')."""
    path: str

    def __str__(self) -> str:
        return f"ttnn.{self.path}"


@dataclasses.dataclass(frozen=True)
class ShapeArg:
    """An argument the executor passes as ttnn.Shape(dims)."""
    dims: tuple[int, ...]

    def __str__(self) -> str:
        return f"ttnn.Shape({list(self.dims)})"


class _DeviceRef:
    """Stands for the target's device in op arguments (e.g. ttnn.full(..., device=))."""

    def __str__(self) -> str:
        return "device"


DEVICE = _DeviceRef()


def dtype_attr(dtype: str) -> Attr:
    return Attr(dtype)


def layout_attr(layout: str) -> Attr:
    return Attr("TILE_LAYOUT" if layout == TILE else "ROW_MAJOR_LAYOUT")


@dataclasses.dataclass(eq=False)
class Op:
    fn: str
    args: tuple
    kwargs: dict[str, Any]
    result: Value
    origin: str = ""         # the StableHLO op and source location it came from

    def operands(self) -> list[Value]:
        return [v for v in _flatten((self.args, tuple(self.kwargs.values()))) if isinstance(v, Value)]


@dataclasses.dataclass
class Constant:
    value: Value
    data: np.ndarray         # host data in the numpy form of value.type.dtype


@dataclasses.dataclass(frozen=True)
class HostType:
    """What the framework sees at the program boundary: element type and shape."""
    element: ElementType
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"tensor<{'x'.join(map(str, self.shape)) + 'x' if self.shape else ''}{self.element.mlir}>"


@dataclasses.dataclass
class Program:
    name: str
    inputs: list[Value]
    input_host_types: list[HostType]
    constants: list[Constant]
    ops: list[Op]
    outputs: list[Value]
    output_host_types: list[HostType]
    donated_inputs: frozenset[int] = frozenset()
    # Filled by passes.liveness: values dead after op i (never inputs, constants or
    # outputs). The executor deallocates those that own their storage and forgets views.
    frees: dict[int, list[Value]] = dataclasses.field(default_factory=dict)

    def format(self) -> str:
        lines = [f"ttnn program @{self.name}"]
        for i, (v, h) in enumerate(zip(self.inputs, self.input_host_types)):
            donated = "  (donated)" if i in self.donated_inputs else ""
            lines.append(f"  input  {v}: {v.type}  <- {h}{donated}")
        for c in self.constants:
            lines.append(f"  const  {c.value}: {c.value.type} = {_summary(c.data)}")
        for i, op in enumerate(self.ops):
            args = [_fmt(a) for a in op.args] + [f"{k}={_fmt(v)}" for k, v in op.kwargs.items()]
            line = f"  {op.result} = ttnn.{op.fn}({', '.join(args)}) -> {op.result.type}"
            if op.origin:
                line = f"{line:<90}  # {op.origin}"
            lines.append(line)
            if self.frees.get(i):
                views = storage_roots(self.ops)
                owners = [v for v in self.frees[i] if v.id not in views]
                if owners:
                    lines.append(f"  ttnn.deallocate({', '.join(map(str, owners))})")
        outs = ", ".join(f"{v}: {v.type} -> {h}" for v, h in zip(self.outputs, self.output_host_types))
        lines.append(f"  return {outs}")
        return "\n".join(lines) + "\n"


def _fmt(a: Any) -> str:
    if isinstance(a, (list, tuple)) and not isinstance(a, ShapeArg):
        inner = ", ".join(_fmt(x) for x in a)
        return f"[{inner}]"
    if isinstance(a, float):
        return repr(a)
    return str(a)


def _summary(data: np.ndarray) -> str:
    flat = np.asarray(data).ravel()
    if flat.dtype.kind in "fV":
        flat = flat.astype(np.float64)
    shown = ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in flat[:6].tolist())
    return f"[{shown}{', ...' if flat.size > 6 else ''}]"


def _flatten(x):
    if isinstance(x, (list, tuple)) and not isinstance(x, ShapeArg):
        for y in x:
            yield from _flatten(y)
    else:
        yield x


# ttnn ops whose result may share its input's device storage (a view).
VIEW_OPS = frozenset({"reshape"})


def storage_roots(ops: list[Op]) -> dict[int, int]:
    """For each value produced by a view op, the id of the value that owns its storage."""
    roots: dict[int, int] = {}
    for op in ops:
        if op.fn in VIEW_OPS:
            src = op.operands()[0].id
            roots[op.result.id] = roots.get(src, src)
    return roots
