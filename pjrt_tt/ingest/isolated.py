"""Program bytes are read first in a helper process, so bytes that crash jaxlib's readers
cost a failed compile, never the host process.

jaxlib 0.7.1's MLIR bytecode reader corrupts the heap or segfaults on some malformed
portable artifacts (about 1 in 300 bit-flipped ones, tests/test_fuzz.py), and no check in
the same process can rule that out. So every program the compiler has not seen before is
read by `IsolatedReader`: a long-lived helper (started on first use, restarted after a
death) runs the same reading code as ingest (`read_program`) and answers. Only bytes the
helper read without dying are read in-process. A helper that dies or overruns its time
fails the compile with INVALID_ARGUMENT naming what happened. Verdicts are kept by the
SHA-256 of the bytes, so compiling the same program again costs nothing.
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

from pjrt_tt.errors import InvalidArgument

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


def read_program(code: bytes, fmt: str) -> None:
    """What ingest does with the raw bytes before anything else reads them (the helper
    runs it; raises InvalidArgument when ingest would refuse them): the bytecode reader, and
    check_module, which reads every op's attributes once. The bindings abort the process (a
    C++ exception with no handler) on some corrupt attributes, e.g. a bit-flipped one that
    reads back as a location (tests/test_fuzz.py); once all of them read here, the same
    reads in-process are safe."""
    from pjrt_tt.ingest import _hlo_to_stablehlo, _read_module, check_module, new_context
    if fmt == "hlo":
        code = _hlo_to_stablehlo(code)
    check_module(_read_module(new_context(), bytes(code)))


class IsolatedReader:
    def __init__(self):
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._verdicts: collections.OrderedDict[bytes, str] = collections.OrderedDict()   # '' = read fine
        self.reads = self.restarts = 0   # (tests and benchmarks read them)
        self.seconds = 0.0               # time spent waiting for the helper

    def check(self, code: bytes, fmt: str) -> None:
        """Returns when the helper read `code` without dying; raises InvalidArgument when it
        died, overran, or refused the bytes as ingest would."""
        if fmt not in _FORMATS:
            return   # ingest refuses other formats before reading anything
        digest = hashlib.sha256(_FORMATS[fmt] + code).digest()
        with self._lock:
            verdict = self._verdicts.get(digest)
            if verdict is None:
                start = time.perf_counter()
                try:
                    verdict = self._read(code, fmt)
                finally:
                    self.seconds += time.perf_counter() - start
                self._verdicts[digest] = verdict
                while len(self._verdicts) > VERDICTS_KEPT:
                    self._verdicts.popitem(last=False)
            self._verdicts.move_to_end(digest)
        if verdict:
            raise InvalidArgument(verdict)

    def close(self) -> None:
        with self._lock:
            self._stop()

    # --- the helper ---------------------------------------------------------------------
    def _read(self, code: bytes, fmt: str) -> str:
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        proc = self._proc
        self.reads += 1
        mb = len(code) / 1e6
        timeout = TIMEOUT_SECONDS + TIMEOUT_SECONDS_PER_MB_OF_OPS * min(mb, OPS_MB) + TIMEOUT_SECONDS_PER_GB * mb / 1e3
        try:
            proc.stdin.write(_FORMATS[fmt] + struct.pack("<Q", len(code)) + code)
            proc.stdin.flush()
            status, message = self._answer(proc, timeout)
        except (BrokenPipeError, EOFError):
            return self._died(proc, len(code))
        except TimeoutError:
            self._stop()
            return (f"pjrt-tt could not read the program it was given ({len(code)} bytes, format "
                    f"{fmt!r}): reading it took longer than {timeout:.0f} s")
        if status == _REFUSED:
            return message
        return ""   # read fine, or raised something ingest will raise again in-process (safe now)

    def _answer(self, proc, timeout: float) -> tuple[bytes, str]:
        deadline = time.monotonic() + timeout
        fd = proc.stdout.fileno()
        data = b""
        want = 5
        while len(data) < want:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, max(want - len(data), 1 << 16))
            if not chunk:
                raise EOFError
            data += chunk
            if len(data) >= 5:
                want = 5 + struct.unpack("<I", data[1:5])[0]
        return data[:1], data[5:want].decode("utf-8", "replace")

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


def _serve() -> None:
    """The helper: read requests from stdin, answer on stdout, until stdin closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr   # nothing but answers goes to the parent
    while True:
        header = stdin.read(9)
        if len(header) < 9:
            return
        fmt = {v: k for k, v in _FORMATS.items()}[header[:1]]
        code = stdin.read(struct.unpack("<Q", header[1:])[0])
        try:
            read_program(code, fmt)
            status, message = _OK, ""
        except InvalidArgument as e:
            status, message = _REFUSED, str(e)
        except Exception as e:   # not a crash: ingest raises it again in-process
            status, message = _RAISED, f"{type(e).__name__}: {e}"
        body = message.encode("utf-8", "replace")
        stdout.write(status + struct.pack("<I", len(body)) + body)
        stdout.flush()


if __name__ == "__main__":
    _serve()
