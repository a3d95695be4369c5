"""Tensor core of the sim target: dtypes, layouts, shapes, memory configs and `Tensor`.

A sim `Tensor` keeps its *values as stored* in a numpy array of the logical shape:
float32 for every float dtype (holding exactly the bf16 / bfp8_b / bfp4_b representable
values), and the matching numpy integer type for int32/uint32/uint16/uint8. Quantization to
the stored dtype happens once, when a value is written (host conversion or op output).
Block-float dtypes are quantized on the padded 32x32 tiles, so the shared exponents are those
real ttnn computes (padding is zero and never raises an exponent).
"""
from __future__ import annotations

import enum
import math
from typing import Iterable, Sequence

import ml_dtypes
import numpy as np

from pjrt_tt.ttnn_facts import TILE_BYTES, TILE_SIZE

TILE_HEIGHT = TILE_WIDTH = TILE_SIZE


def fatal(cond: str, msg: str) -> RuntimeError:
    """A RuntimeError worded like ttnn's TT_FATAL / TT_THROW text."""
    return RuntimeError(f"TT_FATAL @ pjrt_tt/targets/sim: {cond}\ninfo:\n{msg}")


class TTEnum(enum.Enum):
    """An enum that prints like ttnn's own (DataType.BFLOAT16, BufferType::DRAM)."""

    def __init_subclass__(cls, separator: str = ".", **kwargs):
        super().__init_subclass__(**kwargs)
        cls._separator = separator

    def __repr__(self) -> str:
        return f"{type(self).__name__}{type(self)._separator}{self.name}"

    __str__ = __repr__

    # Members are singletons compared by identity: hash them by identity too (C speed; Enum's
    # own __hash__ is Python code, and dtype / layout sets are read on every op).
    __hash__ = object.__hash__


class DataType(TTEnum):
    BFLOAT16 = 0
    FLOAT32 = 1
    UINT32 = 2
    BFLOAT8_B = 3
    BFLOAT4_B = 4
    UINT8 = 5
    UINT16 = 6
    INT32 = 7
    INVALID = 10


class Layout(TTEnum):
    ROW_MAJOR = 0
    TILE = 1
    INVALID = 2


class StorageType(TTEnum):
    HOST = 0
    DEVICE = 1


class BufferType(TTEnum, separator='::'):
    DRAM = 0
    L1 = 1


class TensorMemoryLayout(TTEnum, separator='::'):
    INTERLEAVED = 0


bfloat16, float32, uint32, int32 = DataType.BFLOAT16, DataType.FLOAT32, DataType.UINT32, DataType.INT32
bfloat8_b, bfloat4_b, uint8, uint16 = DataType.BFLOAT8_B, DataType.BFLOAT4_B, DataType.UINT8, DataType.UINT16
ROW_MAJOR_LAYOUT, TILE_LAYOUT = Layout.ROW_MAJOR, Layout.TILE

# dtype -> (numpy storage type, bytes per element in ROW_MAJOR, bytes per 32x32 tile)
_INFO = {
    DataType.FLOAT32: (np.float32, 4, TILE_BYTES["float32"]),
    DataType.BFLOAT16: (np.float32, 2, TILE_BYTES["bfloat16"]),
    DataType.BFLOAT8_B: (np.float32, None, TILE_BYTES["bfloat8_b"]),
    DataType.BFLOAT4_B: (np.float32, None, TILE_BYTES["bfloat4_b"]),
    DataType.INT32: (np.int32, 4, TILE_BYTES["int32"]),
    DataType.UINT32: (np.uint32, 4, TILE_BYTES["uint32"]),
    DataType.UINT16: (np.uint16, 2, TILE_BYTES["uint16"]),
    DataType.UINT8: (np.uint8, 1, TILE_BYTES["uint8"]),
}
FLOAT_DTYPES = frozenset({DataType.FLOAT32, DataType.BFLOAT16, DataType.BFLOAT8_B, DataType.BFLOAT4_B})
BLOCK_DTYPES = frozenset({DataType.BFLOAT8_B, DataType.BFLOAT4_B})
INT_DTYPES = frozenset({DataType.INT32, DataType.UINT32, DataType.UINT16, DataType.UINT8})
_FROM_NUMPY = {np.dtype(np.float32): DataType.FLOAT32, np.dtype(ml_dtypes.bfloat16): DataType.BFLOAT16,
               np.dtype(np.int32): DataType.INT32, np.dtype(np.uint32): DataType.UINT32,
               np.dtype(np.uint16): DataType.UINT16, np.dtype(np.uint8): DataType.UINT8,
               np.dtype(np.int16): DataType.INT32, np.dtype(np.int8): DataType.INT32,
               np.dtype(np.bool_): DataType.UINT8, np.dtype(np.float16): DataType.FLOAT32}


