"""Matrix factorizations and solves, unrolled over columns into elementwise ttnn ops:

    stablehlo.cholesky                                  right-looking, one rank-1 update per column
    stablehlo.triangular_solve                          column sweep, one rank-1 update per column
    custom_call @Qr                                     Householder QR in LAPACK's geqrf form
    custom_call @ProductOfElementaryHouseholderReflectors   its Q (LAPACK's orgqr)

Qr / ProductOfElementaryHouseholderReflectors are what XLA's client library (torch_xla) and
jax (for a platform without its own QR kernels, as tt) emit for a QR. Every op works on the
last two dims of [..., m, n] (leading dims are a batch) in float32 (bfloat16 operands are
widened and the result rounded back). The rank-1 updates and the dot products are
elementwise multiplies, broadcasts and sums, never ttnn.matmul: the card's float32 matmul
takes TF32 operands (~1e-3 relative, docs/numerics.md), which a factorization compounds.
The programs grow linearly with the matrix size (UNROLL_LIMIT columns at most).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from jaxlib.mlir import ir

from pjrt_tt import dtypes
from pjrt_tt.lower.builder import Lowering, Splat
from pjrt_tt.lower.helpers import host_type, predicate, result_type, where
from pjrt_tt.lower.registry import custom_call, rule
from pjrt_tt.program import Block, HostType, ScalarType, ShapeArg, TensorType, Value, While

# Columns a factorization is unrolled over: ~4-20 ttnn ops each (a 512-column QR is ~10k ops).
UNROLL_LIMIT = 512
# Eigh unrolls one sweep, n - 1 rounds of ~70 ops, in a host loop.
EIGH_LIMIT = 256
_F32 = dtypes.from_mlir("f32")


class _Mat:
    """Emitting float32 ops on [..., r, c] values, broadcasting like numpy."""

    def __init__(self, lo: Lowering):
        self.lo = lo

    def f32(self, x: Value) -> Value:
        return self.lo.typecast(x, "float32")

    def const(self, data: np.ndarray) -> Value:
        data = np.asarray(data, np.float32)
        return self.lo.memo(("linalg const", data.shape, data.tobytes()),
                            lambda: self.lo.constant(data, HostType(_F32, data.shape)))

    def part(self, x: Value, r0: int, r1: int, c0: int, c1: int) -> Value:
        shape = x.type.shape
        if (r0, r1, c0, c1) == (0, shape[-2], 0, shape[-1]):
            return x
        lead = len(shape) - 2
        return self.lo.emit("slice", x, [0] * lead + [r0, c0], list(shape[:-2]) + [r1, c1], [1] * len(shape),
                            result=dataclasses.replace(x.type, shape=shape[:-2] + (r1 - r0, c1 - c0)))

    def t(self, x: Value) -> Value:
        rank = len(x.type.shape)
        return self.lo.permute(x, list(range(rank - 2)) + [rank - 1, rank - 2])

    def binary(self, fn: str, a: Value, b) -> Value:
        if isinstance(b, float):
            return self.lo.emit(fn, a, b, result=a.type)
        shape = tuple(np.broadcast_shapes(a.type.shape, b.type.shape))
        return self.lo.emit(fn, a, b, result=TensorType(shape, "float32"))

    def mul(self, a, b): return self.binary("multiply", a, b)
    def add(self, a, b): return self.binary("add", a, b)
    def sub(self, a, b): return self.binary("subtract", a, b)

    def unary(self, fn: str, x: Value) -> Value:
        return self.lo.emit(fn, x, result=x.type)

    def sum(self, x: Value, dim: int) -> Value:
        shape = list(x.type.shape)
        shape[dim] = 1
        return self.lo.emit("sum", x, dim=[dim], keepdim=True, result=dataclasses.replace(x.type, shape=tuple(shape)))

    def concat(self, parts: list[Value], dim: int) -> Value:
        if len(parts) == 1:
            return parts[0]
        shape = list(parts[0].type.shape)
        shape[dim] = sum(p.type.shape[dim] for p in parts)
        return self.lo.emit("concat", parts, dim, result=dataclasses.replace(parts[0].type, shape=tuple(shape)))

    def where(self, cond: Value, a, b) -> Value:
        shape = cond.type.shape
        return where(self.lo, cond, a, b, TensorType(shape, "float32"))

    def test(self, fn: str, x: Value, value: float) -> Value:
        return predicate(self.lo, fn, x, Splat(value, None), x.type.shape)

    def diag(self, a: Value) -> Value:
        """The diagonal of [..., n, n] as a row [..., 1, n]."""
        n = a.type.shape[-1]
        return self.sum(self.mul(a, self.const(np.eye(n))), -2)


def _check(lo: Lowering, op, n: int) -> None:
    h = host_type(op.operands[0])
    if h.element.device not in ("float32", "bfloat16"):
        raise lo.unsupported(f"element type {h.element.mlir} (float32 / bfloat16 only)")
    if n > UNROLL_LIMIT:
        raise lo.unsupported(f"matrices of {n} columns (the lowering unrolls one step per column, "
                             f"up to {UNROLL_LIMIT})")


def _bool_attr(op, name: str) -> bool:
    return name in op.attributes and ir.BoolAttr(op.attributes[name]).value


@rule("stablehlo.cholesky")
def _cholesky(lo: Lowering, op) -> list:
    """A = L L^T from A's lower triangle (upper: A = U^T U = chol(A^T)^T from the upper one).
    Right-looking: column j of L is the trailing matrix's column j over the root of its
    pivot, then the trailing matrix loses that column's outer product. A matrix that is not
    positive definite gives NaN in its whole triangle, as XLA:CPU's does."""
    n = host_type(op.operands[0]).shape[-1]
    _check(lo, op, n)
    m = _Mat(lo)
    a = m.f32(lo.get(op.operands[0]))
    lower = _bool_attr(op, "lower")
    if not lower:
        a = m.t(a)
    # symmetric from the one triangle the op reads
    w = m.add(m.mul(a, m.const(np.tril(np.ones((n, n))))), m.t(m.mul(a, m.const(np.tril(np.ones((n, n)), -1)))))
    cols = []
    for j in range(n):
        c = m.mul(m.part(w, 0, n, j, j + 1), m.unary("rsqrt", m.part(w, j, j + 1, j, j + 1)))
        cols.append(c)
        if j + 1 < n:
            # rows above j of c are rounding noise; they only touch rows / columns < j + 1
            w = m.sub(w, m.mul(c, m.t(c)))
    lower_ones = m.const(np.tril(np.ones((n, n))))
    factor = m.mul(m.concat(cols, len(a.type.shape) - 1), lower_ones)
    # a failed factorization is NaN in its whole triangle, as XLA:CPU's (LAPACK's info) and
    # GPU's give it: a NaN or infinite pivot anywhere makes the diagonal's sum times 0 a NaN
    poison = m.mul(m.sum(m.diag(factor), -1), 0.0)
    factor = m.add(factor, m.mul(lower_ones, poison))
    if not lower:
        factor = m.t(factor)
    return [lo.typecast(factor, result_type(op).dtype)]


