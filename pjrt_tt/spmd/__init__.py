"""SPMD: a global program with shardings -> one per-device ttnn program on a ttnn mesh.

    partition.py    XLA's own SPMD partitioner, driven on a private XLA:CPU client
    prepare.py      make the per-device module chip-independent; choose the R x C mesh
    collectives.py  lowering rules: collectives -> ttnn.all_gather / reduce_scatter /
                    all_reduce / mesh_partition with cluster_axis

Importing this package registers the collectives' rules in the lowering registry; the
partitioned module is then lowered like any other, with the mesh in the compile context.
See docs/spmd.md.
"""
from __future__ import annotations

from pjrt_tt.errors import Unimplemented
from pjrt_tt.ingest import parse
from pjrt_tt.spmd import collectives  # noqa: F401  (registers the SPMD lowering rules)


def partition_module(code: bytes, fmt: str, options, system_mesh: tuple[int, int],
                     strict_64bit: bool = False):
    """(per-device Parsed module, mesh shape, optimized program for the framework);
    `system_mesh`: the mesh of the system it will run on (the mesh chosen is a submesh of it
    when the program allows)."""
    from pjrt_tt.spmd.partition import annotate, partition
    from pjrt_tt.spmd.prepare import dense_replica_groups, prepare
    if options.num_replicas != 1:
        raise Unimplemented(f"programs with {options.num_replicas} replicas (pmap-style) are not "
                            f"supported; use jax.jit with shardings (partitions) instead")
    part = partition(code, fmt, options)
    # XLA's partitioner output is converted HLO
    parsed = parse(part.code, "mlir", from_hlo=True, strict_64bit=strict_64bit)
    # The framework reads shardings from the attributes of the module we hand back; the
    # per-device module carries them in a form jaxlib converts to HLO (the global one may
    # hold sdy.manual_computation, which its conversion drops, losing the shardings).
    shown = parse(part.code, "mlir", narrow=False)   # keeps the framework's 64-bit types
    annotate(shown.module, part)
    dense_replica_groups(shown.module)   # a form older frameworks (torch_xla 2.9) can read
    mesh_shape = prepare(parsed.module, part.num_partitions, system_mesh)
    return parsed, mesh_shape, (str(shown.module).encode(), "mlir")
