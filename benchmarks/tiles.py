"""Table 2's convolutions at batch 1 on ``kernels.tile``'s tiles against im2col and the BLAS.

    python -m benchmarks.tiles                      # one thread, every convolution wider than 1 x 1
    python -m benchmarks.tiles --json benchmarks/results/tiles.json
    python -m benchmarks.tiles --quick

One sample through one convolution, + bias and ReLU, both ways on the same operands:

- tiles: ``kernels.conv.conv2d_forward_tiled``, the compiled plan's way for inference: the tiles read the
  product's right operand straight from the input's polyphase planes ("planes"), or, where that would
  cost too many vectors, from im2col's matrix ("im2col"); bias and ReLU in their store;
- BLAS: ``kernels.conv.conv2d_forward_sample``: im2col, NumPy's BLAS, then ``kernels.blas.add_bias``.

The 1 x 1 convolutions are left out: they need no im2col, and the plan gives them to the BLAS. nin4.conv
and nin5.conv are timed too, but the plan's inference runs them by Winograd's method (``kernels.winograd``),
so their rows say "Winograd" and the README's sum leaves them out. The input
and weights stay in the cache from one call to the next (the same arrays every round), so this compares
the two ways' own work, not the memory traffic of a whole forward pass (``benchmarks.inference`` times
that). Before timing, both results are checked against the float64 convolution. Each layer's two ways
are timed in the same rounds (``interleaved_medians``), with a 1024^3 float32 product (the 1-thread GEMM
peak) every ten rounds; the ratios are of medians taken side by side.
"""
import argparse
import sys
import time

import numpy as np

from benchmarks.common import gemm_call, interleaved_medians, machine_line, write_json
from kernels import tile
from kernels.conv import TILED_DECLINED, TILED_IM2COL, TILED_PLANES, conv2d_forward_reference, \
    conv2d_forward_sample, conv2d_forward_tiled, im2col_scratch_size, output_size, tiled_way, tiled_work_size
from kernels import plan as kplan
from npface.architecture import Conv, alignment_shapes, signature_shapes
from npface.cli import output_file, run_main
from npface.model import TABLE2
from npface.plan import build_tables
from npface.threads import limit


def winograd_layers(tables):
    """The names of the convolutions a plan's inference runs by Winograd's method instead (Table 2's nin4 and
    nin5), from its tables (``npface.plan.build_tables``)."""
    return {tables.param_order[row[kplan.P_]] for row in tables.chunk_winograd if row[kplan.KIND] == kplan.WINOGRAD}


WAYS = {TILED_PLANES: "planes", TILED_IM2COL: "im2col", TILED_DECLINED: "BLAS"}


def way(C, H, W, K, stride, pad):
    """How the tiles run this convolution (``kernels.conv.tiled_way``): "planes", "im2col", or "BLAS"
    (declined)."""
    return WAYS[tiled_way(C, H, W, K, stride, pad)]