def storage_numpy_dtype(dtype: DataType):
    return _INFO[_check_dtype(dtype)][0]


def tile_bytes(dtype: DataType) -> int:
    return _INFO[_check_dtype(dtype)][2]


def element_size(dtype: DataType) -> int:
    """Bytes per element in ROW_MAJOR storage (block floats have none: TILE only)."""
    size = _INFO[_check_dtype(dtype)][1]
    if size is None:
        raise fatal("layout == Layout::TILE", "Layout must be Layout::TILE for bfloat8_b or bfloat4_b!")
    return size


def _check_dtype(dtype) -> DataType:
    if dtype not in _INFO:
        raise fatal("dtype is supported", f"sim: unsupported ttnn data type {dtype!r}")
    return dtype


class Shape(Sequence[int]):
    """ttnn.Shape: an immutable sequence of ints, equal to lists/tuples with the same dims."""

    __slots__ = ("_dims",)

    def __init__(self, dims: Iterable[int] = ()):
        self._dims = tuple(int(d) for d in dims)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Shape(self._dims[i])
        return self._dims[i]

    def __len__(self) -> int:
        return len(self._dims)

    def __iter__(self):
        return iter(self._dims)

    def __eq__(self, other) -> bool:
        if isinstance(other, Shape):
            return self._dims == other._dims
        if isinstance(other, (list, tuple)):
            return self._dims == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._dims)

    def __repr__(self) -> str:
        return f"Shape({list(self._dims)})"

    __str__ = __repr__

    @property
    def rank(self) -> int:
        return len(self._dims)

    def to_rank(self, rank: int) -> "Shape":
        if rank >= len(self._dims):
            return Shape((1,) * (rank - len(self._dims)) + self._dims)
        drop = self._dims[: len(self._dims) - rank]
        if any(d != 1 for d in drop):
            raise fatal("dims to drop are 1", f"cannot convert {self} to rank {rank}")
        return Shape(self._dims[len(self._dims) - rank:])

    def volume(self) -> int:
        return math.prod(self._dims)


class MemoryConfig:
    def __init__(self, memory_layout=TensorMemoryLayout.INTERLEAVED, buffer_type=BufferType.DRAM,
                 shard_spec=None):
        if shard_spec is not None:
            raise fatal("shard_spec == std::nullopt", "sim: sharded memory configs are not simulated")
        self.memory_layout = memory_layout
        self.buffer_type = buffer_type
        self.shard_spec = None
        self.nd_shard_spec = None

    def is_sharded(self) -> bool:
        return False

    @property
    def interleaved(self) -> bool:
        return True

    def __eq__(self, other) -> bool:
        return (isinstance(other, MemoryConfig) and self.buffer_type == other.buffer_type
                and self.memory_layout == other.memory_layout)

    def __hash__(self) -> int:
        return hash((self.buffer_type, self.memory_layout))

    def __repr__(self) -> str:
        return (f"MemoryConfig(memory_layout={self.memory_layout!r},buffer_type={self.buffer_type!r},"
                f"shard_spec=std::nullopt)")


