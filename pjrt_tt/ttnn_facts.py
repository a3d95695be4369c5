"""Measured facts about ttnn 0.81.1 that more than one layer needs.

Each was established by running real ttnn in mock-cluster mode (docs/ttnn-facts.md says
how); lowering, passes, runtime and the simulator all read them here, so a fact that
changes with a new ttnn release changes in one place.
"""
from __future__ import annotations

TILE_SIZE = 32   # TILE layout pads the last two dims to multiples of this

# Bytes one 32x32 tile takes in DRAM per data format (block floats carry one shared
# exponent per 16 elements; ROW_MAJOR storage is these / 1024 per element).
TILE_BYTES = {"float32": 4096, "int32": 4096, "uint32": 4096, "bfloat16": 2048, "uint16": 2048,
              "uint8": 1024, "bfloat8_b": 1088, "bfloat4_b": 576}

# Data-movement ops refusing small unsigned ints: reshape any uint8/uint16 ("Can only work
# with bfloat16/float32 or int32/uint32 tensors"); slice, concat, repeat, gather of uint8
# TILE (they re-tilize: "Can only tilize ... int32/uint32/uint16"); arange of uint8
# ("Unsupported dtype"). Lowering runs these on uint32 between typecasts; permute, full,
# where, pad (slice + concat) of uint16 are accepted as they are.
# ttnn.Shape holds uint32 dims (measured: [2**32 - 1] builds, [2**32] is refused by the
# bindings with a TypeError)
MAX_DIM = 2**32 - 1
NARROW_REFUSED = {"reshape": ("uint8", "uint16"), "slice": ("uint8",), "concat": ("uint8",),
                  "repeat": ("uint8",), "gather": ("uint8",), "arange": ("uint8",)}

# Binary / ternary ops broadcast like numpy within the last 6 dims only; dims before those
# must match ("Broadcast is supported up to rank 6"). Tensors themselves take any rank up to
# numpy's 32 (add, sum, reshape, permute, repeat, matmul measured at ranks 7-32).
BROADCAST_MAX_RANK = 6

# conv2d and the pools need an L1_SMALL region; open_mesh_device reserves this much.
L1_SMALL_SIZE = 32768

# Metal trace: capture needs a DRAM trace region reserved when the device opens
# (trace_region_size; capture fails without one). Its size is our choice, not a measured
# fact: tt-metal's own models reserve 10-90 MB; the commands of an op take a few KB.
TRACE_REGION_SIZE = 64 << 20
# Command queues every target opens (real ttnn accepts 1 or 2; 1 is its default). A second
# queue would let input uploads overlap programs, ordered by record_event / wait_for_event,
# but the runtime does not use one yet (docs/perf.md "Second command queue": an upload into
# memory a queued program still reads needs an event the runtime cannot place yet), and on
# a card its dispatch cores may come out of the worker grid (not checked without one). The
# sim opens the same count so that it refuses a queue the card would not have.
NUM_COMMAND_QUEUES = 1


def default_matmul_config(arch_name: str, a: str, b: str, out: str, user_grid: bool = False) -> dict:
    """ttnn's default compute config for matmul / linear of dtypes (by name: "bfloat16", ...)."""
    block = ("bfloat8_b", "bfloat4_b")
    fidelity = "LoFi" if user_grid or (a in block and b in block) else "HiFi2"
    if a == b == "float32":
        fidelity = "HiFi3" if arch_name.lower().startswith("wormhole") else "HiFi4"
    f32 = out == "float32"
    return {"math_fidelity": fidelity, "math_approx_mode": False, "fp32_dest_acc_en": f32, "packer_l1_acc": not f32}


# --- L1 placement (optimization level 2, passes/memory.py) ------------------------------------
# Measured in mock n150 (ttnn 0.81.1, device opened with l1_small_size=32768):
# ttnn.get_memory_view(L1) gives 64 banks (one per Tensix core) of 1,360,544 B: the 1464 KiB
# per core less 138,592 B for firmware (blackhole: 144,512 B, the sim's figure). ttnn places
# L1 buffers top-down and an op's circular buffers bottom-up; when they meet, the op fails
# ("Statically allocated dataflow buffers ... clash with L1 buffers", checked in mock).
# Circular buffers per core (graph capture, extract_peak_L1_memory_usage, DRAM operands,
# bf16): matmul 512x1024x1024 114,688 B; 1576x768x3072 405,504; 2048^3 655,360;
# 3072x1024x4096 851,968; 3072x4096x1024 1,146,880 (= 2 x (per_core_M + per_core_N) x
# in0_block_w + per_core_M x per_core_N tiles, in0_block_w = K tiles / 8 on the 8x8 grid);
# 32x14336x4096 bfp8 20,992; layer_norm 3072x1024 401,408; softmax 8x16x384x384 79,872;
# SDPA 8x16x384x64 59,392; add 3072x1024 12,288.
L1_FIRMWARE_BYTES = {"wormhole_b0": 138592, "blackhole": 144512}
# Share of the bank the plan may fill (activations + the op's circular buffers): the rest
# absorbs first-fit fragmentation and the estimate's error on circular buffers.
L1_SAFETY_FRACTION = 0.85
# Ops that take memory_config=L1 / DRAM for their result and accept L1-interleaved operands
# (each measured in mock with an L1 operand, default and explicit placements; by default a
# result lands where its first operand is, except matmul / linear / concat: DRAM).
L1_OPS = frozenset({
    "matmul", "linear", "add", "subtract", "multiply", "maximum", "minimum", "where",
    "exp", "relu", "neg", "rsqrt", "sqrt", "silu", "gelu", "tanh", "sigmoid", "reciprocal",
    "typecast", "softmax", "rms_norm", "layer_norm", "permute", "transpose", "slice", "concat",
    "pad", "to_layout", "sum", "max", "mean", "repeat", "expand", "clone",
    "transformer.scaled_dot_product_attention", "experimental.rotary_embedding"})


def l1_bank_bytes(arch) -> int:
    """One core's L1 bank for buffers: its SRAM less firmware and the L1_SMALL region every
    target opens with (the sim leaves L1_SMALL out of the bank; ttnn's view does not)."""
    return arch.l1_bytes - L1_FIRMWARE_BYTES.get(arch.name, 0) - L1_SMALL_SIZE
# Operands real ttnn refuses in L1 (measured in mock): op -> keyword arguments.
L1_REFUSED_OPERANDS = {"transformer.scaled_dot_product_attention": ("attn_mask",)}
