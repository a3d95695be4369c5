"""The Tensix matrix unit (FPU) as ttnn.matmul / ttnn.linear use it: compute kernel configs,
ttnn's default config per input dtype, and the numerics of one matmul.

Facts used (docs/numerics.md has the sources and a measured table):
- ttnn.matmul unpacks input 0 (`a`) into SrcB and input 1 (`b`) into SrcA; MVMUL computes
  Dst += SrcB @ SrcA on 8x16 x 16x16 blocks, summing 16 products per output element
  (tt-metal LLK `llk_unpack_AB_matmul`: "In0 -> srcB, In1 -> srcA"; tt-isa-documentation
  WormholeB0 MVMUL.md).
- Src registers hold 19-bit data: bf16 / bfloat8_b / bfloat4_b arrive losslessly as BF16; a
  float32 tensor arrives as TF32 (10 mantissa bits, low 13 bits dropped) when
  fp32_dest_acc_en is set, else as BF16 (tt-metal jit_build genfiles: the "conditional" unpack
  format is Tf32 only with fp32_dest_acc_en; SrcASrcB.md: "throwing away the low 13 bits").
- The multipliers are 5 x 7 bits: each fidelity phase multiplies a slice of SrcA (phase bit 0:
  implicit 1 + top 4 mantissa bits, or the next 5 bits) by a slice of SrcB (phase bit 1:
  implicit 1 + top 6 bits, or the next 4 bits). LoFi runs phase 0, HiFi2 phases 0-1, HiFi3
  0-2, HiFi4 0-3 (tt-metal tech_reports/matrix_engine; SrcASrcB.md "Fidelity phases").
- Dst accumulates in FP32 with fp32_dest_acc_en, else in BF16, rounded after every MVMUL
  (MVMUL.md functional model: RoundToBF16 on each write-back).
- ttnn 0.81.1's defaults (measured with ttnn.graph capture in mock mode): HiFi2, except LoFi
  when both inputs are block-float or a core_grid / program_config is given, and HiFi3 on
  Wormhole / HiFi4 on Blackhole when both inputs are float32; fp32_dest_acc_en iff the output
  dtype is float32; packer_l1_acc otherwise; math_approx_mode False. A config passed by the
  caller is used exactly as given (unset fields keep the struct defaults).
"""
from __future__ import annotations


import numpy as np

from pjrt_tt.ttnn_facts import default_matmul_config

from .tensor import DataType, TTEnum, fatal, round_bf16


class MathFidelity(TTEnum):
    LoFi = 0
    HiFi2 = 2
    HiFi3 = 3
    HiFi4 = 4
    Invalid = 255



_PHASES = {MathFidelity.LoFi: 1, MathFidelity.HiFi2: 2, MathFidelity.HiFi3: 3, MathFidelity.HiFi4: 4}


class WormholeComputeKernelConfig:
    """ttnn.WormholeComputeKernelConfig (Blackhole uses the same struct)."""

    def __init__(self, *, math_fidelity: MathFidelity = MathFidelity.Invalid, math_approx_mode: bool = True,
                 fp32_dest_acc_en: bool = False, packer_l1_acc: bool = False, dst_full_sync_en: bool = False,
                 throttle_level=None):
        if not isinstance(math_fidelity, MathFidelity):
            raise TypeError(f"math_fidelity must be a ttnn.MathFidelity, got {math_fidelity!r}")
        self.math_fidelity, self.math_approx_mode = math_fidelity, bool(math_approx_mode)
        self.fp32_dest_acc_en, self.packer_l1_acc = bool(fp32_dest_acc_en), bool(packer_l1_acc)
        self.dst_full_sync_en, self.throttle_level = bool(dst_full_sync_en), throttle_level

    def __repr__(self) -> str:
        return (f"WormholeComputeKernelConfig(math_fidelity={self.math_fidelity}, math_approx_mode="
                f"{self.math_approx_mode}, fp32_dest_acc_en={self.fp32_dest_acc_en}, "
                f"packer_l1_acc={self.packer_l1_acc})")


DeviceComputeKernelConfig = WormholeComputeKernelConfig