DRAM_MEMORY_CONFIG = MemoryConfig(TensorMemoryLayout.INTERLEAVED, BufferType.DRAM)
L1_MEMORY_CONFIG = MemoryConfig(TensorMemoryLayout.INTERLEAVED, BufferType.L1)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def padded_shape(shape: Sequence[int], layout: Layout) -> Shape:
    """ttnn's padded shape: ROW_MAJOR keeps the shape ([1] for rank 0); TILE pads the last two
    dims to multiples of 32, viewing rank 0 and 1 as [1, w] (so their padded shape is rank 2)."""
    shape = tuple(shape)
    if layout == Layout.ROW_MAJOR:
        return Shape(shape or (1,))
    if len(shape) < 2:
        shape = (1,) * (2 - len(shape)) + shape
    return Shape(shape[:-2] + (_round_up(shape[-2], TILE_SIZE), _round_up(shape[-1], TILE_SIZE)))


# ---------------------------------------------------------------------------------------------
# Host conversions (float32 -> stored values of a dtype)
# ---------------------------------------------------------------------------------------------

_BF16_NAN = np.uint32(0x7FC00000).view(np.float32)


def flush_denormals(x: np.ndarray) -> np.ndarray:
    """float32 values as Tensix arithmetic sees and makes them: its FPU and SFPU read a float32 /
    bfloat16 denormal as a zero of the same sign and never produce one (docs/numerics.md,
    "Denormals"). `x` itself (as float32) when it holds no denormal."""
    x = np.asarray(x, np.float32)
    if not has_denormals(x):
        return x
    bits = x.view(np.uint32) if x.flags.c_contiguous else np.ascontiguousarray(x).view(np.uint32)
    denormal = ((bits & 0x7F800000) == 0) & ((bits & 0x007FFFFF) != 0)
    out = np.array(x)
    out[denormal.reshape(out.shape)] *= np.float32(0)   # keeps the sign
    return out


_MAGNITUDE = np.uint32(0x7FFFFFFF)
_ONE = np.uint32(1)
_MIN = np.minimum.reduce


def has_denormals(x: np.ndarray) -> bool:
    """Whether float32 `x` holds a denormal: 0 < |bits| < 0x00800000, i.e. the smallest
    |bits| - 1 (where zero wraps around to the top) is at most the largest denormal's - 1
    (0x007FFFFE):
    three passes and one temporary, the hot path of every arithmetic op."""
    if x.size == 0:
        return False
    if x.ndim == 0:
        x = x.reshape(1)
    bits = x.view(np.uint32) if x.flags.c_contiguous else np.ascontiguousarray(x).view(np.uint32)
    m = np.bitwise_and(bits, _MAGNITUDE)
    np.subtract(m, _ONE, out=m)
    return int(_MIN(m, axis=None)) <= 0x007FFFFE   # (a numpy-scalar compare costs a ufunc call)


def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> nearest bfloat16 (ties to even), returned as float32. Like ttnn, every NaN
    becomes the canonical positive quiet NaN 0x7FC0."""
    x = np.asarray(x)
    out = np.array(x, np.float32, order="C")   # the one full-size copy (uploads: issue 13 item 4)
    if x.dtype != ml_dtypes.bfloat16:
        with np.errstate(invalid="ignore"):
            out[...] = out.astype(ml_dtypes.bfloat16)
    out[np.isnan(out)] = _BF16_NAN
    return out


_BFP_MANT_BITS = {DataType.BFLOAT8_B: 7, DataType.BFLOAT4_B: 3}


def _bfp_rows(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Logical array -> (rows of 16 face-row elements, info to undo). Pads to whole tiles."""
    shape = x.shape
    x2 = x.reshape((1,) * (2 - x.ndim) + shape) if x.ndim < 2 else x
    h, w = x2.shape[-2:]
    ph, pw = _round_up(h, TILE_SIZE), _round_up(w, TILE_SIZE)
    pad = [(0, 0)] * (x2.ndim - 2) + [(0, ph - h), (0, pw - w)]
    xp = np.pad(x2, pad)
    # each row of 16 consecutive elements inside a 16x16 face shares one exponent; as rows of
    # 16 are aligned in the padded row-major array, grouping the last dim by 16 is exact.
    return xp.reshape(-1, 16), (shape, x2.shape, xp.shape, h, w)