@rule("stablehlo.triangular_solve")
def _triangular_solve(lo: Lowering, op) -> list:
    """op(A) X = B (left_side) or X op(A) = B, A triangular. The right-side form is the left
    one transposed; a transposed A is the other triangle. Column sweep: once x_j is known
    (row j of B's remainder over a_jj), the rows it feeds lose a_ij x_j."""
    n = host_type(op.operands[0]).shape[-1]
    _check(lo, op, n)
    m = _Mat(lo)
    a, b = m.f32(lo.get(op.operands[0])), m.f32(lo.get(op.operands[1]))
    lower, left = _bool_attr(op, "lower"), _bool_attr(op, "left_side")
    trans = str(op.attributes["transpose_a"])
    if "ADJOINT" not in trans and "TRANSPOSE" not in trans and "NO_TRANSPOSE" not in trans:
        raise lo.unsupported(f"transpose_a = {trans}")
    transposed = "NO_TRANSPOSE" not in trans  # ADJOINT is TRANSPOSE for real matrices
    tri = np.tril(np.ones((n, n))) if lower else np.triu(np.ones((n, n)))
    a = m.mul(a, m.const(tri))          # the other triangle is not read
    if transposed:
        a, lower = m.t(a), not lower
    if not left:                        # X A = B  <=>  A^T X^T = B^T
        a, lower, b = m.t(a), not lower, m.t(b)
    strict = np.tril(np.ones((n, n)), -1) if lower else np.triu(np.ones((n, n)), 1)
    if _bool_attr(op, "unit_diagonal"):
        inv_diag, c = None, m.mul(a, m.const(strict))
    else:
        inv_diag = m.unary("reciprocal", m.diag(a))      # [..., 1, n]
        c = m.mul(m.mul(a, m.const(strict)), inv_diag)   # column j over a_jj
    x = b
    for j in (range(n - 1) if lower else range(n - 1, 0, -1)):
        x = m.sub(x, m.mul(m.part(c, 0, n, j, j + 1), m.part(x, j, j + 1, 0, x.type.shape[-1])))
    if inv_diag is not None:
        x = m.mul(x, m.t(inv_diag))
    if not left:
        x = m.t(x)
    out = result_type(op)
    return [lo.reshape(lo.typecast(x, out.dtype), out.shape)]


