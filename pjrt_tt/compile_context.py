"""What one compile is for, built once by the compiler and passed explicitly to the lowering
(`lo.ctx`) and to every pass: the mesh the program runs on, the numerics options, the
optimizer's options, the system.

A single-chip program is the 1x1 case of a mesh program. Options arrive as (name, value)
pairs (the CompileOptionsProto's env_option_overrides: `jax.jit(..., compiler_options=)`;
torch sets them through PJRT_TT_COMPILE_OPTIONS, see pjrt_tt/torch/options.py) and are checked
here, in one place:
- the tt_* numerics options (docs/numerics.md; applied by passes/data_formats.py);
- the TT-Forge names existing scripts use (docs/optimizer.md): optimization_level,
  enable_trace, math_fidelity, fp32_dest_acc_en, enable_bfp8_conversion,
  experimental_enable_weight_bfp8_conversion / _bfp4_, experimental_weight_dtype. The
  numerics ones are translated into the tt_* option they mean.
Any other name (except XLA's own xla_* flags, which are not ours) is an error that lists
the known ones.
"""
from __future__ import annotations

import dataclasses
import json

from pjrt_tt.errors import InvalidArgument
from pjrt_tt.systems import System, get_system

_BOOL = ("true", "false")
OPTIONS = {  # option -> accepted values (the first is the default)
    "tt_compute_dtype": ("float32", "bfloat16"),
    "tt_weight_dtype": ("default", "bfloat16", "bfloat8_b", "bfloat4_b"),
    "tt_math_fidelity": ("default", "LoFi", "HiFi2", "HiFi3", "HiFi4"),
    "tt_fp32_dest_acc_en": ("default",) + _BOOL,
    "tt_packer_l1_acc": ("default",) + _BOOL,
    "tt_math_approx_mode": ("default",) + _BOOL,
    # refuse 64-bit types instead of carrying them in 32 bits (ingest/narrow64.py)
    "tt_strict_64bit": ("false", "true"),
}

# The optimizer's options: name -> accepted values (the first is the default).
# Level 0 is the default, as in tt-xla (scripts written for it get what they got), and
# because jax delivers `optimization_level` in ExecutableBuildOptions, where 0 means both
# "not given" and 0 (build_level below): any other default would make an explicit 0
# impossible to honour from jax.jit (docs/optimizer.md).
DEFAULT_LEVEL = 0
OPTIMIZER_OPTIONS = {
    "optimization_level": ("0", "1", "2"),
    "enable_trace": ("false", "true"),
}


def _forge_weight(value: str) -> dict:
    return {"bfp8": {"tt_weight_dtype": "bfloat8_b"}, "bfp_bf8": {"tt_weight_dtype": "bfloat8_b"},
            "bfloat8_b": {"tt_weight_dtype": "bfloat8_b"}, "bfp4": {"tt_weight_dtype": "bfloat4_b"},
            "bfp_bf4": {"tt_weight_dtype": "bfloat4_b"}, "bfloat4_b": {"tt_weight_dtype": "bfloat4_b"},
            "bfloat16": {"tt_weight_dtype": "bfloat16"}, "default": {}, "": {}}[value]


# TT-Forge names that mean one of our numerics options: name -> (accepted values, value -> tt_* options)
FORGE_NUMERICS = {
    "math_fidelity": (("default", "lofi", "hifi2", "hifi3", "hifi4"),
                      lambda v: {} if v == "default" else
                      {"tt_math_fidelity": {"lofi": "LoFi", "hifi2": "HiFi2", "hifi3": "HiFi3", "hifi4": "HiFi4"}[v]}),
    "fp32_dest_acc_en": (_BOOL, lambda v: {"tt_fp32_dest_acc_en": v}),
    # tt-xla: the whole bfloat16 graph in bfp8. Here: bf16 compute with bfp8 weights, the part
    # of it ttnn's ops take without per-op format checks (docs/optimizer.md).
    "enable_bfp8_conversion": (_BOOL, lambda v: {"tt_compute_dtype": "bfloat16", "tt_weight_dtype": "bfloat8_b"}
                               if v == "true" else {}),
    "experimental_enable_weight_bfp8_conversion": (_BOOL, lambda v: {"tt_weight_dtype": "bfloat8_b"}
                                                   if v == "true" else {}),
    "experimental_enable_weight_bfp4_conversion": (_BOOL, lambda v: {"tt_weight_dtype": "bfloat4_b"}
                                                   if v == "true" else {}),
    "experimental_weight_dtype": (("default", "", "bfp8", "bfp_bf8", "bfloat8_b", "bfp4", "bfp_bf4", "bfloat4_b",
                                   "bfloat16"), _forge_weight),
}

# tt_* options the runtime reads (they change what is written, never the program).
RUNTIME_OPTIONS = frozenset({"tt_profile"})   # pjrt_tt/perf/profile.py

ENV = "PJRT_TT_COMPILE_OPTIONS"   # JSON object of options for every compile (torch's bridge)


