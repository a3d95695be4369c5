"""Level 2 at full size against real ttnn: the model_perf programs at optimization level 2,
run once through the mock conformance check (real ttnn's allocator and its circular-buffer
clash check, zeros in), with how many ops place their result in L1.

    PYTHONPATH=$PWD PJRT_TT_TARGET=sim python tests/benchmarks/level2_mock_check.py   (~1 min)
"""
import os
import sys

os.environ.setdefault("PJRT_TT_TARGET", "sim")
sys.path.insert(0, os.path.dirname(__file__))

import model_perf as mp
from pjrt_tt.targets.conformance import ConformanceCheck
from pjrt_tt.systems import get_system
from pjrt_tt.passes.memory import l1_placed


def main() -> int:
    """Exits 1 when real ttnn refuses any of the programs (make bench stops there)."""
    check = ConformanceCheck(get_system("n150"))
    lvl2 = mp.LEVELS[2]
    cases = []
    layer, largs, _ = mp.encoder_layer(1024, 16, 4096, gelu_approx=False)
    cases.append(("BERT-Large layer", layer, largs(8, 384), ()))
    layer, largs, _ = mp.encoder_layer(768, 12, 3072, gelu_approx=False)
    cases.append(("ViT layer", layer, largs(8, 197), ()))
    layer, args, _ = mp.llama_layer(mp.LLAMA_1B)
    cases.append(("Llama-1B layer", layer, args, (("tt_weight_dtype", "bfloat8_b"),)))
    net, rargs, _ = mp.resnet50()
    cases.append(("ResNet-50 b16", net, rargs(16), ()))
    refused = 0
    for name, f, a, extra in cases:
        p = mp.lower(f, a, extra + lvl2)
        try:
            check(p)
            print(name, "mock OK,", len(l1_placed(p)), "of", len(p.ops), "ops place their result in L1")
        except Exception as e:
            refused += 1
            print(name, "mock REFUSED:", str(e)[:400])
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
