"""Buffers: a ttnn tensor on one chip, seen by the framework as a typed array.

A buffer keeps the framework's element type; the chip holds the type that carries it
(int64 as int32, uint64 as uint32, float64 as float32; float16 as float32, int8 / int16 as
int32; complex64 as float32 [2, *dims] (re, im): dtypes.py). 64-bit uploads narrow after a range check and downloads widen; float16 /
int8 / int16 uploads widen (exact) and downloads convert back (float16 rounds to nearest even).
A 64-bit integer array whose values do not fit the carrier is held as its uint32 words
instead (HostType.words), exactly; a program that computes with it in 32 bits refuses it.
A 64-bit integer buffer knows a range its values lie in (measured
at upload, or the bound the program proved for an output), which executables check against
the argument range their 32-bit arithmetic is exact for (narrow64.Boundary)."""
from __future__ import annotations

import ctypes
import itertools
import math
import weakref

import numpy as np

from pjrt_tt.dtypes import ElementType, narrow_to_device
from pjrt_tt.errors import InvalidArgument
from pjrt_tt.program import HostType, device_array, device_type, host_array
from pjrt_tt.targets.base import device_bytes


def host_view(address: int, dtype: np.dtype, dims: tuple[int, ...], byte_strides) -> np.ndarray:
    """A numpy view of framework memory at `address` (no copy), the address of element
    [0, ..]. A negative stride (a reversed view, e.g. numpy's x[::-1]) reaches memory below
    it: the view's buffer starts at the lowest byte any element uses."""
    if byte_strides is None or len(byte_strides) == 0:
        byte_strides = tuple(int(np.prod(dims[i + 1:], dtype=np.int64)) * dtype.itemsize
                             for i in range(len(dims)))
    if any(d == 0 for d in dims):
        return np.zeros(dims, dtype)
    below = -sum((d - 1) * s for d, s in zip(dims, byte_strides) if s < 0)
    extent = sum((d - 1) * abs(s) for d, s in zip(dims, byte_strides)) + dtype.itemsize
    raw = (ctypes.c_char * extent).from_address(address - below)
    return np.ndarray(dims, dtype, buffer=raw, offset=below, strides=byte_strides)


_SERIAL = itertools.count()   # buffer serial numbers, never reused (const-eval cache keys)


