"""Fusion: the ttnn op a model writer would pick for what jax emits for common layers.

Runs on the ttnn program before dead-op elimination. Each rule looks at one op (the
root of a pattern), walks its operands back through the ops jax's decomposition became,
and, when the pattern matches, replaces the root by the fused op (same result value, so
consumers are untouched); the ops it absorbed die and are dropped. Loop bodies and
case branches are fused the same way, each on its own.

Safety: a pattern is fused only if every absorbed intermediate is used by nothing but
the pattern (and is not a program output), and all shapes are the ones the fused op
computes (statistics broadcast along the last dim, weights / biases along it).

Rules, in order:
  gelu      x*0.5*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3)))  -> ttnn.gelu(x, variant=Tanh)
            x*0.5*(1+erf(x/sqrt(2))), x*0.5*erfc(-x/sqrt(2)) -> ttnn.gelu(x)  (erf, erfc: jax's
            composites, see pjrt_tt.jax_plugin)
  softmax   exp(x - max(x)) / sum(exp(x - max(x)))        -> ttnn.softmax(x, dim=-1)
  norms     (x-E[x]) * rsqrt(Var[x]+eps) [*g] [+b]        -> ttnn.layer_norm(x, epsilon=, weight=, bias=)
            x * rsqrt(E[x^2]+eps) [*g]                   -> ttnn.rms_norm(x, epsilon=, weight=)
  norm affine typecast(norm(x)) * g [+ b] (level 1; also torch's float32 product between casts)
                                                         -> typecast(norm(x, weight=g, bias=b))
  linear    matmul(a, w) + b                              -> ttnn.linear(a, w, bias=b)
            (also b over the trailing dims a reshape splits N into: flax DenseGeneral)
  conv bn   conv2d(x, w) * s [+ b] (per channel, level 1)  -> ttnn.conv2d(x, w * s, bias_tensor=b)
  conv bias conv2d(...) + b                                -> ttnn.conv2d(..., bias_tensor=b)
  conv relu relu(conv2d(...)) (level 1)                    -> ttnn.conv2d(..., conv_config=Conv2dConfig(activation=RELU))
  act       relu|gelu|silu|tanh|sigmoid(linear(...))      -> ttnn.linear(..., activation=)
  add relu  relu(a + b) (level 1)                        -> ttnn.add(a, b, activations=[UnaryWithParam(RELU)])
  sdpa      softmax(q k^T * s [+ mask]) v (bf16, head_dim % 32 == 0)
                                                         -> ttnn.transformer.scaled_dot_product_attention
            (level 1: also torch's form, batch and heads flattened, k / v repeated for grouped
            heads, the scale an argument, the softmax in float32 between typecasts; and the
            jax forms with the mask a where(keep, s, -big) and the softmax in float32 between casts)
  rotary    x * cos + concat(-x[..., D/2:], x[..., :D/2]) * sin (level 1; HF's rotate_half
            form, one cos / sin table for all batch rows and heads, bf16, D % 64 == 0,
            S % 32 == 0)                                -> ttnn.experimental.rotary_embedding
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np

from pjrt_tt.compile_context import CompileContext
from pjrt_tt.passes.liveness import prune_dead
from pjrt_tt.program import HOST_READ, STRUCTURED, Attr, Construct, Op, Program, ScalarType, ShapeArg, TensorType, Value, While

FLOATS = ("float32", "bfloat16")


def _num(a) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool)


def _close(a, b, rel=1e-3) -> bool:
    return _num(a) and abs(a - b) <= rel * abs(b)


class NoMatch(Exception):
    pass


def need(cond: bool):
    if not cond:
        raise NoMatch


class Graph:
    """Producers and users of the values of one op list (a program's, or a block's:
    a nested block's outer values count as operands of the While / Switch holding it)."""

    def __init__(self, ops: list, outputs: set[int], counter: list[int], level: int = 0):
        self.level = level   # the optimization level: the torch forms are level 1's
        self.prod: dict[int, Op] = {op.result.id: op for op in ops if isinstance(op, Op)}
        self.users: dict[int, list] = defaultdict(list)
        for op in ops:
            for v in op.operands():
                self.users[v.id].append(op)
        self.outputs = outputs
        self.counter = counter

    def new_value(self, t: TensorType) -> Value:
        self.counter[0] += 1
        return Value(self.counter[0], t)


class Match:
    """One attempt to match a pattern rooted at `root`: records the ops it absorbs."""

    def __init__(self, g: Graph, root: Op):
        self.g, self.root, self.inner = g, root, [root]

    def op(self, v, *fns) -> Op:
        """The producer of v, one of fns; it joins the absorbed ops."""
        need(isinstance(v, Value))
        p = self.g.prod.get(v.id)
        need(p is not None and p.fn in fns)
        if p not in self.inner:
            self.inner.append(p)
        return p

    def through(self, v, record=True):
        """Look through reshapes that only add or drop unit dims (the lowering's
        keepdim / broadcast reshapes); with `record` they join the absorbed ops."""
        while isinstance(v, Value):
            p = self.g.prod.get(v.id)
            if p is None or p.fn != "reshape" or _squeeze(p.args[0].type.shape) != _squeeze(v.type.shape):
                break
            if record:
                self.inner.append(p)
            v = p.args[0]
        return v

    def through_rows(self, v):
        """Look through one reshape that keeps the last dim (rows regrouped: the batch
        reshapes around a dot_general), recording it."""
        p = self.g.prod.get(v.id) if isinstance(v, Value) else None
        if p is not None and p.fn == "reshape" and p.args[0].type.shape[-1:] == v.type.shape[-1:]:
            self.inner.append(p)
            return p.args[0]
        return v

    def fn(self, v) -> str | None:
        """The name of v's producer (after unit reshapes), without absorbing anything."""
        p = self.g.prod.get(self.through(v, False).id) if isinstance(v, Value) else None
        return p.fn if p is not None else None

    def binary(self, v, fn):
        p = self.op(v, fn)
        need(len(p.args) == 2 and not p.kwargs)
        return p.args

    def safe(self) -> bool:
        ids = {op.result.id for op in self.inner}
        for op in self.inner:
            if op is self.root:
                continue
            if op.result.id in self.g.outputs:
                return False
            if any(u.result.id not in ids for u in self.g.users[op.result.id]):
                return False
        return True


def _squeeze(shape) -> tuple:
    return tuple(d for d in shape if d != 1)


# How deep _factors / _terms look into a product or sum: the patterns need 3 levels (gelu's
# cube); the bound keeps a long chain of adds from costing a walk per op down the whole
# chain (quadratic) or recursing as deep as the chain (Python's recursion limit).
MAX_EXPRESSION_DEPTH = 8


def _factors(m: Match, v, top=True, depth=0) -> tuple[list, float]:
    """v as a product: (factors, scalar). A factor is a Value or ("inv", Value) for a divisor."""
    need(depth < MAX_EXPRESSION_DEPTH)
    p = m.g.prod.get(v.id) if isinstance(v, Value) else None
    if p is None or p.fn not in ("multiply", "divide") or p.kwargs or len(p.args) != 2:
        need(not top)
        return [v], 1.0
    if not top and (p.result.id in m.g.outputs or len(m.g.users[v.id]) != 1):
        return [v], 1.0  # a shared value is a leaf
    m.op(v, p.fn)
    a, b = p.args
    fa, sa = _factors(m, a, False, depth + 1) if isinstance(a, Value) else ([], float(a))
    if p.fn == "divide":
        if _num(b):
            need(b != 0)
            return fa, sa / b
        return fa + [("inv", b)], sa
    fb, sb = _factors(m, b, False, depth + 1) if isinstance(b, Value) else ([], float(b))
    return fa + fb, sa * sb


def _terms(m: Match, v, top=True, depth=0) -> tuple[list, float]:
    """v as a sum: (terms, scalar)."""
    need(depth < MAX_EXPRESSION_DEPTH)
    p = m.g.prod.get(v.id) if isinstance(v, Value) else None
    if p is None or p.fn != "add" or p.kwargs or len(p.args) != 2 or \
            (not top and (p.result.id in m.g.outputs or len(m.g.users[v.id]) != 1)):
        need(not top)
        return [v], 0.0  # a shared value is a leaf
    m.op(v, "add")
    out, s = [], 0.0
    for a in p.args:
        if _num(a):
            s += float(a)
        else:
            t, sa = _terms(m, a, False, depth + 1)
            out, s = out + t, s + sa
    return out, s


def _same(m: Match, a, b) -> bool:
    return isinstance(a, Value) and isinstance(b, Value) and m.through(a, False).id == m.through(b, False).id


def _last_dim_reduce(m: Match, v, fn: str) -> Value:
    """v = fn(x, dim=[last], keepdim=True) (through unit reshapes); returns x."""
    p = m.op(m.through(v), fn)
    x = p.args[0]
    r = len(x.type.shape)
    dims = p.kwargs.get("dim", p.args[1] if len(p.args) > 1 else None)
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    need(r >= 1 and [d % r for d in dims] == [r - 1] and p.kwargs.get("keepdim", False))
    return x


def _mean_of(m: Match, v) -> Value:
    """v = E[x] over the last dim: mean(x) or sum(x) / N or sum(x) * (1/N)."""
    v = m.through(v)
    p = m.g.prod.get(v.id)
    need(p is not None)
    if p.fn == "mean":
        return _last_dim_reduce(m, v, "mean")
    fs, s = _factors(m, v)
    need(len(fs) == 1 and isinstance(fs[0], Value))
    x = _last_dim_reduce(m, fs[0], "sum")
    need(_close(s, 1.0 / x.type.shape[-1]))
    return x


def _square_of(m: Match, v) -> Value:
    v = m.through(v)
    p = m.g.prod.get(v.id)
    need(p is not None)
    if p.fn == "square":
        return m.op(v, "square").args[0]
    if p.fn == "pow":
        a, e = m.binary(v, "pow")
        need(_num(e) and e == 2)
        return a
    a, b = m.binary(v, "multiply")
    need(_same(m, a, b))
    return a


def _one_of(m: Match, v) -> bool:
    """v is the constant 1 (a scalar or a ttnn.full of 1)."""
    if _num(v):
        return v == 1
    if m.fn(v) == "full" and m.g.prod[v.id].args[1:2] == (1.0,):
        m.op(v, "full")
        return True
    return False


def _sigmoid_of(m: Match, v) -> Value:
    """v = sigmoid(y) as ttnn.sigmoid or 1 / (1 + exp(-y)); returns y."""
    need(isinstance(v, Value))
    if m.fn(v) == "sigmoid":
        p = m.op(m.through(v), "sigmoid")
        need(not p.kwargs)
        return p.args[0]
    if m.fn(v) == "reciprocal":
        den = m.op(v, "reciprocal").args[0]
    else:
        one, den = m.binary(v, "divide")
        need(_one_of(m, one))
    terms, c = _terms(m, den)
    need(len(terms) == 1 and c == 1)
    return m.op(m.op(terms[0], "exp").args[0], "neg").args[0]


def _stat_shape(x: Value, v) -> bool:
    return isinstance(v, Value) and tuple(v.type.shape) == tuple(x.type.shape[:-1]) + (1,)


def _row(x: Value, v) -> bool:
    """v broadcasts along the last dim of x only (a weight or bias)."""
    s = tuple(v.type.shape) if isinstance(v, Value) else ()
    return bool(s) and s[-1] == x.type.shape[-1] and all(d == 1 for d in s[:-1]) and len(s) <= len(x.type.shape)


# --- rules: each returns the replacement op for `root`, or raises NoMatch ------------

def _gelu(m: Match) -> Op:
    root = m.root
    fs, s = _factors(m, root.result)
    need(len(fs) == 2 and _close(s, 0.5) and all(isinstance(f, Value) for f in fs))
    for x, t in (fs, fs[::-1]):
        try:
            if m.fn(t) == "erfc":   # jax: 0.5 * x * erfc(-x * sqrt(1/2))
                u = m.op(m.through(t), "erfc").args[0]
                uf, us = _factors(m, u)
                need(len(uf) == 1 and isinstance(uf[0], Value))
                if m.fn(uf[0]) == "neg" and len(m.g.users[uf[0].id]) == 1:
                    uf, us = [m.op(m.through(uf[0]), "neg").args[0]], -us
                need(_close(us, -1 / math.sqrt(2)) and _same(m, uf[0], x) and x.type == root.result.type)
                return Op("gelu", (x,), {}, root.result, root.origin)
            terms, c = _terms(m, t)
            need(len(terms) == 1 and _close(c, 1.0))
            inner = m.g.prod.get(terms[0].id)
            need(inner is not None and inner.fn in ("tanh", "erf"))
            u = m.op(terms[0], inner.fn).args[0]
            uf, us = _factors(m, u)
            need(len(uf) == 1)
            if inner.fn == "erf":
                need(_close(us, 1 / math.sqrt(2)) and _same(m, uf[0], x))
                kwargs = {}  # ttnn.gelu's default variant (Accurate) is the erf form
            else:
                need(_close(us, math.sqrt(2 / math.pi)))
                at, ac = _terms(m, uf[0])
                need(ac == 0 and len(at) == 2)
                xs = [a for a in at if _same(m, a, x)]
                need(len(xs) == 1)
                cube = next(a for a in at if a is not xs[0])
                cf, cs = _factors(m, cube)
                need(_close(cs, 0.044715) and len(cf) == 3 and all(_same(m, f, x) for f in cf))
                kwargs = {"variant": Attr("GeluVariant.Tanh")}
            need(x.type == root.result.type)
            return Op("gelu", (x,), kwargs, root.result, root.origin)
        except NoMatch:
            continue
    raise NoMatch


def _softmax(m: Match) -> Op:
    e, s = m.binary(m.root.result, "divide")
    need(isinstance(e, Value) and isinstance(s, Value) and _stat_shape(e, s))
    sv = m.through(s)
    if m.fn(sv) == "typecast":  # bf16: jax sums in f32 (typecast, sum, typecast back)
        sv = m.op(sv, "typecast").args[0]
    summed = _last_dim_reduce(m, sv, "sum")
    if summed.id != e.id:
        need(m.op(summed, "typecast").args[0].id == e.id)
    d = m.op(e, "exp").args[0]
    x = d
    p = m.g.prod.get(d.id)
    if p is not None and p.fn == "subtract" and isinstance(p.args[1], Value):
        a, mx = m.binary(d, "subtract")
        need(_stat_shape(a, mx))
        mx = m.through(mx)
        q = m.g.prod.get(mx.id)
        if q is not None and q.fn == "maximum" and _num(q.args[1]) and q.args[1] == -math.inf:
            mx = m.through(m.op(mx, "maximum").args[0])  # jax's max(reduce_max, -inf)
        need(_last_dim_reduce(m, mx, "max").id == a.id)
        x = a
    need(x.type == m.root.result.type and x.type.dtype in FLOATS)
    return Op("softmax", (x,), {"dim": -1}, m.root.result, m.root.origin)


def _norm(m: Match) -> Op:
    root = m.root
    out = root.result.type
    need(out.dtype in FLOATS)
    beta = None
    if root.fn == "add":
        terms, c = _terms(m, root.result)
        need(c == 0 and len(terms) == 2)
        rows = [t for t in terms if t.type.shape != out.shape]
        need(len(rows) == 1)
        beta = rows[0]
        body = next(t for t in terms if t is not beta)
    else:
        body = root.result
    fs, s = _factors(m, body)
    need(_close(s, 1.0))
    inv = [f for f in fs if isinstance(f, tuple) or m.fn(f) == "rsqrt"]
    need(len(inv) == 1)
    rest = [f for f in fs if f is not inv[0]]
    need(all(isinstance(f, Value) for f in rest))
    full = [f for f in rest if tuple(f.type.shape) == out.shape]
    need(len(full) == 1)
    centred = full[0]
    gammas = [f for f in rest if f is not centred]
    need(len(gammas) <= 1 and (beta is None or _row(centred, beta)) and all(_row(centred, g) for g in gammas))
    # the inverse std: rsqrt(var + eps), or a divisor sqrt(var + eps)
    if isinstance(inv[0], tuple):
        need(tuple(inv[0][1].type.shape) == tuple(out.shape[:-1]) + (1,))
        arg = m.op(m.through(inv[0][1]), "sqrt").args[0]
    else:
        need(_stat_shape(centred, inv[0]))
        arg = m.op(m.through(inv[0]), "rsqrt").args[0]
    terms, eps = _terms(m, m.through(arg))
    new = []
    if len(terms) == 2 and eps == 0:   # torch: eps is a rank-0 argument, not a constant
        arg_eps = [t for t in terms if _argument_scalar(m, t) is not None]
        need(len(arg_eps) == 1)
        eps = m.g.new_value(ScalarType("float"))
        new.append(Op(HOST_READ, (_argument_scalar(m, arg_eps[0]),), {}, eps, root.origin))
        terms = [t for t in terms if t is not arg_eps[0]]
    else:
        need(len(terms) == 1 and eps > 0)
    var = m.through(terms[0])
    # centred = x - mean (layer norm) or x (- 0.0) (rms norm)
    x, mean = centred, None
    p = m.g.prod.get(centred.id)
    if p is not None and p.fn == "subtract" and not p.kwargs:
        a, b = m.binary(centred, "subtract")
        if _num(b) and b == 0:
            x = a
        else:
            need(_stat_shape(a, b))
            x, mean = a, m.through(b)
            need(_mean_of(m, mean).id == x.id)
    need(x.type == out)
    if mean is None:  # rms: var = E[x^2]
        need(_square_of(m, _mean_of(m, var)).id == x.id)
        fused = "rms_norm"
    else:
        q = m.g.prod.get(var.id)
        if q is not None and q.fn == "maximum" and _num(q.args[1]) and q.args[1] == 0:
            var = m.through(m.op(var, "maximum").args[0])
        q = m.g.prod.get(var.id)
        if q is not None and q.fn == "subtract":  # E[x^2] - E[x]^2
            e2, mm = m.binary(var, "subtract")
            need(_square_of(m, _mean_of(m, e2)).id == x.id)
            need(_square_of(m, mm).id == mean.id or m.through(_square_of(m, mm)).id == mean.id)
        else:  # E[(x - mean)^2]
            c = _square_of(m, _mean_of(m, var))
            if c.id != centred.id:
                a, b = m.binary(c, "subtract")
                need(a.id == x.id and m.through(b).id == mean.id)
        fused = "layer_norm"
    kwargs = {"epsilon": eps if new else float(eps)}
    if gammas:
        kwargs["weight"] = gammas[0]
    if beta is not None:
        kwargs["bias"] = beta
    return new + [Op(fused, (x,), kwargs, root.result, root.origin)]


def _norm_affine(m: Match) -> list[Op]:
    """A norm computed in float32, cast back, then scaled and shifted (model code's
    `norm(x.astype(f32)).astype(x.dtype) * g [+ b]`; HF's `weight * h.to(dtype)`, which
    torch_xla computes in float32 between casts and rounds back):
      typecast(norm(x)) * g [+ b]                 -> typecast(norm(x, weight=g, bias=b))
      typecast(f32(typecast(norm(x))) * g, dtype) -> typecast(norm(x, weight=g), dtype)
    the affine in the norm's float32 (one rounding to the narrow dtype instead of two or
    three). Level 1 (the jax forms without the cast are the norm rule's)."""
    need(m.g.level >= 1)
    root, out = m.root, m.root.result.type
    beta, prod, final = None, root.result, None
    if root.fn == "typecast":
        need(len(root.args) >= 1 and isinstance(root.args[0], Value) and m.fn(root.args[0]) == "multiply")
        final, prod = root, root.args[0]
    elif root.fn == "add":
        a, b = m.binary(root.result, "add")
        for p, q in ((a, b), (b, a)):
            if isinstance(p, Value) and m.fn(p) == "multiply" and isinstance(q, Value) and _row(root.result, q):
                prod, beta = p, q
                break
        else:
            raise NoMatch
    a, b = m.binary(prod, "multiply")
    for t, g in ((a, b), (b, a)):
        if isinstance(t, Value) and m.fn(_widened(m, t, record=False)) == "typecast" and isinstance(g, Value) \
                and _row(prod, g):
            break
    else:
        raise NoMatch
    cast = m.op(_widened(m, t), "typecast")
    norm = m.op(cast.args[0], "layer_norm", "rms_norm")
    need(not {"weight", "bias"} & set(norm.kwargs) and t.type == prod.type)
    need(all(v.type.dtype in FLOATS for v in (g,) + ((beta,) if beta is not None else ())))
    if final is None:
        need(cast.result.type == out and prod.type == out)
        final = cast
    else:
        need(prod.type.shape == out.shape and norm.result.type.shape == out.shape)
    kwargs = dict(norm.kwargs, weight=g)
    if beta is not None:
        kwargs["bias"] = beta
    wide = m.g.new_value(norm.result.type)
    return [dataclasses.replace(norm, kwargs=kwargs, result=wide, origin=root.origin),
            Op("typecast", (wide,) + tuple(final.args[1:]), dict(final.kwargs), root.result, root.origin)]

def _argument_scalar(m: Match, v) -> Value | None:
    """v = a one-element float program argument (through reshapes), at level 1: what torch
    passes for a Python float such as an epsilon (torch_xla lifts scalars other than 0 and
    1 to arguments). The fused op takes it as a number read on the host: a host.read that
    const-eval runs once per argument buffer (const_eval.py)."""
    if m.g.level < 1 or not isinstance(v, Value):
        return None
    while True:
        p = m.g.prod.get(v.id)
        if p is None:
            break
        if p.fn != "reshape":
            return None
        v = p.args[0]
    t = v.type
    return v if isinstance(t, TensorType) and t.dtype in FLOATS and math.prod(t.shape) == 1 else None


LINEAR_KWARGS = {"dtype", "compute_kernel_config", "memory_config"}  # matmul's, which linear takes too


def _split_bias(m: Match, mm: Value, bias: Value, n: int) -> int | None:
    """When mm = reshape(product [M, N]) splits N into trailing dims (DenseGeneral: [B, S,
    heads, head_dim]) and bias spans exactly those dims (leading 1s), how many there are."""
    shape, bshape = tuple(mm.type.shape), tuple(bias.type.shape)
    for k in range(2, min(len(shape), len(bshape)) + 1):
        if math.prod(shape[-k:]) == n:
            ok = bshape[-k:] == shape[-k:] and all(d == 1 for d in bshape[:-k])
            return k if ok else None
    return None


def _linear(m: Match) -> list[Op]:
    root = m.root
    a, b = m.binary(root.result, "add")
    for mm, bias in ((a, b), (b, a)):
        if not (isinstance(mm, Value) and isinstance(bias, Value)) or mm.type.shape != root.result.type.shape:
            continue  # (the add must not broadcast the product)
        q = m.g.prod.get(mm.id)
        split = q is not None and q.fn == "reshape" and m.fn(q.args[0]) == "matmul" \
            and m.g.prod.get(q.args[0].id) is not None and m.g.prod[q.args[0].id].fn == "matmul"
        src = q.args[0] if split else m.through_rows(mm)
        p = m.g.prod.get(src.id)
        if p is None or p.fn != "matmul" or set(p.kwargs) - LINEAR_KWARGS or len(p.args) != 2:
            continue
        x, w = p.args
        n = w.type.shape[-1]
        if len(w.type.shape) != 2 or tuple(src.type.shape[-1:]) != (n,) or bias.type.dtype != src.type.dtype:
            continue
        new = []
        if _row(root.result, bias):
            bias = m.through(bias, False)
            if len(bias.type.shape) > 2:
                continue
        elif split and _split_bias(m, mm, bias, n):
            flat = m.g.new_value(dataclasses.replace(bias.type, shape=(n,)))
            new.append(Op("reshape", (m.through(bias, False), ShapeArg((n,))), {}, flat, root.origin))
            bias = flat
        else:
            continue
        if split:
            m.inner.append(q)
        m.op(src, "matmul")
        if src.type == root.result.type:
            return new + [Op("linear", (x, w), {**p.kwargs, "bias": bias}, root.result, root.origin)]
        lin = m.g.new_value(src.type)
        return new + [Op("linear", (x, w), {**p.kwargs, "bias": bias}, lin, root.origin),
                      Op("reshape", (lin, ShapeArg(root.result.type.shape)), {}, root.result, root.origin)]
    raise NoMatch


def _conv_bias(m: Match) -> list[Op]:
    """conv2d(...) + b (b along the channels, e.g. flax Conv) -> conv2d(..., bias_tensor=b)
    with b as (1,1,1,O) on device (measured form)."""
    root = m.root
    a, b = m.binary(root.result, "add")
    for y, bias in ((a, b), (b, a)):
        if not (isinstance(y, Value) and isinstance(bias, Value)) or m.fn(m.through_rows(y)) != "conv2d":
            continue
        src = m.through_rows(y)
        p = m.g.prod[src.id]
        o = src.type.shape[-1]
        if "bias_tensor" in p.kwargs or not _row(root.result, bias) or bias.type.dtype != src.type.dtype \
                or y.type.shape != root.result.type.shape:
            continue
        m.op(src, "conv2d")
        new = []
        if tuple(bias.type.shape) != (1, 1, 1, o):
            b4 = m.g.new_value(dataclasses.replace(bias.type, shape=(1, 1, 1, o)))
            new.append(Op("reshape", (bias, ShapeArg((1, 1, 1, o))), {}, b4, root.origin))
            bias = b4
        conv = dict(p.kwargs, bias_tensor=bias)
        if src.type == root.result.type:
            return new + [Op("conv2d", p.args, conv, root.result, root.origin)]
        out = m.g.new_value(src.type)
        return new + [Op("conv2d", p.args, conv, out, root.origin),
                      Op("reshape", (out, ShapeArg(root.result.type.shape)), {}, root.result, root.origin)]
    raise NoMatch


def _conv_affine(m: Match) -> list[Op]:
    """conv2d(x, w) * s [+ b], s and b per output channel (a batch norm at inference, as in
    ResNet) -> conv2d(x, w * s, bias_tensor=b): the scale is folded into the weight as the
    framework passes it, before its layout conversions, so const-eval prepares the scaled
    weight once per (w, s) (const_eval.py). Level 1."""
    need(m.g.level >= 1)
    root, prod = m.root, m.g.prod
    out = root.result.type
    if root.fn == "add":
        a, b = root.args if len(root.args) == 2 and not root.kwargs else (None, None)
        pairs = [(a, b), (b, a)]
    else:
        pairs = [(root.result, None)]
    for scaled, bias in pairs:
        if not isinstance(scaled, Value) or (bias is not None and not (isinstance(bias, Value)
                                                                       and _row(root.result, bias))):
            continue
        mul = prod.get(scaled.id)
        if mul is None or mul.fn != "multiply" or mul.kwargs or len(mul.args) != 2 or scaled.type.shape != out.shape:
            continue
        for y, sv in (mul.args, mul.args[::-1]):
            if not (isinstance(y, Value) and isinstance(sv, Value) and _row(scaled, sv)) or y.type != scaled.type:
                continue
            src = y
            q = prod.get(y.id)
            if q is not None and q.fn == "reshape" and q.args[0].type.shape[-1:] == y.type.shape[-1:]:
                src = q.args[0]
            conv = prod.get(src.id)
            s0 = _source(m, sv)
            if conv is None or conv.fn != "conv2d" or "bias_tensor" in conv.kwargs or s0 is None:
                continue
            chain, w0, axis = _weight_chain(m, conv.kwargs.get("weight_tensor"))
            o = src.type.shape[-1]
            if w0 is None or w0.type.shape[axis] != o or s0.type.dtype != w0.type.dtype or \
                    math.prod(s0.type.shape) != o or (bias is not None and bias.type.dtype != src.type.dtype):
                continue
            # committed: record what is absorbed
            m.inner += [mul, conv] + ([q] if src is not y else [])
            new = []
            s_shape = tuple(o if d == axis else 1 for d in range(len(w0.type.shape)))
            s4 = m.g.new_value(dataclasses.replace(s0.type, shape=s_shape))
            new.append(Op("reshape", (s0, ShapeArg(s_shape)), {}, s4, root.origin))
            w = m.g.new_value(w0.type)
            new.append(Op("multiply", (w0, s4), {}, w, root.origin))
            for op in chain:   # the weight's conversions, on the scaled weight
                v = m.g.new_value(op.result.type)
                new.append(dataclasses.replace(op, args=(w,) + tuple(op.args[1:]), result=v))
                w = v
            kwargs = dict(conv.kwargs, weight_tensor=w)
            if bias is not None:
                bias = m.through(bias, False)
                if tuple(bias.type.shape) != (1, 1, 1, o):
                    b4 = m.g.new_value(dataclasses.replace(bias.type, shape=(1, 1, 1, o)))
                    new.append(Op("reshape", (bias, ShapeArg((1, 1, 1, o))), {}, b4, root.origin))
                    bias = b4
                kwargs["bias_tensor"] = bias
            if src.type == out:
                return new + [Op("conv2d", conv.args, kwargs, root.result, root.origin)]
            r = m.g.new_value(src.type)
            return new + [Op("conv2d", conv.args, kwargs, r, root.origin),
                          Op("reshape", (r, ShapeArg(out.shape)), {}, root.result, root.origin)]
    raise NoMatch


CONV_RELU = Construct("Conv2dConfig", (("activation", Construct("UnaryWithParam", (), (Attr("UnaryOpType.RELU"),))),))


def _conv_relu(m: Match) -> list[Op]:
    """relu(conv2d(...)) (ttnn.relu or jax's maximum(y, 0)) -> conv2d(..., conv_config=
    Conv2dConfig(activation=UnaryWithParam(RELU))): the relu applied as the conv writes its
    result. Level 1."""
    need(m.g.level >= 1)
    root = m.root
    if root.fn == "maximum":
        need(len(root.args) == 2 and _num(root.args[1]) and root.args[1] == 0 and not root.kwargs)
    else:
        need(len(root.args) == 1 and not root.kwargs)
    y = root.args[0]
    need(isinstance(y, Value) and y.type == root.result.type)
    src = m.through_rows(y)
    conv = m.op(src, "conv2d")
    need("conv_config" not in conv.kwargs and src.type.dtype == y.type.dtype)
    kwargs = dict(conv.kwargs, conv_config=CONV_RELU)
    if src.type == root.result.type:
        return [Op("conv2d", conv.args, kwargs, root.result, root.origin)]
    out = m.g.new_value(src.type)
    return [Op("conv2d", conv.args, kwargs, out, root.origin),
            Op("reshape", (out, ShapeArg(root.result.type.shape)), {}, root.result, root.origin)]


ADD_RELU = [Construct("UnaryWithParam", (), (Attr("UnaryOpType.RELU"),))]


def _add_relu(m: Match) -> list[Op]:
    """relu(a + b) (a ResNet block's end: the residual add) -> ttnn.add(a, b, activations=
    [UnaryWithParam(RELU)]): the relu applied as the add writes its result, one pass over
    the tensor instead of two. Same-shape float operands (what mock was checked on). Level 1."""
    need(m.g.level >= 1)
    root = m.root
    if root.fn == "maximum":
        need(len(root.args) == 2 and _num(root.args[1]) and root.args[1] == 0 and not root.kwargs)
    else:
        need(len(root.args) == 1 and not root.kwargs)
    a, b = m.binary(root.args[0], "add")
    t = root.result.type
    need(t.dtype in FLOATS and all(isinstance(v, Value) and v.type == t for v in (a, b, root.args[0])))
    return [Op("add", (a, b), {"activations": ADD_RELU}, root.result, root.origin)]


def _source(m: Match, v) -> Value | None:
    """v as a program argument or constant seen through reshapes (None if computed)."""
    while isinstance(v, Value):
        p = m.g.prod.get(v.id)
        if p is None:
            return v
        if p.fn != "reshape":
            return None
        v = p.args[0]
    return None


def _weight_chain(m: Match, w) -> tuple[list, Value | None, int]:
    """A conv weight as (the permute / to_layout / typecast ops from the argument to it, in
    order; the argument; which of its axes is the output channel axis, dim 0 of OIHW)."""
    chain, axis = [], 0
    while isinstance(w, Value):
        p = m.g.prod.get(w.id)
        if p is None:
            return chain[::-1], w, axis
        if p.fn == "permute" and not p.kwargs:
            axis = list(p.args[1])[axis]
        elif p.fn not in ("to_layout", "typecast"):
            return [], None, 0
        chain.append(p)
        w = p.args[0]
    return [], None, 0


ACTIVATIONS = {"relu": "relu", "silu": "silu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "gelu"}


def _activation(m: Match) -> list[Op]:
    """relu|gelu|silu|tanh|sigmoid(linear) as ttnn ops, and as jax writes relu
    (maximum(y, 0)) and silu (y * sigmoid(y))."""
    root = m.root
    if root.fn == "maximum":
        need(len(root.args) == 2 and _num(root.args[1]) and root.args[1] == 0 and not root.kwargs)
        y, act = root.args[0], "relu"
    elif root.fn == "multiply":
        need(len(root.args) == 2 and not root.kwargs)
        for y, sg in (root.args, root.args[::-1]):
            try:
                need(isinstance(y, Value) and _same(m, _sigmoid_of(m, sg), y))
                break
            except NoMatch:
                continue
        else:
            raise NoMatch
        act = "silu"
    else:
        # only the plain op: linear's "gelu" is ttnn.gelu's Accurate (erf) variant, a
        # gelu(variant=Tanh) stays a gelu
        need(len(root.args) == 1 and not root.kwargs)
        y, act = root.args[0], ACTIVATIONS[root.fn]
    src = m.through_rows(y)
    p = m.op(src, "linear", "matmul") if m.g.level >= 1 else m.op(src, "linear")
    need("activation" not in p.kwargs and len(p.args) == 2 and not set(p.kwargs) - LINEAR_KWARGS - {"bias"})
    need(p.fn == "linear" or len(p.args[1].type.shape) == 2)   # (linear's weight is a matrix)
    kwargs = {**p.kwargs, "activation": act}
    if src.type == root.result.type:
        return [Op("linear", p.args, kwargs, root.result, root.origin)]
    lin = m.g.new_value(src.type)
    return [Op("linear", p.args, kwargs, lin, root.origin),
            Op("reshape", (lin, ShapeArg(root.result.type.shape)), {}, root.result, root.origin)]


def _const(m: Match, v) -> float:
    """The value of a scalar computed on device from a constant (jax computes 1/sqrt(d)
    that way): full -> sqrt / rsqrt / reciprocal / typecast / reshape chains (walked
    without recursion: the chain may be as long as the program)."""
    ops = {"reshape": lambda a: a, "typecast": lambda a: a, "sqrt": math.sqrt,
           "rsqrt": lambda a: 1 / math.sqrt(a), "reciprocal": lambda a: 1 / a}
    chain = []   # the ops from v down to the constant
    while not _num(v):
        p = m.g.prod.get(v.id) if isinstance(v, Value) else None
        need(p is not None and math.prod(v.type.shape) == 1)
        m.op(v, p.fn)
        if p.fn == "full":
            need(_num(p.args[1]))
            v = p.args[1]
            break
        chain.append(p)
        v = p.args[0]
    x = float(v)
    for p in reversed(chain):   # from the constant up to v
        if p.fn == "typecast" and p.result.type.dtype == "bfloat16":
            import ml_dtypes
            x = float(np.float32(x).astype(ml_dtypes.bfloat16))
            continue
        need(p.fn in ops)
        x = ops[p.fn](x)
    return x


def _scaled(m: Match, v) -> tuple[Value, float]:
    """v = y * c or y / c with c a constant: (y, c or 1/c); else (v, 1)."""
    if m.fn(v) in ("multiply", "divide") and len(m.g.users[v.id]) == 1:
        p = m.g.prod[v.id]
        for y, c in ((p.args[0], p.args[1]), (p.args[1], p.args[0]) if p.fn == "multiply" else (None, None)):
            if isinstance(y, Value) and tuple(y.type.shape) == tuple(v.type.shape):
                try:
                    scale = _const(m, c)
                except NoMatch:
                    continue
                m.op(v, p.fn)
                return y, (scale if p.fn == "multiply" else 1 / scale)
    return v, 1.0


def _untranspose(m: Match, v, new: list, origin: str) -> Value:
    """v = permute(v0, perm) holds some [B,H,S,D] tensor with its last two dims swapped;
    returns that tensor, as v0 or a new permute of v0 (appended to `new`)."""
    p = m.op(v, "permute")
    perm = list(p.args[1])
    perm = perm[:-2] + [perm[-1], perm[-2]]
    src = p.args[0]
    if perm == sorted(perm):
        return src
    out = m.g.new_value(dataclasses.replace(src.type, shape=tuple(src.type.shape[i] for i in perm)))
    new.append(Op("permute", (src, perm), {}, out, origin))
    return out


def _uncast(m: Match, v):
    """v seen through unit reshapes and, at level 1, typecasts (not recorded)."""
    v = m.through(v, False)
    while m.g.level >= 1 and isinstance(v, Value) and m.g.prod.get(v.id) is not None \
            and m.g.prod[v.id].fn == "typecast":
        v = m.through(m.g.prod[v.id].args[0], False)
    return v


def _sdpa(m: Match) -> list[Op]:
    """out = softmax(scores) @ v, scores = (q @ k^T) * scale [+ mask], q/k/v [B,H,S,D]
    (also as flax writes it: q scaled first, and out^T = v^T @ softmax^T)."""
    root, new = m.root, []
    # (a compute_kernel_config data_formats gave the matmuls is theirs: SDPA keeps its default)
    need(set(root.kwargs) <= {"compute_kernel_config"} and len(root.args) == 2)
    a, b = root.args
    transposed = m.fn(_uncast(m, a)) != "softmax"
    if transposed:  # out^T = v^T @ P^T
        pt = m.op(b, "permute")
        r = len(b.type.shape)
        need(list(pt.args[1]) == list(range(r - 2)) + [r - 1, r - 2])
        pr, v = pt.args[0], _untranspose(m, a, new, root.origin)
    else:
        pr, v = a, b
    sm = m.through(pr)
    if m.g.level >= 1 and m.fn(sm) == "typecast":   # level 1: a float32 softmax between casts
        sm = _through_casts(m, sm)
    p = m.op(sm, "softmax")
    scores = p.args[0]
    if m.g.level >= 1 and m.fn(scores) == "typecast":
        scores = _through_casts(m, scores)
    selected = None   # level 1: where(keep, scores, -big) (flax's and model code's mask)
    if m.g.level >= 1 and m.fn(scores) == "where":
        keep, scores, fill = m.op(m.through(scores), "where").args
        f = m.g.prod.get(fill.id) if isinstance(fill, Value) else None
        need(isinstance(keep, Value) and f is not None and f.fn == "full" and _num(f.args[1]) and f.args[1] <= -1e4)
        selected = (keep, f)
    terms, c = _terms(m, scores) if m.fn(scores) == "add" else ([scores], 0.0)
    need(c == 0 and 1 <= len(terms) <= 2)
    mask = None
    if len(terms) == 2:
        mask = next((t for t in terms if m.fn(t) not in ("multiply", "divide", "matmul")), None)
        need(mask is not None)
        terms = [t for t in terms if t is not mask]
    logits, scale = _scaled(m, terms[0])
    qk = m.op(m.through(logits), "matmul")
    need(set(qk.kwargs) <= {"compute_kernel_config"})
    q, k = qk.args
    k = _untranspose(m, k, new, root.origin)
    if m.fn(q) == "permute" and len(m.g.users[q.id]) == 1:  # flax scales q before the einsum
        qp = m.g.prod[q.id]
        q0, qs = _scaled(m, qp.args[0])
        if qs != 1.0:
            m.op(q, "permute")
            scale *= qs
            out = m.g.new_value(q.type)
            new.append(Op("permute", (q0, list(qp.args[1])), {}, out, root.origin))
            q = out
    for t in (q, k, v):
        need(len(t.type.shape) == 4 and t.type.dtype == "bfloat16")
    (bq, hq, sq, d), (bk, hk, sk, dk) = q.type.shape, k.type.shape
    need(d % 32 == 0 and d == dk and bq == bk and hq % hk == 0 and k.type.shape == v.type.shape)
    want = (bq, hq, sq, d) if not transposed else (bq, hq, d, sq)
    need(tuple(root.result.type.shape) == want)
    kwargs = {"is_causal": False, "scale": float(scale)}
    if selected is not None:   # the kept positions as an additive mask of ttnn's shape
        need(mask is None and not transposed)
        keep, f = selected
        ks = (1,) * (4 - len(keep.type.shape)) + tuple(keep.type.shape)
        need(len(ks) == 4 and ks[0] in (1, bq) and ks[1] in (1, hq) and ks[2] in (1, sq) and ks[3] == sk)
        shape = (ks[0], ks[1], sq, sk)
        mtype = TensorType(shape, "bfloat16", "TILE")
        if tuple(keep.type.shape) != ks:
            k4 = m.g.new_value(dataclasses.replace(keep.type, shape=ks))
            new.append(Op("reshape", (keep, ShapeArg(ks)), {}, k4, root.origin))
            keep = k4
        zero, big, mask = (m.g.new_value(mtype) for _ in range(3))
        fkw = dict(f.kwargs, dtype=Attr("bfloat16"), layout=Attr("TILE_LAYOUT"))
        new += [Op("full", (ShapeArg(shape), 0.0), fkw, zero, root.origin),
                Op("full", (ShapeArg(shape), float(f.args[1])), fkw, big, root.origin),
                Op("where", (keep, zero, big), {}, mask, root.origin)]
    if mask is not None:
        mb, mh, ms, mk = mask.type.shape if len(mask.type.shape) == 4 else (0, 0, 0, 0)
        need(mb in (1, bq) and mh in (1, hq) and (ms, mk) == (sq, sk) and mask.type.dtype == "bfloat16")
        kwargs["attn_mask"] = mask
    fn = "transformer.scaled_dot_product_attention"
    if not transposed:
        return new + [Op(fn, (q, k, v), kwargs, root.result, root.origin)]
    out = m.g.new_value(dataclasses.replace(q.type, shape=(bq, hq, sq, d)))
    return new + [Op(fn, (q, k, v), kwargs, out, root.origin),
                  Op("permute", (out, [0, 1, 3, 2]), {}, root.result, root.origin)]


def _norm_rule(m):
    r = _norm(m)
    return r if isinstance(r, list) else [r]


def _through_casts(m: Match, v, want: str | None = None):
    """v seen through typecasts (recorded); `want`: the dtype the first one must come from."""
    while isinstance(v, Value) and m.fn(v) == "typecast" and m.g.prod.get(v.id) is not None \
            and m.g.prod[v.id].fn == "typecast":
        v = m.op(v, "typecast").args[0]
    return v


def _heads(m: Match, v3, transposed: bool = False):
    """A [B*H, S, D] operand of torch's attention bmm -> its [B, Hk, S, D] tensor and H / Hk:
    reshape(q4), reshape(permute(k4, swap last two)) (transposed), or either through the
    GQA repeat (reshape(repeat(reshape(k4 -> [B, Hk, 1, S, D]), [1, 1, n, 1, 1])))."""
    x = m.op(v3, "reshape").args[0]
    if transposed:
        p = m.op(x, "permute")
        r = len(p.args[0].type.shape)
        need(r == 4 and list(p.args[1]) == [0, 1, 3, 2])
        x = p.args[0]
    prod = m.g.prod
    p = prod.get(x.id)
    if p is not None and p.fn == "reshape" and prod.get(p.args[0].id) is not None \
            and prod[p.args[0].id].fn == "repeat":
        x5 = m.op(x, "reshape").args[0]
    elif p is not None and p.fn == "repeat":
        x5 = x
    else:
        need(len(x.type.shape) == 4)
        return x, 1
    r = m.op(x5, "repeat")
    reps = tuple(r.args[1].dims)
    need(len(reps) == 5 and reps[:2] == (1, 1) and reps[3:] == (1, 1))
    k4 = m.op(r.args[0], "reshape").args[0]
    need(len(k4.type.shape) == 4)
    b, hk, sk, d = k4.type.shape
    need(math.prod(x5.type.shape) == b * hk * reps[2] * sk * d)
    return k4, reps[2]


def _sdpa_torch(m: Match) -> list[Op]:
    """torch's attention (HF eager, aten's math SDPA) as torch_xla writes it: batch and heads
    flattened for the bmms, k and v repeated for grouped heads, the scale a constant or an
    argument, the softmax in float32 between typecasts:
      bmm(softmax(bmm(q, k^T) * scale [+ mask]), v) -> ttnn.transformer.scaled_dot_product_attention
    (ttnn's SDPA takes the grouped k / v as they are). Level 1."""
    need(m.g.level >= 1)
    root = m.root
    need(set(root.kwargs) <= {"compute_kernel_config"} and len(root.args) == 2)
    p3, v3 = root.args
    need(len(root.result.type.shape) == 3)
    p4 = m.op(p3, "reshape").args[0]
    soft = m.op(_through_casts(m, p4), "softmax")
    need(soft.kwargs.get("dim", -1) in (-1, 3))
    scores = _through_casts(m, soft.args[0])
    mask = None
    if m.fn(scores) == "add":
        a, b = m.binary(scores, "add")
        raw = [t for t in (a, b) if isinstance(t, Value) and t.type.shape == scores.type.shape]
        need(len(raw) >= 1)
        scores, mask = raw[0], (b if raw[0] is a else a)
        need(isinstance(mask, Value))
    scores = _through_casts(m, scores)
    new, scale = [], None
    if m.fn(scores) == "multiply":
        a, b = m.binary(scores, "multiply")
        for x, c in ((a, b), (b, a)):
            if isinstance(x, Value) and x.type.shape == scores.type.shape:
                break
        else:
            raise NoMatch
        if _num(c):
            scale = float(c)
        elif _argument_scalar(m, c) is not None:
            scale = m.g.new_value(ScalarType("float"))
            new.append(Op(HOST_READ, (_argument_scalar(m, c),), {}, scale, root.origin))
        else:
            scale = _const(m, c)
        scores = _through_casts(m, x)
    raw4 = m.op(scores, "reshape").args[0]
    qk = m.op(raw4, "matmul")
    need(set(qk.kwargs) <= {"compute_kernel_config"} and len(raw4.type.shape) == 3)
    q, qrep = _heads(m, qk.args[0])
    k, krep = _heads(m, qk.args[1], transposed=True)
    v, vrep = _heads(m, v3)
    need(qrep == 1 and krep == vrep)
    for t in (q, k, v):
        need(t.type.dtype == "bfloat16")
    (bq, hq, sq, d), (bk, hk, sk, dk) = q.type.shape, k.type.shape
    need(d % 32 == 0 and d == dk and bq == bk and hq == hk * krep and k.type.shape == v.type.shape)
    need(tuple(root.result.type.shape) == (bq * hq, sq, d) and tuple(raw4.type.shape) == (bq * hq, sq, sk))
    kwargs = {"is_causal": False}
    if scale is not None:
        kwargs["scale"] = scale
    if mask is not None:
        mask = _through_casts(m, mask) if mask.type.dtype != "bfloat16" else mask
        mb, mh, ms, mk = mask.type.shape if len(mask.type.shape) == 4 else (0, 0, 0, 0)
        need(mb in (1, bq) and mh in (1, hq) and (ms, mk) == (sq, sk) and mask.type.dtype == "bfloat16")
        kwargs["attn_mask"] = mask
    out = m.g.new_value(dataclasses.replace(q.type, shape=(bq, hq, sq, d)))
    return new + [Op("transformer.scaled_dot_product_attention", (q, k, v), kwargs, out, root.origin),
                  Op("reshape", (out, ShapeArg(root.result.type.shape)), {}, root.result, root.origin)]


def _widened(m: Match, v, record: bool = True):
    """v seen through typecasts that only widen bfloat16 to float32 (exact), and (when not
    recording) through unit reshapes."""
    while isinstance(v, Value):
        p = m.g.prod.get(v.id)
        if p is not None and p.fn == "typecast" and v.type.dtype == "float32" \
                and p.args[0].type.dtype == "bfloat16":
            v = m.op(v, "typecast").args[0] if record else p.args[0]
        elif not record and p is not None and p.fn == "reshape" \
                and _squeeze(p.args[0].type.shape) == _squeeze(v.type.shape):
            v = p.args[0]
        else:
            return v
    return v


def _product(m: Match, t, dtype: str):
    """t = the product of two operands, maybe computed in float32 and rounded to `dtype`
    (torch_xla's bf16 multiply): the multiply's operands."""
    if m.fn(t) == "typecast" and t.type.dtype == dtype:
        t = m.op(t, "typecast").args[0]
    return m.binary(t, "multiply")


def _rotate_half_of(m: Match, r) -> Value:
    """r = concat([-x[..., D/2:], x[..., :D/2]], last dim) (HF's rotate_half): x."""
    cat = m.op(_widened(m, r), "concat")
    parts, dim = cat.args
    need(len(parts) == 2 and dim in (-1, len(r.type.shape) - 1) and not cat.kwargs)
    hi = m.op(m.op(parts[0], "neg").args[0], "slice")
    lo = m.op(parts[1], "slice")
    x = hi.args[0]
    need(lo.args[0] is x or lo.args[0].id == x.id)
    shape = list(x.type.shape)
    d = shape[-1]
    need(d % 2 == 0 and len(shape) == 4)
    ones, zeros = [1] * len(shape), [0] * len(shape)
    need([list(a) for a in hi.args[1:]] == [zeros[:-1] + [d // 2], shape, ones])
    need([list(a) for a in lo.args[1:]] == [zeros, shape[:-1] + [d // 2], ones])
    return x


def _rotary(m: Match) -> list[Op]:
    """HF's apply_rotary_pos_emb, x * cos + rotate_half(x) * sin with cos / sin one
    [S, D] table broadcast over batch and heads (bf16 x [B, H, S, D], D % 64 == 0,
    S % 32 == 0: ttnn gives an unaligned S back padded) -> ttnn.experimental.rotary_embedding
    (cos / sin as [1, 1, S, D] in x's dtype, seen through exact widenings). Level 1."""
    need(m.g.level >= 1)
    root = m.root
    need(len(root.args) == 2 and not root.kwargs and all(isinstance(v, Value) for v in root.args))
    dt, shape = root.result.type.dtype, tuple(root.result.type.shape)
    need(dt == "bfloat16" and len(shape) == 4 and shape[-1] % 64 == 0 and shape[-2] % 32 == 0)
    n, d = shape[-2:]
    start = len(m.inner)
    for xc, rs in (root.args, root.args[::-1]):
        try:
            a, b = _product(m, rs, dt)
            r, sin = (a, b) if isinstance(a, Value) and m.fn(_widened(m, a, record=False)) == "concat" else (b, a)
            x = _rotate_half_of(m, r)
            need(tuple(x.type.shape) == shape and x.type.dtype == dt)
            a, b = _product(m, xc, dt)
            for u, cos in ((a, b), (b, a)):
                if isinstance(u, Value) and _widened(m, u, record=False).id == x.id:
                    _widened(m, u)
                    break
            else:
                raise NoMatch
            tables = []
            for t in (cos, sin):
                need(isinstance(t, Value) and tuple(t.type.shape[-2:]) == (n, d) and _squeeze(t.type.shape)
                     == _squeeze((n, d)) and len(t.type.shape) <= 4)
                src = _widened(m, t, record=False)
                need(src.type.dtype == dt and _squeeze(src.type.shape) == _squeeze((n, d)))
                tables.append(src)
            break
        except NoMatch:
            del m.inner[start:]
    else:
        raise NoMatch
    new, args = [], [x]
    for src in tables:
        if tuple(src.type.shape) != (1, 1, n, d):
            out = m.g.new_value(dataclasses.replace(src.type, shape=(1, 1, n, d)))
            new.append(Op("reshape", (src, ShapeArg((1, 1, n, d))), {}, out, root.origin))
            src = out
        args.append(src)
    return new + [Op("experimental.rotary_embedding", tuple(args), {}, root.result, root.origin)]


def _one(rule):
    def wrapped(m):
        r = rule(m)
        return r if isinstance(r, list) else [r]
    return wrapped


# (root ops, rule)
RULES = [
    ({"multiply"}, _one(_gelu)),
    ({"divide"}, _one(_softmax)),
    ({"add", "multiply", "divide"}, _norm_rule),
    ({"add", "multiply", "typecast"}, _norm_affine),
    ({"add"}, _linear),
    ({"add", "multiply"}, _one(_conv_affine)),
    ({"add"}, _conv_bias),
    ({"maximum", "relu"}, _conv_relu),
    (set(ACTIVATIONS) | {"maximum", "multiply"}, _activation),
    ({"maximum", "relu"}, _add_relu),
    ({"matmul"}, _sdpa),
    ({"matmul"}, _sdpa_torch),
    ({"add"}, _rotary),
]


def _fuse_ops(ops: list, outputs: set[int], counter: list[int], level: int) -> list:
    for op in ops:  # loop bodies and case branches first, each on its own
        if isinstance(op, STRUCTURED):
            for b in op.blocks():
                b.ops = _fuse_ops(b.ops, {v.id for v in b.results if isinstance(v, Value)}, counter, level)
    for roots, rule in RULES:
        g = Graph(ops, outputs, counter, level)
        out: list[list] = []
        absorbed: set[int] = set()
        # Last op first, so the largest pattern wins (a layer norm with its bias add
        # before the same norm without it); ops a match absorbed are not roots again.
        for op in reversed(ops):
            if isinstance(op, Op) and op.fn in roots and id(op) not in absorbed:
                m = Match(g, op)
                try:
                    new = rule(m)
                    if m.safe() and not absorbed & {id(o) for o in m.inner}:
                        absorbed |= {id(o) for o in m.inner}
                        out.append(new)
                        continue
                except NoMatch:
                    pass
            out.append([op])
        ops = prune_dead([o for group in reversed(out) for o in group], set(outputs))
    return ops


def _max_id(ops: list) -> int:
    ids = [0]
    for op in ops:
        ids += [r.id for r in op.results] + [v.id for v in op.operands()]
        if isinstance(op, STRUCTURED):
            ids += [v.id for v in op.params] if isinstance(op, While) else []
            ids += [_max_id(b.ops) for b in op.blocks()]
    return max(ids)


def fuse(program: Program, ctx: CompileContext) -> Program:
    counter = [max([_max_id(program.ops)] + [v.id for v in program.inputs]
                   + [c.value.id for c in program.constants])]
    ops = _fuse_ops(program.ops, {v.id for v in program.outputs}, counter, ctx.optimization_level)
    return dataclasses.replace(program, ops=ops)
