"""The one owner of a target's device tensors: who frees what, and when.

A PJRT buffer holds a tensor handle; whether freeing that handle frees device memory is
decided here and nowhere else:

- a plain tensor (an upload, a single-chip program's output) is its own memory;
- a *view* (ttnn.get_device_tensors of a mesh tensor, one per chip, each held by one PJRT
  buffer) shares its mesh tensor's buffer: deallocating one view frees the whole mesh
  buffer (measured, mock), so the mesh tensor is freed when the last of its views is;
- a *host copy* (a mesh tensor the runtime built from per-chip tensors through the host,
  for one run) is freed after that run unless its views were adopted by the buffers.

Targets deallocate through `free`; the mesh runner asks `mesh_of`, `track_copy`, `adopt`
and `release`; the single-chip runner asks `is_view`. Nothing else keeps ownership state.
"""
from __future__ import annotations

import dataclasses
from typing import Callable


@dataclasses.dataclass(eq=False)
class _Shared:
    mesh: object          # the mesh tensor
    views: list           # its per-chip views, in mesh order (device ids `ids`)
    ids: list
    live: int             # views not yet freed


class DeviceTensors:
    """Ownership of every device tensor of one target (`deallocate`: its ttnn.deallocate)."""

    host_copies = 0   # mesh tensors built through the host, in this process (tests read it)

    def __init__(self, deallocate: Callable[[object], None]):
        self._deallocate = deallocate
        self._shared: dict[int, _Shared] = {}   # id(view) -> the mesh tensor it shares
        self._copies: dict[int, object] = {}    # id(host copy) -> the copy, until adopted or released

    def free(self, tensor) -> None:
        """Give `tensor` back: its memory goes now, or with the last view of its mesh tensor."""
        shared = self._shared.pop(id(tensor), None) if self._shared else None
        if shared is None:
            self._deallocate(tensor)
            return
        shared.live -= 1
        if not shared.live:
            self._deallocate(shared.mesh)

    def share(self, mesh_tensor, views: list, device_ids: list) -> None:
        """`views` of `mesh_tensor` (on devices `device_ids`), each to be held and freed on its own."""
        shared = _Shared(mesh_tensor, list(views), list(device_ids), len(views))
        for v in views:
            self._shared[id(v)] = shared

    def is_view(self, tensor) -> bool:
        return id(tensor) in self._shared

    def mesh_of(self, tensors: list, device_ids: list):
        """The mesh tensor whose views on `device_ids` are exactly `tensors`, in order; else None."""
        shared = self._shared.get(id(tensors[0])) if tensors else None
        if (shared is not None and shared.ids == list(device_ids) and len(tensors) == len(shared.views)
                and all(a is b for a, b in zip(tensors, shared.views))):
            return shared.mesh
        return None

    def track_copy(self, copy) -> None:
        """`copy` was built through the host for one run (see adopt / release)."""
        DeviceTensors.host_copies += 1
        self._copies[id(copy)] = copy

    def adopt(self, copy, views: Callable[[object], list], device_ids: list) -> list:
        """If `copy` is a tracked host copy: its per-chip views (`views(copy)`), now shared
        and owned by whoever holds them; else []."""
        if self._copies.pop(id(copy), None) is None:
            return []
        parts = list(views(copy))
        self.share(copy, parts, device_ids)
        return parts

    def release(self, tensor) -> None:
        """After a run: free `tensor` if it is a host copy nobody adopted."""
        if self._copies.pop(id(tensor), None) is not None:
            self.free(tensor)
