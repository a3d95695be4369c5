"""Program bytes from the framework -> a StableHLO module, through jaxlib's MLIR bindings.

JAX sends a StableHLO portable artifact (VHLO bytecode, format "mlir"); torch_xla sends
an HloModuleProto (format "hlo") unless XLA_STABLEHLO_COMPILE=1.
"""
from __future__ import annotations

import contextlib
import re

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir._mlir_libs import _jax_mlir_ext
from jaxlib.mlir.dialects import chlo, mhlo, sdy, stablehlo

from pjrt_tt import dtypes, host_callbacks
from pjrt_tt.errors import InvalidArgument, Unimplemented, UnsupportedDtype
from pjrt_tt.ingest.mlir_compat import attribute_values, named_attributes
from pjrt_tt.ingest.attributes import (  # noqa: F401 (ingest's API)
    constant_array, custom_call_target, describe_and_site, describe_location, source_site, splat_value)
from pjrt_tt.ingest.narrow64 import Boundary, narrow_64bit, reprove
from pjrt_tt.ingest.reductions import split_reductions, write_out_reduce_windows
from pjrt_tt.ingest.rng import expand_rng_bit_generators
from pjrt_tt.ingest.scatters import write_out_scatters
from pjrt_tt.ingest.tokens import tokens_as_empty_arrays
from pjrt_tt.ingest.total_order import total_order_compares


def new_context() -> ir.Context:
    """A context with the dialects jax emits (as jax's own make_ir_context registers them)."""
    registry = ir.DialectRegistry()
    _jax_mlir_ext.register_dialects(registry)
    ctx = ir.Context()
    ctx.append_dialect_registry(registry)
    ctx.load_all_available_dialects()
    sdy.register_dialect(ctx)
    mhlo.register_mhlo_dialect(ctx)
    chlo.register_dialect(ctx)
    return ctx


class Parsed:
    """A StableHLO module together with the context that owns it, and what the framework
    sees of its @main (the 64-bit types narrowing rewrote, narrow64.Boundary)."""

    def __init__(self, ctx: ir.Context, module: ir.Module, boundary: Boundary | None = None):
        self.ctx, self.module, self.boundary = ctx, module, boundary

    def text(self) -> str:
        return self.module.operation.get_asm(enable_debug_info=True, large_elements_limit=16)


MLIR_BYTECODE_MAGIC = b"ML\xefR"
# numpy arrays (the host side of every ttnn tensor) have at most 32 dims; ttnn 0.81 takes
# all of them (add, sum, reshape, permute, matmul... measured on mock at ranks 7-32).
MAX_RANK = 32


def parse(code: bytes, fmt: str, from_hlo: bool = False, *, narrow: bool = True,
          strict_64bit: bool = False) -> Parsed:
    """Program bytes -> a checked StableHLO module whose 64-bit types are narrowed to the
    32-bit types carrying them on the chip (narrow64.py; `narrow=False`: left as they are, for
    a module handed back to the framework; `strict_64bit`: refused instead). `from_hlo`: the
    StableHLO was converted from HLO (e.g. XLA's partitioner output), so it gets the same
    clean-ups as an HLO program.

    Malformed bytes are refused here, before any other layer reads the module: jaxlib's
    bindings abort the process (not raise) when a diagnostic, a name or a location holds
    bytes that are not UTF-8, and when the attribute of a complex constant is read."""
    ctx = new_context()
    from_hlo = from_hlo or fmt == "hlo"
    if fmt == "hlo":
        code = _hlo_to_stablehlo(code)
    elif fmt != "mlir":
        raise InvalidArgument(f"pjrt-tt accepts programs in format 'mlir' or 'hlo', not {fmt!r}")
    module = _read_module(ctx, bytes(code))
    boundary = None
    try:
        check_module(module)
        if from_hlo:
            _as_jax_emits(module)
        ops = []   # (collected, not acted on, inside the walk: nothing may raise there)
        module.operation.walk(lambda op: ops.append(op) or ir.WalkResult.ADVANCE)
        _note_callback_types(module, ops)
        tokens_as_empty_arrays(module, ops)
        if narrow:   # (the module handed back to the framework stays as it came)
            split_reductions(module)
            write_out_reduce_windows(module)
            write_out_scatters(module)
            expand_rng_bit_generators(module)
            total_order_compares(module)
            boundary = narrow_64bit(module, strict_64bit)
    except RuntimeError as e:
        if "conversion error" not in str(e):
            raise
        # a string attribute (e.g. a function's sym_name) holding bytes that are not UTF-8:
        # the printer escapes them, but reading the attribute raises in the bindings
        raise InvalidArgument("the program holds a symbol name or string attribute that is not "
                              "UTF-8 text") from None
    return Parsed(ctx, module, boundary)


