"""Program bytes are read in a helper process, so bytes that crash jaxlib's readers cost a
failed compile, never the host process.

jaxlib 0.7.1's readers (MLIR bytecode, HloModuleProto) corrupt the heap or segfault on some
malformed input (about 1 in 300 bit-flipped portable artifacts, tests/test_fuzz.py), and not
always on the first read: a helper that survives a read proves nothing about the next one.
So the host process never reads the framework's bytes. Every program the compiler has not
seen before goes to `IsolatedReader`: a long-lived helper (started with the client, restarted
after a death) runs the same reading code as ingest (`read_program`) and hands back the
module it read, written by MLIR's own bytecode writer (well-formed by construction); the
compiler parses that. A helper that dies or overruns its time fails the compile with
INVALID_ARGUMENT naming what happened. Refusals are kept by the SHA-256 of the bytes.
"""
from __future__ import annotations

import collections
import hashlib
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time

from pjrt_tt.errors import InvalidArgument, ResourceExhausted, TTError, Unimplemented

# Time a read may take before the helper counts as hung (jaxlib 0.12's reader loops forever
# on some bit-flipped artifacts). The helper's start-up is not counted. Measured here: ops
# read and check at ~3.4 s per MB of bytecode (20000 ops, 384 KB: 1.3 s), constants at well
# over 100 MB/s; so a base, ~6x that per MB of the first 64 MB (ops), and a rate for the
# rest (constants).
TIMEOUT_SECONDS = 10.0
TIMEOUT_SECONDS_PER_MB_OF_OPS = 20.0
OPS_MB = 64
TIMEOUT_SECONDS_PER_GB = 60.0
VERDICTS_KEPT = 4096            # hashes of bytes already read (32 bytes each, plus refusals' text)

_FORMATS = {"mlir": b"m", "hlo": b"h"}
_OK, _REFUSED, _RAISED = b"o", b"r", b"x"


def read_program(code: bytes, fmt: str) -> bytes:
    """What ingest does with the raw bytes before anything else reads them (the helper
    runs it; raises InvalidArgument when ingest would refuse them): the reader (HLO converted
    to StableHLO first), and check_module, which reads every op's attributes once (the
    bindings abort on some corrupt attributes, e.g. a bit-flipped one that reads back as a
    location). Returns the module as MLIR bytecode of MLIR's own writing, locations kept."""
    from pjrt_tt.ingest import _hlo_to_stablehlo, _read_module, check_module, new_context
    if fmt == "hlo":
        code = _hlo_to_stablehlo(code)
    module = _read_module(new_context(), bytes(code))
    check_module(module)
    return module.operation.get_asm(binary=True, enable_debug_info=True)


