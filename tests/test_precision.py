"""precision= and algorithm= on dots and convolutions (lower/matmul.py; docs/numerics.md, "Precision of dots").

Errors are measured against the float64 numpy product, scaled by |A| @ |B| (the scale a dot's
rounding errors live in, meaningful where terms cancel). Bounds: DEFAULT is the card's TF32
matmul (~1e-3); HIGH (bf16 x3) within 2^-14; HIGHEST (bf16 x6) within a few float32 ulps
x sqrt(K), and no worse than 2x XLA:CPU's float32 error + 1 ulp.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest
from jax import lax

from pjrt_tt.errors import Unimplemented

from conftest import enable_x64

P, A = lax.Precision, lax.DotAlgorithmPreset
U = 2.0 ** -24   # float32 unit roundoff
RNG = np.random.default_rng(11)


def well(m=64, k=256, n=48):
    """The same operands for every test, whichever ran before (test_order's margins depend on
    the draw)."""
    rng = np.random.default_rng(11)
    return rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)


def ill(m=64, k=256, n=48):
    """Products that cancel: each row of a is paired with its negation plus a small perturbation,
    so |A||B| is ~2e5 x |AB| (median over elements)."""
    a, b = well(m, k // 2, n)
    a2 = np.concatenate([a, -a * (1 + 1e-4 * np.random.default_rng(12).standard_normal(a.shape).astype(np.float32))],
                        axis=1)
    return a2.astype(np.float32), np.concatenate([b, b], axis=0)


def scaled_error(c, a, b):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return np.abs(np.asarray(c, np.float64) - a64 @ b64) / (np.abs(a64) @ np.abs(b64))


def dot_on(device, precision, a, b):
    f = jax.jit(lambda x, y: lax.dot(x, y, precision=precision))
    return np.asarray(f(jax.device_put(a, device), jax.device_put(b, device)))


BOUNDS = {  # setting -> bound on max |err| / (|A||B|) for K = 256
    P.HIGH: 2.0 ** -14, A.BF16_BF16_F32_X3: 2.0 ** -14,
    P.HIGHEST: 8 * U * 16, A.BF16_BF16_F32_X6: 8 * U * 16, A.F32_F32_F32: 8 * U * 16,
    A.BF16_BF16_F32_X9: 8 * U * 16,
    A.BF16_BF16_F32: 2.0 ** -8,  # operands rounded to bf16: 2 x 2^-9
    A.TF32_TF32_F32: 2.0 ** -8,
    A.TF32_TF32_F32_X3: 8 * U * 16,   # run as x6: at least as accurate as three TF32 passes
}


@pytest.mark.parametrize("case", [well, ill])
@pytest.mark.parametrize("setting", list(BOUNDS), ids=str)
def test_error_bound(tt, cpu, setting, case):
    a, b = case()
    err = scaled_error(dot_on(tt, setting, a, b), a, b).max()
    assert err <= BOUNDS[setting], f"{setting}: {err:.3e} > {BOUNDS[setting]:.3e}"
    if BOUNDS[setting] < 1e-5:   # float32-class: compare with XLA:CPU's float32 dot
        cpu_err = scaled_error(dot_on(cpu, P.HIGHEST, a, b), a, b).max()
        assert err <= 2 * cpu_err + U, f"{setting}: {err:.3e} vs XLA:CPU {cpu_err:.3e}"


@pytest.mark.parametrize("case", [well, ill])
def test_order(tt, case):
    """Each step up is a real gain: DEFAULT (TF32 on the card) > HIGH > HIGHEST."""
    a, b = case()
    default, high, highest = (scaled_error(dot_on(tt, p, a, b), a, b).max()
                              for p in (P.DEFAULT, P.HIGH, P.HIGHEST))
    assert default > 2.0 ** -14 > 10 * high > 100 * highest, (default, high, highest)


def test_default_unchanged(tt):
    """DEFAULT keeps ttnn's one float32 matmul with its own config (no compute_kernel_config)."""
    from conftest import NewPrograms
    a, b = well(32, 96, 40)   # shapes no other test compiles
    with NewPrograms() as seen:
        dot_on(tt, P.DEFAULT, a, b)
    (mm,) = [op for op in seen.one().ops if op.fn == "matmul"]
    assert "compute_kernel_config" not in mm.kwargs


def test_default_matmul_precision_highest(tt):
    """jax.default_matmul_precision("highest") puts HIGHEST on the dots of `@`."""
    a, b = well()
    with jax.default_matmul_precision("highest"):
        c = np.asarray(jax.jit(lambda x, y: x @ y)(jax.device_put(a, tt), jax.device_put(b, tt)))
    assert scaled_error(c, a, b).max() <= 8 * U * 16


def conv_error(device, precision, x, w):
    """Max error of an NHWC 3x3 conv (K = 9 * 32 = 288 terms per output), scaled like a dot's."""
    dn = ("NHWC", "HWIO", "NHWC")
    f = jax.jit(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn,
                                                      precision=precision))
    got = np.asarray(f(jax.device_put(x, device), jax.device_put(w, device)), np.float64)
    cpu = jax.devices("cpu")[0]
    in64 = lambda a: jax.device_put(a.astype(np.float64), cpu)  # noqa: E731  (float64 on XLA:CPU)
    exact = np.asarray(f(in64(x), in64(w)))
    scale = np.asarray(f(in64(np.abs(x)), in64(np.abs(w))))
    return float((np.abs(got - exact) / scale).max())


