"""Measure which ttnn calls real ttnn accepts, in mock-cluster mode.

Run (re-run after a ttnn upgrade and compare with docs/ttnn-facts.md):

    python tools/mock_probe.py                 # markdown on stdout
    python tools/mock_probe.py --system p150
    python tools/mock_probe.py --update-doc docs/ttnn-facts.md
    python tools/mock_probe.py --only binary_bcast,reduce

A developer tool, not part of the plugin: it imports pjrt_tt (targets/mock.py) from the
checkout it lives in.

`--update-doc` replaces the text between the markers
``<!-- BEGIN GENERATED -->`` and ``<!-- END GENERATED -->`` in that file.

What "accepted" means here: host-side validation passed and the op produced
an output tensor spec (shape, padded shape, dtype, layout).  The mock
toolchain compiles no kernel code, so failures that real ttnn would only hit
while compiling a kernel (static_asserts, missing LLK for a data format) are
NOT seen; reads return zeros, so nothing here says anything about values.

Cell notation: result dtype (f32 bf16 bfp8 i32 u32 u16 u8) and layout
(T = TILE, RM = ROW_MAJOR); shapes as tuples; `✗n` = rejected, with the
error text in the numbered note under the table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

ttnn: Any = None
dev: Any = None

DT_NAMES = ["float32", "bfloat16", "bfloat8_b", "int32", "uint32", "uint16", "uint8"]
SHORT = {
    "FLOAT32": "f32", "BFLOAT16": "bf16", "BFLOAT8_B": "bfp8", "BFLOAT4_B": "bfp4",
    "INT32": "i32", "UINT32": "u32", "UINT16": "u16", "UINT8": "u8",
}
NP_OF = {
    "float32": np.float32, "bfloat16": np.float32, "bfloat8_b": np.float32,
    "int32": np.int32, "uint32": np.uint32, "uint16": np.uint16, "uint8": np.uint8,
}


def dt(name: str):
    return getattr(ttnn, name)


def sdt(d) -> str:
    return SHORT.get(str(d).split(".")[-1], str(d))


def slay(layout) -> str:
    return "T" if "TILE" in str(layout) else "RM"


def shp(s) -> str:
    t = tuple(int(x) for x in s)
    return "(" + ",".join(map(str, t)) + ("," if len(t) == 1 else "") + ")"


def err_text(e: BaseException) -> str:
    """The informative part of a ttnn error, on one line, with the op name
    and dtypes generalised (so one note covers every op/dtype it applies to;
    the table cell says which op and dtype it was)."""
    s = str(e)
    s = s.split("backtrace:")[0]
    m = re.search(r"info:\s*(.*)", s, re.S)
    head = s.split("\n")[0]
    if m and m.group(1).strip():
        cond = re.sub(r"^TT_(FATAL|THROW) @ \S+:\d+: ?", "", head).strip()
        msg = " ".join(m.group(1).split())
        s = f"{msg} [{cond}]" if cond and cond != "tt::exception" and len(msg) < 70 else msg
    else:
        s = " ".join(s.split())
    s = re.sub(r"/project/\S+/", "", s)
    s = re.sub(r"(incompatible function arguments)\..*", r"\1 (no overload for these argument types)", s)
    s = re.sub(r"DataType::\w+", "DataType::<dt>", s)
    s = re.sub(r"\b(Unary|Binary)OpType::\w+", r"\1OpType::<op>", s)
    s = re.sub(r"\bttnn\.\w+\(\)", "ttnn.<op>()", s)
    s = re.sub(r"^(pow|Unary|Binary)\b", r"\1", s)
    return s if len(s) <= 200 else s[:197] + "..."


def make(shape, dtype="bfloat16", layout="TILE", value=1, on_device=True):
    """A tensor of `value`s built through the numpy route."""
    x = np.full(shape, value, dtype=NP_OF[dtype])
    kw = dict(data_type=dt(dtype), layout=getattr(ttnn, layout + "_LAYOUT"))
    if on_device:
        kw["device"] = dev
    return ttnn.Tensor(x, **kw)


def desc(t, show=("shape", "dtype", "layout")) -> str:
    if not hasattr(t, "shape"):
        return type(t).__name__ + ":" + repr(t)[:40]
    parts = []
    if "shape" in show:
        parts.append(shp(t.shape))
    if "padded" in show:
        parts.append("p" + shp(t.padded_shape))
    if "dtype" in show:
        parts.append(sdt(t.dtype))
    if "layout" in show:
        parts.append(slay(t.layout))
    return " ".join(parts)


class Notes:
    """Numbered error notes for one table."""

    def __init__(self):
        self.texts: list[str] = []

    def ref(self, e: BaseException) -> str:
        t = err_text(e)
        if t not in self.texts:
            self.texts.append(t)
        return f"✗{self.texts.index(t) + 1}"

    def render(self) -> list[str]:
        return [f"{i + 1}. {t}" for i, t in enumerate(self.texts)]


def cell(notes: Notes, fn: Callable[[], Any], show=("dtype", "layout")) -> str:
    try:
        with quiet_stderr():
            r = fn()
    except Exception as e:  # noqa: BLE001  (we record every rejection)
        return notes.ref(e)
    if isinstance(r, str):
        return r
    return desc(r, show)


@contextlib.contextmanager
def quiet_stderr():
    """ttnn logs each TT_THROW at 'critical' on fd 2; keep the report clean."""
    if os.environ.get("PJRT_TT_PROBE_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def in_subprocess(code: str, system: str | None = None) -> str:
    """Run `code` (with np, ttnn, dev defined) in a fresh process: for calls
    that kill the process (segfault) instead of raising."""
    import subprocess  # noqa: PLC0415

    prog = ("import numpy as np\nfrom pjrt_tt.targets import mock\n"
            f"ttnn, dev = mock.open({(system or SYSTEM)!r})\n" + code + "\nprint('PROBE-OK')\n")
    p = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=300, env=_sub_env())
    if p.returncode < 0:
        import signal  # noqa: PLC0415
        return f"**process killed by {signal.Signals(-p.returncode).name}**"
    if "PROBE-OK" in p.stdout:
        return "ok"
    tail = [ln for ln in p.stderr.splitlines() if ln.startswith(("RuntimeError", "TypeError", "ValueError", "info:"))]
    return "✗ " + (" ".join(tail)[:200] if tail else f"exit {p.returncode}")


SYSTEM = "n150"


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # tools/ is at the top


def _sub_env(**extra: str) -> dict[str, str]:
    """Environment for probe subprocesses: this checkout of pjrt_tt first on the path."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def table(title: str, header: list[str], rows: Iterable[list[str]], notes: Notes | None = None,
          intro: str = "") -> str:
    out = [f"### {title}", ""]
    if intro:
        out += [intro, ""]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    if notes and notes.texts:
        out.append("")
        out += notes.render()
    return "\n".join(out) + "\n\n"


SECTIONS: dict[str, Callable[[], str]] = {}


def section(name: str):
    def deco(fn):
        SECTIONS[name] = fn
        return fn
    return deco


# --------------------------------------------------------------------------
# host <-> device
# --------------------------------------------------------------------------

SHAPES_ODD = [(), (5,), (3, 5), (7, 33, 65), (2, 3, 4, 5), (2, 1, 3, 4, 5)]


@section("host")
def host_device() -> str:
    notes = Notes()
    rows = []
    for name in DT_NAMES:
        for layout in ("ROW_MAJOR", "TILE"):
            r = [name, layout]
            for s in SHAPES_ODD:
                r.append(cell(notes, lambda: make(s, name, layout), show=("padded",)))
            r.append(cell(notes, lambda: _readback(name, layout)))
            rows.append(r)
    out = table(
        "ttnn.Tensor(ndarray, data_type=, layout=, device=) → padded_shape on device",
        ["dtype", "layout"] + [shp(s) for s in SHAPES_ODD] + ["from_device(t).to_numpy() dtype"],
        rows, notes,
        "Logical shape always equals the numpy shape (rank 0 included). Cells show the padded shape.",
    )
    return out + _host_misc()


