"""The lowering gaps Hugging Face models hit (issue 9), each as a small repro of the model code
that hit it, against XLA:CPU (JAX) or eager PyTorch on the CPU.

- reduce bodies spelled the frameworks' ways: torch_xla's boolean AND / OR (all() / any() in
  HF mask code), torch's GE / LE argmax / argmin, jnp.argmax over booleans (CLIP's pooled
  output), with XLA's first-index tie rule;
- gathers and scatters with unsigned indices (the int32 index clamp);
- select_and_scatter as the frameworks emit it: max-pool gradients with >= / > / <= / <
  selects, torch_xla's max-pool indices (a max scatter), inside a loop body; eager torch_xla
  MaxPool2d forward and backward, and a CNN trained through torch.compile;
- dynamic_slice start clamping (sliding windows), adaptive average pooling whose output does
  not divide the input (Swin, ResNet heads);
- scaled_dot_product_attention through torch.compile(backend="tt") on the chip, with masks,
  causal and GQA forms, and the backend's report of any CPU fallback that remains.
"""
from __future__ import annotations

import copy
import os

os.environ.setdefault("PJRT_DEVICE", "TT")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax import lax  # noqa: E402
from jax._src.lax import windowed_reductions as wr  # noqa: E402

from conftest import assert_close, run_both  # noqa: E402

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.9.0)")
torch_xla = pytest.importorskip("torch_xla", reason="torch_xla is not installed (pip install torch_xla==2.9.0)")
F = torch.nn.functional

from pjrt_tt.torch.backend import compile_counts, cpu_fallback_ops  # noqa: E402


@pytest.fixture(scope="module")
def xdev():
    import torch_xla.runtime as xr
    assert xr.device_type() == "TT", f"torch_xla started on {xr.device_type()}, not TT"
    return torch_xla.device()


def np_(t):
    t = t.detach().cpu()
    return (t.float().numpy().astype(ml_dtypes.bfloat16) if t.dtype == torch.bfloat16 else t.numpy())


def compiled(fn):
    torch._dynamo.reset()
    return torch.compile(fn, backend="tt")


