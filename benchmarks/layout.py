"""Which activation layout for the convolutions: channel-major (NCHW, what npface uses) or pixel-major.

    python -m benchmarks.layout                     # every convolution of Table 2, batch 1, one thread
    python -m benchmarks.layout --json benchmarks/results/layout.json
    python -m benchmarks.layout --quick

A convolution becomes one matrix product either way; the layout decides
which operand the copying builds and which way round the product runs.
For one sample x of each convolution's input shape (C, H, W), F filters of
K x K, P = Ho*Wo output pixels:

- channel-major (NCHW, npface's layout): ``kernels.conv.im2col`` copies the
  receptive fields into cols (C*K*K, P), one row per tap and channel, and
  out (F, P) = w2 (F, C*K*K) @ cols. A 1x1 convolution is w2 (F, C) @ x (C, P)
  with no copy.
- pixel-major (HWC): the input is stored (H, W, C), so the C values of one
  pixel are adjacent; the patch matrix (P, K*K*C) holds, for output pixel
  (i, j), the K*K runs of C channel values its field reads (zeros where it
  hangs over the edge; a kernel row that lies inside is one copy of K*C
  adjacent values), and out (P, F) = patches @ w_hwc.T, with the weights
  reordered once, outside the timing, to (F, K, K, C). A 1x1 convolution is
  x (P, C) @ w2.T. The patch copy below exists only for this measurement.

Both products go through ``kernels.blas.matmul`` (NumPy's BLAS, one thread);
bias and ReLU are left out of both (the same pass over F*P values either
way). Before timing, both outputs are checked against
``conv2d_forward_reference``. Each layer's two ways are timed in the same
rounds (``interleaved_medians``), with a 1024^3 float32 product (the
1-thread GEMM peak) every ten rounds; the ratios are of medians taken side
by side on this shared machine.
"""
import argparse
import sys
import time

import numpy as np

from benchmarks.common import gemm_call, interleaved_medians, machine_line, write_json
from kernels.blas import matmul
from kernels.conv import conv2d_forward_reference, im2col, im2col_scratch_size, output_size
from kernels.jit import kernel
from npface.architecture import Conv, alignment_shapes, signature_shapes
from npface.cli import output_file, run_main
from npface.threads import limit


@kernel
def channel_major(x, w2, K, stride, pad, cols, scratch, out):
    """out (F, P) = w2 (F, C*K*K) @ im2col(x (C, H, W)); a 1x1 convolution multiplies x itself."""
    C, H, W = x.shape
    if K == 1 and stride == 1 and pad == 0:
        matmul(w2, x.reshape((C, H * W)), out)
        return
    im2col(x, K, stride, pad, cols, 0, scratch)
    matmul(w2, cols, out)


@kernel
def pixel_major(x_hwc, w_hwc, K, stride, pad, patches, out):
    """out (P, F) = patches (P, K*K*C) @ w_hwc.T (K*K*C, F), patches built from x_hwc (H, W, C)."""
    H, W, C = x_hwc.shape
    Ho, Wo = output_size(H, W, K, stride, pad)
    if K == 1 and stride == 1 and pad == 0:
        matmul(x_hwc.reshape((H * W, C)), w_hwc.T, out)
        return
    flat = x_hwc.reshape(H * W * C)
    for i in range(Ho):
        for j in range(Wo):
            row = patches[i * Wo + j]
            w0 = j * stride - pad
            for p in range(K):
                h = i * stride - pad + p
                run = row[p * K * C:(p + 1) * K * C]               # the K taps of kernel row p, C values each
                if 0 <= h < H and 0 <= w0 and w0 + K <= W:           # all inside: K*C adjacent input values
                    src = flat[(h * W + w0) * C:(h * W + w0 + K) * C]
                    for k in range(K * C):
                        run[k] = src[k]
                    continue
                for q in range(K):
                    w = w0 + q
                    inside = 0 <= h < H and 0 <= w < W
                    for c in range(C):
                        run[q * C + c] = x_hwc[h, w, c] if inside else 0.0
    matmul(patches, w_hwc.T, out)


def convolutions():
    """(name, (C, H, W), F, K, stride, pad) of every convolution of Table 2's two nets, in order."""
    return [(s.layer.name, tuple(s.input), s.output[0], s.layer.kernel, s.layer.stride, s.layer.pad)
            for s in alignment_shapes() + signature_shapes() if isinstance(s.layer, Conv)]