def test_conv_precision(tt, cpu):
    """precision= on a convolution is honoured as on a dot (im2col and the same matmuls):
    HIGHEST to float32's accuracy (no worse than 2x XLA:CPU + 1 ulp), HIGH within 2^-14,
    DEFAULT ttnn.conv2d's own (TF32 operands)."""
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 10, 9, 32)).astype(np.float32), rng.standard_normal((3, 3, 32, 16)).astype(np.float32)
    with enable_x64():
        default, high, highest = (conv_error(tt, p, x, w) for p in (P.DEFAULT, P.HIGH, P.HIGHEST))
        cpu_err = conv_error(cpu, P.HIGHEST, x, w)
    assert highest <= 2 * cpu_err + U and highest <= 8 * U * 17, (highest, cpu_err)
    assert high <= 2.0 ** -14, high
    assert default > 2.0 ** -14, default   # the fast default is kept, not silently upgraded


def test_mixed_operand_precision_takes_the_higher(tt):
    a, b = well()
    c = dot_on(tt, (P.HIGHEST, P.DEFAULT), a, b)
    assert scaled_error(c, a, b).max() <= 8 * U * 16


def test_bf16_operands_highest_exact_products(tt):
    """bf16 x bf16 -> f32 at HIGHEST: one HiFi4 matmul, products exact, float32 sums."""
    import ml_dtypes
    a, b = (x.astype(ml_dtypes.bfloat16) for x in well())
    f = jax.jit(lambda x, y: lax.dot(x, y, precision=P.HIGHEST, preferred_element_type=np.float32))
    c = np.asarray(f(jax.device_put(a, tt), jax.device_put(b, tt)))
    assert scaled_error(c, a.astype(np.float32), b.astype(np.float32)).max() <= 8 * U * 16


def test_dot_general_batched_highest(tt, cpu):
    x = RNG.standard_normal((3, 40, 70)).astype(np.float32)
    y = RNG.standard_normal((3, 70, 20)).astype(np.float32)
    f = jax.jit(lambda p, q: jax.numpy.einsum("bmk,bkn->bmn", p, q, precision=P.HIGHEST))
    got = np.asarray(f(jax.device_put(x, tt), jax.device_put(y, tt)))
    want = np.einsum("bmk,bkn->bmn", x.astype(np.float64), y.astype(np.float64))
    scale = np.einsum("bmk,bkn->bmn", np.abs(x.astype(np.float64)), np.abs(y.astype(np.float64)))
    assert (np.abs(got - want) / scale).max() <= 8 * U * 16


@pytest.mark.parametrize("preset", [A.F16_F16_F32, A.F16_F16_F16], ids=str)
def test_float16_algorithms(tt, cpu, preset):
    """On float16 operands: products exact and summed in float32 (x6 of the float32 carriers),
    the float16 result then one rounding from the exact dot (half a float16 ulp, 2^-11
    relative, plus the float32 sum's error); XLA:CPU (which runs F16_F16_F16 only) agrees to
    within that rounding."""
    a, b = (v.astype(np.float16) for v in well())
    exact = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    got = dot_on(tt, preset, a, b)
    assert got.dtype == np.float16 and got.shape == exact.shape
    assert (np.abs(got - exact) / (np.abs(exact) * 2.0 ** -11 + scale * 8 * U * 16)).max() <= 1.0
    if preset == A.F16_F16_F16:
        want = dot_on(cpu, preset, a, b).astype(np.float64)
        assert (np.abs(got - want) / (np.abs(want) * 2.0 ** -10 + scale * 2.0 ** -11)).max() <= 1.0


@pytest.mark.parametrize("preset", [A.F64_F64_F64], ids=str)
def test_refused(tt, preset):
    a, b = well()
    with pytest.raises(Exception) as e:
        dot_on(tt, preset, a, b)
    msg = str(e.value)
    name = str(preset).split(".")[-1]
    assert "UNIMPLEMENTED" in msg or isinstance(e.value, Unimplemented), msg
    assert "stablehlo.dot_general" in msg and f"dot algorithm {name}" in msg, msg
    assert "test_precision.py:" in msg, msg   # the user's line


def test_fidelity_option_leaves_precision_configs(tt):
    """tt_math_fidelity=LoFi changes the DEFAULT dot's matmul, not HIGHEST's HiFi4 split."""
    from conftest import NewPrograms
    a, b = well(32, 64, 72)   # shapes no other test compiles
    f = jax.jit(lambda x, y: (lax.dot(x, y, precision=P.HIGHEST), lax.dot(x, y)),
                compiler_options={"tt_math_fidelity": "LoFi"})
    with NewPrograms() as seen:
        hi, lo = f(jax.device_put(a, tt), jax.device_put(b, tt))
    fids = sorted(str(dict(op.kwargs["compute_kernel_config"].kwargs)["math_fidelity"])
                  for op in seen.one().ops if op.fn == "matmul")
    assert fids == ["ttnn.MathFidelity.HiFi4"] * 6 + ["ttnn.MathFidelity.LoFi"], fids
    assert scaled_error(np.asarray(hi), a, b).max() <= 8 * U * 16
    assert scaled_error(np.asarray(lo), a, b).max() > 2.0 ** -10


def test_torch_mat_mul_precision_highest():
    """torch_xla's set_mat_mul_precision("highest") reaches the dots as HIGHEST (its own graph
    cache keeps the first setting of a process, so the child sets it once)."""
    from conftest import torch_script
    out = torch_script("""
        import numpy as np, torch_xla.backends
        torch_xla.backends.set_mat_mul_precision("highest")
        rng = np.random.default_rng(0)
        a = rng.standard_normal((64, 256)).astype(np.float32)
        b = rng.standard_normal((256, 48)).astype(np.float32)
        c = (torch.from_numpy(a).to(dev) @ torch.from_numpy(b).to(dev)).cpu().numpy()
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        print((np.abs(c - a64 @ b64) / (np.abs(a64) @ np.abs(b64))).max())
    """)
    assert float(out.split()[-1]) <= 8 * U * 16
