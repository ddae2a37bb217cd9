"""Per-layer speed of every layer shape of Table 2, forward and backward.

    python -m benchmarks.layers            # full run (a few minutes)
    python -m benchmarks.layers --quick    # fewer repetitions
    python -m benchmarks.layers --json benchmarks/results/layers.json

For every layer of the alignment and signature networks (convolution and
1x1 NIN convolution with their fused ReLU, max-pool, affine), plus the
standalone ReLU op on the largest activation, the warp and the all-pairs
loss, it

1. checks the fast op against its slow reference on a small batch
   ("All results match" before any timing),
2. times the forward pass at batch 1 on ONE thread (inference), and the
   forward + backward pass at batch 256 on all threads given (training),
   medians after warm-up, so JIT compilation is left out,
3. prints GFLOP/s (2 FLOPs per multiply-add; backward counts 2x forward) and
   the ratio to the float32 GEMM peak measured in the same run, one-thread
   peak for batch 1 and all-thread peak for batch 256.

Targets (the foundation issue): each signature-net convolution forward at
batch 1 >= 30% of the one-thread peak; the whole forward + backward of a
batch of 256 through these layers >= 25% of the two-thread peak.
"""
import argparse
import sys

import numpy as np

from benchmarks.common import gemm_peak, machine_line, median_time, write_json
from kernels.activation import relu_forward_reference
from kernels.conv import conv2d_backward_reference, conv2d_forward_reference
from kernels.linear import linear_backward_reference, linear_forward_reference
from kernels.pair_hinge import all_ordered_pairs, pair_hinge_reference
from kernels.pool import maxpool2d_backward_reference, maxpool2d_forward_reference
from kernels.warp import warp_backward_reference, warp_forward_reference
from npface import ops
from npface.architecture import (INPUT_SIZE, SIGNATURE_DIM, Conv, Linear, MaxPool, alignment_shapes,
                                 signature_shapes)
from npface.cli import output_file, run_main
from npface.threads import limit, max_threads

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)


class Bench:
    """One benchmarked layer: how to build inputs, run it fast, and run its reference."""

    def __init__(self, name, kind, macs, make, forward, backward, reference, inference=True):
        self.name, self.kind, self.macs = name, kind, macs     # macs: multiply-adds per image, forward
        self.inference = inference    # False: not part of batch-1 inference (the loss)
        self.make = make              # (N, rng) -> tuple of inputs
        self.forward = forward        # inputs -> (out, cache)
        self.backward = backward      # (dout, cache) -> grads (tuple)
        self.reference = reference    # (inputs, dout) -> (out, grads)


def conv_bench(s):
    layer = s.layer
    C, H, W = s.input
    F, K, stride, pad = layer.out_channels, layer.kernel, layer.stride, layer.pad

    def make(N, rng):
        return (rng.standard_normal((N, C, H, W)).astype(np.float32),
                (rng.standard_normal((F, C, K, K)) / np.sqrt(C * K * K)).astype(np.float32),
                rng.standard_normal(F).astype(np.float32))

    def reference(inputs, dout):
        x, w, b = inputs
        out = conv2d_forward_reference(x, w, b, stride, pad)
        if layer.relu:                               # the fused ReLU: max(., 0) and its mask on dout
            dout = np.where(out > 0, dout, 0)
            out = np.maximum(out, 0)
        return out, conv2d_backward_reference(dout, x, w, stride, pad)

    kind = ("conv1x1" if K == 1 and stride == 1 else f"conv{K}x{K}/{stride}") + ("+relu" if layer.relu else "")
    return Bench(layer.name, kind, s.macs, make, lambda i: ops.conv2d_forward(*i, stride, pad, relu=layer.relu),
                 lambda d, c: ops.conv2d_backward(d, c), reference)


def relu_bench(s):
    """The standalone ReLU op (the model fuses ReLU into convolutions; this times the op on its own)."""
    shape = s.output

    def make(N, rng):
        return (rng.standard_normal((N,) + shape).astype(np.float32),)

    def reference(inputs, dout):
        (x,) = inputs
        return relu_forward_reference(x), (np.where(x > 0, dout, 0),)

    return Bench("relu" + str(shape).replace(" ", ""), "relu", 0, make, lambda i: ops.relu_forward(*i),
                 lambda d, c: (ops.relu_backward(d, c),), reference)


