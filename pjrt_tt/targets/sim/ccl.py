"""Mesh tensors and CCL collectives for the sim target.

A sim `MeshTensor` holds one device `Tensor` per chip of an R x C mesh (row-major), each
allocated on its own chip, so per-chip memory is exact; when several processes share the
mesh (sim/exchange.py), the chips another process drives hold None here. Like real ttnn,
its shape, dtype and layout are the per-device ones. `MeshModule(sim, devices, shape)` is a ttnn-shaped
view of the sim for a program running on that mesh: every sim op is applied chip by chip
(a MeshTensor argument becomes that chip's shard, the mesh device that chip's 1x1 device),
and the collectives below exchange shards. Semantics follow ttnn 0.81.1 (mock is the
reference for shapes, dtypes and layouts): per-device shapes; `cluster_axis` 0 = the chips
of a column, 1 = those of a row, None = all chips in row-major order.

    all_gather(t, dim, cluster_axis)      concat of the group's shards along dim
    reduce_scatter(t, dim, cluster_axis)  the group's sum, split along dim; chip k keeps part k
    all_reduce(t, cluster_axis)           the group's sum
    mesh_partition(t, dim, cluster_axis)  chip k keeps part k of its own shard (no traffic)

Sums are taken in float32 (integers in int64) and rounded once to the dtype. The bytes each
collective moves between chips (ring algorithms: (n-1)/n of the gathered / reduced tensor
per chip) are counted in `STATS` for the benchmarks; the bytes a process sent to the others
are exchange.STATS.
"""
from __future__ import annotations

import functools
import types

import numpy as np

from .exchange import LocalExchange
from .tensor import FLOAT_DTYPES, Tensor, fatal, quantize

STATS = {"bytes": 0, "calls": 0}   # bytes sent chip-to-chip by the collectives since reset


def sim_reset_ccl_stats() -> None:
    STATS.update(bytes=0, calls=0)


class MeshTensor:
    """A tensor on an R x C sim mesh: one shard (a device Tensor) per chip, row-major; None
    for a chip another process drives."""

    def __init__(self, shards: list, mesh_shape: tuple[int, int]):
        self.shards, self.mesh_shape = list(shards), tuple(mesh_shape)
        self.local = [t for t in self.shards if t is not None]
        s = self.local[0]
        if any(tuple(t.shape) != tuple(s.shape) or t.dtype != s.dtype or t.layout != s.layout
               for t in self.local):
            raise fatal("shards agree", "sim: a mesh tensor needs one shape/dtype/layout on every chip")

    shape = property(lambda self: self.local[0].shape)
    padded_shape = property(lambda self: self.local[0].padded_shape)
    dtype = property(lambda self: self.local[0].dtype)
    layout = property(lambda self: self.local[0].layout)

    def is_allocated(self) -> bool:
        return all(t.is_allocated() for t in self.local)

    def deallocate(self, force: bool = True) -> None:
        for t in self.local:
            t.deallocate()

    def __repr__(self) -> str:
        return f"MeshTensor(sim, {len(self.shards)} shards of {self.local[0]!r})"


def combine_device_tensors(tensors, mesh_shape=None) -> MeshTensor:
    """One device tensor per chip -> a mesh tensor (sim: `mesh_shape` is (R, C), default 1 x n)."""
    return MeshTensor(list(tensors), mesh_shape or (1, len(tensors)))


def get_device_tensors(t):
    return list(t.shards) if isinstance(t, MeshTensor) else [t]


def _groups(t: MeshTensor, cluster_axis) -> list[list[int]]:
    R, C = t.mesh_shape
    if cluster_axis is None:
        return [list(range(R * C))]
    if cluster_axis == 1:
        return [[r * C + c for c in range(C)] for r in range(R)]
    if cluster_axis == 0:
        return [[r * C + c for r in range(R)] for c in range(C)]
    raise fatal("cluster_axis < 2", f"sim: cluster_axis {cluster_axis} on a 2-D mesh")


