"""End-to-end inference speed of the Table 2 network: the compiled plan beside the per-op path.

    python -m benchmarks.inference            # batch-1 latency (>= 200 calls), batch-32 and batch-256 throughput
    python -m benchmarks.inference --quick
    python -m benchmarks.inference --json benchmarks/results/inference.json
    python -m benchmarks.inference --no-onnx         # without ONNX Runtime beside npface

Batch-1 latency covers everything ``model.embed`` does for one 112x112 uint8
image: normalise, resize to 50x50, alignment net, warp, signature net. It is
the median of at least 200 calls after warm-up (so no JIT compile time), on
ONE thread (Numba and BLAS), as on the paper's single Cortex-A9 core (30 ms
for 41M FLOPs). ``model.embed`` runs the compiled plan (``npface.plan``); the
per-op path (``model.forward(..., per_op=True)``) is timed beside it, call
for call in the same rounds, and a 1024^3 float32 matrix product on one
thread (the 1-thread GEMM peak) every ten rounds, each followed by one
untimed round so that no timed call runs on the caches it flushed
(``interleaved_medians``): the ratios between them hold on a machine whose
speed drifts. The
per-stage breakdown gives each stage's time in both: the per-op path's from
its own ``timings`` (medians), the plan's as the difference between
calls that run the plan up to and including a stage and up to the stage
before (``Plan.forward(..., stages=k)``), taken within each round of
calls and then the median over rounds (``plan_stage_times``), so the plan's
figures time the compiled code itself. Stages of a few microseconds are
within the noise of these differences. Each batch-1 round also times
``embed`` a second time straight after the first, beside the call made
after the per-op path: the two give what the same work costs more on the
caches the per-op call leaves behind. A plan call that runs no stage (the
boundary: checks, workspace lookup, dispatch) is timed with the stages.
Every ratio is to a float32
GEMM peak measured in the same run (at batch 1, in the same rounds); batch 256 runs on two threads, the
plan and the per-op path again in the same rounds, against the two-thread peak. The plan's workspace for batch 1 is reported in bytes.
The plan runs nin4.conv and nin5.conv by Winograd's method (``kernels.winograd``) at every batch size,
which needs fewer multiply-adds; the shares of the peak count the direct convolution's all the same
(effective rates), and the bytes the plan keeps for it are reported.

The model is a seeded Table 2 network saved and read back with ``npface.load``, as a user gets one: its
parameters are read-only, so no call compares the Winograd layers' weights with those their transform
was made from. A writable copy of it (``model.copy()``), whose calls do, is timed beside it at batch 1.

Before timing, the model's output is checked against the network built from
the slow reference kernels and against the per-op path.

When onnxruntime is installed (``pip install 'npface[onnx]'``), the same model
is exported (``npface.export_onnx``) and ONNX Runtime is timed in the same
run: batch 1 on one thread, and batch 256 on two threads, each in the same
rounds of calls as npface's own. ONNX Runtime's output is checked against npface's
first, and npface's time is printed as a ratio to ONNX Runtime's. Then ONNX
Runtime's own profiler times each node of its graph at batch 1 on one thread
(``ort_stage_times``); the nodes are added up by stage and printed beside the
plan's stages, grouped in blocks (``stage_blocks``: the alignment net, each NIN
block, the affine tail), to show where either engine spends its time.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import gemm_call, gemm_peak, interleaved_medians, machine_line, median_time, write_json
from benchmarks.report import DIRECT_WAY
from benchmarks.tiles import way as tiles_way
from benchmarks.tiles import winograd_layers
from kernels import tile
import npface
from npface.cli import output_file, run_main
from npface.flops import layer_rows
from npface.model import TABLE2, FaceModel, reference_forward
from npface.onnx_export import INPUT, THETA
from npface.threads import limit, max_threads

TARGET = 0.75   # batch-1 forward through the compiled plan at >= 75% of the 1-thread GEMM peak
# the shares of the peak count the direct convolution's multiply-adds for every layer, also for those the plan
# runs by Winograd's method with fewer (npface.plan: nin4.conv and nin5.conv, for inference)
EFFECTIVE = " (an effective rate: nin4.conv and nin5.conv ran by Winograd's method)"


def stage_limits(model):
    """stage name -> what bounds it at batch 1: how a layer's product runs and its shape (M x K x N:
    Winograd's method, the tiles from the input's planes or from im2col's matrix, or im2col and the BLAS,
    as ``benchmarks.tiles`` names them), or the kind of memory pass."""
    from kernels import plan as kplan
    t = model.plan.tables
    limits = {"preprocess+resize": "memory passes over the 112x112x3 image", "warp": "bilinear gather, 4 reads/pixel"}
    layers = model.config.alignment + model.config.signature
    rows = list(t.align) + list(t.sig) + list(t.tail)
    winograd = winograd_layers(t)
    for layer, row in zip(layers, rows):
        C, F, K, P = row[kplan.C_], row[kplan.F_], row[kplan.K_], row[kplan.HO] * row[kplan.WO]
        kind = row[kplan.KIND]
        if kind == kplan.CONV:
            shape = f"{F}x{C * K * K}x{P}"
            way = "Winograd" if layer.name in winograd else \
                tiles_way(C, row[kplan.H_], row[kplan.W_], K, row[kplan.STRIDE], row[kplan.PAD]) \
                if model.tiles and model.dtype == np.float32 else "BLAS"
            limits[layer.name] = {"Winograd": f"Winograd's method (16 GEMMs) for {shape}",
                                  "planes": f"tiles from the input's planes, {shape}",
                                  "im2col": f"im2col + tiles {shape}", "BLAS": f"im2col + GEMM {shape}"}[way]
        elif kind == kplan.CONV1X1:
            limits[layer.name] = f"GEMM {F}x{C}x{P}"
        elif kind == kplan.POOL:
            limits[layer.name] = "memory pass (window max)"
        else:
            limits[layer.name] = f"GEMV {F}x{C}: reads each weight once" if layer in model.config.alignment \
                else f"GEMM (N x {C}) x {F}: weight reads at batch 1"
    return limits


def stage_blocks(model):
    """stage name -> the block it is reported in: the alignment net's layers together, each signature-net
    convolution with the 1x1 convolution after it (a NIN block: "nin1.conv", "nin1.mlp" -> "nin1"), the
    affine tail's layers together; preprocess+resize, the warp and the pools on their own."""
    from npface.architecture import Linear
    blocks = {"preprocess+resize": "preprocess+resize", "warp": "warp"}
    blocks.update({layer.name: "alignment net" for layer in model.config.alignment})
    blocks.update({layer.name: "affine tail" if isinstance(layer, Linear) else layer.name.split(".")[0]
                   for layer in model.config.signature})
    return blocks


