"""complex64 -> pairs of float32 values: the complex arithmetic, written as real StableHLO.

The chip has no complex types. Inside a program every complex<f32> value becomes two
float32 values of the same shape, its real and imaginary planes, and every op on complex
values becomes real ops on the planes: the lowering, the passes and the targets never see
a complex type, and the mock checks the real program like any other. Data movement ops
(reshape, transpose, slice, gather...) run once per plane with their own attributes
unchanged, so no dimension number is touched. At @main's boundary a complex argument or
result is one float32 tensor [2, *shape] holding the (re, im) planes, leading so that
TILE padding costs nothing (docs/ttnn-facts.md); the framework keeps seeing complex64
with its own dims, and the buffers convert (program.device_array / host_array).

Lowered: constants, convert (to complex: imaginary part 0; complex to real: the real
part, as StableHLO defines it), real, imag, complex, add, subtract, negate, multiply,
divide, abs, exp, log, sqrt, rsqrt, sign, compare EQ / NE, select, the data movement ops,
dot_general and convolution (four real ones), reduce with an add body, scatter that
overwrites or adds, and in SPMD programs the collectives (moved per plane; all_reduce /
reduce_scatter summing per plane); composites (jax's acos, asinh, ...) and calls are inlined first, so their decompositions' ops are what must be lowered.
Everything else on complex values is refused (UNIMPLEMENTED naming the op and its source
line): never a wrong answer.
docs/numerics.md ("complex64") states the formulas and their accuracy.
"""
from __future__ import annotations

import math
import re

import numpy as np
from jaxlib.mlir import ir

from pjrt_tt import host_callbacks
from pjrt_tt.errors import Unimplemented
from pjrt_tt.ingest.attributes import custom_call_target, describe_location
from pjrt_tt.ingest.inline import inline_calls, remap
from pjrt_tt.ingest.mlir_compat import as_operation, create, named_attributes

COMPLEX = "complex<f32>"

# ops whose complex operands and results are moved, not computed: the same op per plane
_PER_PLANE = {"stablehlo.reshape", "stablehlo.transpose", "stablehlo.broadcast_in_dim",
              "stablehlo.slice", "stablehlo.dynamic_slice", "stablehlo.dynamic_update_slice",
              "stablehlo.concatenate", "stablehlo.pad", "stablehlo.reverse", "stablehlo.gather",
              "stablehlo.add", "stablehlo.subtract", "stablehlo.negate", "mhlo.copy",
              "stablehlo.broadcast",
              # SPMD: the collectives of a partitioned program move each plane the same way
              "stablehlo.all_gather", "stablehlo.all_to_all", "stablehlo.collective_permute",
              "stablehlo.collective_broadcast"}
# collectives that sum complex values across chips: one per plane, with a float32 add body
_SUMMING_COLLECTIVES = {"stablehlo.all_reduce", "stablehlo.reduce_scatter"}


def has_complex(module: ir.Module):
    """The first op computing a complex value (None: there is none)."""
    found = []

    def visit(op):
        if any(_is_complex(r.type) for r in op.results) or any(
                _is_complex(a.type) for region in op.regions for b in region.blocks for a in b.arguments):
            found.append(op)
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found[0] if found else None