def _column_masks(rows: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows below j, unit vector e_j) as [rows, 1] columns."""
    below = (np.arange(rows) > j).astype(np.float32)[:, None]
    unit = (np.arange(rows) == j).astype(np.float32)[:, None]
    return below, unit


@custom_call("Qr")
def _qr(lo: Lowering, op) -> list:
    """Householder QR as LAPACK's geqrf stores it: R on and above the diagonal, each
    reflector's vector v (v_j = 1 implied) below it, and tau with H = I - tau v v^T. For
    column j: beta = -sign(alpha) ||x|| (sign(0) = +), no reflection (tau = 0) when the
    column is already zero below the diagonal."""
    rows, cols = host_type(op.operands[0]).shape[-2:]
    _check(lo, op, cols)
    m = _Mat(lo)
    w = m.f32(lo.get(op.operands[0]))
    lead = w.type.shape[:-2]
    k = min(rows, cols)
    vs, taus = [], []
    for j in range(k):
        below, unit = _column_masks(rows, j)
        tail = m.mul(m.part(w, 0, rows, j, j + 1), m.const(below))
        alpha = m.part(w, j, j + 1, j, j + 1)
        sigma = m.sum(m.mul(tail, tail), -2)
        norm = m.unary("sqrt", m.add(m.mul(alpha, alpha), sigma))
        beta = m.where(m.test("ge", alpha, 0.0), m.mul(norm, -1.0), norm)
        reflect = m.test("gt", sigma, 0.0)
        tau = m.where(reflect, m.binary("divide", m.sub(beta, alpha), beta), 0.0)
        v_tail = m.mul(tail, m.unary("reciprocal", m.where(reflect, m.sub(alpha, beta), 1.0)))
        vs.append(v_tail)
        taus.append(tau)
        v = m.add(v_tail, m.const(unit))
        w = m.sub(w, m.mul(m.mul(v, tau), m.sum(m.mul(v, w), -2)))
    r = m.mul(w, m.const(np.triu(np.ones((rows, cols)))))
    if cols > k:
        vs.append(lo.materialize(Splat(0.0, HostType(_F32, lead + (rows, cols - k)))))
    packed = m.add(r, m.concat(vs, len(lead) + 1))
    out_a, out_tau = result_type(op, 0), result_type(op, 1)
    tau = lo.reshape(m.concat(taus, len(lead) + 1), out_tau.shape)
    return [lo.typecast(packed, out_a.dtype), lo.typecast(tau, out_tau.dtype)]


@custom_call("ProductOfElementaryHouseholderReflectors")
def _householder_product(lo: Lowering, op) -> list:
    """Q = H_0 H_1 ... H_{k-1} I[:, :n] (LAPACK's orgqr), accumulated from the last reflector."""
    rows, cols = host_type(op.operands[0]).shape[-2:]
    k = host_type(op.operands[1]).shape[-1]
    _check(lo, op, max(cols, k))
    m = _Mat(lo)
    a = m.f32(lo.get(op.operands[0]))
    lead = a.type.shape[:-2]
    taus = lo.reshape(m.f32(lo.get(op.operands[1])), lead + (1, k))
    q = m.const(np.eye(rows, cols))
    for j in reversed(range(k)):
        below, unit = _column_masks(rows, j)
        v = m.add(m.mul(m.part(a, 0, rows, j, j + 1), m.const(below)), m.const(unit))
        tau = m.part(taus, 0, 1, j, j + 1)
        q = m.sub(q, m.mul(m.mul(v, tau), m.sum(m.mul(v, q), -2)))
    out = result_type(op)
    if q.type.shape != out.shape:   # no reflectors: the identity, per matrix
        q = m.add(q, lo.materialize(Splat(0.0, HostType(_F32, out.shape))))
    return [lo.typecast(q, out.dtype)]


def _round_robin(n: int) -> list[tuple[int, int]]:
    """Where the next round's positions come from, as (start, stop) runs of this round's
    positions (pairs are (i, i + n/2)): position 0 stays, the others move one step round the
    ring 1 .. k-1, n-1 .. k, so every two indices meet once in n - 1 rounds and the order is
    back where it started after them."""
    k = n // 2
    if k == 1:
        return [(0, 1), (1, 2)]
    runs = [(0, 1), (k, k + 1), (1, k - 1), (k + 1, n), (k - 1, k)]
    return [(a, b) for a, b in runs if b > a]


def _jacobi_round(m: _Mat, a: Value, v: Value, k: int) -> tuple[Value, Value]:
    """One parallel Jacobi round: k disjoint rotations (i, i + k) zero a_{i,i+k}; then the
    positions move (_round_robin). Golub & Van Loan's symmetric Schur 2x2: tau =
    (a_qq - a_pp) / 2 a_pq, t = sign(tau) / (|tau| + sqrt(1 + tau^2)), c = 1/sqrt(1 + t^2), s = t c;
    no rotation where a_pq = 0 (and where tau overflows: t = 0)."""
    n = 2 * k
    d = m.diag(a)
    app, aqq = m.part(d, 0, 1, 0, k), m.part(d, 0, 1, k, n)
    apq = m.sum(m.mul(m.part(a, 0, k, k, n), m.const(np.eye(k))), -2)       # [..., 1, k]
    rotate = m.test("ne", apq, 0.0)
    tau = m.binary("divide", m.sub(aqq, app), m.where(rotate, m.mul(apq, 2.0), 1.0))
    sign = m.where(m.test("ge", tau, 0.0), 1.0, -1.0)
    root = m.unary("sqrt", m.add(m.mul(tau, tau), 1.0))
    t = m.where(rotate, m.binary("divide", sign, m.add(m.unary("abs", tau), root)), 0.0)
    c = m.unary("rsqrt", m.add(m.mul(t, t), 1.0))
    s = m.mul(t, c)
    runs = _round_robin(n)

    def moved(first: Value, second: Value, dim: int) -> Value:
        """concat(first, second) along dim (rows -2 / columns -1), positions moved."""
        parts = []
        for lo_, hi in runs:
            src, off = (first, 0) if lo_ < k else (second, k)
            parts.append(m.part(src, lo_ - off, hi - off, 0, src.type.shape[-1]) if dim == -2 else
                         m.part(src, 0, src.type.shape[-2], lo_ - off, hi - off))
        return m.concat(parts, len(first.type.shape) + dim)

    def rows(x: Value) -> Value:   # J^T x: row p' = c p - s q, row q' = s p + c q
        cc, ss = m.t(c), m.t(s)
        top, bottom = m.part(x, 0, k, 0, n), m.part(x, k, n, 0, n)
        return moved(m.sub(m.mul(top, cc), m.mul(bottom, ss)), m.add(m.mul(top, ss), m.mul(bottom, cc)), -2)

    def columns(x: Value) -> Value:   # x J: column p' = c p - s q, column q' = s p + c q
        rows_ = x.type.shape[-2]
        left, right = m.part(x, 0, rows_, 0, k), m.part(x, 0, rows_, k, n)
        return moved(m.sub(m.mul(left, c), m.mul(right, s)), m.add(m.mul(left, s), m.mul(right, c)), -1)

    return columns(rows(a)), columns(v)


def _host_loop(lo: Lowering, inits: list[Value], max_trips: int, more, body) -> list[Value]:
    """A host-driven loop over device values: `more(params)` (a host bool, may read the
    device) and a trip count bound decide whether `body(params)` (fresh values) runs again."""
    params = [lo.new_value(v.type) for v in inits]
    trips = lo.new_value(ScalarType("int"))
    with lo.block() as cond_ops:
        go = more(params)
        below = lo.emit("host.lt", trips, max_trips, result=ScalarType("bool"))
        pred = lo.emit("host.logical_and", below, go, result=ScalarType("bool"))
    with lo.block() as body_ops:
        nxt = body(params)
        counted = lo.emit("host.add", trips, 1, result=ScalarType("int"))
    results = [lo.new_value(v.type) for v in inits]
    origin = f"{lo.origin} {lo.location}" if lo.location else lo.origin
    lo.ops.append(While(list(inits) + [0], params + [trips], Block(cond_ops, [pred]),
                        Block(body_ops, list(nxt) + [counted]), results + [lo.new_value(ScalarType("int"))],
                        origin))
    return results


@custom_call("Eigh")
def _eigh(lo: Lowering, op) -> list:
    """Symmetric eigendecomposition A = V diag(w) V^T by cyclic parallel Jacobi, as XLA's
    own Eigh expander computes it (jax on TPU / for tt, torch_xla): backend_config is
    "lower,sort,max_sweeps,tol". A host loop runs whole sweeps (n - 1 rounds of n/2 rotations,
    unrolled) until the off-diagonal part is below tol * ||A||_F (one device read per
    sweep). An odd n gets a zero row and column that no rotation touches."""
    shape = host_type(op.operands[0]).shape
    n = shape[-1]
    _check(lo, op, n)
    if n > EIGH_LIMIT:
        raise lo.unsupported(f"matrices of {n} columns (one Jacobi sweep is unrolled: up to {EIGH_LIMIT})")
    config = ir.StringAttr(op.attributes["backend_config"]).value.split(",")
    lower, sort = bool(int(config[0])), bool(int(config[1]))
    max_sweeps, tol = int(config[2]), float(config[3])
    vec_i = 0 if len(host_type(op.results[0]).shape) == len(shape) else 1
    m = _Mat(lo)
    a = m.f32(lo.get(op.operands[0]))
    lead = a.type.shape[:-2]
    if not lower:
        a = m.t(a)
    a = m.add(m.mul(a, m.const(np.tril(np.ones((n, n))))), m.t(m.mul(a, m.const(np.tril(np.ones((n, n)), -1)))))
    size = n + n % 2
    if size != n:
        column = lo.materialize(Splat(0.0, HostType(_F32, lead + (n, 1))))
        row = lo.materialize(Splat(0.0, HostType(_F32, lead + (1, size))))
        a = m.concat([m.concat([a, column], len(lead) + 1), row], len(lead))
    v = m.add(m.const(np.eye(size)), lo.materialize(Splat(0.0, HostType(_F32, lead + (size, size)))))
    off_mask = m.const(1.0 - np.eye(size))

    def unconverged(params):
        x = params[0]
        sq = m.mul(x, x)
        off, total = m.sum(m.sum(m.mul(sq, off_mask), -1), -2), m.sum(m.sum(sq, -1), -2)
        flag = predicate(lo, "gt", off, m.mul(total, tol * tol), off.type.shape)   # [..., 1, 1]
        if lead:
            flag = lo.emit("max", flag, dim=list(range(len(lead))), keepdim=True,
                           result=dataclasses.replace(flag.type, shape=(1,) * len(flag.type.shape)))
        return lo.host_scalar(lo.reshape(flag, (1,)), "bool")

    def sweep(params):
        x, vecs = params
        for _ in range(size - 1):
            x, vecs = _jacobi_round(m, x, vecs, size // 2)
        return [x, vecs]

    a, v = _host_loop(lo, [a, v], max_sweeps, unconverged, sweep)
    w = m.diag(a)
    if size != n:
        w, v = m.part(w, 0, 1, 0, n), m.part(v, 0, n, 0, n)
    if sort and n > 1:   # (one eigenvalue: already in order)
        idx = lo.emit("sort[1]", w, -1, descending=False, stable=True, result=dataclasses.replace(w.type, dtype="uint32"))
        w = lo.emit("gather", w, -1, idx, result=w.type)
        rep = lo.emit("repeat", idx, ShapeArg((1,) * len(lead) + (n, 1)),
                      result=dataclasses.replace(idx.type, shape=lead + (n, n)))
        v = lo.emit("gather", v, -1, rep, result=v.type)
    out_v, out_w = result_type(op, vec_i), result_type(op, 1 - vec_i)
    outs = [lo.typecast(v, out_v.dtype), lo.typecast(lo.reshape(w, out_w.shape), out_w.dtype)]
    return outs if vec_i == 0 else outs[::-1]
