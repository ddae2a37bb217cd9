"""End-to-end inference speed of the Table 2 network on one thread.

    python -m benchmarks.inference            # batch-1 latency (>= 200 calls) and batch-32 throughput
    python -m benchmarks.inference --quick
    python -m benchmarks.inference --json benchmarks/results/inference.json

Batch-1 latency covers everything ``model.embed`` does for one 112x112 uint8
image: normalise, resize to 50x50, alignment net, warp, signature net. It is
the median of at least 200 calls after warm-up (so no JIT compile time), on
ONE thread (Numba and BLAS), as on the paper's single Cortex-A9 core (30 ms
for 41M FLOPs). A per-layer breakdown (median per layer over profiled calls)
gives time, share and GFLOP/s, and every ratio is to the single-thread
float32 GEMM peak measured in the same run.

Before timing, the model's output is checked against the network built from
the slow reference kernels.
"""
import argparse
import sys
import time

import numpy as np

from benchmarks.common import gemm_peak, machine_line, median_time, write_json
from npface.flops import layer_rows
from npface.model import TABLE2, FaceModel, reference_forward
from npface.threads import limit

TARGET = 0.30   # the model issue: batch-1 forward at >= 30% of the 1-thread GEMM peak


def main(argv=None):
    parser = argparse.ArgumentParser(description="Batch-1 single-thread latency and batch-32 throughput of the "
                                     "whole network, with a per-layer breakdown.")
    parser.add_argument("--quick", action="store_true", help="fewer calls (noisier medians)")
    parser.add_argument("--calls", type=int, default=300, help="timed batch-1 calls (default %(default)s, >= 200)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    calls = 50 if args.quick else max(200, args.calls)

    rng = np.random.default_rng(0)
    model = FaceModel(TABLE2, seed=0)
    # a non-trivial alignment output, so the warp really resamples
    model.params["align.fc7.weight"] = (0.01 * rng.standard_normal((4, 64))).astype(np.float32)
    one = rng.integers(0, 256, (1, 112, 112, 3), dtype=np.uint8)
    batch = rng.integers(0, 256, (32, 112, 112, 3), dtype=np.uint8)

    print(machine_line())
    got = model.embed(batch[:2])
    want = reference_forward(model, batch[:2])
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    print(f"Model output matches the reference network (max |diff| {np.abs(got - want).max():.2e}). "
          "Starting benchmarks.\n")

    peak1 = gemm_peak(1)
    macs = {r["name"]: r["macs"] for r in layer_rows()}
    total_macs = sum(macs.values())
    with limit(1):
        latency = median_time(lambda: model.embed(one), min_reps=calls, min_seconds=0.0, warmup=20)
        per_layer = {}
        for _ in range(calls):
            t = {}
            model.forward(one, timings=t)
            for k, v in t.items():
                per_layer.setdefault(k, []).append(v)
        throughput_t = median_time(lambda: model.embed(batch, batch_size=32), min_reps=3 if args.quick else 10)

    gflops = 2 * total_macs / latency / 1e9
    print(f"float32 GEMM peak, 1 thread (1024^3 NumPy): {peak1:.1f} GFLOP/s")
    print(f"Batch 1, 1 thread: median {1e3 * latency:.2f} ms over {calls} calls "
          f"({total_macs / 1e6:.1f}M multiply-adds -> {gflops:.1f} GFLOP/s = {100 * gflops / peak1:.1f}% of the "
          f"1-thread peak; target >= {100 * TARGET:.0f}%)")
    print(f"Batch 32, 1 thread: {32 / throughput_t:.0f} images/s ({1e3 * throughput_t / 32:.2f} ms per image)\n")

    stage_macs = dict(macs)
    stage_macs["preprocess+resize"] = macs["resize"]
    medians = {k: float(np.median(v)) for k, v in per_layer.items()}
    profiled = sum(medians.values())
    print(f"{'stage':18s} {'ms':>7s} {'share':>6s} {'MMACs':>7s} {'GFLOP/s':>8s} {'%peak':>6s}")
    rows = []
    for name, t in medians.items():
        m = stage_macs.get(name, 0)
        g = 2 * m / t / 1e9 if t > 0 else 0.0
        rows.append(dict(stage=name, ms=1e3 * t, share=t / profiled, macs=m, gflops=g))
        print(f"{name:18s} {1e3 * t:7.3f} {100 * t / profiled:5.1f}% {m / 1e6:7.2f} "
              + (f"{g:8.1f} {100 * g / peak1:5.1f}%" if m else f"{'-':>8s} {'-':>6s}"))
    print(f"{'(sum of stages)':18s} {1e3 * profiled:7.3f}   (the rest of the {1e3 * latency:.2f} ms is embed's "
          "own checks and copies)")
    print(f"\nFor scale: the paper's 30 ms on a 1 GHz Cortex-A9 for 41M FLOPs; here {1e3 * latency:.2f} ms "
          f"on one core of this machine.")
    if args.json:
        write_json(args.json, dict(machine=machine_line(), gemm_peak_1thread=peak1, batch1_ms=1e3 * latency,
                                   batch1_gflops=gflops, batch1_ratio=gflops / peak1, total_macs=total_macs,
                                   batch32_images_per_s=32 / throughput_t, calls=calls, stages=rows,
                                   date=time.strftime("%Y-%m-%d")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