# ONNX Runtime's profiler names each node as npface.onnx_export does (after the tensor it outputs), at times
# with what its graph optimisations add ("fused nin1.conv", "nin1.conv.relu_nchwc"). The nodes that come
# before the alignment net, and those of the warp, have names of their own:
ORT_PREPROCESS_NODES = ("pixels", "unit", "centred", "nhwc", "x", "resize.rows_out", "small")
ORT_WARP_NODES = ("theta_flat", THETA, "warp.size", "warp.grid", "aligned")
ORT_OTHER = "other (ONNX Runtime's layout reorders)"


def ort_stage_of(node, stage_names):
    """The plan's stage an ONNX Runtime node belongs to (``ORT_OTHER`` for a node of its own, such as the
    reorders between its blocked channel layout and NCHW)."""
    name = node[len("fused "):] if node.startswith("fused ") else node
    if name in ORT_PREPROCESS_NODES:
        return "preprocess+resize"
    if name in ORT_WARP_NODES:
        return "warp"
    owners = [s for s in stage_names if name == s or name.startswith(s + ".") or name.startswith(s + "_")]
    return max(owners, key=len) if owners else ORT_OTHER


def ort_stage_times(onnx_model, one, calls, stage_names):
    """ONNX Runtime's profiler on ``calls`` batch-1 calls of ``onnx_model`` (an ``OnnxModel``), one thread
    -> {stage: ms}: each node's median kernel time (the profiler counts whole microseconds), summed over
    the nodes of each stage (``ort_stage_of``). None if the profile holds no node times."""
    import json
    with tempfile.TemporaryDirectory() as tmp:
        session = onnx_model.profiling_session(Path(tmp) / "ort")
        for _ in range(20 + calls):
            session.run(None, {INPUT: one})
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            per_node.setdefault(e["name"][:-len("_kernel_time")], []).append(e["dur"])
    if not per_node:
        return None
    stages = {}
    for node, durations in per_node.items():
        stage = ort_stage_of(node, stage_names)
        stages[stage] = stages.get(stage, 0.0) + 1e-3 * float(np.median(durations[-calls:]))
    return stages


