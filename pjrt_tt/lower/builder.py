"""The builder rules emit into: `Lowering`, and the entries it keeps per MLIR value.

An entry is a program `Value`, a `Splat` (a constant not yet put on the device: splats let
a rule use ttnn's tensor-scalar forms, and are materialised with `ttnn.full` only when a
consumer needs a tensor) or a `Broadcast` (a broadcast not yet materialised). Rules reach
the compile context as `lo.ctx` (mesh shape, numerics, system), as JAX hands its
LoweringRuleContext to every rule.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Union

import numpy as np
from jaxlib.mlir import ir

from pjrt_tt.compile_context import CompileContext
from pjrt_tt.errors import ResourceExhausted, UnsupportedOp
from pjrt_tt.ingest import describe_and_site
from pjrt_tt.lower.registry import RULES
from pjrt_tt.program import (DEVICE, HOST_OPS, HOST_READ, Attr, Constant, HostType, Op, ScalarType, ShapeArg,
                             TensorType, Value, device_array, device_type, dtype_attr, layout_attr)
from pjrt_tt.ttnn_facts import MAX_DIM, NARROW_REFUSED


@dataclasses.dataclass(frozen=True)
class Splat:
    value: float | int | bool
    host: HostType


@dataclasses.dataclass(frozen=True)
class Broadcast:
    """A broadcast not yet materialised: `source` has the result's rank with size-1 dims
    where it is to be repeated. Elementwise rules hand `source` to ttnn, whose binary and
    ternary ops broadcast like numpy; other consumers get a ttnn.repeat."""
    source: Value
    host: HostType


Entry = Union[Value, Splat, Broadcast]


class Scoped:
    """A mapping with one layer per open block: entries made inside a block (host values
    it defines) are seen there and in blocks nested in it, and dropped when it closes."""

    def __init__(self):
        self.layers: list[dict] = [{}]

    def get(self, key, default=None):
        for layer in reversed(self.layers):
            if key in layer:
                return layer[key]
        return default

    def __contains__(self, key) -> bool:
        return any(key in layer for layer in self.layers)

    def __setitem__(self, key, value) -> None:
        self.layers[-1][key] = value


class Lowering:
    def __init__(self, funcs: dict[str, ir.Operation], name: str, ctx: CompileContext):
        self.funcs = funcs
        self.name = name
        self.ctx = ctx             # read-only: the same for every rule of this compile
        self.ops: list[Op] = []
        self.constants: list[Constant] = []
        self.env: dict[ir.Value, Entry] = {}
        self._next_id = 0
        self._reshaped_from: dict[int, Value] = {}
        self.origin = ""           # the StableHLO op being lowered, for dumps and errors
        self.location = ""
        self.site = None           # where the op being lowered came from (ingest.source_site)
        self._reads = Scoped()     # host reads and host ops already made, by operands
        self.shadows = Scoped()    # device value id -> its value on the host (see shadow())

    # --- values ---------------------------------------------------------------------
    def new_value(self, t: TensorType) -> Value:
        self._next_id += 1
        return Value(self._next_id, t)

    def entry(self, v: ir.Value) -> Entry:
        return self.env[v]

    def get(self, v: ir.Value) -> Value:
        """The operand as a device tensor (materialising a splat if need be)."""
        return self.materialize(self.env[v])

    def materialize(self, e: Entry) -> Value:
        if isinstance(e, Value):
            return e
        t = device_type(e.host)
        if isinstance(e, Broadcast) and 0 not in t.shape:
            x = e.source
            reps = tuple(n // s for s, n in zip(x.type.shape, t.shape))
            return self.emit("repeat", x, ShapeArg(reps), result=dataclasses.replace(x.type, shape=t.shape))
        # a splat, or a broadcast to an empty shape (ttnn.repeat of an empty tensor keeps its
        # tile padding: [0, 32] for [0, 3], measured on mock): nothing to copy, a fill
        value = e.value if not isinstance(e, Broadcast) else 0
        fill = float(value) if t.dtype in ("float32", "bfloat16") else int(value)
        return self.emit("full", ShapeArg(t.shape), fill, result=t, dtype=dtype_attr(t.dtype),
                         layout=layout_attr(t.layout), device=DEVICE)

    def constant(self, data: np.ndarray, h: HostType) -> Value:
        v = self.new_value(device_type(h))
        self.constants.append(Constant(v, device_array(data, h)))
        return v

    # --- emitting -------------------------------------------------------------------
    def emit(self, fn: str, *args, result: TensorType | ScalarType, **kwargs) -> Value:
        if isinstance(result, TensorType) and any(d > MAX_DIM for d in result.shape):
            raise ResourceExhausted(
                f"{self.origin}{' at ' + self.location if self.location else ''} needs a {result.dtype}"
                f"{list(result.shape)} tensor: ttnn's shapes hold dims up to {MAX_DIM}, and no TT device's "
                f"memory holds that many elements")
        if fn in NARROW_REFUSED and isinstance(result, TensorType) and result.dtype in NARROW_REFUSED[fn]:
            return self._via_uint32(fn, args, result, kwargs)
        out = self.new_value(result)
        origin = f"{self.origin} {self.location}" if self.location else self.origin
        self.ops.append(Op(fn, tuple(args), kwargs, out, origin))
        if isinstance(result, TensorType) and all(d == 1 for d in result.shape):
            self._shadow_op(fn, args, kwargs, out)
        return out

    def _via_uint32(self, fn: str, args: tuple, result: TensorType, kwargs: dict) -> Value:
        """An op ttnn refuses for uint8 / uint16 (NARROW_REFUSED), run on uint32 (exact both ways)."""
        def widen(a):
            if isinstance(a, (list, tuple)):
                return type(a)(widen(b) for b in a)
            return self.typecast(a, "uint32") if isinstance(a, Value) and a.type.dtype == result.dtype else a
        if "dtype" in kwargs:   # a creation op (arange)
            kwargs = dict(kwargs, dtype=dtype_attr("uint32"))
        out = self.emit(fn, *widen(args), result=dataclasses.replace(result, dtype="uint32"), **kwargs)
        return self.typecast(out, result.dtype)

    def reshape(self, x: Value, shape: tuple[int, ...]) -> Value:
        shape = tuple(shape) or (1,)
        x = self._reshaped_from.get(x.id, x)  # reshape(reshape(y)) == reshape(y)
        if tuple(x.type.shape) == shape:
            return x
        out = self.emit("reshape", x, ShapeArg(shape), result=dataclasses.replace(x.type, shape=shape))
        self._reshaped_from[out.id] = x
        return out

    def permute(self, x: Value, perm: list[int]) -> Value:
        if list(perm) == sorted(perm):
            return x
        shape = tuple(x.type.shape[p] for p in perm)
        return self.emit("permute", x, list(perm), result=dataclasses.replace(x.type, shape=shape))

    def typecast(self, x: Value, dtype: str) -> Value:
        if x.type.dtype == dtype:
            return x
        return self.emit("typecast", x, dtype_attr(dtype), result=dataclasses.replace(x.type, dtype=dtype))

    # --- nested blocks and host scalars -----------------------------------------------
    @contextlib.contextmanager
    def block(self):
        """Emit into a fresh op list (a loop cond / body, a case branch) while inside."""
        saved = self.ops, self.origin, self.location
        self.ops = []
        for scoped in (self._reads, self.shadows):
            scoped.layers.append({})
        try:
            yield self.ops
        finally:
            for scoped in (self._reads, self.shadows):
                scoped.layers.pop()
            self.ops, self.origin, self.location = saved

    def shadow(self, e: Entry) -> int | bool | Value | None:
        """The value of a one-element int32 / bool entry as known on the host without a
        device read (a literal or a host value), or None."""
        if isinstance(e, Splat):
            if e.host.element.is_bool:
                return bool(e.value)
            return int(e.value) if e.host.element.numpy.kind in "iu" and e.host.element.device == "int32" \
                else None
        return self.shadows.get(e.id) if isinstance(e, Value) else None

    def _shadow_op(self, fn: str, args: tuple, kwargs: dict, out: Value) -> None:
        """Follow a ttnn op on one-element int / bool tensors on the host too (a host op
        next to it), so a loop counter or an index computed from it needs no device read;
        device ops left unused then die in eliminate_dead_ops."""
        def known(a):
            if isinstance(a, Value):
                return a if a.on_host else self.shadows.get(a.id)
            if isinstance(a, float) and a.is_integer():
                return int(a)
            return a if isinstance(a, int) else None

        if set(kwargs) - {"dtype", "layout", "device", "memory_config"}:
            return  # an option that may change the math: do not guess
        name, dtype = fn, out.type.dtype
        if fn in ("reshape", "clone", "to_layout", "permute", "repeat"):
            name = "same"
        elif fn == "full":
            fill = known(args[1]) if len(args) > 1 else None
            want = kwargs.get("dtype")
            if fill is None or want is None:
                return
            if want.path == "int32" or fill in (0, 1):
                self.shadows[out.id] = fill if want.path == "int32" else bool(fill)
            return
        elif fn == "typecast":
            name = "int" if dtype == "int32" else "same"
        values = [known(a) for a in args if not isinstance(a, Attr)]
        if any(v is None for v in values) or not values:
            return
        kinds = {(v.type.dtype if isinstance(v, Value) else "bool" if isinstance(v, bool) else "int")
                 for v in values}
        if name == "same":
            if fn == "typecast" and kinds != {"bool"}:
                return
            self.shadows[out.id] = values[0]
            return
        host = f"host.{dict(subtract='sub').get(name, name)}"
        if host not in HOST_OPS:
            return
        boolean = name in ("lt", "le", "gt", "ge", "eq", "ne") or name.startswith("logical_")
        if not boolean and dtype != "int32" and not (name == "where" and kinds == {"bool"}):
            return
        if not any(isinstance(v, Value) for v in values):
            self.shadows[out.id] = HOST_OPS[host](*values)
            return
        kind = "bool" if boolean or (name == "where" and kinds == {"bool"}) else "int"
        op = Op(host, tuple(values), {}, self.new_value(ScalarType(kind)), self.ops[-1].origin)
        self.ops.append(op)
        self.shadows[out.id] = op.result

    def host_scalar(self, e: Entry, kind: str = "int") -> int | bool | Value:
        """The entry's (single) element on the host: a Python literal for a splat, its
        shadow when the host follows it, else a host.read of the device tensor (a host
        sync; one per value and block)."""
        if isinstance(e, Splat):
            return bool(e.value) if kind == "bool" else int(e.value)
        s = self.shadow(e)
        if s is not None:
            return s
        v = self.materialize(e)
        if (v.id, kind) in self._reads:
            return self._reads.get((v.id, kind))
        out = self.emit(HOST_READ, v, result=ScalarType(kind))
        self._reads[v.id, kind] = out
        if kind == "bool" or v.type.dtype == "int32":
            self.shadows[v.id] = out
        return out

    def host_op(self, fn: str, *args):
        """A host op on host scalars, folded when every argument is a literal."""
        if not any(isinstance(a, Value) for a in args):
            return HOST_OPS[f"host.{fn}"](*args)
        key = (fn,) + tuple(a.id if isinstance(a, Value) else ("literal", a) for a in args)
        if key in self._reads:
            return self._reads.get(key)
        out = self.emit(f"host.{fn}", *args, result=ScalarType("int"))
        self._reads[key] = out
        return out

    def memo(self, key: tuple, make: Callable[[], Value]) -> Value:
        """make(), once per key in the open block and the blocks nested in it (so a
        value made in one branch is never reused where that branch did not run)."""
        key = ("memo",) + key
        if key not in self._reads:
            self._reads[key] = make()
        return self._reads.get(key)

    def unsupported(self, why: str) -> UnsupportedOp:
        return UnsupportedOp(self.origin, self.location, why)

    # --- walking --------------------------------------------------------------------
    def lower_block(self, block: ir.Block, args: list[Entry]) -> list[Entry]:
        for arg, entry in zip(block.arguments, args):
            self.env[arg] = entry
        caller = self.site   # the op whose region or callee this block is
        for op in block.operations:
            name = op.operation.name
            if name in ("func.return", "stablehlo.return"):
                return [self.env[v] for v in op.operands]
            self.origin = name
            self.location, self.site = describe_and_site(op.location, caller)
            results = RULES[name](self, op)
            assert len(results) == len(op.results), f"rule for {name} gave {len(results)} results"
            for r, e in zip(op.results, results):
                self.env[r] = e
        raise AssertionError("block without a terminator")
