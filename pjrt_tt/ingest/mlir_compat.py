"""The places where jaxlib's MLIR Python bindings differ between the JAX releases pjrt-tt
supports (docs/versions.md), behind one small interface. Every other module reads the
IR through these helpers or through forms both bindings share; none checks a version.

Measured differences (jaxlib 0.7.1 vs 0.12.0.1):
- `ir.RankedTensorType.isinstance(t)` and the other `Type/Attribute.isinstance` static
  methods are gone in 0.12. Both bindings return downcast types and attributes (a tensor
  type reads as `ir.RankedTensorType`, a string attribute as `ir.StringAttr`), so plain
  `isinstance(t, ir.RankedTensorType)` is the form that works in both: use it.
- `value.owner` and `use.owner` are an `ir.Operation` in 0.7.1 but the op's `OpView`
  (e.g. `stablehlo.ConstantOp`, which is no `ir.Operation`) in 0.12: `defining_op` and
  `users` give the `ir.Operation` in both.
- Iterating `op.attributes` yields `NamedAttribute`s in 0.7.1 and names (str) in 0.12:
  `attribute_values` gives the attributes in both, reading no name.
"""
from __future__ import annotations

from jaxlib.mlir import ir


def as_operation(op) -> ir.Operation:
    """The `ir.Operation` behind an op or its OpView."""
    return op if isinstance(op, ir.Operation) else op.operation


def defining_op(value: ir.Value) -> ir.Operation | None:
    """The op that defines `value`, or None for a block argument."""
    owner = value.owner
    if isinstance(owner, ir.Block):
        return None
    return as_operation(owner)


def block_argument(value: ir.Value, block: ir.Block) -> int | None:
    """The position of `value` among `block`'s arguments, or None when it is not one of them
    (0.7.1's bindings hand operands out as plain ir.Value, 0.12's as ir.BlockArgument)."""
    if isinstance(value, ir.BlockArgument):
        arg = value
    elif hasattr(ir.BlockArgument, "isinstance") and ir.BlockArgument.isinstance(value):
        arg = ir.BlockArgument(value)
    else:
        return None
    return arg.arg_number if arg.owner == block else None


def users(value: ir.Value) -> list[ir.Operation]:
    """The ops that use `value`, once per use, in use-list order."""
    return [as_operation(use.owner) for use in value.uses]


def create(name: str, result: ir.Type, operands: list, attrs: dict | None = None) -> ir.Value:
    """A new op `name` with one result, at the current insertion point (ingest's rewrites
    build their ops generically: the dialects' Python op classes differ between releases)."""
    return ir.Operation.create(name, results=[result], operands=list(operands), attributes=attrs or {}).results[0]


def named_attributes(op) -> dict:
    """op's attributes by name, to copy onto a new op (the module has been checked to hold
    UTF-8 names only: ingest.check_module)."""
    attrs = as_operation(op).attributes
    return {attrs[i].name: attrs[i].attr for i in range(len(attrs))}


def called_from(op, call_site: ir.Location) -> None:
    """An op inlined from a function jax outlined gets the call's frames: jaxlib 0.12 names
    such ops without a source (loc("cumsum")) and lets a location be set; 0.7.1 gives them
    the caller's frames already (and has no setter)."""
    op = as_operation(op)
    try:
        op.location = ir.Location.callsite(op.location, [call_site])
    except AttributeError:
        pass


def attribute_values(op) -> list[ir.Attribute]:
    """An op's attribute values, without their names: reading a name that is not UTF-8
    (a corrupt program's) aborts the process in both bindings, and iterating
    `op.attributes` in 0.12 reads every name."""
    attrs = as_operation(op).attributes
    return [attrs[i].attr for i in range(len(attrs))]


def mesh_axes_replica_groups(attr: ir.Attribute) -> tuple[str, list[tuple[str, str | None]]] | None:
    """A collective's `replica_groups` given as mesh axes (XLA's partitioner in jaxlib 0.12
    emits `#stablehlo.replica_group_mesh_axes<mesh = @m, axes = [...]>`; 0.7.1 only dense
    groups): (the sdy mesh's name, [(axis name, sub-axis text or None)]). None for the
    dense form."""
    from jaxlib.mlir.dialects import stablehlo
    cls = getattr(stablehlo, "ReplicaGroupMeshAxesAttr", None)   # absent from 0.7.1's bindings
    if cls is None or not cls.isinstance(attr):
        return None
    attr = cls(attr)
    axes = []
    for ref in attr.axes:
        ref = stablehlo.AxisRefAttr(ref)
        sub = ref.sub_axis_info
        axes.append((ref.name, None if sub is None else str(sub)))
    mesh = attr.mesh
    return (mesh.value if hasattr(mesh, "value") else str(mesh).lstrip("@")), axes