def _bfp_unrows(rows: np.ndarray, info: tuple) -> np.ndarray:
    shape, shape2, padded, h, w = info
    return rows.reshape(padded)[..., :h, :w].reshape(shape)


def quantize_bfp(x: np.ndarray, dtype: DataType) -> np.ndarray:
    """float32 values -> the float32 values ttnn's host packer stores as bfloat8_b / bfloat4_b.

    Mirrors tt-metal's host pack/unpack (same semantics, vectorized): per row of 16 elements of
    a 16x16 face the shared exponent is the largest biased exponent; an element with exponent
    field 0 (zero or denormal) packs as 0; others get their 24-bit mantissa (hidden 1 explicit)
    shifted right by (shared - own exponent), rounded to `m` bits (hidden bit included) to
    nearest, ties to even, saturating at the largest mantissa; a zero mantissa drops the sign.
    Unpacking renormalizes the mantissa, lowering the shared exponent by the shift, and flushes
    to +0 when that would go below zero. Checked bit for bit against ttnn in tests/test_sim.py.
    """
    m = _BFP_MANT_BITS[dtype]
    rows, info = _bfp_rows(np.array(x, np.float32, order="C"))  # (ascontiguousarray makes 0-d 1-d)
    u = rows.view(np.uint32)
    exp = (u >> 23) & 0xFF
    sign = u >> 31
    shared = exp.max(axis=1, keepdims=True)
    mant = (u & 0x7FFFFF) | (1 << 23)
    diff = shared - exp
    mant = np.where(diff >= 24, 0, mant >> np.minimum(diff, 31)).astype(np.uint32)
    shift = 24 - m
    rnd = mant & ((1 << shift) - 1)
    mant = mant >> shift
    tie = np.uint32(1 << (shift - 1))
    mant = mant + ((rnd > tie) | ((rnd == tie) & ((mant & 1) == 1))).astype(np.uint32)
    mant = np.minimum(mant, (1 << m) - 1).astype(np.uint32)
    mant = np.where(exp == 0, 0, mant).astype(np.uint32)  # zeros and denormal inputs flush to 0
    sign = np.where(mant == 0, 0, sign).astype(np.uint32)
    # unpack: normalize so that bit (m-1) is the hidden bit, exponent decremented per shift
    nz = mant != 0
    lead = np.zeros_like(mant)
    for b in range(m):  # position of the highest set bit
        lead = np.where(((mant >> b) & 1) == 1, b, lead)
    sh = (m - 1 - lead).astype(np.uint32)
    man = ((mant << (sh + 1)) & ((1 << m) - 1)).astype(np.uint32)
    e = (np.broadcast_to(shared, mant.shape).astype(np.uint32) - sh).astype(np.uint32)
    out = (sign << 31) | ((e << 23) & 0xFFFFFFFF) | (man << (23 - m))
    # the unpacker flushes results whose exponent would go below zero (denormals) to +0
    out = np.where(nz & (sh.astype(np.int64) <= np.broadcast_to(shared, mant.shape)), out, 0).astype(np.uint32)
    return _bfp_unrows(out.view(np.float32), info)