def _readback(name, layout):
    t = make((3, 5), name, layout)
    n = ttnn.from_device(t).to_numpy()
    return f"{n.dtype} {shp(n.shape)}"


def _host_misc() -> str:
    notes = Notes()
    rows = []

    def add(what, fn, show=("shape", "padded", "dtype", "layout")):
        rows.append([what, cell(notes, fn, show)])

    x = np.arange(15, dtype=np.float32).reshape(3, 5)
    add("Tensor(f32 ndarray, data_type=bfloat16) host, then ttnn.to_device(t, dev)",
        lambda: ttnn.to_device(ttnn.Tensor(x, data_type=ttnn.bfloat16), dev))
    add("host Tensor default layout", lambda: ttnn.Tensor(x, data_type=ttnn.bfloat16))
    add("Tensor(ndarray) with no data_type (float32 array)", lambda: ttnn.Tensor(x))
    add("Tensor(int64 array) with no data_type", lambda: ttnn.Tensor(np.arange(4)))
    add("Tensor(int64 array, data_type=int32)", lambda: ttnn.Tensor(np.arange(4), data_type=ttnn.int32))
    add("Tensor(float64 array, data_type=float32)", lambda: ttnn.Tensor(np.ones(4), data_type=ttnn.float32))
    add("Tensor(float32 array, data_type=int32)", lambda: ttnn.Tensor(x, data_type=ttnn.int32))
    add("Tensor(int32 array, data_type=bfloat16)", lambda: ttnn.Tensor(x.astype(np.int32), data_type=ttnn.bfloat16))
    add("Tensor(bool array) no data_type", lambda: ttnn.Tensor(np.ones((3, 5), bool)))
    add("Tensor(bool array, data_type=uint8)", lambda: ttnn.Tensor(np.ones((3, 5), bool), data_type=ttnn.uint8))
    add("Tensor(bool array, data_type=bfloat16)", lambda: ttnn.Tensor(np.ones((3, 5), bool), data_type=ttnn.bfloat16))
    add("Tensor(int8 array, data_type=int32)", lambda: ttnn.Tensor(np.ones((3, 5), np.int8), data_type=ttnn.int32))
    add("Tensor(non-contiguous x.T, data_type=float32)", lambda: ttnn.Tensor(x.T, data_type=ttnn.float32))
    add("Tensor(ndarray, bfloat8_b, TILE) on host (no device)",
        lambda: ttnn.Tensor(x, data_type=ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT))
    add("Tensor(ndarray, bfloat4_b, TILE, device)",
        lambda: ttnn.Tensor(x, data_type=ttnn.bfloat4_b, layout=ttnn.TILE_LAYOUT, device=dev))

    def bf16_np():
        n = ttnn.from_device(make((3, 5), "bfloat16")).to_numpy()
        return f"to_numpy() → {type(n).__name__} dtype={n.dtype} shape={n.shape}"
    add("bf16 device tensor: from_device(t).to_numpy()", bf16_np)

    def bf16_np2():
        h = ttnn.to_dtype(ttnn.from_device(make((3, 5), "bfloat16")), ttnn.float32)
        n = h.to_numpy()
        return f"{n.dtype} {n.shape}"
    add("bf16: ttnn.to_dtype(ttnn.from_device(t), ttnn.float32).to_numpy()", bf16_np2)

    def bf16_np3():
        n = ttnn.typecast(ttnn.from_device(make((3, 5), "bfloat16")), ttnn.float32).to_numpy()
        return f"{n.dtype} {n.shape}"
    add("bf16: ttnn.typecast(host_tensor, ttnn.float32).to_numpy()", bf16_np3)

    def bfp8_np():
        n = ttnn.from_device(make((3, 5), "bfloat8_b")).to_numpy()
        return f"{n.dtype} {n.shape}"
    add("bfp8 device tensor: from_device(t).to_numpy()", bfp8_np)
    add("t.cpu() (device → host)", lambda: make((3, 5), "float32").cpu())
    add("ttnn.from_device(host tensor)", lambda: ttnn.from_device(ttnn.Tensor(x, data_type=ttnn.float32)))
    add("ttnn.to_device(device tensor, dev)", lambda: ttnn.to_device(make((3, 5), "float32"), dev))

    def dealloc():
        t = make((3, 5), "float32")
        ttnn.deallocate(t)
        return f"is_allocated={t.is_allocated()}"
    add("ttnn.deallocate(t)", dealloc)

    def use_after():
        t = make((3, 5), "float32")
        ttnn.deallocate(t)
        return ttnn.add(t, t)
    add("ttnn.add(t, t) after deallocate(t)", use_after)

    add("ttnn.from_device(t) after deallocate(t) (run in a subprocess)", lambda: in_subprocess(
        "t = ttnn.Tensor(np.ones((3, 5), np.float32), data_type=ttnn.float32, device=dev)\n"
        "ttnn.deallocate(t)\nttnn.from_device(t)"))

    add("trace: begin_trace_capture / add / end / execute_trace (in a subprocess; device opened with "
        "trace_region_size=1 MiB)", lambda: in_subprocess(
        "mock.close(dev)\ndev = ttnn.open_mesh_device(ttnn.MeshShape(1, 1), trace_region_size=1 << 20)\n"
        "a = ttnn.Tensor(np.ones((64, 64), np.float32), data_type=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev)\n"
        "ttnn.add(a, a)\ntid = ttnn.begin_trace_capture(dev, cq_id=0)\nttnn.add(a, a)\n"
        "ttnn.end_trace_capture(dev, tid, cq_id=0)\nttnn.execute_trace(dev, tid, cq_id=0, blocking=True)"))

    def item():
        return f"item() → {make((), 'float32', 'ROW_MAJOR').item()!r}"
    add("rank-0 device tensor .item()", item)
    add("t.reshape((5, 3)) method on a host tensor", lambda: ttnn.Tensor(x, data_type=ttnn.float32).reshape((5, 3)))
    return table("Host ↔ device, other forms", ["call", "result: shape padded dtype layout"], rows, notes)


@section("to_layout")
def to_layout() -> str:
    notes = Notes()
    rows = []
    for name in DT_NAMES:
        r = [name]
        for s in [(), (5,), (3, 5), (7, 33, 65)]:
            src = "TILE" if name == "bfloat8_b" else "ROW_MAJOR"
            r.append(cell(notes, lambda: ttnn.to_layout(make(s, name, src), ttnn.TILE_LAYOUT), ("padded", "dtype", "layout")))
            r.append(cell(notes, lambda: ttnn.to_layout(make(s, name, "TILE"), ttnn.ROW_MAJOR_LAYOUT), ("padded", "dtype", "layout")))
        r.append(cell(notes, lambda: ttnn.to_layout(make((3, 5), name, "TILE", on_device=False), ttnn.ROW_MAJOR_LAYOUT), ("padded", "dtype", "layout")))
        r.append(cell(notes, lambda: ttnn.to_layout(make((3, 5), "bfloat16", "ROW_MAJOR"), ttnn.TILE_LAYOUT, dtype=dt(name)), ("padded", "dtype", "layout")))
        rows.append(r)
    hdr = ["dtype"]
    for s in [(), (5,), (3, 5), (7, 33, 65)]:
        hdr += [f"{shp(s)} →T", f"{shp(s)} →RM"]
    hdr += ["host T→RM", "bf16 RM→T with dtype="]
    return table("ttnn.to_layout(device tensor, layout) (cells: padded shape, dtype, layout)", hdr, rows, notes)


# --------------------------------------------------------------------------
# elementwise
# --------------------------------------------------------------------------

UNARY = ["neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "reciprocal",
         "logical_not", "floor", "ceil", "sign", "erf", "gelu", "relu"]


