"""Speed of one full training step at k = 256 (16 identities x 16 images) on all threads.

    python -m benchmarks.train_step [--threads 2] [--steps 10] [--estimator multibatch] [--align-lr-scale 0]
    python -m benchmarks.train_step --profile [--profile-samples 32]    # per-layer forward/backward, 1 thread

A step is: draw the batch (synthetic faces), forward through the whole
network, the loss and its signature gradients (the estimator), backward,
and the SGD update. Forward and backward run through the compiled plan
(``npface.plan``); with ``--align-lr-scale 0`` (the default, as in the
reported runs) the alignment net is frozen and its backward, and the
warp's, are skipped. The per-op path's forward + backward on the same batch
is timed beside it (median of a few steps), and the plan's workspace for
the step is reported in bytes. Each phase is timed separately (median over steps,
after warm-up steps that also keep JIT compilation out), and the whole is
compared with the float32 GEMM peak of this machine on the same threads,
measured in the same run. Work counted: 3 x the forward multiply-adds
(forward, and backward's two products per layer), 2 FLOPs each, the usual
convention; beside it, the products the step actually needs
(``required_macs``: a frozen alignment net has no backward, and the first
trained layer needs no input gradient).

Target: >= 45% of the two-thread GEMM peak for the step without the data phase.
Before timing, one step's parameter gradients are checked against a second
evaluation of the same step (the kernels are deterministic for a fixed
thread count) and the forward pass against the reference network.
"""
import argparse
import sys
import time

import numpy as np

from benchmarks.common import gemm_peak, machine_line, median_time
from npface.cli import output_file, run_main
from npface.data.synthetic import SyntheticFaces
from npface.estimators import ESTIMATORS, PAIR_BATCH_ESTIMATORS, signature_gradients
from npface.flops import layer_rows
from npface.model import TABLE2, FaceModel, reference_forward
from npface.optim import SGD
from npface.threads import limit, max_threads

TARGET = 0.45