def _int_from_float(x: np.ndarray, npdt) -> np.ndarray:
    """float -> integer dtype as ttnn's host conversion does it for the values where ttnn is
    consistent: truncate toward zero; int32: NaN and out-of-range give INT32_MIN; uint32: values
    in [0, 2^32) exact, negative int32-range values wrap, NaN 0, others 2^31; uint16 / uint8:
    saturate to the range, NaN 0. (ttnn's own out-of-range results for uint16 / uint8 depend on
    an element's position in its SIMD block; the sim saturates.)"""
    x = np.asarray(x, np.float64)
    npdt = np.dtype(npdt)
    nan = np.isnan(x)
    t = np.trunc(np.where(nan, 0, x))
    if npdt == np.int32:
        ok = (t >= -2.0**31) & (t < 2.0**31) & ~nan
        return np.where(ok, t, -2.0**31).astype(np.int64).astype(np.int32)
    if npdt == np.uint32:
        ok = (t >= -2.0**31) & (t < 2.0**32)
        r = np.where(ok, t, 2.0**31)
        return np.where(nan, 0, r).astype(np.int64).astype(np.uint32)
    info = np.iinfo(npdt)
    return np.clip(t, info.min, info.max).astype(npdt)


def quantize(x: np.ndarray, dtype: DataType) -> np.ndarray:
    """Any numpy array -> the stored values of `dtype` (float32 or the integer storage type)."""
    npdt = storage_numpy_dtype(dtype)
    x = np.asarray(x)
    if dtype in FLOAT_DTYPES:
        if dtype == DataType.BFLOAT16:
            return round_bf16(x)
        if dtype in BLOCK_DTYPES:
            return quantize_bfp(x.astype(np.float32, copy=False), dtype)
        return np.array(x, np.float32, order="C")   # one copy, whatever x's strides (stride 0 too)
    if x.dtype.kind == "f":
        return _int_from_float(x, npdt)
    return x.astype(np.int64).astype(npdt) if x.dtype != npdt else np.array(x, order="C")


def _refuse_numpy_dtype(dt: np.dtype) -> None:
    if dt.kind == "c" or dt == np.float64 or dt == np.int64 or dt == np.uint64:
        raise fatal("dtype is supported",
                    f"sim: numpy dtype {dt} has no Tenstorrent counterpart (no 64-bit or complex "
                    f"types); convert to float32/int32 first")


# ---------------------------------------------------------------------------------------------
# Tensor
# ---------------------------------------------------------------------------------------------

