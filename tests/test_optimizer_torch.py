"""The optimizer from torch (docs/optimizer.md): options through `torch.compile(backend="tt",
options=...)` and `torch_xla.set_custom_compile_options`, level 1 on the forms torch emits
(an HF Llama layer: RMSNorm with its epsilon as an argument, the SiLU-gated MLP), and the
const-eval cache following `.data` updates (issue 13 item 3c).

Results are compared with eager PyTorch on the CPU with the project bounds.
"""
from __future__ import annotations

import os

os.environ.setdefault("PJRT_DEVICE", "TT")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.9.0)")
torch_xla = pytest.importorskip("torch_xla", reason="torch_xla is not installed (pip install torch_xla==2.9.0)")

import torch_xla.runtime as xr  # noqa: E402

from conftest import NewPrograms, assert_close  # noqa: E402
from pjrt_tt.compile_context import ENV  # noqa: E402


@pytest.fixture(scope="module")
def dev():
    assert xr.device_type() == "TT", f"torch_xla started on {xr.device_type()}, not TT"
    return torch_xla.device()


def np_(t):
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def _llama(attn="eager"):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                   max_position_embeddings=64, attn_implementation=attn)
    return transformers.LlamaForCausalLM(cfg).eval().to(torch.bfloat16)


def _ops(p) -> int:
    return sum(1 for op in p.ops if not op.fn.startswith("host."))


def test_hf_llama_layer_level_1(dev):
    m = _llama()
    progs = {}
    with torch.no_grad():
        # (torch_xla keeps one program per graph for the process whatever the options: the
        # levels get graphs of different lengths)
        for level, n in ((0, 32), (1, 64)):
            ids = torch.randint(0, 128, (1, n))
            want = np_(m(ids).logits)
            torch._dynamo.reset()
            with NewPrograms() as new:
                got = np_(torch.compile(m, backend="tt", options={"optimization_level": level})(ids).logits)
            assert_close(got, want, kind="bfloat16", what=f"level {level}")
            progs[level] = new.biggest()
    p0, p1 = progs[0], progs[1]
    fns = [op.fn for op in p1.ops]
    # HF RMSNorm (eps arrives as an argument) -> ttnn.rms_norm with eps read once per buffer
    norms = [op for op in p1.ops if op.fn == "rms_norm"]
    assert len(norms) == 3 and all(op.kwargs["epsilon"].on_host for op in norms), p1.format()
    assert all("weight" in op.kwargs for op in norms), p1.format()   # `weight * h.to(dtype)` joins the norm
    assert any(op.fn == "host.read" for b in p1.prepare for op in b.ops)
    # eager attention (bmm, float32 softmax, GQA repeat, scale an argument) -> ttnn's SDPA
    (sdpa,) = [op for op in p1.ops if op.fn == "transformer.scaled_dot_product_attention"]
    assert sdpa.kwargs["scale"].on_host and "attn_mask" in sdpa.kwargs and "softmax" not in fns
    assert sdpa.args[1].type.shape[1] == 1 and sdpa.args[0].type.shape[1] == 2   # grouped k: not repeated
    # SiLU-gated MLP: the gate's SiLU in its matmul
    assert [op.kwargs.get("activation") for op in p1.ops if op.fn == "linear"] == ["silu"]
    assert "sigmoid" not in fns and "pow" not in fns
    assert _ops(p1) < _ops(p0) - 40, (_ops(p0), _ops(p1))


def test_set_custom_compile_options(dev):
    assert torch_xla.set_custom_compile_options is not None   # installed where torch_xla lacks it
    m = torch.nn.Linear(32, 48)
    x = torch.randn(4, 32)
    try:
        torch_xla.set_custom_compile_options({"optimization_level": 1, "experimental_weight_dtype": "bfloat16"})
        torch._dynamo.reset()
        with NewPrograms() as new, torch.no_grad():
            got = np_(torch.compile(m, backend="tt")(x))
        p = new.biggest()
        assert [op.fn for b in p.prepare for op in b.ops] == ["permute", "typecast"], p.format()
        # bf16 weights, float32 activations: bf16's bounds
        assert_close(got, np_(m(x)), kind="bfloat16")
    finally:
        torch_xla.set_custom_compile_options({})
    assert ENV not in os.environ
    with pytest.raises(Exception, match="unknown pjrt-tt compiler option 'optimisation_level'.*optimization_level"):
        torch_xla.set_custom_compile_options({"optimisation_level": 1})


def test_unknown_torch_compile_option_is_refused(dev):
    torch._dynamo.reset()
    with pytest.raises(Exception, match="unknown pjrt-tt compiler option 'enable_traces'.*enable_trace"):
        torch.compile(torch.nn.Linear(4, 4), backend="tt", options={"enable_traces": True})(torch.randn(2, 4))


