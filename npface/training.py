"""Training: data sources, the training step, checkpoints, validation, the run loop.

A step, in one straight line (paper section 3)::

    images, labels = source.batch(step)                 # P identities x K images (or k/2 pairs), uint8 (k, 112, 112, 3)
    sig, cache = model.forward(images, train=True)      # signatures (k, 128)
    est = signature_gradients(sig, labels, theta, ...)  # loss, dL/dsig (k, 128), dL/dtheta  <- the seam
    grads = model.backward(est.dsig, est.dthreshold, cache)
    optimiser.step(grads, lr)

While a step computes, the next step's batch is drawn on a background
thread (``_Prefetch``), so the data phase hides behind the compute.

On R MPI ranks (``mpiexec -n R python -m npface.train``, see
``npface.distributed``) the same line runs on every rank over the same
global batch: each rank embeds only its own rows, the signatures are
all-gathered so the estimator still sees all k^2 - k pairs, each rank
backpropagates its own rows and the parameter gradients are summed
(``train_step``). Rank 0 alone writes the output folder and prints.

Reproducibility and resuming. Step s draws all its randomness (which
identities and images, augmentation, the pairs estimator's pairs) from
``default_rng([seed, s])``, so a batch depends only on the seed and the step
number. A checkpoint holds the parameters, the momentum velocities and the
step; resuming from it replays exactly the steps an uninterrupted run would
have taken, so (for the same thread count, which fixes the order of the
parallel sums) the result is the same to the last bit. The global batch does
not depend on the number of ranks, so a run may be resumed on another number
of them; it then ends where the uninterrupted run ends up to the rounding of
sums taken in another order. Checkpoints are written atomically; a run
killed at any moment, ``kill -9`` included, loses at most the steps since
the last one. SIGINT/SIGTERM finish the current step and write a checkpoint
first.

The output folder::

    config.json        the exact configuration, world_size (MPI ranks) included; rewritten by --resume
    checkpoint.npz     the latest checkpoint
    ckpt-<step>.npz    with --keep-checkpoints N, the last N checkpoints (for ``python -m npface.average``)
    metrics.jsonl      one JSON line per step (loss, theta, lr, images/s) and per validation
    best.npz           the model with the best validation accuracy so far
    model.npz          the final model
"""
import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional, Tuple

import numpy as np

from npface import ops, verification
from npface.data.cache import atomic_write_npz, atomic_write_text, check_writable
from npface.distributed import SINGLE
from npface.estimators import ESTIMATORS, PAIR_BATCH_ESTIMATORS, signature_gradients
from npface.model import TABLE2, FaceModel, ModelConfig, load
from npface.optim import SGD, StepSchedule
from npface.threads import check_threads, limit

CHECKPOINT_FORMAT = 1


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

