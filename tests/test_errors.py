"""Issue 13: bad input never kills the process and gets a clear error with the PJRT code
that fits; 64-bit integer arithmetic never wraps silently. Cases that aborted the process
before the fix run in a child process, so a regression fails the test, not the run."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pjrt_tt
from pjrt_tt.errors import InvalidArgument, Unimplemented
from pjrt_tt.ingest import parse, parse_compile_options

LIBRARY = Path(pjrt_tt.__file__).resolve().parent / "libpjrt_tt.so"


def in_child(body: str, **env) -> str:
    """Runs `body` in a fresh interpreter; fails the test if it dies; returns stdout."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, **env))
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


# --- 1. never abort ------------------------------------------------------------------

def test_bytecode_magic_with_bad_bytes_is_invalid_argument_not_an_abort():
    out = in_child("""
        from pjrt_tt.ingest import parse
        from pjrt_tt.errors import InvalidArgument
        for code in [b"ML\\xefR\\x05\\xff\\x00", b"ML\\xefR", b"\\xff\\xfe\\x00garbage"]:
            try:
                parse(code, "mlir")
            except InvalidArgument as e:
                print("REFUSED", e)
    """)
    assert out.count("REFUSED") == 3, out
    assert "could not parse the program" in out


def test_location_that_is_not_utf8_is_harmless(tt):
    """A valid bytecode module whose location string holds non-UTF-8 bytes: MLIR's printer
    escapes them, so the module is taken and every layer can print it (ingest refuses any
    module whose printed form would not be UTF-8)."""
    from jaxlib.mlir import ir
    from pjrt_tt.ingest import new_context
    ctx = new_context()
    with ctx:
        m = ir.Module.parse('func.func @main(%a: tensor<2xf32>) -> tensor<2xf32> {\n'
                            '  %0 = stablehlo.add %a, %a : tensor<2xf32> loc("MARKERXX.py":1:1)\n'
                            '  return %0 : tensor<2xf32>\n}')
        buf = io.BytesIO()
        m.operation.write_bytecode(buf)
        code = buf.getvalue()
    assert code.startswith(b"ML\xefR") and b"MARKERXX" in code
    bad = code.replace(b"MARKERXX", b"MARK\xff\xfeXX")
    out = in_child(f"""
        from pjrt_tt.ingest import parse
        from pjrt_tt.errors import InvalidArgument
        from pjrt_tt.compile_context import CompileContext
        from pjrt_tt.lower import lower_module
        parsed = parse({bad!r}, "mlir")
        print("TAKEN", len(parsed.text()), lower_module(parsed, CompileContext()).format().count("ttnn.add"))
    """)
    assert "TAKEN" in out and out.strip().endswith(" 1"), out


COMPLEX_AND_INT64 = """
func.func @main(%x: tensor<4xi32>) -> tensor<4xf32> {
  %c = stablehlo.constant dense<[(1.0,2.0), (3.0,4.0), (5.0,6.0), (7.0,8.0)]> : tensor<4xcomplex<f32>>
  %w = stablehlo.convert %x : (tensor<4xi32>) -> tensor<4xi64>
  %f = stablehlo.convert %w : (tensor<4xi64>) -> tensor<4xf32>
  %z = stablehlo.real %c : (tensor<4xcomplex<f32>>) -> tensor<4xf32>
  %r = stablehlo.add %f, %z : tensor<4xf32>
  return %r : tensor<4xf32>
}
"""


def test_complex_constant_is_read_without_an_abort():
    # Reading the attribute of a complex constant aborts jaxlib 0.7.1's bindings (the int64
    # narrowing used to read every constant's attribute); complex64.py reads its text.
    out = in_child(f"""
        from pjrt_tt.ingest import parse
        parsed = parse({COMPLEX_AND_INT64!r}.encode(), "mlir", from_hlo=True)
        print("TAKEN", parsed.text())
    """)
    assert "TAKEN" in out and "complex" not in out, out
    assert "dense<[1.000000e+00, 3.000000e+00, 5.000000e+00, 7.000000e+00]> : tensor<4xf32>" in out, out


def test_complex64_under_an_explicit_mesh_on_t3k_runs():
    # (once refused: complex64 is now carried as planes on every chip of a mesh too)
    out = in_child("""
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
        mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Explicit,), devices=jax.devices("tt"))
        with jax.set_mesh(mesh):
            x = jax.device_put(np.arange(8, dtype=np.float32), NamedSharding(mesh, P("x")))
            k = (np.arange(8) + 1j * np.arange(8)[::-1]).astype(np.complex64)
            got = jax.jit(lambda a: (a.astype(jnp.complex64) * k * (a.astype(jnp.complex64) * k).conj()).real)(x)
            print("SHARDED", got.sharding.spec == P("x"), "VALUES", np.asarray(got).tolist())
    """, PJRT_TT_SYSTEM="t3k")
    a = np.arange(8.0)
    assert f"SHARDED True VALUES {(a * a * (a ** 2 + (7 - a) ** 2)).tolist()}" in out, out   # exact integers


# --- 3(b). 64-bit integers narrowed only where exact -----------------------------------

WRAPS = """
func.func @main(%x: tensor<4xi32>) -> tensor<4xi32> {
  %w = stablehlo.convert %x : (tensor<4xi32>) -> tensor<4xi64>
  %big = stablehlo.constant dense<3000000000> : tensor<4xi64>
  %m = stablehlo.multiply %w, %big : tensor<4xi64> loc("model.py":7:3)
  %k = stablehlo.constant dense<1000> : tensor<4xi64>
  %r = stablehlo.remainder %m, %k : tensor<4xi64>
  %n = stablehlo.convert %r : (tensor<4xi64>) -> tensor<4xi32>
  return %n : tensor<4xi32>
}
"""


