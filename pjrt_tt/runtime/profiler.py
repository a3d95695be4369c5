"""The Python side of the PJRT profiler extension (csrc/profiler.cc, docs/profiling.md).

A jax.profiler / torch_xla profiler session creates a Session through the extension; while
one is started, the Recorder keeps the plugin's spans (compile and its phases, each
execution, each ttnn op of it, buffer transfers), and collect() serializes them as a
tensorflow.profiler.XSpace the framework merges into its trace. With no session started,
the hot paths pay one attribute check (`recorder.active`).

The XSpace is written with the few lines of protobuf wire format below: the `protobuf`
package is not a dependency of pjrt-tt and ships no xplane_pb2. Field numbers are those of
xplane.proto (tsl/profiler/protobuf) and profiler_options.proto.

Plane names: trace viewers (xprof, TensorBoard, the trace.json.gz jax writes for Perfetto)
show "/host:CPU", "/device:GPU:*", "/device:TPU:*" and "/device:CUSTOM:*" planes only, so
the TT planes are custom device planes: "/device:CUSTOM:TT:<id>" per device (programs and
their ttnn ops) and "/device:CUSTOM:TT host" (compiles and transfers).
"""
from __future__ import annotations

import struct
import threading
import time

from pjrt_tt.errors import FailedPrecondition

HOST_PLANE = "/device:CUSTOM:TT host"
DEVICE_PLANE = "/device:CUSTOM:TT:{}"
OP_SPANS_OPTION = "tt_op_spans"   # ProfileOptions.advanced_configuration: False = no per-op spans


class Recorder:
    """The spans of the started sessions. A span is (plane, line, name, start ns, end ns,
    stats), times from time.perf_counter_ns()."""

    def __init__(self):
        self.active = False    # some session is started: the one check the hot paths make
        self.op_spans = False  # some started session wants a span per ttnn op
        self._sessions: list[Session] = []
        self._lock = threading.Lock()

    now = staticmethod(time.perf_counter_ns)

    def add(self, plane: str, line: str, name: str, start: int, end: int, stats: dict | None = None) -> None:
        span = (plane, line, name, start, end, stats)
        with self._lock:
            for s in self._sessions:
                s.spans.append(span)

    def host(self, line: str, name: str, start: int, end: int, stats: dict | None = None) -> None:
        self.add(HOST_PLANE, line, name, start, end, stats)

    def op_timer(self, plane: str, program: str):
        """The executor's per-op timer hook (BoundProgram.timer) for one run of `program`."""
        add, now = self.add, self.now

        def record(op, ns):
            end = now()
            add(plane, "TTNN ops", f"ttnn.{op.fn}", end - ns, end, {"program": program, "source": op.origin})
        return record

    def _update(self, session: "Session", started: bool) -> None:
        with self._lock:
            if started:
                self._sessions.append(session)
            elif session in self._sessions:
                self._sessions.remove(session)
            self.active = bool(self._sessions)
            self.op_spans = any(s.op_spans for s in self._sessions)


RECORDER = Recorder()   # process-wide: a PJRT profiler session belongs to no client


class Session:
    """One PLUGIN_Profiler: created, started, stopped, collected (any number of times)."""

    def __init__(self, recorder: Recorder, options: bytes):
        self.recorder = recorder
        self.spans: list[tuple] = []
        self.started = False
        self.enabled, self.op_spans = parse_options(options)
        self.clock_offset = 0   # epoch ns - perf_counter ns, taken at start

    def start(self) -> None:
        if self.started:
            raise FailedPrecondition("the pjrt-tt profiler session is started already")
        self.spans = []
        self.clock_offset = time.time_ns() - time.perf_counter_ns()
        self.started = True
        if self.enabled:
            self.recorder._update(self, True)

    def stop(self) -> None:
        if not self.started:
            raise FailedPrecondition("the pjrt-tt profiler session was not started")
        self.recorder._update(self, False)
        self.started = False

    def close(self) -> None:
        self.recorder._update(self, False)
        self.started = False

    def collect(self) -> bytes:
        if self.started:
            raise FailedPrecondition("stop the pjrt-tt profiler session before collecting its data")
        return xspace(self.spans, self.clock_offset)


