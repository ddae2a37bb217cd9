"""A guided tour of one training step, stage by stage, every stage checked.

    python -m npface.tour                     # P x K = 4 x 4 synthetic faces
    python -m npface.tour --lfw ../shared/lfw # the same walk with real LFW faces
    python -m npface.tour --small             # 2 x 2 faces and a short race (what the tests run)

One batch of k = P x K faces goes through the shipped model's parameters
(``npface.load()``, in float64 so that central differences are exact to ~1e-9,
as the paper's network: one alignment round, whatever ``align_rounds`` the
shipped file runs at test time) exactly as ``npface.training.run`` takes a
step, but one stage at a time, printing the shape at every boundary:

    images (k, 112, 112, 3) uint8 --preprocess--> x (k, 3, 112, 112)
    x --resize_area--> small (k, 3, 50, 50) --alignment net--> pose (k, 4)
    pose --pose_to_theta--> theta (k, 2, 3);  x --warp--> aligned (k, 3, 112, 112)
    aligned --signature net--> sig (k, 128) --pair hinge--> loss, dsig (k, 128), dL/dtheta
    model.backward --> grads;  SGD update --> a lower loss on the same batch

Each stage checks what it shows: a forward against its slow reference or a
brute-force sum, a backward against central differences along a random
direction (the directional check: one random direction v, compare <grad, v>
with (f(z + h v) - f(z - h v)) / 2h, the step h shrunk until no kink lies
within it; see ``directional``). The tour ends with Multibatch against
random pairs on toy identities (``npface.demo``'s race). It exits with status
1 and names the failed checks if any check fails; ``docs/tour.md`` is the same
walk in prose.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from npface import ops
from npface.cli import run_main
from npface.faces import USER_ERRORS, print_error
from npface.threads import check_threads, limit, max_threads
from npface.training import TrainConfig

PROG = "python -m npface.tour"
TRAIN = TrainConfig()     # the trainer's defaults: the tour's step is the trainer's first step
STEPS = (1e-6, 1e-7, 1e-8, 1e-9, 1e-10)   # central-difference steps tried, largest first (float64)
MAX_HALVINGS = 20    # of the learning rate, looking for a step that lowers the loss
SETTINGS = {"full": {"identities": 4, "images": 4, "race_steps": 800},     # what flags left unset default to
            "small": {"identities": 2, "images": 2, "race_steps": 100}}
RTOL = 1e-5          # a correct gradient agrees to ~1e-8 here; a wrong one is off by O(1)


class Checks:
    """Records every check; prints each as OK / FAILED with the numbers behind it."""

    def __init__(self):
        self.failed = []
        self.count = 0

    def __call__(self, name, ok, detail):
        self.count += 1
        print(f"    check {name}: {detail}  {'OK' if ok else 'FAILED'}", flush=True)
        if not ok:
            self.failed.append(name)
        return ok

    def close_to(self, name, analytic, numeric, rtol=RTOL):
        """Compare two scalars: |a - n| <= rtol * max(|a|, |n|, 1e-12). ``numeric`` may be (slope, step)."""
        numeric, how = numeric if isinstance(numeric, tuple) else (numeric, None)
        err = abs(analytic - numeric) / max(abs(analytic), abs(numeric), 1e-12)
        step = f" (step {how:.0e})" if how else ""
        return self(name, err <= rtol, f"analytic {analytic:.10g}, numeric {numeric:.10g}{step}, "
                                       f"rel. error {err:.1e}")


def directional(f, point, direction):
    """The slope of a scalar function f (of a dict of arrays) at ``point`` along ``direction``, by central
    differences; returns (slope, step).

    The function is piecewise smooth (ReLU, max-pool and the warp's cells have kinks), and a difference
    across a kink measures neither side. Fewer kinks lie within a smaller step, so the step shrinks,
    1e-6, 1e-7, ... 1e-10, until two successive central differences agree to RTOL: then no kink that
    matters lies within the step (on a smooth piece they agree to O(step^2)).
    """
    previous = None
    for step in STEPS:
        plus = f({k: point[k] + step * direction[k] for k in direction})
        minus = f({k: point[k] - step * direction[k] for k in direction})
        slope = (plus - minus) / (2 * step)
        if previous is not None and abs(slope - previous) <= RTOL * max(abs(slope), abs(previous), 1e-12):
            break
        previous = slope
    return slope, step


def dot(grads, direction):
    """<grads, direction> over the names in ``direction``."""
    return float(sum(np.sum(grads[k] * direction[k]) for k in direction))


def random_direction(rng, arrays):
    return {k: rng.standard_normal(np.shape(v)) for k, v in arrays.items()}


def banner(number, title, where):
    print(f"\n[{number}] {title}    ({where})", flush=True)


# --------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------

def synthetic_batch(P, K, seed):
    """P procedural identities x K images each: images (P*K, 112, 112, 3) uint8, labels (P*K,)."""
    from npface.data.synthetic import SyntheticFaces
    faces = SyntheticFaces(seed=seed, n_identities=1000)
    return faces.sample_batch(P, K, np.random.default_rng(seed))


def lfw_batch(root, P, K, seed):
    """P random LFW people with at least K images, K images each, cropped as in training."""
    from npface.data.folders import scan_folder
    from npface.faces import read_face
    root = Path(root)
    index = scan_folder(root / "lfw" if (root / "lfw").is_dir() else root)
    counts = np.bincount(index.labels)
    eligible = np.flatnonzero(counts >= K)
    if len(eligible) < P:
        raise ValueError(f"--lfw: {root} has only {len(eligible)} people with at least {K} images; need {P}")
    rng = np.random.default_rng(seed)
    people = rng.choice(eligible, size=P, replace=False)
    rows = np.concatenate([rng.choice(np.flatnonzero(index.labels == p), size=K, replace=False) for p in people])
    images = np.stack([read_face(index.root / index.files[r], "lfw") for r in rows])
    return images, index.labels[rows]


def paper_network(model):
    """The model as the paper's network walks it: one alignment round (``ModelConfig.align_rounds``; the extra
    rounds of a shipped model are a test-time choice, through which no gradient flows)."""
    return model.with_align_rounds(1) if model.config.align_rounds != 1 else model


def choose_batch(args, tries=10):
    """The first batch (seeds seed, seed + 1, ...) on which the shipped model's loss is not 0.

    A batch the model already separates (every pair beyond its margin) has no gradient, and a tour of it
    would check nothing.
    """
    import npface
    model = paper_network(npface.load())
    for seed in range(args.seed, args.seed + tries):
        if args.lfw:
            images, labels = lfw_batch(args.lfw, args.identities, args.images, seed)
        else:
            images, labels = synthetic_batch(args.identities, args.images, seed)
        if ops.pair_hinge_forward(model.embed(images), labels, model.threshold)[0] > 0:
            return images, labels
        print(f"(the shipped model already separates the batch of seed {seed}: loss 0, no gradient; "
              f"drawing another)")
    raise ValueError(f"the shipped model separates all {tries} batches tried (loss 0): nothing to tour; "
                     f"try larger --identities / --images")


# --------------------------------------------------------------------------
# The stages
# --------------------------------------------------------------------------

def run_layers(layers, x, params):
    """Forward through ``layers`` one at a time, printing each boundary's shape; returns (out, caches)."""
    from npface.model import forward_layers
    caches = []
    for layer in layers:
        x, cache = forward_layers((layer,), x, params, keep=True)
        caches += cache
        print(f"      {layer.name:<12s} -> {x.shape}")
    return x, caches