def _real(v) -> bool:
    """Whether v is a finite real number (an int or a float, not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class TrainConfig:
    data: str = "synthetic"                 # "synthetic" or "folder"
    lfw: Optional[str] = None               # folder data: the LFW root (holding lfw/) or an identity folder
    people: Optional[str] = None            # folder data: a list file restricting the identities
    estimator: str = "multibatch"
    steps: int = 150
    batch_identities: int = 16              # P
    images_per_identity: int = 16           # K
    lr: float = 0.01
    lr_drops: Tuple[float, ...] = (0.9,)    # fractions of the run where lr is multiplied by lr_factor
    lr_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    align_lr_scale: float = 0.1             # the alignment net's learning rate, relative to --lr (0: frozen)
    landmark_weight: float = 0.0            # folder data: weight of the landmark loss on the warps (0: none)
    balance: bool = True
    threshold_init: Optional[float] = None  # None: the median squared distance of the first batch
    flip: bool = False
    jitter: bool = False
    jitter_rotation: float = 8.0            # jitter ranges (npface.data.sampler.jitter_thetas): degrees,
    jitter_scale: float = 0.08              # relative scale,
    jitter_shift: float = 0.06              # normalised shift (1.0 = half the image)
    jitter_context: bool = False            # folder data: the jitter draws on the picture around the crop, not black
    color_jitter: float = 0.0               # appearance augmentation (npface.data.sampler.Photometric):
    blur: float = 0.0                       # strength of colour jitter; probabilities of blur,
    grayscale: float = 0.0                  # grayscale
    erase: float = 0.0                      # and random erasing
    singletons: int = 0                     # folder data: single-image people added to each batch (not-same only)
    distinct_photos: bool = False           # folder data, multibatch: leave out the pairs of one photo twice
    distill_from: Tuple[str, ...] = ()      # folder data: teacher model files (npface.distill); () for none
    distill_weight: float = 1.0             # weight of the distillation term beside the hinge loss
    distill_warmup: int = 0                 # steps over which that weight ramps up linearly from 0 (0: none)
    seed: int = 0
    threads: int = 2
    init: Optional[str] = None              # a model file to start from (e.g. a pretrained alignment net)
    val_fraction: float = 0.1               # folder data: share of people held out for validation
    val_pairs: int = 1000                   # validation pairs (half same, half different)
    validate_every: int = 50
    checkpoint_every: int = 50
    keep_checkpoints: int = 0               # keep the last N checkpoints as ckpt-<step>.npz (0: only the latest)
    synthetic_identities: int = 5000
    world_size: int = 1                     # MPI ranks sharing each batch (npface.distributed); set by run()

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown configuration keys {sorted(unknown)}")
        d = dict(d)
        d["lr_drops"] = tuple(d.get("lr_drops", ()))
        d["distill_from"] = tuple(d.get("distill_from", ()))
        return cls(**d)

    def check(self):
        """Raise ValueError (naming the flag) for any setting that cannot work."""
        def positive(name, v):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
        for name in ("steps", "batch_identities", "validate_every", "checkpoint_every", "val_pairs"):
            positive(name, getattr(self, name))
        if self.val_pairs < 2:
            raise ValueError(f"--val-pairs must be at least 2 (half same, half not), got {self.val_pairs}")
        if self.images_per_identity < 2:
            raise ValueError(f"--images-per-identity must be at least 2 (a batch needs same-identity pairs), "
                             f"got {self.images_per_identity}")
        k = self.batch_identities * self.images_per_identity + self.singletons
        if self.world_size > k:
            raise ValueError(f"{self.world_size} MPI ranks share a batch of only {k} images, fewer than one each: "
                             f"raise --batch-identities or run fewer ranks")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"--estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        if self.estimator in PAIR_BATCH_ESTIMATORS and k % 4:
            raise ValueError(f"--estimator {self.estimator} needs a batch of a multiple of 4 images (k/4 same and "
                             f"k/4 different pairs); --batch-identities x --images-per-identity = {k}")
        if self.data not in ("synthetic", "folder"):
            raise ValueError(f"data must be 'synthetic' or 'folder', got {self.data!r}")
        if self.data == "folder" and not self.lfw:
            raise ValueError("folder data needs --lfw DIR")
        for name in ("singletons", "keep_checkpoints", "distill_warmup"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 0, got {v!r}")
        if self.singletons and (self.data != "folder" or self.estimator in PAIR_BATCH_ESTIMATORS):
            raise ValueError("--singletons needs folder data (--lfw) and a P x K estimator (multibatch)")
        for name in ("jitter_rotation", "jitter_scale", "jitter_shift"):
            v = getattr(self, name)
            if not (_real(v) and v >= 0):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v!r}")
        if self.distinct_photos and (self.data != "folder" or self.estimator != "multibatch"):
            raise ValueError("--distinct-photos needs folder data (--lfw) and the multibatch estimator")
        if self.jitter_context and (self.data != "folder" or not self.jitter):
            raise ValueError("--jitter-context needs folder data (--lfw) and the jitter (--jitter)")
        self.photometric()                                                    # validates the appearance flags
        if not (_real(self.landmark_weight) and self.landmark_weight >= 0):
            raise ValueError(f"--landmark-weight must be a finite number >= 0, got {self.landmark_weight!r}")
        if self.landmark_weight and (self.data != "folder" or not self.align_lr_scale):
            raise ValueError("--landmark-weight needs folder data (--lfw, with landmarks68.tsv) and an alignment "
                             "net that trains (--align-lr-scale > 0)")
        if self.distill_from and self.data != "folder":
            raise ValueError("--distill-from needs folder data (--lfw): the teachers embed its images")
        if not (_real(self.distill_weight) and self.distill_weight > 0):
            raise ValueError(f"--distill-weight must be a finite number > 0, got {self.distill_weight!r}")
        if self.distill_warmup and not self.distill_from:
            raise ValueError("--distill-warmup needs --distill-from")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if not (_real(self.lr) and self.lr > 0):
            raise ValueError(f"--lr must be a finite number > 0, got {self.lr!r}")
        if not (_real(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"--momentum must be a number in [0, 1), got {self.momentum!r}")
        for flag, v in (("--weight-decay", self.weight_decay), ("--align-lr-scale", self.align_lr_scale)):
            if not (_real(v) and v >= 0):
                raise ValueError(f"{flag} must be a finite number >= 0, got {v!r}")
        if self.threshold_init is not None and not (_real(self.threshold_init) and self.threshold_init > 0):
            raise ValueError(f"--threshold-init must be a finite number > 0 (a squared distance), "
                             f"got {self.threshold_init!r}")
        check_threads(self.threads)
        StepSchedule(self.lr, self.steps, self.lr_drops, self.lr_factor)      # validates the schedule
        return self

    def check_files(self, init=True):
        """Raise ValueError (naming the flag) if a model file the run will read is not there: checked before
        the data are read, which takes minutes, rather than when the file is opened. The --distill-from
        teachers are read by every rank, at the start and on resuming; --init only by rank 0 of a new run
        (``init``)."""
        for flag, paths in (("--init", [self.init] if self.init and init else []),
                            ("--distill-from", self.distill_from)):
            for path in paths:
                if os.path.isdir(path):
                    raise ValueError(f"{flag}: {path} is a folder, not a model file")
                if not os.path.isfile(path):
                    raise ValueError(f"{flag}: model file not found: {path}")
        return self

    def jitter_ranges(self):
        """The similarity jitter's ranges, as ``npface.data.sampler.jitter_thetas`` keywords."""
        return {"max_rotation": self.jitter_rotation, "max_scale": self.jitter_scale, "max_shift": self.jitter_shift}

    def photometric(self):
        """The appearance augmentation (``npface.data.sampler.Photometric``), None when all of it is off."""
        from npface.data.sampler import Photometric
        try:
            p = Photometric(self.color_jitter, self.blur, self.grayscale, self.erase)
        except ValueError as e:
            raise ValueError(f"--color-jitter / --blur / --grayscale / --erase: {e}") from None
        return p or None

    def distill_weight_at(self, step) -> float:
        """The distillation term's weight at step ``step`` (0-based): --distill-weight, ramped up linearly
        over the first --distill-warmup steps ((step + 1) / warmup of it until then)."""
        if self.distill_warmup and step < self.distill_warmup:
            return self.distill_weight * (step + 1) / self.distill_warmup
        return self.distill_weight

    @property
    def batch_size(self):
        """Images per step: P x K, plus the single-image people."""
        return self.batch_identities * self.images_per_identity + self.singletons