class Buffer:
    """A PJRT buffer: holds one device tensor handle; freeing it is the target's business."""

    # one is made per program output per call
    __slots__ = ("device", "host", "tensor", "value_range", "range_measured", "serial", "_prepared", "_linked",
                 "__weakref__")

    def __init__(self, device, host: HostType, tensor, value_range=None, measured: bool = False):
        self.device = device
        # 64-bit integers: (lo, hi) the values lie in, measured or a bound; None: unknown
        self.value_range, self.range_measured = value_range, measured
        self.host = host
        self.tensor = tensor
        # const-eval results made from this buffer (passes/const_eval.py), by (program, block,
        # the serials of the other buffers read): (results, tensors to free); they live as long
        # as this buffer and the others hold their tensors. Made on first use (most buffers are
        # outputs that never feed a prepared block).
        self.serial = next(_SERIAL)
        self._prepared: dict | None = None
        self._linked: list | None = None   # (weakref to the buffer keeping an entry that read this one, key)

    # what the shim reads of a new handle (csrc/buffer.cc), worked out when asked
    @property
    def memory(self):
        return self.device.memory

    @property
    def element_type(self) -> int:
        return self.host.element.pjrt

    @property
    def dims(self) -> tuple:
        return tuple(self.host.shape)

    @property
    def on_device_size(self) -> int:   # asked rarely: not worked out for every output
        return device_bytes(device_type(self.host))

    @property
    def unsafe_pointer(self) -> int:
        """PJRT_Buffer_UnsafePointer: the device address of the buffer's storage (on its
        chip; views of one storage share it), as ttnn's Tensor.buffer_address gives it."""
        return int(self.live_tensor("PJRT_Buffer_UnsafePointer").buffer_address())

    @classmethod
    def from_host(cls, client, device, element: ElementType, data: np.ndarray) -> "Buffer":
        """`data` may be a view of the framework's memory (any strides, stride 0 included):
        the device's room is checked before anything is converted or copied."""
        value_range, words = narrow_to_device(data, element, f"the {element.numpy.name} array of shape "
                                                             f"{list(data.shape)} sent to {device.debug_string}")
        host = HostType(element, tuple(data.shape), words)
        t = device_type(host)
        client.target.check_fits(t, device.chip)
        recorder = client.recorder
        start = recorder.now() if recorder.active else 0
        tensor = client.deadline.call(f"a transfer of {host} to the TT device", client.target.upload,
                                      device_array(data, host), t, device.chip)
        if start:
            recorder.host("Transfers", "host to device", start, recorder.now(),
                          {"device": device.id, "shape": str(host), "bytes": data.nbytes})
        return cls(device, host, tensor, value_range, measured=True)

    def prepared(self, key, make, others=()) -> list:
        """The const-eval results `key` names, made from this buffer and `others` by
        `make([tensors]) -> (results, owners)` the first time, and kept until any of them
        is deleted or holds another tensor."""
        full = (key, tuple(o.serial for o in others))
        if self._prepared is None:
            self._prepared = {}
        hit = self._prepared.get(full)
        if hit is None:
            made = make([b.live_tensor("preparing an argument") for b in (self, *others)])
            hit = self._prepared.setdefault(full, made)
            if hit is not made:   # another thread made it first
                self._free_owned([made])
            else:
                for o in others:
                    if o._linked is None:
                        o._linked = []
                    o._linked.append((weakref.ref(self), full))
        return hit[0]

    def _free_owned(self, entries) -> None:
        target = self.device.client.target
        for _, owners in entries:
            for t in owners:
                target.free(t)

    def _drop_prepared(self) -> None:
        if not self._prepared and not self._linked:
            return
        entries, self._prepared = list((self._prepared or {}).values()), None
        linked, self._linked = self._linked or [], None
        for ref, full in linked:   # entries other buffers keep that read this one
            keeper = ref()
            entry = keeper._prepared.pop(full, None) if keeper is not None and keeper._prepared else None
            if entry is not None:
                entries.append(entry)
        if self.device.client.deadline.wedged is None:
            self._free_owned(entries)

    def hold(self, tensor) -> None:
        """Hold `tensor` (the same values, e.g. a view of a mesh copy) instead of the current
        one, which goes back to the target (the target's DeviceTensors decides what that frees)."""
        self._drop_prepared()
        old, self.tensor = self.tensor, tensor
        if old is not None:
            self.device.client.target.free(old)

    @property
    def is_deleted(self) -> bool:
        return self.tensor is None

    def delete(self) -> None:
        if self.tensor is not None:
            if self._prepared or self._linked:   # (a call less for the usual buffer)
                self._drop_prepared()
            client = self.device.client
            if client.deadline.wedged is None:   # a wedged device would not answer a free either
                client.target.free(self.tensor)
            self.tensor = None

    def __del__(self):  # the framework dropped its last handle: free the chip memory
        try:
            self.delete()
        except Exception:
            pass

    def live_tensor(self, what: str):
        if self.tensor is None:
            raise InvalidArgument(f"{what}: the TT buffer {self.dims} was deleted or donated")
        return self.tensor

    def numpy(self) -> np.ndarray:
        t = device_type(self.host)
        client = self.device.client
        data = client.deadline.call(f"a read of a {self.host} buffer", client.target.download,
                                    self.live_tensor("reading a buffer"), t)
        return host_array(data, self.host)

    def as_words(self):
        """This 64-bit integer buffer as its (low, high) uint32 words, the form a program that
        computes with it in 64 bits reads (ingest/words64.py); made once from a narrowed
        buffer (through the host: such arguments are seeds and counters, a few words) and
        kept with it."""
        if self.host.words:
            return self.live_tensor("reading a buffer")
        words = HostType(self.host.element, self.host.shape, words=True)
        device, client = self.device, self.device.client

        def make(_):
            t = client.target.upload(device_array(self.numpy(), words), device_type(words), device.chip)
            return [t], [t]
        return self.prepared(("words",), make)[0]

    def measured_range(self) -> tuple[int, int] | None:
        """The range of a 64-bit integer buffer's values, read from the device if only a
        bound is known (a sync, done once)."""
        if not self.range_measured and self.host.element.narrowed:
            data = self.numpy()
            self.value_range = (int(data.min()), int(data.max())) if data.size else (0, 0)
            self.range_measured = True
        return self.value_range

    def host_size(self) -> int:
        return math.prod(self.dims) * self.host.element.numpy.itemsize

    def to_host(self, address: int, size: int) -> None:
        recorder = self.device.client.recorder
        start = recorder.now() if recorder.active else 0
        data = np.ascontiguousarray(self.numpy())
        if start:
            recorder.host("Transfers", "device to host", start, recorder.now(),
                          {"device": self.device.id, "shape": str(self.host), "bytes": data.nbytes})
        if size < data.nbytes:
            raise InvalidArgument(f"host buffer of {size} bytes is too small for {data.nbytes}")
        ctypes.memmove(address, data.ctypes.data, data.nbytes)

    def copy_to_device(self, device) -> "Buffer":   # (the range is measured again)
        return Buffer.from_host(device.client, device, self.host.element, self.numpy())

    def copy_to_memory(self, memory) -> "Buffer":
        return self.copy_to_device(memory.devices[0])
