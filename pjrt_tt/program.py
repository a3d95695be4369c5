"""The ttnn program IR: a typed list of calls into a ttnn-shaped module.

A program is what the lowering produces and a target runs. Each op names a ttnn
function (`fn`, a dotted path under the module) and its arguments; arguments are
program values, Python literals, or symbolic ttnn attributes (`Attr`, `ShapeArg`)
that the executor resolves on whichever module it runs against (sim, mock or real).
Every value carries the ttnn shape, dtype and layout the op is expected to return,
so a target's results can be checked against the program.

Control flow stays on the host: `While` and `Switch` hold nested `Block`s (op lists that
see every value defined before them). Their predicate / branch index, and dynamic slice
starts, are host scalars (`ScalarType` values): Python ints / bools the executor keeps
beside the tensors, made by host ops (`host.*`, see HOST_OPS). `host.read` reads a device
scalar back to the host (a sync); the other host ops compute on host scalars, e.g. a
loop counter the host follows without ever reading the device.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from pjrt_tt.dtypes import DEVICE_NUMPY, ElementType

TILE = "TILE"
ROW_MAJOR = "ROW_MAJOR"


@dataclasses.dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]   # the ttnn (logical) shape
    dtype: str               # ttnn DataType name: float32, bfloat16, int32, ...
    layout: str = TILE

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.shape))}]{'' if self.layout == TILE else ' RM'}"


@dataclasses.dataclass(frozen=True)
class ScalarType:
    """A host scalar: a device scalar read back to the host (a sync), or computed from
    such reads by host ops; op arguments use it as a plain Python int / bool."""
    dtype: str               # "int" or "bool", or "float" (an epsilon or scale a fused op
                             # takes as a number, read from a program argument: fusion.py)

    def __str__(self) -> str:
        return f"host {self.dtype}"


@dataclasses.dataclass(eq=False)
class Value:
    id: int
    type: TensorType | ScalarType

    @property
    def on_host(self) -> bool:
        return isinstance(self.type, ScalarType)

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


@dataclasses.dataclass(frozen=True)
class Construct:
    """An argument the executor builds once as ttnn.<path>(*args, **kwargs), e.g. a
    WormholeComputeKernelConfig; args and kwargs are literals, Attrs or Constructs:
    kwargs as ((name, value), ...)."""
    path: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    args: tuple = ()

    def __str__(self) -> str:
        return f"ttnn.{self.path}({', '.join([str(a) for a in self.args] + [f'{k}={v}' for k, v in self.kwargs])})"


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

    @property
    def results(self) -> list[Value]:
        return [self.result]


# Host ops: `Op`s whose fn starts with "host." run on the host (the executor's HOST_OPS),
# on host scalars; "host.read" is the one that reads a device scalar (a host sync).
HOST_READ = "host.read"


def _i32(x) -> int:  # device int32 arithmetic wraps
    return (int(x) + 2 ** 31) % 2 ** 32 - 2 ** 31


HOST_OPS = {  # the others, on host ints / bools, with the device's int32 semantics
    "host.clamp": lambda x, lo, hi: min(max(x, lo), hi),
    "host.add": lambda a, b: _i32(a + b),
    "host.sub": lambda a, b: _i32(a - b),
    "host.multiply": lambda a, b: _i32(a * b),
    "host.maximum": max,
    "host.minimum": min,
    "host.fmod": lambda a, b: int(math.fmod(a, b)) if b else 0,  # C's %; b == 0 is selected away
    "host.neg": lambda a: _i32(-a),
    "host.abs": lambda a: _i32(abs(a)),
    "host.lt": lambda a, b: a < b, "host.le": lambda a, b: a <= b,
    "host.gt": lambda a, b: a > b, "host.ge": lambda a, b: a >= b,
    "host.eq": lambda a, b: a == b, "host.ne": lambda a, b: a != b,
    "host.logical_and": lambda a, b: bool(a) and bool(b),
    "host.logical_or": lambda a, b: bool(a) or bool(b),
    "host.logical_xor": lambda a, b: bool(a) != bool(b),
    "host.logical_not": lambda a: not a,
    "host.where": lambda c, a, b: a if c else b,
    "host.int": int,
}


@dataclasses.dataclass(eq=False)
class Block:
    """A nested op list (loop condition / body, case branch). It sees every value defined
    before it (outer values, its loop's params); `results` are what it yields."""
    ops: list
    results: list            # Values (or Python literals, e.g. a constant predicate)
    frees: dict[int, list[Value]] = dataclasses.field(default_factory=dict)

    def captured(self) -> list[Value]:
        """Values used inside (at any depth) but defined outside this block."""
        defined, used = set(), {}
        for op in self.ops:
            for v in op.operands():
                if v.id not in defined:
                    used.setdefault(v.id, v)
            defined.update(r.id for r in op.results)
        for v in self.results:
            if isinstance(v, Value) and v.id not in defined:
                used.setdefault(v.id, v)
        return list(used.values())


@dataclasses.dataclass(eq=False)
class While:
    """Host-driven loop: params = inits; while cond (a host bool) holds, params = body
    results. Carried values are tensors the body creates fresh each iteration (never a
    view of a param or an outer value), so the executor frees each iteration's old ones."""
    inits: list[Value]
    params: list[Value]
    cond: Block              # results: [host bool]
    body: Block              # results: one per param, same types
    results: list[Value]
    origin: str = ""
    # Set by passes.liveness: inits that die at this loop; the loop frees them once
    # replaced (the carried tensor's first version need not outlive the first iteration).
    donated: list[bool] = dataclasses.field(default_factory=list)
    fn = "while"

    def blocks(self) -> list[Block]:
        return [self.cond, self.body]

    @property
    def result(self) -> Value:
        """For passes written for one-result ops: the last result, whose id is the highest
        of any value in the op (results are made after the blocks; never empty)."""
        return self.results[-1]

    def operands(self) -> list[Value]:
        own = {p.id for p in self.params}
        outer = [v for b in self.blocks() for v in b.captured() if v.id not in own]
        return list({v.id: v for v in self.inits + outer if isinstance(v, Value)}.values())


@dataclasses.dataclass(eq=False)
class Switch:
    """Runs branches[index] (out of range: the last, as stablehlo.case); each branch
    yields fresh tensors for `results`."""
    index: Value             # a host int / bool
    branches: list[Block]
    results: list[Value]
    origin: str = ""
    fn = "switch"

    def blocks(self) -> list[Block]:
        return self.branches

    result = While.result

    def operands(self) -> list[Value]:
        outer = [v for b in self.branches for v in b.captured()]
        return list({v.id: v for v in [self.index] + outer}.values())


@dataclasses.dataclass(eq=False)
class HostCallback:
    """A Python callback run on the host between the chip's ops (jax.debug.print, pure_callback,
    io_callback: pjrt_tt/host_callbacks.py). Its `args` are read back as the framework's arrays
    (`hosts_in`), callable `index` is called on them, and what it returns is uploaded as
    `results` (`hosts_out`). A host sync. A callback with no result gets a host marker as its
    one result, so that passes written for ops with a result see one; `effect`: it runs even
    when no result is used (debug and io callbacks)."""
    args: list[Value]
    hosts_in: list[HostType]
    results: list[Value]
    hosts_out: list[HostType]
    index: int
    effect: bool
    origin: str = ""
    fn = "host.callback"

    def blocks(self) -> list[Block]:
        return []

    result = While.result

    def operands(self) -> list[Value]:
        return list({v.id: v for v in self.args}.values())


STRUCTURED = (While, Switch, HostCallback)


def has_effect(op) -> bool:
    """Whether `op` must run even when none of its results is used: a callback with an
    effect, or a loop / branch holding one."""
    if isinstance(op, HostCallback):
        return op.effect
    return isinstance(op, STRUCTURED) and any(has_effect(o) for b in op.blocks() for o in b.ops)


@dataclasses.dataclass
class Constant:
    value: Value
    data: np.ndarray         # host data in the numpy form of value.type.dtype


@dataclasses.dataclass(frozen=True)
class HostType:
    """What the framework sees at the program boundary: element type and shape; and, for a
    64-bit integer, whether the chip holds it as its (low, high) uint32 words (`words`)
    instead of narrowed to its 32-bit carrier: a buffer whose values do not fit the carrier,
    and a program argument its arithmetic reads in 64 bits (ingest/words64.py)."""
    element: ElementType
    shape: tuple[int, ...]
    words: bool = False

    def __str__(self) -> str:
        held = " (as uint32 words)" if self.words else ""
        return f"tensor<{'x'.join(map(str, self.shape)) + 'x' if self.shape else ''}{self.element.mlir}>{held}"


def device_type(h: HostType) -> TensorType:
    """How a framework tensor is held on the chip: rank-0 as shape (1,), TILE layout;
    complex64 as float32 [2, *shape], its (re, im) planes leading (TILE pads the last two
    dims to 32: a trailing 2 would cost 16x); 64-bit integer words as uint32 [2, *shape],
    (low, high) planes leading likewise."""
    if h.element.is_complex:
        return TensorType((2, *h.shape), h.element.device, TILE)
    if h.words:
        return TensorType((2, *h.shape), "uint32", TILE)
    return TensorType(h.shape or (1,), h.element.device, TILE)


def device_array(data: np.ndarray, h: HostType) -> np.ndarray:
    """Host data in the form `device_type(h)` holds it (bool -> 0/1, rank-0 -> (1,), complex
    -> its planes: one copy); `data` itself (or a view of it) when it is in that form
    already: no copy."""
    t = device_type(h)
    if h.element.is_complex:
        planes = np.empty(t.shape, DEVICE_NUMPY[t.dtype])
        planes[0], planes[1] = np.real(data), np.imag(data)
        return planes
    if h.words:
        bits = np.asarray(data).astype(np.uint64)   # two's complement for int64
        return np.stack([bits & np.uint64(0xFFFFFFFF), bits >> np.uint64(32)]).astype(np.uint32)
    data = np.asarray(data)
    if data.dtype == np.bool_:   # numpy keeps a bool's raw byte (any nonzero is True) through astype
        data = data.view(np.uint8) != 0
    return data.astype(DEVICE_NUMPY[t.dtype], copy=False).reshape(t.shape)


def host_array(data: np.ndarray, h: HostType) -> np.ndarray:
    """The inverse of `device_array`: data read from a `device_type(h)` tensor -> the
    framework's array (complex planes interleaved again)."""
    if h.element.is_complex:
        planes = np.asarray(data, np.float32).reshape(device_type(h).shape)
        out = np.empty(h.shape, h.element.numpy)
        out.real, out.imag = planes[0], planes[1]
        return out
    if h.words:
        planes = np.asarray(data, np.uint32).reshape(device_type(h).shape).astype(np.uint64)
        return (planes[0] | (planes[1] << np.uint64(32))).astype(h.element.numpy)
    if h.element.is_bool:
        data = data != 0
    with np.errstate(over="ignore"):   # float32 beyond float16's range: +-inf, as on CPU
        return data.reshape(h.shape).astype(h.element.numpy)


@dataclasses.dataclass(eq=False)
class Prepare:
    """Const-eval (passes/const_eval.py): ops that only prepare parameters (program inputs or
    constants): layout, data format, permutation of a weight, a batch norm's scale folded
    into a conv weight. They run once per set of argument buffers and their results are kept
    with the buffers (runtime/buffer.py) until one is deleted; the main ops read `results`
    as they read inputs."""
    sources: list            # program inputs / constants (Values)
    ops: list                # Ops reading only `sources` and each other
    results: list            # the Values the main ops use


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
    prepare: list[Prepare] = dataclasses.field(default_factory=list)   # const-eval blocks
    # Per input: the (lo, hi) a 64-bit integer input's values must lie in for the program's
    # 32-bit arithmetic to be exact (the executable checks it); None for other inputs.
    # Per output: a bound of a 64-bit integer output's values. Empty: no 64-bit integers.
    input_ranges: tuple = ()
    output_ranges: tuple = ()
    range_limit: str = ""    # the op whose arithmetic limits input_ranges (`name` at location)
    range_source: bytes = b""   # narrow64.Boundary.proof_source: to re-prove other argument ranges
    # Run-time checks of values no bound was proven for (narrow64.Boundary.guards): per guard
    # (op, lo, hi); the last 2 * len(guards) outputs are each guard's float min and max, not
    # results the framework sees (`framework_outputs`).
    guards: tuple = ()

    @property
    def framework_outputs(self) -> int:
        return len(self.outputs) - 2 * len(self.guards)

    def format(self) -> str:
        lines = [f"ttnn program @{self.name}"]
        for i, (v, h) in enumerate(zip(self.inputs, self.input_host_types)):
            donated = "  (donated)" if i in self.donated_inputs else ""
            lines.append(f"  input  {v}: {v.type}  <- {h}{donated}")
        for c in self.constants:
            lines.append(f"  const  {c.value}: {c.value.type} = {_summary(c.data)}")
        for p in self.prepare:
            lines.append(f"  prepare from {', '.join(map(str, p.sources))} (once per buffer, kept with it):")
            _format_ops(lines, p.ops, {}, {}, "    ")
            lines.append(f"    keep {_fmt(p.results)}")
        _format_ops(lines, self.ops, self.frees, storage_roots(self.ops), "  ")
        outs = ", ".join(f"{v}: {v.type} -> {h}" for v, h in zip(self.outputs, self.output_host_types))
        lines.append(f"  return {outs}")
        return "\n".join(lines) + "\n"


def _format_ops(lines: list[str], ops: list, frees: dict, views: dict, pad: str) -> None:
    def add(line: str, origin: str) -> None:
        lines.append(f"{line:<90}  # {origin}" if origin else line)

    for i, op in enumerate(ops):
        if isinstance(op, While):
            carried = ", ".join(f"{p} = {v}{' (donated)' if op.donated and op.donated[k] else ''}"
                                for k, (p, v) in enumerate(zip(op.params, op.inits)))
            add(f"{pad}{', '.join(map(str, op.results))} = while ({carried}) {{", op.origin)
            lines.append(f"{pad}  cond:")
            _format_ops(lines, op.cond.ops, op.cond.frees, views, pad + "    ")
            lines.append(f"{pad}    continue if {_fmt(op.cond.results[0])}")
            lines.append(f"{pad}  body:")
            _format_ops(lines, op.body.ops, op.body.frees, views, pad + "    ")
            lines.append(f"{pad}    next {_fmt(op.body.results)}")
            lines.append(f"{pad}}} -> {', '.join(str(r.type) for r in op.results)}")
        elif isinstance(op, Switch):
            add(f"{pad}{', '.join(map(str, op.results))} = switch {op.index} {{", op.origin)
            for k, b in enumerate(op.branches):
                lines.append(f"{pad}  case {k}{' (and out of range)' if k == len(op.branches) - 1 else ''}:")
                _format_ops(lines, b.ops, b.frees, views, pad + "    ")
                lines.append(f"{pad}    yield {_fmt(b.results)}")
            lines.append(f"{pad}}} -> {', '.join(str(r.type) for r in op.results)}")
        elif isinstance(op, HostCallback):
            outs = ", ".join(f"{r}: {h}" for r, h in zip(op.results, op.hosts_out)) or str(op.result)
            ins = ", ".join(f"{a}: {h}" for a, h in zip(op.args, op.hosts_in))
            add(f"{pad}{outs} = host.callback[{op.index}]({ins})  (host sync)", op.origin)
        else:
            args = [_fmt(a) for a in op.args] + [f"{k}={_fmt(v)}" for k, v in op.kwargs.items()]
            name = op.fn if op.fn.startswith("host.") else f"ttnn.{op.fn}"
            note = "  (host sync)" if op.fn == HOST_READ else ""
            add(f"{pad}{op.result} = {name}({', '.join(args)}) -> {op.result.type}{note}", op.origin)
        owners = [v for v in frees.get(i, ()) if v.id not in views]
        if owners:
            lines.append(f"{pad}ttnn.deallocate({', '.join(map(str, owners))})")


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


def storage_roots(ops: list, roots: dict[int, int] | None = None) -> dict[int, int]:
    """For each value produced by a view op (in nested blocks too), the id of the value
    that owns its storage. Results of While / Switch are fresh tensors."""
    roots = {} if roots is None else roots
    for op in ops:
        if isinstance(op, STRUCTURED):
            for b in op.blocks():
                storage_roots(b.ops, roots)
        elif op.fn in VIEW_OPS:
            src = op.operands()[0].id
            roots[op.result.id] = roots.get(src, src)
    return roots