def pool_bench(s):
    layer, shape = s.layer, s.input

    def make(N, rng):
        return (rng.standard_normal((N,) + shape).astype(np.float32),)

    def reference(inputs, dout):
        (x,) = inputs
        return (maxpool2d_forward_reference(x, layer.size, layer.stride),
                (maxpool2d_backward_reference(dout, x, layer.size, layer.stride),))

    return Bench(layer.name, f"maxpool{layer.size}/{layer.stride}", 0, make,
                 lambda i: ops.maxpool2d_forward(*i, layer.size, layer.stride),
                 lambda d, c: (ops.maxpool2d_backward(d, c),), reference)


def linear_bench(s):
    D, F = int(np.prod(s.input)), s.output[0]

    def make(N, rng):
        return (rng.standard_normal((N, D)).astype(np.float32),
                (rng.standard_normal((F, D)) / np.sqrt(D)).astype(np.float32),
                rng.standard_normal(F).astype(np.float32))

    relu = s.layer.relu

    def reference(inputs, dout):
        x, w, b = inputs
        out = linear_forward_reference(x, w, b)
        if relu:
            dout = np.where(out > 0, dout, 0)
            out = np.maximum(out, 0)
        return out, linear_backward_reference(dout, x, w)

    return Bench(s.layer.name, "affine+relu" if relu else "affine", s.macs, make,
                 lambda i: ops.linear_forward(*i, relu=relu), lambda d, c: ops.linear_backward(d, c), reference)


def warp_bench():
    size = INPUT_SIZE

    def make(N, rng):
        theta = IDENTITY + 0.05 * rng.standard_normal((N, 2, 3)).astype(np.float32)
        return rng.uniform(0, 1, (N, 3, size, size)).astype(np.float32), theta.astype(np.float32)

    def reference(inputs, dout):
        img, theta = inputs
        return warp_forward_reference(img, theta, size, size), warp_backward_reference(dout, img, theta)

    # 4 multiply-adds per output value: the bilinear blend of four pixels
    return Bench("warp", "warp", 4 * 3 * size * size, make, lambda i: ops.warp_forward(*i, size, size),
                 lambda d, c: ops.warp_backward(d, c), reference)


