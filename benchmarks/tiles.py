"""The tiles of ``kernels.tile`` against the BLAS on every forward product of Table 2 at batch 1.

    python -m benchmarks.tiles                      # one thread, every convolution's product
    python -m benchmarks.tiles --json benchmarks/results/tiles.json
    python -m benchmarks.tiles --quick

A convolution of one sample is the product out (F, P) = w2 (F, C*K*K) @ cols (C*K*K, P) (for a 1x1
convolution, cols is the input itself), then + bias and ReLU. Both ways are timed on the same operands:

- tiles: ``kernels.tile.tiled_matmul``, bias and ReLU in its store;
- BLAS: ``kernels.blas.matmul`` (NumPy's BLAS), then ``kernels.blas.add_bias``.

The operands stay in the cache from one call to the next (the same arrays every round), so this compares
the two kernels' arithmetic, not the memory traffic of a whole forward pass (``benchmarks.inference``
times that). ``fits`` says whether the inference plan gives the product to the tiles
(``kernels.tile.fits``). Before timing, both results are checked against the float64 product. Each
product's two ways are timed in the same rounds (``interleaved_medians``), with a 1024^3 float32
product (the 1-thread GEMM peak) every ten rounds; the ratios are of medians taken side by side.
"""
import argparse
import time

import numpy as np

from benchmarks.common import gemm_call, interleaved_medians, machine_line, write_json
from kernels import tile
from kernels.blas import add_bias, matmul
from npface.architecture import Conv, alignment_shapes, signature_shapes
from npface.threads import limit


def product_case(F, R, P, rng):
    """The two ways' callables for one product (F x R) @ (R x P) + bias, ReLU, after checking both."""
    a = (rng.standard_normal((F, R)) / np.sqrt(R)).astype(np.float32)
    b = rng.standard_normal((R, P)).astype(np.float32)
    bias = rng.standard_normal(F).astype(np.float32)
    by_tiles, by_blas = np.empty((F, P), np.float32), np.empty((F, P), np.float32)

    def tiles():
        tile.tiled_matmul(a, R, b, P, by_tiles, P, bias, True, True)

    def blas():
        matmul(a, b, by_blas)
        add_bias(by_blas, bias, True)

    want = tile.tiled_matmul_reference(a, b, bias, relu=True)
    tiles()
    blas()
    np.testing.assert_allclose(by_tiles, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(by_blas, want, rtol=1e-4, atol=1e-4)
    return {"tiles": tiles, "blas": blas}


def main(argv=None):
    parser = argparse.ArgumentParser(description="kernels.tile's register-tiled product against NumPy's BLAS on "
                                     "every forward product of Table 2 at batch 1, one thread, side by side "
                                     "(operands in the cache).")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (noisier medians)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    rounds = 60 if args.quick else 400

    print(machine_line())
    if not tile.AVAILABLE:
        print("This processor has no AVX2/FMA: the plan gives every product to the BLAS (the tiles are timed "
              "all the same).")
    rng = np.random.default_rng(0)
    gemm, gemm_flops = gemm_call()
    rows = []
    with limit(1):
        specs = [(s.layer.name, s.output[0], s.input[0] * s.layer.kernel ** 2, s.output[1] * s.output[2])
                 for s in alignment_shapes() + signature_shapes() if isinstance(s.layer, Conv)]
        cases = [(spec, product_case(*spec[1:], rng)) for spec in specs]
        print(f"Both ways match the float64 product on all {len(cases)} products. Starting benchmarks.\n")
        print(f"{'layer':<13} {'F x R x P':>16} {'fits':>5} {'tiles ms':>9} {'BLAS ms':>9} {'tiles / BLAS':>13}"
              f" {'tiles % peak':>13}")
        for (name, F, R, P), fns in cases:
            t = interleaved_medians(fns, rounds, warmup=3, occasional={"peak": gemm})
            peak = gemm_flops / t["peak"] / 1e9
            fits = bool(tile.fits(P, R))
            share = {k: 2 * F * R * P / t[k] / 1e9 / peak for k in fns}
            rows.append(dict(layer=name, F=F, R=R, P=P, fits=fits, tiles_ms=1e3 * t["tiles"],
                             blas_ms=1e3 * t["blas"], ratio=t["tiles"] / t["blas"], tiles_peak_share=share["tiles"],
                             blas_peak_share=share["blas"], peak_gflops=peak))
            print(f"{name:<13} {f'{F}x{R}x{P}':>16} {'yes' if fits else 'no':>5} {1e3 * t['tiles']:9.4f}"
                  f" {1e3 * t['blas']:9.4f} {t['tiles'] / t['blas']:13.2f} {100 * share['tiles']:12.0f}%")
    if args.json:
        write_json(args.json, dict(machine=machine_line(), lanes=tile.W, rows_per_tile=tile.MR, panel=tile.PANEL,
                                   block=tile.KC, available=bool(tile.AVAILABLE), rounds=rounds, products=rows,
                                   date=time.strftime("%Y-%m-%d")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