# --------------------------------------------------------------------------
# Data sources: batch(rng) -> (images (k, S, S, 3) uint8, labels (k,)); a fixed validation set
# --------------------------------------------------------------------------

@dataclass
class ValidationSet:
    images: np.ndarray       # (M, S, S, 3) uint8
    pairs: np.ndarray        # (Q, 2) rows of images
    is_same: np.ndarray      # (Q,) bool
    fold: np.ndarray         # (Q,) int, 10 people-disjoint folds (verification.person_folds)
    description: str


VAL_FOLDS = 10


class AlignTarget(NamedTuple):
    """What the landmark loss compares a batch's warps with (``npface.pretrain_alignment``)."""
    theta: np.ndarray        # (k, 2, 3) target warps theta*, following the batch's augmentation
    use: np.ndarray          # (k,) bool: rows with detected landmarks (dlib's fallback boxes left out)
    template: np.ndarray     # (68, 2) the training people's template, output pixels


class SyntheticSource:
    """Procedural identities (``npface.data.synthetic``): train identities and disjoint held-out ones.

    A batch is P x K images, or for the ``pairs`` estimator k = P K images
    as k/2 independent random pairs (``sample_random_pairs``).
    """

    def __init__(self, cfg: TrainConfig):
        from npface.data.synthetic import SyntheticFaces
        self.faces = SyntheticFaces(seed=cfg.seed, n_identities=cfg.synthetic_identities)
        self.cfg = cfg
        self.train_people = None                   # integer identities: nothing for npface.eval to check
        self.teachers = None                       # no distillation on synthetic faces (TrainConfig.check)
        self.description = f"synthetic faces, {cfg.synthetic_identities} training identities (seed {cfg.seed})"

    def batch_with_targets(self, rng):
        return self.batch(rng) + (None, None, None)      # no landmarks, photo repeats or teachers in synthetic faces

    def batch(self, rng):
        k = self.cfg.batch_identities * self.cfg.images_per_identity
        if self.cfg.estimator in PAIR_BATCH_ESTIMATORS:
            images, labels = self.faces.sample_random_pairs(k, rng)
        else:
            images, labels = self.faces.sample_batch(self.cfg.batch_identities, self.cfg.images_per_identity, rng)
        if self.cfg.flip or self.cfg.jitter:
            from npface.data.sampler import augment
            jitter_kw = self.cfg.jitter_ranges() if self.cfg.jitter else {}
            images = augment(images, rng, flip=self.cfg.flip, jitter=self.cfg.jitter, **jitter_kw)[0]
        photometric = self.cfg.photometric()
        if photometric:
            images = photometric(images, rng)
        return images, labels

    def validation(self):
        n = self.cfg.val_pairs
        vs = self.faces.verification_set(n_pairs=n, n_identities=max(50, n // 6), images_per_identity=4, seed=12345)
        return ValidationSet(vs.images, vs.pairs, vs.is_same, vs.fold,
                             f"{n} pairs of {max(50, n // 6)} held-out synthetic identities")


class FolderSource:
    """Folders of identities (LFW's layout); people split into training and held-out validation people.

    A batch is P x K images (``PKSampler``), or for the ``pairs`` estimator
    k = P K images as k/2 independent random pairs of the same people
    (``RandomPairSampler``); both augmented alike.
    """

    def __init__(self, cfg: TrainConfig, progress=True):
        from npface.data.folders import LFW_CONTEXT, load_folder, split_identities
        from npface.data.sampler import PKSampler, RandomPairSampler
        root = Path(cfg.lfw)
        if not root.is_dir():
            raise FileNotFoundError(f"--lfw: folder not found: {root}")
        images_root = root / "lfw" if (root / "lfw").is_dir() else root
        people = cfg.people
        if people is not None and not Path(people).is_file() and (root / people).is_file():
            people = root / people
        if people is not None and not Path(people).is_file():
            raise FileNotFoundError(f"--people: list file not found: {cfg.people}")
        self.ds = load_folder(images_root, people, progress=progress)
        self.context = None                          # --jitter-context: (N, 154, 154, 3), row i around image i
        if cfg.jitter_context:
            wide = load_folder(images_root, people, crop=LFW_CONTEXT, progress=progress)
            if wide.files != self.ds.files:
                raise ValueError(f"--jitter-context: the wider crops of {images_root} do not decode the same files "
                                 f"as the training crops ({len(wide.files)} against {len(self.ds.files)})")
            self.context = wide.images
        train_names, val_names = split_identities(self.ds.identities, cfg.val_fraction, seed=0)
        self.train_idx = self.ds.indices_of(train_names)
        self.val_idx = self.ds.indices_of(val_names)
        if cfg.estimator in PAIR_BATCH_ESTIMATORS:
            self.sampler = RandomPairSampler(self.ds.labels, cfg.batch_identities * cfg.images_per_identity,
                                             indices=self.train_idx)
        else:
            self.sampler = PKSampler(self.ds.labels, cfg.batch_identities, cfg.images_per_identity,
                                     indices=self.train_idx, singletons=cfg.singletons)
        self.train_people = list(train_names)      # recorded in the model's provenance (npface.eval's check)
        self.cfg = cfg
        self.landmarks = None
        if cfg.landmark_weight:
            from npface.pretrain_alignment import landmark_targets
            table = root / "landmarks68.tsv"
            if not table.is_file():
                raise FileNotFoundError(f"--landmark-weight needs the landmark file {table}")
            _, detected, template, targets = landmark_targets(self.ds, train_names, table)
            self.landmarks = (detected, template, targets)     # (N,) bool, (68, 2), (N, 2, 3)
        self.teacher = None                          # --distill-from: (N, M D), row i the teachers' image i
        self.teachers = None                         # and each teacher file's path and SHA-256, for provenance
        if cfg.distill_from:
            from npface.distill import teacher_embeddings, teacher_record
            self.teacher = teacher_embeddings(cfg.distill_from, self.ds.images, cfg.threads,
                                              log=print if progress else (lambda *a: None))
            self.teachers = teacher_record(cfg.distill_from)
        self.description = (f"{images_root}: {len(train_names)} training people ({len(self.train_idx)} images, "
                            f"{self.sampler.n_eligible_images} in people with >= 2), {len(val_names)} held out")
        if cfg.singletons:
            self.description += (f"; {cfg.singletons} of the {len(self.sampler.single_rows)} single-image "
                                 f"training people in each batch")
        if cfg.distill_from:
            self.description += f"; distilled from {len(cfg.distill_from)} teachers"

    def batch(self, rng):
        return self.batch_with_targets(rng)[:2]

    def batch_with_targets(self, rng):
        """(images, labels, AlignTarget or None, photos or None, teacher or None): the batch; with
        --landmark-weight its warps' targets; with --distinct-photos each image's row in the dataset (k,), so
        that the loss can leave out the pairs of one photo twice; with --distill-from the teachers' embedding
        of each image's clean crop (k, M D)."""
        jitter_kw = self.cfg.jitter_ranges() if self.cfg.jitter else {}
        b = self.sampler.batch(self.ds.images, rng, flip=self.cfg.flip, jitter=self.cfg.jitter,
                               photometric=self.cfg.photometric(), context=self.context, **jitter_kw)
        photos = b.indices if self.cfg.distinct_photos else None
        teacher = self.teacher[b.indices] if self.teacher is not None else None
        if self.landmarks is None:
            return b.images, b.labels, None, photos, teacher
        from npface.data.landmarks import augmented_thetas
        detected, template, targets = self.landmarks
        return b.images, b.labels, AlignTarget(augmented_thetas(targets[b.indices], b.aug_theta, b.flipped),
                                               detected[b.indices], template), photos, teacher

    def validation(self):
        from npface.data.sampler import validation_pairs
        try:
            pairs, same = validation_pairs(self.ds.labels, self.cfg.val_pairs // 2, seed=0, indices=self.val_idx,
                                           n_groups=VAL_FOLDS)
        except ValueError as e:
            raise ValueError(f"--val-fraction {self.cfg.val_fraction} and --val-pairs {self.cfg.val_pairs}: the "
                             f"held-out people cannot make the validation pairs ({e})") from None
        rows = np.unique(pairs)
        local = np.searchsorted(rows, pairs)
        labels = self.ds.labels[pairs]                                         # (Q, 2) people of each pair
        fold = verification.person_folds(labels[:, 0], labels[:, 1], same, VAL_FOLDS)
        return ValidationSet(np.asarray(self.ds.images[rows]), local, same, fold,
                             f"{len(same)} pairs of held-out people ({len(rows)} images)")


def make_source(cfg, progress=True):
    return SyntheticSource(cfg) if cfg.data == "synthetic" else FolderSource(cfg, progress)


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------

def validate(model, vset: ValidationSet, threads, comm=SINGLE):
    """Held-out verification: accuracy with the learned theta, and 10-fold accuracy with a fitted threshold.

    Under MPI each rank embeds its share of the images and every rank gets all the signatures.
    """
    rows = comm.share(len(vset.images))
    sig = comm.allgather_rows(model.embed(vset.images[rows], threads=threads) if rows.stop > rows.start
                              else np.empty((0, model.config.signature_dim), np.float32), len(vset.images))
    d = ((sig[vset.pairs[:, 0]] - sig[vset.pairs[:, 1]]) ** 2).sum(axis=1, dtype=np.float64)
    result = verification.k_fold(d, vset.is_same, vset.fold, learned_threshold=model.threshold)
    return {"val_accuracy": result.accuracy, "val_accuracy_std": result.accuracy_std, "val_auc": result.auc,
            "val_learned_threshold_accuracy": result.learned_threshold_accuracy,
            "val_mean_same_distance": float(d[vset.is_same].mean()),
            "val_mean_different_distance": float(d[~vset.is_same].mean())}


# --------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------

def train_step(model, optimiser, images, labels, lr, cfg, rng, comm=SINGLE, align=None, photos=None,
               teacher=None, distill_weight=None):
    """One SGD step on the global batch images (k, S, S, 3), labels (k,); returns the estimate (loss, ...).

    On R ranks (``comm``) every rank holds the same batch and embeds only its
    own rows; the estimator sees the whole batch's signatures, so its loss is
    over all k^2 - k pairs of the global batch (Theorem 1's estimator, not R
    smaller ones), and its dL/dsig already carries the mean over those pairs.
    Each rank backpropagates its own rows; the sum over ranks is the whole
    batch's gradient. With one process the rows are the batch and the
    collectives do nothing. Raises TrainingDiverged (same on every rank).

    align (``AlignTarget``, with --landmark-weight): the landmark loss of the warps, weighted by
    ``cfg.landmark_weight`` and averaged over the batch's usable rows, is added to the loss; it
    reaches only the alignment net, and keeps it from drifting from the landmarks (a constant warp).
    The estimate's loss stays the hinge alone; the landmark loss goes in ``est.landmark_loss``.

    photos (k,) (with --distinct-photos): each image's photo; the loss leaves out the pairs of one photo twice.

    teacher (k, E) (with --distill-from): the teachers' embedding of each image; ``distill_weight`` (default
    ``cfg.distill_weight``; ``run`` passes ``cfg.distill_weight_at(step)``) times the distillation loss over
    all k^2 - k pairs (``npface.distill``) is added, its signature gradient to the hinge's (theta gets none
    from it). The estimate's loss stays the hinge; this term goes in
    ``est.distill_loss``.
    """
    rows = comm.share(len(labels))                                      # this rank's contiguous rows
    sig_rows, cache = model.forward(images[rows], train=True)          # (k_r, D)
    sig, labels = comm.gather_batch(sig_rows, labels)                  # (k, D), (k,) on every rank
    if not np.all(np.isfinite(sig)):
        # checked here, not left to the loss: a NaN distance fails the hinge's "u > 0" test, so the
        # loss of NaN signatures is 0, not NaN, and training would go on without any gradient
        raise TrainingDiverged("the signatures are no longer finite")
    est = signature_gradients(sig, labels, model.threshold, cfg.estimator, rng, cfg.balance, photos)
    if not math.isfinite(est.loss):
        raise TrainingDiverged(f"the loss is {est.loss}")
    if teacher is not None:
        distill_loss, c = ops.pair_distill_forward(sig, teacher.astype(sig.dtype, copy=False), model.threshold)
        weight = cfg.distill_weight if distill_weight is None else distill_weight
        est = est._replace(dsig=est.dsig + ops.pair_distill_backward(c, weight),
                           distill_loss=distill_loss)
    dtheta = None
    if align is not None:
        dtheta, landmark_loss = landmark_term(cache.theta, align, rows, cfg.landmark_weight, comm)
        est = est._replace(landmark_loss=landmark_loss)
    # every rank computed the same dL/dtheta: rank 0 alone passes it on, so the sum counts it once
    grads = model.backward(est.dsig[rows], est.dthreshold if comm.is_root else 0.0, cache, dtheta)
    optimiser.step(comm.allreduce_sum(grads), lr)
    return est


def landmark_term(theta_rows, align, rows, weight, comm=SINGLE):
    """(dtheta (k_r, 2, 3), mean landmark loss in output pixels^2) of this rank's warps theta_rows (k_r, 2, 3).

    The term is weight x the mean of ``warp_loss_forward``'s per-image loss over the usable rows of the
    whole batch, so each rank scales its rows' gradient by its share of them.
    """
    from npface.pretrain_alignment import warp_loss_backward, warp_loss_forward
    use = align.use[rows]                                               # (k_r,)
    n_use = int(align.use.sum())
    dtheta = np.zeros(theta_rows.shape)                                 # (k_r, 2, 3)
    per_row = np.zeros(len(use))                                        # (k_r,)
    if use.any():
        _, c = warp_loss_forward(theta_rows[use], align.theta[rows][use], align.template)
        dtheta[use] = warp_loss_backward(c, weight * use.sum() / n_use)
        per_row[use] = c.per_image
    total = comm.allgather_rows(per_row, len(align.use)).sum()          # every rank's rows
    return dtheta.astype(theta_rows.dtype), (total / n_use if n_use else float("nan"))


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------

def save_checkpoint(path, model, optimiser, step, cfg, best):
    """Parameters, momentum, step and configuration, written atomically (``atomic_write``)."""
    path = Path(path)
    arrays = {f"param/{k}": v for k, v in model.params.items()}
    arrays.update(optimiser.state())
    state = {"format": CHECKPOINT_FORMAT, "step": step, "config": cfg.to_json(), "best": best,
             "model_config": model.config.to_json(), "provenance": model.provenance}
    arrays["state.json"] = np.array(json.dumps(state))
    atomic_write_npz(path, arrays)


def keep_checkpoint(out_dir, model, optimiser, step, cfg, best):
    """Write ckpt-<step>.npz beside checkpoint.npz and delete all but the last ``cfg.keep_checkpoints`` of them."""
    save_checkpoint(Path(out_dir) / f"ckpt-{step:07d}.npz", model, optimiser, step, cfg, best)
    for old in kept_checkpoints(out_dir)[:-cfg.keep_checkpoints]:
        old.unlink()


def kept_checkpoints(out_dir) -> list:
    """A run's ckpt-<step>.npz files (``--keep-checkpoints``), oldest first."""
    return sorted(Path(out_dir).glob("ckpt-*.npz"))                   # zero-padded steps: name order is step order


def load_checkpoint(path):
    """(model params, optimiser arrays, state dict) from ``save_checkpoint``; ValueError if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        state = json.loads(str(arrays.pop("state.json")))
    except Exception as e:                                     # truncated, not an npz, no state entry
        raise ValueError(f"{path}: not a readable checkpoint ({e})") from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {state.get('format')!r} is not {CHECKPOINT_FORMAT}")
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    opt = {k: v for k, v in arrays.items() if k.startswith("velocity/")}
    return params, opt, state


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------

class TrainingDiverged(RuntimeError):
    pass


class TrainingStopped(KeyboardInterrupt):
    """Raised by ``run`` once a run stopped by Ctrl-C or SIGTERM has checkpointed: the run can be resumed.
    ``status`` is the exit status a shell gives a process ended by that signal (128 + its number)."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


class _StopRequest:
    """SIGINT / SIGTERM set a flag; the loop finishes its step, checkpoints and stops. A second one stops at
    once (KeyboardInterrupt), losing the steps since the last checkpoint."""

    def __init__(self, hint=str):
        self.requested = False
        self.signal = signal.SIGINT
        self.hint = hint                     # () -> what the second one's KeyboardInterrupt says

    def __enter__(self):
        self.previous = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handler(self, signum, frame):
        if self.requested:                   # a second Ctrl-C: stop now
            stop_now = KeyboardInterrupt(self.hint())
            stop_now.status = 128 + int(signum)
            raise stop_now
        self.requested, self.signal = True, signum

    def __exit__(self, *exc):
        for s, h in self.previous.items():
            signal.signal(s, h)


class Progress:
    """A tqdm bar on a terminal (if tqdm is installed), else a plain line every ``every`` steps."""

    def __init__(self, total, start, log, every=10):
        self.total, self.log, self.every = total, log, every
        self.bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, step, row, eta):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.0f}")
        elif (step + 1) % self.every == 0 or step + 1 == self.total:
            self.log(f"step {step + 1}/{self.total}  loss {row['loss']:.4f}  theta {row['threshold']:.3f}  "
                     f"lr {row['lr']:.2g}  {row['images_per_s']:.0f} img/s  ETA {_duration(eta)}")

    def write(self, text):
        (self.bar.write if self.bar is not None else self.log)(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _Prefetch:
    """Draws step s + 1's batch on a background thread while step s computes.

    ``get(step)`` returns ``(images, labels, align, photos, teacher, rng)`` for that step: the
    batch ``source.batch_with_targets(rng)`` drew from ``rng =
    default_rng([seed, step])``, and that generator, advanced past the draw,
    for the rest of the step (the pairs-in-batch estimator draws its pairs
    from it). A batch depends only on the seed and its step, never on when
    it was drawn, so a run with the prefetcher is bit-identical to one
    without (tested). With ``enabled`` False every batch is drawn on the
    calling thread, when asked for.

    Threads. The drawing thread runs a Numba parallel kernel (the
    augmentation warp, ``npface.ops.warp_forward``) on one Numba thread, so
    the background work takes one core's share at most. Meanwhile the step
    runs only serial kernels (the compiled plan), so no two parallel kernels
    are ever launched at once: Numba's ``workqueue`` threading layer, unlike
    ``omp`` and ``tbb``, would abort on that.
    """

    def __init__(self, source, seed, end, enabled=True):
        from concurrent.futures import ThreadPoolExecutor
        self.source, self.seed, self.end = source, seed, end
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="npface-data",
                                       initializer=_one_numba_thread) if enabled else None
        self.pending = None                                     # (step, Future) of the batch drawn ahead

    def _draw(self, step):
        rng = np.random.default_rng([self.seed, step])
        return self.source.batch_with_targets(rng) + (rng,)

    def get(self, step):
        if self.pool is None:
            return self._draw(step)
        if self.pending is not None and self.pending[0] == step:
            batch = self.pending[1].result()                   # re-raises the drawing thread's error
        else:
            if self.pending is not None:                       # drawn ahead for another step: let it finish unused
                self.pending[1].exception()
            batch = self._draw(step)
        self.pending = (step + 1, self.pool.submit(self._draw, step + 1)) if step + 1 < self.end else None
        return batch

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)   # a batch being drawn is finished, then dropped