def ties(*shape, seed=0, dtype=torch.float32):
    """Small integers as floats: many equal values, so tie rules are tested."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-3, 4, shape, generator=g).to(dtype)


# ------------------------------------------------------------------ reduce bodies

@pytest.mark.parametrize("name, fn", [
    ("all", lambda x: (x > 0).all()),
    ("all_dim", lambda x: (x >= x.amin(dim=0)).all(dim=-1)),
    ("any", lambda x: (x > x.mean()).any()),
    ("any_dim", lambda x: (x < 0).any(dim=0)),
    # HF mask code: `if (mask == 1).all()` as a value, and a padding mask's rows
    ("mask_rows", lambda x: x * (x != 0).all(dim=-1, keepdim=True)),
])
def test_torch_boolean_reductions(name, fn):
    # torch_xla writes AND / OR as compare NE / compare NE / and / select
    x = ties(4, 8, seed=1)
    assert_close(np_(compiled(fn)(x)), np_(fn(x)), exact=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int32])
@pytest.mark.parametrize("name, fn", [
    ("argmax_last", lambda x: x.argmax(-1)),
    ("argmax_first", lambda x: x.argmax(0)),
    ("argmin", lambda x: x.argmin(-1)),
    ("max_dim", lambda x: x.max(dim=1)[1]),
    ("min_dim", lambda x: x.min(dim=0)[1]),
])
def test_torch_arg_reductions_first_index_on_ties(dtype, name, fn):
    # torch_xla's body: GE / LE select plus an EQ -> minimum index tie-break (CLIP's pooling)
    x = ties(6, 10, seed=2, dtype=dtype)
    want = fn(x).to(torch.int32)
    got = compiled(lambda a: fn(a).to(torch.int32))(x)
    assert_close(np_(got), np_(want))


def test_torch_max_dim_values_and_indices():
    x = ties(5, 7, seed=3)
    got = compiled(lambda a: tuple(t.to(torch.int32) if t.dtype == torch.int64 else t for t in a.max(dim=-1)))(x)
    want = x.max(dim=-1)
    assert_close(np_(got[0]), np_(want.values), exact=True)
    assert_close(np_(got[1]), np_(want.indices.to(torch.int32)))


@pytest.mark.parametrize("fn", [
    # Flax CLIP's pooled output: argmax over booleans, then a gather
    lambda h, ids: h[jnp.arange(h.shape[0]), (ids == 3).argmax(axis=-1)],
    lambda h, ids: jnp.argmin(ids, axis=0),
    lambda h, ids: jnp.argmax(h.astype(jnp.bfloat16), axis=1),
])
def test_jax_arg_reductions(tt, cpu, fn):
    rs = np.random.RandomState(4)
    h = rs.randint(-2, 3, (3, 6, 4)).astype(np.float32)
    ids = rs.randint(0, 5, (3, 6)).astype(np.int32)
    got, want = run_both(fn, h, ids, tt_device=tt, cpu_device=cpu)
    for g, w in zip(got, want):
        assert_close(g, w, exact=True)


def test_unknown_reduce_body_is_refused_by_name(tt):
    def f(x):
        return lax.reduce(x, 0.0, lambda a, b: a * 2 + b, (0,))
    with pytest.raises(Exception, match=r"reductions whose body is not add/max/min/mul/and/or.*multiply"):
        jax.jit(f, device=tt)(np.ones((4,), np.float32))


# ------------------------------------------------------------ unsigned gather indices

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_gather_with_unsigned_indices(tt, cpu, dtype):
    # ttnn.maximum keeps uint32 (the program expected int32) and refuses uint8/uint16
    x = np.arange(40, dtype=np.float32).reshape(8, 5)
    big = np.iinfo(dtype).max  # clamps to the last row, never wraps to a negative index
    i = np.array([[1], [7], [3], [big], [9]], dtype=dtype)
    rows = lax.GatherDimensionNumbers(offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,))
    elems = lax.GatherDimensionNumbers(offset_dims=(), collapsed_slice_dims=(0, 1), start_index_map=(0, 1))
    for f in (lambda x, i: lax.gather(x, i, rows, (1, 5), mode="clip"),
              lambda x, i: lax.gather(x.astype(jnp.bfloat16), i, rows, (1, 5), mode="clip"),
              lambda x, i: lax.gather(x, jnp.concatenate([i, i], 1), elems, (1, 1), mode="clip")):
        (got,), (want,) = run_both(f, x, i, tt_device=tt, cpu_device=cpu)
        assert_close(got, want, exact=True)


def test_scatter_with_unsigned_indices(tt, cpu):
    x = np.zeros((6, 3), np.float32)
    i = np.array([0, 5, 2, 5, 4000000000], np.uint32)   # the last is out of bounds: dropped
    u = np.arange(15, dtype=np.float32).reshape(5, 3)
    (got,), (want,) = run_both(lambda x, i, u: x.at[i].add(u, mode="drop"), x, i, u, tt_device=tt, cpu_device=cpu)
    assert_close(got, want, exact=True)


# ------------------------------------------------------------------ select_and_scatter

def _pool_args(shape, window, strides, padding):
    rs = np.random.RandomState(5)
    x = rs.randint(-3, 4, shape).astype(np.float32)   # ties in most windows
    out = jax.eval_shape(lambda a: lax.reduce_window(a, -np.inf, lax.max, window, strides, padding), x).shape
    return x, rs.randn(*out).astype(np.float32)


PADDED = ((0, 0), (1, 1), (1, 1), (0, 0))


@pytest.mark.parametrize("prim, window, strides, padding", [
    (prim, *form) for prim in (lax.ge_p, lax.gt_p, lax.le_p, lax.lt_p) for form in (
        ((1, 2, 2, 1), (1, 2, 2, 1), ((0, 0),) * 4),
        ((1, 3, 3, 1), (1, 2, 2, 1), ((0, 0),) * 4),      # overlapping windows
        ((1, 3, 3, 1), (1, 2, 2, 1), PADDED))             # max-pool padding (>= and <= only)
    if not (prim in (lax.gt_p, lax.lt_p) and form[2] == PADDED)])
def test_select_and_scatter_add_tie_rules(tt, cpu, prim, window, strides, padding):
    # >= / <= keep the first of equal extremes, > / < the last (XLA's rule)
    x, src = _pool_args((1, 6, 7, 2), window, strides, padding)
    f = lambda s, x: wr._select_and_scatter_add(s, x, prim, window, strides, padding)  # noqa: E731
    (got,), (want,) = run_both(f, src, x, tt_device=tt, cpu_device=cpu)
    assert_close(got, want)


def test_strict_select_with_padding_is_refused(tt):
    # XLA:CPU's pick for > / < selects over padded windows is not the last in-bounds extreme
    # (measured: it matches treating padding as +inf for >); no framework emits this form
    x, src = _pool_args((1, 6, 7, 2), (1, 3, 3, 1), (1, 2, 2, 1), PADDED)
    f = lambda s, x: wr._select_and_scatter_add(s, x, lax.gt_p, (1, 3, 3, 1), (1, 2, 2, 1), PADDED)  # noqa: E731
    with pytest.raises(Exception, match=r"strict \(> / <\) select over padded windows"):
        jax.jit(f, device=tt)(src, x)


@pytest.mark.parametrize("scatter, init", [(lax.max, -np.inf), (lax.min, np.inf), (lax.max, 0.5)])
def test_select_and_scatter_max_min_scatter(tt, cpu, scatter, init):
    # torch_xla's max-pool indices: the pooled max scattered back with max over -inf
    window, strides, padding = (1, 1, 3, 3), (1, 1, 2, 2), ((0, 0), (0, 0), (1, 1), (1, 1))
    x, src = _pool_args((2, 2, 7, 6), window, strides, padding)
    f = lambda x, s: wr._select_and_scatter(x, lax.ge, window, strides, padding, s,  # noqa: E731
                                            jnp.float32(init), scatter)
    (got,), (want,) = run_both(f, x, src, tt_device=tt, cpu_device=cpu)
    assert_close(got, want, exact=True)


def test_max_pool_grad_inside_a_loop(tt, cpu):
    def pool(a):
        return lax.reduce_window(a, -jnp.inf, lax.max, (1, 2, 2), (1, 2, 2), "VALID")

    def f(x):
        def body(_, acc):
            return acc + jax.grad(lambda a: (pool(a) ** 2).sum())(acc) * 0.1
        return lax.fori_loop(0, 3, body, x)
    x = np.random.RandomState(6).randn(2, 6, 8).astype(np.float32)
    (got,), (want,) = run_both(f, x, tt_device=tt, cpu_device=cpu)
    assert_close(got, want)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1)])
def test_eager_torch_xla_max_pool_forward_and_backward(xdev, kernel, stride, padding):
    x = ties(2, 3, 8, 8, seed=7)
    xd = x.to(xdev).requires_grad_()
    y = F.max_pool2d(xd, kernel, stride, padding)
    (y * torch.arange(y.numel(), dtype=torch.float32).reshape(y.shape).to(xdev)).sum().backward()
    torch_xla.sync()
    xc = x.clone().requires_grad_()
    yc = F.max_pool2d(xc, kernel, stride, padding)
    (yc * torch.arange(yc.numel(), dtype=torch.float32).reshape(yc.shape)).sum().backward()
    assert_close(np_(y), np_(yc), exact=True)
    assert_close(np_(xd.grad), np_(xc.grad), exact=True)   # ties: the same (first) element chosen


def test_compiled_cnn_training_step():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 2))
    ref = copy.deepcopy(model)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    compiled(model)(x).square().sum().backward()
    ref(x).square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        assert_close(np_(p.grad), np_(q.grad), kind="matmul", what=name)


# -------------------------------------------------------- slices and adaptive pooling

def test_dynamic_slice_starts_clamp(tt, cpu):
    # a sliding window whose start runs off either end is clamped, as XLA clamps it
    x = np.arange(48, dtype=np.float32).reshape(4, 12)

    def f(x, pos):
        return [lax.dynamic_slice(x, (pos[0], pos[1] - 4), (2, 4)),
                lax.dynamic_slice_in_dim(x, pos[1].astype(jnp.uint32), 5, axis=1),
                lax.dynamic_update_slice(x, jnp.ones((2, 3), x.dtype), (pos[0], pos[1]))]
    for pos in ([-3, 2], [3, 11], [1, 30], [0, -7]):
        got, want = run_both(f, x, np.array(pos, np.int32), tt_device=tt, cpu_device=cpu)
        for g, w in zip(got, want):
            assert_close(g, w, exact=True)


def test_sliding_window_causal_mask():
    # Mistral's sliding window: keep j in (i - window, i]. (The -inf comes in as a tensor:
    # torch_xla makes Python float scalars float64 constants, which is the 64-bit work's.)
    def mask(scores, neg, window: int):
        n = scores.shape[-1]
        i = torch.arange(n, device=scores.device, dtype=torch.int32)
        keep = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window)
        return torch.where(keep, scores, neg).softmax(-1)
    s = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(9))
    neg = torch.tensor(float("-inf"))
    assert_close(np_(compiled(lambda a, b: mask(a, b, 3))(s, neg)), np_(mask(s, neg, 3)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fn", [
    lambda a: F.adaptive_avg_pool2d(a, 3),          # 7 -> 3: windows of 3 overlap by one
    lambda a: F.adaptive_avg_pool2d(a, (2, 3)),
    lambda a: F.adaptive_avg_pool1d(a[..., 0], 3),
    lambda a: F.adaptive_avg_pool1d(a.flatten(2), 1),   # Swin's pooler
    # (49 -> 5, windows of unequal length, needs torch_xla's float64 scalars narrowed: x64)
])
def test_adaptive_average_pooling_runs_on_the_chip(dtype, fn):
    x = torch.randn(2, 4, 7, 7, generator=torch.Generator().manual_seed(10)).to(dtype)
    before = compile_counts()["cpu_fallbacks"]
    got = compiled(fn)(x)
    assert_close(np_(got), np_(fn(x)))
    assert compile_counts()["cpu_fallbacks"] == before, cpu_fallback_ops()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fn", [
    lambda a: torch.flatten(F.adaptive_avg_pool1d(a.transpose(1, 2), 1), 1),   # Swin's pooler
    lambda a: F.adaptive_avg_pool1d(a, 3),
])
def test_adaptive_average_pooling_1d_on_device_inputs(xdev, dtype, fn):
    # torch_xla's own 1-D / 2-D kernels run on aot's fake tensors when the inputs are on the
    # device, and fail there ("Expected XLA tensor"); the backend rewrites the 1-D call.
    # (Output sizes that do not divide the input need int64 index math on device: x64.)
    x = torch.randn(2, 12, 9, generator=torch.Generator().manual_seed(14)).to(dtype)
    got = compiled(fn)(x.to(xdev))
    assert_close(np_(got), np_(fn(x)))


# --------------------------------------------------------------------------- attention

def _qkv(b, hq, hkv, lq, lk, d, dtype, seed=11):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, hq, lq, d, generator=g).to(dtype), torch.randn(b, hkv, lk, d, generator=g).to(dtype),
            torch.randn(b, hkv, lk, d, generator=g).to(dtype))


SDPA_CASES = {
    "plain": (dict(), (1, 2, 2, 8, 8, 16)),
    "causal": (dict(is_causal=True), (2, 2, 2, 8, 8, 16)),
    "scale": (dict(scale=0.3), (1, 2, 2, 5, 7, 16)),
    "bool_mask": (dict(attn_mask="bool"), (2, 2, 2, 8, 8, 16)),
    "float_mask": (dict(attn_mask="float"), (1, 2, 2, 8, 6, 32)),
    "gqa": (dict(enable_gqa=True, is_causal=True), (1, 4, 2, 8, 8, 16)),
    "gqa_mask": (dict(enable_gqa=True, attn_mask="bool"), (2, 6, 2, 8, 8, 32)),
    # query rows whose keys are all masked (left padding): 0, as torch's kernels make them
    "dead_rows_bool": (dict(attn_mask="dead_bool"), (2, 2, 2, 8, 8, 16)),
    "dead_rows_float": (dict(attn_mask="dead_float"), (1, 2, 2, 8, 8, 16)),
}


def _sdpa_kwargs(kw, lq, lk, dtype):
    kw = dict(kw)
    g = torch.Generator().manual_seed(12)
    if kw.get("attn_mask") == "bool":   # a padding mask: the last keys of the second row hidden
        m = torch.ones(2, 1, lq, lk, dtype=torch.bool)
        m[1, ..., lk - 3:] = False
        kw["attn_mask"] = m
    elif kw.get("attn_mask") == "float":
        kw["attn_mask"] = torch.randn(lq, lk, generator=g).to(dtype)
    elif kw.get("attn_mask") == "dead_bool":   # batch 1: its first three query rows see nothing
        m = torch.ones(2, 1, lq, lk, dtype=torch.bool)
        m[1, :, :3] = False
        kw["attn_mask"] = m
    elif kw.get("attn_mask") == "dead_float":  # rows 2 and 5 all -inf, others finite
        m = torch.randn(lq, lk, generator=g)
        m[[2, 5]] = float("-inf")
        kw["attn_mask"] = m.to(dtype)
    return kw


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_sdpa_runs_on_the_chip(dtype, case):
    kw, (b, hq, hkv, lq, lk, d) = SDPA_CASES[case]
    q, k, v = _qkv(b, hq, hkv, lq, lk, d, dtype)
    kw = _sdpa_kwargs(kw, lq, lk, dtype)
    fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, **kw)  # noqa: E731
    before = compile_counts()["cpu_fallbacks"]
    got = compiled(fn)(q, k, v)
    assert compile_counts()["cpu_fallbacks"] == before, f"SDPA fell back to the CPU: {cpu_fallback_ops()}"
    assert_close(np_(got), np_(fn(q, k, v)), kind="matmul")


def test_eager_torch_xla_sdpa_runs_on_the_chip(xdev):
    # eager torch_xla takes SDPA's math path on the device (its masks reduce with all())
    import torch_xla.debug.metrics as met
    q, k, v = _qkv(1, 4, 2, 8, 8, 16, torch.float32)
    met.clear_counters()
    got = F.scaled_dot_product_attention(q.to(xdev), k.to(xdev), v.to(xdev), is_causal=True, enable_gqa=True)
    torch_xla.sync()
    assert_close(np_(got), np_(F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)), kind="matmul")
    assert not [n for n in met.counter_names() if n.startswith("aten::")], met.executed_fallback_ops()


def test_sdpa_backward_runs_on_the_chip():
    q, k, v = (t.requires_grad_() for t in _qkv(1, 2, 2, 8, 8, 16, torch.float32))
    qc, kc, vc = (t.detach().clone().requires_grad_() for t in (q, k, v))
    fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True).square().sum()  # noqa: E731
    before = compile_counts()["cpu_fallbacks"]
    compiled(fn)(q, k, v).backward()
    fn(qc, kc, vc).backward()
    assert compile_counts()["cpu_fallbacks"] == before, cpu_fallback_ops()
    for a, b in ((q, qc), (k, kc), (v, vc)):
        assert_close(np_(a.grad), np_(b.grad), kind="matmul")


def test_cpu_fallbacks_are_reported():
    # torch_xla has no lowering for i0: it runs on the CPU, and the backend says so
    x = torch.rand(4, 8, generator=torch.Generator().manual_seed(13))
    fn = lambda a: torch.special.i0(a * 2) + 1  # noqa: E731
    before = cpu_fallback_ops().get("i0", 0)
    g = compiled(fn)
    with pytest.warns(RuntimeWarning, match=r"i0 ran on the CPU"):
        got = g(x)
    g(x)
    assert cpu_fallback_ops().get("i0", 0) == before + 2
    assert_close(np_(got), np_(fn(x)))
