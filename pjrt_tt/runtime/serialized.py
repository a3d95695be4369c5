"""Compiled executables as bytes: what PJRT_Executable_Serialize returns and
PJRT_Executable_DeserializeAndLoad reads back, so a persistent compile cache (jax's
`jax_compilation_cache_dir`, torch_xla's `xr.initialize_cache`) lets a second process run
the ttnn program without ingesting, lowering, optimizing or mock-checking it again.

    MAGIC (8 bytes) | header length (4 bytes, big-endian) | header (JSON) | body

The header says who made the entry and for what: format version, pjrt-tt version and a
digest of its source, ttnn version, target and system, the compiler key (program bytes and
compile settings), and the body's length and sha256. It is read and checked before anything
in the body is: bytes from a cache file are untrusted, and any mismatch is an error naming
the problem (frameworks then compile afresh; jax warns and rewrites the entry), never a crash
and never a program made for other code or another system.

The body: the compile options, then our own Compiled (the ttnn program IR: dataclasses of
ops, values, types) as a pickle, then its numpy arrays, each in np.save's format. Pickle is
used because the program IR is a graph of our own dataclasses with shared Values, which a
hand-written format would have to mirror field by field; it is safe here because the
checksum and versions were checked first, and the reader resolves only pjrt_tt's own
classes and a few builtins (anything else in the stream is refused), while arrays, dtypes
and element types travel outside the pickle so that it never names numpy internals (which
moved between numpy 1 and 2).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import io
import json
import pathlib
import pickle
import struct

import ml_dtypes
import numpy as np

from pjrt_tt import __version__, dtypes
from pjrt_tt.compiler import Compiled
from pjrt_tt.errors import InvalidArgument, StaleEntry
from pjrt_tt.program import DEVICE

MAGIC = b"PJRTTT\x00\x01"
FORMAT_VERSION = 1


@functools.cache
def source_digest() -> str:
    """sha256 of pjrt_tt's Python sources: a program lowered by other code is another
    program, even under the same version number (a developer's tree)."""
    root = pathlib.Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.cache
def ttnn_version() -> str:
    try:
        return importlib.metadata.version("ttnn")
    except importlib.metadata.PackageNotFoundError:
        return "none"


@dataclasses.dataclass
class Entry:
    compiled: Compiled
    compile_options: bytes


def made_by(target: str, system: str) -> dict:
    return {"pjrt_tt": __version__, "source": source_digest(), "ttnn": ttnn_version(),
            "target": target, "system": system}


# ------------------------------------ write ------------------------------------

class _Pickler(pickle.Pickler):
    def __init__(self, file, arrays: list):
        super().__init__(file, protocol=4)
        self.arrays = arrays

    def persistent_id(self, obj):
        if obj is DEVICE:
            return ("device",)
        if isinstance(obj, dtypes.ElementType):
            return ("element", obj.mlir)
        if isinstance(obj, np.dtype):
            return ("dtype", obj.name)
        if isinstance(obj, (np.ndarray, np.generic)):
            self.arrays.append(np.asarray(obj))
            return ("array" if isinstance(obj, np.ndarray) else "scalar", len(self.arrays) - 1, obj.dtype.name)
        return None


def _npy(a: np.ndarray) -> bytes:
    # ml_dtypes (bfloat16, float8) have no npy descriptor: saved as raw unsigned integers of
    # their width; the pickle carries the dtype name
    if a.dtype.name in _ML_DTYPES:
        a = a.view(f"u{a.dtype.itemsize}")
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(a), allow_pickle=False)
    return out.getvalue()


_ML_DTYPES = {n for n in ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3b11fnuz",
                          "float8_e4m3fnuz", "float8_e5m2fnuz", "int4", "uint4") if hasattr(ml_dtypes, n)}


def write(compiled: Compiled, compile_options: bytes, target: str, system: str) -> bytes:
    # stablehlo_text is for dumps of a fresh compile only (nothing reads it back): not kept
    fields = {f.name: getattr(compiled, f.name) for f in dataclasses.fields(Compiled) if f.name != "stablehlo_text"}
    arrays: list[np.ndarray] = []
    buf = io.BytesIO()
    _Pickler(buf, arrays).dump(fields)
    parts = [bytes(compile_options), buf.getvalue()] + [_npy(a) for a in arrays]
    body = b"".join(struct.pack(">Q", len(p)) + p for p in parts)
    header = dict(format=FORMAT_VERSION, **made_by(target, system), key=compiled.key, checked=compiled.checked,
                  body_bytes=len(body), body_sha256=hashlib.sha256(body).hexdigest())
    head = json.dumps(header, sort_keys=True).encode()
    return MAGIC + struct.pack(">I", len(head)) + head + body