CALLBACK_TYPES_ATTR = "pjrt_tt.framework_types"   # on a Python callback: its operands' and results' types


def _note_callback_types(module: ir.Module, ops: list) -> None:
    """A Python callback (host_callbacks.TARGET) gets the arrays the framework would give it,
    float16, int64 and complex64 included; the rewrites below carry those types in others on
    the chip (tokens too: tokens.py), so each callback keeps its operands' and results' types
    as they came. `ops`: every op of the module."""
    for op in ops:
        if custom_call_target(op) == host_callbacks.TARGET:
            types = [v.type for v in list(op.operands) + list(op.results)]
            with module.context:
                op.attributes[CALLBACK_TYPES_ATTR] = ir.ArrayAttr.get([ir.TypeAttr.get(t) for t in types])


def reprove_ranges(proof_source: bytes, arg_ranges: tuple, guard_ranges: tuple) -> tuple | None:
    """narrow64.reprove on a Boundary's proof_source (bytecode this process wrote)."""
    ctx = new_context()
    with ctx:
        module = ir.Module.parse(proof_source)
    return reprove(module, arg_ranges, guard_ranges)


def _hlo_to_stablehlo(code: bytes) -> bytes:
    from jax._src.lib import _jax
    try:
        problem = _hlo_operand_problem(code)
    except ValueError as e:   # not well-formed protobuf (at any depth the check reads)
        problem = str(e)
    if problem:
        raise InvalidArgument(f"pjrt-tt could not read the HloModuleProto it was given: {problem}")
    try:
        return _jax.mlir.hlo_to_stablehlo(code)
    except Exception as e:
        raise InvalidArgument(f"pjrt-tt could not read the HloModuleProto it was given: {e}") from None


# HLO opcodes that may have no operands. XLA reads any other instruction without operands
# from a proto (a variadic one like `reduce()` passes its arity check), and its StableHLO
# conversion then writes a module whose reading crashes the process: refused before.
_NULLARY_HLO = {b"parameter", b"constant", b"iota", b"partition-id", b"replica-id", b"after-all",
                b"custom-call", b"rng-get-and-update-state", b"tuple", b"infeed", b"call",
                b"fusion", b"get-dimension-size"}


def _hlo_operand_problem(code: bytes) -> str:
    """An instruction of the HloModuleProto `code` that must have operands and has none."""
    for field, value in _proto_fields(code):
        if field != 3 or not isinstance(value, bytes):   # HloModuleProto.computations
            continue
        for cfield, instruction in _proto_fields(value):
            if cfield != 2 or not isinstance(instruction, bytes):   # HloComputationProto.instructions
                continue
            parts = list(_proto_fields(instruction))
            opcode = next((v for f, v in parts if f == 2 and isinstance(v, bytes)), b"")
            name = next((v for f, v in parts if f == 1 and isinstance(v, bytes)), b"")
            if opcode not in _NULLARY_HLO and not any(f == 36 for f, _ in parts):  # operand_ids
                return (f"instruction {name.decode('utf-8', 'replace')!r} ({opcode.decode('utf-8', 'replace')}) "
                        "has no operands")
    return ""