class IsolatedReader:
    def __init__(self):
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._refusals: collections.OrderedDict[bytes, str] = collections.OrderedDict()   # digest -> why
        self.reads = self.restarts = 0   # (tests and benchmarks read them)
        self.seconds = 0.0               # time spent waiting for the helper

    def read(self, code: bytes, fmt: str) -> bytes:
        """The module the helper read from `code` (format `fmt`), as MLIR bytecode of MLIR's
        own writing (for "hlo": the StableHLO it converts to); raises InvalidArgument when the
        helper died, overran, or refused the bytes as ingest would."""
        if fmt not in _FORMATS:
            raise InvalidArgument(f"pjrt-tt accepts programs in format 'mlir' or 'hlo', not {fmt!r}")
        digest = hashlib.sha256(_FORMATS[fmt] + code).digest()
        with self._lock:
            refusal = self._refusals.get(digest)
            if refusal is None:
                start = time.perf_counter()
                try:
                    refusal, module = self._read(code, fmt)
                finally:
                    self.seconds += time.perf_counter() - start
                if not refusal:
                    return module
                self._refusals[digest] = refusal
                while len(self._refusals) > VERDICTS_KEPT:
                    self._refusals.popitem(last=False)
            self._refusals.move_to_end(digest)
        raise InvalidArgument(refusal)

    def start(self) -> None:
        """Starts the helper now, if it is not running: its start-up (a Python importing
        jaxlib's MLIR, ~1.3 s) then overlaps what the framework does before its first compile
        (building the model, tracing it) instead of adding to that compile."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()

    def close(self) -> None:
        with self._lock:
            self._stop()

    # --- the helper ---------------------------------------------------------------------
    def _read(self, code: bytes, fmt: str) -> tuple[str, bytes]:
        """(why the bytes are refused, or "" and the module the helper read)."""
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        proc = self._proc
        self.reads += 1
        mb = len(code) / 1e6
        timeout = TIMEOUT_SECONDS + TIMEOUT_SECONDS_PER_MB_OF_OPS * min(mb, OPS_MB) + TIMEOUT_SECONDS_PER_GB * mb / 1e3
        try:
            proc.stdin.write(_FORMATS[fmt] + struct.pack("<Q", len(code)) + code)
            proc.stdin.flush()
            status, body = self._answer(proc, timeout)
        except (BrokenPipeError, EOFError):
            return self._died(proc, len(code)), b""
        except TimeoutError:
            self._stop()
            return (f"pjrt-tt could not read the program it was given ({len(code)} bytes, format "
                    f"{fmt!r}): reading it took longer than {timeout:.0f} s"), b""
        if status == _OK:
            return "", body
        if status == _RAISED:   # an error ingest names with its own code (an unsupported type...)
            code, _, message = body.decode("utf-8", "replace").partition("\n")
            raise _coded(int(code), message)
        return body.decode("utf-8", "replace"), b""

    def _answer(self, proc, timeout: float) -> tuple[bytes, bytes]:
        """(status, body) of the helper's answer: 1 byte, a uint64 length, the body."""
        deadline = time.monotonic() + timeout
        fd = proc.stdout.fileno()
        data = bytearray()
        want = 9
        while len(data) < want:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, max(want - len(data), 1 << 16))
            if not chunk:
                raise EOFError
            data += chunk
            if want == 9 and len(data) >= 9:
                want = 9 + struct.unpack("<Q", data[1:9])[0]
        return bytes(data[:1]), bytes(data[9:want])

    def _died(self, proc, size: int) -> str:
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._stop()
            code = None
        self._proc = None
        how = (f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exited with code {code}")
        return (f"pjrt-tt could not read the program it was given ({size} bytes): the isolated "
                f"reader {how} while reading it (jaxlib's reader crashes on malformed bytes; the "
                "program is corrupt or not a StableHLO portable artifact / HloModuleProto)")

    def _start(self) -> None:
        self._stop()
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        self._proc = subprocess.Popen([sys.executable, "-m", "pjrt_tt.ingest.isolated"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self.restarts += 1

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __del__(self):
        try:
            self._stop()
        except Exception:
            pass


def _coded(code: int, message: str) -> TTError:
    """The TTError of the class with PJRT code `code` (TTError itself, INTERNAL, else)."""
    kinds = [TTError, InvalidArgument, Unimplemented, ResourceExhausted]
    error = next((k for k in kinds if k.pjrt_code == code), TTError)(message)
    error.pjrt_code = code
    return error


def _serve() -> None:
    """The helper: read requests from stdin, answer on stdout, until stdin closes. What a
    first read would load (jax's XLA bindings for HLO, ~0.65 s; MLIR's dialects) is loaded
    before the first request: the helper starts with the client, so this overlaps the
    framework's own work instead of the first compile."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr   # nothing but answers goes to the parent
    from jax._src.lib import _jax  # noqa: F401
    from pjrt_tt.ingest import new_context
    new_context()
    while True:
        header = stdin.read(9)
        if len(header) < 9:
            return
        fmt = {v: k for k, v in _FORMATS.items()}[header[:1]]
        code = stdin.read(struct.unpack("<Q", header[1:])[0])
        try:
            status, body = _OK, read_program(code, fmt)
        except InvalidArgument as e:
            status, body = _REFUSED, str(e).encode("utf-8", "replace")
        except TTError as e:   # refused with another code (UNIMPLEMENTED for a type the chip lacks...)
            status, body = _RAISED, f"{e.pjrt_code}\n{e}".encode("utf-8", "replace")
        except Exception as e:   # a reader error that is no crash
            status, body = _REFUSED, f"pjrt-tt could not read the program it was given: {type(e).__name__}: {e}".encode(
                "utf-8", "replace")
        stdout.write(status + struct.pack("<Q", len(body)) + body)
        stdout.flush()


if __name__ == "__main__":
    _serve()
