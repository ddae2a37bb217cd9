"""Train the framing net (``npface.framing_net``): from a face cut a little off to the LFW training crop.

    python -m npface.pretrain_framing --lfw ../shared/lfw --out npface/pretrained/framing-net.npz

Data
----
The people of ``peopleDevTrain.txt`` only, split by
``split_identities(identities, 0.1, seed=0)`` as the trainer splits them;
the held-out people report. Each LFW frame is cut by ``CONTEXT_CROP``:
``LFW_CROP``'s square with 27 source pixels more on every side (198 px of
the 250 px frame), resampled at the training crop's own scale to 154 x 154.
The training crop is its centre, ``T0`` = 112/154 of it in normalised
coordinates; the margin lets a shifted or shrunk cut see the picture around
the face, as a detector's square does, instead of a black border.

Batches
-------
Each image is mirrored with probability 1/2 (the training crop being centred
in the frame, the mirrored frame's training crop is the mirrored crop) and
cut through T0 o J, J a random similarity (``jitter_thetas``: by default
+-5 degrees, +-12 % scale, +-0.1 shift, i.e. +-5.6 px; wider than the
calibrated detector squares' errors). The cut shows the training crop
through J, so the warp that takes it back is J^-1: that is the target.

Loss and training
-----------------
``warp_loss_forward`` (``npface.pretrain_alignment``) on ``GRID``, a 5 x 5
grid of points over the face (24 to 88 px of the 112 px crop): the mean
squared displacement, in pixels of the crop, of those points between where
the predicted warp and the target put them. Training is
``train_alignment``: SGD with momentum, the gradient clipped to ``--clip``,
the learning rate divided by 10 at 70 % and 90 % of the run. The net
starts fresh (seeded, the identity warp) or, with ``--init MODEL``, from
that model's alignment net, which already responds to where a face sits;
the shipped net started from the shipped model's (docs/PHOTOS.md).

Report
------
The root-mean-square displacement of the grid (px) on the held-out people's
images, each cut once through a fixed jitter (seed ``EVAL_SEED``), with the
net and without it (the identity warp, i.e. the cut as it is).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from npface.cli import output_file, run_main
from npface.data.cache import atomic_write_text
from npface.data.folders import CropBox
from npface.framing_net import FramingNet
from npface.pretrain_alignment import (DEFAULT_BATCH, DEFAULT_CLIP, DEFAULT_LR, DEFAULT_MOMENTUM, LR_DROPS, _arg,
                                       lfw_paths, train_alignment, warp_loss_forward)
from npface.threads import check_threads, limit

DEFAULT_OUT = "runs/framing-net.npz"
DEFAULT_STEPS = 3000
CONTEXT_CROP = CropBox(left=26, top=46, size=198, frame=250, out=154)    # LFW_CROP (53, 73, 144) plus 27 px a side
T0 = np.array([[112 / 154, 0.0, 0.0], [0.0, 112 / 154, 0.0]])            # the training crop inside the context cut
JITTER = {"max_rotation": 5.0, "max_scale": 0.12, "max_shift": 0.10}
_g = np.linspace(24.0, 88.0, 5)
GRID = np.stack(np.meshgrid(_g, _g), -1).reshape(-1, 2)                   # (25, 2) crop pixels the loss measures
EVAL_SEED = 12345


def jittered_cuts(context, rng, jitter=None, flip=True):
    """Cuts of context images (B, 154, 154, 3) uint8 through T0 o J -> (cuts (B, 112, 112, 3) uint8, J^-1 (B, 2, 3)).

    Each image is first mirrored with probability 1/2 when ``flip``; J are
    ``jitter_thetas(B, rng, **jitter)`` (``JITTER`` when None).
    """
    from npface.data.landmarks import compose_affine, invert_affine
    from npface.data.sampler import jitter_thetas, warp_images
    images = np.array(context, dtype=np.uint8)                                # a copy: mirrored in place
    if flip:
        mirror = rng.random(len(images)) < 0.5
        images[mirror] = images[mirror][:, :, ::-1]
    J = jitter_thetas(len(images), rng, **(JITTER if jitter is None else jitter))     # (B, 2, 3)
    return warp_images(images, compose_affine(T0, J), 112, 112), invert_affine(J)


def heldout_error(net, context, jitter=None, batch_size=256):
    """RMS grid displacement (px) on context images (N, 154, 154, 3), each cut through one fixed jitter.

    Returns {"net": ..., "identity": ..., "images": N}: with the net's warps
    and with none (the cut as it is).
    """
    rng = np.random.default_rng(EVAL_SEED)
    per_net, per_id = [], []
    for start in range(0, len(context), batch_size):
        cuts, target = jittered_cuts(context[start:start + batch_size], rng, jitter, flip=False)
        per_net.append(warp_loss_forward(net.predict(cuts), target, GRID, 112)[1].per_image)
        identity = np.broadcast_to(np.eye(2, 3), target.shape).copy()
        per_id.append(warp_loss_forward(identity, target, GRID, 112)[1].per_image)
    return {"net": float(np.sqrt(np.concatenate(per_net).mean())),
            "identity": float(np.sqrt(np.concatenate(per_id).mean())), "images": int(len(context))}


def pretrain_framing(context, train_idx, val_idx, steps=DEFAULT_STEPS, batch_size=DEFAULT_BATCH, lr=DEFAULT_LR,
                     momentum=DEFAULT_MOMENTUM, clip_norm=DEFAULT_CLIP, seed=0, threads=2, jitter=None,
                     log_every=250, monitor_images=512, log=print, init=None):
    """Train a framing net on context images (N, 154, 154, 3) ``[train_idx]``.

    It starts from ``init``, a ``FaceModel`` whose alignment net it copies
    (that net already responds to where a face sits), or, when None, from
    ``FramingNet(seed=seed)``. Returns (net, metrics); progress lines carry
    the held-out error of the first ``monitor_images`` of ``val_idx``, the
    metrics that of all of them.
    """
    threads = check_threads(threads)
    net = FramingNet(seed=seed) if init is None else FramingNet.from_model(init)
    train = np.asarray(context[train_idx])                                    # (Nt, 154, 154, 3) in memory
    val = np.asarray(context[val_idx])
    jitter = dict(JITTER if jitter is None else jitter)

    def draw(idx, rng):
        return jittered_cuts(train[idx], rng, jitter)

    def monitor(m):
        return {"val_rms_px": heldout_error(m, val[:monitor_images], jitter)["net"]}

    with limit(threads):
        t0 = time.perf_counter()
        history = train_alignment(net, train, None, GRID, steps, batch_size, lr, momentum, 0.0, LR_DROPS, seed,
                                  clip_norm=clip_norm, log_every=log_every, monitor=monitor, log=log, draw=draw)
        seconds = time.perf_counter() - t0
        error = heldout_error(net, val, jitter)
    metrics = {"settings": {"init": "fresh (seed)" if init is None else init.provenance.get("kind", "a model file"),
                            "steps": steps, "batch_size": batch_size, "lr": lr, "lr_drops": list(LR_DROPS),
                            "momentum": momentum, "clip_norm": clip_norm, "seed": seed, "threads": threads,
                            "jitter": jitter, "grid_px": [float(_g[0]), float(_g[-1]), len(_g)],
                            "context_crop": CONTEXT_CROP.describe()},
               "heldout_rms_px": error, "train_seconds": seconds, "history": history}
    net.provenance = {"kind": "framing net (npface.pretrain_framing)",
                      **{k: v for k, v in metrics.items() if k != "history"}}
    return net, metrics


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m npface.pretrain_framing",
        description="Train the framing net: from a face cut by a square that is a little off (shifted, scaled, "
                    "rotated) to the LFW training crop, as --frame detect uses it (peopleDevTrain people only; "
                    "held-out people report the error). Writes a framing net file.")
    parser.add_argument("--lfw", required=True, metavar="DIR", help="the LFW folder: holds lfw/<person>/<image> and "
                                                                    "peopleDevTrain.txt")
    parser.add_argument("--people", metavar="FILE", default=None,
                        help="people list file (LFW people format); default DIR/peopleDevTrain.txt")
    parser.add_argument("--steps", type=_arg(int, lambda v: v >= 1, "an integer >= 1"), default=DEFAULT_STEPS,
                        help=f"SGD steps (default {DEFAULT_STEPS})")
    parser.add_argument("--batch", type=_arg(int, lambda v: v >= 1, "an integer >= 1"), default=DEFAULT_BATCH,
                        help=f"images per step (default {DEFAULT_BATCH})")
    parser.add_argument("--lr", type=_arg(float, lambda v: 0 < v < np.inf, "a number > 0"), default=DEFAULT_LR,
                        help=f"base learning rate (default {DEFAULT_LR:g}); divided by 10 at 70%% and 90%% of the run")
    parser.add_argument("--clip", type=_arg(float, lambda v: v >= 0, "a number >= 0"), default=DEFAULT_CLIP,
                        help=f"rescale the gradient to this length when longer (default {DEFAULT_CLIP:g}; 0: off)")
    parser.add_argument("--init", metavar="MODEL", default=None,
                        help="start from this model file's alignment net (e.g. npface/pretrained/npface-lfw.npz); "
                             "default: a fresh net, seeded by --seed")
    parser.add_argument("--seed", type=_arg(int, lambda v: v >= 0, "an integer >= 0"), default=0,
                        help="seeds the initial parameters and every step's batch and jitter (default 0)")
    parser.add_argument("--threads", type=_arg(int, lambda v: v >= 1, "an integer >= 1"), default=2,
                        help="Numba threads (default 2)")
    parser.add_argument("--out", type=output_file, metavar="PATH", default=DEFAULT_OUT,
                        help=f"where to write the framing net (.npz; default {DEFAULT_OUT})")
    parser.add_argument("--json", type=output_file, metavar="PATH", default=None,
                        help="also write the metrics (held-out error, settings, history) as JSON to PATH")
    args = parser.parse_args(argv)
    prog = parser.prog
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    try:
        threads = check_threads(args.threads)
        init = None
        if args.init is not None:
            from npface.model import load
            try:
                init = load(args.init)
            except (FileNotFoundError, ValueError) as e:
                raise ValueError(f"--init: {e}") from None
        context, train_idx, val_idx, description = prepare_context(args.lfw, args.people)
        if args.batch > len(train_idx):
            raise ValueError(f"--batch {args.batch} is larger than the {len(train_idx)} training images")
    except (FileNotFoundError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    log(f"training on {len(train_idx)} images, {len(val_idx)} held out; {args.steps} steps of {args.batch}")
    try:
        net, metrics = pretrain_framing(context, train_idx, val_idx, args.steps, args.batch, args.lr,
                                        DEFAULT_MOMENTUM, args.clip or None, args.seed, threads, log=log, init=init)
    except FloatingPointError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    metrics["data"] = net.provenance["data"] = description
    metrics["command"] = net.provenance["command"] = "python -m npface.pretrain_framing " + " ".join(
        sys.argv[1:] if argv is None else argv)
    net.save(args.out)
    e = metrics["heldout_rms_px"]
    log(f"held-out RMS displacement ({e['images']} images): {e['net']:.3f} px with the net, "
        f"{e['identity']:.3f} px without; trained in {metrics['train_seconds']:.0f} s; written to {args.out}")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(metrics, indent=1) + "\n")
    return 0


def prepare_context(lfw_dir, people=None, progress=True):
    """(context images (N, 154, 154, 3) uint8, train_idx, val_idx, description) of LFW's peopleDevTrain people."""
    from npface.data.folders import load_folder, split_identities
    root, people = lfw_paths(lfw_dir, people)
    ds = load_folder(root / "lfw", people, crop=CONTEXT_CROP, progress=progress)
    train_names, val_names = split_identities(ds.identities, 0.1, seed=0)
    train_idx, val_idx = ds.indices_of(train_names), ds.indices_of(val_names)
    description = {"lfw": str(root), "people": str(people), "split": "split_identities(val_fraction=0.1, seed=0)",
                   "train_people": len(train_names), "train_images": int(len(train_idx)),
                   "val_people": len(val_names), "val_images": int(len(val_idx))}
    return ds.images, train_idx, val_idx, description


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m npface.pretrain_framing"))