def split_complex(module: ir.Module, main) -> None:
    """Rewrites @main's complex<f32> values as (re, im) pairs of float32 values; @main's
    complex arguments and results become float32 [2, *shape]. Raises Unimplemented naming
    the first op on complex values it cannot write in real ops."""
    if has_complex(module) is None:
        return
    entry = main.regions[0].blocks[0]
    inline_calls(module, entry, _touches)
    pairs: dict = {}
    with module.context:
        ops = [op.operation for op in entry.operations]
        if ops:
            with ops[0].location, ir.InsertionPoint(ops[0]):
                for arg in list(entry.arguments):
                    if _is_complex(arg.type):
                        shape = _shape(arg.type)
                        arg.set_type(_planes_type(shape))
                        pairs[arg] = tuple(_reshape(_slice0(arg, k), shape) for k in (0, 1))
        dead = []
        for op in ops:
            if op.name == "func.return":
                _return(op, pairs)
                continue
            touches = any(v in pairs for v in op.operands) or any(_is_complex(r.type) for r in op.results)
            if not touches:
                if _inner_complex(op):
                    raise _refusal(op, "holds complex values in its body")
                continue
            with op.location, ir.InsertionPoint(op):
                out = _rewrite(op, pairs)
            for r, new in zip(op.results, out):
                if _is_complex(r.type):
                    pairs[r] = new
                else:
                    r.replace_all_uses_with(new)
            dead.append(op)
        for op in reversed(dead):
            op.erase()
        ret = entry.operations[len(entry.operations) - 1]
        main.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(
            [a.type for a in entry.arguments], [v.type for v in ret.operands]))
    left = []

    def visit(op):
        if any(_is_complex(r.type) for r in op.results):
            left.append(op)
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    if left:   # (a function @main calls, a loop body...)
        raise _refusal(left[0], "computes complex values outside @main's own body")


def _touches(func) -> bool:
    return func is not None and bool(func.regions[0].blocks) and (
        any(_is_complex(a.type) for a in func.regions[0].blocks[0].arguments) or _inner_complex(func))


def _rewrite(op, pairs: dict) -> list:
    """The replacement of each result of `op`: a (re, im) pair for a complex result, a value
    for a real one."""
    name = op.name
    ins = [pairs.get(v, v) for v in op.operands]
    if name == "stablehlo.constant":
        data = _complex_constant(op)
        # (np.array: ascontiguousarray makes a scalar 1-D)
        return [tuple(_constant(np.array(part, np.float32, order="C")) for part in (data.real, data.imag))]
    if name == "stablehlo.convert":
        return [_convert(op, ins[0])]
    if name == "stablehlo.real":
        return [ins[0][0]]
    if name == "stablehlo.imag":
        return [ins[0][1]]
    if name == "stablehlo.complex":
        return [(ins[0], ins[1])]
    if name == "stablehlo.select":
        p, (a, b), (c, d) = ins
        return [(_op("stablehlo.select", p, a, c), _op("stablehlo.select", p, b, d))]
    if name in _PER_PLANE and not op.regions and len(op.results) == 1 and _is_complex(op.results[0].type):
        return [tuple(_clone(op, [x[k] if isinstance(x, tuple) else x for x in ins]) for k in (0, 1))]
    if name in _SUMMING_COLLECTIVES and len(ins) == 1:
        if _body_kind(op) != "stablehlo.add":
            raise _refusal(op, "combines complex values across chips with a body other than a single add")
        return [_per_plane(op, ins)]
    if name == "stablehlo.multiply":
        return [_mul(*ins)]
    if name == "stablehlo.divide":
        return [_div(*ins)]
    if name == "stablehlo.abs":
        return [_abs(ins[0])]
    if name == "stablehlo.exponential":
        a, b = ins[0]
        e = _op("stablehlo.exponential", a)
        return [(_op("stablehlo.multiply", e, _op("stablehlo.cosine", b)),
                 _real_axis(b, _op("stablehlo.multiply", e, _op("stablehlo.sine", b))))]
    if name == "stablehlo.exponential_minus_one":   # (e^a cos b - 1) + i e^a sin b, no cancellation near 0
        a, b = ins[0]
        half_sin = _op("stablehlo.sine", _op("stablehlo.multiply", b, _splat(b, 0.5)))
        re = _op("stablehlo.subtract", _op("stablehlo.multiply", _op("stablehlo.exponential_minus_one", a),
                                           _op("stablehlo.cosine", b)),
                 _op("stablehlo.multiply", _splat(b, 2.0), _op("stablehlo.multiply", half_sin, half_sin)))
        return [(re, _real_axis(b, _op("stablehlo.multiply", _op("stablehlo.exponential", a), _op("stablehlo.sine", b))))]
    if name == "stablehlo.tanh":
        return [_tanh(ins[0])]
    if name == "stablehlo.tan":   # tan z = -i tanh(iz)
        a, b = ins[0]
        p, q = _tanh((_op("stablehlo.negate", b), a))
        return [(q, _op("stablehlo.negate", p))]
    if name == "stablehlo.power":
        return [_pow(*ins)]
    if name == "stablehlo.iota":
        f32 = ir.RankedTensorType.get(_shape(op.results[0].type), ir.F32Type.get())
        re = create("stablehlo.iota", f32, [], named_attributes(op))
        return [(re, _splat(re, 0.0))]
    if name == "stablehlo.log":
        a, b = ins[0]
        return [(_op("stablehlo.log", _abs(ins[0])), _op("stablehlo.atan2", b, a))]
    if name == "stablehlo.sqrt":
        return [_sqrt(ins[0])]
    if name == "stablehlo.rsqrt":   # 1 / sqrt(z), the principal branch as XLA's
        root = _sqrt(ins[0])
        return [_div((_splat(root[0], 1.0), _splat(root[0], 0.0)), root)]
    if name == "stablehlo.sign":
        a, b = ins[0]
        r = _abs(ins[0])
        zero = _op("stablehlo.compare", r, _splat(r, 0.0), direction="EQ")
        safe = _op("stablehlo.select", zero, _splat(r, 1.0), r)
        return [(_op("stablehlo.divide", a, safe), _op("stablehlo.divide", b, safe))]
    if name == "stablehlo.compare":
        return [_compare(op, *ins)]
    if name in ("stablehlo.dot_general", "stablehlo.dot", "stablehlo.convolution"):
        return [_bilinear(op, *ins)]
    if name == "stablehlo.reduce":
        return _reduce(op, ins)
    if name == "stablehlo.reduce_window":
        return _reduce_window(op, ins)
    if name == "stablehlo.sort":
        return _sort(op, ins)
    if name == "stablehlo.scatter" and len(ins) == 3:
        return [_scatter(op, ins)]
    if custom_call_target(op) == host_callbacks.TARGET:
        return _callback(op, ins)
    raise _refusal(op, "is not lowered for complex numbers")


