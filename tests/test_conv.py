"""stablehlo.convolution (and the reverse its gradient emits) vs XLA:CPU.

Every program also runs through real ttnn (mock) via conftest, so each case checks that
ttnn.conv2d accepts the arguments the lowering builds. Integer convolutions are exact; float32 results are compared with
the "matmul" bounds (conftest.TOLERANCES): conv2d and matmul run on the matrix unit, which takes float32
operands as TF32 / BF16 (sim/fpu.py, docs/numerics.md), about 1e-3 relative."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from conftest import NewPrograms, assert_close, run_both

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """The same inputs for a test however the tests are selected or ordered."""
    global RNG
    RNG = np.random.default_rng(0)


def _rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def _conv(strides=(1, 1), padding="VALID", lhs_dil=None, rhs_dil=None, groups=1, dn=("NHWC", "HWIO", "NHWC")):
    return lambda x, w: lax.conv_general_dilated(x, w, strides, padding, lhs_dilation=lhs_dil,
                                                 rhs_dilation=rhs_dil, dimension_numbers=dn,
                                                 feature_group_count=groups)


# (name, x shape, w shape, conv kwargs)
FORWARD = [
    ("nhwc_valid", (2, 8, 8, 3), (3, 3, 3, 5), {}),
    ("nhwc_same_stride2", (2, 9, 7, 3), (3, 3, 3, 4), dict(strides=(2, 2), padding="SAME")),
    ("nchw_oihw", (2, 5, 8, 8), (4, 5, 3, 3), dict(padding="SAME", dn=("NCHW", "OIHW", "NCHW"))),
    ("asym_explicit_pad", (1, 7, 6, 3), (2, 3, 3, 5), dict(padding=((1, 2), (0, 3)), strides=(1, 2))),
    ("rhs_dilation", (1, 10, 9, 5), (3, 2, 5, 3), dict(rhs_dil=(2, 3), padding="SAME")),
    ("lhs_dilation", (1, 4, 5, 3), (3, 3, 3, 2), dict(lhs_dil=(2, 3), padding=((2, 2), (1, 1)))),
    ("depthwise", (2, 8, 8, 3), (3, 3, 1, 3), dict(groups=3, padding="SAME")),
    ("grouped_odd", (1, 6, 6, 4), (3, 3, 2, 6), dict(groups=2)),
    ("pointwise", (2, 5, 7, 3), (1, 1, 3, 5), {}),
    ("negative_pad", (1, 9, 9, 3), (3, 3, 3, 5), dict(padding=((-1, 0), (1, -2)))),
    ("weird_dims", (3, 8, 2, 7), (3, 5, 3, 3), dict(dn=("CWNH", "HOWI", "WCHN"), padding="SAME")),
]


@pytest.mark.parametrize("name,xs,ws,kw", FORWARD, ids=[c[0] for c in FORWARD])
def test_conv_forward(name, xs, ws, kw, tt, cpu):
    got, want = run_both(_conv(**kw), _rand(*xs), _rand(*ws), tt_device=tt, cpu_device=cpu)
    assert_close(got[0], want[0], kind="matmul")


def test_conv1d(tt, cpu):
    f = lambda x, w: lax.conv_general_dilated(x, w, (2,), ((2, 1),), rhs_dilation=(2,),  # noqa: E731
                                              dimension_numbers=("NWC", "WIO", "NWC"))
    got, want = run_both(f, _rand(2, 16, 3), _rand(3, 3, 5), tt_device=tt, cpu_device=cpu)
    assert_close(got[0], want[0], kind="matmul")


@pytest.mark.parametrize("dims,groups", [(("NC", "OI", "NC"), 1), (("CN", "IO", "CN"), 1), (("NC", "OI", "NC"), 2)],
                         ids=["NC", "CN", "grouped"])
def test_conv_without_spatial_dims(dims, groups, tt, cpu):
    """A convolution over features only (lax allows it): lowered as 1-D of length 1, with
    its gradients. The reference is the same computation written as per-group dots on
    XLA:CPU: jaxlib 0.7.1's XLA:CPU gets the grouped convolution itself wrong (max error 2.9
    against numpy on this case; jaxlib 0.12's is right)."""
    def conv(x, w):
        return lax.conv_general_dilated(x, w, (), [], dimension_numbers=dims, feature_group_count=groups)

    def dots(x, w):   # NC x OI -> NC in the test's layouts, group by group
        xn, wo = (x, w) if dims[0] == "NC" else (x.T, w.T)
        i, o = wo.shape[1], wo.shape[0] // groups
        y = jnp.concatenate([xn[:, g * i:(g + 1) * i] @ wo[g * o:(g + 1) * o].T for g in range(groups)], 1)
        return y if dims[0] == "NC" else y.T

    def with_grads(f):
        return lambda x, w: (f(x, w), jax.grad(lambda x, w: (f(x, w) ** 2).sum(), argnums=(0, 1))(x, w))
    x = _rand(4, 6) if dims[0] == "NC" else _rand(6, 4)
    w = _rand(5 if groups == 1 else 4, 6 // groups)
    w = w if dims[1] == "OI" else w.T
    got, _ = run_both(with_grads(conv), x, w, tt_device=tt, cpu_device=cpu)
    _, want = run_both(with_grads(dots), x, w, tt_device=tt, cpu_device=cpu)
    for a, b in zip(got, want):
        assert_close(a, b, kind="matmul")


@pytest.mark.parametrize("grad", [False, True])
def test_conv3d(grad, tt, cpu):
    f = lambda x, w: lax.conv_general_dilated(x, w, (2, 1, 1), ((1, 1), (0, 1), (1, 0)),  # noqa: E731
                                              rhs_dilation=(1, 2, 1), dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
    if grad:
        f = jax.grad(lambda x, w: jnp.sum(jnp.tanh(lax.conv_general_dilated(  # noqa: E731
            x, w, (2, 1, 1), "SAME", dimension_numbers=("NCDHW", "OIDHW", "NCDHW")))), argnums=(0, 1))
        args = _rand(2, 3, 5, 4, 4), _rand(2, 3, 3, 2, 2)
    else:
        args = _rand(2, 5, 6, 5, 3), _rand(3, 2, 2, 3, 4)
    got, want = run_both(f, *args, tt_device=tt, cpu_device=cpu)
    for a, b in zip(got, want):
        assert_close(a, b, kind="matmul")


# (dtype, conv kwargs): integer convolutions run as im2col + exact integer products
INTEGER = [
    (np.int32, dict(strides=(1, 1), padding="SAME")),
    (np.int8, dict(strides=(2, 1), padding=((1, 0), (2, 1)), rhs_dil=(2, 1))),
    (np.uint16, dict(padding=((1, 1), (0, 0)), lhs_dil=(2, 1))),   # the input gradient's form
    (np.uint32, dict(groups=2)),
    (np.uint8, dict(strides=(1, 2), padding="SAME")),
]


@pytest.mark.parametrize("dtype,kw", INTEGER, ids=[np.dtype(d).name for d, _ in INTEGER])
def test_integer_conv_is_exact(dtype, kw, tt, cpu):
    """ttnn.conv2d takes floats only: integer convolutions are im2col + elementwise integer
    products (no rounding past 2^24), wrapping as XLA's, whether they are more output
    positions than taps or fewer."""
    info = np.iinfo(dtype)
    x = RNG.integers(max(info.min, -1000), min(info.max, 1000), (2, 9, 8, 4)).astype(dtype)
    w = RNG.integers(max(info.min, -1000), min(info.max, 1000), (3, 2, 4 // kw.get("groups", 1), 6)).astype(dtype)
    got, want = run_both(_conv(**kw), x, w, tt_device=tt, cpu_device=cpu)
    assert_close(got[0], want[0], exact=True)


def test_integer_conv_wraps_and_widens(tt, cpu):
    big = np.full((1, 4, 4, 1), 70000, np.int32)   # products past 2^32 wrap
    got, want = run_both(_conv(), big, np.full((2, 2, 1, 1), 70000, np.int32), tt_device=tt, cpu_device=cpu)
    assert_close(got[0], want[0], exact=True)
    x, w = RNG.integers(-128, 128, (2, 16, 4)).astype(np.int8), RNG.integers(-128, 128, (3, 4, 5)).astype(np.int8)
    got, want = run_both(lambda x, w: lax.conv_general_dilated(x, w, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"),
                                                               preferred_element_type=np.int32),
                         x, w, tt_device=tt, cpu_device=cpu)   # int8 operands, int32 sums (no int8 wrap)
    assert got[0].dtype == np.int32
    assert_close(got[0], want[0], exact=True)


def test_complex_conv_and_its_gradient(tt, cpu):
    """complex64 convolutions as four real ones over the planes (ingest/complex64.py), and
    the gradient of a real loss through one: the float32 conv bound per plane."""
    c = lambda *s: (_rand(*s) + 1j * _rand(*s)).astype(np.complex64)  # noqa: E731
    x, w = c(2, 9, 8, 3), c(3, 2, 3, 4)
    f = _conv(strides=(2, 1), padding="SAME")
    loss = lambda x, w: jnp.sum(jnp.abs(f(x, w)) ** 2)  # noqa: E731
    got, want = run_both(lambda x, w: (f(x, w), *jax.grad(loss, argnums=(0, 1))(x, w)), x, w,
                         tt_device=tt, cpu_device=cpu)
    for a, b in zip(got, want):
        assert a.dtype == np.complex64
        assert_close(a.real, b.real, kind="matmul")
        assert_close(a.imag, b.imag, kind="matmul")


def test_conv_bf16(tt, cpu):
    f = _conv(padding="SAME")
    got, want = run_both(f, _rand(2, 8, 8, 3).astype(jnp.bfloat16), _rand(3, 3, 3, 5).astype(jnp.bfloat16),
                         tt_device=tt, cpu_device=cpu)
    assert_close(got[0], want[0], kind="matmul")


GRADS = [
    ("plain", (2, 8, 8, 3), (3, 3, 3, 5), dict(strides=(2, 2), padding="SAME")),
    ("dilated_valid", (1, 9, 9, 3), (3, 3, 3, 2), dict(rhs_dil=(2, 2))),
    ("depthwise", (2, 6, 6, 3), (3, 3, 1, 3), dict(groups=3, padding="SAME")),
    ("grouped", (2, 6, 5, 4), (2, 3, 2, 6), dict(groups=2, strides=(1, 2))),
    ("nchw_stride", (2, 3, 7, 7), (5, 3, 3, 3), dict(strides=(2, 2), padding=((1, 0), (0, 1)),
                                                     dn=("NCHW", "OIHW", "NCHW"))),
]


@pytest.mark.parametrize("name,xs,ws,kw", GRADS, ids=[c[0] for c in GRADS])
def test_conv_grads(name, xs, ws, kw, tt, cpu):
    f = _conv(**kw)
    g = jax.grad(lambda x, w: jnp.sum(jnp.tanh(f(x, w))), argnums=(0, 1))
    got, want = run_both(g, _rand(*xs), _rand(*ws), tt_device=tt, cpu_device=cpu)
    for a, b in zip(got, want):
        assert_close(a, b, kind="matmul")


def test_flax_conv(tt, cpu):
    flax = pytest.importorskip("flax.linen")

    class Net(flax.Module):
        @flax.compact
        def __call__(self, x):
            x = flax.relu(flax.Conv(8, (3, 3), strides=(2, 2))(x))
            return flax.Conv(4, (3, 3), feature_group_count=4, padding="VALID")(x)

    x = _rand(2, 12, 12, 3)
    with jax.default_device(cpu):
        params = Net().init(jax.random.PRNGKey(0), x)
    with NewPrograms() as new:
        got, want = run_both(lambda p, x: Net().apply(p, x), params, x, tt_device=tt, cpu_device=cpu)
    assert_close(got[0], want[0], kind="matmul")
    program = new.biggest()
    convs = [op for op in program.ops if op.fn == "conv2d"]
    assert len(convs) == 2 and all("bias_tensor" in op.kwargs for op in convs), program.format()
    assert "add" not in [op.fn for op in program.ops]  # the biases went into conv2d


def test_reverse(tt, cpu):
    got, want = run_both(lambda x: lax.rev(x, (0, 2)), _rand(3, 4, 5), tt_device=tt, cpu_device=cpu)
    assert_close(got[0], want[0], exact=True)   # data movement: no arithmetic


def test_window_reversal(tt, cpu):
    """window_reversal (jax never sets it; other producers may): the kernel is reversed."""
    from pjrt_tt.dtypes import DEVICE_NUMPY
    from pjrt_tt.runtime.client import CLIENTS
    f = _conv(padding=((1, 0), (2, 1)))
    x, w = _rand(2, 6, 5, 3), _rand(3, 2, 3, 4)
    text = jax.jit(f).lower(x, w).as_text()
    assert "reverse = [false, false]" in text
    program = CLIENTS[0].compiler.compile(text.replace("reverse = [false, false]", "reverse = [true, false]")
                                          .encode(), "mlir").program
    target, chip = CLIENTS[0].target, CLIENTS[0].devices[0].chip
    args = [target.upload(a.astype(DEVICE_NUMPY[v.type.dtype]), v.type, chip) for a, v in zip((x, w), program.inputs)]
    (out,) = target.bind(program, chip).run(args, [])
    want = jax.jit(f)(jax.device_put(x, cpu), jax.device_put(w[::-1].copy(), cpu))
    assert_close(target.download(out, program.outputs[0].type), np.asarray(want), kind="matmul")