def _check(t, what: str) -> MeshTensor:
    if not isinstance(t, MeshTensor):
        raise fatal("tensor is on a multi-device mesh", f"sim: {what} needs a mesh tensor, got {t!r}")
    return t


def _remake(value: np.ndarray, like: Tensor) -> Tensor:
    return Tensor._make(quantize(value, like.dtype), like.dtype, like.layout, like.device(),
                        like.memory_config())


def _split(value: np.ndarray, dim: int, n: int, what: str) -> list[np.ndarray]:
    if value.shape[dim] % n:
        raise fatal(f"input_shape[{dim}] % ring_size == 0",
                    f"sim: {what}: dim {dim} of size {value.shape[dim]} is not divisible by {n}")
    return np.split(value, n, axis=dim)


def _dim(t: MeshTensor, dim: int) -> int:
    rank = len(t.shape)
    return dim + rank if dim < 0 else dim


def _bytes(t: Tensor) -> int:
    return t.buffer_num_pages() * t.buffer_page_size()


def _values(t: MeshTensor, exchange) -> dict:
    """Every chip's shard value (position -> array), the other processes' through `exchange`."""
    return exchange.all({i: s._live_value() for i, s in enumerate(t.shards) if s is not None})


def _local(t: MeshTensor, group: list[int]) -> list[int]:
    return [i for i in group if t.shards[i] is not None]


def all_gather(input_tensor, dim: int, cluster_axis=None, *, exchange=LocalExchange(), **_ignored) -> MeshTensor:
    t = _check(input_tensor, "all_gather")
    dim = _dim(t, dim)
    out = [None] * len(t.shards)
    values = _values(t, exchange)
    for g in _groups(t, cluster_axis):
        value = np.concatenate([values[i] for i in g], axis=dim)
        for i in _local(t, g):
            out[i] = _remake(value, t.shards[i])
        STATS["bytes"] += len(g) * (len(g) - 1) * _bytes(t.local[0])   # every chip receives n-1 shards
    STATS["calls"] += 1
    return MeshTensor(out, t.mesh_shape)


def _sum(values: list[np.ndarray], dtype) -> np.ndarray:
    acc = np.float32 if dtype in FLOAT_DTYPES else np.int64
    return np.sum([v.astype(acc) for v in values], axis=0)


def all_reduce(input_tensor, cluster_axis=None, *, exchange=LocalExchange(), **_ignored) -> MeshTensor:
    t = _check(input_tensor, "all_reduce")
    out = [None] * len(t.shards)
    values = _values(t, exchange)
    for g in _groups(t, cluster_axis):
        value = _sum([values[i] for i in g], t.dtype)
        for i in _local(t, g):
            out[i] = _remake(value, t.shards[i])
        STATS["bytes"] += 2 * (len(g) - 1) * _bytes(t.local[0])   # ring: reduce-scatter + all-gather
    STATS["calls"] += 1
    return MeshTensor(out, t.mesh_shape)


def reduce_scatter(input_tensor, dim: int, cluster_axis=None, *, exchange=LocalExchange(),
                   **_ignored) -> MeshTensor:
    t = _check(input_tensor, "reduce_scatter")
    if len(t.shape) < 2:   # ttnn 0.81.1, measured on mock (ROW_MAJOR fails inside its pad instead)
        raise fatal("rank >= 2", "reduce_scatter currently supports rank 2 tensors at minimum")
    dim = _dim(t, dim)
    out = [None] * len(t.shards)
    values = _values(t, exchange)
    for g in _groups(t, cluster_axis):
        parts = _split(_sum([values[i] for i in g], t.dtype), dim, len(g), "reduce_scatter")
        for k, i in enumerate(g):
            if t.shards[i] is not None:
                out[i] = _remake(parts[k], t.shards[i])
        STATS["bytes"] += (len(g) - 1) * _bytes(t.local[0])
    STATS["calls"] += 1
    return MeshTensor(out, t.mesh_shape)


