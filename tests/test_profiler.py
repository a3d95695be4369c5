"""jax.profiler sessions see the plugin's work through the PJRT profiler extension
(csrc/profiler.cc, pjrt_tt/runtime/profiler.py, docs/profiling.md)."""
from __future__ import annotations

import ctypes as c
import glob
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.profiler import ProfileData

from pjrt_tt.runtime.profiler import DEVICE_PLANE, HOST_PLANE, RECORDER, Session, xspace


def _trace(tmp_path, fn, options=None):
    with jax.profiler.trace(str(tmp_path), profiler_options=options):
        fn()
    files = glob.glob(str(tmp_path / "**" / "*.xplane.pb"), recursive=True)
    assert len(files) == 1
    return ProfileData.from_file(files[0])


def _events(data, plane_name, line_name):
    plane = data.find_plane_with_name(plane_name)
    assert plane is not None, [p.name for p in data.planes]
    lines = [l for l in plane.lines if l.name == line_name]
    assert len(lines) == 1, [l.name for l in plane.lines]
    return list(lines[0].events)


def test_trace_shows_compile_execute_ops_and_transfers(tt, cpu, tmp_path):
    def f(x):
        return jnp.tanh(x @ x) + 1.0

    x = np.random.default_rng(0).standard_normal((32, 32)).astype(np.float32)
    xt = jax.device_put(x, tt)
    fn = jax.jit(f)
    out = []
    data = _trace(tmp_path, lambda: out.extend([np.asarray(fn(xt)), np.asarray(fn(xt))]))
    want = np.asarray(fn(jax.device_put(x, cpu)))
    np.testing.assert_allclose(out[0], want, rtol=2e-2, atol=2e-2)

    compiles = _events(data, HOST_PLANE, "Compile")
    top = [e for e in compiles if e.name.startswith("compile ")]
    assert len(top) == 1 and top[0].duration_ns > 0
    name = top[0].name[len("compile "):]
    phases = [e.name for e in compiles if not e.name.startswith("compile ")]
    assert phases[:4] == ["read", "ingest", "lower", "passes"], phases
    for e in compiles:   # the phases lie inside the compile
        assert top[0].start_ns <= e.start_ns and e.end_ns <= top[0].end_ns + 1
    runs = _events(data, DEVICE_PLANE.format(tt.id), "TT programs")
    assert [e.name for e in runs] == [name, name]
    assert all(e.duration_ns > 0 for e in runs)
    assert top[0].end_ns <= runs[0].start_ns < runs[0].end_ns <= runs[1].start_ns
    ops = _events(data, DEVICE_PLANE.format(tt.id), "TTNN ops")
    assert [e.name for e in ops] == ["ttnn.matmul", "ttnn.tanh", "ttnn.add"] * 2
    for op in ops[:3]:
        assert runs[0].start_ns <= op.start_ns and op.end_ns <= runs[0].end_ns + 1
    assert any(k == "source" and "dot_general" in str(v) for k, v in ops[0].stats)
    reads = _events(data, HOST_PLANE, "Transfers")
    assert [e.name for e in reads] == ["device to host"] * 2
    assert dict(reads[0].stats)["bytes"] == 32 * 32 * 4


def test_op_spans_can_be_left_out(tt, tmp_path):
    options = jax.profiler.ProfileOptions()
    options.advanced_configuration = {"tt_op_spans": False}
    fn = jax.jit(lambda x: x * 2.0 + 1.0)
    x = jax.device_put(np.ones(8, np.float32), tt)
    data = _trace(tmp_path, lambda: np.asarray(fn(x)), options)
    plane = data.find_plane_with_name(DEVICE_PLANE.format(tt.id))
    assert [l.name for l in plane.lines] == ["TT programs"]


def test_nothing_is_recorded_without_a_session(tt):
    assert not RECORDER.active
    watcher = Session(RECORDER, b"")   # created, never started: sees no span
    fn = jax.jit(lambda x: x - 3.0)
    np.asarray(fn(jax.device_put(np.ones(4, np.float32), tt)))
    assert not RECORDER.active and watcher.spans == []
    assert watcher.collect() == b""   # an empty XSpace


def test_xspace_round_trips_through_jaxlib():
    spans = [(HOST_PLANE, "Compile", "compile p", 1_000, 5_000, {"ops": 3, "format": "mlir"}),
             (HOST_PLANE, "Compile", "lower", 2_000, 3_000, None),
             (DEVICE_PLANE.format(0), "TT programs", "p", 6_000, 9_000, {"ratio": 0.5})]
    data = ProfileData.from_serialized_xspace(xspace(spans, 10**9))
    compiles = _events(data, HOST_PLANE, "Compile")
    assert [(e.name, e.start_ns, e.duration_ns) for e in compiles] == \
        [("compile p", 10**9 + 1_000, 4_000), ("lower", 10**9 + 2_000, 1_000)]
    assert dict(compiles[0].stats) == {"ops": 3, "format": "mlir"}
    run, = _events(data, DEVICE_PLANE.format(0), "TT programs")
    assert (run.name, run.duration_ns, dict(run.stats)) == ("p", 3_000, {"ratio": 0.5})


