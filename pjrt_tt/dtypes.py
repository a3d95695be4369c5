"""Element types: one table from MLIR / PJRT / numpy names to what the chip stores.

Types the chip lacks are *carried* by one it has, while keeping their own type at the
framework boundary (buffers, program signatures): int64, uint64 and float64 by int32, uint32
and float32 (narrowed on upload, `narrow_to_device`, and widened on download; an integer
array whose values do not fit goes as its uint32 words); float16 and the float8 types by float32, int4, uint4, int8 and int16 by int32 (widened on
upload, exact; rounded / narrowed on download: the floats to nearest even, the integers are
always in range because the programs wrap them, ingest/widen.py); complex64 by float32
[2, *shape] holding its real and imaginary planes (ingest/complex64.py). docs/numerics.md
states the rules. complex128 is
refused here, with what to do instead, before anything reaches a target.
"""
from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np

from pjrt_tt.errors import InvalidArgument, UnsupportedDtype


# float8 flavours: MLIR name -> (PJRT_Buffer_Type, ml_dtypes name). Every value of each is a
# float32 one, so float32 carries them; ingest/widen.py rounds into them as XLA:CPU does.
FLOAT8 = {"f8E5M2": (16, "float8_e5m2"), "f8E4M3FN": (17, "float8_e4m3fn"),
          "f8E4M3B11FNUZ": (18, "float8_e4m3b11fnuz"), "f8E5M2FNUZ": (19, "float8_e5m2fnuz"),
          "f8E4M3FNUZ": (20, "float8_e4m3fnuz"), "f8E4M3": (26, "float8_e4m3"),
          "f8E3M4": (27, "float8_e3m4"),
          # MX block scales (jax.nn.scaled_matmul): 2^(e - 127), unsigned, no zero, 0xff NaN
          "f8E8M0FNU": (28, "float8_e8m0fnu")}


# The values of each integer type, by MLIR name (i1: a bool's 0 / 1).
INT_RANGE = {"i1": (0, 1), "i4": (-8, 7), "ui4": (0, 15), "i8": (-2**7, 2**7 - 1), "ui8": (0, 2**8 - 1),
             "i16": (-2**15, 2**15 - 1), "ui16": (0, 2**16 - 1), "i32": (-2**31, 2**31 - 1), "ui32": (0, 2**32 - 1),
             "i64": (-2**63, 2**63 - 1), "ui64": (0, 2**64 - 1)}


@dataclasses.dataclass(frozen=True)
class ElementType:
    mlir: str               # name in MLIR tensor types: f32, bf16, i32, ui32, i1, ...
    pjrt: int               # PJRT_Buffer_Type
    numpy: np.dtype         # host representation
    device: str | None      # ttnn DataType that holds it on the chip; None: not supported
    hint: str = ""          # what to do instead, for unsupported types
    carried_by: str = ""    # a type the chip lacks: the MLIR type it computes it in (i64 -> i32, f16 -> f32)

    @property
    def is_float(self) -> bool:
        return self.mlir in ("f32", "bf16", "f16", "f64") or self.mlir in FLOAT8

    @property
    def is_bool(self) -> bool:
        return self.mlir == "i1"

    def check_supported(self, where: str) -> "ElementType":
        if self.device is None:
            raise UnsupportedDtype(
                f"{self.numpy.name} ({self.mlir}) is not supported on Tenstorrent devices "
                f"({where}): {self.hint}")
        return self

    @property
    def carrier(self) -> "ElementType":
        """The type the chip computes in: itself, or the type carrying one the chip lacks."""
        return BY_MLIR[self.carried_by] if self.carried_by else self

    @property
    def narrowed(self) -> bool:
        """A 64-bit type carried in 32 bits: its values must fit the carrier (checked)."""
        return bool(self.carried_by) and not self.is_complex and self.numpy.itemsize > self.carrier.numpy.itemsize

    @property
    def is_complex(self) -> bool:
        """complex64: carried as two planes of its carrier, (re, im), on a leading axis."""
        return self.numpy.kind == "c"


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
    ElementType("f64", 12, np.dtype(np.float64), "float32", carried_by="f32"),
    ElementType("i64", 5, np.dtype(np.int64), "int32", carried_by="i32"),
    ElementType("ui64", 9, np.dtype(np.uint64), "uint32", carried_by="ui32"),
    ElementType("f16", 10, np.dtype(np.float16), "float32", carried_by="f32"),
    ElementType("i8", 2, np.dtype(np.int8), "int32", carried_by="i32"),
    ElementType("i16", 3, np.dtype(np.int16), "int32", carried_by="i32"),
    # int4 / uint4: one element a byte on the host (as jax hands them over), int32 on the chip
    ElementType("i4", 21, np.dtype(ml_dtypes.int4), "int32", carried_by="i32"),
    ElementType("ui4", 22, np.dtype(ml_dtypes.uint4), "int32", carried_by="i32"),
    *(ElementType(name, code, np.dtype(getattr(ml_dtypes, host)), "float32", carried_by="f32")
      for name, (code, host) in FLOAT8.items()),
    # (re, im) planes: float32 [2, *shape] on the device (ingest/complex64.py)
    ElementType("complex<f32>", 14, np.dtype(np.complex64), "float32", carried_by="f32"),
    ElementType("complex<f64>", 15, np.dtype(np.complex128), None,
                "the chip has no complex types; pjrt-tt carries complex64 (as pairs of float32), "
                "not complex128: compute in complex64"),
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