@section("unary")
def unary() -> str:
    notes = Notes()
    rows = []
    cols = [(n, "TILE") for n in DT_NAMES] + [("float32", "ROW_MAJOR"), ("bfloat16", "ROW_MAJOR"), ("int32", "ROW_MAJOR")]
    for op in UNARY:
        f = getattr(ttnn, op)
        r = [op]
        for name, layout in cols:
            r.append(cell(notes, lambda: f(make((3, 5), name, layout))))
        r.append(cell(notes, lambda: f(make((), "bfloat16", "TILE")), ("shape",)))
        r.append(cell(notes, lambda: f(make((7, 33, 65), "bfloat16", "TILE")), ("shape", "padded")))
        rows.append(r)
    hdr = ["op"] + [f"{SHORT[n.upper()]} {slay(l)}" for n, l in cols] + ["rank 0 bf16", "(7,33,65) bf16"]
    return table("Unary ops `ttnn.<op>(x)` on (3,5) (cells: result dtype, layout)", hdr, rows, notes)


BINARY = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "pow", "eq", "ne",
          "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "bitwise_and"]


@section("binary")
def binary() -> str:
    notes = Notes()
    rows = []
    cols = [(n, "TILE") for n in DT_NAMES] + [("float32", "ROW_MAJOR"), ("bfloat16", "ROW_MAJOR"), ("int32", "ROW_MAJOR")]
    for op in BINARY:
        f = getattr(ttnn, op)
        r = [op]
        for name, layout in cols:
            r.append(cell(notes, lambda: f(make((3, 5), name, layout), make((3, 5), name, layout))))
        rows.append(r)
    hdr = ["op"] + [f"{SHORT[n.upper()]} {slay(l)}" for n, l in cols]
    out = table("Binary ops, tensor ⊕ tensor, same dtype, same shape (3,5)", hdr, rows, notes)

    notes = Notes()
    rows = []
    scal_cols = [("bfloat16", 2.5), ("bfloat16", 2), ("float32", 2.5), ("int32", 2), ("int32", 2.5), ("uint32", 2), ("uint16", 2), ("uint8", 2)]
    for op in BINARY:
        f = getattr(ttnn, op)
        r = [op]
        for name, sc in scal_cols:
            r.append(cell(notes, lambda: f(make((3, 5), name, "TILE"), sc)))
        r.append(cell(notes, lambda: f(2.0, make((3, 5), "bfloat16", "TILE"))))
        rows.append(r)
    hdr = ["op"] + [f"{SHORT[n.upper()]} ⊕ {sc!r}" for n, sc in scal_cols] + ["2.0 ⊕ bf16"]
    out += "\n" + table("Binary ops, tensor ⊕ python scalar (TILE (3,5))", hdr, rows, notes)

    notes = Notes()
    rows = []
    pairs = [("bfloat16", "float32"), ("float32", "bfloat16"), ("bfloat16", "bfloat8_b"), ("int32", "float32"),
             ("int32", "bfloat16"), ("int32", "uint32"), ("uint16", "int32"), ("uint8", "int32")]
    for op in ["add", "multiply", "maximum", "eq", "lt", "logical_and", "bitwise_and"]:
        f = getattr(ttnn, op)
        r = [op]
        for a, b in pairs:
            r.append(cell(notes, lambda: f(make((3, 5), a), make((3, 5), b))))
        rows.append(r)
    hdr = ["op"] + [f"{SHORT[a.upper()]} ⊕ {SHORT[b.upper()]}" for a, b in pairs]
    out += "\n" + table("Binary ops, mixed dtypes (TILE (3,5))", hdr, rows, notes)

    notes = Notes()
    rows = []
    kw_cols = [("bfloat16", "float32"), ("float32", "bfloat16"), ("bfloat16", "bfloat8_b"), ("int32", "float32"), ("bfloat16", "int32"), ("bfloat16", "uint8")]
    for op in ["add", "multiply", "divide", "eq", "gt", "logical_and"]:
        f = getattr(ttnn, op)
        r = [op]
        for a, outdt in kw_cols:
            r.append(cell(notes, lambda: f(make((3, 5), a), make((3, 5), a), dtype=dt(outdt))))
        r.append(cell(notes, lambda: f(make((3, 5), "bfloat16"), 2.0, dtype=ttnn.float32)))
        rows.append(r)
    hdr = ["op"] + [f"{SHORT[a.upper()]} inputs, dtype={SHORT[o.upper()]}" for a, o in kw_cols] + ["bf16 ⊕ 2.0, dtype=f32"]
    out += "\n" + table("Binary ops with the `dtype=` keyword", hdr, rows, notes)
    return out


BCAST_A = (4, 32, 64)
BCAST_B = [(4, 32, 64), (1, 1, 1), (1, 1), (1,), (), (1, 64), (64,), (32, 1), (1, 32, 64), (32, 64),
           (4, 1, 1), (4, 32, 1), (4, 1, 64), (1, 1, 64), (1, 32, 1), (2, 4, 32, 64), (1, 4, 32, 64)]
BCAST_ODD = [((3, 5), (3, 5)), ((3, 5), (1, 5)), ((3, 5), (3, 1)), ((3, 5), (5,)), ((3, 5), (1, 1)),
             ((3, 5), ()), ((3, 1), (1, 5)), ((1, 5), (3, 1)), ((1, 1), (3, 5)), ((5,), (3, 5)),
             ((7, 33, 65), (33, 65)), ((7, 33, 65), (7, 1, 65)), ((7, 33, 65), (7, 33, 1)),
             ((7, 1, 1), (1, 33, 65)), ((2, 3, 4, 5), (3, 1, 5)), ((2, 1, 4, 1), (1, 3, 1, 5)),
             ((2, 3, 4, 5, 6), (2, 3, 4, 5, 6)), ((2, 3, 4, 5, 6), (1, 1, 1, 1, 6)), ((2, 3, 4, 5, 6), (2, 1, 1, 5, 1)),
             ((3, 5), (4, 5)), ((3, 5), (3,)), ((2, 3, 4), (3, 3, 4)), ((64, 64), (32, 64))]


@section("binary_bcast")
def binary_bcast() -> str:
    notes = Notes()
    rows = []
    cols = [("add", "bfloat16", "TILE"), ("add", "float32", "TILE"), ("multiply", "int32", "TILE"),
            ("gt", "bfloat16", "TILE"), ("maximum", "bfloat16", "TILE"), ("add", "bfloat16", "ROW_MAJOR")]
    for b in BCAST_B:
        r = [f"{shp(BCAST_A)} ⊕ {shp(b)}"]
        for op, name, layout in cols:
            f = getattr(ttnn, op)
            r.append(cell(notes, lambda: f(make(BCAST_A, name, layout), make(b, name, layout)), ("shape",)))
        r.append(cell(notes, lambda: ttnn.add(make(b, "bfloat16"), make(BCAST_A, "bfloat16")), ("shape",)))
        rows.append(r)
    for a, b in BCAST_ODD:
        r = [f"{shp(a)} ⊕ {shp(b)}"]
        for op, name, layout in cols:
            f = getattr(ttnn, op)
            r.append(cell(notes, lambda: f(make(a, name, layout), make(b, name, layout)), ("shape",)))
        r.append(cell(notes, lambda: ttnn.add(make(b, "bfloat16"), make(a, "bfloat16")), ("shape",)))
        rows.append(r)
    hdr = ["a ⊕ b"] + [f"{op} {SHORT[n.upper()]} {slay(l)}" for op, n, l in cols] + ["add bf16 T, b ⊕ a"]
    return table("Binary broadcasting (cells: result shape)", hdr, rows, notes)