def required_macs(model):
    """Multiply-adds per image of the products one training step needs: every layer's forward, and for each
    trained layer its weight gradient and, except for the first trained layer, its input gradient (nobody
    needs the gradient of the image, nor, when the alignment net is frozen, of its layers or the warp's).
    The conventional count is 3 x the forward."""
    rows = layer_rows()
    forward = sum(r["macs"] for r in rows)
    align = model.trains_alignment()
    trained = [r for r in rows if align or not r["name"].startswith("align")]
    trained = [r for r in trained if r["name"] not in ("resize", "warp")]
    first = trained[0]["name"]
    return forward + sum(r["macs"] for r in trained) + sum(r["macs"] for r in trained if r["name"] != first)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_step",
                                     description="Images/s of a full k=256 training step, with a per-phase breakdown.")
    parser.add_argument("--threads", type=int, default=max_threads(), help="threads (default: all, %(default)s)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default %(default)s)")
    parser.add_argument("--estimator", choices=ESTIMATORS, default="multibatch",
                        help="the loss gradient's estimator, as in python -m npface.train: multibatch (all "
                             "k^2-k pairs of the batch), pairs (k/2 independent random pairs) or pairs-in-batch "
                             "(k/2 disjoint pairs inside the batch) (default %(default)s)")
    parser.add_argument("--align-lr-scale", type=float, default=0.0,
                        help="the alignment net's learning rate relative to the rest, as in python -m npface.train; "
                             "0 (default, as in the reported runs) freezes it and skips its backward pass")
    parser.add_argument("--json", type=output_file, metavar="PATH",
                        help="also write the medians (seconds per phase) as JSON")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing steps, print each layer's forward and backward time per sample on "
                             "one thread and its fraction of the 1-thread GEMM peak (a diagnostic: layer by layer "
                             "over a batch, not the plan's sample-by-sample order)")
    parser.add_argument("--profile-samples", type=int, default=32, metavar="N",
                        help="samples per layer in --profile (default %(default)s)")
    args = parser.parse_args(argv)
    if not 1 <= args.threads <= max_threads() or args.steps < 1 or args.align_lr_scale < 0:
        parser.error(f"--threads must be 1..{max_threads()}, --steps >= 1 and --align-lr-scale >= 0")
    if args.profile_samples < 1:
        parser.error("--profile-samples must be >= 1")

    faces = SyntheticFaces(seed=0, n_identities=1000)
    model = FaceModel(TABLE2, seed=0, threshold=8.0)
    opt = SGD(model.params, lr=1e-4, momentum=0.9, lr_scale={"align.": args.align_lr_scale})
    model.frozen = ("align.",) if args.align_lr_scale == 0 else ()
    print(machine_line())

    def draw(rng):
        """The batch the trainer would draw for this estimator: 16 x 16, or 128 random pairs."""
        if args.estimator in PAIR_BATCH_ESTIMATORS:
            return faces.sample_random_pairs(256, rng)
        return faces.sample_batch(16, 16, rng)

    images, labels = draw(np.random.default_rng(0))
    with limit(args.threads):
        np.testing.assert_allclose(model.forward(images[:2])[0], reference_forward(model, images[:2]),
                                   rtol=1e-3, atol=1e-4)
        sig, cache = model.forward(images, train=True)
        est = signature_gradients(sig, labels, model.threshold, args.estimator, np.random.default_rng(0))
        g1 = model.backward(est.dsig, est.dthreshold, cache)
        sig, cache = model.forward(images, train=True)
        g2 = model.backward(est.dsig, est.dthreshold, cache)
        sig_ref, cache_ref = model.forward(images, train=True, per_op=True)
        g_ref = model.backward(est.dsig, est.dthreshold, cache_ref)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k], err_msg=f"gradient of {k} is not reproducible")
        np.testing.assert_allclose(g1[k], g_ref[k], rtol=1e-4, atol=1e-4 * np.abs(g_ref[k]).max(),
                                   err_msg=f"gradient of {k}: the plan and the per-op path disagree")
    print("Forward matches the reference network; gradients are reproducible and match the per-op path. "
          "Starting benchmarks.\n")
    if args.profile:
        return profile_layers(model, images[:args.profile_samples], args.align_lr_scale != 0, args.steps)

    peak = gemm_peak(args.threads)
    phases = {"data": [], "forward": [], "loss": [], "backward": [], "update": [], "step": []}
    with limit(args.threads):
        for step in range(args.steps + 2):                     # the first two are warm-up
            rng = np.random.default_rng([0, step])
            t = [time.perf_counter()]
            images, labels = draw(rng)
            t.append(time.perf_counter())
            sig, cache = model.forward(images, train=True)
            t.append(time.perf_counter())
            est = signature_gradients(sig, labels, model.threshold, args.estimator, rng)
            t.append(time.perf_counter())
            grads = model.backward(est.dsig, est.dthreshold, cache)
            t.append(time.perf_counter())
            opt.step(grads)
            t.append(time.perf_counter())
            if step >= 2:
                for name, a, b in zip(("data", "forward", "loss", "backward", "update"), t, t[1:]):
                    phases[name].append(b - a)
                phases["step"].append(t[-1] - t[0])

        per_op = []                                            # the per-op path: forward + backward
        for step in range(2 if args.steps < 5 else 3):
            t0 = time.perf_counter()
            sig, cache = model.forward(images, train=True, per_op=True)
            model.backward(est.dsig, est.dthreshold, cache)
            per_op.append(time.perf_counter() - t0)
        workspace = model.plan.workspace(len(images), train=True).nbytes

    med = {k: float(np.median(v)) for k, v in phases.items()}
    per_op_compute = float(np.median(per_op))
    macs = sum(r["macs"] for r in layer_rows())
    required = required_macs(model)
    compute = med["forward"] + med["backward"]
    gflops_step = 3 * 2 * macs * 256 / med["step"] / 1e9
    gflops_compute = 3 * 2 * macs * 256 / compute / 1e9
    print(f"float32 GEMM peak, {args.threads} threads: {peak:.1f} GFLOP/s")
    print(f"k = 256 step ({args.estimator}), {args.threads} threads: median {med['step']:.3f} s -> "
          f"{256 / med['step']:.0f} images/s")
    print(f"{'phase':10s} {'s':>7s} {'share':>6s}")
    for name in ("data", "forward", "loss", "backward", "update"):
        print(f"{name:10s} {med[name]:7.3f} {100 * med[name] / med['step']:5.1f}%")
    print(f"\nWhole step: {gflops_step:.1f} GFLOP/s = {100 * gflops_step / peak:.1f}% of the {args.threads}-thread "
          f"peak (target >= {100 * TARGET:.0f}%); forward+backward alone: {gflops_compute:.1f} GFLOP/s = "
          f"{100 * gflops_compute / peak:.1f}%")
    print(f"  counting only the products this step needs ({required / macs:.2f} x the forward's multiply-adds, "
          f"not 3 x: {'no alignment-net backward, ' if not model.trains_alignment() else ''}no input gradient "
          f"of the first trained layer): {100 * 2 * required * 256 / compute / 1e9 / peak:.1f}% of the peak")
    print(f"Per-op path, forward + backward: {per_op_compute:.3f} s = "
          f"{100 * 3 * 2 * macs * 256 / per_op_compute / 1e9 / peak:.1f}% of the peak (plan speed-up "
          f"{per_op_compute / compute:.2f}x)")
    print(f"Plan workspace for the k = 256 step: {workspace} bytes")
    if args.json:
        from benchmarks.common import write_json
        write_json(args.json, dict(machine=machine_line(), estimator=args.estimator, threads=args.threads,
                                   steps=args.steps, median_seconds=med, images_per_s=256 / med["step"],
                                   gemm_peak=peak, step_ratio=gflops_step / peak,
                                   compute_ratio=gflops_compute / peak,
                                   required_macs_per_image=required,
                                   compute_ratio_required=2 * required * 256 / compute / 1e9 / peak,
                                   align_lr_scale=args.align_lr_scale,
                                   per_op_forward_backward_seconds=per_op_compute, workspace_bytes=workspace,
                                   date=time.strftime("%Y-%m-%d")))
    return 0


