"""pjrt-tt `sim` target: a functional simulator of the ttnn ops the lowering uses.

Import it in place of ttnn:  `from pjrt_tt.targets import sim as ttnn`.
Same names and argument conventions as real ttnn 0.81.1; results have the same shape,
padded_shape, dtype and layout (checked against real ttnn in mock-cluster mode by
tests/test_sim_parity.py), and values computed with numpy / ml_dtypes on the host.
Each simulated chip has DRAM and L1 bank allocators sized like the real chips of the system
chosen by `configure(name)` or PJRT_TT_SYSTEM (default n150; sizes from pjrt_tt.systems, bank
geometry measured with ttnn), so a program that does not fit the card fails here with ttnn's
out-of-memory error.

Files: tensor.py (DataType, Layout, Shape, MemoryConfig, Tensor, host conversions),
device.py (chips, MeshDevice, allocators), ops.py (the ops, table-driven), fpu.py (matmul
numerics), ops_indexing.py, ops_nn.py, ccl.py (mesh tensors, collectives), exchange.py (collective data between the
processes that share a mesh: MPI). Imports run one
way: tensor.py imports no other sim module (a tensor asks the device it is placed on to
allocate and measure its buffers); the rest import tensor.py. The one circle: the methods
ttnn's Tensor has (reshape, to(layout), + - * / @) call ops.py, which makes Tensors; tensor.py
reaches ops.py only when such a method runs (tensor._op).

Sim-only names: `configure`, `current_system`, `sim_memory_stats(mesh, chip_index)`,
`MeshDevice.sim_memory_stats(chip_index)`, `Tensor.sim_on_device_size()`, `sim_reset()`.

Numerics. Tensors hold their values as stored; every op reads those, computes in float32
(integers in their own type, wrapping), and rounds its result to the output dtype: bf16
round-to-nearest-even (NaN -> 0x7FC0 as ttnn), bfloat8_b / bfloat4_b packed exactly like
ttnn's host packer (bit-exact, tests/test_sim.py). A Python scalar combined with a bf16 or
block-float tensor is first rounded to bf16, as ttnn packs it for the kernel.

Deliberate differences from real ttnn 0.81.1:
- Results are exact float32 math rounded once. The card's FPU/SFPU differ in the last bits:
  default (fast) bf16 add/mul may be 1 ULP off, exp/log/tanh/gelu/erf/sigmoid/recip/sqrt
  use approximations. matmul / linear DO model the card (fpu.py, docs/numerics.md): operand
  formats in the source registers, math fidelity phases and Dst accumulation, under ttnn's
  default compute kernel config or the one passed. mean = float32 sum x
  float32 (1/N) (the device may pack 1/N as bf16).
- Float -> int conversions (constructor, typecast, to_dtype) truncate toward zero like
  ttnn's host conversion; values outside the target's range saturate for uint16 / uint8
  (ttnn's host result there depends on the element's position in a SIMD block), and device
  typecast rounding is unverified (no card).
- to_numpy(): bfloat16 gives an ml_dtypes.bfloat16 array (ttnn returns a useless object
  array); bfloat8_b / bfloat4_b give float32 (as ttnn).
- The sim raises where real ttnn aborts the process or returns garbage: float64 / int64 /
  complex input arrays (ttnn converts f64 only with an explicit data_type, aborts without;
  the sim always refuses), ops on host tensors (exp, concat abort in ttnn), reading a
  deallocated tensor (segfault in ttnn), permute with repeated dims, slice ends past the dim,
  pad of a host TILE tensor (ttnn silently returns it unpadded). Error texts follow ttnn's
  ("TT_FATAL @ ...: <condition>\ninfo:\n<ttnn's message>") but name pjrt_tt/targets/sim.
- Memory: DRAM / L1 buffers are interleaved over all banks of their type, each bank
  reserving ceil(pages / banks) aligned pages at the same address (like tt-metal's lockstep
  allocator), first fit; `bytes_in_use` counts those reservations (a 1-tile tensor reserves a
  tile in each of the 12 Wormhole DRAM banks); `sim_buffer_bytes_in_use` the buffers' own
  sizes. Addresses start at 0 in each bank (ttnn: DRAM from 1048640 bottom-up, L1 top-down).
  Program-internal scratch (circular buffers, kernels) is not modelled. Host memory: floats
  are kept as float32 (bf16 tensors take twice their device size on the host).
- Multi-chip: a tensor placed on a mesh is replicated to every chip of it; ccl.py adds
  MeshTensor (one shard per chip), MeshModule (per-chip dispatch) and all_gather,
  reduce_scatter, all_reduce, mesh_partition (what pjrt_tt.spmd emits);
  `MeshDevice.create_submeshes(MeshShape(1, 1))` gives per-chip devices. Mesh mappers
  (ShardTensorToMesh...) and mesh composers are not simulated (the runtime builds mesh
  tensors from per-chip tensors); sharded memory configs are refused.
"""
from .tensor import (  # noqa: F401
    TILE_SIZE, TILE_HEIGHT, TILE_WIDTH, BufferType, DataType, Layout, MemoryConfig, Shape,
    StorageType, Tensor, TensorMemoryLayout, DRAM_MEMORY_CONFIG, L1_MEMORY_CONFIG,
    bfloat16, bfloat8_b, bfloat4_b, float32, int32, uint8, uint16, uint32,
    ROW_MAJOR_LAYOUT, TILE_LAYOUT,
)
from .device import (  # noqa: F401
    Arch, CoreCoord, Device, MemoryView, MeshDevice, MeshShape, GetNumAvailableDevices,
    GetNumPCIeDevices, close_device, close_mesh_device, configure, current_system, get_device_ids,
    get_memory_view, get_num_devices, open_device, open_mesh_device, sim_memory_stats, sim_reset,
    synchronize_device, DEFAULT_L1_SMALL_SIZE, DEFAULT_TRACE_REGION_SIZE, DEFAULT_WORKER_L1_SIZE,
)
from .ops import *  # noqa: F401,F403
from .ops import _UNARY, _BINARY, _ALIASES  # noqa: F401
from .fpu import (DeviceComputeKernelConfig, MathFidelity, WormholeComputeKernelConfig,  # noqa: F401
                  init_device_compute_kernel_config)