class Tensor:
    """ttnn.Tensor subset. Construct like the real ndarray overload:
    Tensor(ndarray, data_type=None, device=None, layout=None, mem_config=None, tile=None, ...)
    or the list overload: Tensor(list, shape, data_type, layout, device=None, memory_config=None).
    """

    def __init__(self, data, data_type=None, device=None, layout=None, mem_config=None, tile=None,
                 cq_id=None, pad_value=None, mesh_mapper=None, memory_config=None, **_ignored):
        if isinstance(data, Tensor):  # copy constructor
            self._init_from(data._value, data._dtype, data._layout, None)
            if data._device is not None:
                self._place(data._device, data._mem)
            return
        if isinstance(data, (list, tuple)) and isinstance(data_type, (list, tuple, Shape)):
            # list overload: (data, shape, data_type, layout, device=None, memory_config=None)
            shape, data_type, layout, device, mem_config = (
                tuple(data_type), device, layout, mem_config, memory_config or mem_config)
            data = np.asarray(data, np.float32 if data_type in FLOAT_DTYPES else np.int64).reshape(shape)
        if mesh_mapper is not None:
            raise fatal("mesh_mapper == nullptr", "sim: mesh mappers (sharding) are not simulated")
        arr = np.asarray(data)
        _refuse_numpy_dtype(arr.dtype)
        if data_type is None:
            data_type = _FROM_NUMPY.get(arr.dtype)
            if data_type is None:
                raise fatal("dtype is supported", f"sim: unsupported numpy dtype {arr.dtype}")
        _check_dtype(data_type)
        if layout is None:
            layout = Layout.TILE if data_type in BLOCK_DTYPES else Layout.ROW_MAJOR
        if data_type in BLOCK_DTYPES and layout != Layout.TILE:
            raise fatal("layout == Layout::TILE", "Layout must be Layout::TILE for bfloat8_b or bfloat4_b!")
        self._init_from(quantize(arr, data_type), data_type, layout, None)
        if device is not None:
            self._place(device, memory_config or mem_config or DRAM_MEMORY_CONFIG)

    # internal constructor: values already quantized for dtype
    @classmethod
    def _make(cls, value: np.ndarray, dtype: DataType, layout: Layout, device=None,
              memory_config=None) -> "Tensor":
        t = cls.__new__(cls)
        t._init_from(value, dtype, layout, None)
        if device is not None:
            t._place(device, memory_config or DRAM_MEMORY_CONFIG)
        return t

    def _init_from(self, value, dtype, layout, device):
        if dtype in BLOCK_DTYPES and layout != Layout.TILE:
            raise fatal("layout == Layout::TILE", "Layout must be Layout::TILE for bfloat8_b or bfloat4_b!")
        self._value = value
        self._arith = None   # the values as arithmetic reads them (see _arith_value), once known
        self._dtype = dtype
        self._layout = layout
        self._device = device
        self._mem = None
        self._allocs = []  # (chip, buffer) per chip holding the tensor
        self._deallocated = False

    def _place(self, device, memory_config):
        # The device allocates (device.py owns chips and allocators; this module never imports it).
        try:
            allocate = device.allocate_buffers
        except AttributeError:
            raise TypeError(f"sim: expected a device from ttnn.open_device / open_mesh_device, got {device!r}") from None
        self._device = device
        self._mem = memory_config or DRAM_MEMORY_CONFIG
        self._allocs = allocate(self, self._mem)

    # --- metadata ------------------------------------------------------------------------------
    @property
    def shape(self) -> Shape:
        return Shape(self._value.shape)

    @property
    def padded_shape(self) -> Shape:
        return padded_shape(self._value.shape, self._layout)

    @property
    def dtype(self) -> DataType:
        return self._dtype

    @property
    def layout(self) -> Layout:
        return self._layout

    def get_dtype(self) -> DataType:
        return self._dtype

    def get_layout(self) -> Layout:
        return self._layout

    def logical_volume(self) -> int:
        return int(self._value.size)

    def volume(self) -> int:
        return self.padded_shape.volume()

    def element_size(self) -> int:
        return element_size(self._dtype)

    def storage_type(self) -> StorageType:
        return StorageType.HOST if self._device is None else StorageType.DEVICE

    def device(self):
        return self._device

    def memory_config(self):
        return self._mem

    def is_allocated(self) -> bool:
        return not self._deallocated

    def is_sharded(self) -> bool:
        return False

    def _geometry(self) -> tuple[int, int, int, int, int]:
        if self._device is None:   # as ttnn: a host tensor has no buffer
            raise fatal("device_storage != nullptr", "Expected Tensor with DeviceStorage, got StorageType::HOST")
        return self._device.buffer_geometry(self)

    def buffer_num_pages(self) -> int:
        return self._geometry()[0]

    def buffer_page_size(self) -> int:
        return self._geometry()[1]

    def buffer_aligned_page_size(self) -> int:
        return self._geometry()[2]

    def sim_on_device_size(self) -> int:
        """sim-only: bytes this tensor occupies on each chip holding it (all banks)."""
        return self._geometry()[4]

    def _live_value(self) -> np.ndarray:
        if self._deallocated:
            raise fatal("input_tensor_a.is_allocated()", "Input Tensor A is not allocated")
        return self._value

    def _overwrite(self, other: "Tensor") -> None:
        """Take `other`'s values (same shape and dtype): a trace replay or ttnn.copy writing
        into this tensor's buffer. The one place stored values change."""
        self._value, self._arith = other._value, other._arith

    def _arith_value(self) -> np.ndarray:
        """A float tensor's values as Tensix arithmetic reads them (float32, denormals as zeros).
        Stored values change only as a whole (_overwrite), so this is found once per value (an op's flushed result
        is its own: ops.py's _out says so)."""
        if self._deallocated:
            raise fatal("input_tensor_a.is_allocated()", "Input Tensor A is not allocated")
        if self._arith is None:
            self._arith = flush_denormals(self._value)
        return self._arith

    # --- host conversion -----------------------------------------------------------------------
    def to_numpy(self, dtype=None) -> np.ndarray:
        """The logical values. Real ttnn returns an object array for bfloat16 (and float32 for
        bfloat8_b/bfloat4_b); sim returns ml_dtypes.bfloat16 for bfloat16, float32 for the
        other floats, and the integer storage type otherwise."""
        if self._device is not None:
            raise fatal("storage_type() == StorageType::HOST",
                        "to_numpy: tensor is on device; call ttnn.from_device first")
        v = self._live_value()
        if self._dtype == DataType.BFLOAT16:
            v = v.astype(ml_dtypes.bfloat16)
        else:
            v = v.copy()
        return v if dtype is None else v.astype(dtype)

    def to_list(self) -> list:
        return self._live_value().tolist()

    def item(self):
        if self._value.size != 1:
            raise fatal("logical_volume() == 1", "item() needs a tensor with exactly one element")
        return self._live_value().reshape(()).item()

    def cpu(self, blocking: bool = True, cq_id=None) -> "Tensor":
        return Tensor._make(self._live_value(), self._dtype, self._layout)

    def to(self, target, memory_config=None, cq_id=None):
        if isinstance(target, Layout):
            return _op("to_layout")(self, target)
        return Tensor._make(self._live_value(), self._dtype, self._layout, target,
                            memory_config or DRAM_MEMORY_CONFIG)

    def buffer_address(self) -> int:
        """The address of the tensor's buffer in its banks (the same on every chip of its
        mesh: lockstep allocation), as ttnn's; a host tensor has none."""
        if not self._allocs:
            raise fatal("tensor has a device buffer", "sim: buffer_address of a tensor with no device buffer "
                        "(a host tensor, or one deallocated)")
        return self._allocs[0][1]

    def deallocate(self, force: bool = True) -> None:
        if self._device is None or self._deallocated:
            self._deallocated = self._device is not None or self._deallocated
            return
        self._free_buffers()
        self._deallocated = True

    def _free_buffers(self) -> None:
        for alloc, addr in self._allocs:
            if addr in alloc.live:
                alloc.free(addr)
        self._allocs = []

    def __del__(self):  # like ttnn: a device tensor frees its buffers when garbage-collected
        try:
            if self._allocs:
                self._free_buffers()
        except Exception:  # interpreter shutdown or a half-built tensor
            pass

    def reshape(self, *shape):
        return _op("reshape")(self, shape[0] if len(shape) == 1 else shape)

    def __repr__(self) -> str:
        where = "host" if self._device is None else f"device {self._device!r}"
        return (f"ttnn.Tensor(sim, shape={list(self._value.shape)}, dtype={self._dtype!r}, "
                f"layout={self._layout!r}, {where})")

    # arithmetic sugar as real ttnn tensors have it
    def __add__(self, o): return _op("add")(self, o)
    def __radd__(self, o): return _op("add")(o, self)
    def __sub__(self, o): return _op("subtract")(self, o)
    def __rsub__(self, o): return _op("subtract")(o, self)
    def __mul__(self, o): return _op("multiply")(self, o)
    def __rmul__(self, o): return _op("multiply")(o, self)
    def __truediv__(self, o): return _op("divide")(self, o)
    def __matmul__(self, o): return _op("matmul")(self, o)
    def __neg__(self): return _op("neg")(self)


def _op(name: str):
    """The op `name` of ops.py, for the methods ttnn's Tensor has (reshape, to, operators).
    The one import circle left in the sim: ttnn's Tensor calls its ops and the ops make
    Tensors, so tensor.py reaches ops.py here, when a method runs (never at import)."""
    from . import ops
    return getattr(ops, name)
