"""SPMD: a global program with shardings -> one per-device ttnn program on a ttnn mesh.

    partition.py    XLA's own SPMD partitioner, driven on a private XLA:CPU client
    prepare.py      make the per-device module chip-independent; choose the R x C mesh
    collectives.py  lowering rules: collectives -> ttnn.all_gather / reduce_scatter /
                    all_reduce / mesh_partition with cluster_axis

See docs/spmd.md.
"""
from __future__ import annotations

import atexit
import sys

import numpy as np

from pjrt_tt.ingest import parse
from pjrt_tt.errors import Unimplemented


def partition_module(code: bytes, fmt: str, options):
    """(per-device Parsed module, mesh shape, optimized program for the framework)."""
    from pjrt_tt.spmd.partition import annotate, partition
    from pjrt_tt.spmd.prepare import prepare
    if options.num_replicas != 1:
        raise Unimplemented(f"programs with {options.num_replicas} replicas (pmap-style) are not "
                            f"supported; use jax.jit with shardings (partitions) instead")
    part = partition(code, fmt, options)
    parsed = parse(part.code, "mlir", from_hlo=True)  # XLA's partitioner output is converted HLO
    # The framework reads shardings from the attributes of the module we hand back; the
    # per-device module carries them in a form jaxlib converts to HLO (the global one may
    # hold sdy.manual_computation, which its conversion drops, losing the shardings).
    shown = parse(part.code, "mlir")
    annotate(shown.module, part)
    mesh_shape = prepare(parsed.module, part.num_partitions)
    return parsed, mesh_shape, (str(shown.module).encode(), "mlir")


def lower_on_mesh(parsed, mesh_shape):
    from pjrt_tt.lower import lower_module
    from pjrt_tt.spmd.collectives import MESH
    token = MESH.set(tuple(mesh_shape))
    try:
        return lower_module(parsed)
    finally:
        MESH.reset(token)


_mock: dict = {}


def _drop_mock() -> None:
    """Submeshes first, then the target: before mock.py closes the device at exit."""
    for key in [k for k in _mock if k != "target"]:
        del _mock[key]
    _mock.clear()


def validate_on_mock(settings, program, mesh_shape) -> None:
    """Run the per-device program once on real ttnn (mock) over a submesh of `mesh_shape`
    (zeros in): real ttnn must accept every op, the collectives included, and return the
    shapes / dtypes / layouts the program expects."""
    if not settings.check_with_mock or (settings.target or "").strip().lower() == "mock":
        return   # (on the mock target the program runs on real ttnn anyway)
    from pjrt_tt import dtypes, targets
    from pjrt_tt.targets.executor import BoundProgram
    _, system = targets.choose(settings.target or "sim", settings.system)
    if "target" not in _mock:
        _mock["target"] = targets.open_target("mock", system)
        atexit.register(_drop_mock)   # runs before mock.py's own exit hook (registered earlier)
    target = _mock["target"]
    ttnn = target.ttnn
    R, C = mesh_shape
    rows, cols = system.mesh_shape
    if rows % R == 0 and cols % C == 0:   # a submesh even for the full shape: ttnn aborts at
        # exit when programs ran on a parent mesh that also has submeshes
        key = ("sub", R, C)
        if key not in _mock:
            _mock[key] = target.mesh.create_submeshes(ttnn.MeshShape(R, C))[0]
        mesh = _mock[key]
    else:
        print(f"pjrt-tt: mock check skipped: a {R}x{C} mesh is not a submesh of the "
              f"{system.name} mesh {rows}x{cols}", file=sys.stderr)
        return
    inputs = [target.upload(np.zeros(v.type.shape, dtypes.DEVICE_NUMPY[v.type.dtype]), v.type, mesh)
              for v in program.inputs]
    consts = [target.upload(c.data, c.value.type, mesh) for c in program.constants]
    outputs = BoundProgram(program, ttnn, mesh).run(inputs, consts)
    for t in inputs + consts + outputs:
        target.free(t)