def parse_options(options: bytes) -> tuple[bool, bool]:
    """(record at all, record per-op spans) from a serialized tensorflow.ProfileOptions:
    device_tracer_level 0 turns the plugin's tracing off (as it does XLA's device tracers);
    advanced_configuration {"tt_op_spans": False} keeps the per-op spans out. Empty
    options are the defaults (both on)."""
    if not options:
        return True, True
    fields = _read_fields(options)
    enabled = any(v for n, v in fields if n == 3)   # device_tracer_level
    op_spans = True
    for n, entry in fields:
        if n == 12:   # advanced_configuration map entry: key = 1, value = 2 (AdvancedConfigValue)
            kv = dict(_read_fields(entry))
            if kv.get(1) == OP_SPANS_OPTION.encode():
                value = dict(_read_fields(kv.get(2, b"")))
                op_spans = bool(value.get(2, value.get(3, 1)))   # bool_value = 2, int64_value = 3
    return enabled, op_spans


def _read_fields(data: bytes) -> list[tuple[int, object]]:
    """(field number, int or bytes) of each varint or length-delimited field; others skipped."""
    out, i = [], 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            size, i = _varint(data, i)
            value, i = bytes(data[i:i + size]), i + size
        elif wire == 1:
            value, i = None, i + 8
        elif wire == 5:
            value, i = None, i + 4
        else:
            break
        out.append((number, value))
    return out


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while i < len(data):
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return value, i


# ------------------------------------ XSpace writer ------------------------------------

def _uvarint(n: int) -> bytes:
    n &= (1 << 64) - 1   # int64 negatives as ten-byte varints, as protobuf does
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _int(field: int, n: int) -> bytes:
    return _uvarint(field << 3) + _uvarint(n) if n else b""


def _len(field: int, payload: bytes) -> bytes:
    return _uvarint(field << 3 | 2) + _uvarint(len(payload)) + payload


def _str(field: int, s: str) -> bytes:
    return _len(field, s.encode()) if s else b""


def _stat(metadata_id: int, value) -> bytes:
    body = _int(1, metadata_id)
    if isinstance(value, float):
        body += _uvarint(2 << 3 | 1) + struct.pack("<d", value)   # double_value
    elif isinstance(value, int):
        body += _uvarint(4 << 3) + _uvarint(value)                # int64_value (also 0)
    else:
        body += _len(5, str(value).encode())                      # str_value
    return body


def xspace(spans: list[tuple], clock_offset: int) -> bytes:
    """The serialized XSpace of `spans`: one plane per plane name, one line per line name
    (events in time order), event and stat metadata per plane; times in ps from each line's
    start (ns since the epoch)."""
    planes: dict[str, dict[str, list]] = {}
    for span in spans:
        planes.setdefault(span[0], {}).setdefault(span[1], []).append(span)
    out = b""
    names = sorted(planes, key=lambda p: (p != HOST_PLANE, p))
    for plane_id, plane in enumerate(names):
        events: dict[str, int] = {}
        stats: dict[str, int] = {}
        body = _int(1, plane_id) + _str(2, plane)
        for line_id, (line, line_spans) in enumerate(sorted(planes[plane].items())):
            line_spans.sort(key=lambda s: (s[3], -s[4]))   # parents before the spans nested in them
            begin = line_spans[0][3]
            end = max(s[4] for s in line_spans)
            line_body = _int(1, line_id) + _int(10, line_id) + _str(2, line) + _int(3, begin + clock_offset) \
                + _int(9, (end - begin) * 1000)
            for _, _, name, start, stop, extra in line_spans:
                mid = events.setdefault(name, len(events) + 1)
                event = _int(1, mid) + _uvarint(2 << 3) + _uvarint((start - begin) * 1000) \
                    + _int(3, max(stop - start, 0) * 1000)
                for key, value in (extra or {}).items():
                    event += _len(4, _stat(stats.setdefault(key, len(stats) + 1), value))
                line_body += _len(4, event)
            body += _len(3, line_body)
        for name, mid in events.items():
            body += _len(4, _int(1, mid) + _len(2, _int(1, mid) + _str(2, name)))
        for name, sid in stats.items():
            body += _len(5, _int(1, sid) + _len(2, _int(1, sid) + _str(2, name)))
        out += _len(1, body)
    return out