# --- the C entries misused, through ctypes (tests/pjrt_capi.py) --------------------------

class _Api(c.Structure):   # PLUGIN_Profiler_Api (csrc/profiler.h)
    _fields_ = [("struct_size", c.c_size_t), ("priv", c.c_void_p)] + \
        [(n, c.c_void_p) for n in ("error_destroy", "error_message", "error_get_code", "create", "destroy",
                                   "start", "stop", "collect_data")]


class _Ext(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("type", c.c_int), ("next", c.c_void_p),
                ("profiler_api", c.POINTER(_Api)), ("traceme_context_id", c.c_int64)]


class _Create(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("options", c.c_char_p), ("options_size", c.c_size_t),
                ("profiler", c.c_void_p)]


class _Handle(c.Structure):   # destroy, start, stop
    _fields_ = [("struct_size", c.c_size_t), ("profiler", c.c_void_p)]


class _Collect(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("profiler", c.c_void_p), ("buffer", c.c_void_p),
                ("buffer_size_in_bytes", c.c_size_t)]


class _ErrMessage(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("priv", c.c_void_p), ("error", c.c_void_p),
                ("message", c.c_void_p), ("message_size", c.c_size_t)]


class _ErrCode(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("priv", c.c_void_p), ("error", c.c_void_p), ("code", c.c_int)]


def _profiler_api():
    lib = c.CDLL(str(Path(__import__("pjrt_tt").__file__).parent / "libpjrt_tt.so"))
    lib.GetPjrtApi.restype = c.c_void_p
    ext = c.c_void_p.from_address(lib.GetPjrtApi() + 8).value   # PJRT_Api.extension_start
    assert ext
    ext = _Ext.from_address(ext)
    assert ext.type == 1 and ext.next is None   # PJRT_Extension_Type_Profiler
    api = ext.profiler_api.contents
    assert api.struct_size == c.sizeof(_Api) == 80

    def call(entry, args):
        err = c.CFUNCTYPE(c.c_void_p, c.c_void_p)(getattr(api, entry))(c.addressof(args) if args else None)
        if not err:
            return None
        msg = _ErrMessage(struct_size=c.sizeof(_ErrMessage), error=err)
        c.CFUNCTYPE(None, c.c_void_p)(api.error_message)(c.addressof(msg))
        code = _ErrCode(struct_size=c.sizeof(_ErrCode), error=err)
        assert call("error_get_code", code) is None
        text = c.string_at(msg.message, msg.message_size).decode()
        small = _ErrCode(struct_size=24, error=err, code=-7)   # no room for `code`: left alone
        assert call("error_get_code", small) is None and small.code == -7
        c.CFUNCTYPE(None, c.c_void_p)(api.error_destroy)(c.addressof(_ErrMessage(struct_size=24, error=err)))
        return code.code, text
    return call


def test_misused_entries_give_errors_not_crashes(tt):
    call = _profiler_api()
    assert call("create", None)[0] == 3                      # null args: INVALID_ARGUMENT
    assert call("start", _Handle())[0] == 3                  # null profiler
    assert call("stop", _Handle(profiler=0x1234))[0] == 3    # not a profiler of ours
    assert call("create", _Create(options=None, options_size=5))[0] == 3
    args = _Create(options=b"", options_size=0)
    assert call("create", args) is None
    p = args.profiler
    assert call("stop", _Handle(profiler=p))[0] == 9         # stop before start: FAILED_PRECONDITION
    assert call("start", _Handle(profiler=p)) is None
    assert call("start", _Handle(profiler=p))[0] == 9        # started twice
    assert call("collect_data", _Collect(profiler=p))[0] == 9   # still running
    assert call("stop", _Handle(profiler=p)) is None
    early = (c.c_uint8 * 8)()
    assert call("collect_data", _Collect(profiler=p, buffer=c.addressof(early)))[0] == 9  # size first
    first = _Collect(profiler=p)
    assert call("collect_data", first) is None and first.buffer_size_in_bytes == 0   # nothing recorded
    assert call("destroy", _Handle(profiler=p)) is None
    assert call("destroy", _Handle(profiler=p))[0] == 3      # destroyed already
    assert not RECORDER.active