def _callback(op, ins: list) -> list:
    """A Python callback on complex values: each goes and comes back as float32 [2, *shape]
    planes, the form the program boundary uses (program.device_type), which the executor
    turns into the complex64 arrays the callable sees and returns."""
    def planes(pair):
        shape = _shape(pair[0].type)
        halves = [_reshape(x, [1, *shape]) for x in pair]
        return create("stablehlo.concatenate", _planes_type(shape), halves,
                      {"dimension": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), 0)})
    operands = [planes(x) if isinstance(x, tuple) else x for x in ins]
    types = [_planes_type(_shape(r.type)) if _is_complex(r.type) else r.type for r in op.results]
    new = ir.Operation.create(op.name, results=types, operands=operands, attributes=named_attributes(op))
    return [tuple(_reshape(_slice0(v, k), _shape(r.type)) for k in (0, 1)) if _is_complex(r.type) else v
            for r, v in zip(op.results, new.results)]


# --- the arithmetic --------------------------------------------------------------------

def _real_axis(b, im):
    """The imaginary part `im` (e^a sin b), but 0 where b is 0: on the real axis e^a
    overflows to inf for large a and inf * sin(0) would be NaN, where XLA:CPU gives +0."""
    return _op("stablehlo.select", _op("stablehlo.compare", b, _splat(b, 0.0), direction="EQ"), _splat(b, 0.0), im)


def _mul(x, y):
    (a, b), (c, d) = x, y
    m = lambda p, q: _op("stablehlo.multiply", p, q)  # noqa: E731
    return (_op("stablehlo.subtract", m(a, c), m(b, d)), _op("stablehlo.add", m(a, d), m(b, c)))


