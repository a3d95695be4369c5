"""`python -m pjrt_tt.perf <op> ...`: the estimated time of one ttnn op on a chip.

The first line is always `estimate_ns: <number>`: the op repeated in a steady loop, as
tt-metal's benchmarks time it. With --trace that is the device estimate (host dispatch is
replayed, not paid per op); without, the longer of the device estimate and the host
dispatch cost measured on mock (ttnn's queue overlaps the two). The lines after it say
what the figure is made of. Every figure printed is an estimate.
"""
from __future__ import annotations

import argparse
import sys

from pjrt_tt.perf import host
from pjrt_tt.perf.estimator import BINARY, NORMS, REDUCTIONS, TRANSCENDENTAL, Estimator, OpCost
from pjrt_tt.systems import FIDELITY_PHASES, SYSTEMS

DTYPES = ("bfloat16", "float32", "bfloat8_b", "bfloat4_b", "int32", "uint32", "uint16", "uint8")
LAYOUTS = {"tile": "TILE", "row_major": "ROW_MAJOR"}


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace("x", ",").split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is comma-separated ints, e.g. 32,2048; got {text!r}") from None


def _grid(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.lower().split("x"))
        return x, y
    except ValueError:
        raise argparse.ArgumentTypeError(f"a grid is XxY, e.g. 8x8; got {text!r}") from None


