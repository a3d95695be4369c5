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