def tied_windows(pool_cache, caches):
    """(windows whose values are all 0, windows with two or more equal positive maxima) of max-pool pool1."""
    names = [layer.name for layer, _ in caches]
    before = caches[names.index("pool1") - 1][1]            # the conv whose (ReLU'd) output the pool read
    x = before.out                                            # (N, C, H, W)
    s, st = pool_cache.size, pool_cache.stride
    N, C, Ho, Wo = pool_cache.argmax.shape
    windows = np.stack([x[:, :, p:p + st * Ho:st, q:q + st * Wo:st] for p in range(s) for q in range(s)])
    top = windows.max(axis=0)
    tied = (windows == top).sum(axis=0) > 1
    return int((top == 0).sum()), int((tied & (top > 0)).sum())


def subnet_check(check, name, layers, x_in, params, caches, out, rng, input_name=None):
    """Directional check of a sub-network: d sum(dout * out) along random directions in its parameters
    (and its input, if ``input_name``) against ``backward_layers``."""
    from npface.model import backward_layers, forward_layers
    dout = rng.standard_normal(out.shape)
    grads = {}
    dx = backward_layers(dout, caches, grads)
    point = {k: params[k] for k in grads}
    if input_name:
        point[input_name], grads[input_name] = x_in, dx
    v = random_direction(rng, point)

    def f(p):
        merged = {**params, **p}
        return float(np.sum(dout * forward_layers(layers, merged.get(input_name, x_in), merged, keep=False)[0]))

    what = "parameters" + (f" and {input_name}" if input_name else "")
    return check.close_to(f"{name} backward ({what})", dot(grads, v), directional(f, point, v))