from .ops_indexing import cumprod, cumsum, embedding, gather, prod, scatter, scatter_add, sort, topk  # noqa: F401
from .ops import GeluVariant, erfc, gelu  # noqa: F401
from .ops_nn import (Conv2dConfig, UnaryOpType, UnaryWithParam, conv2d, experimental, layer_norm,  # noqa: F401
                     rms_norm, softmax, transformer)
from .ccl import (  # noqa: F401
    MeshModule, MeshTensor, all_gather, all_reduce, combine_device_tensors, get_device_tensors,
    mesh_partition, reduce_scatter, sim_reset_ccl_stats,
)
from .exchange import LocalExchange, MpiExchange, sim_reset_exchange_stats  # noqa: F401

from .trace import (  # noqa: F401
    MeshEvent, MeshTraceId, begin_trace_capture, end_trace_capture, execute_trace, record_event,
    release_trace, wait_for_event,
)
from . import trace as _trace

# Every op the executor can call records itself into an open trace capture (trace.py).
_NOT_OPS = {"deallocate", "from_device", "to_torch", "from_torch", "is_tensor_storage_on_device",
            "synchronize_device", "copy", "copy_host_to_device_tensor", "combine_device_tensors",
            "get_device_tensors"}
for _name, _fn in list(globals().items()):
    if (callable(_fn) and not isinstance(_fn, type) and not _name.startswith("_") and _name not in _NOT_OPS
            and getattr(_fn, "__module__", "").startswith(__name__ + ".ops")):
        globals()[_name] = _trace.recorded(_fn)

DEVICE_STORAGE_TYPE = StorageType.DEVICE
TARGET_NAME = "sim"
