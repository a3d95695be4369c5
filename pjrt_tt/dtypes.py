"""Element types: one table from MLIR / PJRT / numpy names to what the chip stores.

The chip has no 64-bit or complex types and no float16; those are refused here, with
what to do instead, before anything reaches a target.
"""
from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np

from pjrt_tt.errors import UnsupportedDtype


@dataclasses.dataclass(frozen=True)
class ElementType:
    mlir: str               # name in MLIR tensor types: f32, bf16, i32, ui32, i1, ...
    pjrt: int               # PJRT_Buffer_Type
    numpy: np.dtype         # host representation
    device: str | None      # ttnn DataType that holds it on the chip; None: not supported
    hint: str = ""          # what to do instead, for unsupported types

    @property
    def is_float(self) -> bool:
        return self.mlir in ("f32", "bf16", "f16", "f64")

    @property
    def is_bool(self) -> bool:
        return self.mlir == "i1"

    def check_supported(self, where: str, framework: str = "") -> "ElementType":
        """`framework` is the client's caller ("jax", "torch"; see Settings.framework):
        the advice for 64-bit types is given in its terms."""
        if self.device is None:
            hint = _X64_HINTS.get(framework, self.hint) if self.hint == _X64_HINT else self.hint
            raise UnsupportedDtype(
                f"{self.numpy.name} ({self.mlir}) is not supported on Tenstorrent devices "
                f"({where}): {hint}")
        return self


_X64_HINT = "the chip has no 64-bit types; cast to a 32-bit type"
_X64_HINTS = {
    "jax": "the chip has no 64-bit types; run with jax_enable_x64 off or cast to a 32-bit type",
    "torch": "the chip has no 64-bit types; move int64/float64 tensors as torch.int32/torch.float32 "
             "(t.to(torch.int32).to(device)), or call the model through torch.compile(backend=\"tt\") "
             "with CPU tensors, which converts int64 inputs to int32 after checking their range",
}

ELEMENT_TYPES = [
    ElementType("f32", 11, np.dtype(np.float32), "float32"),
    ElementType("bf16", 13, np.dtype(ml_dtypes.bfloat16), "bfloat16"),
    ElementType("i32", 4, np.dtype(np.int32), "int32"),
    ElementType("ui32", 8, np.dtype(np.uint32), "uint32"),
    ElementType("ui16", 7, np.dtype(np.uint16), "uint16"),
    ElementType("ui8", 6, np.dtype(np.uint8), "uint8"),
    # Booleans live on the chip as bfloat16 0/1: what ttnn's comparisons produce and
    # what ttnn.where takes as its condition.
    ElementType("i1", 1, np.dtype(np.bool_), "bfloat16"),
    ElementType("f64", 12, np.dtype(np.float64), None, _X64_HINT),
    ElementType("i64", 5, np.dtype(np.int64), None, _X64_HINT),
    ElementType("ui64", 9, np.dtype(np.uint64), None, _X64_HINT),
    ElementType("f16", 10, np.dtype(np.float16), None, "the chip has no float16; use bfloat16"),
    ElementType("i8", 2, np.dtype(np.int8), None, "use int32 or uint8"),
    ElementType("i16", 3, np.dtype(np.int16), None, "use int32 or uint16"),
    ElementType("complex<f32>", 14, np.dtype(np.complex64), None, "the chip has no complex types"),
    ElementType("complex<f64>", 15, np.dtype(np.complex128), None, "the chip has no complex types"),
]

BY_MLIR = {t.mlir: t for t in ELEMENT_TYPES}
BY_PJRT = {t.pjrt: t for t in ELEMENT_TYPES}
BY_NUMPY = {t.numpy: t for t in ELEMENT_TYPES}

# The numpy form host data takes on its way to and from a ttnn tensor of each DataType
# (block-float formats travel as float32 and are quantised by the conversion).
DEVICE_NUMPY = {
    "float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "bfloat8_b": np.dtype(np.float32), "bfloat4_b": np.dtype(np.float32),
    "int32": np.dtype(np.int32), "uint32": np.dtype(np.uint32),
    "uint16": np.dtype(np.uint16), "uint8": np.dtype(np.uint8),
}


def from_pjrt(code: int) -> ElementType:
    if code not in BY_PJRT:
        raise UnsupportedDtype(f"PJRT element type {code} is not supported by pjrt-tt")
    return BY_PJRT[code]


def from_mlir(name: str) -> ElementType:
    if name not in BY_MLIR:
        raise UnsupportedDtype(f"element type {name} is not supported on Tenstorrent devices")
    return BY_MLIR[name]