def _div(x, y):
    """(a + bi) / (c + di) = ((ac + bd) + (bc - ad)i) / (c^2 + d^2), with both parts of the
    divisor scaled by the larger of |c|, |d| first (Smith's idea, without a branch), so that
    the squares neither overflow nor underflow for any finite nonzero divisor."""
    (a, b), (c, d) = x, y
    m = lambda p, q: _op("stablehlo.multiply", p, q)  # noqa: E731
    s = _op("stablehlo.maximum", _op("stablehlo.abs", c), _op("stablehlo.abs", d))
    s = _op("stablehlo.select", _op("stablehlo.compare", s, _splat(s, 0.0), direction="EQ"), _splat(s, 1.0), s)
    c, d = _op("stablehlo.divide", c, s), _op("stablehlo.divide", d, s)
    den = _op("stablehlo.multiply", _op("stablehlo.add", m(c, c), m(d, d)), s)
    return (_op("stablehlo.divide", _op("stablehlo.add", m(a, c), m(b, d)), den),
            _op("stablehlo.divide", _op("stablehlo.subtract", m(b, c), m(a, d)), den))


def _abs(x):
    """|a + bi| = s * sqrt((a/s)^2 + (b/s)^2), s = max(|a|, |b|): no overflow of the squares
    for any finite value (s = 0 gives 0, an infinite part gives +inf as hypot does)."""
    a, b = x
    aa, ab = _op("stablehlo.abs", a), _op("stablehlo.abs", b)
    s = _op("stablehlo.maximum", aa, ab)
    zero = _op("stablehlo.compare", s, _splat(s, 0.0), direction="EQ")
    inf = _op("stablehlo.compare", s, _splat(s, np.inf), direction="EQ")
    safe = _op("stablehlo.select", zero, _splat(s, 1.0), s)
    p, q = _op("stablehlo.divide", aa, safe), _op("stablehlo.divide", ab, safe)
    r = _op("stablehlo.multiply", s, _op("stablehlo.sqrt", _op("stablehlo.add", _op("stablehlo.multiply", p, p),
                                                               _op("stablehlo.multiply", q, q))))
    return _op("stablehlo.select", inf, s, r)


def _sqrt(x):
    """The principal square root: re = sqrt((|z| + a) / 2), im = sign(b) sqrt((|z| - a) / 2),
    each computed from the other where it would cancel (a < 0 for re, a > 0 for im):
    re * im = b / 2."""
    a, b = x
    r = _abs(x)
    half = lambda v: _op("stablehlo.multiply", v, _splat(v, 0.5))  # noqa: E731
    t = _op("stablehlo.sqrt", half(_op("stablehlo.add", r, _op("stablehlo.abs", a))))  # the larger part
    t_safe = _op("stablehlo.select", _op("stablehlo.compare", t, _splat(t, 0.0), direction="EQ"), _splat(t, 1.0), t)
    u = _op("stablehlo.divide", half(_op("stablehlo.abs", b)), t_safe)            # the smaller part
    neg = _op("stablehlo.compare", a, _splat(a, 0.0), direction="LT")
    re = _op("stablehlo.select", neg, u, t)
    im = _op("stablehlo.select", neg, t, u)
    bneg = _op("stablehlo.compare", b, _splat(b, 0.0), direction="LT")
    return (re, _op("stablehlo.select", bneg, _op("stablehlo.negate", im), im))


def _tanh(x):
    """tanh(a + bi) = (t + i sin b cos b sech^2 a) / (cos^2 b + t^2 sin^2 b), t = tanh a: the
    tangent form multiplied through by cos^2 b, finite for any finite a (sech^2 a from
    e^-|a|, which underflows to 0 where cosh would overflow)."""
    a, b = x
    m = lambda p, q: _op("stablehlo.multiply", p, q)  # noqa: E731
    t, sin, cos = _op("stablehlo.tanh", a), _op("stablehlo.sine", b), _op("stablehlo.cosine", b)
    e = _op("stablehlo.exponential", _op("stablehlo.negate", _op("stablehlo.abs", a)))
    sech = _op("stablehlo.divide", m(_splat(e, 2.0), e), _op("stablehlo.add", _splat(e, 1.0), m(e, e)))
    den = _op("stablehlo.add", m(cos, cos), m(m(t, t), m(sin, sin)))
    return (_op("stablehlo.divide", t, den), _op("stablehlo.divide", m(m(sin, cos), m(sech, sech)), den))