@section("where")
def where() -> str:
    notes = Notes()
    rows = []
    conds = ["bfloat16", "float32", "int32", "uint32", "uint8", "uint16", "bfloat8_b"]
    for cd in conds:
        r = [cd]
        for vd in ["bfloat16", "float32", "int32"]:
            r.append(cell(notes, lambda: ttnn.where(make((3, 5), cd), make((3, 5), vd), make((3, 5), vd))))
        r.append(cell(notes, lambda: ttnn.where(make((3, 5), cd), 1.0, 0.0)))
        r.append(cell(notes, lambda: ttnn.where(make((3, 5), cd), make((3, 5), "bfloat16"), 0.0)))
        r.append(cell(notes, lambda: ttnn.where(make((3, 5), cd), 2, make((3, 5), "int32"))))
        r.append(cell(notes, lambda: ttnn.where(make((3, 5), cd, "ROW_MAJOR"), make((3, 5), "bfloat16", "ROW_MAJOR"), make((3, 5), "bfloat16", "ROW_MAJOR"))))
        rows.append(r)
    hdr = ["cond dtype", "a,b bf16", "a,b f32", "a,b i32", "1.0, 0.0", "bf16 t, 0.0", "2, i32 t", "all RM bf16"]
    out = table("ttnn.where(cond, a, b) on (3,5) TILE", hdr, rows, notes)

    notes = Notes()
    rows = []
    for cs, as_, bs in [((3, 5), (3, 5), (1, 5)), ((3, 5), (1, 5), (3, 1)), ((3, 1), (3, 5), (3, 5)),
                        ((1, 5), (3, 5), (3, 5)), ((4, 32, 64), (1, 64), (4, 32, 64)), ((3, 5), (3, 5), (5,)),
                        ((3, 5), (3, 5), ()), ((), (3, 5), (3, 5)), ((5,), (3, 5), (3, 5)), ((2, 3, 5), (3, 5), (2, 1, 5))]:
        rows.append([f"{shp(cs)}, {shp(as_)}, {shp(bs)}",
                     cell(notes, lambda: ttnn.where(make(cs), make(as_), make(bs)), ("shape", "dtype"))])
    out += "\n" + table("ttnn.where broadcasting (bf16 TILE)", ["cond, a, b shapes", "result"], rows, notes)
    return out


@section("typecast")
def typecast() -> str:
    out = ""
    for layout in ("TILE", "ROW_MAJOR"):
        notes = Notes()
        rows = []
        for src in DT_NAMES:
            r = [src]
            for dst in DT_NAMES:
                r.append(cell(notes, lambda: ttnn.typecast(make((3, 5), src, "TILE" if src == "bfloat8_b" else layout), dt(dst))))
            rows.append(r)
        hdr = ["from \\ to"] + [SHORT[d.upper()] for d in DT_NAMES]
        intro = "(bfloat8_b sources are always TILE.)" if layout == "ROW_MAJOR" else ""
        out += table(f"ttnn.typecast(x, dtype), x on device in {layout} (3,5)", hdr, rows, notes, intro) + "\n"
    notes = Notes()
    rows = []
    for src in ["float32", "bfloat16", "int32"]:
        r = [src]
        for dst in DT_NAMES:
            r.append(cell(notes, lambda: ttnn.typecast(make((3, 5), src, "ROW_MAJOR", on_device=False), dt(dst))))
        rows.append(r)
    out += table("ttnn.typecast on a HOST tensor (ROW_MAJOR)", ["from \\ to"] + [SHORT[d.upper()] for d in DT_NAMES], rows, notes)
    return out


# --------------------------------------------------------------------------
# matmul / linear
# --------------------------------------------------------------------------

MM_CASES = [((32, 64), (64, 32)), ((3, 5), (5, 7)), ((2, 3, 5), (2, 5, 7)), ((2, 3, 5), (5, 7)),
            ((3, 5), (2, 5, 7)), ((2, 3, 4, 5), (2, 3, 5, 6)), ((2, 3, 4, 5), (5, 6)), ((2, 1, 4, 5), (1, 3, 5, 6)),
            ((2, 3, 4, 5), (3, 5, 6)), ((1, 3, 4, 5), (2, 3, 5, 6)), ((2, 3, 4, 5), (1, 1, 5, 6)),
            ((5,), (5, 7)), ((3, 5), (5,)), ((5,), (5,)), ((2, 3, 5), (5,)), ((1, 5), (5, 7)),
            ((2, 2, 3, 4, 5), (2, 2, 3, 5, 6)), ((3, 5), (6, 7))]


@section("matmul")
def matmul() -> str:
    notes = Notes()
    rows = []
    for a, b in MM_CASES:
        r = [f"{shp(a)} @ {shp(b)}"]
        r.append(cell(notes, lambda: ttnn.matmul(make(a), make(b)), ("shape", "padded", "dtype")))
        r.append(cell(notes, lambda: ttnn.matmul(make(a, "float32"), make(b, "float32")), ("shape", "dtype")))
        r.append(cell(notes, lambda: ttnn.matmul(make(a, "bfloat8_b"), make(b, "bfloat8_b")), ("dtype",)))
        r.append(cell(notes, lambda: ttnn.matmul(make(a, "int32"), make(b, "int32")), ("dtype",)))
        r.append(cell(notes, lambda: ttnn.matmul(make(a, layout="ROW_MAJOR"), make(b, layout="ROW_MAJOR")), ("shape", "dtype", "layout")))
        rows.append(r)
    hdr = ["a @ b", "bf16 T", "f32 T", "bfp8 T", "i32 T", "bf16 RM"]
    out = table("ttnn.matmul(a, b) shapes (cells: shape, padded, dtype)", hdr, rows, notes)

    notes = Notes()
    rows = []
    for what, fn in [
        ("matmul((5,3),(5,7), transpose_a=True)", lambda: ttnn.matmul(make((5, 3)), make((5, 7)), transpose_a=True)),
        ("matmul((3,5),(7,5), transpose_b=True)", lambda: ttnn.matmul(make((3, 5)), make((7, 5)), transpose_b=True)),
        ("matmul((2,5,3),(2,7,5), transpose_a=True, transpose_b=True)",
         lambda: ttnn.matmul(make((2, 5, 3)), make((2, 7, 5)), transpose_a=True, transpose_b=True)),
        ("matmul(bf16, bf16, dtype=float32)", lambda: ttnn.matmul(make((3, 5)), make((5, 7)), dtype=ttnn.float32)),
        ("matmul(bf16, bf16, dtype=bfloat8_b)", lambda: ttnn.matmul(make((3, 5)), make((5, 7)), dtype=ttnn.bfloat8_b)),
        ("matmul(f32, f32, dtype=bfloat16)", lambda: ttnn.matmul(make((3, 5), "float32"), make((5, 7), "float32"), dtype=ttnn.bfloat16)),
        ("matmul(bf16, f32)", lambda: ttnn.matmul(make((3, 5)), make((5, 7), "float32"))),
        ("matmul(bf16, bfp8)", lambda: ttnn.matmul(make((3, 5)), make((5, 7), "bfloat8_b"))),
        ("matmul(f32, bf16)", lambda: ttnn.matmul(make((3, 5), "float32"), make((5, 7)))),
        ("matmul(bf16 T, bf16 RM)", lambda: ttnn.matmul(make((3, 5)), make((5, 7), layout="ROW_MAJOR"))),
        ("a @ b (python operator)", lambda: make((3, 5)) @ make((5, 7))),
        ("linear((3,5), w(5,7))", lambda: ttnn.linear(make((3, 5)), make((5, 7)))),
        ("linear((3,5), w(5,7), bias=(7,))", lambda: ttnn.linear(make((3, 5)), make((5, 7)), bias=make((7,)))),
        ("linear((3,5), w(5,7), bias=(1,7))", lambda: ttnn.linear(make((3, 5)), make((5, 7)), bias=make((1, 7)))),
        ("linear((3,5), w(5,7), bias=(3,7))", lambda: ttnn.linear(make((3, 5)), make((5, 7)), bias=make((3, 7)))),
        ("linear((2,3,5), w(5,7), bias=(1,7))", lambda: ttnn.linear(make((2, 3, 5)), make((5, 7)), bias=make((1, 7)))),
        ("linear((3,5), w(7,5), bias=(7,), transpose_b=True)",
         lambda: ttnn.linear(make((3, 5)), make((7, 5)), bias=make((7,)), transpose_b=True)),
        ("linear(..., bias=(1,7), activation='relu')", lambda: ttnn.linear(make((3, 5)), make((5, 7)), bias=make((1, 7)), activation="relu")),
        ("linear(..., activation='gelu')", lambda: ttnn.linear(make((3, 5)), make((5, 7)), activation="gelu")),
        ("linear(..., activation='silu')", lambda: ttnn.linear(make((3, 5)), make((5, 7)), activation="silu")),
        ("linear(..., activation='tanh')", lambda: ttnn.linear(make((3, 5)), make((5, 7)), activation="tanh")),
        ("linear(f32 (3,5), f32 w, f32 bias (1,7))", lambda: ttnn.linear(make((3, 5), "float32"), make((5, 7), "float32"), bias=make((1, 7), "float32"))),
        ("linear(bf16, w bfp8, bias bf16 (1,7))", lambda: ttnn.linear(make((3, 5)), make((5, 7), "bfloat8_b"), bias=make((1, 7)))),
        ("linear(bf16, bf16, bias bf16 (1,7), dtype=float32)", lambda: ttnn.linear(make((3, 5)), make((5, 7)), bias=make((1, 7)), dtype=ttnn.float32)),
    ]:
        rows.append([what, cell(notes, fn, ("shape", "padded", "dtype", "layout"))])
    out += "\n" + table("matmul keywords and linear (bf16 TILE unless said)", ["call", "result"], rows, notes)
    return out


