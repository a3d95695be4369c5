"""`stablehlo.rng_bit_generator` written out in uint32 ops, as XLA's RngBitGeneratorExpander
writes it out before XLA:CPU compiles, so jax's 'rbg' and 'unsafe_rbg' keys draw on the chip
the same bits as on CPU.

jax gives the op a uint64[2] state, the bitcast of the key's uint32[2, 2] words, and bitcasts
the new state back. The chip has no 64-bit type, so the state is read and written as those
words (row r is state[r] as (low, high)) and each 64-bit add is 32-bit adds with carries.
torch_xla computes the state from its int64 seed: words64.py writes that computation in word
pairs first, so torch.rand and dropout draw on the chip the bits XLA:CPU draws.
The algorithms, as XLA's prng.cc defines them:

- PHILOX, and DEFAULT, which XLA:CPU maps to it (measured: bit-equal): Philox4x32-10 keyed by
  state[0]. Its 128-bit counter is (state[1], state[0]) for a uint64[2] state, low half first,
  and state[1:3] for a uint64[3] one. Block i draws 4 uint32 from counter + i, laid out in
  turn; the new state is the key and the counter's low half advanced by the blocks drawn (a
  uint64[2] state loses the carry into the high half, as in XLA).
- THREE_FRY: Threefry2x32-20 keyed by state[0] over counters state[1] + i, one per pair of
  output values: the two words of draw a go to indices 2a and 2a + 1 of the first even
  dimension (or the longest), and the state advances by the draws made.

Narrower outputs keep each uint32's low bits, as XLA does. 64-bit outputs are refused: the
chip carries no 64-bit value.

jax's default PRNG (threefry, partitionable) needs none of this: it is uint32 bit ops whose
counters, a uint64 iota split into two words, narrow64.py proves fit uint32.
"""
from __future__ import annotations

import math

from jaxlib.mlir import ir

from pjrt_tt.errors import Unimplemented
from pjrt_tt.ingest.attributes import describe_location
from pjrt_tt.ingest.mlir_compat import create, defining_op, users
from pjrt_tt.ingest.words64 import Uint32, mulhi, states_as_words

_PHILOX_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
_PHILOX_KEY_STEPS = (0x9E3779B9, 0xBB67AE85)
_PHILOX_ROUNDS = 10
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_THREEFRY_PARITY = 0x1BD11BDA
# output element type -> (bit width, whether it is read from the bits by a bitcast)
_OUTPUTS = {"ui32": (32, False), "i32": (32, True), "f32": (32, True),
            "ui16": (16, False), "i16": (16, True), "f16": (16, True), "bf16": (16, True),
            "ui8": (8, False), "i8": (8, True)}


def expand_rng_bit_generators(module: ir.Module) -> None:
    found = []
    module.operation.walk(lambda op: (found.append(op) if op.name == "stablehlo.rng_bit_generator"
                                      else None) or ir.WalkResult.ADVANCE)
    main = next((op for op in module.body.operations if op.operation.name == "func.func"
                 and ir.StringAttr(op.attributes["sym_name"]).value == "main"), None)
    computed = [op for op in found if getattr(defining_op(op.operands[0]), "name", None) != "stablehlo.bitcast_convert"]
    if computed and main is not None:   # torch_xla's int64 seeds: computed in word pairs first
        states_as_words(computed, module, main)
    for op in found:
        _expand(op)


def _expand(op) -> None:
    algorithm = str(op.attributes["rng_algorithm"])
    algorithm = "THREE_FRY" if "THREE_FRY" in algorithm else "PHILOX"   # DEFAULT: XLA:CPU's Philox
    out_type = ir.RankedTensorType(op.results[1].type)
    words, readers = _state_words(op, algorithm, str(out_type.element_type))
    with op.context, op.location, ir.InsertionPoint(op):
        u32 = Uint32()
        shape = list(out_type.shape)
        if math.prod(shape) == 0:
            bits, new_words = u32.empty(shape), words
        elif algorithm == "PHILOX":
            bits, new_words = _philox(u32, words, math.prod(shape))
            bits = u32.reshape(bits, shape)
        else:
            bits, new_words = _threefry(u32, words, shape)
        value = _as_output(u32, bits, out_type)
    op.results[1].replace_all_uses_with(value)
    for bitcast in readers:
        bitcast.results[0].replace_all_uses_with(new_words)
        bitcast.erase()
    source = defining_op(op.operands[0])
    op.erase()
    if not list(source.results[0].uses):
        source.erase()


def _state_words(op, algorithm: str, out: str) -> tuple[ir.Value, list]:
    """The uint32[rows, 2] words the state is the bitcast of, and the bitcasts that read the
    new state back as words (each then reads the new words); refuses every other form."""
    where = describe_location(op.location)
    at = f" at {where}" if where else ""
    if out not in _OUTPUTS:
        raise Unimplemented(
            f"`stablehlo.rng_bit_generator`{at} draws {out} values: pjrt-tt writes the generator "
            f"out in uint32 and gives 8-, 16- and 32-bit integer and float results (the chip has "
            f"no 64-bit types); draw uint32 bits (e.g. jax.random.bits(key, shape, jnp.uint32))")
    source = defining_op(op.operands[0])
    words = None if source is None or source.name != "stablehlo.bitcast_convert" else source.operands[0]
    rows = ir.RankedTensorType(op.operands[0].type).shape[0]
    if words is None or _u32_words(words.type) != rows:
        raise Unimplemented(
            f"`stablehlo.rng_bit_generator`{at} takes a uint64 state computed by an op pjrt-tt has no "
            f"exact 32-bit form for (the chip has no 64-bit types: a state is read as uint32 words, "
            f"and computed from integer arguments and constants by adds, multiplies, converts and "
            f"reshapes in word pairs, as torch_xla seeds it): a float converted to 64 bits, or a "
            f"state carried through a loop. Compute the seed from integers, outside loops")
    if rows not in ((2,) if algorithm == "THREE_FRY" else (2, 3)):
        raise Unimplemented(f"`stablehlo.rng_bit_generator`{at}: a {algorithm} state of {rows} uint64 "
                            f"values is not one XLA defines")
    readers = users(op.results[0])
    if any(r.name != "stablehlo.bitcast_convert" or r.results[0].type != words.type for r in readers):
        raise Unimplemented(
            f"`stablehlo.rng_bit_generator`{at}: its new uint64 state is used other than as uint32 "
            f"words (jax bitcasts it back to the key's data); the chip has no 64-bit types")
    return words, readers