def _pow(x, y):
    """z^w = exp(w log z) on the principal branch. A zero base gives what XLA gives: 1 for
    w = 0, 0 for a positive real w, nan + nan i for any other w."""
    a, b = x
    log = (_op("stablehlo.log", _abs(x)), _op("stablehlo.atan2", b, a))
    p, q = _mul(y, log)
    e = _op("stablehlo.exponential", p)
    re, im = _op("stablehlo.multiply", e, _op("stablehlo.cosine", q)), _op("stablehlo.multiply", e, _op("stablehlo.sine", q))
    eq0 = lambda v: _op("stablehlo.compare", v, _splat(v, 0.0), direction="EQ")  # noqa: E731
    c, d = y
    base0 = _op("stablehlo.and", eq0(a), eq0(b))
    positive = _op("stablehlo.and", eq0(d), _op("stablehlo.compare", c, _splat(c, 0.0), direction="GT"))
    at0 = _op("stablehlo.select", _op("stablehlo.and", eq0(c), eq0(d)), _splat(re, 1.0),
              _op("stablehlo.select", positive, _splat(re, 0.0), _splat(re, np.nan)))
    im0 = _op("stablehlo.select", _op("stablehlo.or", positive, _op("stablehlo.and", eq0(c), eq0(d))),
              _splat(im, 0.0), _splat(im, np.nan))
    return (_op("stablehlo.select", base0, at0, re), _op("stablehlo.select", base0, im0, im))


def _compare(op, x, y):
    direction = re.search(r"comparison_direction\s+(\w+)", str(op.attributes["comparison_direction"])).group(1)
    if direction not in ("EQ", "NE"):
        raise _refusal(op, f"compares complex numbers with {direction}, which has no order")
    (a, b), (c, d) = x, y
    join = "stablehlo.and" if direction == "EQ" else "stablehlo.or"
    return _op(join, _op("stablehlo.compare", a, c, direction=direction),
               _op("stablehlo.compare", b, d, direction=direction))


def _convert(op, x):
    dst = _etype(op.results[0].type)
    if dst == COMPLEX:
        if isinstance(x, tuple):   # complex -> complex
            return x
        f32 = ir.RankedTensorType.get(_shape(x.type), ir.F32Type.get())
        re = x if _etype(x.type) == "f32" else create("stablehlo.convert", f32, [x])
        return (re, _splat(re, 0.0))
    if isinstance(x, tuple):   # complex -> real: the real part
        re = x[0]
        return re if dst == "f32" else create("stablehlo.convert", op.results[0].type, [re])
    raise _refusal(op, "converts between complex types pjrt-tt does not carry")


def _bilinear(op, x, y):
    """dot_general or convolution (bilinear in its operands): four real ones with the op's
    own dimension numbers and precision, two where an operand is real."""
    out = ir.RankedTensorType.get(_shape(op.results[0].type), ir.F32Type.get())
    attrs = named_attributes(op)
    apply = lambda p, q: create(op.name, out, [p, q], attrs)  # noqa: E731
    if not isinstance(x, tuple):
        return apply(x, y[0]), apply(x, y[1])
    if not isinstance(y, tuple):
        return apply(x[0], y), apply(x[1], y)
    (a, b), (c, d) = x, y
    return (_op("stablehlo.subtract", apply(a, c), apply(b, d)), _op("stablehlo.add", apply(a, d), apply(b, c)))


def _reduce(op, ins):
    """A sum of complex values (one sum per plane) or a product (pairwise, log2 n steps)."""
    kind = _body_kind(op)
    if kind == "stablehlo.multiply":
        return [_product(op, *ins)]
    if kind != "stablehlo.add":
        raise _refusal(op, "reduces complex values with a body other than a single add or multiply")
    return [_per_plane(op, ins)]


