"""Linear algebra on tt against XLA:CPU (float64 where the bound is about accuracy):
cholesky, triangular_solve, qr, eigh (pjrt_tt/lower/factorizations.py), and the jax
functions built on them. The factorizations run on elementwise float32 ops, never the
matrix unit, so the bounds are float32 ones (docs/numerics.md, "Linear algebra")."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_close, pcc

RNG = np.random.default_rng(7)
# Relative Frobenius error vs float64 a float32 factorization of these well-conditioned
# matrices meets (measured: <= 2e-6; docs/numerics.md); PCC alongside.
REL = 1e-5


def _on(f, device, *args):
    return jax.tree.map(np.asarray, jax.jit(f)(*[jax.device_put(a, device) for a in args]))


def _rel(got, want) -> float:
    return float(np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want))


def _spd(lead, n):
    x = RNG.standard_normal(lead + (n, n))
    return (x @ np.swapaxes(x, -1, -2) + n * np.eye(n)).astype(np.float32)


def _check(got, want64, what):
    assert _rel(got, want64) < REL, f"{what}: rel err {_rel(got, want64):.2e}"
    assert pcc(got, want64) > 0.9999, what


@pytest.mark.parametrize("lead,n", [((), 1), ((), 5), ((), 33), ((2, 3), 8)])
def test_cholesky(tt, cpu, lead, n):
    a = _spd(lead, n)
    got = _on(jnp.linalg.cholesky, tt, a)
    assert_close(got, _on(jnp.linalg.cholesky, cpu, a))
    _check(got, np.linalg.cholesky(a.astype(np.float64)), "L vs float64")
    _check(got @ np.swapaxes(got, -1, -2), a.astype(np.float64), "L L^T vs A")
    assert np.all(np.triu(got, 1) == 0)


def test_cholesky_upper_and_not_positive_definite(tt, cpu):
    from jax import lax
    a = _spd((), 6)
    upper = _on(lambda x: lax.linalg.cholesky(x, symmetrize_input=False) if False else
                jnp.swapaxes(jax.scipy.linalg.cholesky(x, lower=False), 0, 1), tt, a)
    assert_close(upper, _on(lambda x: jnp.swapaxes(jax.scipy.linalg.cholesky(x, lower=False), 0, 1), cpu, a))
    # not positive definite: NaN in the whole lower triangle, as XLA:CPU gives it (a singular
    # covariance's factor used to keep finite columns before the failing pivot: jax's
    # random_lax_test testMultivariateNormalSingularCovariance); a batch's good matrices stay
    bad = np.stack([-a, a, np.ones((6, 6), np.float32), np.diag([4.0, 1.0, 0.0, 1.0, 1.0, 1.0]).astype(np.float32)])
    got, want = _on(jnp.linalg.cholesky, tt, bad), _on(jnp.linalg.cholesky, cpu, bad)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[[0, 2, 3]][np.tril(np.ones((6, 6), bool))[None].repeat(3, 0)]).all()
    assert_close(got[1], want[1])


def test_cholesky_grad(tt, cpu):
    a = _spd((), 5)
    f = jax.grad(lambda x: jnp.sum(jnp.linalg.cholesky(x) ** 2))
    # jax's cholesky JVP multiplies with dot_general: the card's TF32 matmul bound
    assert_close(_on(f, tt, a), _on(f, cpu, a), kind="matmul")


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("trans", [0, 1])
@pytest.mark.parametrize("unit", [False, True])
def test_triangular_solve(tt, cpu, lower, left, trans, unit):
    from jax import lax
    n, k = 7, 3
    a = (RNG.standard_normal((2, n, n)) + 4 * np.eye(n)).astype(np.float32)
    b = RNG.standard_normal((2, n, k) if left else (2, k, n)).astype(np.float32)
    f = lambda a, b: lax.linalg.triangular_solve(a, b, left_side=left, lower=lower, transpose_a=bool(trans),
                                                 unit_diagonal=unit)
    got = _on(f, tt, a, b)
    assert_close(got, _on(f, cpu, a, b))
    tri = np.tril(a) if lower else np.triu(a)
    if unit:
        tri = tri - np.diag(np.diagonal(tri, axis1=-2, axis2=-1)[0]) * 0 - tri * np.eye(n) + np.eye(n)
    op = np.swapaxes(tri, -1, -2) if trans else tri
    back = op.astype(np.float64) @ got if left else got.astype(np.float64) @ op
    _check(back, b.astype(np.float64), "op(A) X vs B")


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5), (3, 9, 9)])
@pytest.mark.parametrize("mode", ["reduced", "complete"])
def test_qr(tt, cpu, shape, mode):
    a = RNG.standard_normal(shape).astype(np.float32)
    q, r = _on(lambda x: jnp.linalg.qr(x, mode=mode), tt, a)
    qc, rc = _on(lambda x: jnp.linalg.qr(x, mode=mode), cpu, a)
    assert_close(q, qc, rtol=1e-4, atol=1e-5)   # same sign convention as LAPACK's geqrf
    assert_close(r, rc, rtol=1e-4, atol=1e-5)
    k = q.shape[-1]
    eye = np.eye(k)
    assert np.abs(np.swapaxes(q, -1, -2).astype(np.float64) @ q - eye).max() < 1e-5
    assert np.all(np.tril(r, -1) == 0)
    _check(q.astype(np.float64) @ r, a.astype(np.float64), "Q R vs A")


def test_qr_of_triangular_and_zero_columns(tt, cpu):
    """A column already zero below the diagonal takes no reflection (tau = 0), as LAPACK."""
    a = np.triu(RNG.standard_normal((5, 5))).astype(np.float32)
    a[:, 2] = 0
    for got, want in zip(_on(jnp.linalg.qr, tt, a), _on(jnp.linalg.qr, cpu, a)):
        assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lead,n", [((), 1), ((), 2), ((), 7), ((), 16), ((3,), 6)])
def test_eigh(tt, cpu, lead, n):
    x = RNG.standard_normal(lead + (n, n))
    a = (x + np.swapaxes(x, -1, -2)).astype(np.float32)
    w, v = _on(jnp.linalg.eigh, tt, a)
    wc, _ = _on(jnp.linalg.eigh, cpu, a)
    assert_close(w, wc, rtol=1e-4, atol=1e-5)
    w64 = np.linalg.eigvalsh(a.astype(np.float64))
    assert np.abs(w - w64).max() < 1e-5 * np.abs(w64).max() + 1e-6
    scale = np.abs(w64).max()
    assert np.abs(a.astype(np.float64) @ v - v * w[..., None, :]).max() < 1e-5 * scale + 1e-6
    assert np.abs(np.swapaxes(v, -1, -2).astype(np.float64) @ v - np.eye(n)).max() < 1e-5


def test_eigh_upper_triangle(tt, cpu):
    a = RNG.standard_normal((5, 5)).astype(np.float32)   # only the upper triangle is read
    f = lambda x: jnp.linalg.eigh(x, UPLO="U", symmetrize_input=False)[0]
    assert_close(_on(f, tt, a), _on(f, cpu, a), rtol=1e-4, atol=1e-5)


def test_solve_and_inv(tt, cpu):
    """jax's generic LU (a while loop of pivots) and the triangular solves after it."""
    a = (RNG.standard_normal((6, 6)) + 3 * np.eye(6)).astype(np.float32)
    b = RNG.standard_normal((6, 2)).astype(np.float32)
    assert_close(_on(jnp.linalg.solve, tt, a, b), _on(jnp.linalg.solve, cpu, a, b), rtol=1e-4, atol=1e-5)
    assert_close(_on(jnp.linalg.inv, tt, a), _on(jnp.linalg.inv, cpu, a), rtol=1e-4, atol=1e-5)


def test_multivariate_normal_and_orthogonal_init(tt, cpu):
    cov = _spd((), 4) / 4
    f = lambda c: jax.random.multivariate_normal(jax.random.key(0), jnp.zeros(4), c, shape=(3,))
    # the samples are L @ z, a dot_general: the card's TF32 matmul bound
    assert_close(_on(f, tt, cov), _on(f, cpu, cov), kind="matmul")
    g = lambda z: jax.nn.initializers.orthogonal()(jax.random.key(1), (8, 8)) + z
    z = np.zeros((8, 8), np.float32)
    got = _on(g, tt, z)
    assert_close(got, _on(g, cpu, z), rtol=1e-4, atol=1e-5)
    assert np.abs(got.T.astype(np.float64) @ got - np.eye(8)).max() < 1e-5


def test_too_large_is_refused(tt):
    from pjrt_tt.lower.factorizations import EIGH_LIMIT
    a = np.eye(EIGH_LIMIT + 1, dtype=np.float32)
    with pytest.raises(Exception, match=r"UNIMPLEMENTED.*Eigh.*Jacobi"):
        _on(jnp.linalg.eigh, tt, a)
