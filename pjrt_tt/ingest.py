"""Program bytes from the framework -> a StableHLO module, through jaxlib's MLIR bindings.

JAX sends a StableHLO portable artifact (VHLO bytecode, format "mlir"); torch_xla sends
an HloModuleProto (format "hlo") unless XLA_STABLEHLO_COMPILE=1.
"""
from __future__ import annotations

import re

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir._mlir_libs import _jax_mlir_ext
from jaxlib.mlir.dialects import chlo, mhlo, sdy, stablehlo

from pjrt_tt.errors import InvalidArgument


def new_context() -> ir.Context:
    """A context with the dialects jax emits (as jax's own make_ir_context registers them)."""
    registry = ir.DialectRegistry()
    _jax_mlir_ext.register_dialects(registry)
    ctx = ir.Context()
    ctx.append_dialect_registry(registry)
    ctx.load_all_available_dialects()
    sdy.register_dialect(ctx)
    mhlo.register_mhlo_dialect(ctx)
    chlo.register_dialect(ctx)
    return ctx


class Parsed:
    """A StableHLO module together with the context that owns it."""

    def __init__(self, ctx: ir.Context, module: ir.Module):
        self.ctx, self.module = ctx, module

    def text(self) -> str:
        return self.module.operation.get_asm(enable_debug_info=True, large_elements_limit=16)


def parse(code: bytes, fmt: str, from_hlo: bool = False) -> Parsed:
    """`from_hlo`: the StableHLO was converted from HLO (e.g. XLA's partitioner output),
    so it gets the same clean-ups as an HLO program."""
    ctx = new_context()
    from_hlo = from_hlo or fmt == "hlo"
    if fmt == "hlo":
        from jax._src.lib import _jax
        code = _jax.mlir.hlo_to_stablehlo(code)
        fmt = "mlir"
    if fmt != "mlir":
        raise InvalidArgument(f"pjrt-tt accepts programs in format 'mlir' or 'hlo', not {fmt!r}")
    try:
        module = stablehlo.deserialize_portable_artifact(ctx, code)
    except Exception:  # not a portable artifact: plain StableHLO bytecode or text
        try:
            with ctx:
                module = ir.Module.parse(code)
        except Exception as e:
            raise InvalidArgument(f"pjrt-tt could not parse the program it was given: {e}") from e
    if from_hlo:
        _as_jax_emits(module)
        _narrow_internal_int64(module)
    return Parsed(ctx, module)


# HLO ops that hlo_to_stablehlo leaves in the mhlo dialect (StableHLO has no such op),
# and the op jax emits for the same thing, which the lowering knows.
_MHLO_AS = {"mhlo.erf": "chlo.erf"}


def _as_jax_emits(module: ir.Module) -> None:
    found = []

    def visit(op):
        if op.name in _MHLO_AS:
            found.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    for op in found:
        with op.context, op.location, ir.InsertionPoint(op):
            new = ir.Operation.create(_MHLO_AS[op.name], results=[r.type for r in op.results],
                                      operands=list(op.operands))
        for old, repl in zip(op.results, new.results):
            old.replace_all_uses_with(repl)
        op.erase()


def _narrow_internal_int64(module: ir.Module) -> None:
    """torch_xla computes indices in int64 (index_put, embedding backward, scatter...), which
    the chip lacks. Inside a program whose arguments and results have no 64-bit integers,
    they become int32 (constants clamped to its range: indices fit, and clamped sentinels
    still compare the same way against them). Programs that take or return int64 are
    left alone and refused clearly by the lowering."""
    main = next((op.operation for op in module.body.operations if op.operation.name == "func.func"
                 and ir.StringAttr(op.operation.attributes["sym_name"]).value == "main"), None)
    if main is None:
        return
    ftype = ir.FunctionType(ir.TypeAttr(main.attributes["function_type"]).value)
    if any(_wide(t) for t in list(ftype.inputs) + list(ftype.results)):
        return
    found = []

    def visit(op):
        found.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    if not any(_wide(r.type) for op in found for r in op.results):
        return
    with module.context, ir.Location.unknown():
        for op in found:
            for region in op.regions:
                for block in region.blocks:
                    for arg in block.arguments:
                        if _wide(arg.type):
                            arg.set_type(_narrow_type(arg.type))
            for r in op.results:
                if _wide(r.type):
                    r.set_type(_narrow_type(r.type))
            if op.name == "stablehlo.constant" and _wide(op.attributes["value"].type):
                op.attributes["value"] = _narrow_constant(op.attributes["value"])
        for op in found:  # functions (reducers, callees) now take and return int32
            if op.name == "func.func":
                entry = op.regions[0].blocks[0]
                ret = entry.operations[len(entry.operations) - 1]
                op.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(
                    [a.type for a in entry.arguments], [v.type for v in ret.operands]))


_NARROW = {"i64": (32, True, np.int32), "ui64": (32, False, np.uint32)}


def _wide(t: ir.Type) -> bool:
    return ir.RankedTensorType.isinstance(t) and str(ir.RankedTensorType(t).element_type) in _NARROW


def _narrow_type(t: ir.Type) -> ir.Type:
    tt = ir.RankedTensorType(t)
    bits, signed, _ = _NARROW[str(tt.element_type)]
    element = ir.IntegerType.get_signless(bits) if signed else ir.IntegerType.get_unsigned(bits)
    return ir.RankedTensorType.get(tt.shape, element)