def _sort(op, ins):
    """The same sort over the planes, each an operand of its own; the comparator reads
    `real(x)` / `imag(x)` of a complex argument as those operands' arguments (jax orders
    complex keys by real part, then imaginary: a two-key sort, lower/indexing.py)."""
    flat, where = [], []   # per operand: its index among the new operands, or (re, im)'s
    for x in ins:
        where.append((len(flat), len(flat) + 1) if isinstance(x, tuple) else len(flat))
        flat += list(x) if isinstance(x, tuple) else [x]
    new = ir.Operation.create("stablehlo.sort", results=[v.type for v in flat], operands=flat,
                              attributes=named_attributes(op), regions=1)
    scalars = [ir.RankedTensorType.get([], ir.RankedTensorType(v.type).element_type) for v in flat]
    block = new.regions[0].blocks.append(*[t for t in scalars for _ in (0, 1)])
    old = op.regions[0].blocks[0]
    mapping, planes = {}, {}
    for k, w in enumerate(where):
        for side in (0, 1):
            arg = old.arguments[2 * k + side]
            if isinstance(w, tuple):
                planes[arg] = tuple(block.arguments[2 * i + side] for i in w)
            else:
                mapping[arg] = block.arguments[2 * w + side]
    with ir.InsertionPoint(block):
        for inner in old.operations:
            inner = inner.operation
            if inner.name in ("stablehlo.real", "stablehlo.imag") and inner.operands[0] in planes:
                mapping[inner.results[0]] = planes[inner.operands[0]][inner.name == "stablehlo.imag"]
                continue
            if any(v in planes for v in inner.operands) or any(_is_complex(r.type) for r in inner.results):
                raise _refusal(op, "compares complex values other than by their real and imaginary parts")
            copy = as_operation(inner.clone())
            remap(copy, mapping)
            mapping.update(zip(inner.results, copy.results))
    out = list(new.results)
    return [(out[w[0]], out[w[1]]) if isinstance(w, tuple) else out[w] for w in where]


def _reduce_window(op, ins):
    """Windowed sums of complex values (cumsum): one per plane."""
    if _body_kind(op) != "stablehlo.add":
        raise _refusal(op, "reduces windows of complex values with a body other than a single add")
    return [_per_plane(op, ins)]


def _body_kind(op) -> str:
    """The one op of a single-operand reduction body (add, multiply...), or ""."""
    kinds = [o.operation.name for o in op.regions[0].blocks[0].operations]
    return kinds[0] if len(op.results) == 1 and len(kinds) == 2 and kinds[1] == "stablehlo.return" else ""


def _scatter(op, ins):
    """A scatter of complex updates that overwrites (`.at[].set`, jnp.insert) or adds
    (`.at[].add`): the same scatter per plane, its indices shared."""
    block = op.regions[0].blocks[0]
    body = [o.operation for o in block.operations]
    if len(body) == 1 and body[0].operands[0] == block.arguments[1]:
        return _per_plane(op, ins, add=False)
    if _body_kind(op) == "stablehlo.add":
        return _per_plane(op, ins)
    raise _refusal(op, "scatters complex values with a body other than overwrite or add")


def _per_plane(op, ins, add: bool = True):
    """`op` (a reduce or reduce_window with its init, an all_reduce / reduce_scatter, or a
    scatter with its indices) on each float32 plane, its body summing (`add`) or keeping
    the second value (a scatter that overwrites)."""
    out = ir.RankedTensorType.get(_shape(op.results[0].type), ir.F32Type.get())
    scalar = ir.RankedTensorType.get([], ir.F32Type.get())
    planes = []
    for k in (0, 1):
        red = ir.Operation.create(op.name, results=[out], operands=[v[k] if isinstance(v, tuple) else v for v in ins],
                                  attributes=named_attributes(op), regions=1)
        block = red.regions[0].blocks.append(scalar, scalar)
        with ir.InsertionPoint(block):
            ir.Operation.create("stablehlo.return", operands=[_op("stablehlo.add", *block.arguments) if add
                                                              else block.arguments[1]])
        planes.append(red.results[0])
    return tuple(planes)