# --------------------------------------------------------------------------
# reductions
# --------------------------------------------------------------------------

@section("reduce")
def reduce() -> str:
    notes = Notes()
    rows = []
    dims = [None, 0, 1, -1, [0, 1], (0, 1), [-2, -1]]
    for shape in [(3, 5), (7, 33, 65), (2, 3, 4, 5), (5,), ()]:
        for keepdim in (False, True):
            r = [shp(shape), str(keepdim)]
            for d in dims:
                r.append(cell(notes, lambda: ttnn.sum(make(shape), dim=d, keepdim=keepdim), ("shape",)))
            rows.append(r)
    hdr = ["x (bf16 T)", "keepdim"] + [f"dim={d!r}" for d in dims]
    out = table("ttnn.sum(x, dim=, keepdim=) result shapes", hdr, rows, notes)

    notes = Notes()
    rows = []
    for op in ["sum", "max", "min", "mean", "prod", "argmax"]:
        f = getattr(ttnn, op)
        r = [op]
        for name, layout in [("bfloat16", "TILE"), ("float32", "TILE"), ("bfloat8_b", "TILE"), ("int32", "TILE"),
                             ("uint32", "TILE"), ("uint16", "TILE"), ("uint8", "TILE"), ("bfloat16", "ROW_MAJOR"), ("int32", "ROW_MAJOR")]:
            r.append(cell(notes, lambda: f(make((3, 5), name, layout), dim=-1, keepdim=True), ("shape", "dtype", "layout")))
        r.append(cell(notes, lambda: f(make((3, 5)), dim=None), ("shape", "padded", "dtype")))
        r.append(cell(notes, lambda: f(make((3, 5)), dim=0), ("shape", "dtype")))
        r.append(cell(notes, lambda: f(make((7, 33, 65)), dim=1, keepdim=False), ("shape",)))
        r.append(cell(notes, lambda: f(make((7, 33, 65)), dim=[0, 2], keepdim=False), ("shape",)))
        r.append(cell(notes, lambda: f(make((5,)), dim=0, keepdim=False), ("shape",)))
        rows.append(r)
    hdr = ["op", "bf16 T dim=-1 kd", "f32 T", "bfp8 T", "i32 T", "u32 T", "u16 T", "u8 T", "bf16 RM", "i32 RM",
           "(3,5) dim=None", "(3,5) dim=0", "(7,33,65) dim=1", "(7,33,65) dim=[0,2]", "(5,) dim=0"]
    out += "\n" + table("Reductions by op and dtype (keepdim=True unless said; cells: shape, dtype, layout)", hdr, rows, notes)
    return out


# --------------------------------------------------------------------------
# data movement and creation
# --------------------------------------------------------------------------