@contextlib.contextmanager
def _captured_diagnostics(ctx: ir.Context):
    """Error diagnostics go to a handler of ours instead of the bindings' own capture, which
    aborts the process on a message that is not UTF-8 (e.g. the note naming the producer
    of malformed bytecode). Yields the list the messages are collected in."""
    messages: list[str] = []

    def collect(diagnostic) -> bool:
        messages.append(_diagnostic_text(diagnostic))
        return True

    ctx.emit_error_diagnostics = True
    handler = ctx.attach_diagnostic_handler(collect)
    try:
        yield messages
    finally:
        handler.detach()
        ctx.emit_error_diagnostics = False


def _diagnostic_text(diagnostic) -> str:
    def safe(read) -> str:
        try:
            return str(read())
        except Exception:  # the bindings cannot convert bytes that are not UTF-8
            return "<bytes that are not UTF-8>"
    parts = [safe(lambda: diagnostic.message)]
    try:
        parts += [safe(lambda n=n: n.message) for n in diagnostic.notes]
    except Exception:
        pass
    return "; ".join(parts)


def _read_module(ctx: ir.Context, code: bytes) -> ir.Module:
    """Bytes -> a verified module whose every string is valid UTF-8 (later layers print
    names and locations through the bindings, which abort on anything else)."""
    with _captured_diagnostics(ctx) as diagnostics:
        module = None
        if code.startswith(MLIR_BYTECODE_MAGIC):
            try:   # a StableHLO portable artifact (VHLO), as jax sends
                module = stablehlo.deserialize_portable_artifact(ctx, code)
            except Exception:
                diagnostics.clear()  # or plain MLIR bytecode (hlo_to_stablehlo's output)
        else:
            try:
                code = code.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InvalidArgument(
                    "pjrt-tt could not parse the program it was given: it is neither MLIR bytecode "
                    f"(which starts with {MLIR_BYTECODE_MAGIC!r}) nor UTF-8 text ({e})") from None
        try:
            if module is None:
                with ctx:
                    module = ir.Module.parse(code)
            module.operation.verify()
        except Exception as e:
            detail = "; ".join(diagnostics[:5]) or str(e)
            raise InvalidArgument(f"pjrt-tt could not parse the program it was given: {detail}") from None
    try:
        module.operation.get_asm(binary=True, enable_debug_info=True,
                                 large_elements_limit=16).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgument("the program holds a name, string or location that is not UTF-8 "
                              f"text ({e})") from None
    return module


