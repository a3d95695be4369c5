"""Indexing, sorting and scan ops of the sim: embedding, gather, scatter, scatter_add, sort,
topk, cumsum, cumprod, prod.

Result metadata follows real ttnn 0.81.1 as measured in mock (docs/ttnn-facts.md, "Indexing,
sort, pooling (measured)"); values are computed with numpy on the stored values. Index
semantics are torch's (gather / scatter along `dim`, index of the result's shape).
"""
from __future__ import annotations

import numpy as np

from .ops import _dims, _f32, _need_device, _need_tile, _out
from .tensor import FLOAT_DTYPES, DataType, Layout, Tensor, fatal

__all__ = ["embedding", "gather", "scatter", "scatter_add", "sort", "topk", "cumsum", "cumprod", "prod"]

_INDEX_DTYPES = (DataType.UINT32, DataType.UINT16)


def _index(t: Tensor, allowed, what: str) -> np.ndarray:
    if t.dtype not in allowed:
        raise fatal("index dtype", f"{what} must be of type UINT32 or UINT16. Got: DataType::{t.dtype.name}")
    return t._live_value().astype(np.int64)


def embedding(input_tensor: Tensor, weight: Tensor, *, layout=None, dtype=None, memory_config=None,
              **_ignored) -> Tensor:
    """Rows of `weight` (bf16 only, as ttnn) picked by uint32 ids; default ROW_MAJOR result."""
    _need_device("embedding", input_tensor, weight)
    if input_tensor.dtype not in (DataType.UINT32, DataType.BFLOAT16):
        raise fatal("input dtype", "Input must be UINT32 or BFLOAT16")
    if weight.dtype != DataType.BFLOAT16:
        raise fatal("weight dtype", "Weights tensor must have BFLOAT16 dtype")
    ids = input_tensor._live_value().astype(np.int64)
    if ids.ndim > 2:  # ttnn 0.81 mangles ids of rank > 2 ((2,3,4) -> (2,4,D)); the sim refuses
        raise fatal("ids rank <= 2", "ttnn.embedding: the sim takes ids of rank 1 or 2 only")
    table = _f32(weight)
    out = table[np.clip(ids, 0, table.shape[0] - 1)]
    return _out(out, dtype or weight.dtype, layout or Layout.ROW_MAJOR, weight, memory_config)


def gather(input_tensor: Tensor, dim: int, index: Tensor, *, memory_config=None, **_ignored) -> Tensor:
    """out[i][j] = x[index[i][j]][j] along `dim` (torch.gather); rank >= 2."""
    _need_device("gather", input_tensor, index)
    if input_tensor.dtype == DataType.UINT8 and input_tensor.layout == Layout.TILE:
        raise fatal("supported datatype", "Unsupported datatype")  # ttnn 0.81, measured in mock
    x = input_tensor._live_value()
    if x.ndim < 2:
        raise fatal("rank >= 2", "Can't convert shape rank")
    idx = _index(index, _INDEX_DTYPES, "Index tensor")
    d = _dims(dim, x.ndim)[0]
    # Other dims of the index may be smaller than the input's: torch takes the leading part.
    part = x[tuple(slice(0, n) if a != d else slice(None) for a, n in enumerate(idx.shape))]
    out = np.take_along_axis(part, idx, axis=d)
    return _out(out, input_tensor.dtype, input_tensor.layout, input_tensor, memory_config)


def _scatter(name: str, x: Tensor, dim: int, index: Tensor, src: Tensor, memory_config, reduce=None) -> Tensor:
    _need_device(name, x, index, src)
    if x.dtype == DataType.FLOAT32 and x.layout == Layout.TILE:
        raise fatal("not fp32 TILE", "Scatter doesn't work for fp32 tiled tensors yet (see to_layout issue #) - "
                                     "input tensor is DataType::FLOAT32 Layout::TILE.")
    if reduce not in (None, "add", "multiply"):
        raise fatal("reduce", f"reduce must be either 'add' or 'multiply' (case-sensitive), got {reduce}")
    idx = _index(index, (DataType.INT32,) + _INDEX_DTYPES, "Index tensor")
    out = x._live_value().copy()
    d = _dims(dim, out.ndim)[0]
    pos = list(np.indices(idx.shape))
    pos[d] = idx
    vals = src._live_value()[tuple(slice(0, n) for n in idx.shape)]
    if name == "scatter_add" or reduce == "add":
        np.add.at(out, tuple(pos), vals.astype(out.dtype))
    elif reduce == "multiply":
        np.multiply.at(out, tuple(pos), vals.astype(out.dtype))
    else:
        out[tuple(pos)] = vals
    return _out(out, x.dtype, x.layout, x, memory_config)


def scatter(input: Tensor, dim: int, index: Tensor, src: Tensor, *, memory_config=None,  # noqa: A002
            reduce=None, **_ignored) -> Tensor:
    return _scatter("scatter", input, dim, index, src, memory_config, reduce)


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor, *, memory_config=None,  # noqa: A002
                **_ignored) -> Tensor:
    return _scatter("scatter_add", input, dim, index, src, memory_config)