def _u32_words(t: ir.Type) -> int | None:
    """rows of a tensor<rows x 2 x ui32>, else None."""
    t = ir.RankedTensorType(t)
    if str(t.element_type) != "ui32" or len(t.shape) != 2 or t.shape[1] != 2:
        return None
    return t.shape[0]


def _philox(u32: Uint32, words: ir.Value, n: int) -> tuple[ir.Value, ir.Value]:
    """n Philox4x32-10 uint32 values (flat) and the new state's words."""
    rows = _u32_words(words.type)
    blocks = -(-n // 4)
    low, high = (1, 2) if rows >= 3 else (1, 0)
    counter = u32.add_with_carry([u32.word(words, r, c, blocks) for r in (low, high) for c in (0, 1)],
                                 u32.iota(blocks))
    key = [u32.word(words, 0, c, blocks) for c in (0, 1)]
    x = counter
    for r in range(_PHILOX_ROUNDS):
        k = [key[i] if r == 0 else u32.add(key[i], u32.const(r * _PHILOX_KEY_STEPS[i], [blocks])) for i in (0, 1)]
        (lo0, hi0), (lo1, hi1) = ((u32.op("stablehlo.multiply", v, u32.scalar(m, v)), mulhi(v, m))
                                  for v, m in zip((x[0], x[2]), _PHILOX_MULTIPLIERS))
        x = [u32.xor(u32.xor(hi1, x[1]), k[0]), lo1, u32.xor(u32.xor(hi0, x[3]), k[1]), lo0]
    bits = u32.reshape(u32.concat([u32.reshape(v, [blocks, 1]) for v in x], 1, [blocks, 4]), [4 * blocks])
    if 4 * blocks != n:
        bits = u32.slice(bits, [n])
    # the counter's low half + blocks; a uint64[3] state carries into the high half
    advanced = u32.add_with_carry([u32.word(words, r, c, 1) for r in ((low, high) if rows >= 3 else (low,))
                                   for c in (0, 1)], u32.const(blocks, [1]))
    new_rows = [[u32.word(words, 0, c, 1) for c in (0, 1)]] + [advanced[i:i + 2] for i in range(0, len(advanced), 2)]
    return bits, u32.rows(new_rows)


def _threefry(u32: Uint32, words: ir.Value, shape: list) -> tuple[ir.Value, ir.Value]:
    """uint32 values of `shape` from Threefry2x32-20, and the new state's words."""
    split = next((i for i, d in enumerate(shape) if d % 2 == 0), None)
    if split is None and shape:
        split = max(range(len(shape)), key=lambda i: (shape[i], -i))
    half = [1] if not shape else shape[:split] + [-(-shape[split] // 2), 1] + shape[split + 1:]
    draws = math.prod(half)
    counter = u32.add_with_carry([u32.word(words, 1, c, draws) for c in (0, 1)], u32.iota(draws))
    key = [u32.word(words, 0, c, draws) for c in (0, 1)]
    ks = key + [u32.xor(u32.xor(key[0], key[1]), u32.const(_THREEFRY_PARITY, [draws]))]
    x = [u32.add(counter[0], ks[0]), u32.add(counter[1], ks[1])]
    for group in range(1, 6):
        for distance in _THREEFRY_ROTATIONS[(group - 1) % 2]:
            x0 = u32.add(x[0], x[1])
            x = [x0, u32.xor(x0, u32.rotate_left(x[1], distance))]
        x = [u32.add(x[0], ks[group % 3]), u32.add(u32.add(x[1], ks[(group + 1) % 3]), u32.const(group, [draws]))]
    if not shape:
        bits = u32.reshape(x[0], [])
    else:
        pairs = half[:split + 1] + [2] + half[split + 2:]
        bits = u32.concat([u32.reshape(v, half) for v in x], split + 1, pairs)
        even = shape[:split] + [2 * half[split]] + shape[split + 1:]
        bits = u32.reshape(bits, even)
        if even != shape:
            bits = u32.slice(bits, shape)
    advanced = u32.add_with_carry([u32.word(words, 1, c, 1) for c in (0, 1)], u32.const(draws, [1]))
    return bits, u32.rows([[u32.word(words, 0, c, 1) for c in (0, 1)], advanced])


def _as_output(u32: Uint32, bits: ir.Value, out: ir.RankedTensorType) -> ir.Value:
    """The uint32 bits as the op's result type: its low bits for narrower types (XLA's
    convert), reinterpreted for signed and float ones."""
    width, bitcast = _OUTPUTS[str(out.element_type)]
    if width < 32:
        masked = u32.op("stablehlo.and", bits, u32.scalar(2**width - 1, bits))
        unsigned = ir.RankedTensorType.get(out.shape, ir.IntegerType.get_unsigned(width))
        bits = create("stablehlo.convert", unsigned, [masked])
    return create("stablehlo.bitcast_convert", out, [bits]) if bitcast else bits