def conv_case(C, H, W, F, K, stride, pad, rng):
    """The two ways' callables for one sample through one convolution (+ bias, ReLU), after checking both
    against the float64 convolution; "tiles" is None where the tiles decline the layer."""
    x = rng.standard_normal((C, H, W)).astype(np.float32)
    w = (rng.standard_normal((F, C, K, K)) / np.sqrt(C * K * K)).astype(np.float32)
    w2 = w.reshape(F, -1).copy()
    bias = rng.standard_normal(F).astype(np.float32)
    Ho, Wo = output_size(H, W, K, stride, pad)
    P = Ho * Wo
    work = np.zeros(tiled_work_size(C, H, W, F, K, stride, pad), np.float32)
    cols = np.zeros((C * K * K, P), np.float32)
    scratch = np.zeros(im2col_scratch_size(H, W, K, stride, pad), np.float32)
    by_tiles, by_blas = np.empty((F, P), np.float32), np.empty((F, P), np.float32)

    def tiles():
        return conv2d_forward_tiled(x, w2, bias, K, stride, pad, True, work, by_tiles)

    def blas():
        conv2d_forward_sample(x, w2, bias, K, stride, pad, True, cols, scratch, by_blas)

    want = conv2d_forward_reference(x[None].astype(np.float64), w.astype(np.float64), bias.astype(np.float64),
                                    stride, pad)[0].reshape(F, P)
    want = np.maximum(want, 0.0)
    taken = tiles()
    blas()
    np.testing.assert_allclose(by_blas, want, rtol=1e-4, atol=1e-4)
    if taken:
        np.testing.assert_allclose(by_tiles, want, rtol=1e-4, atol=1e-4)
    return {"tiles": tiles if taken else None, "blas": blas}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tiles",
                                     description="Table 2's convolutions (one sample, + bias and ReLU) on "
                                                 "kernels.tile's tiles against im2col + NumPy's BLAS, one thread, "
                                                 "side by side (operands in the cache).")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (noisier medians)")
    parser.add_argument("--json", type=output_file, metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    rounds = 60 if args.quick else 400

    print(machine_line())
    if not tile.AVAILABLE:
        print("This processor has no AVX2/FMA: the plan gives every convolution to the BLAS (nothing to compare).")
    rng = np.random.default_rng(0)
    gemm, gemm_flops = gemm_call()
    rows = []
    by_winograd = winograd_layers(build_tables(TABLE2))
    with limit(1):
        specs = [(s.layer, s.input, s.output) for s in alignment_shapes() + signature_shapes()
                 if isinstance(s.layer, Conv) and s.layer.kernel > 1]
        cases = []
        for layer, (C, H, W), (F, Ho, Wo) in specs:
            shape = (C, H, W, F, layer.kernel, layer.stride, layer.pad)
            cases.append((layer.name, shape, Ho * Wo, conv_case(*shape, rng)))
        print(f"Both ways match the float64 convolution on all {len(cases)} layers. Starting benchmarks.\n")
        print("way: how the plan's inference runs the layer (planes / im2col: on the tiles; Winograd: by "
              "Winograd's method, the tiles timed all the same)\n")
        print(f"{'layer':<13} {'F x C*K*K x P':>16} {'way':>8} {'tiles ms':>9} {'BLAS ms':>9} {'tiles / BLAS':>13}"
              f" {'tiles % peak':>13}")
        for name, (C, H, W, F, K, stride, pad), P, fns in cases:
            timed = {k: fn for k, fn in fns.items() if fn is not None}
            t = interleaved_medians(timed, rounds, warmup=3, occasional={"peak": gemm})
            peak = gemm_flops / t["peak"] / 1e9
            flops = 2 * F * C * K * K * P
            share = {k: flops / t[k] / 1e9 / peak for k in timed}
            tiles_ms = 1e3 * t["tiles"] if "tiles" in t else None
            plan_way = "Winograd" if name in by_winograd else way(C, H, W, K, stride, pad)
            rows.append(dict(layer=name, F=F, R=C * K * K, P=P, way=plan_way, tiles_ms=tiles_ms,
                             blas_ms=1e3 * t["blas"], ratio=t["tiles"] / t["blas"] if tiles_ms else None,
                             tiles_peak_share=share.get("tiles"), blas_peak_share=share["blas"], peak_gflops=peak))
            r = rows[-1]
            tiled = (f"{tiles_ms:9.4f}", f"{r['ratio']:13.2f}", f"{100 * r['tiles_peak_share']:12.0f}%") if tiles_ms \
                else (f"{'-':>9}", f"{'-':>13}", f"{'-':>13}")
            print(f"{name:<13} {f'{F}x{C * K * K}x{P}':>16} {r['way']:>8} {tiled[0]} {r['blas_ms']:9.4f} {tiled[1]} "
                  f"{tiled[2]}")
    if args.json:
        write_json(args.json, dict(machine=machine_line(), lanes=tile.W, rows_per_tile=tile.MR, panel=tile.PANEL,
                                   block=tile.KC, available=bool(tile.AVAILABLE), rounds=rounds, layers=rows,
                                   date=time.strftime("%Y-%m-%d")))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.tiles"))
