"""The PRNG: jax's threefry needs only uint32 bit ops (bitwise.py) plus one 64-bit detail.

jax (threefry_partitionable, the default since 0.5) numbers the random values with a uint64
iota split into two uint32 words (`iota_2x32_shape`): iota, multiply by strides, add, shift
right by 32, convert to uint32. These counters are bounded by the element count, so
ingest/narrow64.py proves they fit uint32 and narrows them like any other 64-bit integer
(a shift right by >= 32 is 0 in both widths).

`stablehlo.rng_bit_generator` (jax's 'rbg' / 'unsafe_rbg' key implementations) is refused:
reproducing XLA:CPU's bits would need its Philox / ThreeFry expanders on a uint64 state.
"""
from __future__ import annotations

from pjrt_tt.lower.builder import Lowering
from pjrt_tt.lower.registry import rule


@rule("stablehlo.rng_bit_generator")
def _rng_bit_generator(lo: Lowering, op) -> list:
    raise lo.unsupported("rng_bit_generator (jax's 'rbg' / 'unsafe_rbg' PRNG implementations) is not "
                         "lowered; use the default threefry implementation (jax.random.key(seed)), "
                         "which runs on the chip bit-identical to XLA:CPU")