def brute_force_loss(sig, labels, threshold):
    """Eq. 2 summed pair by pair over every ordered pair i != j, balanced: half the mean over same
    pairs plus half the mean over not-same pairs (the kernel's default)."""
    same, diff = [], []
    k = len(labels)
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            d = float(np.sum((sig[i] - sig[j]) ** 2))
            y = 1.0 if labels[i] == labels[j] else -1.0
            (same if y > 0 else diff).append(max(0.0, 1.0 - y * (threshold - d)))
    if not same or not diff:
        return float(np.mean(same or diff))
    return 0.5 * float(np.mean(same)) + 0.5 * float(np.mean(diff))


def tour_step(images, labels, check, seed, lr):
    """One training step of the shipped model on (images, labels), stage by stage."""
    import npface
    from kernels.resize import resize_forward_reference
    from npface.model import dtheta_to_dpose, pose_to_theta
    from npface.optim import SGD

    rng = np.random.default_rng([seed, 1])
    model = paper_network(npface.load()).astype(np.float64)
    params, cfg = model.params, model.config
    k = len(labels)

    banner(1, "the batch", "npface/data/synthetic.py SyntheticFaces.sample_batch, or npface/faces.py read_face")
    print(f"    images {images.shape} {images.dtype}, labels {labels.shape}: {len(np.unique(labels))} identities "
          f"x {k // len(np.unique(labels))} images")
    check("batch", images.dtype == np.uint8 and images.shape == (k, 112, 112, 3),
          f"k = {k} RGB images of 112 x 112, uint8")

    banner(2, "preprocess: uint8 pixels to [-1, 1], NHWC to NCHW", "npface/model.py FaceModel.preprocess")
    x = model.preprocess(images)                                            # (k, 3, 112, 112)
    print(f"    x {x.shape} {x.dtype}, values in [{x.min():.2f}, {x.max():.2f}]")
    expected = (images.astype(np.float64).transpose(0, 3, 1, 2) / 255.0 - 0.5) / 0.5
    err = float(np.abs(x - expected).max())
    check("preprocess", err < 1e-12, f"max |x - (v / 255 - 0.5) / 0.5| = {err:.1e}")

    A, S = cfg.align_input_size, cfg.input_size
    banner(3, f"area resize to {A} x {A} (forward only)", "npface/ops.py resize_area, kernels/resize.py")
    small = ops.resize_area(x, A, A)                                        # (k, 3, 50, 50)
    ref = resize_forward_reference(x, A, A)
    err = float(np.abs(small - ref).max())
    print(f"    small {small.shape}")
    check("resize vs reference", err < 1e-12, f"max |kernel - R_h x R_w^T| = {err:.1e}")

    banner(4, "the alignment net", "npface/architecture.py ALIGNMENT_NET, npface/model.py forward_layers")
    pose, align_caches = run_layers(cfg.alignment, small, params)             # (k, 4)
    print(f"    pose (a, b, tx, ty) of the first face: {np.round(pose[0], 3)}")
    subnet_check(check, "alignment net", cfg.alignment, small, params, align_caches, pose, rng)

    banner(5, "pose -> theta, the similarity transform", "npface/model.py pose_to_theta, dtheta_to_dpose")
    theta = pose_to_theta(pose)                                             # (k, 2, 3)
    print(f"    theta {theta.shape}; first face [[a, -b, tx], [b, a, ty]] =\n{np.round(theta[0], 3)}")
    dtheta = rng.standard_normal(theta.shape)
    v = {"pose": rng.standard_normal(pose.shape)}
    numeric = directional(lambda p: float(np.sum(dtheta * pose_to_theta(p["pose"]))), {"pose": pose}, v)
    check.close_to("pose -> theta backward", dot({"pose": dtheta_to_dpose(dtheta)}, v), numeric)

    banner(6, "the bilinear warp", "npface/ops.py warp_forward / warp_backward, kernels/warp.py")
    aligned, warp_cache = ops.warp_forward(x, theta, S, S)                  # (k, 3, 112, 112)
    print(f"    aligned {aligned.shape}")
    dout = rng.standard_normal(aligned.shape)
    dimg, dth = ops.warp_backward(dout, warp_cache)
    v = {"theta": rng.standard_normal(theta.shape), "img": rng.standard_normal(x.shape)}
    numeric = directional(lambda p: float(np.sum(dout * ops.warp_forward(p["img"], p["theta"], S, S)[0])),
                          {"theta": theta, "img": x}, v)
    check.close_to("warp backward (theta and image)", dot({"theta": dth, "img": dimg}, v), numeric)

    banner(7, "the signature net", "npface/architecture.py SIGNATURE_NET, npface/model.py forward_layers")
    sig, sig_caches = run_layers(cfg.signature, aligned, params)            # (k, 128)
    pool = next(c for layer, c in sig_caches if layer.name == "pool1")
    zeros, positive = tied_windows(pool, sig_caches)
    print(f"    pool1: of {pool.argmax.size} windows, {zeros} are all 0 after the ReLU and {positive} hold a tied "
          f"positive maximum\n    (flat regions, e.g. the zeros the warp reads outside the image); the tie rule "
          f"sends a tied window's gradient to its first maximum")
    subnet_check(check, "signature net", cfg.signature, aligned, params, sig_caches, sig, rng)

    banner(8, f"the loss over all {k * k - k} ordered pairs", "npface/ops.py pair_hinge_forward, "
           "kernels/pair_hinge.py")
    loss, loss_cache = ops.pair_hinge_forward(sig, labels, model.threshold)
    brute = brute_force_loss(sig, labels, model.threshold)
    print(f"    theta = {model.threshold:.4f}; loss = {loss:.6f}")
    check.close_to("loss vs brute force over the pairs", loss, brute, rtol=1e-10)
    dsig, dthreshold = ops.pair_hinge_backward(loss_cache)                  # (k, 128), scalar
    print(f"    dsig {dsig.shape}, dL/dtheta = {dthreshold:.4f}")
    v = {"sig": rng.standard_normal(sig.shape), "theta": rng.standard_normal()}
    numeric = directional(lambda p: ops.pair_hinge_forward(p["sig"], labels, float(p["theta"]))[0],
                          {"sig": sig, "theta": model.threshold}, v)
    check.close_to("loss backward (signatures and theta)", dot({"sig": dsig, "theta": dthreshold}, v), numeric)

    banner(9, "the backward pass, end to end", "npface/model.py FaceModel.backward")
    _, cache = model.forward(images, train=True)
    grads = model.backward(dsig, dthreshold, cache)
    print(f"    {len(grads)} gradients, e.g. nin1.conv.weight {grads['nin1.conv.weight'].shape}, "
          f"align.fc7.weight {grads['align.fc7.weight'].shape}, threshold {grads['threshold'].shape}")
    v = random_direction(rng, params)

    def loss_at(p):
        s = type(model)(cfg, params=p).forward(images)[0]
        return ops.pair_hinge_forward(s, labels, float(p["threshold"]))[0]

    check.close_to("whole step: loss along a random direction in every parameter", dot(grads, v),
                   directional(loss_at, params, v))

    banner(10, f"the update: the trainer's first SGD step (alignment net at x{TRAIN.align_lr_scale} the rate)",
           "npface/optim.py SGD.step, npface/training.py run")
    # momentum starts at zero, so the first step is plain SGD: w <- w - lr * scale * g. A step of a given size
    # need not lower this batch's loss; a small enough step along -g must (that is what a gradient is), so
    # the rate is halved until the loss falls. A wrong gradient never gets there.
    for halvings in range(MAX_HALVINGS + 1):
        rate = lr / 2 ** halvings
        stepped = {name: np.copy(value) for name, value in params.items()}
        optimiser = SGD(stepped, rate, TRAIN.momentum, TRAIN.weight_decay, {"align.": TRAIN.align_lr_scale})
        predicted = -rate * float(sum(optimiser.scale[n] * np.sum(g * g) for n, g in grads.items()))
        optimiser.step(grads)
        after = loss_at(stepped)
        print(f"    lr {rate:.3g}: loss {loss:.6f} -> {after:.6f}, change {after - loss:+.6f} "
              f"(first-order prediction -lr sum scale ||g||^2 = {predicted:+.6f})")
        if after < loss:
            break
    check("update lowers the loss", after < loss, f"at lr {rate:.3g} ({halvings} halvings of {lr})")
    params.update(stepped)
    return model


