"""The lowering registry: one rule per StableHLO op, and the builder rules emit into.

A rule takes the `Lowering` and one MLIR operation and returns one entry per result.
An entry is a program `Value`, or a `Splat` (a constant not yet put on the device):
splats let a rule use ttnn's tensor-scalar forms, and are materialised with
`ttnn.full` only when a consumer needs a tensor.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Union

import numpy as np
from jaxlib.mlir import ir

from pjrt_tt import dtypes
from pjrt_tt.errors import UnsupportedOp
from pjrt_tt.ingest import describe_location
from pjrt_tt.program import (DEVICE, TILE, Constant, HostType, Op, Program, ShapeArg,
                             TensorType, Value, dtype_attr, layout_attr)

Rule = Callable[["Lowering", ir.Operation], list]
RULES: dict[str, Rule] = {}

# Ops that only structure the module; the walker handles them itself.
STRUCTURAL = {"func.return", "stablehlo.return", "func.func"}


def rule(*names: str):
    def register(fn: Rule) -> Rule:
        for name in names:
            assert name not in RULES, f"two lowering rules for {name}"
            RULES[name] = fn
        return fn
    return register


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


def host_type(v: ir.Value | ir.Type) -> HostType:
    t = ir.RankedTensorType(v.type if isinstance(v, ir.Value) else v)
    return HostType(dtypes.from_mlir(str(t.element_type)), tuple(t.shape))


def device_type(h: HostType) -> TensorType:
    """How a framework tensor is held on the chip: rank-0 as shape (1,), TILE layout."""
    return TensorType(h.shape or (1,), h.element.device, TILE)


def device_array(data: np.ndarray, h: HostType) -> np.ndarray:
    """Host data in the form `device_type(h)` holds it (bool -> 0/1, rank-0 -> (1,))."""
    t = device_type(h)
    return np.asarray(data).astype(dtypes.DEVICE_NUMPY[t.dtype]).reshape(t.shape)


class Lowering:
    def __init__(self, funcs: dict[str, ir.Operation], name: str):
        self.funcs = funcs
        self.name = name
        self.ops: list[Op] = []
        self.constants: list[Constant] = []
        self.env: dict[ir.Value, Entry] = {}
        self._next_id = 0
        self._reshaped_from: dict[int, Value] = {}
        self.origin = ""           # the StableHLO op being lowered, for dumps and errors
        self.location = ""

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
        if isinstance(e, Broadcast):
            x, shape = e.source, device_type(e.host).shape
            reps = tuple(t // s for s, t in zip(x.type.shape, shape))
            return self.emit("repeat", x, ShapeArg(reps), result=dataclasses.replace(x.type, shape=shape))
        t = device_type(e.host)
        fill = float(e.value) if t.dtype in ("float32", "bfloat16") else int(e.value)
        return self.emit("full", ShapeArg(t.shape), fill, result=t, dtype=dtype_attr(t.dtype),
                         layout=layout_attr(t.layout), device=DEVICE)

    def constant(self, data: np.ndarray, h: HostType) -> Value:
        v = self.new_value(device_type(h))
        self.constants.append(Constant(v, device_array(data, h)))
        return v

    # --- emitting -------------------------------------------------------------------
    def emit(self, fn: str, *args, result: TensorType, **kwargs) -> Value:
        out = self.new_value(result)
        origin = f"{self.origin} {self.location}" if self.location else self.origin
        self.ops.append(Op(fn, tuple(args), kwargs, out, origin))
        return out

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

    def unsupported(self, why: str) -> UnsupportedOp:
        return UnsupportedOp(self.origin, self.location, why)

    # --- walking --------------------------------------------------------------------
    def lower_block(self, block: ir.Block, args: list[Entry]) -> list[Entry]:
        for arg, entry in zip(block.arguments, args):
            self.env[arg] = entry
        for op in block.operations:
            name = op.operation.name
            if name in ("func.return", "stablehlo.return"):
                return [self.env[v] for v in op.operands]
            self.origin, self.location = name, describe_location(op.location)
            results = RULES[name](self, op)
            assert len(results) == len(op.results), f"rule for {name} gave {len(results)} results"
            for r, e in zip(op.results, results):
                self.env[r] = e
        raise AssertionError("block without a terminator")


def unsupported_ops(module: ir.Module) -> list[tuple[str, str]]:
    """Every op in the module that has no lowering rule, with its source location."""
    found: list[tuple[str, str]] = []

    def visit(op):
        name = op.operation.name
        if name not in RULES and name not in STRUCTURAL and name != "builtin.module":
            found.append((name, describe_location(op.location)))
        for region in op.operation.regions:
            for block in region.blocks:
                for inner in block.operations:
                    visit(inner)

    for op in module.body.operations:  # module-level ops other than functions (sdy.mesh) carry no compute
        if op.operation.name == "func.func":
            visit(op)
    return found
