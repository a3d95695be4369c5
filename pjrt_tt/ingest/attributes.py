"""Reading a parsed StableHLO module's attributes safely: constants as numpy arrays, and
source locations as the user's file and line."""
from __future__ import annotations

import functools
import re

import numpy as np
from jaxlib.mlir import ir


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


def custom_call_target(op) -> str | None:
    """The call_target_name of a `stablehlo.custom_call`; None for any other op."""
    if op.name != "stablehlo.custom_call":
        return None
    return ir.StringAttr(op.attributes["call_target_name"]).value


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
        if etype in ("i4", "ui4"):   # a byte an element, the value in its low 4 bits
            nibbles = (np.frombuffer(bytes.fromhex(m.group(1)), np.uint8) & 0xF).astype(np.int64)
            out = nibbles - 16 * (nibbles >= 8) if etype == "i4" else nibbles
        else:
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


def source_site(loc: ir.Location, caller: ir.Location | None) -> ir.Location | None:
    """The location that holds an op's source frames: its own, else (an op of a function
    jax 0.12 outlined, e.g. `jit(cholesky)`, which it names without a source) the site of
    the call that reached the function."""
    return loc if _has_frames(str(loc)) else caller


def describe_location(loc: ir.Location, caller: ir.Location | None = None) -> str:
    """'model.py:12:5 (jit(f)/tanh)' from an MLIR location: the innermost frame of the
    user's own code, then the library frame it went through (flax, optax...), if any.
    `caller`: the source site of the call that reached the op's function (source_site)."""
    return describe_and_site(loc, caller)[0]


def describe_and_site(loc: ir.Location, caller: ir.Location | None = None) -> tuple[str, ir.Location | None]:
    """describe_location and source_site at once, printing the location once (the lowering
    asks both for every op; printing and scanning a location's frames was ~0.7 ms an op)."""
    text = str(loc)
    if _has_frames(text):
        return _describe(text, text), loc
    return _describe(text, str(caller) if caller is not None else ""), caller


@functools.lru_cache(maxsize=8192)
def _has_frames(text: str) -> bool:
    return _FILE_LOC.search(text) is not None


@functools.lru_cache(maxsize=8192)   # a jnp call's ops share its location
def _describe(text: str, site: str) -> str:
    name = _NAME_LOC.search(text)
    frames = [m for m in _FILE_LOC.finditer(site) if not _is_internal(m.group(1))]
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