@dataclasses.dataclass(frozen=True)
class Numerics:
    options: tuple[tuple[str, str], ...] = ()   # the non-default tt_* options, sorted
    arch: str = "wormhole_b0"                   # for ttnn's per-arch default fidelity

    def get(self, name: str) -> str:
        return dict(self.options).get(name, OPTIONS[name][0])

    def key(self) -> str:
        """What the compile cache key needs (empty when nothing is changed)."""
        return ";".join(f"{k}={v}" for k, v in self.options) + (f";arch={self.arch}" if self.options else "")


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """The optimizer's options (docs/optimizer.md)."""
    level: int = DEFAULT_LEVEL    # 0: the lowering as is; 1: const-eval, folding, fusion (passes/)
    trace: bool = False           # enable_trace: capture/replay on the device target (the runtime's)

    def key(self) -> str:
        return f"O{self.level}" + (";trace" if self.trace else "")


def _known() -> str:
    forge = {**{k: v for k, v in OPTIMIZER_OPTIONS.items()}, **{k: v[0] for k, v in FORGE_NUMERICS.items()}}
    own = "; ".join(f"{k}: {'|'.join(v)}" for k, v in OPTIONS.items())
    return (f"{own}; {'; '.join(f'{k}: {chr(124).join(x for x in v if x)}' for k, v in forge.items())}; "
            f"{', '.join(sorted(RUNTIME_OPTIONS))}")


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    return {"1": "true", "0": "false", "yes": "true", "no": "false", "on": "true", "off": "false"}.get(text, text)


def _check(key: str, value, accepted, shown=None) -> str:
    raw = str(value).strip().lower()
    text = raw if raw in accepted else _text(value)
    if text not in accepted:
        raise InvalidArgument(f"compiler option {key}={value!r} is not valid; valid values: "
                              f"{', '.join(a for a in (shown or accepted) if a)}")
    return text


# jax's EffortLevel values (jax_optimization_level: O0..O3) and plain levels -> our level
_BUILD_LEVELS = {1: "1", 2: "2", 9: "0", 19: "1", 29: "2", 39: "2"}


def build_level(value: int) -> list[tuple[str, str]]:
    """jax.jit(compiler_options={"optimization_level": n}) (and jax's jax_optimization_level
    config) arrives as ExecutableBuildOptions.optimization_level, not as an override: that
    value as an option pair (none for 0, which is also "not given")."""
    if not value:
        return []
    if value not in _BUILD_LEVELS:
        raise InvalidArgument(f"compiler option optimization_level={value!r} is not valid; valid values: 0, 1, 2 "
                              f"(or jax_optimization_level O0..O3)")
    return [("optimization_level", _BUILD_LEVELS[value])]


def env_options(environ) -> list[tuple[str, str]]:
    """The options of PJRT_TT_COMPILE_OPTIONS (a JSON object), as pairs."""
    text = environ.get(ENV, "")
    if not text:
        return []
    try:
        opts = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"{ENV}={text!r} is not a JSON object of compile options: {e}") from None
    if not isinstance(opts, dict):
        raise InvalidArgument(f"{ENV}={text!r} is not a JSON object of compile options")
    return [(str(k), v) for k, v in opts.items()]


def parse_options(pairs, arch: str = "wormhole_b0") -> tuple[Numerics, Optimizer]:
    """[(name, value)] (later pairs win) -> (Numerics, Optimizer); unknown names raise,
    listing the known ones."""
    chosen, opt = {}, {}
    for key, value in pairs or ():
        if key in RUNTIME_OPTIONS or key.startswith("xla_"):
            continue   # the runtime's, or XLA's own flags
        if key in OPTIMIZER_OPTIONS:
            opt[key] = _check(key, value, OPTIMIZER_OPTIONS[key])
            continue
        if key in FORGE_NUMERICS:
            accepted, meaning = FORGE_NUMERICS[key]
            for k, v in meaning(_check(key, value, accepted)).items():
                chosen[k] = v
            continue
        if key not in OPTIONS:
            raise InvalidArgument(f"unknown pjrt-tt compiler option {key!r}; valid options: {_known()}")
        accepted = {v.lower(): v for v in OPTIONS[key]}
        text = _check(key, value, tuple(accepted), OPTIONS[key])
        chosen[key] = accepted[text]
    chosen = {k: v for k, v in chosen.items() if v != OPTIONS[k][0]}
    optimizer = Optimizer(int(opt.get("optimization_level", DEFAULT_LEVEL)), opt.get("enable_trace") == "true")
    return Numerics(tuple(sorted(chosen.items())), arch), optimizer


def from_overrides(pairs, arch: str = "wormhole_b0") -> Numerics:
    """The numerics part of parse_options (tests build contexts with it)."""
    return parse_options(pairs, arch)[0]


@dataclasses.dataclass(frozen=True)
class CompileContext:
    mesh_shape: tuple[int, int] = (1, 1)       # the ttnn mesh (rows, cols) the program runs on
    numerics: Numerics = Numerics()
    system: System = get_system(None)           # the chips it is compiled for
    optimizer: Optimizer = Optimizer()

    @property
    def optimization_level(self) -> int:
        return self.optimizer.level
