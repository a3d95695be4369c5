"""Shim-level tests: the PJRT plugin (pjrt_tt/libpjrt_tt.so) loaded into JAX over the
real runtime. Each test runs in a fresh Python process, so plugin registration
starts clean and a crash in the plugin fails the test instead of killing pytest."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pjrt_tt

LIBRARY = Path(pjrt_tt.__file__).resolve().parent / "libpjrt_tt.so"

pytestmark = pytest.mark.skipif(
    not LIBRARY.exists(), reason="libpjrt_tt.so is not built (pip install --no-build-isolation -e .)")

# Installed packages register the plugin through the `jax_plugins` entry point; a bare
# source tree registers it by hand. Registering twice would fail, so do one or the other.
PRELUDE = """
import importlib.metadata
import numpy as np
import jax
import jax.numpy as jnp
from jax._src import xla_bridge
if not any(ep.name == "tt" for ep in importlib.metadata.entry_points(group="jax_plugins")):
    xla_bridge.register_plugin("tt", priority=500, library_path=LIBRARY)
tt = jax.devices("tt")[0]
"""


def run(body: str, prelude: bool = True) -> str:
    """Runs `body` (after PRELUDE) in a fresh interpreter; returns its stdout."""
    script = (f"LIBRARY, TESTS = {str(LIBRARY)!r}, {str(Path(__file__).parent)!r}\n{PRELUDE if prelude else ''}\n"
              f"{textwrap.dedent(body)}")
    env = dict(os.environ)
    env.setdefault("HOME", str(Path.home()))  # ttnn needs HOME
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=900, env=env)
    assert proc.returncode == 0, (
        f"exit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    assert "had no entry" not in proc.stderr, proc.stderr  # a PJRT_Api slot the shim forgot
    return proc.stdout


def test_discovery():
    out = run("""
        devices = jax.devices("tt")
        assert devices and all(d.platform == "tt" for d in devices), devices
        assert isinstance(tt.device_kind, str) and tt.device_kind
        assert tt.default_memory() in tt.addressable_memories()
        assert "bytes_in_use" in tt.memory_stats()
        print("DEVICES", len(devices), str(tt))
    """)
    assert "DEVICES" in out


def test_round_trip_jit_and_delete():
    out = run("""
        host = np.arange(12, dtype=np.float32).reshape(3, 4)
        x = jax.device_put(host, tt)
        assert x.devices() == {tt}
        np.testing.assert_array_equal(np.asarray(x), host)
        y = jax.jit(lambda a: a + 1)(x)
        assert y.devices() == {tt} and y.shape == (3, 4) and y.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(y), host + 1)
        x.delete()
        assert x.is_deleted() and not y.is_deleted()
        print("ROUND TRIP OK")
    """)
    assert "ROUND TRIP OK" in out


def test_runtime_exception_becomes_clear_error_and_process_survives():
    # The runtime's compile is made to raise; the shim must hand jax the exception's
    # code (`pjrt_code`, else INTERNAL) and message, and keep the process usable.
    out = run("""
        from pjrt_tt.errors import InvalidArgument
        from pjrt_tt.runtime.client import Client
        x = jax.device_put(np.ones(4, np.float32), tt)
        real_compile = Client.compile
        for exc, expected in [(InvalidArgument("shim test: bad program"), "INVALID_ARGUMENT: shim test: bad program"),
                              (ValueError("shim test: plain error"), "INTERNAL: shim test: plain error")]:
            def failing_compile(self, *args, exc=exc):
                raise exc
            Client.compile = failing_compile
            try:
                jax.jit(lambda a: a * 2)(x)
            except Exception as e:
                assert expected in str(e), str(e)
            else:
                raise AssertionError("compile did not fail")
        Client.compile = real_compile
        np.testing.assert_array_equal(np.asarray(jax.jit(lambda a: a * 2)(x)), np.full(4, 2, np.float32))
        print("ERRORS OK")
    """)
    assert "ERRORS OK" in out


def test_unimplemented_entry_names_itself():
    """An entry pjrt-tt does not implement fails with UNIMPLEMENTED naming itself, and the
    client goes on working (straight at the C table: no framework reaches one of them)."""
    out = run("""
        import ctypes
        import sys
        sys.path.insert(0, TESTS)
        from pjrt_capi import Api, Handle, PjrtError
        api = Api(LIBRARY)
        x = jax.device_put(np.ones(4, np.float32), tt)
        for entry in ("PJRT_Buffer_CopyRawToHost", "PJRT_TopologyDescription_Create"):
            try:
                api.call(entry, Handle(struct_size=ctypes.sizeof(Handle)))
            except PjrtError as e:
                assert e.code == 12, e   # UNIMPLEMENTED
                assert f"{entry} is not implemented by pjrt-tt" in e.message, e.message
            else:
                raise AssertionError(f"{entry} did not fail")
        np.testing.assert_array_equal(np.asarray(x), np.ones(4, np.float32))  # still usable
        assert x.unsafe_buffer_pointer() == x.unsafe_buffer_pointer() != (x + 1).unsafe_buffer_pointer()
        print("UNIMPLEMENTED OK")
    """)
    assert "UNIMPLEMENTED OK" in out


def test_api_table_is_complete_and_struct_size_is_honoured():
    # Straight at the C table with ctypes: the version, no null slots, and an output
    # field beyond the caller's struct_size left untouched.
    xla_cpu_pjrt = pytest.importorskip("xla_plugins.xla_cpu_pjrt")
    header = Path(xla_cpu_pjrt.__file__).parent / "include" / "pjrt_c_api.h"
    out = run(f"""
        import ctypes, re
        text = open({str(header)!r}).read()
        table = text[text.index("typedef struct PJRT_Api {{"):text.index("}} PJRT_Api;")]
        names = re.findall(r"_PJRT_API_STRUCT_FIELD\\((\\w+)\\)", table)
        minor = int(re.search(r"#define PJRT_API_MINOR (\\d+)", text).group(1))

        lib = ctypes.CDLL(LIBRARY)
        lib.GetPjrtApi.restype = ctypes.c_void_p
        api = lib.GetPjrtApi()
        first_slot = 40  # struct_size, extension_start, PJRT_Api_Version (24 bytes)
        assert ctypes.c_size_t.from_address(api).value == first_slot + 8 * len(names)
        assert (ctypes.c_int.from_address(api + 32).value, ctypes.c_int.from_address(api + 36).value) == (0, minor)
        slots = {{n: ctypes.c_void_p.from_address(api + first_slot + 8 * i).value for i, n in enumerate(names)}}
        assert all(slots.values()), [n for n, p in slots.items() if not p]

        entry = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
        args = (ctypes.c_size_t * 16)(128)  # an args struct the stub never reads past struct_size
        error = entry(slots["PJRT_Executable_GetCompiledMemoryStats"])(ctypes.addressof(args))
        assert error

        class MessageArgs(ctypes.Structure):
            _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.c_void_p),
                        ("error", ctypes.c_void_p), ("message", ctypes.c_void_p), ("message_size", ctypes.c_size_t)]
        message = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(slots["PJRT_Error_Message"])
        older = MessageArgs(struct_size=MessageArgs.message_size.offset, error=error, message_size=777)
        message(ctypes.addressof(older))  # a caller whose struct ends before message_size
        assert older.message and older.message_size == 777
        full = MessageArgs(struct_size=ctypes.sizeof(MessageArgs), error=error)
        message(ctypes.addressof(full))
        text = ctypes.string_at(full.message, full.message_size).decode()
        assert text == "PJRT_Executable_GetCompiledMemoryStats is not implemented by pjrt-tt", text

        class CodeArgs(ctypes.Structure):
            _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.c_void_p),
                        ("error", ctypes.c_void_p), ("code", ctypes.c_int)]
        code = CodeArgs(struct_size=ctypes.sizeof(CodeArgs), error=error)
        assert entry(slots["PJRT_Error_GetCode"])(ctypes.addressof(code)) is None
        assert code.code == 12  # UNIMPLEMENTED
        destroy_args = (ctypes.c_void_p * 3)(24, None, error)
        ctypes.CFUNCTYPE(None, ctypes.c_void_p)(slots["PJRT_Error_Destroy"])(ctypes.addressof(destroy_args))
        print("TABLE OK", len(names), "slots, PJRT 0." + str(minor))
    """, prelude=False)
    assert "TABLE OK" in out
