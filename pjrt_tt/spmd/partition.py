"""Global SPMD module -> per-device StableHLO, by XLA's own SPMD partitioner.

We do not write a partitioner: XLA's (GSPMD, or Shardy then GSPMD's collective
lowering) is driven from Python. The module is compiled on a private XLA:CPU client with
R x P devices, with `xla_dump` of the `spmd-partitioning` pass as HloProto; the dump after
that pass is the per-device program (local shapes, explicit all_reduce / all_gather /
all_to_all / collective_permute with global device ids, partition_id-driven
dynamic_slice). It is converted back to StableHLO with `_jax.mlir.hlo_to_stablehlo`.
The CPU code generation that follows is wasted work (0.04 s for an MLP, ~1.7 s for 24
transformer blocks). Facts in ../../docs/spmd.md and DESIGN.md §4. This relies on the
dump's file names, the same in jaxlib 0.7.1 and 0.12 (both tested; tests/test_spmd.py guards it).
In 0.12 the collectives come back with replica groups as axes of an sdy mesh
(prepare.replica_groups reads both forms).
"""
from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import tempfile
import threading

import numpy as np

from pjrt_tt.errors import InvalidArgument

_lock = threading.Lock()
_cpu_clients: dict[int, object] = {}


@dataclasses.dataclass
class Partitioned:
    code: bytes                      # per-device StableHLO (MLIR bytecode)
    num_partitions: int
    num_replicas: int
    param_shardings: list[str]       # HloSharding strings, one per parameter
    output_shardings: list[str]      # one per result


def _cpu_client(n: int):
    from jax._src.lib import xla_client
    with _lock:
        if n not in _cpu_clients:
            _cpu_clients[n] = xla_client.make_cpu_client(num_devices=n)
        return _cpu_clients[n]


def _proto_field(blob: bytes, field: int) -> bytes:
    """The bytes of length-delimited `field` of a serialized protobuf message."""
    def varint(i):
        value = shift = 0
        while True:
            b = blob[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value, i
    i = 0
    while i < len(blob):
        tag, i = varint(i)
        wire = tag & 7
        if wire == 0:
            _, i = varint(i)
            continue
        if wire != 2:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        n, i = varint(i)
        if tag >> 3 == field:
            return blob[i:i + n]
        i += n
    raise ValueError(f"protobuf field {field} not found")


def partition(code: bytes, fmt: str, options) -> Partitioned:
    """Partition the global program for options.num_replicas x options.num_partitions."""
    from jax._src.lib import _jax, xla_client
    replicas, partitions = options.num_replicas, options.num_partitions
    n = replicas * partitions
    if fmt == "hlo":
        code = _jax.mlir.hlo_to_stablehlo(code)
    build = options.executable_build_options
    build.device_assignment = _jax.DeviceAssignment.create(np.arange(n).reshape(replicas, partitions))
    dump = tempfile.mkdtemp(prefix="pjrt_tt_spmd_")
    try:
        debug = build.debug_options
        debug.xla_dump_to = dump
        debug.xla_dump_hlo_pass_re = "^spmd-partitioning$"
        debug.xla_dump_hlo_as_proto = True
        debug.xla_backend_optimization_level = 0      # the CPU code is thrown away: make it cheap
        debug.xla_llvm_disable_expensive_passes = True
        client = _cpu_client(n)
        ours = options.env_option_overrides   # XLA:CPU refuses pjrt-tt's tt_* options ("No such compile option")
        options.env_option_overrides = [(k, v) for k, v in ours if not k.startswith("tt_")]
        try:
            exe = client.compile_and_load(code, _jax.DeviceList(tuple(client.devices()[:n])), options)
        except Exception as e:
            raise InvalidArgument(f"XLA's SPMD partitioner rejected the program: {e}") from e
        finally:
            options.env_option_overrides = ours
        found = sorted(glob.glob(os.path.join(dump, "*after_spmd-partitioning*.hlo.pb")))
        if not found:
            raise InvalidArgument("XLA's SPMD partitioner left no partitioned module (pjrt-tt reads "
                                  "its spmd-partitioning dump; is jaxlib 0.7.1 or 0.12 installed?)")
        with open(found[-1], "rb") as f:
            module_proto = _proto_field(f.read(), 1)  # HloProto.hlo_module
        per_device = _jax.mlir.hlo_to_stablehlo(module_proto)
        text = lambda s: str(xla_client.HloSharding.from_proto(s))  # noqa: E731
        return Partitioned(per_device, partitions, replicas,
                           [text(s) for s in exe.get_parameter_shardings() or []],
                           [text(s) for s in exe.get_output_shardings() or []])
    finally:
        shutil.rmtree(dump, ignore_errors=True)


def annotate(module, part: Partitioned) -> None:
    """Set the module attributes frameworks read output / parameter shardings from
    (`mhlo.spmd_output_sharding`, `mhlo.spmd_parameters_shardings`, DESIGN.md §4)."""
    from jaxlib.mlir import ir
    attrs = module.operation.attributes
    with module.context:
        outs = part.output_shardings
        out = outs[0] if len(outs) == 1 else "{" + ", ".join(outs) + "}"
        attrs["mhlo.spmd_output_sharding"] = ir.StringAttr.get(out)
        attrs["mhlo.spmd_parameters_shardings"] = ir.ArrayAttr.get(
            [ir.StringAttr.get(s) for s in part.param_shardings])
        attrs["mhlo.num_partitions"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(32), part.num_partitions)
        attrs["mhlo.num_replicas"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(32), part.num_replicas)