def loss_bench():
    def make(N, rng):
        labels = np.repeat(np.arange(max(1, N // 16)), 16)[:N] if N >= 16 else np.arange(N) % 2
        return (rng.standard_normal((N, SIGNATURE_DIM)).astype(np.float32) * 0.1, labels)

    def forward(inputs):
        emb, labels = inputs
        return ops.pair_hinge_forward(emb, labels, 1.0)

    def reference(inputs, dout):
        emb, labels = inputs
        loss, demb, _ = pair_hinge_reference(emb, labels, 1.0, all_ordered_pairs(len(labels)), True)
        return loss, (demb * dout,)

    return Bench("pair_hinge(all pairs)", "loss", 0, make, forward,
                 lambda d, c: (ops.pair_hinge_backward(c, float(d))[0],), reference, inference=False)


def all_benches():
    benches = []
    for s in alignment_shapes() + signature_shapes():
        if isinstance(s.layer, Conv):
            benches.append(conv_bench(s))
            if s.layer.name == "nin1.conv":          # the largest activation: the standalone ReLU op
                benches.append(relu_bench(s))
        elif isinstance(s.layer, MaxPool):
            benches.append(pool_bench(s))
        elif isinstance(s.layer, Linear):
            benches.append(linear_bench(s))
        if s.layer.name == "align.fc7":
            benches.append(warp_bench())
    benches.append(loss_bench())
    return benches


def validate(bench, rng, N=3):
    """Compare the fast op with the reference on a small batch; raise on mismatch."""
    inputs = bench.make(N, rng)
    out, cache = bench.forward(inputs)
    dout = rng.standard_normal(np.shape(out)).astype(np.float32) if np.ndim(out) else 1.0
    grads = bench.backward(dout, cache)
    ref_out, ref_grads = bench.reference(inputs, dout)
    np.testing.assert_allclose(out, ref_out, rtol=2e-3, atol=2e-3, err_msg=f"{bench.name} forward")
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=2e-3, atol=2e-3, err_msg=f"{bench.name} backward")


def run(bench, rng, train_batch, threads, quick):
    row = {"layer": bench.name, "kind": bench.kind, "macs": bench.macs}
    row["fwd_b1_ms"] = 0.0
    if bench.inference:
        x1 = bench.make(1, rng)
        with limit(1):
            row["fwd_b1_ms"] = 1e3 * median_time(lambda: bench.forward(x1), min_reps=20 if quick else 200,
                                                 min_seconds=0.05 if quick else 0.3)
    xb = bench.make(train_batch, rng)
    out, cache = bench.forward(xb)
    dout = rng.standard_normal(np.shape(out)).astype(np.float32) if np.ndim(out) else 1.0

    def step():
        _, c = bench.forward(xb)
        bench.backward(dout, c)

    with limit(threads):
        row["fwdbwd_b256_ms"] = 1e3 * median_time(step, min_reps=3 if quick else 7, min_seconds=0.0)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.layers", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (noisier medians)")
    parser.add_argument("--threads", type=int, default=max_threads(),
                        help="threads for the batch-256 forward+backward (default: all, %(default)s)")
    parser.add_argument("--batch", type=int, default=256, help="training batch size (default: %(default)s)")
    parser.add_argument("--json", type=output_file, metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    benches = all_benches()
    print(machine_line())
    print(f"Validating {len(benches)} layers against their references ...", flush=True)
    for b in benches:
        validate(b, rng)
    print("All results match. Starting benchmarks.\n", flush=True)

    peak1, peakT = gemm_peak(1), gemm_peak(args.threads)
    print(f"float32 GEMM peak (1024^3, NumPy): 1 thread {peak1:.1f} GFLOP/s, "
          f"{args.threads} threads {peakT:.1f} GFLOP/s\n")
    head = (f"{'layer':22s} {'kind':12s} {'MMACs':>7s} | {'fwd b=1 ms':>10s} {'GFLOP/s':>8s} {'%peak1':>7s} | "
            f"{'fwd+bwd b=' + str(args.batch) + ' ms':>18s} {'GFLOP/s':>8s} {'%peakT':>7s}")
    print(head)
    print("-" * len(head))
    rows = []
    for b in benches:
        row = run(b, rng, args.batch, args.threads, args.quick)
        f1 = 2 * b.macs / (row["fwd_b1_ms"] / 1e3) / 1e9 if b.inference else 0.0
        fb = 3 * 2 * b.macs * args.batch / (row["fwdbwd_b256_ms"] / 1e3) / 1e9
        row.update(fwd_b1_gflops=f1, fwd_b1_ratio=f1 / peak1, fwdbwd_gflops=fb, fwdbwd_ratio=fb / peakT)
        rows.append(row)
        ratios = (f"{f1:8.1f} {100 * f1 / peak1:6.1f}%", f"{fb:8.1f} {100 * fb / peakT:6.1f}%") if b.macs else \
                 (f"{'-':>8s} {'-':>7s}", f"{'-':>8s} {'-':>7s}")
        print(f"{b.name:22s} {b.kind:12s} {b.macs / 1e6:7.2f} | {row['fwd_b1_ms']:10.3f} {ratios[0]} | "
              f"{row['fwdbwd_b256_ms']:18.1f} {ratios[1]}", flush=True)

    sig = [r for r in rows if r["kind"].startswith("conv") and not r["layer"].startswith("align.")]
    total_macs = sum(r["macs"] for r in rows)
    total_fb = sum(r["fwdbwd_b256_ms"] for r in rows) / 1e3
    total_f1 = sum(r["fwd_b1_ms"] for r in rows) / 1e3
    overall_fb = 6 * total_macs * args.batch / total_fb / 1e9
    overall_f1 = 2 * total_macs / total_f1 / 1e9
    worst = min(sig, key=lambda r: r["fwd_b1_ratio"])
    print(f"\nAll layers, batch 1 forward, 1 thread: {1e3 * total_f1:.2f} ms, {overall_f1:.1f} GFLOP/s "
          f"= {100 * overall_f1 / peak1:.1f}% of the 1-thread peak")
    print(f"All layers, batch {args.batch} forward+backward, {args.threads} threads: {total_fb:.2f} s, "
          f"{overall_fb:.1f} GFLOP/s = {100 * overall_fb / peakT:.1f}% of the {args.threads}-thread peak "
          f"(target >= 25%)")
    print(f"Slowest signature convolution at batch 1: {worst['layer']} at {100 * worst['fwd_b1_ratio']:.1f}% "
          f"of the 1-thread peak (target >= 30% for each)")
    if args.json:
        summary = dict(machine=machine_line(), gemm_peak_1thread=peak1, gemm_peak_threads=peakT,
                       threads=args.threads, batch=args.batch, layers=rows,
                       total_fwd_b1_ms=1e3 * total_f1, total_fwdbwd_s=total_fb,
                       total_fwdbwd_ratio=overall_fb / peakT, total_fwd_b1_ratio=overall_f1 / peak1)
        write_json(args.json, summary)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.layers"))