@section("movement")
def movement() -> str:
    notes = Notes()
    rows = []

    def add(what, fn, show=("shape", "padded", "dtype", "layout")):
        rows.append([what, cell(notes, fn, show)])

    for layout in ("TILE", "ROW_MAJOR"):
        L = "T" if layout == "TILE" else "RM"
        for src, dst in [((3, 5), (5, 3)), ((3, 5), (15,)), ((3, 5), (1, 3, 5)), ((7, 33, 65), (7, 65, 33)),
                         ((7, 33, 65), (231, 65)), ((2, 3, 4, 5), (6, 20)), ((3, 5), (-1,)), ((3, 5), ()), ((), (1, 1)),
                         ((1,), ()), ((3, 5), (2, 8)), ((64, 64), (32, 128))]:
            add(f"reshape {L} bf16 {shp(src)} → {shp(dst)}", lambda: ttnn.reshape(make(src, layout=layout), dst))
        add(f"reshape {L} int32 (3,5) → (5,3)", lambda: ttnn.reshape(make((3, 5), "int32", layout), (5, 3)))
        add(f"reshape {L} bf16 (3,5) → ttnn.Shape([5,3])", lambda: ttnn.reshape(make((3, 5), layout=layout), ttnn.Shape([5, 3])))
    add("reshape T bfp8 (3,5) → (5,3)", lambda: ttnn.reshape(make((3, 5), "bfloat8_b"), (5, 3)))
    add("reshape T bfp8 (64,64) → (32,128)", lambda: ttnn.reshape(make((64, 64), "bfloat8_b"), (32, 128)))
    out = table("ttnn.reshape(x, shape)", ["call", "result"], rows, notes)

    notes = Notes()
    rows = []
    for layout in ("TILE", "ROW_MAJOR"):
        L = "T" if layout == "TILE" else "RM"
        for src, perm in [((3, 5), (1, 0)), ((7, 33, 65), (2, 0, 1)), ((7, 33, 65), (0, 2, 1)), ((7, 33, 65), (1, 0, 2)),
                          ((2, 3, 4, 5), (0, 1, 3, 2)), ((2, 3, 4, 5), (3, 2, 1, 0)), ((2, 3, 4, 5), (1, 0, 2, 3)),
                          ((2, 3, 4, 5, 6), (4, 3, 2, 1, 0)), ((2, 3, 4, 5, 6), (0, 1, 2, 4, 3)), ((5,), (0,)), ((3, 5), (-1, -2))]:
            add(f"permute {L} bf16 {shp(src)} by {perm}", lambda: ttnn.permute(make(src, layout=layout), perm))
        add(f"permute {L} int32 (7,33,65) by (2,0,1)", lambda: ttnn.permute(make((7, 33, 65), "int32", layout), (2, 0, 1)))
        add(f"permute {L} f32 (2,3,4,5) by (3,2,1,0)", lambda: ttnn.permute(make((2, 3, 4, 5), "float32", layout), (3, 2, 1, 0)))
    add("permute T bfp8 (3,5) by (1,0)", lambda: ttnn.permute(make((3, 5), "bfloat8_b"), (1, 0)))
    add("transpose T bf16 (7,33,65) dims -2,-1", lambda: ttnn.transpose(make((7, 33, 65)), -2, -1))
    add("transpose T bf16 (7,33,65) dims 0,2", lambda: ttnn.transpose(make((7, 33, 65)), 0, 2))
    out += "\n" + table("ttnn.permute(x, dims) / ttnn.transpose", ["call", "result"], rows, notes)

    notes = Notes()
    rows = []
    for layout in ("TILE", "ROW_MAJOR"):
        L = "T" if layout == "TILE" else "RM"
        for src, st, en, sp in [((7, 33, 65), (0, 0, 0), (7, 33, 65), (1, 1, 1)), ((7, 33, 65), (1, 3, 5), (5, 20, 40), (1, 1, 1)),
                                ((7, 33, 65), (0, 0, 0), (7, 32, 64), (1, 1, 1)), ((7, 33, 65), (0, 32, 0), (7, 33, 65), (1, 1, 1)),
                                ((7, 33, 65), (0, 0, 0), (7, 33, 65), (2, 1, 1)), ((7, 33, 65), (0, 0, 0), (7, 33, 65), (1, 2, 1)),
                                ((7, 33, 65), (0, 0, 0), (7, 33, 65), (1, 1, 3)), ((3, 5), (1, 1), (3, 4), (1, 1)), ((5,), (1,), (4,), (1,)),
                                ((5,), (0,), (5,), (2,)), ((2, 3, 4, 5, 6), (0, 1, 0, 1, 2), (2, 3, 4, 4, 5), (1, 1, 1, 1, 1)),
                                ((3, 5), (0, 0), (3, 5), (1, 1)), ((3, 5), (2, 0), (2, 5), (1, 1)), ((3, 5), (-2, 0), (3, 5), (1, 1))]:
            add(f"slice {L} bf16 {shp(src)} [{st}:{en}:{sp}]", lambda: ttnn.slice(make(src, layout=layout), st, en, sp))
        add(f"slice {L} int32 (7,33,65) [(1,3,5):(5,20,40)]", lambda: ttnn.slice(make((7, 33, 65), "int32", layout), (1, 3, 5), (5, 20, 40)))
        add(f"slice {L} f32 (7,33,65) [(1,3,5):(5,20,40):(1,2,2)]", lambda: ttnn.slice(make((7, 33, 65), "float32", layout), (1, 3, 5), (5, 20, 40), (1, 2, 2)))
    add("slice T bf16 without steps arg", lambda: ttnn.slice(make((3, 5)), (1, 1), (3, 4)))
    add("slice T bf16 python indexing x[1:3, 1:4]", lambda: make((3, 5))[1:3, 1:4])
    add("slice T bfp8 (7,33,65) [(1,3,5):(5,20,40)]", lambda: ttnn.slice(make((7, 33, 65), "bfloat8_b"), (1, 3, 5), (5, 20, 40)))
    out += "\n" + table("ttnn.slice(x, starts, ends, steps)", ["call", "result"], rows, notes)

    notes = Notes()
    rows = []
    for layout in ("TILE", "ROW_MAJOR"):
        L = "T" if layout == "TILE" else "RM"
        for shapes, d in [([(3, 5), (3, 5)], 0), ([(3, 5), (3, 5)], 1), ([(3, 5), (2, 5)], 0), ([(3, 5), (3, 7)], 1),
                          ([(3, 5), (3, 7)], -1), ([(7, 33, 65), (7, 1, 65)], 1), ([(7, 33, 65), (7, 33, 3)], 2),
                          ([(5,), (3,)], 0), ([(3, 5), (3, 5), (3, 5), (3, 5)], 0), ([(3, 5)], 0), ([(3, 5), (5,)], 0),
                          ([(2, 3, 4, 5, 6), (2, 3, 4, 5, 6)], 4)]:
            add(f"concat {L} bf16 {' + '.join(map(shp, shapes))} dim={d}",
                lambda: ttnn.concat([make(s, layout=layout) for s in shapes], d))
        add(f"concat {L} int32 (3,5)+(3,7) dim=1", lambda: ttnn.concat([make((3, 5), "int32", layout), make((3, 7), "int32", layout)], 1))
    add("concat bf16 T + bf16 RM dim=0", lambda: ttnn.concat([make((3, 5)), make((3, 5), layout="ROW_MAJOR")], 0))
    add("concat bf16 + f32 T dim=0", lambda: ttnn.concat([make((3, 5)), make((3, 5), "float32")], 0))
    add("concat bfp8 T (3,5)+(3,7) dim=1", lambda: ttnn.concat([make((3, 5), "bfloat8_b"), make((3, 7), "bfloat8_b")], 1))
    add("concat(..., dim=1) keyword", lambda: ttnn.concat([make((3, 5)), make((3, 5))], dim=1))
    out += "\n" + table("ttnn.concat(tensors, dim)", ["call", "result"], rows, notes)

    notes = Notes()
    rows = []
    for layout in ("TILE", "ROW_MAJOR"):
        L = "T" if layout == "TILE" else "RM"
        for src, rep in [((3, 5), (2, 3)), ((3, 5), (1, 1)), ((1, 5), (3, 1)), ((7, 33, 65), (2, 1, 1)), ((5,), (3,)),
                         ((3, 5), (2, 1, 1)), ((2, 3, 4, 5), (1, 2, 1, 2))]:
            add(f"repeat {L} bf16 {shp(src)} by ttnn.Shape({list(rep)})", lambda: ttnn.repeat(make(src, layout=layout), ttnn.Shape(list(rep))))
        add(f"repeat {L} int32 (3,5) by (2,3)", lambda: ttnn.repeat(make((3, 5), "int32", layout), ttnn.Shape([2, 3])))
        add(f"repeat {L} bf16 (3,5) by python list [2,3]", lambda: ttnn.repeat(make((3, 5), layout=layout), [2, 3]))
        for src, to in [((1, 5), (3, 5)), ((3, 1), (3, 5)), ((1, 1), (4, 32, 64)), ((5,), (3, 5)), ((1, 33, 1), (7, 33, 65)), ((3, 5), (3, 5)),
                        ((1, 5), (-1, 5))]:
            add(f"expand {L} bf16 {shp(src)} → {to}", lambda: ttnn.expand(make(src, layout=layout), list(to)))
        add(f"repeat_interleave {L} bf16 (3,5) 2 dim=0", lambda: ttnn.repeat_interleave(make((3, 5), layout=layout), 2, dim=0))
    out += "\n" + table("ttnn.repeat(x, ttnn.Shape) / ttnn.expand(x, shape) / repeat_interleave", ["call", "result"], rows, notes)

    notes = Notes()
    rows = []
    for layout in ("TILE", "ROW_MAJOR"):
        L = "T" if layout == "TILE" else "RM"
        for src, padding in [((3, 5), ((0, 1), (0, 3))), ((3, 5), ((1, 1), (2, 2))), ((7, 33, 65), ((0, 0), (0, 31), (0, 31))),
                             ((7, 33, 65), ((1, 0), (0, 0), (0, 0))), ((5,), ((2, 3),)), ((2, 3, 4, 5), ((0, 0), (0, 0), (0, 28), (0, 27)))]:
            add(f"pad {L} bf16 {shp(src)} {padding} value=0", lambda: ttnn.pad(make(src, layout=layout), padding, 0.0))
        add(f"pad {L} bf16 (3,5) output_padded_shape form ((32,32), (0,0), 0.0)",
            lambda: ttnn.pad(make((3, 5), layout=layout), (32, 32), (0, 0), 0.0))
        add(f"pad {L} int32 (3,5) ((0,1),(0,3)) value=0", lambda: ttnn.pad(make((3, 5), "int32", layout), ((0, 1), (0, 3)), 0))
    out += "\n" + table("ttnn.pad(x, padding, value)", ["call", "result"], rows, notes)
    return out