def test_data_updates_reach_the_prepared_weights(dev):
    """Const-eval keeps the converted weight with the uploaded buffer; a `.data` update
    (in place, or a new tensor) is a new upload, so the next call converts it again."""
    torch.manual_seed(3)
    m = torch.nn.Linear(32, 16)
    cm = torch.compile(m, backend="tt", options={"optimization_level": 1, "experimental_weight_dtype": "bfloat16"})
    x = torch.randn(8, 32)
    with torch.no_grad():
        for step, change in enumerate([None, "add_", "assign", None]):
            if change == "add_":
                m.weight.data.add_(0.5)
            elif change == "assign":
                m.weight.data = torch.randn(16, 32)
            assert_close(np_(cm(x)), np_(m(x)), kind="bfloat16", what=f"step {step} after {change}")


def test_hf_rotary_embedding_level_1(dev):
    """HF's LlamaRotaryEmbedding + apply_rotary_pos_emb (bf16 products computed in float32
    by torch_xla, the tables cast back and forth) -> ttnn.experimental.rotary_embedding."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama import modeling_llama as hf
    cfg = transformers.LlamaConfig(hidden_size=256, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                                   max_position_embeddings=128)
    rope = hf.LlamaRotaryEmbedding(cfg)

    def f(q, k, pos):
        cos, sin = rope(q, pos)
        return hf.apply_rotary_pos_emb(q, k, cos, sin)
    torch.manual_seed(5)
    q, k = torch.randn(1, 4, 96, 64, dtype=torch.bfloat16), torch.randn(1, 2, 96, 64, dtype=torch.bfloat16)
    pos = torch.arange(96)[None]
    want = f(q, k, pos)
    torch._dynamo.reset()
    with NewPrograms() as new, torch.no_grad():
        got = torch.compile(f, backend="tt", options={"optimization_level": 1})(q, k, pos)
    p = new.biggest()
    fns = [op.fn for op in p.ops]
    assert fns.count("experimental.rotary_embedding") == 2 and "neg" not in fns, p.format()
    for g, w in zip(got, want):
        assert_close(np_(g), np_(w), kind="bfloat16")


@pytest.mark.parametrize("form", ["plain", "causal", "bool_mask", "float_mask", "gqa"])
def test_compiled_sdpa_becomes_ttnns_attention_at_level_1(dev, form):
    """torch.compile writes F.scaled_dot_product_attention in the HF eager form (the backend's
    rewrite, so it runs on the chip); level 1 fuses that form into ttnn's SDPA."""
    F = torch.nn.functional
    g = torch.Generator().manual_seed(3)
    B, H, S, D = 1, 4, 64, 32
    kv = 2 if form == "gqa" else H
    q = torch.randn(B, H, S, D, generator=g).to(torch.bfloat16)
    k = torch.randn(B, kv, S, D, generator=g).to(torch.bfloat16)
    v = torch.randn(B, kv, S, D, generator=g).to(torch.bfloat16)
    kw = {"plain": {}, "causal": {"is_causal": True}, "gqa": {"enable_gqa": True},
          "bool_mask": {"attn_mask": torch.rand(S, S, generator=g) > 0.3},
          "float_mask": {"attn_mask": (torch.randn(S, S, generator=g) * 2).to(torch.bfloat16)}}[form]

    mask = kw.pop("attn_mask", None)

    def attn_masked(q, k, v, *mask):
        return F.scaled_dot_product_attention(q, k, v, *mask, **kw)

    ref_mask = [] if mask is None else [mask.float() if mask.is_floating_point() else mask]
    want = np_(attn_masked(q.float(), k.float(), v.float(), *ref_mask))
    torch._dynamo.reset()
    with NewPrograms() as new:
        got = np_(torch.compile(attn_masked, backend="tt", options={"optimization_level": 1})(
            q.to(dev), k.to(dev), v.to(dev), *([] if mask is None else [mask.to(dev)])))
    assert_close(got, want, kind="bfloat16", what=form)
    p = new.biggest()
    fns = [op.fn for op in p.ops]
    assert fns.count("transformer.scaled_dot_product_attention") == 1 and "softmax" not in fns, p.format()


def test_hf_llama_layer_level_2_places_activations_in_l1(dev):
    """options={"optimization_level": 2}: activations in L1 (passes/memory.py), values as at
    level 1's bounds against eager CPU."""
    from pjrt_tt.passes.memory import l1_placed
    m = _llama()
    with torch.no_grad():
        ids = torch.randint(0, 128, (1, 96))   # a length no other test compiles (torch_xla caches per graph)
        want = np_(m(ids).logits)
        torch._dynamo.reset()
        with NewPrograms() as new:
            got = np_(torch.compile(m, backend="tt", options={"optimization_level": 2})(ids).logits)
    assert_close(got, want, kind="bfloat16")
    p = new.biggest()
    placed = {v.id for v in l1_placed(p)}
    assert placed and not placed & {v.id for v in p.outputs}, p.format()