def test_int64_arithmetic_that_may_overflow_int32_is_refused_naming_the_op():
    for from_hlo in (True, False):
        with pytest.raises(Unimplemented) as e:
            parse(WRAPS.encode(), "mlir", from_hlo=from_hlo)
        assert "`stablehlo.multiply` at model.py:7:3" in str(e.value)
        assert "computes 64-bit integers (i64) with values in [-6442450944000000000, 6442450941000000000]" in str(e.value)
        assert "beyond i32" in str(e.value) and e.value.pjrt_code == 12


def test_int64_that_provably_fits_is_narrowed_exactly():
    text = WRAPS.replace("3000000000", "3").replace("%w, %big", "%r0, %big").replace(
        "%w = stablehlo.convert %x : (tensor<4xi32>) -> tensor<4xi64>",
        "%w = stablehlo.convert %x : (tensor<4xi32>) -> tensor<4xi64>\n"
        "  %q = stablehlo.constant dense<100000> : tensor<4xi64>\n"
        "  %r0 = stablehlo.remainder %w, %q : tensor<4xi64>")
    module = str(parse(text.encode(), "mlir").module)
    assert "i64" not in module and "dense<3> : tensor<4xi32>" in module, module


def test_jax_x64_int64_arithmetic(tt, cpu):
    from conftest import enable_x64
    x = np.array([1, 2, 7, 123456], np.int32)
    with enable_x64():
        def fits(x):   # |x % 1000| < 1000: every intermediate fits in int32
            return ((x.astype(jnp.int64) % 1000) * 1000 + 7).astype(jnp.int32)

        def wraps(x):
            return ((x.astype(jnp.int64) * 3_000_000_000) % 1000).astype(jnp.int32)

        want = np.asarray(jax.jit(fits)(jax.device_put(x, cpu)))
        np.testing.assert_array_equal(np.asarray(jax.jit(fits)(jax.device_put(x, tt))), want)
        with pytest.raises(Exception, match="UNIMPLEMENTED: .* computes 64-bit integers"):
            jax.jit(wraps)(jax.device_put(x, tt))


# --- 8. clear errors with the right code -------------------------------------------------

@pytest.mark.parametrize("text,error,message", [
    ("func.func @f() { return }", InvalidArgument, "no @main function"),
    ("func.func @main(%a: tensor<?xf32>) -> tensor<?xf32> { return %a : tensor<?xf32> }",
     Unimplemented, "dynamic shape tensor<?xf32>"),
    ("func.func @main(%a: tensor<2xi2>) -> tensor<2xi2> { return %a : tensor<2xi2> }",
     Unimplemented, "i2 (i2) is not supported"),
])
def test_module_checks(text, error, message):
    with pytest.raises(error, match=re.escape(message)):
        parse(text.encode(), "mlir")


def test_random_hlo_bytes_are_invalid_argument():
    rng = np.random.default_rng(0)
    for _ in range(20):
        with pytest.raises(InvalidArgument, match="HloModuleProto"):
            parse(rng.integers(0, 256, 64, dtype=np.uint8).tobytes(), "hlo")


def test_compile_options_are_checked():
    from jax._src.lib import _jax
    good = _jax.CompileOptions()
    assert parse_compile_options(good.SerializeAsString()).num_partitions == 1
    assert parse_compile_options(b"") is None
    for blob, message in [(b"garbage compile options", "not a serialized CompileOptionsProto"),
                          (b"\x08\x05", "num_replicas is 0"),
                          (b"\x1a\x0b\x08" + b"\xdf\xff\xff\xff\xff\xff\xff\xff\xff\x01", "device_ordinal is -33")]:
        with pytest.raises(InvalidArgument, match=message):
            parse_compile_options(blob)


@pytest.mark.skipif(not LIBRARY.exists(), reason="libpjrt_tt.so is not built")
def test_host_buffer_dims_checked_in_the_shim():
    pytest.importorskip("xla_plugins.xla_cpu_pjrt")
    out = in_child(f"""
        import ctypes, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pjrt_capi import Api, PjrtError
        api = Api({str(LIBRARY)!r})
        client = api.client()
        device = api.devices(client)[0]
        data = (ctypes.c_char * 64)()
        for dims, strides in [([-4], None), ([2, 2**62, 8], None), ([2, 2], [8])]:
            try:
                api.buffer_from_host(client, device, data, 11, dims, strides)
            except PjrtError as e:
                print("ERROR", e)
        api.destroy("PJRT_Buffer_Destroy", api.buffer_from_host(client, device, data, 11, [2, 2]))
        api.destroy("PJRT_Client_Destroy", client)
        print("ALIVE")
    """)
    assert "ERROR INVALID_ARGUMENT: PJRT_Client_BufferFromHostBuffer: dimension 0 of the host buffer is -4" in out
    assert "dimensions overflow 64 bits" in out and "num_byte_strides is 1 for a host buffer of 2 dims" in out
    assert "ALIVE" in out


def test_rank7_broadcast_runs(tt, cpu):
    """ttnn's binary ops broadcast within the last 6 dims only; the lowering repeats first."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for rank in (7, 8):
        def f(a):
            return jnp.broadcast_to(a, (2,) * (rank - 2) + (2, 3)) * 2 + a
        got = np.asarray(jax.jit(f)(jax.device_put(x, tt)))
        np.testing.assert_array_equal(got, np.asarray(jax.jit(f)(jax.device_put(x, cpu))))