@section("creation")
def creation() -> str:
    notes = Notes()
    rows = []

    def add(what, fn, show=("shape", "padded", "dtype", "layout")):
        rows.append([what, cell(notes, fn, show)])

    for name in DT_NAMES:
        for layout in ("TILE", "ROW_MAJOR"):
            L = getattr(ttnn, layout + "_LAYOUT")
            add(f"full((3,5), 2, dtype={name}, layout={slay(L)})",
                lambda: ttnn.full((3, 5), 2, dtype=dt(name), layout=L, device=dev))
    add("full([3,5], 1.5, dtype=bf16, layout=T) list shape", lambda: ttnn.full([3, 5], 1.5, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev))
    add("full(ttnn.Shape([3,5]), 1.5, ...)", lambda: ttnn.full(ttnn.Shape([3, 5]), 1.5, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev))
    add("full((), 1.5, bf16, T)", lambda: ttnn.full((), 1.5, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev))
    add("full((5,), 1.5, bf16, T)", lambda: ttnn.full((5,), 1.5, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev))
    add("full((2,3,4,5,6), 1.5, bf16, T)", lambda: ttnn.full((2, 3, 4, 5, 6), 1.5, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev))
    add("full((3,5), 1.5) no dtype/layout/device", lambda: ttnn.full((3, 5), 1.5))
    add("full((3,5), 1.5, device=dev) no dtype/layout", lambda: ttnn.full((3, 5), 1.5, device=dev))
    add("full((3,5), fill_value=7, dtype=int32, T)", lambda: ttnn.full((3, 5), fill_value=7, dtype=ttnn.int32, layout=ttnn.TILE_LAYOUT, device=dev))
    add("full_like(x bf16 (3,5), 3.0)", lambda: ttnn.full_like(make((3, 5)), 3.0))
    for fn_name in ("zeros", "ones"):
        f = getattr(ttnn, fn_name)
        add(f"{fn_name}((3,5), dtype=bf16, layout=T, device)", lambda: f((3, 5), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev))
        add(f"{fn_name}((3,5), dtype=int32, layout=RM, device)", lambda: f((3, 5), dtype=ttnn.int32, layout=ttnn.ROW_MAJOR_LAYOUT, device=dev))
        add(f"{fn_name}((), dtype=f32, layout=T, device)", lambda: f((), dtype=ttnn.float32, layout=ttnn.TILE_LAYOUT, device=dev))
        add(f"{fn_name}_like(x)", lambda: getattr(ttnn, fn_name + "_like")(make((3, 5))))
    for args, kw in [((0, 10, 1), dict(dtype=ttnn.bfloat16)), ((0, 10, 1), dict(dtype=ttnn.int32)), ((0, 10, 1), dict(dtype=ttnn.float32)),
                     ((0, 10, 3), dict(dtype=ttnn.int32)), ((10,), dict(dtype=ttnn.int32)), ((5, -5, -1), dict(dtype=ttnn.int32)),
                     ((0, 10, 1), dict(dtype=ttnn.uint32)), ((0.0, 1.0, 0.25), dict(dtype=ttnn.float32)), ((0, 10, 1), dict(dtype=ttnn.bfloat8_b))]:
        for layout in ("ROW_MAJOR", "TILE"):
            kw2 = dict(kw, layout=getattr(ttnn, layout + "_LAYOUT"), device=dev)
            add(f"arange{args} dtype={sdt(kw['dtype'])} layout={slay(kw2['layout'])}", lambda: ttnn.arange(*args, **kw2))
    add("arange(0,10,1, dtype=int32) no device/layout", lambda: ttnn.arange(0, 10, 1, dtype=ttnn.int32))
    add("arange(start=0, end=10, step=1, dtype=int32, device, RM)",
        lambda: ttnn.arange(start=0, end=10, step=1, dtype=ttnn.int32, device=dev, layout=ttnn.ROW_MAJOR_LAYOUT))
    return table("Creation: full / zeros / ones / arange (device=dev unless said)", ["call", "result"], rows, notes)


# --------------------------------------------------------------------------
# multi-chip (run with a multi-chip --system, e.g. t3k)
# --------------------------------------------------------------------------

@section("mesh")
def mesh() -> str:
    if dev.get_num_devices() < 2:
        return "(mesh section skipped: single-chip system; run with --system t3k --only mesh)\n"
    notes = Notes()
    rows = []
    R, C = tuple(dev.shape)
    x = np.ones((8, 6, 64), np.float32)

    def put(mapper=None, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT):
        kw = dict(data_type=dtype, layout=layout, device=dev)
        if mapper is not None:
            kw["mesh_mapper"] = mapper
        return ttnn.Tensor(x, **kw)

    mappers = [
        ("no mesh_mapper", lambda: put()),
        ("ShardTensorToMesh(dev, dim=0)", lambda: put(ttnn.ShardTensorToMesh(dev, dim=0))),
        (f"ShardTensor2dMesh(dev, mesh_shape=({R},{C}), dims=(0, 2))", lambda: put(ttnn.ShardTensor2dMesh(dev, mesh_shape=(R, C), dims=(0, 2)))),
        (f"ShardTensor2dMesh(dev, mesh_shape=({R},{C}), dims=(None, 2))", lambda: put(ttnn.ShardTensor2dMesh(dev, mesh_shape=(R, C), dims=(None, 2)))),
        ("create_mesh_mapper(dev, MeshMapperConfig([PlacementReplicate(), PlacementShard(2)]))",
         lambda: put(ttnn.create_mesh_mapper(dev, ttnn.MeshMapperConfig([ttnn.PlacementReplicate(), ttnn.PlacementShard(2)])))),
        ("ReplicateTensorToMesh(dev)", lambda: put(ttnn.ReplicateTensorToMesh(dev))),
        ("replicate_tensor_to_mesh_mapper(dev)", lambda: put(ttnn.replicate_tensor_to_mesh_mapper(dev))),
        ("ShardTensorToMesh dim=2, ROW_MAJOR, int32",
         lambda: put(ttnn.ShardTensorToMesh(dev, dim=2), ttnn.int32, ttnn.ROW_MAJOR_LAYOUT)),
    ]
    for what, fn in mappers:
        rows.append([f"ttnn.Tensor((8,6,64) ndarray, ..., device=mesh, mesh_mapper={what})", cell(notes, fn, ("shape", "dtype", "layout")) + " per device"])
    t = put(ttnn.ShardTensor2dMesh(dev, mesh_shape=(R, C), dims=(0, 2)))
    ops = [
        ("all_gather(t, dim=0, cluster_axis=1)", lambda: ttnn.all_gather(t, dim=0, cluster_axis=1)),
        ("all_gather(t, dim=2, cluster_axis=0)", lambda: ttnn.all_gather(t, dim=2, cluster_axis=0)),
        ("all_gather(t, dim=0) (no cluster_axis)", lambda: ttnn.all_gather(t, dim=0)),
        ("all_gather(t, dim=1, cluster_axis=1) (unaligned dim 6)", lambda: ttnn.all_gather(t, dim=1, cluster_axis=1)),
        ("reduce_scatter(t, dim=2, cluster_axis=1)", lambda: ttnn.reduce_scatter(t, dim=2, cluster_axis=1)),
        ("reduce_scatter(t, dim=0, cluster_axis=1)", lambda: ttnn.reduce_scatter(t, dim=0, cluster_axis=1)),
        ("all_reduce(t, cluster_axis=1)", lambda: ttnn.all_reduce(t, cluster_axis=1)),
        ("all_reduce(t) (no cluster_axis)", lambda: ttnn.all_reduce(t)),
        ("all_reduce(f32 tensor, cluster_axis=0)",
         lambda: ttnn.all_reduce(put(ttnn.ShardTensor2dMesh(dev, mesh_shape=(R, C), dims=(0, 2)), ttnn.float32), cluster_axis=0)),
        ("all_gather(int32 tensor, dim=0, cluster_axis=1)",
         lambda: ttnn.all_gather(put(ttnn.ShardTensor2dMesh(dev, mesh_shape=(R, C), dims=(0, 2)), ttnn.int32), dim=0, cluster_axis=1)),
        ("all_gather(ROW_MAJOR bf16, dim=0, cluster_axis=1)",
         lambda: ttnn.all_gather(put(ttnn.ShardTensor2dMesh(dev, mesh_shape=(R, C), dims=(0, 2)), layout=ttnn.ROW_MAJOR_LAYOUT), dim=0, cluster_axis=1)),
        ("ttnn.add(t, t) on the mesh", lambda: ttnn.add(t, t)),
        ("ttnn.matmul(t, permute(t)) on the mesh", lambda: ttnn.matmul(t, ttnn.permute(t, (0, 2, 1)))),
    ]
    for what, fn in ops:
        rows.append([f"t = 2-D sharded (0,2) bf16 T; {what if what.startswith('ttnn.') else 'ttnn.' + what}", cell(notes, fn, ("shape", "dtype", "layout"))])

    def compose(composer):
        n = ttnn.to_dtype(ttnn.from_device(t), ttnn.float32).to_numpy(mesh_composer=composer)
        return f"ndarray {n.shape}"
    rows.append([f"to_numpy(mesh_composer=ConcatMesh2dToTensor(dev, mesh_shape=({R},{C}), dims=(0, 2)))",
                 cell(notes, lambda: compose(ttnn.ConcatMesh2dToTensor(dev, mesh_shape=(R, C), dims=(0, 2))))])
    rows.append(["to_numpy(mesh_composer=ConcatMeshToTensor(dev, dim=0))", cell(notes, lambda: compose(ttnn.ConcatMeshToTensor(dev, dim=0)))])
    rows.append(["to_numpy() without composer on a multi-device tensor", cell(notes, lambda: compose(None))])
    rows.append(["ttnn.get_device_tensors(ttnn.from_device(t))",
                 cell(notes, lambda: f"{len(ttnn.get_device_tensors(ttnn.from_device(t)))} host tensors of "
                      + desc(ttnn.get_device_tensors(ttnn.from_device(t))[0]))])
    return table(f"Multi-chip on a {R}x{C} mesh ({SYSTEM}, FABRIC_1D); cells: per-device shape", ["call", "result"], rows, notes)


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------

