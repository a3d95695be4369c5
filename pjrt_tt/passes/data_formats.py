"""Data formats and math fidelity chosen by compile options (docs/numerics.md).

    jax.jit(f, compiler_options={"tt_compute_dtype": "bfloat16", "tt_weight_dtype": "bfloat8_b",
                                 "tt_math_fidelity": "HiFi2"})

The options arrive in the CompileOptionsProto's env_option_overrides; the compiler checks them
(compile_context.from_overrides) and hands them to this pass as `ctx.numerics`. With none given
the program is left as lowered: float32 stays float32 and every matmul runs with ttnn's default
config.

- tt_compute_dtype=bfloat16: every float32 tensor of the program becomes bfloat16. Inputs are
  typecast once at entry, float32 constants are uploaded as bfloat16, float32 outputs are
  typecast back at exit (an input or constant returned as is keeps its float32 value). Ops
  whose float32 result cannot follow their operands (bitcast, ops without a float operand or
  dtype argument) keep it and are bracketed by typecasts.
- tt_weight_dtype=bfloat16|bfloat8_b|bfloat4_b: the `b` operand of matmul / linear, when it is
  a program input or constant (directly or through reshape / permute / transpose / typecast),
  is stored in that format: constants are uploaded in it, other weights typecast before use.
- tt_math_fidelity (LoFi|HiFi2|HiFi3|HiFi4), tt_fp32_dest_acc_en, tt_packer_l1_acc,
  tt_math_approx_mode (booleans): every matmul / linear gets a compute_kernel_config with
  these; the fields not given take ttnn's default for that op's dtypes (a config passed to
  ttnn is used exactly as given, so all fields are set). Matmuls of a dot whose precision /
  algorithm asked for more than DEFAULT keep the config the lowering gave them.
"""
from __future__ import annotations

import dataclasses
import itertools

import ml_dtypes
import numpy as np

from pjrt_tt.compile_context import CompileContext, Numerics
from pjrt_tt.ttnn_facts import default_matmul_config
from pjrt_tt.program import STRUCTURED, Attr, Constant, Construct, Op, Program, TensorType, Value, While

_CONFIG_FIELDS = {"tt_math_fidelity": "math_fidelity", "tt_fp32_dest_acc_en": "fp32_dest_acc_en",
                  "tt_packer_l1_acc": "packer_l1_acc", "tt_math_approx_mode": "math_approx_mode"}


# --- the pass ------------------------------------------------------------------------------
MATMULS = ("matmul", "linear")
_VIEWS = ("reshape", "permute", "transpose", "typecast")   # a weight seen through these is still a weight
_PINNED = ("bitcast",)                                       # ops whose float32 must stay float32
_FLOATS = ("float32", "bfloat16", "bfloat8_b", "bfloat4_b")


def data_formats(program: Program, ctx: CompileContext) -> Program:
    n = ctx.numerics
    if not n.options:
        return program
    rw = _Rewriter(program)
    if n.get("tt_compute_dtype") == "bfloat16":
        rw.to_bf16()
    if n.get("tt_weight_dtype") != "default":
        rw.weights(n.get("tt_weight_dtype"))
    if any(k in _CONFIG_FIELDS for k, _ in n.options):
        rw.configs(n)
    return dataclasses.replace(rw.program, ops=rw.entry + rw.program.ops + rw.exit)


def _ops(ops: list):
    """Every Op (not While / Switch) in `ops` and nested blocks, with the list holding it."""
    for op in ops:
        if isinstance(op, STRUCTURED):
            for b in op.blocks():
                yield from _ops(b.ops)
        else:
            yield op, ops


def _defined(ops: list):
    """Every Value an op in `ops` (at any depth) defines."""
    yield from (op.result for op, _ in _ops(ops))
    yield from _carried(ops)


def _carried(ops: list):
    """The Values While / Switch ops (at any depth) define: loop params and results."""
    for op in ops:
        if isinstance(op, STRUCTURED):
            yield from op.results
            if isinstance(op, While):
                yield from op.params
            for b in op.blocks():
                yield from _carried(b.ops)