def _narrow_constant(attr: ir.Attribute) -> ir.Attribute:
    dense = ir.DenseElementsAttr(attr)
    etype = str(ir.RankedTensorType(dense.type).element_type)
    np_type = _NARROW[etype][2]
    info = np.iinfo(np_type)
    wide = constant_array(dense, np.int64 if etype == "i64" else np.uint64)
    data = np.clip(wide, info.min, info.max).astype(np_type)
    return ir.DenseElementsAttr.get(np.ascontiguousarray(data), type=_narrow_type(dense.type))


# --- reading constants ------------------------------------------------------------
# np.array() on a DenseElementsAttr aborts the process for some element types
# (bf16, f16), so only the types known to be safe take the buffer route.
_BUFFER_SAFE = {"f32": np.float32, "i32": np.int32, "ui32": np.uint32, "i64": np.int64,
                "ui64": np.uint64, "f64": np.float64, "ui8": np.uint8, "ui16": np.uint16,
                "i8": np.int8, "i16": np.int16}
_HEX = re.compile(r'dense<"0x([0-9A-Fa-f]*)">')


def constant_array(attr: ir.Attribute, np_dtype: np.dtype) -> np.ndarray:
    """The value of a dense elements attribute as a numpy array of `np_dtype`."""
    dense = ir.DenseElementsAttr(attr)
    ttype = ir.RankedTensorType(dense.type)
    shape, etype = tuple(ttype.shape), str(ttype.element_type)
    if dense.is_splat:
        return np.full(shape, _splat_scalar(dense, etype), dtype=np_dtype)
    if etype in _BUFFER_SAFE:
        return np.array(dense, copy=True).astype(np_dtype).reshape(shape)
    if etype == "i1":
        ints = ir.DenseIntElementsAttr(dense)
        return np.array([ints[i] for i in range(len(ints))], dtype=np_dtype).reshape(shape)
    return _parse_text(str(dense), etype, shape).astype(np_dtype)


def splat_value(attr: ir.Attribute) -> float | int | bool | None:
    """The single value of a splat constant, or None when it is not a splat."""
    dense = ir.DenseElementsAttr(attr)
    if not dense.is_splat:
        return None
    return _splat_scalar(dense, str(ir.RankedTensorType(dense.type).element_type))


def _splat_scalar(dense, etype: str):
    if etype in ("bf16", "f16"):
        return float(_parse_text(str(dense), etype, (1,))[0])
    value = dense.get_splat_value()
    if etype == "i1":
        return bool(ir.IntegerAttr(value).value)
    if etype.startswith(("i", "ui")):
        return int(ir.IntegerAttr(value).value)
    return float(ir.FloatAttr(value).value)


def _parse_text(text: str, etype: str, shape: tuple[int, ...]) -> np.ndarray:
    import ml_dtypes
    bits = {"bf16": np.uint16, "f16": np.uint16}.get(etype)
    storage = {"bf16": ml_dtypes.bfloat16, "f16": np.float16}.get(etype, np.float64)
    m = _HEX.search(text)
    count = int(np.prod(shape))
    if m:
        raw = np.frombuffer(bytes.fromhex(m.group(1)), dtype=bits or storage)
        out = raw.view(storage) if bits else raw
        return np.broadcast_to(out, (count,)).reshape(shape) if out.size == 1 else out.reshape(shape)
    body = text[text.index("<") + 1: text.rindex(">")].split(":")[0]
    tokens = [t for t in re.split(r"[\s,\[\]()<>]+", body) if t]
    values = []
    for t in tokens:
        if t.startswith("0x"):
            values.append(np.array([int(t, 16)], dtype=bits).view(storage)[0])
        elif t in ("true", "false"):
            values.append(t == "true")
        else:
            values.append(float(t))
    arr = np.array(values, dtype=storage)
    return (np.broadcast_to(arr, (count,)) if arr.size == 1 else arr).reshape(shape)


# --- source locations ---------------------------------------------------------------
_FILE_LOC = re.compile(r'"([^"]+)":(\d+):(\d+)')
_NAME_LOC = re.compile(r'loc\("([^"]*)"')


def describe_location(loc: ir.Location) -> str:
    """'model.py:12:5 (jit(f)/tanh)' from an MLIR location: the innermost frame of the
    user's own code, then the library frame it went through (flax, optax...), if any."""
    text = str(loc)
    name = _NAME_LOC.search(text)
    frames = [m for m in _FILE_LOC.finditer(text) if not _is_internal(m.group(1))]
    user = next((m for m in frames if "/site-packages/" not in m.group(1)), None)
    parts = []
    if user:
        parts.append(f"{user.group(1)}:{user.group(2)}:{user.group(3)}")
    if frames and frames[0] is not user:
        lib = frames[0]
        parts.append(f"{'via ' if user else ''}{lib.group(1)}:{lib.group(2)}:{lib.group(3)}")
    if name and name.group(1) and not _FILE_LOC.match(f'"{name.group(1)}"'):
        parts.append(f"({name.group(1)})")
    return " ".join(parts)


def _is_internal(path: str) -> bool:
    return "/site-packages/jax/" in path or "/jax/_src/" in path
