"""Train the face network with the Multibatch (or the random-pairs) estimator.

    python -m npface.train                                   # synthetic faces, a few minutes on 2 cores
    python -m npface.train --lfw ../shared/lfw --people peopleDevTrain.txt --steps 3000 --out runs/lfw
    python -m npface.train --resume runs/lfw                 # continue after any interruption
    mpiexec -n 4 python -m npface.train --threads 1 ...      # one model on 4 MPI ranks (npface.distributed)

See ``npface.training`` for what the output folder holds and how resuming works.
"""
import argparse
import shlex
import sys
import time
import traceback

from npface import distributed
from npface.cli import HelpFormatter, run_main
from npface.estimators import ESTIMATORS
from npface.training import TrainConfig, TrainingDiverged, TrainingStopped, run

EXIT_DIVERGED = 3       # the exit status when training diverged (what scripts such as benchmarks.convergence test)
EXIT_FAILED = 1         # any other failure of a run on MPI ranks (one rank's error aborts them all)


def _fractions(text):
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions like 0.6,0.9, got {text!r}") from None


def parser():
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m npface.train", formatter_class=HelpFormatter,
        description="Train the Table 2 face network on synthetic faces (default) or folders of identities "
                    "(LFW) with the paper's pairwise hinge loss and a learned threshold.",
        epilog=f"exit status: 0 finished; 2 bad arguments or data; {EXIT_DIVERGED} the training diverged (the loss "
               "or the parameters stopped being finite; the last good checkpoint is kept); 130 or 143 stopped by "
               "Ctrl-C or SIGTERM (after the step and a checkpoint: --resume goes on; at once on a second one); "
               "under MPI, "
               f"{EXIT_FAILED} when a rank failed otherwise (the job is aborted with that rank's message). "
               "Under mpiexec with more than one rank every rank computes a share of each batch and rank 0 "
               "alone writes and prints; the global batch, hence the result, does not depend on the ranks.")
    g = p.add_argument_group("data")
    g.add_argument("--lfw", metavar="DIR", help="train on a folder of identities: LFW's root (holding lfw/) or "
                   "any root/<identity>/<image> folder. Without it: synthetic faces")
    g.add_argument("--people", metavar="FILE", help="list file restricting the identities (LFW's peopleDevTrain.txt "
                   "format), a path or a name inside --lfw")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of people held out for validation")
    g.add_argument("--val-pairs", type=int, default=d.val_pairs, help="held-out validation pairs, half same")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (default: on for --lfw, off for synthetic faces)")
    g.add_argument("--jitter", action=argparse.BooleanOptionalAction, default=None,
                   help="random small rotation/scale/shift (default: on for --lfw, off for synthetic faces)")
    g.add_argument("--jitter-rotation", type=float, default=d.jitter_rotation, metavar="DEG",
                   help="--jitter: rotations uniform in [-DEG, DEG] degrees")
    g.add_argument("--jitter-scale", type=float, default=d.jitter_scale, metavar="S",
                   help="--jitter: scale factors log-uniform in [1/(1+S), 1+S]")
    g.add_argument("--jitter-shift", type=float, default=d.jitter_shift, metavar="T",
                   help="--jitter: shifts uniform in [-T, T] per axis, in units of half the image (0.06 = 3.4 px)")
    g.add_argument("--jitter-context", action="store_true",
                   help="--jitter on --lfw: where a jittered image reaches past the training crop, show the "
                        "picture around it (a crop 21 px wider on every side, decoded and cached once) instead "
                        "of black, which no test image has")
    g.add_argument("--color-jitter", type=float, default=d.color_jitter, metavar="C",
                   help="brightness, contrast and saturation factors uniform in [1-C, 1+C] (0: off)")
    g.add_argument("--blur", type=float, default=d.blur, metavar="P",
                   help="probability of a Gaussian blur (sigma 0.5-1.5 px) per image")
    g.add_argument("--grayscale", type=float, default=d.grayscale, metavar="P", help="probability of grayscale")
    g.add_argument("--erase", type=float, default=d.erase, metavar="P",
                   help="probability of random erasing (a rectangle of 2-20%% of the image in one random colour)")
    g.add_argument("--singletons", type=int, default=d.singletons, metavar="M",
                   help="add M training people with a single image to each batch, one image each: they only "
                        "form not-same pairs (the batch holds P x K + M images; --lfw and multibatch only)")
    g.add_argument("--distinct-photos", action="store_true",
                   help="leave out of the loss the same pairs that are one photo twice: a person with fewer than "
                        "K photos fills the K slots by repeating them (--lfw and multibatch only)")
    g = p.add_argument_group("estimator and batch")
    g.add_argument("--estimator", choices=ESTIMATORS, default=d.estimator,
                   help="multibatch: all k^2-k pairs of a P x K batch; pairs: the paper's baseline, k/2 independent "
                        "random pairs of the training people (k/4 same, k/4 different; the batch is drawn as "
                        "those pairs, k images); pairs-in-batch: k/2 disjoint pairs inside a P x K batch")
    g.add_argument("--batch-identities", type=int, default=d.batch_identities,
                   help="P identities per batch (with --estimator pairs only k = P x K counts)")
    g.add_argument("--images-per-identity", type=int, default=d.images_per_identity, help="K images per identity")
    g.add_argument("--no-balance", dest="balance", action="store_false",
                   help="plain mean over pairs instead of half same, half not-same")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=d.steps, help="training steps")
    g.add_argument("--lr", type=float, default=d.lr, help="base learning rate")
    g.add_argument("--lr-drops", type=_fractions, default=d.lr_drops, metavar="F[,F...]",
                   help="fractions of the run at which the learning rate is multiplied by --lr-factor")
    g.add_argument("--lr-factor", type=float, default=d.lr_factor, help="learning-rate multiplier at each drop")
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum (0: plain SGD)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 weight decay on weights")
    g.add_argument("--align-lr-scale", type=float, default=d.align_lr_scale,
                   help="the alignment net's learning rate relative to --lr (0 freezes it); full-size steps "
                        "tend to kill it (a constant warp)")
    g.add_argument("--landmark-weight", type=float, default=d.landmark_weight, metavar="W",
                   help="add W x the landmark loss of the warps (mean squared displacement of the template's "
                        "68 landmarks, output pixels^2; npface.pretrain_alignment) to the loss, so a jointly "
                        "trained alignment net stays on the landmarks; needs --lfw with landmarks68.tsv and "
                        "--align-lr-scale > 0 (0: off)")
    g.add_argument("--distill-from", nargs="+", default=list(d.distill_from), metavar="MODEL",
                   help="trained model files whose averaged geometry the run distils (npface.distill): beside "
                        "the hinge loss, the mean over all pairs of the batch of huber(d/theta - t) (Huber's "
                        "loss), t the teachers' mean distance of the two clean crops in units of their "
                        "thresholds; needs --lfw")
    g.add_argument("--distill-weight", type=float, default=d.distill_weight, metavar="W",
                   help="weight of the --distill-from term beside the hinge loss")
    g.add_argument("--distill-warmup", type=int, default=d.distill_warmup, metavar="STEPS",
                   help="ramp the --distill-from term's weight up linearly from 0 over the first STEPS steps, so "
                        "that a fresh network's first steps are not doubled in size (0: full weight from step 1)")
    g.add_argument("--threshold-init", type=float, default=None,
                   help="initial threshold theta (default: the median squared distance of a first batch)")
    g.add_argument("--init", metavar="MODEL", help="start from this model file (e.g. a pretrained alignment net)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=d.seed, help="random seed (data order, augmentation, init)")
    g.add_argument("--threads", type=int, default=d.threads, help="threads (Numba; BLAS stays on one)")
    g.add_argument("--out", metavar="DIR", help="output folder (default: runs/train-<date>-<time>)")
    g.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint "
                   "(its own configuration is used; other flags are ignored)")
    g.add_argument("--validate-every", type=int, default=d.validate_every, help="steps between validations")
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    g.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, metavar="N",
                   help="also keep the last N checkpoints as ckpt-<step>.npz (for python -m npface.average); "
                        "0 keeps only checkpoint.npz")
    g.add_argument("--synthetic-identities", type=int, default=d.synthetic_identities,
                   help="training identities of the synthetic data")
    g.add_argument("--distributed", action="store_true",
                   help="train on MPI ranks even if no MPI launcher is recognised (an error without MPI); "
                        "by default MPI is used when mpiexec or srun starts more than one rank. Needs "
                        f"{distributed.INSTALL_HINT}")
    return p