def _map_args(x, f):
    if isinstance(x, list):
        return [_map_args(y, f) for y in x]
    if isinstance(x, tuple):
        return tuple(_map_args(y, f) for y in x)
    if isinstance(x, dict):
        return {k: _map_args(v, f) for k, v in x.items()}
    return f(x)


def _retyped(t: TensorType, dtype: str) -> TensorType:
    return TensorType(t.shape, dtype, t.layout)


class _Rewriter:
    def __init__(self, program: Program):
        self.program = dataclasses.replace(program, inputs=list(program.inputs), outputs=list(program.outputs),
                                           constants=list(program.constants))
        top = max([v.id for v in program.inputs] + [c.value.id for c in program.constants]
                  + [v.id for v in _defined(program.ops)] + [0])
        self.ids = itertools.count(top + 1)
        self.entry, self.exit = [], []
        self.producer = {op.result.id: op for op, _ in _ops(program.ops)}

    def new(self, t: TensorType) -> Value:
        return Value(next(self.ids), t)

    def typecast(self, src: Value, dst: Value, origin: str) -> Op:
        return Op("typecast", (src, Attr(dst.type.dtype)), {}, dst, origin)

    # --- float32 -> bfloat16 ----------------------------------------------------------
    def to_bf16(self) -> None:
        p = self.program
        f32 = lambda v: isinstance(v.type, TensorType) and v.type.dtype == "float32"  # noqa: E731
        self.was_f32 = set()
        converted = {}                              # id -> the original float32 Value / Constant
        used = {v.id for op, _ in _ops(p.ops) for v in op.operands()}
        used |= {v.id for op in p.ops if isinstance(op, STRUCTURED) for v in op.operands()}
        for i, v in enumerate(p.inputs):
            if f32(v):
                p.inputs[i] = converted[v.id] = self.new(v.type)
                self._bf16(v)
                if v.id in used:
                    self.entry.append(self.typecast(p.inputs[i], v, "tt_compute_dtype=bfloat16: input at entry"))
        for c in p.constants:
            if f32(c.value):
                converted[c.value.id] = Constant(self.new(c.value.type), c.data)
                self._bf16(c.value)
                c.data = np.asarray(c.data, np.float32).astype(ml_dtypes.bfloat16)
        for v in _carried(p.ops):
            if f32(v):
                self._bf16(v)
        for op, ops in list(_ops(p.ops)):
            if not op.fn.startswith("host.") and f32(op.result):
                self._op_to_bf16(op, ops)
        for i, (v, h) in enumerate(zip(p.outputs, p.output_host_types)):
            if h.element.device != "float32" or v.id not in self.was_f32:
                continue
            orig = converted.get(v.id)
            src = self.producer.get(v.id)
            if orig is None and src is not None and src.fn == "clone" and src.args[0].id in converted:
                x = converted[src.args[0].id]   # an input / constant returned: clone the float32 original
                x = x.value if isinstance(x, Constant) else x
                if isinstance(converted[src.args[0].id], Constant):
                    p.constants.append(converted[src.args[0].id])
                src.args = (x,) + tuple(src.args[1:])
                v.type = _retyped(v.type, "float32")
                continue
            if isinstance(orig, Constant):
                p.constants.append(orig)
                p.outputs[i] = orig.value
            elif orig is not None:
                p.outputs[i] = orig
            else:
                out = self.new(_retyped(v.type, "float32"))
                self.exit.append(self.typecast(v, out, "tt_compute_dtype=bfloat16: output at exit"))
                p.outputs[i] = out

    def _bf16(self, v: Value) -> None:
        v.type = _retyped(v.type, "bfloat16")
        self.was_f32.add(v.id)

    def _op_to_bf16(self, op: Op, ops: list) -> None:
        swapped = [False]

        def swap(a):
            if a == Attr("float32"):
                swapped[0] = True
                return Attr("bfloat16")
            return a
        args, kwargs = _map_args(op.args, swap), _map_args(op.kwargs, swap)
        floats = [v for v in op.operands() if isinstance(v.type, TensorType) and v.type.dtype in _FLOATS]
        if op.fn not in _PINNED and (floats or swapped[0]):  # the result follows the operands / dtype
            op.args, op.kwargs = args, kwargs
            self._bf16(op.result)
            return
        # Pinned: float32 in and out, bracketed by typecasts.
        before = []
        for v in floats:
            if v.id in self.was_f32:
                w = self.new(_retyped(v.type, "float32"))
                before.append(self.typecast(v, w, op.origin))
                op.args, op.kwargs = (_map_args(x, lambda a, v=v, w=w: w if a is v else a)
                                      for x in (op.args, op.kwargs))
        res, op.result = op.result, self.new(op.result.type)
        self._bf16(res)
        k = ops.index(op)
        ops[k:k + 1] = before + [op, self.typecast(op.result, res, op.origin)]

    # --- weights ------------------------------------------------------------------------
    def weights(self, dtype: str) -> None:
        p = self.program
        consts = {c.value.id: c for c in p.constants}
        roots = {v.id for v in p.inputs} | set(consts) | {op.result.id for op in self.entry}
        matmul_b = [(op, ops) for op, ops in _ops(p.ops) if op.fn in MATMULS and isinstance(op.args[1], Value)]
        other_uses = {v.id for op, _ in _ops(p.ops) for v in op.operands()
                      if not (op.fn in MATMULS and v is op.args[1])} | {v.id for v in p.outputs}
        other_uses |= {v.id for op in p.ops if isinstance(op, STRUCTURED) for v in op.operands()}
        done, entry_src = {}, {op.result.id: op.args[0] for op in self.entry}
        for op, ops in matmul_b:
            w = op.args[1]
            if w.type.layout != "TILE" or w.type.dtype not in _FLOATS or w.type.dtype == dtype:
                continue
            if not self._is_weight(w, roots):
                continue
            if w.id in consts and w.id not in other_uses:  # upload the constant in the weight format
                w.type = _retyped(w.type, dtype)
                consts[w.id].data = np.asarray(consts[w.id].data, np.float32)
                continue
            key = (id(ops), w.id)
            if key not in done:
                done[key] = self.new(_retyped(w.type, dtype))
                src = entry_src.get(w.id, w)  # an input: straight from the framework's float32
                ops.insert(ops.index(op), self.typecast(src, done[key], f"tt_weight_dtype={dtype}: {op.origin}"))
            op.args = (op.args[0], done[key]) + tuple(op.args[2:])

    def _is_weight(self, v: Value, roots: set) -> bool:
        while v.id not in roots:
            op = self.producer.get(v.id)
            if op is None or op.fn not in _VIEWS:
                return False
            tensors = [x for x in op.operands() if isinstance(x.type, TensorType)]
            if len(tensors) != 1:
                return False
            v = tensors[0]
        return True

    # --- compute kernel configs -----------------------------------------------------------
    def configs(self, n: Numerics) -> None:
        given = {_CONFIG_FIELDS[k]: v for k, v in n.options if k in _CONFIG_FIELDS}
        for op, _ in _ops(self.program.ops):
            # a config the lowering set honours the dot's precision / algorithm: it stays
            if op.fn not in MATMULS or "compute_kernel_config" in op.kwargs:
                continue
            a, b = op.args[0].type.dtype, op.args[1].type.dtype
            grid = "core_grid" in op.kwargs or "program_config" in op.kwargs
            cfg = {**default_matmul_config(n.arch, a, b, op.result.type.dtype, grid), **given}
            kwargs = tuple((k, Attr(f"MathFidelity.{v}") if k == "math_fidelity" else v in (True, "true"))
                           for k, v in cfg.items())
            op.kwargs = {**op.kwargs, "compute_kernel_config": Construct("WormholeComputeKernelConfig", kwargs)}