def check_module(module: ir.Module) -> None:
    """What every later layer assumes, checked once with a clear error: an @main with a body;
    static shapes of at most MAX_RANK dims; element types the chip holds (64-bit types are
    narrow64's to judge). Reads no attribute a complex constant could abort on."""
    funcs = {}
    for op in module.body.operations:
        op = op.operation
        if op.name == "func.func":
            funcs[ir.StringAttr(op.attributes["sym_name"]).value] = op
    main = funcs.get("main")
    if main is None:
        found = ", ".join(f"@{n}" for n in funcs) or "no function at all"
        raise InvalidArgument(f"the program has no @main function, the entry point PJRT runs "
                              f"(found {found})")
    if not main.regions[0].blocks:
        raise InvalidArgument("the program's @main is a declaration without a body")

    def check(t: ir.Type, what: str, op) -> None:
        if isinstance(t, ir.UnrankedTensorType):
            raise Unimplemented(f"{what} of `{op.name}`{_at(op)} has the unranked type {t}: "
                                "pjrt-tt needs static shapes")
        if not isinstance(t, ir.RankedTensorType):
            return   # tokens, tuples: structural
        rt = ir.RankedTensorType(t)
        if not rt.has_static_shape:
            raise Unimplemented(f"{what} of `{op.name}`{_at(op)} has the dynamic shape {t}: "
                                "pjrt-tt needs static shapes (jax.jit with concrete shapes, "
                                "torch.compile(dynamic=False))")
        if rt.rank > MAX_RANK:
            raise Unimplemented(f"{what} of `{op.name}`{_at(op)} has rank {rt.rank}: TT tensors "
                                f"have at most {MAX_RANK} dims")
        etype = str(rt.element_type)
        element = dtypes.BY_MLIR.get(etype)
        if element is None or element.device is None:
            name, hint = (element.numpy.name, element.hint) if element else (etype, "it has no TT data format")
            raise UnsupportedDtype(f"{name} ({etype}) is not supported on Tenstorrent devices "
                                   f"({what} of `{op.name}`{_at(op)}): {hint}")

    ops = []   # (an exception raised inside walk() reaches us as a RuntimeError: check after)
    module.operation.walk(lambda op: ops.append(op) or ir.WalkResult.ADVANCE)
    for op in ops:
        # every string a later layer may read is UTF-8 (parse()); a constant's value (which
        # the bindings abort on for complex types) is no string
        for attr in () if op.name.endswith(".constant") else attribute_values(op):
            if isinstance(attr, ir.StringAttr):
                attr.value
        for i, r in enumerate(op.results):
            check(r.type, f"result {i}", op)
        for region in op.regions:
            for block in region.blocks:
                for i, arg in enumerate(block.arguments):
                    check(arg.type, f"argument {i} of a block", op)


def _at(op) -> str:
    where = describe_location(op.location)
    return f" at {where}" if where else ""


# HLO ops that hlo_to_stablehlo leaves in the mhlo dialect (StableHLO has no such op),
# and the op jax emits for the same thing, which the lowering knows (a custom_call target:
# the op's attributes become its mhlo.attributes, as jax writes lax.top_k).
_MHLO_AS = {"mhlo.erf": "chlo.erf", "mhlo.topk": "custom_call @mhlo.topk"}
# HLO ops that are the identity on values (XLA's partitioner inserts copies, also inside
# loop bodies and outlined functions): their uses take the operand instead.
_MHLO_IDENTITY = {"mhlo.copy"}


def _as_jax_emits(module: ir.Module) -> None:
    found = []

    def visit(op):
        if op.name in _MHLO_AS or op.name in _MHLO_IDENTITY:
            found.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    for op in found:
        if op.name in _MHLO_IDENTITY:
            op.results[0].replace_all_uses_with(op.operands[0])
            op.erase()
            continue
        with op.context, op.location, ir.InsertionPoint(op):
            name, _, target = _MHLO_AS[op.name].partition(" @")
            attrs = {} if not target else {
                "call_target_name": ir.StringAttr.get(target),
                "mhlo.attributes": ir.DictAttr.get(named_attributes(op))}
            new = ir.Operation.create("stablehlo.custom_call" if target else name,
                                      results=[r.type for r in op.results], operands=list(op.operands),
                                      attributes=attrs)
        for old, repl in zip(op.results, new.results):
            old.replace_all_uses_with(repl)
        op.erase()


# --- compile options ----------------------------------------------------------------