@section("timing")
def timing() -> str:
    rows = []

    def t_of(fn, n=1):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n

    def ms(x):
        return f"{x * 1e3:.3f} ms" if x < 0.001 else f"{x * 1e3:.1f} ms"

    a = make((64, 128), "bfloat16")
    n0 = dev.num_program_cache_entries()
    rows.append(["ttnn.remainder (64,128) bf16, first call in this process (builds its program; kernels may "
                 "already be in the on-disk JIT cache)", ms(t_of(lambda: ttnn.remainder(a, a)))])
    rows.append(["same call again (program cache hit), mean of 200", ms(t_of(lambda: ttnn.remainder(a, a), 200))])
    for s in [(3, 5), (7, 33, 65)]:
        c = make(s, "bfloat16")
        rows.append([f"same op, new shape {shp(s)}", ms(t_of(lambda: ttnn.remainder(c, c)))])
    rows.append(["program cache entries added by those 4 shapes", str(dev.num_program_cache_entries() - n0)])
    x = make((128, 256), "bfloat16")
    w = make((256, 64), "bfloat16")
    rows.append(["ttnn.matmul (128,256)@(256,64), first call", ms(t_of(lambda: ttnn.matmul(x, w)))])
    rows.append(["ttnn.matmul cache hit, mean of 200", ms(t_of(lambda: ttnn.matmul(x, w), 200))])
    rows.append(["host→device ttnn.Tensor(f32 ndarray (1024,1024), bfloat16, TILE, device)",
                 ms(t_of(lambda: make((1024, 1024), "bfloat16"), 5))])
    y = make((1024, 1024), "bfloat16")
    rows.append(["device→host ttnn.from_device (1024,1024) bf16 TILE", ms(t_of(lambda: ttnn.from_device(y), 5))])
    rows.append(["rejected call (ttnn.add, incompatible shapes), mean of 20",
                 ms(t_of(lambda: _swallow(lambda: ttnn.add(a, make((3, 5)))), 20))])
    rows += _cold_timing()
    return table("Timing (mock, this machine)", ["what", "time"], rows)


def _cold_timing() -> list[list[str]]:
    """Open/close and first-op times in a fresh process with an empty cache
    directory (cold on-disk JIT cache), then again with that cache warm."""
    import subprocess  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    prog = (
        "import time, numpy as np\nt0 = time.perf_counter()\nfrom pjrt_tt.targets import mock\n"
        f"ttnn, dev = mock.open({SYSTEM!r})\nt1 = time.perf_counter()\n"
        "a = ttnn.Tensor(np.ones((64, 64), np.float32), data_type=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev)\n"
        "t2 = time.perf_counter(); ttnn.add(a, a); t3 = time.perf_counter()\n"
        "mock.close(dev); t4 = time.perf_counter()\n"
        "print('TIMES', t1 - t0, t3 - t2, t4 - t3)\n"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = _sub_env(PJRT_TT_MOCK_CACHE=tmp)
        for label in ("cold", "warm"):
            p = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=env, timeout=600)
            line = [ln for ln in p.stdout.splitlines() if ln.startswith("TIMES")]
            if not line:
                rows.append([f"fresh process, {label} cache", "failed: " + p.stderr[-200:]])
                continue
            t_open, t_add, t_close = map(float, line[0].split()[1:])
            rows.append([f"fresh process, {label} on-disk cache: import ttnn + mock.open({SYSTEM!r})", f"{t_open:.2f} s"])
            rows.append([f"fresh process, {label} on-disk cache: first ttnn.add", f"{t_add * 1e3:.1f} ms"])
            rows.append([f"fresh process, {label} on-disk cache: mock.close", f"{t_close * 1e3:.1f} ms"])
    return rows


def _swallow(fn):
    with quiet_stderr():
        try:
            fn()
        except Exception:  # noqa: BLE001
            pass


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

BEGIN, END = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"


def run(system: str, only: list[str] | None) -> str:
    global ttnn, dev, SYSTEM
    SYSTEM = system
    from pjrt_tt.targets import mock  # noqa: PLC0415

    t0 = time.perf_counter()
    ttnn, dev = mock.open(system)
    t_open = time.perf_counter() - t0
    import importlib.metadata as md  # noqa: PLC0415

    head = [f"Generated by `python tools/mock_probe.py --system {system}` with ttnn "
            f"{md.version('ttnn')} in mock mode ({dev.arch()}, compute grid "
            f"{dev.compute_with_storage_grid_size()}); device open took {t_open:.2f} s in this run.", ""]
    parts = []
    for name, fn in SECTIONS.items():
        if only and name not in only:
            continue
        t = time.perf_counter()
        parts.append(f"<!-- section {name} -->\n" + fn())
        print(f"[probe] {name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    t = time.perf_counter()
    mock.close(dev)
    print(f"[probe] close: {time.perf_counter() - t:.3f} s", file=sys.stderr)
    return "\n".join(head) + "\n" + "\n".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--system", default="n150")
    ap.add_argument("--only", default="", help="comma-separated sections: " + ",".join(SECTIONS))
    ap.add_argument("--update-doc", metavar="PATH", help="replace the generated block of this markdown file")
    ap.add_argument("-o", "--output", metavar="PATH", help="write the markdown here instead of stdout")
    ap.add_argument("--mesh-system", default="t3k",
                    help="multi-chip system for the mesh section, run in a subprocess (one system per process); '' to skip")
    args = ap.parse_args(argv)
    only = [s for s in args.only.split(",") if s] or None
    if only:
        unknown = set(only) - set(SECTIONS)
        if unknown:
            ap.error(f"unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    sub_mesh = bool(args.mesh_system) and args.system != args.mesh_system and (only is None or "mesh" in only)
    if sub_mesh:
        only = [s for s in (only or SECTIONS) if s != "mesh"]
    text = run(args.system, only) if only != [] else ""
    if sub_mesh:
        import subprocess  # noqa: PLC0415

        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--system", args.mesh_system,
                            "--only", "mesh", "--mesh-system", ""], capture_output=True, text=True, timeout=1200,
                           env=_sub_env())
        body = p.stdout.split("\n", 2)[-1] if p.returncode == 0 else f"(mesh probe failed: exit {p.returncode})\n"
        text += "\n" + body
    if args.update_doc:
        doc = open(args.update_doc).read()
        if BEGIN not in doc or END not in doc:
            doc = doc.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
        pre, rest = doc.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        with open(args.update_doc, "w") as f:
            f.write(pre + BEGIN + "\n" + text + "\n" + END + post)
    elif args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, REPO)   # this checkout's pjrt_tt, as in the probe's subprocesses
    raise SystemExit(main())