def plan_stage_times(model, one, n_stages, rounds):
    """Seconds per stage inside the compiled plan: the median over ``rounds`` of t_r(k) - t_r(k-1), where
    t_r(k) is round r's time of a call that runs the first k stages (``Plan.forward(..., stages=k)``; k = 0
    is the bare call).

    Each round times every prefix once, back to back, so a stage's difference is taken between two calls
    made microseconds apart: the machine's drift in speed (this one is shared) falls out of it, where
    differences of separately timed prefixes mixed it into stages of tens of microseconds. Each call
    runs on the caches the previous call left, as a stream of batch-1 calls does.

    Returns (per-stage seconds, the median of t_r(0): a plan call that runs no stage).
    """
    times = np.empty((rounds, n_stages + 1))
    for k in range(n_stages + 1):
        model.plan.forward(one, stages=k)                                   # warm every prefix once
    for r in range(rounds):
        model.plan.forward(one, stages=0)           # untimed: the first call of a round pays for the last one's
        for k in range(n_stages + 1):
            start = time.perf_counter()
            model.plan.forward(one, stages=k)
            times[r, k] = time.perf_counter() - start
    return np.median(np.diff(times, axis=1), axis=0), float(np.median(times[:, 0]))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference",
                                     description="Batch-1 single-thread latency, batch-256 two-thread throughput and "
                                                 "a per-stage breakdown of the whole network: the compiled plan "
                                                 "beside the per-op reference path, measured in the same run.")
    parser.add_argument("--quick", action="store_true", help="fewer calls (noisier medians)")
    parser.add_argument("--calls", type=int, default=300,
                        help="timed batch-1 calls, at least 200 (default %(default)s; --quick: 50)")
    parser.add_argument("--json", type=output_file, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--no-onnx", action="store_true",
                        help="do not time ONNX Runtime on the exported model (it is timed when onnxruntime is "
                             "installed)")
    args = parser.parse_args(argv)
    if args.calls < 200 and not args.quick:
        parser.error(f"--calls must be at least 200 (fewer leave the median too noisy to report), got {args.calls}")
    calls = 50 if args.quick else args.calls

    rng = np.random.default_rng(0)
    seeded = FaceModel(TABLE2, seed=0)
    # a non-trivial alignment output, so the warp really resamples
    seeded.params["align.fc7.weight"] = (0.01 * rng.standard_normal((4, 64))).astype(np.float32)
    # timed as a user gets a model, from a file: npface.load() gives read-only parameters
    with tempfile.TemporaryDirectory() as tmp:
        seeded.save(Path(tmp) / "model.npz")
        model = npface.load(Path(tmp) / "model.npz")
    one = rng.integers(0, 256, (1, 112, 112, 3), dtype=np.uint8)
    batch = rng.integers(0, 256, (32, 112, 112, 3), dtype=np.uint8)
    big = np.random.default_rng(1).integers(0, 256, (256, 112, 112, 3), dtype=np.uint8)
    threads2 = min(2, max_threads())

    print(machine_line())
    got = model.embed(batch[:2])
    want = reference_forward(model, batch[:2])
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    # The plan and the per-op path in float32 each sit within float32 rounding (about 1e-5 here) of the
    # same network in float64, adding in different orders, so each is checked against that, not the
    # other (as tests/test_plan.py does).
    exact = model.astype(np.float64).forward(batch, per_op=True)[0]
    per_op = model.forward(batch, per_op=True)[0]
    plan = model.embed(batch)
    np.testing.assert_allclose(per_op, exact, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(plan, exact, rtol=1e-5, atol=1e-5)
    print(f"Model output matches the reference network (max |diff| {np.abs(got - want).max():.2e}); the plan "
          f"and the per-op path match the float64 network (max |diff| {np.abs(plan - exact).max():.2e} and "
          f"{np.abs(per_op - exact).max():.2e}). Starting benchmarks.\n")

    peak2 = gemm_peak(threads2)
    macs = {r["name"]: r["macs"] for r in layer_rows()}
    total_macs = sum(macs.values())
    names = model.plan.stage_names()
    gemm, gemm_flops = gemm_call()
    with limit(1):
        # the plan, the per-op path and the 1-thread GEMM peak, timed in the same rounds (side by side)
        # (each round: the plan after the last round's per-op call, the plan again straight after itself, the
        # per-op path)
        batch1 = interleaved_medians({"plan": lambda: model.embed(one), "plan_again": lambda: model.embed(one),
                                      "per_op": lambda: model.forward(one, per_op=True)},
                                     rounds=calls, warmup=20, occasional={"peak": gemm}, every=10)
        latency, latency_per_op, back_to_back = batch1["plan"], batch1["per_op"], batch1["plan_again"]
        # every inference call, batch 1 included, runs the plan's Winograd layers (nin4/nin5) by the method
        # (Plan.forward; tests/test_winograd.py checks batch 1 makes their transformed weights)
        winograd_batch1 = bool(model.plan.tables.winograd_layers)
        # the shipped model is loaded read-only (npface.model.load), so no call compares the Winograd layers'
        # weights with the copy their transform was made from (Plan._winograd_lists); recorded either way
        weights_compared = model.plan.compares_winograd_weights
        # the plan's own call with Winograd's method beside the same call with those two layers run as the other
        # convolutions are (at batch 1 on the tiles, from their input's planes), alternating (Plan.forward's
        # winograd flag): what the method saves at batch 1
        np.testing.assert_allclose(model.plan.forward(one)[0], model.plan.forward(one, winograd=False)[0],
                                   rtol=1e-5, atol=1e-5)
        # and a writable copy of the model (npface.model.FaceModel.copy), whose calls compare the Winograd
        # layers' weights with those their transform was made from, beside them: what the comparison costs
        # (the order rotates round by round: the call after the copy's runs on the caches its own weights and
        # workspace left, and in a fixed order that would always be the same one of the three)
        writable = model.copy()
        np.testing.assert_array_equal(writable.plan.forward(one)[0], model.plan.forward(one)[0])
        methods = interleaved_medians({"winograd": lambda: model.plan.forward(one),
                                       "direct": lambda: model.plan.forward(one, winograd=False),
                                       "writable": lambda: writable.plan.forward(one)},
                                      rounds=calls, warmup=20, rotate=True)
        peak1 = gemm_flops / batch1["peak"] / 1e9
        per_layer = {}
        for _ in range(calls):
            t = {}
            model.forward(one, timings=t)
            for k, v in t.items():
                per_layer.setdefault(k, []).append(v)
        plan_stage, bare = plan_stage_times(model, one, len(names), calls)
        throughput_t = median_time(lambda: model.embed(batch, batch_size=32), min_reps=3 if args.quick else 10)
    reps = 2 if args.quick else 5
    with limit(threads2):
        # the plan and the per-op path side by side, round by round, as at batch 1
        batch256 = interleaved_medians({"plan": lambda: model.embed(big, batch_size=256, threads=threads2),
                                        "per_op": lambda: model.forward(big, per_op=True)}, rounds=reps, warmup=1)
        big_t, big_per_op_t = batch256["plan"], batch256["per_op"]
    ws1 = model.plan.workspace(1, train=False).nbytes
    winograd_bytes = model.plan.winograd_nbytes

    def ratio(seconds, macs_, peak):
        return 2 * macs_ / seconds / 1e9 / peak

    gflops = 2 * total_macs / latency / 1e9
    print(f"float32 GEMM peak (1024^3 NumPy): 1 thread {peak1:.1f} GFLOP/s, {threads2} threads {peak2:.1f} GFLOP/s")
    print(f"Batch 1, 1 thread, compiled plan: median {1e3 * latency:.3f} ms over {calls} calls "
          f"({total_macs / 1e6:.1f}M multiply-adds -> {gflops:.1f} GFLOP/s = {100 * gflops / peak1:.1f}% of the "
          f"1-thread peak; target >= {100 * TARGET:.0f}%)" + (EFFECTIVE if winograd_batch1 else ""))
    print(f"Batch 1, 1 thread, the plan's call alone: median {1e3 * methods['winograd']:.3f} ms with nin4.conv "
          f"and nin5.conv by Winograd's method, {1e3 * methods['direct']:.3f} ms as direct convolutions ({DIRECT_WAY[bool(tile.AVAILABLE)]}); a writable copy of "
          f"the model (its calls compare those layers' weights) {1e3 * methods['writable']:.3f} ms (side by side)")
    print(f"Batch 1, 1 thread, per-op path:   median {1e3 * latency_per_op:.3f} ms "
          f"({100 * ratio(latency_per_op, total_macs, peak1):.1f}% of the peak); plan speed-up "
          f"{latency_per_op / latency:.2f}x")
    print(f"Batch 32, 1 thread: {32 / throughput_t:.0f} images/s ({1e3 * throughput_t / 32:.2f} ms per image)")
    print(f"Batch 256, {threads2} threads: plan {256 / big_t:.0f} images/s "
          f"({100 * ratio(big_t, 256 * total_macs, peak2):.1f}% of the {threads2}-thread peak), per-op path "
          f"{256 / big_per_op_t:.0f} images/s ({100 * ratio(big_per_op_t, 256 * total_macs, peak2):.1f}%)")
    print(f"Plan workspace for batch 1: {ws1} bytes; kept for Winograd's method (inference): "
          f"{winograd_bytes} bytes\n")

    stage_macs = dict(macs)
    stage_macs["preprocess+resize"] = macs["resize"]
    medians = {k: float(np.median(v)) for k, v in per_layer.items()}
    plan_stage = dict(zip(names, plan_stage))
    limits, blocks = stage_limits(model), stage_blocks(model)
    stage_sum = float(sum(plan_stage.values()))
    print(f"{'stage':18s} {'per-op ms':>9s} {'plan ms':>8s} {'MMACs':>7s} {'plan %peak':>10s}  limited by")
    rows = []
    for name in names:
        m, before, after = stage_macs.get(name, 0), medians.get(name, 0.0), float(plan_stage[name])
        rows.append(dict(stage=name, block=blocks[name], ms=1e3 * after, per_op_ms=1e3 * before,
                         share=after / stage_sum, macs=m,
                         gflops=2 * m / after / 1e9 if after > 0 else 0.0,
                         ratio=ratio(after, m, peak1) if after > 0 and m else None,
                         per_op_ratio=ratio(before, m, peak1) if before > 0 and m else None, limit=limits[name]))
        print(f"{name:18s} {1e3 * before:9.3f} {1e3 * after:8.3f} {m / 1e6:7.2f} "
              + (f"{100 * rows[-1]['ratio']:9.1f}%" if rows[-1]["ratio"] else f"{'-':>10s}") + f"  {limits[name]}")
    print(f"{'(sum of stages)':18s} {1e3 * sum(medians.values()):9.3f} {1e3 * stage_sum:8.3f}")
    print(f"\nembed at batch 1, in the same rounds: {1e3 * latency:.3f} ms after a per-op call (the figure above), "
          f"{1e3 * back_to_back:.3f} ms straight after another embed call: the difference is what the same work "
          f"costs more on the caches the per-op path leaves behind. The stages are timed back to back (sum "
          f"{1e3 * stage_sum:.3f} ms); a plan call that runs no stage (the boundary: checks, the workspace lookup, "
          f"the dispatch) takes {1e3 * bare:.3f} ms.")
    print(f"\nFor scale: the paper's 30 ms on a 1 GHz Cortex-A9 for 41M FLOPs; here {1e3 * latency:.2f} ms "
          f"on one core of this machine.")
    onnx = None if args.no_onnx else onnx_runtime(model, one, calls, args.quick, rows)
    if args.json:
        write_json(args.json, dict(machine=machine_line(), gemm_peak_1thread=peak1, batch1_ms=1e3 * latency,
                                   batch1_gflops=gflops, batch1_ratio=gflops / peak1, total_macs=total_macs,
                                   batch1_per_op_ms=1e3 * latency_per_op,
                                   batch1_per_op_ratio=ratio(latency_per_op, total_macs, peak1),
                                   batch1_back_to_back_ms=1e3 * back_to_back, batch1_bare_call_ms=1e3 * bare,
                                   batch32_images_per_s=32 / throughput_t, calls=calls, stages=rows,
                                   batch256_threads=threads2, gemm_peak_batch256_threads=peak2,
                                   batch256_images_per_s=256 / big_t,
                                   batch256_ratio=ratio(big_t, 256 * total_macs, peak2),
                                   batch256_per_op_images_per_s=256 / big_per_op_t,
                                   workspace_bytes_batch1=ws1, winograd_bytes=winograd_bytes,
                                   winograd_batch1=bool(winograd_batch1),
                                   winograd_weights_compared=bool(weights_compared),
                                   batch1_plan_call_ms=1e3 * methods["winograd"],
                                   batch1_plan_call_direct_ms=1e3 * methods["direct"],
                                   tiles_available=bool(tile.AVAILABLE),
                                   batch1_plan_call_writable_ms=1e3 * methods["writable"],
                                   onnxruntime=onnx, date=time.strftime("%Y-%m-%d")))
    return 0


def onnx_runtime(model, one, calls, quick, plan_rows=None):
    """ONNX Runtime on the exported model: batch 1 on 1 thread, batch 256 on 2 threads, npface beside it
    (in the same rounds of calls, ``interleaved_medians``); then its per-node profile at batch 1 by stage
    (``ort_stage_times``), printed by block beside ``plan_rows`` (the plan's stage rows) when given.

    Returns the JSON-able results, or None when onnxruntime is not installed.
    """
    from npface.extras import MissingExtra
    try:
        from npface.onnx_backend import TOLERANCE, load_onnx, max_differences
        with tempfile.TemporaryDirectory() as tmp:
            onnx_model = load_onnx(npface.export_onnx(model, Path(tmp) / "model.onnx"))
    except MissingExtra as e:
        print(f"\nONNX Runtime not timed: {e}")
        return None
    import onnxruntime
    threads = min(2, max_threads())
    big = np.random.default_rng(1).integers(0, 256, (256, 112, 112, 3), dtype=np.uint8)
    sig_diff, theta_diff = max_differences(model, onnx_model, big[:8])
    if max(sig_diff, theta_diff) > TOLERANCE:
        raise SystemExit(f"ONNX Runtime disagrees with npface: max |diff| {sig_diff:.2e} in signatures, "
                         f"{theta_diff:.2e} in theta (tolerance {TOLERANCE:g})")
    print(f"\nONNX Runtime {onnxruntime.__version__} on the exported model matches npface (max |diff| "
          f"{sig_diff:.2e} in signatures, {theta_diff:.2e} in theta). Starting benchmarks.")
    with limit(1):                                    # ONNX Runtime and npface side by side, round by round
        side_by_side = interleaved_medians({"ort": lambda: onnx_model.embed(one, threads=1),
                                            "npface": lambda: model.embed(one)}, rounds=calls, warmup=20)
    batch1, npface_batch1 = side_by_side["ort"], side_by_side["npface"]
    reps = 2 if quick else 5
    side_by_side = interleaved_medians({"ort": lambda: onnx_model.embed(big, batch_size=256, threads=threads),
                                        "npface": lambda: model.embed(big, batch_size=256, threads=threads)},
                                       rounds=reps, warmup=1)
    ort_big, npface_big = side_by_side["ort"], side_by_side["npface"]
    print(f"Batch 1, 1 thread: ONNX Runtime {1e3 * batch1:.2f} ms, npface {1e3 * npface_batch1:.2f} ms "
          f"(npface / ONNX Runtime = {npface_batch1 / batch1:.2f})")
    print(f"Batch 256, {threads} threads: ONNX Runtime {256 / ort_big:.0f} images/s, npface {256 / npface_big:.0f} "
          f"images/s (npface time / ONNX Runtime time = {npface_big / ort_big:.2f})")
    names = model.plan.stage_names()
    with limit(1):
        stages = ort_stage_times(onnx_model, one, calls, names)
    if stages is None:
        print("ONNX Runtime's profile held no node times: no per-stage comparison.")
    elif plan_rows:
        print_blocks(plan_rows, stages)
    return dict(version=onnxruntime.__version__, max_abs_diff_signatures=sig_diff, max_abs_diff_theta=theta_diff,
                stages_ms=stages,
                batch1_ms=1e3 * batch1, npface_batch1_ms=1e3 * npface_batch1,
                batch1_npface_ratio=npface_batch1 / batch1,
                batch256_threads=threads, batch256_images_per_s=256 / ort_big,
                npface_batch256_images_per_s=256 / npface_big, batch256_npface_ratio=npface_big / ort_big)


def block_times(plan_rows, ort_stages):
    """[(block, plan ms, multiply-adds, ONNX Runtime ms)] in the plan's order, then ONNX Runtime's nodes that
    belong to no stage (plan ms None): the plan's stage rows and ``ort_stage_times``' stages added up by
    block."""
    blocks = {}
    for r in plan_rows:
        b = blocks.setdefault(r.get("block", r["stage"]), [0.0, 0, 0.0])
        b[0] += r["ms"]
        b[1] += r["macs"]
        b[2] += ort_stages.get(r["stage"], 0.0)
    out = [(name, ms, macs, ort_ms) for name, (ms, macs, ort_ms) in blocks.items()]
    if ORT_OTHER in ort_stages:
        out.append((ORT_OTHER, None, 0, ort_stages[ORT_OTHER]))
    return out


def print_blocks(plan_rows, ort_stages):
    print("\nBy block, batch 1, one thread: the plan's stages (as above) beside ONNX Runtime's own profiler "
          "(each node's median kernel time, added up by stage):")
    print(f"{'block':40s} {'npface ms':>9s} {'ORT ms':>7s} {'npface/ORT':>10s}")
    for name, ms, _, ort_ms in block_times(plan_rows, ort_stages):
        mine = f"{ms:9.3f}" if ms is not None else f"{'':9s}"
        ratio = f"{ms / ort_ms:10.2f}" if ms is not None and ort_ms > 0 else f"{'':10s}"
        print(f"{name:40s} {mine} {ort_ms:7.3f} {ratio}")


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.inference"))