def parse_compile_options(blob: bytes):
    """A serialized CompileOptionsProto -> jaxlib's CompileOptions (None for no bytes),
    checked: jaxlib's parser takes any bytes without complaint (garbage reads as 0
    replicas and 0 partitions), so the wire format and the fields the runtime relies on
    are checked here, each refusal naming its field."""
    if not blob:
        return None
    from jax._src.lib import _jax
    problem = _protobuf_problem(blob) or _build_options_problem(blob)
    if problem:
        raise InvalidArgument(f"the compile options are not a serialized CompileOptionsProto: {problem}")
    try:
        options = _jax.CompileOptions.ParseFromString(blob)
    except Exception as e:   # jaxlib's own checks (e.g. an env_option_overrides entry without a value)
        detail = re.sub(r"^[A-Z_]+: ", "", str(e))   # jaxlib's status code is not the error's
        raise InvalidArgument(f"the compile options are not a valid CompileOptionsProto: {detail}") from None
    build = options.executable_build_options
    for field in ("num_replicas", "num_partitions"):
        n = getattr(options, field)
        if n < 1:
            raise InvalidArgument(f"compile options: executable_build_options.{field} is {n}; it "
                                  "must be at least 1")
    if build.device_assignment is not None:
        ids = assignment_ids(build.device_assignment)
        shape = (len(ids), len(ids[0]) if ids else 0)
        want = (options.num_partitions, options.num_replicas)
        if shape != want or any(len(row) != want[1] for row in ids):
            raise InvalidArgument(
                f"compile options: executable_build_options.device_assignment has "
                f"{shape[0]} computations x {shape[1]} replicas; num_partitions x num_replicas "
                f"is {want[0]} x {want[1]}")
    return options


def build_optimization_level(options) -> int:
    """ExecutableBuildOptions.optimization_level (field 24), where jax.jit(compiler_options=
    {"optimization_level": n}) puts n (jax/_src/compiler.py). Read from the wire: jaxlib's
    getter fails on any value that is not one of XLA's EffortLevel names (1 and 2 are not)."""
    for field, value in _proto_fields(options.SerializeAsString()):
        if field == 3 and isinstance(value, bytes):
            for f, v in _proto_fields(value):
                if f == 24 and isinstance(v, int):
                    return v - (1 << 64) if v >= 1 << 63 else v
    return 0


def _build_options_problem(blob: bytes) -> str:
    """jaxlib aborts the process (a CHECK) on a negative device_ordinal other than -1."""
    for field, value in _proto_fields(blob):
        if field == 3 and isinstance(value, bytes):   # executable_build_options
            try:
                inner = list(_proto_fields(value))
            except ValueError as e:
                return f"executable_build_options: {e}"
            for f, v in inner:
                if f == 1 and isinstance(v, int):   # device_ordinal (int64)
                    ordinal = v - (1 << 64) if v >= 1 << 63 else v
                    if ordinal < -1:
                        return f"executable_build_options.device_ordinal is {ordinal}"
    return ""


def assignment_ids(assignment) -> list[list[int]]:
    """A jaxlib DeviceAssignment as [computation][replica] device ids (from its text form,
    the only accessor jaxlib 0.7.1 offers besides the serialized proto)."""
    return [[int(d) for d in ids.split()]
            for ids in re.findall(r"Computation\d+\{([\d ]*)\}", str(assignment))]


def _protobuf_problem(blob: bytes) -> str:
    """Why `blob` is not a well-formed protobuf message at its top level ('' if it is)."""
    try:
        for _ in _proto_fields(blob):
            pass
    except ValueError as e:
        return str(e)
    return ""


def _proto_fields(blob: bytes):
    """(field number, value) of a serialized protobuf message: ints for varints, bytes for
    the rest. ValueError when it is not well formed."""
    i, n = 0, len(blob)

    def varint(i: int) -> tuple[int, int]:
        value = 0
        for shift in range(0, 70, 7):
            if i >= n:
                raise ValueError("it ends inside a varint")
            b = blob[i]
            i += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value, i
        raise ValueError(f"a varint at byte {i} is longer than 10 bytes")

    while i < n:
        start = i
        tag, i = varint(i)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise ValueError(f"field number 0 at byte {start}")
        if wire == 0:
            value, i = varint(i)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = blob[i:i + size], i + size
        elif wire == 2:
            length, i = varint(i)
            value, i = blob[i:i + length], i + length
        else:
            raise ValueError(f"wire type {wire} (field {field}) at byte {start}")
        if i > n:
            raise ValueError(f"field {field} at byte {start} runs past the end ({n} bytes)")
        yield field, value