# ------------------------------------ read -------------------------------------

_BUILTINS = {"frozenset", "set", "tuple", "list", "dict", "slice", "complex", "range", "bytearray"}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, arrays: list[bytes]):
        super().__init__(file)
        self.arrays = arrays

    def find_class(self, module: str, name: str):
        # only classes of pjrt_tt (the program IR) and plain builtin containers: never a
        # function or a dotted path that could reach one
        if "." not in name:
            if module == "builtins" and name in _BUILTINS:
                return super().find_class(module, name)
            if module == "copyreg" and name == "_reconstructor":
                return super().find_class(module, name)
            if module == "pjrt_tt" or module.startswith("pjrt_tt."):
                found = super().find_class(module, name)
                if isinstance(found, type) and found.__module__ == module:
                    return found
        raise pickle.UnpicklingError(f"refers to {module}.{name}, which a pjrt-tt executable never holds")

    def persistent_load(self, pid):
        kind = pid[0]
        if kind == "device":
            return DEVICE
        if kind == "element":
            return dtypes.BY_MLIR[pid[1]]
        if kind == "dtype":
            return _dtype(pid[1])
        if kind in ("array", "scalar"):
            a = np.load(io.BytesIO(self.arrays[pid[1]]), allow_pickle=False)
            want = _dtype(pid[2])
            a = a.view(want) if a.dtype != want else a
            return a[()] if kind == "scalar" else a
        raise pickle.UnpicklingError(f"unknown reference {kind!r}")


def _dtype(name: str) -> np.dtype:
    return np.dtype(getattr(ml_dtypes, name)) if name in _ML_DTYPES else np.dtype(name)


def _parts(body: bytes) -> list[bytes]:
    parts, at = [], 0
    while at < len(body):
        if at + 8 > len(body):
            raise ValueError("truncated section length")
        (n,) = struct.unpack_from(">Q", body, at)
        at += 8
        if n > len(body) - at:
            raise ValueError(f"a section of {n} bytes runs past the end")
        parts.append(body[at:at + n])
        at += n
    if len(parts) < 2:
        raise ValueError("fewer than 2 sections")
    return parts


def read_header(data: bytes) -> tuple[dict, bytes]:
    """The checked header and the body; raises InvalidArgument on bytes that are not a
    whole entry of this format, StaleEntry on one made by other code or ttnn."""
    what = "serialized pjrt-tt executable"
    if len(data) < len(MAGIC) + 4 or data[:len(MAGIC)] != MAGIC:
        raise InvalidArgument(f"not a {what}: the {min(len(data), len(MAGIC))} first bytes are "
                              f"{bytes(data[:len(MAGIC)])!r}, expected {MAGIC!r}")
    (n,) = struct.unpack_from(">I", data, len(MAGIC))
    start = len(MAGIC) + 4
    if n > len(data) - start:
        raise InvalidArgument(f"corrupt {what}: its header of {n} bytes runs past the end ({len(data)} bytes)")
    try:
        header = json.loads(data[start:start + n].decode())
        if not isinstance(header, dict):
            raise ValueError("not an object")
    except ValueError as e:
        raise InvalidArgument(f"corrupt {what}: unreadable header ({e})") from None
    if header.get("format") != FORMAT_VERSION:
        raise StaleEntry(f"a {what} in format {header.get('format')!r}; this pjrt-tt reads format "
                         f"{FORMAT_VERSION}: compile the program again")
    body = data[start + n:]
    if header.get("body_bytes") != len(body) or header.get("body_sha256") != hashlib.sha256(body).hexdigest():
        raise InvalidArgument(f"corrupt {what}: its body ({len(body)} bytes) does not match the length and "
                              f"checksum in its header (truncated or altered)")
    return header, bytes(body)


def read(data: bytes, target: str, system: str) -> Entry:
    header, body = read_header(data)
    here = made_by(target, system)
    differ = [f"{k} {header.get(k)!r} (here {v!r})" for k, v in here.items() if header.get(k) != v]
    if differ:
        raise StaleEntry("a serialized pjrt-tt executable made for other code or another system: "
                         + ", ".join(differ) + "; compile the program again")
    try:
        parts = _parts(body)
        fields = _Unpickler(io.BytesIO(parts[1]), parts[2:]).load()
        compiled = Compiled(stablehlo_text="", **fields)
    except Exception as e:   # the checksum matched: a writer bug, never a user's mistake
        raise InvalidArgument(f"a serialized pjrt-tt executable whose body cannot be read: "
                              f"{type(e).__name__}: {e}") from None
    if compiled.key != header.get("key") or compiled.checked != header.get("checked"):
        raise InvalidArgument("a serialized pjrt-tt executable whose header and body disagree")
    return Entry(compiled, parts[0])