def race(steps, seed, check):
    """npface.demo's Multibatch vs random pairs on toy identities; Multibatch must end ahead at the same lr."""
    from npface.demo import RUNS, figure4_in_miniature
    banner(11, "the race: Multibatch against random pairs", "npface/demo.py figure4_in_miniature")
    t = time.perf_counter()
    with limit(1):      # thousands of tiny kernels: on a busy machine a thread pool only adds waiting
        final = figure4_in_miniature(steps, seed, tag="   ")
    (mb_name, mb_lr), rival = RUNS[0], next(f"{e} lr={lr}" for e, lr in RUNS[1:] if lr == RUNS[0][1])
    mb = final[f"{mb_name} lr={mb_lr}"]
    check("race", mb >= final[rival], f"after {steps} steps ({time.perf_counter() - t:.1f} s) multibatch "
          f"{mb:.3f} vs {rival} {final[rival]:.3f}")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A guided tour of one training step: a batch of faces through the shipped model, stage by "
                    "stage, with every stage's forward and backward checked, then Multibatch against random pairs "
                    "on toy identities. Exits with status 1 if a check fails.")
    parser.add_argument("--lfw", metavar="DIR", help="take real faces from this LFW root (holding lfw/) instead of "
                        "synthetic ones")
    parser.add_argument("--identities", type=int, metavar="P", help="identities in the batch (default: 4; "
                        "2 with --small)")
    parser.add_argument("--images", type=int, metavar="K", help="images per identity (default: 4; 2 with --small)")
    parser.add_argument("--race-steps", type=int, help="SGD steps of the closing race (default: 800; 100 with "
                        "--small)")
    parser.add_argument("--lr", type=float, default=TRAIN.lr, help="learning rate of the tour's one step "
                        "(default: %(default)s, the trainer's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=max_threads(), help="Numba threads (default: all, "
                        "%(default)s)")
    parser.add_argument("--small", "--quick", action="store_true",
                        help="the smallest setting: 2 identities x 2 images and a 100-step race (what the tests run); "
                        "flags given explicitly still apply")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value in SETTINGS["small" if args.small else "full"].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.identities < 2 or args.images < 2:
        parser.error("--identities and --images must be at least 2 (the loss needs same and not-same pairs)")
    if args.race_steps < 1:
        parser.error(f"--race-steps must be at least 1, got {args.race_steps}")
    if not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    try:
        check_threads(args.threads)
    except ValueError as e:
        parser.error(f"--threads: {e}")
    start = time.perf_counter()
    check = Checks()
    try:
        with limit(args.threads):
            images, labels = choose_batch(args)
    except USER_ERRORS as e:
        print_error(PROG, e)
        return 2
    with limit(args.threads):
        tour_step(images, labels, check, args.seed, args.lr)
        race(args.race_steps, args.seed, check)
    took = time.perf_counter() - start
    if check.failed:
        print(f"{PROG}: error: {len(check.failed)} of {check.count} checks failed: {', '.join(check.failed)}",
              file=sys.stderr)
        return 1
    print(f"\nAll {check.count} checks passed ({took:.0f} s).")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
