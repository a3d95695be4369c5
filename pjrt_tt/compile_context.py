"""What one compile is for, built once by the compiler and passed explicitly to the lowering
(`lo.ctx`) and to every pass: the mesh the program runs on, the numerics options, the system.

A single-chip program is the 1x1 case of a mesh program. The numerics options are the tt_*
compile options (docs/numerics.md), checked here; the pass that applies them is
passes/data_formats.py.
"""
from __future__ import annotations

import dataclasses

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


@dataclasses.dataclass(frozen=True)
class Numerics:
    options: tuple[tuple[str, str], ...] = ()   # the non-default tt_* options, sorted
    arch: str = "wormhole_b0"                   # for ttnn's per-arch default fidelity

    def get(self, name: str) -> str:
        return dict(self.options).get(name, OPTIONS[name][0])

    def key(self) -> str:
        """What the compile cache key needs (empty when nothing is changed)."""
        return ";".join(f"{k}={v}" for k, v in self.options) + (f";arch={self.arch}" if self.options else "")


# tt_* options the runtime reads (they change what is written, never the program).
RUNTIME_OPTIONS = frozenset({"tt_profile"})   # pjrt_tt/perf/profile.py


def from_overrides(pairs, arch: str = "wormhole_b0") -> Numerics:
    """env_option_overrides [(key, value)] -> Numerics; keys not starting with tt_ are not ours."""
    chosen = {}
    for key, value in pairs or ():
        if not key.startswith("tt_") or key in RUNTIME_OPTIONS:
            continue
        if key not in OPTIONS:
            valid = "; ".join(f"{k}: {'|'.join(v)}" for k, v in OPTIONS.items())
            raise InvalidArgument(f"unknown pjrt-tt compiler option {key!r}; valid options: {valid}")
        accepted = {v.lower(): v for v in OPTIONS[key]}
        if "false" in OPTIONS[key]:
            accepted.update({"1": "true", "0": "false"})
        text = str(value).strip().lower()
        if text not in accepted:
            raise InvalidArgument(f"compiler option {key}={value!r} is not valid; valid values: "
                                  f"{', '.join(OPTIONS[key])}")
        if accepted[text] != OPTIONS[key][0]:
            chosen[key] = accepted[text]
    return Numerics(tuple(sorted(chosen.items())), arch)


@dataclasses.dataclass(frozen=True)
class CompileContext:
    mesh_shape: tuple[int, int] = (1, 1)       # the ttnn mesh (rows, cols) the program runs on
    numerics: Numerics = Numerics()
    system: System = get_system(None)           # the chips it is compiled for
    # The optimizer's options (issue 11) join here; today's pipeline is level 0.
    optimization_level: int = 0
