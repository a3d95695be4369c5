"""Estimated device time of ttnn ops on a Tenstorrent chip, without running them.

Every op is a roofline: the longer of its compute time and its data-movement time, plus
a fixed per-op device cost, where

    compute  = the op's work in 32x32 tiles, spread over the cores it can use, at the
               engine's cycles per tile (matmul: 16 x fidelity phases per 32x32x32 tile),
               divided by a compute efficiency
    memory   = bytes read and written (tile-padded, in the tensors' data formats) over
               DRAM bandwidth (or the grid's L1/NoC bandwidth for L1 tensors), divided
               by a memory efficiency

The efficiencies and the fixed cost are fitted per architecture to tt-metal's published
matmul measurements (pjrt_tt/perf/calibration.py, docs/perf.md gives the error); the cycle
counts of the non-matmul engines are stated assumptions (SFPU_CYCLES below), not fits.
Everything returned is an estimate and is labelled so wherever it is printed.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os

from pjrt_tt import program as prog
from pjrt_tt.systems import FIDELITY_PHASES, FPU_FLOPS_PER_CYCLE, get_system
from pjrt_tt.ttnn_facts import TILE_BYTES, TILE_SIZE, default_matmul_config

TILE_ELEMENTS = TILE_SIZE * TILE_SIZE
MATMUL_CYCLES_PER_TILE = 2 * TILE_SIZE ** 3 // FPU_FLOPS_PER_CYCLE   # 16 at LoFi

# Assumed engine cycles per 32x32 output tile for the ops no published table measures
# (FPU eltwise passes a tile in a few dozen cycles; SFPU functions iterate over the tile's
# 32 rows of 32 lanes, transcendental ones with polynomial / Newton steps). Uncalibrated.
FPU_BINARY_CYCLES = 32
SFPU_CYCLES = {"simple": 64, "transcendental": 256}
TRANSCENDENTAL = frozenset({
    "exp", "log", "log1p", "expm1", "gelu", "sqrt", "rsqrt", "reciprocal", "sigmoid", "tanh", "erf", "erfinv",
    "silu", "pow", "divide", "sin", "cos", "tan", "atan", "atan2", "cbrt", "fmod", "remainder", "softplus",
    "exp2", "log2", "asin", "acos", "sinh", "cosh", "asinh", "acosh", "atanh", "mish", "elu", "selu"})
BINARY = frozenset({
    "add", "subtract", "multiply", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "logical_and",
    "logical_or", "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_left_shift",
    "bitwise_right_shift", "logical_right_shift", "squared_difference", "where", "clamp", "clip"})
REDUCTIONS = frozenset({"sum", "mean", "max", "min", "prod", "argmax", "argmin", "var", "std", "topk", "sort",
                        "cumsum", "moreh_cumsum"})
NORMS = {"softmax": 6, "layer_norm": 5, "rms_norm": 4, "group_norm": 5, "batch_norm": 3}  # passes per tile
CREATION = frozenset({"full", "zeros", "ones", "arange", "empty", "rand", "uniform", "full_like", "zeros_like",
                      "ones_like", "empty_like"})
VIEWS = frozenset({"reshape", "view", "unsqueeze", "squeeze"})
COLLECTIVES = frozenset({"all_gather", "reduce_scatter", "all_reduce", "all_to_all", "point_to_point",
                         "experimental.all_gather_async", "experimental.reduce_scatter_minimal_async"})


@dataclasses.dataclass(frozen=True)
class Efficiency:
    """Fitted per architecture (calibration.py): achieved / ideal rates, and the fixed
    device cost of one op (program launch, first tiles in flight)."""
    compute: float
    dram: float
    overhead_ns: float


@dataclasses.dataclass(frozen=True)
class OpCost:
    """One op's estimate. `bound`: which roofline term dominates (compute, memory) or
    `overhead` when the fixed cost is the larger; `calibrated`: its family was fitted."""
    kind: str
    device_ns: float
    flops: float
    bytes: float
    bound: str
    calibrated: bool

    @property
    def device_us(self) -> float:
        return self.device_ns / 1e3


ZERO = OpCost("host", 0.0, 0.0, 0.0, "none", True)


def tensor_bytes(shape, dtype: str, layout: str = prog.TILE) -> float:
    """Bytes a ttnn tensor of this shape occupies: TILE pads the last two dims to 32."""
    shape = tuple(shape) or (1,)
    per_tile = TILE_BYTES.get(dtype, 4096)
    if layout != prog.TILE:
        return math.prod(shape) * per_tile / TILE_ELEMENTS
    h, w = (shape[-2] if len(shape) > 1 else 1), shape[-1]
    return math.prod(shape[:-2]) * _tiles(h) * _tiles(w) * per_tile


def tile_count(shape) -> int:
    shape = tuple(shape) or (1,)
    h, w = (shape[-2] if len(shape) > 1 else 1), shape[-1]
    return math.prod(shape[:-2]) * _tiles(h) * _tiles(w)


FITTED = os.path.join(os.path.dirname(__file__), "data", "fitted_efficiency.json")


@functools.lru_cache(maxsize=None)
def fitted(arch_name: str) -> Efficiency:
    """The efficiencies calibration.py fitted for `arch_name` (stored, so estimates need no
    refit; tests/test_perf.py checks they are what the fit gives)."""
    with open(FITTED) as f:
        table = json.load(f)
    if arch_name not in table:
        raise ValueError(f"no calibration data for architecture {arch_name!r}")
    return Efficiency(**table[arch_name])


def _tiles(n: int) -> int:
    return max(1, -(-n // TILE_SIZE))


class Estimator:
    """Op estimates for one chip of a system (`chip_name`: n150, p150, ...)."""

    def __init__(self, chip_name: str, efficiency: Efficiency | None = None, grid: tuple[int, int] | None = None):
        system = get_system(chip_name)
        self.system, self.arch = system, system.arch
        self.grid = tuple(grid or self.arch.compute_grid)
        self.cores = self.grid[0] * self.grid[1]
        self.eff = efficiency or fitted(self.arch.name)

    # --- rooflines ----------------------------------------------------------------------
    def _bandwidth(self, memory: str) -> float:
        """Bytes/s the op's tensors stream at: DRAM, or the grid's NoC reads from L1."""
        if memory == "l1":
            return self.cores * self.arch.noc_bytes_per_cycle * self.arch.clock_hz
        return self.arch.dram_bytes_per_s * self.eff.dram

    def _memory_ns(self, nbytes: float, memory) -> float:
        """`memory`: "dram", "l1", or the fraction of the bytes that live in L1 (a program op
        whose operands are placed apart): each share at its own rate."""
        share = {"dram": 0.0, "l1": 1.0}.get(memory, memory) if isinstance(memory, str) else float(memory)
        return nbytes * (share / self._bandwidth("l1") + (1.0 - share) / self._bandwidth("dram")) * 1e9

    def _roofline(self, kind: str, cycles: float, nbytes: float, flops: float, memory: str,
                  calibrated: bool) -> OpCost:
        compute_ns = cycles / self.arch.clock_hz / self.eff.compute * 1e9
        memory_ns = self._memory_ns(nbytes, memory)
        work = max(compute_ns, memory_ns)
        bound = "compute" if compute_ns >= memory_ns else "memory"
        if self.eff.overhead_ns > work:
            bound = "overhead"
        return OpCost(kind, self.eff.overhead_ns + work, flops, nbytes, bound, calibrated)

    def matmul(self, m: int, k: int, n: int, batch: int = 1, dtype: str = "bfloat16", b_dtype: str | None = None,
               out_dtype: str | None = None, fidelity: str | None = None, memory: str = "dram",
               b_batched: bool = True) -> OpCost:
        """[batch, m, k] x [(batch,) k, n]; `fidelity` None: ttnn's default for the dtypes."""
        b_dtype, out_dtype = b_dtype or dtype, out_dtype or dtype
        if fidelity is None:
            fidelity = default_matmul_config(self.arch.name, dtype, b_dtype, out_dtype)["math_fidelity"]
        if fidelity not in FIDELITY_PHASES:
            raise ValueError(f"unknown math fidelity {fidelity!r}; known: {', '.join(FIDELITY_PHASES)}")
        cycles = self._matmul_cycles(m, k, n, batch, fidelity)
        nbytes = (tensor_bytes((batch, m, k), dtype) + tensor_bytes((batch if b_batched else 1, k, n), b_dtype)
                  + tensor_bytes((batch, m, n), out_dtype))
        return self._roofline("matmul", cycles, nbytes, 2.0 * batch * m * k * n, memory, True)

    def _matmul_cycles(self, m: int, k: int, n: int, batch: int, fidelity: str) -> float:
        """Cycles of the busiest core: the output's tiles over the grid, K tiles each."""
        mt, kt, nt = _tiles(m), _tiles(k), _tiles(n)
        gx, gy = self.grid
        if mt * batch >= gy and nt >= gx:   # 2-D multicast: output blocks over rows x columns
            per_core = -(-mt * batch // gy) * -(-nt // gx)
        else:                                # 1-D: the output's tiles spread over the cores
            per_core = -(-(mt * batch * nt) // self.cores)
        return per_core * kt * MATMUL_CYCLES_PER_TILE * FIDELITY_PHASES[fidelity]

    def elementwise(self, name: str, inputs: list, out, memory: str = "dram") -> OpCost:
        """inputs / out: (shape, dtype, layout) triples."""
        tiles = tile_count(out[0])
        if name in TRANSCENDENTAL:
            per_tile, kind = SFPU_CYCLES["transcendental"], "sfpu"
        elif name in BINARY and len(inputs) > 1:
            per_tile, kind = FPU_BINARY_CYCLES, "eltwise"
        else:
            per_tile, kind = SFPU_CYCLES["simple"], "sfpu"
        return self._roofline(kind, -(-tiles // self.cores) * per_tile, _io_bytes(inputs, out),
                              float(math.prod(out[0] or (1,))), memory, False)

    def reduction(self, inputs: list, out, passes: int = 1, memory: str = "dram", kind: str = "reduce") -> OpCost:
        tiles = tile_count(inputs[0][0])
        return self._roofline(kind, -(-tiles // self.cores) * FPU_BINARY_CYCLES * passes, _io_bytes(inputs, out),
                              float(math.prod(inputs[0][0] or (1,))) * passes, memory, False)

    def data_movement(self, inputs: list, out, memory: str = "dram", kind: str = "data_movement") -> OpCost:
        return self._roofline(kind, 0.0, _io_bytes(inputs, out), 0.0, memory, False)

    def conv2d(self, batch: int, h: int, w: int, cin: int, cout: int, kernel: tuple, stride: tuple,
               padding: tuple, groups: int, dtype: str, out_hw: tuple[int, int] | None = None,
               fidelity: str | None = None, memory: str = "dram") -> OpCost:
        """As ttnn runs it: an implicit-GEMM matmul of [B*OH*OW, kh*kw*Cin/groups] x
        [kh*kw*Cin/groups, Cout] per group."""
        kh, kw = kernel
        if out_hw is None:
            p = tuple(padding) + (0, 0, 0, 0)
            pad_h, pad_w = (p[0] + p[1], p[2] + p[3]) if len(padding) == 4 else (2 * p[0], 2 * p[1])
            out_hw = ((h + pad_h - kh) // stride[0] + 1, (w + pad_w - kw) // stride[1] + 1)
        positions, taps = batch * out_hw[0] * out_hw[1], kh * kw * cin // groups
        if fidelity is None:
            fidelity = default_matmul_config(self.arch.name, dtype, dtype, dtype)["math_fidelity"]
        cycles = self._matmul_cycles(positions, taps, cout // groups, groups, fidelity)
        nbytes = (tensor_bytes((1, 1, batch * h * w, cin), dtype) + tensor_bytes((cout, taps), dtype)
                  + tensor_bytes((1, 1, positions, cout), dtype))
        return self._roofline("conv2d", cycles, nbytes, 2.0 * positions * taps * cout, memory, False)

    def attention(self, batch: int, heads: int, q_len: int, kv_len: int, head_dim: int, dtype: str,
                  kv_heads: int | None = None, memory: str = "dram") -> OpCost:
        """Fused scaled-dot-product attention: QK^T and PV matmuls at HiFi2, softmax on the way."""
        kv_heads = kv_heads or heads
        cycles = (self._matmul_cycles(q_len, head_dim, kv_len, batch * heads, "HiFi2")
                  + self._matmul_cycles(q_len, kv_len, head_dim, batch * heads, "HiFi2"))
        flops = 4.0 * batch * heads * q_len * kv_len * head_dim
        nbytes = (2 * tensor_bytes((batch, heads, q_len, head_dim), dtype)
                  + 2 * tensor_bytes((batch, kv_heads, kv_len, head_dim), dtype))
        return self._roofline("attention", cycles, nbytes, flops, memory, False)

    def collective(self, nbytes: float, chips: int, kind: str = "all_gather") -> OpCost:
        """Ring collective over Ethernet: (chips - 1) / chips of the data crosses each link."""
        moved = nbytes * max(chips - 1, 0) / max(chips, 1)
        ns = moved / self.arch.eth_bytes_per_s * 1e9
        return OpCost(kind, self.eff.overhead_ns + ns, 0.0, moved, "memory", False)

    # --- program ops --------------------------------------------------------------------
    def op(self, op: prog.Op, mesh_chips: int = 1, l1: frozenset = frozenset()) -> OpCost:
        """The estimate for one program op (host ops cost no device time); `l1`: ids of the
        program's values that live in L1 (program_cost.l1_values), priced at the NoC rate."""
        if op.fn.startswith("host."):
            return ZERO
        name = op.fn.split("[", 1)[0]
        short = name.rsplit(".", 1)[-1]
        ins = [(v.type.shape, v.type.dtype, v.type.layout) for v in op.operands()
               if isinstance(v.type, prog.TensorType)]
        out_t = op.result.type
        out = (out_t.shape, out_t.dtype, out_t.layout) if isinstance(out_t, prog.TensorType) else ((1,), "int32", prog.TILE)
        memory = _memory_of(op, l1)
        if short in ("matmul", "linear") and len(ins) >= 2:
            return self._program_matmul(op, ins, out, memory)
        if short == "conv2d":
            kw = op.kwargs
            positions = math.prod(out[0][:-1])
            oh_ow = (positions // kw["batch_size"], 1)   # the output positions are what counts
            return self.conv2d(kw["batch_size"], kw["input_height"], kw["input_width"], kw["in_channels"],
                               kw["out_channels"], tuple(kw["kernel_size"]), tuple(kw["stride"]),
                               tuple(kw["padding"]), kw.get("groups", 1), out[1], oh_ow,
                               fidelity=_fidelity_of(op), memory=memory)
        if "scaled_dot_product_attention" in name and len(ins) >= 3:
            (qs, dt, _), (ks, _, _) = ins[0], ins[1]
            return self.attention(qs[0], qs[1], qs[2], ks[2], qs[3], dt, kv_heads=ks[1], memory=memory)
        if name in COLLECTIVES or short in COLLECTIVES:
            return self.collective(tensor_bytes(*out), mesh_chips, short)
        if short in VIEWS and (not ins or _same_tiles(ins[0], out)):
            return dataclasses.replace(ZERO, kind="view")
        if short in NORMS:
            return self.reduction(ins, out, NORMS[short], memory, kind="norm")
        if short == "rotary_embedding":   # x*cos, rotate_half(x)*sin, their sum: three FPU passes
            return self.reduction(ins, out, 3, memory, kind="eltwise")
        if short in REDUCTIONS:
            return self.reduction(ins, out, 1, memory)
        if short in CREATION:
            return self.data_movement([], out, memory, kind="create")
        if short in TRANSCENDENTAL or short in BINARY or short in _UNARY_HINTS or short == "typecast":
            return self.elementwise(short, ins, out, memory)
        return self.data_movement(ins, out, memory)

    def _program_matmul(self, op: prog.Op, ins, out, memory: str) -> OpCost:
        (a_shape, a_dt, _), (b_shape, b_dt, _) = ins[0], ins[1]
        ta, tb = bool(op.kwargs.get("transpose_a")), bool(op.kwargs.get("transpose_b"))
        a = tuple(a_shape) if len(a_shape) > 1 else (1,) + tuple(a_shape)
        b = tuple(b_shape) if len(b_shape) > 1 else tuple(b_shape) + (1,)
        m, k = (a[-1], a[-2]) if ta else (a[-2], a[-1])
        n = b[-2] if tb else b[-1]
        batch = math.prod(out[0][:-2]) if len(out[0]) > 2 else 1
        b_batched = math.prod(b[:-2]) > 1
        return self.matmul(m, k, n, batch=batch, dtype=a_dt, b_dtype=b_dt, out_dtype=out[1],
                           fidelity=_fidelity_of(op), memory=memory, b_batched=b_batched)

    def peak_flops(self, fidelity: str = "LoFi") -> float:
        """The grid's ideal matmul rate at a fidelity (no efficiency applied)."""
        return self.cores * FPU_FLOPS_PER_CYCLE * self.arch.clock_hz / FIDELITY_PHASES[fidelity]


_UNARY_HINTS = frozenset({"relu", "neg", "abs", "sign", "floor", "ceil", "trunc", "round", "logical_not",
                          "bitwise_not", "isfinite", "isnan", "isinf", "square", "relu6", "leaky_relu",
                          "hardtanh", "clone", "copy", "bitcast", "identity"})


def _io_bytes(inputs: list, out) -> float:
    return sum(tensor_bytes(*t) for t in inputs) + tensor_bytes(*out)


def _same_tiles(a, b) -> bool:
    """A reshape keeping the tile rows (last dim and padded row count) is a metadata change."""
    (sa, _, la), (sb, _, lb) = a, b
    if la != lb:
        return False
    if la != prog.TILE:
        return True
    return tuple(sa[-1:]) == tuple(sb[-1:]) and tile_count(sa) == tile_count(sb)


def _memory_of(op: prog.Op, l1: frozenset = frozenset()):
    """The share of the op's bytes (operands read, result written) that live in L1."""
    tensors = [v for v in op.operands() + [op.result] if isinstance(v.type, prog.TensorType)]
    total = sum(tensor_bytes(v.type.shape, v.type.dtype, v.type.layout) for v in tensors)
    if not total:
        return "dram"
    mc = op.kwargs.get("memory_config")
    placed = set(l1) | ({op.result.id} if mc is not None and "L1" in str(mc) else set())
    return sum(tensor_bytes(v.type.shape, v.type.dtype, v.type.layout) for v in tensors if v.id in placed) / total


def _fidelity_of(op: prog.Op) -> str | None:
    config = op.kwargs.get("compute_kernel_config")
    if isinstance(config, prog.Construct):
        for key, value in config.kwargs:
            if key == "math_fidelity":
                return str(value).rsplit(".", 1)[-1]
    return None