def _common(p: argparse.ArgumentParser, dtype: bool = True) -> None:
    p.add_argument("--chip", default="n150", choices=sorted(SYSTEMS), help="system whose chip runs the op")
    if dtype:
        p.add_argument("--dtype", default="bfloat16", choices=DTYPES, help="data format of the tensors")
    p.add_argument("--memory", default="dram", choices=("dram", "l1"), help="where the tensors live")
    p.add_argument("--grid", type=_grid, default=None, help="core grid XxY (default: the chip's full grid)")
    p.add_argument("--trace", action="store_true", help="ops replayed from a ttnn trace (no per-op host dispatch)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pjrt_tt.perf", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="op")
    p = sub.add_parser("matmul", help="ttnn.matmul / linear: [batch, m, k] x [k, n]")
    p.add_argument("--m", type=int, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--b-dtype", choices=DTYPES, help="weight format (default: --dtype)")
    p.add_argument("--fidelity", choices=tuple(FIDELITY_PHASES), help="math fidelity (default: ttnn's for the dtypes)")
    _common(p)
    for name, help_ in (("binary", f"two-input elementwise ({', '.join(sorted(BINARY)[:6])}, ...)"),
                        ("unary", f"one-input elementwise on the SFPU ({', '.join(sorted(TRANSCENDENTAL)[:6])}, ...)")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--op", default="add" if name == "binary" else "exp")
        p.add_argument("--shape", type=_shape, required=True)
        _common(p)
    p = sub.add_parser("reduce", help=f"a reduction over the last dim ({', '.join(sorted(REDUCTIONS)[:5])}, ...)")
    p.add_argument("--shape", type=_shape, required=True)
    _common(p)
    p = sub.add_parser("norm", help=f"row-wise normalisations ({', '.join(NORMS)})")
    p.add_argument("--op", default="softmax", choices=tuple(NORMS))
    p.add_argument("--shape", type=_shape, required=True)
    _common(p)
    p = sub.add_parser("data-movement", help="permute / transpose / concat / slice / pad / typecast / to_layout ...")
    p.add_argument("--op", default="permute")
    p.add_argument("--shape", type=_shape, required=True, help="input shape (output assumed the same size)")
    p.add_argument("--out-dtype", choices=DTYPES, help="output format (typecast), default --dtype")
    p.add_argument("--layout", choices=tuple(LAYOUTS), default="tile")
    _common(p)
    p = sub.add_parser("conv2d", help="ttnn.conv2d, NHWC input")
    for a in ("batch", "height", "width", "in-channels", "out-channels"):
        p.add_argument(f"--{a}", type=int, required=True)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--padding", type=int, default=1)
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--fidelity", choices=tuple(FIDELITY_PHASES))
    _common(p)
    p = sub.add_parser("attention", help="fused scaled-dot-product attention")
    for a, d in (("batch", 1), ("heads", 32), ("q-len", 128), ("kv-len", 128), ("head-dim", 64), ("kv-heads", 0)):
        p.add_argument(f"--{a}", type=int, default=d)
    _common(p)
    p = sub.add_parser("all-gather", help="a ring collective over Ethernet (all_gather, reduce_scatter, all_reduce)")
    p.add_argument("--op", default="all_gather", choices=("all_gather", "reduce_scatter", "all_reduce"))
    p.add_argument("--shape", type=_shape, required=True, help="the gathered (output) shape")
    p.add_argument("--chips", type=int, default=2)
    _common(p)
    p = sub.add_parser("calibration", help="the estimator's fitted factors and its error on the measured tables")
    return ap


def estimate(args) -> tuple[OpCost, str]:
    est = Estimator(args.chip, grid=args.grid)
    c = args.command
    if c == "matmul":
        return est.matmul(args.m, args.k, args.n, batch=args.batch, dtype=args.dtype, b_dtype=args.b_dtype,
                          fidelity=args.fidelity, memory=args.memory), "matmul"
    t = (getattr(args, "shape", None), args.dtype, LAYOUTS.get(getattr(args, "layout", "tile"), "TILE"))
    if c == "binary":
        return est.elementwise(args.op, [t, t], t, args.memory), args.op
    if c == "unary":
        return est.elementwise(args.op, [t], t, args.memory), args.op
    if c == "reduce":
        return est.reduction([t], (t[0][:-1] + (1,), t[1], t[2]), memory=args.memory), "sum"
    if c == "norm":
        return est.reduction([t], t, NORMS[args.op], args.memory, kind="norm"), args.op
    if c == "data-movement":
        return est.data_movement([t], (t[0], args.out_dtype or args.dtype, t[2]), args.memory), args.op
    if c == "conv2d":
        k, s, p = args.kernel, args.stride, args.padding
        return est.conv2d(args.batch, args.height, args.width, args.in_channels, args.out_channels, (k, k), (s, s),
                          (p, p), args.groups, args.dtype, fidelity=args.fidelity, memory=args.memory), "conv2d"
    if c == "attention":
        return est.attention(args.batch, args.heads, args.q_len, args.kv_len, args.head_dim, args.dtype,
                             kv_heads=args.kv_heads or None, memory=args.memory), "scaled_dot_product_attention"
    if c == "all-gather":
        from pjrt_tt.perf.estimator import tensor_bytes
        return est.collective(tensor_bytes(t[0], t[1]), args.chips, args.op), args.op
    raise SystemExit(f"unknown op {c!r}")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.command == "calibration":
        from pjrt_tt.perf import calibration
        calibration.main()
        return 0
    try:
        cost, fn = estimate(args)
    except (ValueError, KeyError) as e:
        print(f"pjrt_tt.perf: {e}", file=sys.stderr)
        return 2
    dispatch = host.dispatch_ns(fn)
    total = cost.device_ns if args.trace else max(cost.device_ns, dispatch)
    print(f"estimate_ns: {total:.0f}")
    print(f"estimate: device {cost.device_ns / 1e3:.2f} us ({cost.bound}-bound), "
          f"{cost.flops / 1e9:.3f} GFLOP ({cost.flops / max(cost.device_ns, 1e-9) / 1e3:.2f} TFLOP/s), "
          f"{cost.bytes / 1e6:.3f} MB moved; "
          + ("traced: host dispatch replayed" if args.trace else
             f"host dispatch {dispatch / 1e3:.1f} us per op (measured on mock)"))
    print(f"calibrated: {'yes (tt-metal matmul tables, docs/perf.md)' if cost.calibrated else 'no (roofline with assumed engine rates, docs/perf.md)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
