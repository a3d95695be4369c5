"""Data formats and math fidelity: compile options (passes/data_formats.py) and the sim's model
of the matrix unit (targets/sim/fpu.py). See docs/numerics.md."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, pcc

from pjrt_tt.program import Construct, Value
from pjrt_tt.targets import sim as ttnn
from pjrt_tt.ttnn_facts import default_matmul_config

RNG = np.random.default_rng(7)


def mlp(x, w1, b1, w2):
    return jnp.tanh(x @ w1 + b1) @ w2


def mlp_args():
    return (RNG.standard_normal((64, 128)).astype(np.float32),
            (RNG.standard_normal((128, 256)) / 11).astype(np.float32),
            RNG.standard_normal(256).astype(np.float32),
            (RNG.standard_normal((256, 32)) / 16).astype(np.float32))


def run_both(f, *args, tt_device, cpu_device, compiler_options):
    """jit(f) on TT with the compiler options, and on XLA:CPU (which rejects tt_* options)."""
    got = jax.jit(f, compiler_options=compiler_options)(*(jax.device_put(a, tt_device) for a in args))
    want = jax.jit(f)(*(jax.device_put(a, cpu_device) for a in args))
    return [np.asarray(x) for x in jax.tree.leaves(got)], [np.asarray(x) for x in jax.tree.leaves(want)]


def lowered(f, *args, **options):
    """The ttnn program pjrt-tt makes for jit(f)(*args) under compiler options (no run), at
    optimization level 0 unless told: these tests read what data_formats wrote, before
    const-eval moves the weight typecasts out of the per-call ops (tests/test_optimizer.py)."""
    from pjrt_tt.compile_context import CompileContext, parse_options
    from pjrt_tt.ingest import parse
    from pjrt_tt.lower import lower_module
    from pjrt_tt.passes import run_passes
    text = jax.jit(f).lower(*args).as_text(debug_info=True)
    numerics, optimizer = parse_options([("optimization_level", 0)] + list(options.items()))
    ctx = CompileContext(numerics=numerics, optimizer=optimizer)
    return run_passes(lower_module(parse(text.encode(), "mlir"), ctx), ctx)


def matmuls(program):
    return [op for op in program.ops if op.fn in ("matmul", "linear")]


# --- the options change the program -------------------------------------------------------

def test_bf16_compute_program():
    p = lowered(mlp, *mlp_args(), tt_compute_dtype="bfloat16")
    assert [v.type.dtype for v in p.inputs] == ["float32"] * 4           # what the framework passes
    assert [v.type.dtype for v in p.outputs] == ["float32"]
    body = [op for op in p.ops if "at entry" not in op.origin and "at exit" not in op.origin]
    assert body and all(op.result.type.dtype == "bfloat16" for op in body), p.format()
    assert sum("at entry" in op.origin for op in p.ops) == 4 and p.ops[-1].fn == "typecast"


def test_weights_and_fidelity_program():
    p = lowered(mlp, *mlp_args(), tt_compute_dtype="bfloat16", tt_weight_dtype="bfloat8_b",
                tt_math_fidelity="HiFi4", tt_fp32_dest_acc_en=True)
    mms = matmuls(p)
    assert len(mms) == 2
    for op in mms:
        assert op.args[0].type.dtype == "bfloat16" and op.args[1].type.dtype == "bfloat8_b"
        cfg = op.kwargs["compute_kernel_config"]
        assert isinstance(cfg, Construct) and cfg.path == "WormholeComputeKernelConfig"
        assert dict(cfg.kwargs)["fp32_dest_acc_en"] is True
        assert dict(cfg.kwargs)["packer_l1_acc"] is True                  # not given: ttnn's default
    assert ("compute_kernel_config=ttnn.WormholeComputeKernelConfig(math_fidelity=ttnn.MathFidelity.HiFi4, "
            in p.format())
    # the weights come straight from the framework's float32 inputs
    srcs = {op.result.id: op.args[0] for op in p.ops if op.fn == "typecast"}
    assert all(srcs[op.args[1].id].type.dtype == "float32" for op in mms)


def test_constant_weights_are_uploaded_in_the_weight_format(tt, cpu):
    x, w1, b1, w2 = mlp_args()
    f = lambda x: mlp(x, w1, b1, w2)  # noqa: E731 (weights are program constants)
    p = lowered(f, x, tt_weight_dtype="bfloat4_b")
    assert sorted(c.value.type.dtype for c in p.constants if c.value.type.shape in (w1.shape, w2.shape)) == \
        ["bfloat4_b", "bfloat4_b"]
    assert all(isinstance(op.args[1], Value) and op.args[1].type.dtype == "bfloat4_b" for op in matmuls(p))
    (got,), (want,) = run_both(f, x, tt_device=tt, cpu_device=cpu, compiler_options={"tt_weight_dtype": "bfloat4_b"})
    assert 0.95 < pcc(got, want) < 0.999  # 3-bit mantissas: visibly worse than bf16, still the same function
    # A bfloat4_b weight is rounded to 3 mantissa bits under its block's exponent: an error of
    # up to 2**-4 of the block's largest value, ~5% rms of a normal weight; two such layers
    # give 0.145 relative (measured). 2**-2 bounds that and still fails a result off in scale.
    assert_close(got, want, kind="bfloat16", pcc=0.95, rtol=2 ** -2, atol=2 ** -2 * np.abs(want).max(), rel=2 ** -2)


def test_default_options_leave_the_program_alone():
    a = lowered(mlp, *mlp_args())
    b = lowered(mlp, *mlp_args(), tt_compute_dtype="float32", tt_math_fidelity="default")
    assert a.format() == b.format() and "compute_kernel_config" not in a.format()


# --- results against XLA:CPU (issue thresholds) ---------------------------------------------

@pytest.mark.parametrize("options", [
    {"tt_compute_dtype": "bfloat16"},
    {"tt_compute_dtype": "bfloat16", "tt_weight_dtype": "bfloat8_b"},
    {"tt_weight_dtype": "bfloat8_b", "tt_math_fidelity": "LoFi"},
    {"tt_compute_dtype": "bfloat16", "tt_weight_dtype": "bfloat8_b", "tt_math_fidelity": "HiFi4",
     "tt_fp32_dest_acc_en": True, "tt_packer_l1_acc": False, "tt_math_approx_mode": True},
])
def test_mlp_within_thresholds(tt, cpu, options):
    (got,), (want,) = run_both(mlp, *mlp_args(), tt_device=tt, cpu_device=cpu, compiler_options=options)
    # float32 results of bf16 math: bf16's bounds. LoFi reads only 4 mantissa bits of the
    # weights (truncated: up to 2**-4 per product; 3.1e-2 measured for one matmul in
    # docs/numerics.md, 3.3e-2 here over two): 2**-4 for it.
    assert_close(got, want, kind="bfloat16", rel=2 ** -4 if options.get("tt_math_fidelity") == "LoFi" else None)
    assert not np.allclose(got, want, rtol=1e-6, atol=0)  # the options did change the numerics


def test_bf16_compute_with_a_loop_and_passthrough(tt, cpu):
    def f(x, w):
        y = jax.lax.fori_loop(0, 3, lambda i, c: jnp.tanh(c @ w), x)
        return y, x, jnp.sum(y, axis=1)
    x, w = RNG.standard_normal((32, 64)).astype(np.float32), (RNG.standard_normal((64, 64)) / 8).astype(np.float32)
    got, want = run_both(f, x, w, tt_device=tt, cpu_device=cpu, compiler_options={"tt_compute_dtype": "bfloat16"})
    assert_close(got[0], want[0], kind="bfloat16")
    assert_close(got[2], want[2], kind="bfloat16")
    assert_close(got[1], x, exact=True)  # an input returned as is keeps its float32 bits


def test_options_are_part_of_the_cache_key(tt):
    x = RNG.standard_normal((32, 256)).astype(np.float32)
    w = RNG.standard_normal((256, 32)).astype(np.float32)
    outs = [np.asarray(jax.jit(lambda a, b: a @ b, compiler_options=o)(x, w))
            for o in ({}, {"tt_math_fidelity": "LoFi"}, {})]
    assert not np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])


@pytest.mark.parametrize("options,message", [
    ({"tt_compute_dtype": "float16"}, "valid values: float32, bfloat16"),
    ({"tt_math_fidelity": "HiFi5"}, "valid values: default, LoFi, HiFi2, HiFi3, HiFi4"),
    ({"tt_fp32_dest_acc_en": "maybe"}, "valid values: default, true, false"),
    ({"tt_weight_type": "bfloat8_b"}, "unknown pjrt-tt compiler option 'tt_weight_type'; valid options: "
                                      "tt_compute_dtype: float32|bfloat16; tt_weight_dtype"),
])
def test_invalid_options(tt, options, message):
    with pytest.raises(Exception, match="INVALID_ARGUMENT") as e:
        jax.jit(lambda a: a + 1, compiler_options=options)(np.ones(4, np.float32))
    assert message in str(e.value)


# --- the sim's matrix unit model --------------------------------------------------------------

def cfg(fidelity: str, fp32_acc: bool):
    return ttnn.WormholeComputeKernelConfig(math_fidelity=getattr(ttnn.MathFidelity, fidelity),
                                            fp32_dest_acc_en=fp32_acc)


def run(dev, a, b, da, db, dout, config=None):
    out = ttnn.matmul(ttnn.Tensor(a, da, dev, ttnn.TILE_LAYOUT), ttnn.Tensor(b, db, dev, ttnn.TILE_LAYOUT),
                      dtype=dout, compute_kernel_config=config)
    return np.asarray(ttnn.to_dtype(ttnn.from_device(out), ttnn.float32).to_numpy(), np.float64)


@pytest.mark.parametrize("fidelity,want", [  # a -> SrcB (1 + top 6 bits / next 4), b -> SrcA (1 + 4 / next 5)
    ("LoFi", 1.0),                                        # a_hi * b_hi
    ("HiFi2", 1 + 2**-5),                                 # + a_hi * b_lo
    ("HiFi3", 1 + 2**-5 + 2**-7),                         # + a_lo * b_hi
    ("HiFi4", (1 + 2**-7) * (1 + 2**-5)),                 # + a_lo * b_lo: exact
])
def test_fidelity_phases_bit_model(dev, fidelity, want):
    a = np.array([[1 + 2**-7]], np.float32)  # bf16's last mantissa bit: beyond SrcB's first phase
    b = np.array([[1 + 2**-5]], np.float32)  # 5th mantissa bit: beyond SrcA's first phase
    assert run(dev, a, b, ttnn.bfloat16, ttnn.bfloat16, ttnn.float32, cfg(fidelity, True))[0, 0] == want


def test_float32_operands_are_tf32_or_bf16_in_the_source_registers(dev):
    a = RNG.standard_normal((64, 96)).astype(np.float32)
    b = RNG.standard_normal((96, 32)).astype(np.float32)

    def keep(x, bits):
        return (x.view(np.uint32) & np.uint32((0xFFFFFFFF << (23 - bits)) & 0xFFFFFFFF)).view(np.float32)
    # fp32 Dst: TF32 operands (10 bits; SrcA = b uses 9 of them), HiFi4, float32 sums
    got = run(dev, a, b, ttnn.float32, ttnn.float32, ttnn.float32, cfg("HiFi4", True))
    np.testing.assert_allclose(got, keep(a, 10).astype(np.float64) @ keep(b, 9), rtol=1e-5, atol=1e-5)
    # bf16 Dst: float32 operands arrive as bf16; LoFi reads 1 + 6 bits of a, 1 + 4 of b; every
    # 16-product MVMUL is added to Dst and rounded to bf16
    got = run(dev, a, b, ttnn.float32, ttnn.float32, ttnn.float32, cfg("LoFi", False))
    ref = np.zeros((64, 32), np.float32)
    for k in range(0, 96, 16):
        ref = (ref + keep(a[:, k:k + 16], 6) @ keep(b[k:k + 16], 4)).astype(jnp.bfloat16).astype(np.float32)
    np.testing.assert_allclose(got, ref, rtol=2**-8, atol=1e-6)
    # and that is what a float32 matmul costs on the card: default (HiFi3, fp32 Dst) ~1e-3 relative
    exact = a.astype(np.float64) @ b
    err = np.linalg.norm(run(dev, a, b, ttnn.float32, ttnn.float32, ttnn.float32) - exact) / np.linalg.norm(exact)
    assert 2e-4 < err < 3e-3


@pytest.mark.parametrize("da,db", [(ttnn.bfloat16, ttnn.bfloat16), (ttnn.bfloat16, ttnn.bfloat8_b),
                                   (ttnn.float32, ttnn.float32)])
@pytest.mark.parametrize("fp32_acc", [False, True])
def test_fidelity_orders_errors(dev, da, db, fp32_acc):
    a = RNG.standard_normal((64, 256)).astype(np.float32)
    b = RNG.standard_normal((256, 64)).astype(np.float32)
    exact = a.astype(np.float64) @ b
    err = {f: np.linalg.norm(run(dev, a, b, da, db, ttnn.float32, cfg(f, fp32_acc)) - exact) / np.linalg.norm(exact)
           for f in ("LoFi", "HiFi2", "HiFi4")}
    assert err["LoFi"] > 1.2 * err["HiFi2"] and err["HiFi2"] >= err["HiFi4"], err
    if fp32_acc and da == db == ttnn.bfloat16:
        assert err["HiFi2"] > 1.2 * err["HiFi4"], err


def test_bf16_accumulation_is_worse_than_fp32(dev):
    a = RNG.standard_normal((32, 2048)).astype(np.float32)
    b = RNG.standard_normal((2048, 32)).astype(np.float32)
    exact = a.astype(np.float64) @ b
    e = [np.linalg.norm(run(dev, a, b, ttnn.bfloat16, ttnn.bfloat16, ttnn.float32, cfg("HiFi4", acc)) - exact)
         for acc in (False, True)]
    assert e[0] > 2 * e[1], e


# ttnn 0.81.1's defaults, measured with ttnn.graph capture on mock n150 (Wormhole) and p150
# (Blackhole): (a, b, output) -> (fidelity, fp32_dest_acc_en, packer_l1_acc)
MEASURED = {
    ("bfloat16", "bfloat16", "bfloat16"): ("HiFi2", False, True),
    ("float32", "float32", "float32"): ("HiFi3", True, False),          # HiFi4 on Blackhole
    ("float32", "bfloat16", "float32"): ("HiFi2", True, False),
    ("bfloat16", "float32", "bfloat16"): ("HiFi2", False, True),
    ("float32", "bfloat8_b", "float32"): ("HiFi2", True, False),
    ("bfloat8_b", "bfloat8_b", "bfloat8_b"): ("LoFi", False, True),
    ("bfloat16", "bfloat16", "float32"): ("HiFi2", True, False),
}


@pytest.mark.parametrize("key", list(MEASURED))
def test_defaults_are_ttnns(key):
    want = dict(zip(("math_fidelity", "fp32_dest_acc_en", "packer_l1_acc"), MEASURED[key]))
    got = default_matmul_config("wormhole_b0", *key)
    assert {k: got[k] for k in want} == want and got["math_approx_mode"] is False
    bh = default_matmul_config("blackhole", *key)["math_fidelity"]
    assert bh == ("HiFi4" if key[:2] == ("float32", "float32") else want["math_fidelity"])
    assert default_matmul_config("wormhole_b0", *key, user_grid=True)["math_fidelity"] == \
        ("HiFi3" if key[:2] == ("float32", "float32") else "LoFi")


# --- the suite's comparison (conftest.assert_close) catches what PCC misses -------------------

def _matmul_like(n=64):
    a, b = RNG.standard_normal((n, 96)), RNG.standard_normal((96, n))
    return (a @ b).astype(np.float32)


@pytest.mark.parametrize("kind", ["float32", "matmul", "bfloat16"])
@pytest.mark.parametrize("error", ["scale 1.01", "scale 1.05", "offset", "summed twice", "one element"])
def test_assert_close_catches_scale_and_offset_errors_pcc_misses(kind, error):
    want = _matmul_like()
    if error == "summed twice":        # an all-reduce that adds every shard twice
        got = 2 * want
    elif error.startswith("scale"):
        got = want * np.float32(error.split()[1])
    elif error == "offset":            # 5% of the result's rms added everywhere
        got = want + np.float32(0.05 * np.sqrt(np.mean(want ** 2)))
    else:                              # one wrong element, 0.2 of the largest
        got = want.copy()
        got[3, 5] += 0.2 * np.abs(want).max()
    if kind == "bfloat16":
        got, want = got.astype(jnp.bfloat16), want.astype(jnp.bfloat16)
    if error != "one element":
        assert pcc(got, want) > 0.9999   # PCC alone passes all of these
    if kind == "bfloat16" and error == "scale 1.01":
        assert_close(got, want)  # 1% is ~1 bf16 ulp (2**-7): below what bf16 can tell apart
        return
    if kind == "float32" and error == "scale 1.01":
        # plain float32's elementwise rtol 1e-2 sits exactly at 1%; a scale of 1.02 fails it
        with pytest.raises(AssertionError, match="elements outside"):
            assert_close(want * np.float32(1.02), want)
        return
    with pytest.raises(AssertionError, match="PCC|elements outside|err\\|\\|/"):
        assert_close(got, want, kind=None if kind == "bfloat16" else kind)


def test_assert_close_passes_what_the_card_computes():
    """Not too tight: the matrix unit's own error (TF32 operands, truncated) meets "matmul",
    a bf16 matmul with bf16 rounding of inputs and output meets "bfloat16"."""
    a = RNG.standard_normal((64, 256)).astype(np.float32)
    b = RNG.standard_normal((256, 64)).astype(np.float32)
    want = (a.astype(np.float64) @ b).astype(np.float32)
    tf32 = lambda x: (x.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)  # noqa: E731
    assert_close((tf32(a).astype(np.float64) @ tf32(b)).astype(np.float32), want, kind="matmul")
    bf = lambda x: x.astype(jnp.bfloat16).astype(np.float32)  # noqa: E731
    assert_close(bf(bf(a) @ bf(b)).astype(jnp.bfloat16), want.astype(jnp.bfloat16))


def test_assert_close_exact_compares_bit_patterns():
    x = np.float32(1 + 2 ** -8 + 2 ** -20) * np.linspace(-3, 3, 101, dtype=np.float32)
    rne = x.astype(jnp.bfloat16)
    truncated = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32).astype(jnp.bfloat16)
    assert pcc(truncated, rne) > 0.9999
    with pytest.raises(AssertionError, match="bit patterns differ"):
        assert_close(truncated, rne, exact=True)
    with pytest.raises(AssertionError, match="bit patterns differ"):
        assert_close(np.array([0.0, 1.0], np.float32), np.array([-0.0, 1.0], np.float32), exact=True)
    assert_close(np.array([np.nan, -0.0], np.float32), np.array([-np.nan, -0.0], np.float32), exact=True)


def test_signed_zero_scalars_are_kept_apart(tt, cpu):
    """x / -0.0 and x / 0.0 in one program (JAX's test_zero_literal_equality): the sim's
    op plans were keyed by the scalar's value, where -0.0 == 0.0, so the second divide ran
    the first's plan and gave -inf for 1 / 0.0. Bit for bit against XLA:CPU."""
    # (not x - (-0.0): XLA:CPU folds it to x, -0.0 for x = -0.0, where IEEE gives +0.0)
    f = jax.jit(lambda x: (x / np.float32(-0.0), x / np.float32(0.0), x * np.float32(-0.0), x * np.float32(0.0),
                           x - np.float32(0.0)))
    for v in (1.0, -2.5, -0.0):
        x = np.float32(v)
        got = [np.asarray(r) for r in f(jax.device_put(x, tt))]
        want = [np.asarray(r) for r in f(jax.device_put(x, cpu))]
        assert [g.view(np.uint32).item() for g in got] == [w.view(np.uint32).item() for w in want], (v, got, want)