def config_from_args(a):
    folder = a.lfw is not None
    return TrainConfig(
        data="folder" if folder else "synthetic", lfw=a.lfw, people=a.people, estimator=a.estimator,
        steps=a.steps, batch_identities=a.batch_identities, images_per_identity=a.images_per_identity,
        lr=a.lr, lr_drops=tuple(a.lr_drops), lr_factor=a.lr_factor, momentum=a.momentum,
        weight_decay=a.weight_decay, align_lr_scale=a.align_lr_scale, landmark_weight=a.landmark_weight,
        balance=a.balance,
        threshold_init=a.threshold_init,
        flip=folder if a.flip is None else a.flip, jitter=folder if a.jitter is None else a.jitter,
        jitter_rotation=a.jitter_rotation, jitter_scale=a.jitter_scale, jitter_shift=a.jitter_shift,
        jitter_context=a.jitter_context,
        color_jitter=a.color_jitter, blur=a.blur, grayscale=a.grayscale, erase=a.erase, singletons=a.singletons,
        distinct_photos=a.distinct_photos, distill_from=tuple(a.distill_from), distill_weight=a.distill_weight,
        distill_warmup=a.distill_warmup,
        keep_checkpoints=a.keep_checkpoints,
        seed=a.seed, threads=a.threads, init=a.init, val_fraction=a.val_fraction, val_pairs=a.val_pairs,
        validate_every=a.validate_every, checkpoint_every=a.checkpoint_every,
        synthetic_identities=a.synthetic_identities)