def layer_case(shape, F, K, stride, pad, rng):
    """The two ways' callables for one layer, after checking both against the reference convolution."""
    C, H, W = shape
    Ho, Wo = output_size(H, W, K, stride, pad)
    P = Ho * Wo
    x = rng.standard_normal((C, H, W)).astype(np.float32)
    w = (rng.standard_normal((F, C, K, K)) / np.sqrt(C * K * K)).astype(np.float32)
    w2 = w.reshape(F, -1).copy()                                            # (F, C*K*K)
    w_hwc = np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(F, -1)    # (F, K*K*C)
    x_hwc = np.ascontiguousarray(x.transpose(1, 2, 0))                      # (H, W, C)
    cols = np.empty((C * K * K, P), np.float32)
    scratch = np.empty(im2col_scratch_size(H, W, K, stride, pad), np.float32)
    patches = np.empty((P, K * K * C), np.float32)
    out_cm, out_pm = np.empty((F, P), np.float32), np.empty((P, F), np.float32)
    want = conv2d_forward_reference(x[None].astype(np.float64), w.astype(np.float64), np.zeros(F), stride, pad)[0]
    channel_major(x, w2, K, stride, pad, cols, scratch, out_cm)
    pixel_major(x_hwc, w_hwc, K, stride, pad, patches, out_pm)
    np.testing.assert_allclose(out_cm, want.reshape(F, P), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out_pm.T, want.reshape(F, P), rtol=1e-4, atol=1e-4)
    return {"channel-major": lambda: channel_major(x, w2, K, stride, pad, cols, scratch, out_cm),
            "pixel-major": lambda: pixel_major(x_hwc, w_hwc, K, stride, pad, patches, out_pm)}, F * C * K * K * P


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.layout",
                                     description="Channel-major (NCHW) against pixel-major (HWC) activations for "
                                                 "every convolution of Table 2 at batch 1 on one thread: the copy "
                                                 "into a matrix product's operand plus the product, timed side "
                                                 "by side.")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (noisier medians)")
    parser.add_argument("--json", type=output_file, metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    rounds = 60 if args.quick else 400

    print(machine_line())
    rng = np.random.default_rng(0)
    gemm, gemm_flops = gemm_call()
    rows, totals = [], {"channel-major": 0.0, "pixel-major": 0.0}
    with limit(1):
        cases = [(spec, *layer_case(spec[1], *spec[2:], rng)) for spec in convolutions()]
        print(f"Both layouts match the reference convolution on all {len(cases)} layers. Starting benchmarks.\n")
        peaks = []
        print(f"{'layer':<13} {'input':>12} {'GEMM M x K x N':>18} {'channel-major':>14} {'pixel-major':>12}"
              f" {'pm / cm':>8}")
        for (name, shape, F, K, stride, pad), fns, macs in cases:
            t = interleaved_medians(fns, rounds, warmup=3, occasional={"peak": gemm})
            peaks.append(gemm_flops / t["peak"] / 1e9)
            cm, pm = t["channel-major"], t["pixel-major"]
            totals["channel-major"] += cm
            totals["pixel-major"] += pm
            C, H, W = shape
            gemm_shape = f"{F}x{C * K * K}x{macs // (F * C * K * K)}"
            rows.append(dict(name=name, input=list(shape), filters=F, kernel=K, stride=stride, pad=pad,
                             gemm=gemm_shape, macs=int(macs), channel_major_ms=1e3 * cm, pixel_major_ms=1e3 * pm,
                             pixel_over_channel=pm / cm))
            print(f"{name:<13} {f'{C}x{H}x{W}':>12} {gemm_shape:>18} {1e3 * cm:>11.3f} ms {1e3 * pm:>9.3f} ms"
                  f" {pm / cm:>8.2f}")
    peak = float(np.median(peaks))
    total_macs = sum(r["macs"] for r in rows)
    ratio = totals["pixel-major"] / totals["channel-major"]
    print(f"\nAll {len(rows)} convolutions: channel-major {1e3 * totals['channel-major']:.3f} ms "
          f"({2 * total_macs / totals['channel-major'] / 1e9 / peak:.1%} of the 1-thread peak {peak:.1f} GFLOP/s), "
          f"pixel-major {1e3 * totals['pixel-major']:.3f} ms ({2 * total_macs / totals['pixel-major'] / 1e9 / peak:.1%}); "
          f"pixel-major / channel-major = {ratio:.2f}")
    if args.json:
        write_json(args.json, dict(machine=machine_line(), date=time.strftime("%Y-%m-%d"), rounds=rounds,
                                   gemm_peak_1thread=peak, layers=rows, total_macs=int(total_macs),
                                   channel_major_ms=1e3 * totals["channel-major"],
                                   pixel_major_ms=1e3 * totals["pixel-major"], pixel_over_channel=ratio))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.layout"))