def _index_dtype(x: Tensor) -> DataType:
    return DataType.UINT16 if x.dtype == DataType.BFLOAT16 else DataType.UINT32


def sort(input_tensor: Tensor, dim: int = -1, descending: bool = False, stable: bool = False, *,
         memory_config=None, **_ignored) -> list[Tensor]:
    """[values, indices]: TILE only; indices UINT16 for bf16 input, UINT32 for f32."""
    _need_device("sort", input_tensor)
    if input_tensor.dtype not in (DataType.BFLOAT16, DataType.FLOAT32, DataType.UINT16):
        raise fatal("dtype", f"Input tensor data type must be BFLOAT16, UINT16, or FLOAT32, got "
                             f"DataType::{input_tensor.dtype.name}")
    _need_tile("sort", input_tensor)
    v = _f32(input_tensor)
    d = _dims(dim, v.ndim)[0]
    order = np.argsort(-v if descending else v, axis=d, kind="stable")
    vals = np.take_along_axis(v, order, axis=d)
    return [_out(vals, input_tensor.dtype, Layout.TILE, input_tensor, memory_config),
            _out(order, _index_dtype(input_tensor), Layout.TILE, input_tensor, memory_config)]


def topk(input_tensor: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True,  # noqa: A002
         *, memory_config=None, **_ignored) -> list[Tensor]:
    """[values, indices] of the k largest (smallest) along dim; ties: lower index first."""
    _need_device("topk", input_tensor)
    if input_tensor.dtype not in FLOAT_DTYPES - {DataType.BFLOAT4_B}:
        raise fatal("dtype", f"Input tensor must be BFLOAT16, BFLOAT8_B, or FLOAT32, got: "
                             f"DataType::{input_tensor.dtype.name}")
    _need_tile("topk", input_tensor)
    v = _f32(input_tensor)
    d = _dims(dim, v.ndim)[0]
    order = np.take(np.argsort(-v if largest else v, axis=d, kind="stable"), np.arange(k), axis=d)
    vals = np.take_along_axis(v, order, axis=d)
    return [_out(vals, input_tensor.dtype, Layout.TILE, input_tensor, memory_config),
            _out(order, _index_dtype(input_tensor), Layout.TILE, input_tensor, memory_config)]


def _scan(name: str, fn, input_tensor: Tensor, dim: int, dtype, reverse_order: bool, memory_config) -> Tensor:
    """Inclusive scan along dim (TILE only); float math in float32."""
    _need_device(name, input_tensor)
    if input_tensor.layout != Layout.TILE:
        raise fatal("layout == TILE", "The provided input tensor has a non-tile layout: ROW_MAJOR.")
    v = input_tensor._live_value()
    if input_tensor.dtype in FLOAT_DTYPES:
        v = v.astype(np.float32)
    d = _dims(dim, v.ndim)[0] if v.ndim else 0
    flip = (lambda a: np.flip(a, d)) if reverse_order else (lambda a: a)
    with np.errstate(all="ignore"):
        r = flip(fn(flip(v), axis=d, dtype=v.dtype)) if v.ndim else v
    return _out(r, dtype or input_tensor.dtype, Layout.TILE, input_tensor, memory_config)


def cumsum(input_tensor: Tensor, dim: int, *, dtype=None, reverse_order: bool = False, memory_config=None,
           **_ignored) -> Tensor:
    return _scan("cumsum", np.cumsum, input_tensor, dim, dtype, reverse_order, memory_config)


def cumprod(input_tensor: Tensor, dim: int, *, dtype=None, reverse_order: bool = False, memory_config=None,
            **_ignored) -> Tensor:
    return _scan("cumprod", np.cumprod, input_tensor, dim, dtype, reverse_order, memory_config)


def prod(input_tensor: Tensor, dim: int | None = None, keepdim: bool = False, *, memory_config=None,
         **_ignored) -> Tensor:
    """Product over one dim (or all): floats only, TILE result."""
    _need_device("prod", input_tensor)
    if input_tensor.dtype not in FLOAT_DTYPES:
        raise fatal("float dtype", f"Error - unsupported data type for prod, expected BFLOAT16, FLOAT32 or "
                                   f"BFLOAT8_B but got DataType::{input_tensor.dtype.name}.")
    if dim is not None and not isinstance(dim, (int, np.integer)):
        raise fatal("dim is int", "ttnn.prod(): incompatible function arguments")
    v = _f32(input_tensor)
    axes = _dims(dim, v.ndim) if v.ndim else ()
    with np.errstate(all="ignore"):
        r = np.prod(v, axis=axes, keepdims=keepdim, dtype=np.float32)
    return _out(np.asarray(r), input_tensor.dtype, Layout.TILE, input_tensor, memory_config)