def command_line(config, out=None) -> str:
    """The ``python -m npface.train`` command that trains with ``config`` (a ``TrainConfig.to_json()`` dict).

    Only the flags whose value differs from what the command would default to are written (``--lfw`` and
    ``--people`` always, for folder data), quoted for a POSIX shell; parsing them (``shlex.split``) gives
    ``config`` back (world_size aside: it is the number of MPI ranks, not a flag). ``out``: add ``--out OUT``.
    """
    want = TrainConfig.from_json(config).to_json()
    flags = ["--lfw", str(want["lfw"])] if want["data"] == "folder" else []
    if want["data"] == "folder" and want["people"]:
        flags += ["--people", str(want["people"])]
    default = config_from_args(parser().parse_args(flags)).to_json()
    for key, value in want.items():
        if key in ("data", "lfw", "people", "world_size") or value == default[key]:
            continue
        if key in ("flip", "jitter"):
            flags.append(f"--{key}" if value else f"--no-{key}")
        elif key == "balance":
            flags.append("--no-balance")
        elif key in ("jitter_context", "distinct_photos"):                  # store_true flags
            flags.append(f"--{key.replace('_', '-')}")
        elif key == "distill_from":
            flags += ["--distill-from", *value]
        elif key == "lr_drops":
            flags += ["--lr-drops", ",".join(repr(float(v)) for v in value)]       # "" for no drop
        else:
            flags += [f"--{key.replace('_', '-')}", repr(value) if isinstance(value, float) else str(value)]
    if out is not None:
        flags += ["--out", str(out)]
    return "python -m npface.train " + shlex.join(flags)                   # quoted for a POSIX shell


def main(argv=None):
    a = parser().parse_args(argv)
    try:
        comm = distributed.connect(force=a.distributed)
    except ValueError as e:
        print(f"npface.train: error: {e}", file=sys.stderr)
        return 2
    # under MPI, a failure ends the whole job (comm.fail aborts it): a rank that simply exited
    # would leave the others waiting in their next collective for ever
    try:
        if a.resume:
            run(None, a.resume, resume=True, comm=comm)
        else:
            out = a.out or comm.from_root(time.strftime, "runs/train-%Y%m%d-%H%M%S")
            run(config_from_args(a), out, comm=comm)
    except TrainingStopped as e:                        # Ctrl-C or SIGTERM: after the same step on every rank
        if comm.is_root:
            print(f"npface.train: {e}", file=sys.stderr)
        return e.status
    except TrainingDiverged as e:                       # decided from the gathered batch: on every rank
        return comm.fail(f"npface.train: error: {comm.who}{e}", EXIT_DIVERGED, every_rank=True)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        return comm.fail(f"npface.train: error: {comm.who}{e}", 2)
    except distributed.RanksDiverged as e:              # decided from every rank's checksum: on every rank
        return comm.fail(f"npface.train: error: {comm.who}{e}", EXIT_FAILED, every_rank=True)
    except KeyboardInterrupt as e:                      # before the steps, or a second Ctrl-C
        if comm.size == 1:
            raise                                       # npface.cli.run_main: one line
        return comm.fail(f"npface.train: {comm.who}interrupted" + (f": {e}" if str(e) else ""),
                         getattr(e, "status", 130))
    except BaseException as e:
        if comm.size == 1:
            raise
        traceback.print_exc()
        return comm.fail(f"npface.train: error: {comm.who}{type(e).__name__}: {e}", EXIT_FAILED)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "npface.train"))