def _one_numba_thread():
    import numba
    numba.set_num_threads(1)                                    # per thread: the step keeps its own count


def _duration(seconds):
    seconds = int(max(0, seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _initial_model(cfg, source):
    """A fresh Table 2 model, or the --init model; theta set from the first batch when not given."""
    if cfg.init:
        model = load(cfg.init, writable=True)
        model.provenance = {"init": str(cfg.init), "init_provenance": model.provenance}
    else:
        model = FaceModel(TABLE2, seed=cfg.seed)
    model.tiles = False                     # the BLAS throughout, also for theta's first batch and validation
    # a model whose signature net npface.train has already trained keeps its theta (fine-tuning);
    # a fresh one, or one with only a pretrained alignment net, gets theta from its first batch
    signature_trained = bool(cfg.init) and "trained_steps" in model.provenance.get("init_provenance", {})
    if cfg.threshold_init is not None:
        model.params["threshold"] = np.array(cfg.threshold_init, np.float32)
    elif not signature_trained:
        images, _ = source.batch(np.random.default_rng([cfg.seed, -1 % 2**32]))
        with limit(cfg.threads):
            sig = model.embed(images, threads=cfg.threads)
        model.params["threshold"] = np.array(initial_threshold(sig), np.float32)
    return model


def initial_threshold(sig) -> float:
    """Theta for a fresh signature net from one batch of its signatures (k, D).

    The median squared distance over the batch's pairs, so that at step 0 about as many pairs are
    active on each side of the hinge; never below 2 (see model.DEFAULT_THRESHOLD).
    """
    d = ((sig[:, None] - sig[None]) ** 2).sum(-1)[~np.eye(len(sig), dtype=bool)]
    return max(2.0, float(np.median(d)))


def run(cfg: TrainConfig, out_dir, resume=False, log=print, progress=True, comm=SINGLE, prefetch=True):
    """Train (or resume) into ``out_dir``; return the final validation metrics.

    ``comm`` (``npface.distributed``): the ranks sharing each step; rank 0 alone logs and writes files.
    ``prefetch``: draw each next batch in the background while the step computes (``_Prefetch``;
    the result is the same either way).
    """
    if not comm.is_root:
        log, progress = _quiet, False
    out_dir = Path(out_dir)
    metrics_path = out_dir / "metrics.jsonl"
    checkpoint = out_dir / "checkpoint.npz"
    if resume:
        params, opt_arrays, state = comm.from_root(_read_checkpoint, checkpoint)
        cfg = TrainConfig.from_json(state["config"])
        ranks_before, cfg.world_size = cfg.world_size, comm.size
        cfg.check().check_files(init=False)
        start, best = int(state["step"]), state.get("best")
        log(f"Resuming {out_dir} at step {start} of {cfg.steps}"
            + (f" on {comm.size} ranks (it ran on {ranks_before})" if ranks_before != comm.size else ""))
    else:
        cfg = dataclasses.replace(cfg, world_size=comm.size).check().check_files(init=comm.is_root)
        if comm.is_root and checkpoint.exists():
            raise FileExistsError(f"{out_dir} already holds a run (checkpoint.npz); use --resume {out_dir} "
                                  f"to continue it, or choose another --out")
        if comm.is_root:
            try:
                check_writable(out_dir / "config.json")
            except ValueError as e:
                raise ValueError(f"--out {out_dir}: {e}") from None
        start, best = 0, None

    source = make_source(cfg, progress=progress)
    log(f"Data: {source.description}")
    vset = source.validation()
    log(f"Validation: {vset.description}")

    if resume:
        model = FaceModel(ModelConfig.from_json(state["model_config"]), params=params,
                          provenance=state.get("provenance"))
        model.tiles = False
        if comm.is_root:
            _truncate_metrics(metrics_path, start)
    else:
        model = comm.from_root(_initial_model, cfg, source)      # one initialisation, the same on every rank
    if comm.is_root:                     # made once the data and the model are ready: a failed start leaves no folder
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "config.json", json.dumps(cfg.to_json(), indent=1) + "\n")
        if not resume:                   # an earlier start stopped before its first checkpoint left these
            atomic_write_text(metrics_path, "")
            for stale in ("best.npz", "model.npz"):
                (out_dir / stale).unlink(missing_ok=True)
    optimiser = SGD(model.params, cfg.lr, cfg.momentum, cfg.weight_decay, {"align.": cfg.align_lr_scale})
    model.frozen = ("align.",) if cfg.align_lr_scale == 0 else ()      # a frozen net needs no backward pass
    if resume:
        optimiser.load_state(opt_arrays)
    schedule = StepSchedule(cfg.lr, cfg.steps, cfg.lr_drops, cfg.lr_factor)
    k = cfg.batch_size
    log(f"Training {cfg.steps} steps, {cfg.estimator} estimator, batch {cfg.batch_identities} x "
        f"{cfg.images_per_identity}" + (f" + {cfg.singletons} single-image people" if cfg.singletons else "")
        + f" = {k}, lr {cfg.lr} (x{cfg.lr_factor} at {list(cfg.lr_drops)}), "
        f"momentum {cfg.momentum}, weight decay {cfg.weight_decay}, alignment lr x{cfg.align_lr_scale}, "
        f"{cfg.threads} threads" + (f" on each of {comm.size} MPI ranks" if comm.size > 1 else "")
        + f", theta starts at {model.threshold:.3f}")

    bar = Progress(cfg.steps, start, log) if progress else None
    started = time.perf_counter()
    last = {}
    with _StopRequest(lambda: _resume_hint(checkpoint)) as stop, limit(cfg.threads), \
            open(metrics_path if comm.is_root else os.devnull, "a") as metrics, \
            _Prefetch(source, cfg.seed, cfg.steps, prefetch) as batches:
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            images, labels, align, photos, teacher, rng = batches.get(step)  # from default_rng([cfg.seed, step])
            lr = schedule(step)
            try:
                est = train_step(model, optimiser, images, labels, lr, cfg, rng, comm, align, photos, teacher,
                                 cfg.distill_weight_at(step))
            except TrainingDiverged as e:
                raise TrainingDiverged(f"step {step + 1}: {e}; stopped. " + _last_good(checkpoint)) from None
            dt = time.perf_counter() - t0
            row = {"step": step + 1, "loss": est.loss, "threshold": model.threshold, "lr": lr,
                   "images_per_s": k / dt, "pairs": est.n_pairs, "time": time.perf_counter() - started}
            if align is not None:
                row["landmark_loss"] = est.landmark_loss
            if teacher is not None:
                row["distill_loss"] = est.distill_loss
            metrics.write(json.dumps(row) + "\n")
            if bar:
                bar.update(step, row, (cfg.steps - step - 1) * dt)

            done = step + 1 == cfg.steps
            if (step + 1) % cfg.validate_every == 0 or done:
                last = validate(model, vset, cfg.threads, comm)
                last["step"] = step + 1
                metrics.write(json.dumps(last) + "\n")
                if bar:
                    bar.write(f"step {step + 1}: held-out accuracy {last['val_accuracy']:.4f} "
                              f"(+-{last['val_accuracy_std']:.4f}, 10-fold), with learned theta "
                              f"{last['val_learned_threshold_accuracy']:.4f}, AUC {last['val_auc']:.4f}")
                if best is None or last["val_accuracy"] > best["val_accuracy"]:
                    best = dict(last)
                    if comm.is_root:
                        _with_provenance(model, cfg, source, vset, step + 1, last).save(out_dir / "best.npz")
            stopping = comm.any(stop.requested)          # every rank stops after the same step
            if (step + 1) % cfg.checkpoint_every == 0 or done or stopping:
                metrics.flush()
                if comm.any(not all(np.all(np.isfinite(v)) for v in model.params.values())):
                    raise TrainingDiverged(f"step {step + 1}: parameters are no longer finite; stopped. "
                                           + _last_good(checkpoint))
                comm.check_identical(model.params, step + 1)
                if comm.is_root:
                    save_checkpoint(checkpoint, model, optimiser, step + 1, cfg, best)
                    if cfg.keep_checkpoints:
                        keep_checkpoint(out_dir, model, optimiser, step + 1, cfg, best)
            if stopping and not done:
                if bar:
                    bar.close()
                signum = signal.SIGTERM if comm.any(stop.signal == signal.SIGTERM) else signal.SIGINT  # one for all ranks
                raise TrainingStopped(f"stopped at step {step + 1}; checkpoint written. Continue with --resume "
                                      f"{out_dir}", 128 + int(signum))
    if bar:
        bar.close()
    if comm.is_root:
        _with_provenance(model, cfg, source, vset, cfg.steps, last).save(out_dir / "model.npz")
    log(f"Done: {out_dir / 'model.npz'}; held-out accuracy {last.get('val_accuracy', float('nan')):.4f} "
        f"(10-fold), with the learned theta {last.get('val_learned_threshold_accuracy', float('nan')):.4f}; "
        f"best {best['val_accuracy']:.4f} at step {best['step']} ({out_dir / 'best.npz'})")
    return last


def _with_provenance(model, cfg, source, vset, step, val):
    model.provenance.update({"trained_steps": step, "data": source.description, "validation": vset.description,
                             "validation_metrics": val, "config": cfg.to_json(), "world_size": cfg.world_size})
    if source.train_people is not None:
        model.provenance["train_people"] = source.train_people
    if source.teachers:
        model.provenance["distill_teachers"] = source.teachers
    return model


def _read_checkpoint(checkpoint: Path):
    """``load_checkpoint`` of a run to resume, with --resume's error when there is none."""
    if not checkpoint.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint.npz in {checkpoint.parent}")
    return load_checkpoint(checkpoint)


def _quiet(*args):
    pass


def _last_good(checkpoint: Path) -> str:
    """Where a diverged run can go on from."""
    if checkpoint.is_file():
        return f"The last good checkpoint is {checkpoint} (resume it with a lower --lr)"
    return "No checkpoint was written yet (start again with a lower --lr)"


def _resume_hint(checkpoint: Path) -> str:
    """What is left of a run stopped at once (a second Ctrl-C)."""
    if checkpoint.is_file():
        return (f"stopped at once: the steps since the last checkpoint are lost; continue from it with --resume "
                f"{checkpoint.parent}")
    return "stopped at once, before the first checkpoint: nothing to resume"


def _truncate_metrics(path, step):
    """Drop metric lines after ``step`` (written after the checkpoint a resumed run restarts from)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))