def profile_layers(model, images, want_align, reps):
    """Print every layer's forward and backward seconds per sample on one thread, and its fraction of the
    1-thread GEMM peak; returns 0.

    Each layer runs over all of ``images`` in one compiled call (``kernels.plan.layer_forward_samples``,
    ``layer_backward_samples``) on the activations of a training forward, median of ``reps`` calls; the
    plan's chunked layers (marked *) run in chunks as in the plan.
    Work counted: forward 2 x multiply-adds; backward 2 x (dW) + 2 x (dx, when the input's gradient is needed).
    """
    from kernels import plan as kplan
    plan, t = model.plan, model.plan.tables
    n = len(images)
    peak = gemm_peak(1)
    with limit(1):
        plan.forward(images, train=True)
        ws = plan.workspace(n, train=True)
        weights, biases = plan._weight_lists()
        rng = np.random.default_rng(0)
        douts = rng.standard_normal((n, t.delta_size)).astype(model.dtype)
        dxs = np.zeros_like(douts)
        macs = {r["name"]: r["macs"] for r in layer_rows()}

        def per_sample(fn):
            return median_time(fn, min_reps=max(3, reps), min_seconds=0.0) / n

        layers = list(model.config.alignment) + list(model.config.signature[:len(t.sig)])
        progs = [t.align[i:i + 1] for i in range(len(t.align))] + [t.sig[i:i + 1] for i in range(len(t.sig))]
        first_sig, split, B = len(t.align), int(t.layout[kplan.L_SPLIT]), int(t.layout[kplan.L_B])
        chunked = [first_sig + split <= i for i in range(len(progs))]
        forward = {layer.name: per_sample(lambda p=prog, c=chunk: kplan.layer_forward_samples(
            p, weights, biases, ws.acts, ws.argmax, B if c else 0, ws.cols[0], ws.prod[0]))
            for layer, prog, chunk in zip(layers, progs, chunked)}
        backward, dx_wanted = {}, {}
        for i in range(len(progs) - 1, -1 if want_align else first_sig - 1, -1):
            want_dx = i != 0 and (i != first_sig or want_align)
            dx_wanted[layers[i].name] = want_dx
            backward[layers[i].name] = per_sample(lambda p=progs[i], w=want_dx, c=chunked[i]: kplan.layer_backward_samples(
                p, weights, ws.acts, ws.argmax, douts, dxs, B if c else 0, ws.cols[0], ws.dcols[0], ws.prod[0],
                ws.dw[0], ws.grad_parts[0], w))
            douts, dxs = dxs, douts
        N = len(ws.theta)
        tail_f = per_sample(lambda: kplan.tail_forward(t.tail, weights, biases, ws.tail, N, 0, N))
        tail_b = per_sample(lambda: kplan.tail_backward(t.tail, weights, ws.tail, ws.dtail, N, ws.dw[0], ws.grad))
    print(f"float32 GEMM peak, 1 thread: {peak:.1f} GFLOP/s. Per sample, {n} samples, median of {max(3, reps)}:")
    print(f"{'layer':14s} {'fwd us':>8s} {'fwd %pk':>7s} {'bwd us':>8s} {'bwd %pk':>7s}")
    total_f = total_b = 0.0
    for layer, chunk in zip(layers, chunked):
        name, m = layer.name, macs.get(layer.name, 0)
        f, b = forward[name], backward.get(name)
        total_f += f
        total_b += b or 0.0
        pf = f"{100 * 2 * m / f / 1e9 / peak:6.1f}%" if m else f"{'-':>7s}"
        pb = (f"{100 * 2 * m * (2 if dx_wanted[name] else 1) / b / 1e9 / peak:6.1f}%" if m else f"{'-':>7s}") \
            if b is not None else f"{'-':>7s}"
        star = "*" if chunk else " "
        print(f"{name + star:14s} {1e6 * f:8.1f} {pf} " + (f"{1e6 * b:8.1f}" if b is not None else f"{'skipped':>8s}")
              + f" {pb}")
    print(f"{'affine tail':14s} {1e6 * tail_f:8.1f} {'':7s} {1e6 * tail_b:8.1f}")
    print(f"{'(sum)':14s} {1e6 * (total_f + tail_f):8.1f} {'':7s} {1e6 * (total_b + tail_b):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.train_step"))