def init_device_compute_kernel_config(arch, device_kernel_config=None, *, math_fidelity=MathFidelity.LoFi,
                                      math_approx_mode=True, fp32_dest_acc_en=False, packer_l1_acc=False,
                                      dst_full_sync_en=False, throttle_level=None):
    if device_kernel_config is not None:
        return device_kernel_config
    return WormholeComputeKernelConfig(math_fidelity=math_fidelity, math_approx_mode=math_approx_mode,
                                       fp32_dest_acc_en=fp32_dest_acc_en, packer_l1_acc=packer_l1_acc,
                                       dst_full_sync_en=dst_full_sync_en, throttle_level=throttle_level)


def matmul_config(arch_name: str, a: DataType, b: DataType, out: DataType, config=None,
                  user_grid: bool = False) -> WormholeComputeKernelConfig:
    """The config ttnn.matmul / linear run with: `config` as given, else ttnn's defaults."""
    if config is not None:
        return config
    d = default_matmul_config(arch_name, a.name.lower(), b.name.lower(), out.name.lower(), user_grid)
    return WormholeComputeKernelConfig(**{**d, "math_fidelity": MathFidelity[d["math_fidelity"]]})


def _keep(x: np.ndarray, bits: int) -> np.ndarray:
    """x with only the implicit 1 and the top `bits` mantissa bits kept (truncated)."""
    mask = np.uint32((0xFFFFFFFF << (23 - bits)) & 0xFFFFFFFF)
    return (np.ascontiguousarray(x, np.float32).view(np.uint32) & mask).view(np.float32)


def _src(x: np.ndarray, dtype: DataType, fp32_acc: bool) -> np.ndarray:
    """A tensor's values as the unpacker writes them into SrcA / SrcB."""
    if dtype == DataType.FLOAT32:
        return _keep(x, 10) if fp32_acc else _keep(x, 7)  # TF32 / BF16 (low bits dropped)
    return np.asarray(x, np.float32)  # bf16 and block floats are exact in BF16


def _slices(x: np.ndarray, top: int, nxt: int) -> tuple[np.ndarray, np.ndarray]:
    """(implicit 1 + top `top` mantissa bits, the next `nxt` bits) of x: what two phases read."""
    hi = _keep(x, top)
    return hi, _keep(x, top + nxt) - hi


def fpu_matmul(va: np.ndarray, vb: np.ndarray, a_dtype: DataType, b_dtype: DataType, cfg) -> np.ndarray:
    """va @ vb (..., M, K) x (..., K, N) as the matrix unit computes it under `cfg` (float32 out,
    before packing to the output dtype)."""
    if cfg.math_fidelity not in _PHASES:
        raise fatal("math_fidelity is valid", f"sim: matmul with math_fidelity={cfg.math_fidelity}: what the "
                                              f"card does is unknown; pass LoFi, HiFi2, HiFi3 or HiFi4")
    if va.ndim == 1 or vb.ndim == 1:  # numpy's rank-1 rules: promote, multiply, drop the unit dim
        out = fpu_matmul(va[None] if va.ndim == 1 else va, vb[:, None] if vb.ndim == 1 else vb,
                         a_dtype, b_dtype, cfg)
        if vb.ndim == 1:
            out = out[..., 0]
        return out[..., 0, :] if va.ndim == 1 and vb.ndim > 1 else out[..., 0] if va.ndim == 1 else out
    fp32 = cfg.fp32_dest_acc_en
    b_hi, b_lo = _slices(_src(vb, b_dtype, fp32), 4, 5)   # b -> SrcA: 5-bit multiplier side
    a_hi, a_lo = _slices(_src(va, a_dtype, fp32), 6, 4)   # a -> SrcB: 7-bit multiplier side
    n = _PHASES[cfg.math_fidelity]
    pairs = [(a_hi, b_hi), (a_hi, b_lo), (a_lo, b_hi), (a_lo, b_lo)][:n]   # phase p: SrcA p&1, SrcB p&2
    if fp32:  # FP32 Dst: the phase products summed in float32
        if n == 2:
            return np.matmul(a_hi, b_hi + b_lo)
        if n == 4:
            return np.matmul(a_hi + a_lo, b_hi + b_lo)
        out = np.matmul(*pairs[0])
        for a, b in pairs[1:]:
            out = out + np.matmul(a, b)
        return out
    # BF16 Dst: every MVMUL (16 products of one phase) is added to Dst and rounded to bf16.
    k = va.shape[-1]
    out = None
    for c in range(0, k, 16):
        for a, b in pairs:
            part = np.matmul(a[..., c:c + 16], b[..., c:c + 16, :])
            out = round_bf16(part if out is None else out + part)
    return out
