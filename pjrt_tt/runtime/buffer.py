"""Buffers: a ttnn tensor on one chip, seen by the framework as a typed array."""
from __future__ import annotations

import ctypes
import math

import numpy as np

from pjrt_tt.dtypes import ElementType
from pjrt_tt.errors import InvalidArgument
from pjrt_tt.program import HostType, device_array, device_type
from pjrt_tt.targets.base import device_bytes


def host_view(address: int, dtype: np.dtype, dims: tuple[int, ...], byte_strides) -> np.ndarray:
    """A numpy view of framework memory at `address` (no copy)."""
    if byte_strides is None or len(byte_strides) == 0:
        byte_strides = tuple(int(np.prod(dims[i + 1:], dtype=np.int64)) * dtype.itemsize
                             for i in range(len(dims)))
    if any(d == 0 for d in dims):
        return np.zeros(dims, dtype)
    extent = sum((d - 1) * abs(s) for d, s in zip(dims, byte_strides)) + dtype.itemsize
    raw = (ctypes.c_char * extent).from_address(address)
    return np.ndarray(dims, dtype, buffer=raw, strides=byte_strides)


class Buffer:
    """A PJRT buffer: holds one device tensor handle; freeing it is the target's business."""

    __slots__ = ("device", "host", "tensor")   # one is made per program output per call

    def __init__(self, device, host: HostType, tensor):
        self.device = device
        self.host = host
        self.tensor = tensor

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

    @classmethod
    def from_host(cls, client, device, element: ElementType, data: np.ndarray) -> "Buffer":
        """`data` may be a view of the framework's memory (any strides, stride 0 included):
        the device's room is checked before anything is converted or copied."""
        host = HostType(element, tuple(data.shape))
        t = device_type(host)
        client.target.check_fits(t, device.chip)
        tensor = client.deadline.call(f"a transfer of {host} to the TT device", client.target.upload,
                                      device_array(data, host), t, device.chip)
        return cls(device, host, tensor)

    def hold(self, tensor) -> None:
        """Hold `tensor` (the same values, e.g. a view of a mesh copy) instead of the current
        one, which goes back to the target (the target's DeviceTensors decides what that frees)."""
        old, self.tensor = self.tensor, tensor
        if old is not None:
            self.device.client.target.free(old)

    @property
    def is_deleted(self) -> bool:
        return self.tensor is None

    def delete(self) -> None:
        if self.tensor is not None:
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
        if self.host.element.is_bool:
            data = data != 0
        return data.reshape(self.dims).astype(self.host.element.numpy)

    def host_size(self) -> int:
        return math.prod(self.dims) * self.host.element.numpy.itemsize

    def to_host(self, address: int, size: int) -> None:
        data = np.ascontiguousarray(self.numpy())
        if size < data.nbytes:
            raise InvalidArgument(f"host buffer of {size} bytes is too small for {data.nbytes}")
        ctypes.memmove(address, data.ctypes.data, data.nbytes)

    def copy_to_device(self, device) -> "Buffer":
        return Buffer.from_host(device.client, device, self.host.element, self.numpy())

    def copy_to_memory(self, memory) -> "Buffer":
        return self.copy_to_device(memory.devices[0])