def mesh_partition(input_tensor, dim: int, cluster_axis=None, *, exchange=None, **_ignored) -> MeshTensor:
    t = _check(input_tensor, "mesh_partition")
    dim = _dim(t, dim)
    rank, layout = len(t.shape), t.layout
    for g in _groups(t, cluster_axis):   # ttnn slices each part out: tile-aligned starts only
        chunk = t.shape[dim] // len(g)
        if len(g) > 1 and layout.name == "TILE" and dim >= rank - 2 and chunk % 32:
            which = "height" if dim == rank - 2 else "width"
            raise fatal("begin index aligned", f"Can only slice tilized tensor with {which} begin index aligned to tiles")
    out = [None] * len(t.shards)
    for g in _groups(t, cluster_axis):
        for k, i in enumerate(g):
            if t.shards[i] is not None:
                out[i] = _remake(_split(t.shards[i]._live_value(), dim, len(g), "mesh_partition")[k], t.shards[i])
    return MeshTensor(out, t.mesh_shape)


COLLECTIVES = {"all_gather": all_gather, "all_reduce": all_reduce, "reduce_scatter": reduce_scatter,
               "mesh_partition": mesh_partition}


class _MeshHandle:
    """Stands for the mesh device in op arguments; each chip's call gets its own device."""

    def __init__(self, devices, shape):
        self.devices, self.shape = devices, tuple(shape)

    def __repr__(self):
        return f"MeshDevice(sim mesh {list(self.shape)} over chips {[d.get_device_ids()[0] for d in self.devices]})"


class MeshModule:
    """The sim as a ttnn module for programs on an R x C mesh of the given 1x1 devices.
    `local`: the mesh positions this process drives (all when it is the only one); the
    others are another process's, reached through `exchange` in the collectives."""

    def __init__(self, sim, devices, shape, local=None, exchange=LocalExchange()):
        self._sim, self.device = sim, _MeshHandle(list(devices), shape)
        self.local = list(range(len(devices))) if local is None else list(local)
        self.exchange = exchange
        self._cache: dict[str, object] = {}

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        hit = self._cache.get(name)
        if hit is None:
            hit = self._cache[name] = self._wrap(name)
        return hit

    def agree(self, value) -> list:
        """Every process's copy of a host-read `value` (the host drives all chips with one)."""
        return self.exchange.agree(value)

    def _wrap(self, name):
        if name in COLLECTIVES:
            return functools.partial(COLLECTIVES[name], exchange=self.exchange)
        if name == "get_device_tensors":   # takes the mesh tensor whole
            return get_device_tensors
        obj = getattr(self._sim, name)
        if not isinstance(obj, types.FunctionType):
            return obj
        handle, local = self.device, self.local
        n = len(handle.devices)

        def per_chip(*args, **kwargs):
            on_mesh = []   # set when an argument is a mesh tensor or the mesh device

            def pick(a, i):
                if isinstance(a, MeshTensor):
                    on_mesh.append(True)
                    return a.shards[i]
                if a is handle:
                    on_mesh.append(True)
                    return handle.devices[i]
                if isinstance(a, (list, tuple)):
                    return type(a)(pick(x, i) for x in a)
                if isinstance(a, dict):
                    return {k: pick(v, i) for k, v in a.items()}
                return a
            first = (pick(list(args), local[0]), pick(kwargs, local[0]))
            if not on_mesh:   # nothing on the mesh (e.g. one chip's shard, for a host read): one call
                return obj(*args, **kwargs)
            results = [None] * n
            results[local[0]] = obj(*first[0], **first[1])
            for i in local[1:]:
                results[i] = obj(*pick(list(args), i), **pick(kwargs, i))
            some = results[local[0]]
            if isinstance(some, Tensor):
                return MeshTensor(results, handle.shape)
            if isinstance(some, (list, tuple)) and some and all(isinstance(t, Tensor) for t in some):
                per_result = zip(*[r if r is not None else [None] * len(some) for r in results])
                return type(some)(MeshTensor(list(shards), handle.shape) for shards in per_result)   # (sort, topk)
            return some
        per_chip.__name__ = name
        return per_chip