def _product(op, x, init):
    """The product over `dimensions`: those moved last and flattened into one of n, then
    halves multiplied (a 1 appended when odd) until one is left, times the init."""
    dims = list(ir.DenseI64ArrayAttr(op.attributes["dimensions"]))
    shape = _shape(x[0].type)
    kept = [d for d in range(len(shape)) if d not in dims]
    n = math.prod(shape[d] for d in dims)
    planes = [create("stablehlo.transpose", ir.RankedTensorType.get([shape[d] for d in kept + dims], ir.F32Type.get()),
                       [p], {"permutation": ir.DenseI64ArrayAttr.get(kept + dims)}) for p in x]
    rest = [shape[d] for d in kept]
    planes = [_reshape(p, rest + [n]) for p in planes]
    if n == 0:   # an empty product: the init alone
        planes = [_constant(np.full(rest + [1], v, np.float32)) for v in (1.0, 0.0)]
        n = 1
    while n > 1:
        if n % 2:
            planes = [create("stablehlo.pad", ir.RankedTensorType.get(rest + [n + 1], ir.F32Type.get()),
                               [p, _constant(np.array(v, np.float32))],
                               {"edge_padding_low": ir.DenseI64ArrayAttr.get([0] * (len(rest) + 1)),
                                "edge_padding_high": ir.DenseI64ArrayAttr.get([0] * len(rest) + [1]),
                                "interior_padding": ir.DenseI64ArrayAttr.get([0] * (len(rest) + 1))})
                      for p, v in zip(planes, (1.0, 0.0))]
            n += 1
        half = [tuple(_last_slice(p, rest, start, start + n // 2) for p in planes) for start in (0, n // 2)]
        planes, n = list(_mul(*half)), n // 2
    planes = [_reshape(p, rest) for p in planes]
    scalar_init = [create("stablehlo.broadcast_in_dim", ir.RankedTensorType.get(rest, ir.F32Type.get()), [v],
                            {"broadcast_dimensions": ir.DenseI64ArrayAttr.get([])}) for v in init]
    return _mul(tuple(planes), tuple(scalar_init))


def _last_slice(v: ir.Value, rest: list, start: int, limit: int) -> ir.Value:
    return create("stablehlo.slice", ir.RankedTensorType.get(rest + [limit - start], ir.F32Type.get()), [v], {
        "start_indices": ir.DenseI64ArrayAttr.get([0] * len(rest) + [start]),
        "limit_indices": ir.DenseI64ArrayAttr.get(rest + [limit]),
        "strides": ir.DenseI64ArrayAttr.get([1] * (len(rest) + 1))})


def _return(ret, pairs: dict) -> None:
    """@main returns each complex result as float32 [2, *shape]."""
    operands = list(ret.operands)
    if not any(v in pairs for v in operands):
        return
    with ret.location, ir.InsertionPoint(ret):
        new = []
        for v in operands:
            if v not in pairs:
                new.append(v)
                continue
            shape = _shape(pairs[v][0].type)
            one = ir.RankedTensorType.get([1, *shape], ir.F32Type.get())
            planes = [create("stablehlo.reshape", one, [p]) for p in pairs[v]]
            i64 = ir.IntegerType.get_signless(64)
            new.append(create("stablehlo.concatenate", _planes_type(shape), planes,
                                {"dimension": ir.IntegerAttr.get(i64, 0)}))
        ir.Operation.create("func.return", operands=new)
    ret.erase()


# --- building ops ----------------------------------------------------------------------

def _op(name: str, *operands, direction: str = "") -> ir.Value:
    """An elementwise op on float32 values (compare: of `direction`, giving i1)."""
    result = operands[-1].type if name == "stablehlo.select" else operands[0].type
    attrs = {}
    if name == "stablehlo.compare":
        result = ir.RankedTensorType.get(_shape(result), ir.IntegerType.get_signless(1))
        attrs["comparison_direction"] = ir.Attribute.parse(f"#stablehlo<comparison_direction {direction}>")
        if _etype(operands[0].type) == "f32":
            attrs["compare_type"] = ir.Attribute.parse("#stablehlo<comparison_type FLOAT>")
    return create(name, result, operands, attrs)


def _clone(op, operands: list) -> ir.Value:
    """`op` itself (one result) on float32 planes."""
    out = ir.RankedTensorType.get(_shape(op.results[0].type), ir.F32Type.get())
    return create(op.name, out, operands, named_attributes(op))


def _splat(like: ir.Value, value: float) -> ir.Value:
    return _constant(np.full(_shape(like.type), value, np.float32))


def _constant(data: np.ndarray) -> ir.Value:
    t = ir.RankedTensorType.get(list(data.shape), ir.F32Type.get())
    attr = ir.DenseElementsAttr.get_splat(t, ir.FloatAttr.get(ir.F32Type.get(), float(data.flat[0]))) \
        if data.size and (data == data.flat[0]).all() and not np.isnan(data.flat[0]) \
        else ir.DenseElementsAttr.get(data, type=t)
    return create("stablehlo.constant", t, [], {"value": attr})


def _slice0(arg: ir.Value, k: int) -> ir.Value:
    """Plane k of a [2, *shape] value, as [1, *shape]."""
    shape = _shape(arg.type)
    out = ir.RankedTensorType.get([1, *shape[1:]], ir.F32Type.get())
    return create("stablehlo.slice", out, [arg], {
        "start_indices": ir.DenseI64ArrayAttr.get([k] + [0] * (len(shape) - 1)),
        "limit_indices": ir.DenseI64ArrayAttr.get([k + 1] + list(shape[1:])),
        "strides": ir.DenseI64ArrayAttr.get([1] * len(shape))})


def _reshape(v: ir.Value, shape: list) -> ir.Value:
    return create("stablehlo.reshape", ir.RankedTensorType.get(list(shape), ir.F32Type.get()), [v])


_ELEMENTS = re.compile(r"dense<(.*)>\s*:\s*tensor<", re.S)


def _complex_constant(op) -> np.ndarray:
    """The value of a complex constant, read from the op's text: the bindings abort the
    process when the attribute of a complex constant is read as an array."""
    shape = _shape(op.results[0].type)
    m = _ELEMENTS.search(str(op))
    body = m.group(1).strip() if m else ""
    count = int(np.prod(shape))
    if body.startswith('"0x'):   # hex: (re, im) float32 pairs, little-endian
        raw = np.frombuffer(bytes.fromhex(body[3:-1]), dtype=np.complex64)
    else:
        tokens = [t for t in re.split(r"[\s,\[\]()]+", body) if t]
        bits = [np.array([int(t, 16)], np.uint32).view(np.float32)[0] if t.startswith("0x") else float(t)
                for t in tokens]
        pairs = np.array(bits, np.float32).reshape(-1, 2)
        raw = (pairs[:, 0] + 1j * pairs[:, 1]).astype(np.complex64)
    if raw.size not in (1, count):
        raise _refusal(op, "holds a complex constant pjrt-tt could not read")
    return (np.broadcast_to(raw, (count,)) if raw.size == 1 else raw).reshape(shape)


# --- types -----------------------------------------------------------------------------

def _etype(t: ir.Type) -> str:
    return str(ir.RankedTensorType(t).element_type) if isinstance(t, ir.RankedTensorType) else ""


def _is_complex(t: ir.Type) -> bool:
    return _etype(t) == COMPLEX


def _shape(t: ir.Type) -> list:
    return list(ir.RankedTensorType(t).shape)


def _planes_type(shape: list) -> ir.Type:
    return ir.RankedTensorType.get([2, *shape], ir.F32Type.get())


def _inner_complex(op) -> bool:
    for region in op.regions:
        for block in region.blocks:
            if any(_is_complex(a.type) for a in block.arguments):
                return True
            for inner in block.operations:
                inner = inner.operation
                if any(_is_complex(r.type) for r in inner.results) or _inner_complex(inner):
                    return True
    return False


def _refusal(op, why: str) -> Unimplemented:
    where = describe_location(op.location)
    return Unimplemented(
        f"`{op.name}`{' at ' + where if where else ''} {why}: the chip has no complex types, and "
        f"pjrt-tt carries complex64 as pairs of float32 values only through the ops "
        f"docs/numerics.md (\"complex64\") lists. Compute this part on the CPU, or write it "
        f"with real and imaginary parts (jnp.real / jnp.imag)")