_F32_MAX = float(np.finfo(np.float32).max)


def narrow_to_device(data: np.ndarray, element: ElementType, what: str) -> tuple[tuple[int, int] | None, bool]:
    """How a host array goes to the chip: the (min, max) of a 64-bit integer array (None for
    other arrays), which the executables check against the range their 32-bit arithmetic is
    exact for; and whether it goes as its uint32 words (program.HostType.words) because its
    values do not fit the 32-bit carrier: held exactly, read back exactly, and refused by a
    program that computes with them in 32 bits (naming the argument and the values).
    Float64 values are rounded to float32 (docs/numerics.md); finite ones beyond float32's
    range are refused, raising InvalidArgument naming `what` (they would become infinities).
    Types carried in a wider one (float16, int8, int16) always fit."""
    if not element.narrowed or data.size == 0:
        return ((0, 0) if element.narrowed and element.numpy.kind in "iu" else None), False
    if element.numpy.kind == "f":
        bad = np.isfinite(data) & (np.abs(data) > _F32_MAX)
        if bad.any():
            _refuse(data, bad, element, what, f"beyond float32's range (+-{_F32_MAX:.7g})")
        return None, False
    info = np.iinfo(DEVICE_NUMPY[element.device])
    lo, hi = int(data.min()), int(data.max())
    return (lo, hi), lo < info.min or hi > info.max


def check_carrier_fits(data: np.ndarray, element: ElementType, what: str) -> None:
    """Refuses (InvalidArgument naming `what`, the first value that does not fit and its index)
    a 64-bit integer array whose values do not fit the 32-bit carrier, for callers that know
    it will be computed in 32 bits (torch.compile's graph inputs)."""
    _, words = narrow_to_device(data, element, what)
    if words:
        info = np.iinfo(DEVICE_NUMPY[element.device])
        _refuse(data, (data < info.min) | (data > info.max), element, what,
                f"outside the {element.carrier.numpy.name} range [{info.min}, {info.max}]")


def _refuse(data: np.ndarray, bad: np.ndarray, element: ElementType, what: str, why: str) -> None:
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    value = data[index].item()
    at = f" at index {list(index)}" if index else ""
    raise InvalidArgument(
        f"{what} holds {value!r}{at} ({int(bad.sum())} value(s) in all), {why}: the chip has no "
        f"64-bit types, so {element.numpy.name} values are carried as {element.carrier.numpy.name} "
        f"on the device. Keep the values in that range, or compute this part on the CPU")
