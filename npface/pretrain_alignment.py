"""Pretrain the alignment net alone to regress landmark-derived similarity transforms.

The paper trained its alignment net to regress the similarity transform
computed from 68 facial landmarks, then used it to initialise the joint
network. This module does the same on LFW::

    python -m npface.pretrain_alignment --lfw ../shared/lfw --out runs/align_pretrained.npz

and writes a full ``FaceModel`` file (alignment net trained, signature net at
its seeded initialisation) that ``python -m npface.train --init PATH`` starts
from.

Data (``prepare_lfw``)
----------------------
- Images: the people of ``peopleDevTrain.txt`` only, cropped to 112x112 by
  ``LFW_CROP`` (``npface.data.folders``). Their people are split by
  ``split_identities(identities, val_fraction=0.1, seed=0)``, the trainer's
  own split, so the people held out here are the trainer's validation people.
- Landmarks: ``landmarks68.tsv`` mapped into the crop (``crop_points``).
  Rows whose face box is dlib's fixed fallback box (``detected == 0``; rough
  landmarks on profile or occluded faces) are left out of the template and
  of training; the held-out report counts every held-out image.
- Template: ``make_template`` of the TRAINING people's landmarks: their
  Procrustes mean shape, placed so that the two eye centres sit at
  ``TEMPLATE_EYES`` = (39.5, 31.0) and (71.5, 31.0), level and symmetric
  about the centre column of the 112x112 output (``npface.data.landmarks``
  documents the choice). It is stored in the model's provenance.
- Targets: theta* = ``alignment_thetas(points, template)`` per image, the
  least-squares similarity mapping its 68 landmarks onto the template
  (squared error in the OUTPUT frame, all points weighted equally), as a warp
  (output -> input, normalised coordinates).

Augmentation
------------
Each training image is flipped (probability 1/2) and jittered by a random
similarity (``npface.data.sampler.augment``, its default ranges: +-8
degrees, +-8 % scale, +-0.06 shift). The augmented image samples the
original through G, so its target is ``augmented_thetas(theta*, G, flipped)``
= G^-1 o theta* o F^f: the warp that undoes the jitter and yields the same
aligned face (mirrored when flipped). Deep-funneled LFW is already roughly
aligned; undoing jitter is where the alignment net has real work.

The loss (``warp_loss_forward`` / ``warp_loss_backward``)
---------------------------------------------------------
Mean squared displacement, in pixels of the S_out x S_out OUTPUT frame, of
the template's landmarks. For a template point q (normalised output
coordinates, homogeneous q~ = (q_x, q_y, 1)) the predicted warp theta samples
the input at theta q~; in the target-aligned output that input point appears
at theta*^-1(theta q~), and it should appear at q. With D = theta - theta*
(2, 3) and A* the 2x2 linear part of theta*::

    theta*^-1(theta q~) - q = A*^-1 D q~                       (normalised output units)
    L_i = (S_out / 2)^2 mean_m || A*^-1 D_i q~_m ||^2           (output pixels^2)
        = (S_out / 2)^2 tr(B_i D_i Qm D_i^T),  B_i = A*_i^-T A*_i^-1 (2, 2),  Qm = mean_m q~ q~^T (3, 3)
    L   = mean_i L_i
    dL/dtheta_i = (2 / N) (S_out / 2)^2 B_i D_i Qm

(S_out / 2 turns normalised units into output pixels; for a similarity
target B_i = I / s*_i^2, s* its scale.) It is quadratic in theta, zero
exactly at theta*, and weighs scale, rotation and shift by how far they move
face points (the template's second moments Qm), unlike an MSE on
(a, b, tx, ty). It is the "landmark error through the warp" of the image's
least-squares-fitted landmarks p = theta* q~, to first order: their exact
squared error after warping by theta, theta^-1(p) - q = -A^-1 D q~, has the
predicted linear part A where the loss has the target's A* (for
similarities, a factor (s* / s)^2 per image), which is what keeps the loss
quadratic. The pose gradient follows through ``npface.model.dtheta_to_dpose``.

Training
--------
SGD with momentum on the ``align.*`` parameters only
(``npface.optim.SGD``), a step learning-rate schedule, batches drawn
uniformly without replacement from the training images, and gradient-norm
clipping: when the gradient of all alignment parameters together is longer
than ``clip_norm`` it is rescaled to that length. The net ends in a stack of
seven affine layers whose ReLU features share a large common component
(at initialisation the last hidden layer's units vary across images by a
fifth of their mean), so the loss is badly conditioned. Without clipping, a
learning rate that makes progress at all sometimes takes one huge early
step that kills the ReLUs and leaves a net predicting the mean warp whatever
the image: on the toy problems of the tests at lr 1e-3, 5 of 8 runs (4
seeds x 2 problems) ended stuck or diverged without a clip, none of 10 with
a clip of 30; on LFW, lr 3e-4 diverged within 50 steps and 1e-4 had learnt
nothing after 400, while 3e-4 with the clip trains. Step s draws all
its randomness (images, flips, jitter) from ``default_rng([seed, s])``, like
``npface.training``; the model's initial parameters come from ``seed`` too.
The alignment net sees exactly what ``FaceModel.forward`` gives it:
``preprocess`` -> ``ops.resize_area`` to ``align_input_size`` -> the
alignment layers.

The report (``evaluate``)
-------------------------
Mean landmark error (``landmark_error``: mean distance between the warped
landmarks and the template, in output pixels) on the held-out people's
images, for the identity warp, the least-squares fitted warp (the floor of
any similarity), and the net; on the images as they are and on jittered
copies (one fixed jitter per image, ``jitter_thetas`` seeded by
``eval_seed``, no flip).

Measured with the defaults (2,000 steps of 64, lr 3e-4, clip 50, seed 0,
2 threads; 7 minutes on this 2-core machine, shared), on the 1,425 images
of the 404 held-out people, mean landmark error in output pixels::

                 identity   fitted (floor)   net
    as they are    4.21        3.23          3.73    (49 % of the gap to the floor closed)
    jittered       5.57        3.23          3.78    (77 % closed)

The net's warps are 2.50 px (2.65 px jittered) RMS from the fitted ones,
against 2.53 px for the training loss at the end: no overfitting; it is the
net and the step budget that limit it.
"""
import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from npface.cli import output_file, run_main
from npface.data.cache import atomic_write_text
from npface.model import TABLE2, FaceModel, align_forward, backward_layers, dtheta_to_dpose, pose_to_theta
from npface.optim import SGD, StepSchedule
from npface.threads import check_threads, limit

DEFAULT_OUT = "runs/align_pretrained.npz"
DEFAULT_STEPS = 2000
DEFAULT_BATCH = 64
DEFAULT_LR = 3e-4
DEFAULT_MOMENTUM = 0.9
# Gradient-norm clip (loss in output px^2). On LFW the gradient is 150-700 long throughout, so every step
# is clipped and lr * clip (0.015) is the length of each step before momentum; over 400 steps 50 made
# more progress than 100 (lr 1e-3 with 100, i.e. 0.1 per step, did not learn at all).
DEFAULT_CLIP = 50.0
LR_DROPS = (0.7, 0.9)          # fractions of the run where the learning rate is divided by 10
EVAL_SEED = 12345              # the fixed jitter of the held-out report


# --------------------------------------------------------------------------
# The loss: template-landmark displacement in the output frame
# --------------------------------------------------------------------------

@dataclass
class WarpLossCache:
    D: np.ndarray           # (N, 2, 3) theta - theta*
    B: np.ndarray           # (N, 2, 2) A*^-T A*^-1
    Qm: np.ndarray          # (3, 3) mean_m q~ q~^T of the template (normalised output coordinates)
    scale: float            # (S_out / 2)^2
    per_image: np.ndarray = None   # (N,) each image's loss L_i (output pixels^2)


def template_moments(template, out_size):
    """Qm (3, 3) = mean_m q~ q~^T, q~ = (u, v, 1) the template (M, 2) pixels in normalised output coordinates."""
    template = np.asarray(template, dtype=np.float64)
    if template.ndim != 2 or template.shape[1] != 2 or len(template) < 1:
        raise ValueError(f"template must have shape (M, 2) of (x, y) output pixels, got shape {template.shape}")
    if not np.isfinite(template).all():
        raise ValueError("template must be finite")
    q = np.concatenate([(2.0 * template + 1.0) / out_size - 1.0, np.ones((len(template), 1))], axis=1)  # (M, 3)
    return q.T @ q / len(q)


def warp_loss_forward(theta, target, template, out_size=112):
    """Mean squared template-landmark displacement (output pixels^2) of warps theta against targets.

    theta (N, 2, 3) predicted warps, target (N, 2, 3) target warps (both
    output -> input, normalised), template (M, 2) landmark positions in the
    out_size x out_size output, pixels. Returns (loss float, cache); see the
    module docstring for the formula. Computed in float64.
    """
    theta = np.asarray(theta, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if theta.ndim != 3 or theta.shape[1:] != (2, 3) or len(theta) == 0:
        raise ValueError(f"theta must have shape (N, 2, 3) with N >= 1, got {theta.shape}")
    if target.shape != theta.shape:
        raise ValueError(f"target must have shape (N, 2, 3) = {theta.shape}, got {target.shape}")
    if isinstance(out_size, bool) or not isinstance(out_size, (int, np.integer)) or out_size < 1:
        raise ValueError(f"out_size must be a positive integer, got {out_size!r}")
    Qm = template_moments(template, out_size)                                 # (3, 3)
    A = target[:, :, :2]                                                      # (N, 2, 2)
    det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
    if not (np.abs(det) > 1e-12).all():
        raise ValueError("target: every warp must be invertible (its 2x2 part has determinant 0)")
    Ainv = np.linalg.inv(A)                                                   # (N, 2, 2)
    B = np.einsum("nji,njk->nik", Ainv, Ainv)                                 # (N, 2, 2) A^-T A^-1
    D = theta - target                                                        # (N, 2, 3)
    scale = (out_size / 2.0) ** 2
    per_image = scale * np.einsum("nij,njk,kl,nil->n", B, D, Qm, D)          # (N,) tr(B D Qm D^T)
    return float(per_image.mean()), WarpLossCache(D, B, Qm, scale, per_image)


def warp_loss_backward(cache, dloss=1.0):
    """dL/dtheta (N, 2, 3) float64 of ``warp_loss_forward``: (2 / N) (S_out / 2)^2 B D Qm, times dloss."""
    N = len(cache.D)
    return (2.0 * dloss * cache.scale / N) * np.einsum("nij,njk,kl->nil", cache.B, cache.D, cache.Qm)


# --------------------------------------------------------------------------
# The alignment net alone
# --------------------------------------------------------------------------

def alignment_params(model):
    """The alignment net's parameters, name -> array (the same arrays as ``model.params``, not copies)."""
    names = {l.name for l in model.config.alignment}
    return {k: v for k, v in model.params.items() if k.rsplit(".", 1)[0] in names}


def predict_thetas(model, images, batch_size=256):
    """The warps theta (N, 2, 3) float64 the model's alignment net predicts for images (N, S, S, 3); for a
    model of more than one alignment round (``ModelConfig.align_rounds``), the composed warp it applies."""
    from npface.model import warp_thetas
    out = np.empty((len(images), 2, 3))
    for start in range(0, len(images), batch_size):     # theta's entries are the pose's, copied or negated: exact
        out[start:start + batch_size] = warp_thetas(model, np.asarray(images[start:start + batch_size]))
    return out


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------

def evaluate(model, images, points, template, eval_seed=EVAL_SEED, batch_size=256, net=True, jitter_kw=None):
    """Mean landmark errors (output pixels) of identity / fitted / predicted warps, plain and jittered.

    images (N, S, S, 3) uint8, points (N, M, 2) their landmarks (input
    pixels), template (M, 2) output pixels. Jittered: each image warped by a
    fixed random similarity (``jitter_thetas(**jitter_kw)`` from
    ``default_rng(eval_seed)``; the sampler's default ranges when jitter_kw
    is None; no flip), its landmarks moved with it.
    Returns {"plain": {"identity", "fitted", "net", "net_loss_rms"},
    "jittered": {...}, "n_images"}: the mean over images of
    ``landmark_error``, and the root of the training loss
    (``warp_loss_forward``) of the net against the fitted warps; with
    net=False the model is not run and the "net" entries are left out.
    """
    from npface.data.landmarks import alignment_thetas, identity_theta, landmark_error, output_points
    from npface.data.sampler import jitter_thetas, warp_images

    n = len(images)
    S = model.config.input_size
    G = jitter_thetas(n, np.random.default_rng(eval_seed), **(jitter_kw or {}))   # (N, 2, 3)
    result = {"n_images": int(n)}
    for kind in ("plain", "jittered"):
        pts = points if kind == "plain" else output_points(points, G, S, S)   # landmarks inside the images seen
        theta_fit = alignment_thetas(pts, template, S, S)                        # (N, 2, 3) the targets
        errs = {"identity": landmark_error(pts, identity_theta(n), template, S, S),
                "fitted": landmark_error(pts, theta_fit, template, S, S)}
        if net:
            theta_net = np.empty((n, 2, 3))                                   # (N, 2, 3)
            for start in range(0, n, batch_size):
                chunk = np.asarray(images[start:start + batch_size])
                if kind == "jittered":
                    chunk = warp_images(chunk, G[start:start + batch_size])
                theta_net[start:start + batch_size] = predict_thetas(model, chunk, batch_size)
            errs["net"] = landmark_error(pts, theta_net, template, S, S)
            errs["net_loss_rms"] = np.sqrt(warp_loss_forward(theta_net, theta_fit, template, S)[0])
        result[kind] = {k: float(v.mean()) for k, v in errs.items()}
    return result


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------

def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def train_alignment(model, images, targets, template, steps, batch_size=DEFAULT_BATCH, lr=DEFAULT_LR,
                    momentum=DEFAULT_MOMENTUM, weight_decay=0.0, lr_drops=LR_DROPS, seed=0, flip=True,
                    jitter=True, jitter_kw=None, clip_norm=None, log_every=100, monitor: Optional[Callable] = None,
                    log=print, draw: Optional[Callable] = None):
    """Train ``model``'s alignment net in place to regress ``targets``; return the history (list of dicts).

    images (N, S, S, 3) uint8 training images (a memory map is fine);
    targets (N, 2, 3) their warps theta* (un-augmented); template (M, 2) the
    output-frame landmarks the loss measures displacement on. Each step: a
    batch of ``batch_size`` distinct images drawn from ``default_rng([seed,
    step])``, augmented (``flip``, ``jitter``; ``jitter_kw`` the ranges of
    ``jitter_thetas``, its defaults when None) with the targets following
    (``augmented_thetas``), the warp loss, SGD on the ``align.*`` parameters
    (learning rate ``lr``, divided by 10 at each fraction of the run in
    ``lr_drops``; the gradient rescaled to length ``clip_norm`` when longer,
    None for no clipping). A non-finite loss raises FloatingPointError.
    Every ``log_every`` steps (and at the last) a history
    entry {step, lr, loss_rms_px (root of the mean loss since the last
    entry), grad_norm (median since then), clipped (steps clipped since
    then), images_per_s, **monitor(model)} is logged through ``log``.

    ``draw(idx, rng) -> (batch (B, S, S, 3) uint8, target (B, 2, 3))``, when
    given, replaces the augmentation above: it makes each step's batch and
    targets from the drawn rows ``idx`` of ``images`` (any (N, H, W, 3) uint8
    array then; ``targets``, ``flip``, ``jitter`` and ``jitter_kw`` are not
    used). ``npface.pretrain_framing`` cuts its batches this way.
    """
    from npface.data.landmarks import augmented_thetas
    from npface.data.sampler import augment

    steps = _positive_int("steps", steps)
    batch_size = _positive_int("batch_size", batch_size)
    log_every = _positive_int("log_every", log_every)
    S = model.config.input_size
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 \
            or (draw is None and images.shape[1:] != (S, S, 3)):
        want = f"(N, {S}, {S}, 3)" if draw is None else "(N, H, W, 3)"
        raise ValueError(f"images must be a uint8 array {want}, got "
                         f"{getattr(images, 'dtype', None)} {getattr(images, 'shape', None)}")
    if draw is None:
        targets = np.asarray(targets, dtype=np.float64)
        if targets.shape != (len(images), 2, 3):
            raise ValueError(f"targets must have shape (N, 2, 3) = ({len(images)}, 2, 3), got {targets.shape}")

        def draw(idx, rng):              # flip and jitter the images; the targets follow (module docstring)
            batch, G, flipped = augment(np.asarray(images[idx]), rng, flip=flip, jitter=jitter,
                                        **(jitter_kw or {}))
            return batch, augmented_thetas(targets[idx], G, flipped)
    if batch_size > len(images):
        raise ValueError(f"batch_size {batch_size} is larger than the {len(images)} training images")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    template_moments(template, S)                                            # validates the template

    params = alignment_params(model)
    opt = SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    schedule = StepSchedule(lr, steps, drops=lr_drops, factor=0.1) if lr_drops else (lambda s: lr)
    history, window, norms, clipped, t0, seen = [], [], [], 0, time.perf_counter(), 0
    for step in range(steps):
        rng = np.random.default_rng([seed, step])
        idx = np.sort(rng.choice(len(images), size=batch_size, replace=False))          # (B,)
        batch, target = draw(idx, rng)                                                  # (B, S, S, 3), (B, 2, 3)
        pose, caches = align_forward(model, batch, keep=True)                           # (B, 4)
        loss, lc = warp_loss_forward(pose_to_theta(pose), target, template, S)
        if not np.isfinite(loss):
            raise FloatingPointError(f"the loss is {loss} at step {step + 1}: training diverged (lower the lr)")
        dpose = dtheta_to_dpose(warp_loss_backward(lc)).astype(model.dtype)             # (B, 4)
        grads = {}
        backward_layers(dpose, caches, grads)
        norm = float(np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values())))
        norms.append(norm)
        if clip_norm is not None and norm > clip_norm:     # rescale the whole gradient to length clip_norm
            grads = {k: g * np.float32(clip_norm / norm) for k, g in grads.items()}
            clipped += 1
        opt.step(grads, schedule(step))
        window.append(loss)
        seen += batch_size
        if (step + 1) % log_every == 0 or step + 1 == steps:
            elapsed = time.perf_counter() - t0
            entry = {"step": step + 1, "lr": float(schedule(step)), "loss_rms_px": float(np.sqrt(np.mean(window))),
                     "grad_norm": float(np.median(norms)), "clipped": clipped,
                     "images_per_s": seen / max(elapsed, 1e-9)}
            if monitor is not None:
                entry.update(monitor(model))
            history.append(entry)
            window, norms, clipped, seen, t0 = [], [], 0, 0, time.perf_counter()
            if log is not None:
                log("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items()))
    return history


# --------------------------------------------------------------------------
# LFW
# --------------------------------------------------------------------------

@dataclass
class AlignmentData:
    """Images, landmarks and targets for pretraining, split by person.

    images     (N, S, S, 3) uint8 (a memory map), the dataset's images
    points     (N, 68, 2) landmarks in the crop's pixels
    detected   (N,) bool, False where the landmarks come from dlib's fallback box
    template   (68, 2) output pixels, from the training people's detected images
    targets    (N, 2, 3) theta* of every image
    train_idx  (Nt,) int64 training images (training people, detected)
    val_idx    (Nv,) int64 held-out people's images (all of them)
    """
    images: np.ndarray
    points: np.ndarray
    detected: np.ndarray
    template: np.ndarray
    targets: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    n_train_people: int
    n_val_people: int
    description: dict


def landmark_targets(ds, train_names, landmarks):
    """(points (N, 68, 2), detected (N,) bool, template (68, 2), targets theta* (N, 2, 3)) of a dataset.

    ds: an LFW ``FaceDataset`` cropped with ``LFW_CROP``; landmarks: the path of
    ``landmarks68.tsv``. The template is made from the detected images of the
    people ``train_names`` only (see the module docstring).
    """
    from npface.data.folders import LFW_CROP
    from npface.data.landmarks import alignment_thetas, make_template, read_landmarks
    table = read_landmarks(landmarks)
    points = table.crop_points(ds.files, LFW_CROP)                            # (N, 68, 2)
    detected = table.detected[table.rows_for(ds.files)]                       # (N,)
    train_all = ds.indices_of(train_names)
    template = make_template(points[train_all[detected[train_all]]])          # (68, 2)
    return points, detected, template, alignment_thetas(points, template)     # ..., (N, 2, 3)


def lfw_paths(lfw_dir, people=None):
    """(root, people list path) of an LFW folder; ``people`` defaults to ``peopleDevTrain.txt`` in it (a bare
    name is looked up there too). Raises FileNotFoundError naming the flag for a missing folder or file."""
    root = Path(lfw_dir)
    if not (root / "lfw").is_dir():
        raise FileNotFoundError(f"--lfw: no LFW image folder {root / 'lfw'} (give the folder that holds lfw/)")
    people = Path(people) if people is not None else root / "peopleDevTrain.txt"
    if not people.is_file() and (root / people).is_file():
        people = root / people
    if not people.is_file():
        raise FileNotFoundError(f"--people: list file not found: {people}")
    return root, people


def prepare_lfw(lfw_dir, people=None, landmarks=None, val_fraction=0.1, progress=True):
    """Load LFW (``lfw_dir`` holds ``lfw/``) and its landmarks; split people; make the template and targets.

    people: a list file (default ``lfw_dir/peopleDevTrain.txt``; a bare name
    is looked up in ``lfw_dir``); landmarks: default
    ``lfw_dir/landmarks68.tsv``. People are split with
    ``split_identities(identities, val_fraction, seed=0)``, as the trainer
    does. Raises FileNotFoundError for a missing folder or file.
    """
    from npface.data.folders import LFW_CROP, load_folder, split_identities

    root, people = lfw_paths(lfw_dir, people)
    landmarks = Path(landmarks) if landmarks is not None else root / "landmarks68.tsv"
    if not landmarks.is_file():
        raise FileNotFoundError(f"--landmarks: landmark file not found: {landmarks}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")

    ds = load_folder(root / "lfw", people, crop=LFW_CROP, progress=progress)
    train_names, val_names = split_identities(ds.identities, val_fraction, seed=0)
    points, detected, template, targets = landmark_targets(ds, train_names, landmarks)
    train_all = ds.indices_of(train_names)
    train_idx = train_all[detected[train_all]]
    val_idx = ds.indices_of(val_names)
    description = {"lfw": str(root), "people": str(people), "landmarks": str(landmarks), "crop": LFW_CROP.describe(),
                   "split": {"function": "split_identities", "val_fraction": val_fraction, "seed": 0},
                   "train_people": len(train_names), "train_images": int(len(train_idx)),
                   "train_fallback_rows_dropped": int(len(train_all) - len(train_idx)),
                   "val_people": len(val_names), "val_images": int(len(val_idx)),
                   "val_fallback_rows": int((~detected[val_idx]).sum())}
    return AlignmentData(ds.images, points, detected, template, targets, train_idx, val_idx,
                         len(train_names), len(val_names), description)


def pretrain(data: AlignmentData, steps=DEFAULT_STEPS, batch_size=DEFAULT_BATCH, lr=DEFAULT_LR,
             momentum=DEFAULT_MOMENTUM, weight_decay=0.0, clip_norm=DEFAULT_CLIP, seed=0, threads=2, flip=True,
             jitter=True, log_every=100, monitor_images=256, config=TABLE2, log=print):
    """Initialise a model from ``seed``, train its alignment net on ``data``; return (model, metrics dict).

    Progress lines show the held-out landmark error (plain and jittered) of
    the first ``monitor_images`` held-out images; the final report covers
    all of them (``evaluate``). The model's provenance records
    the data, settings, template and errors.
    """
    from npface.data.landmarks import TEMPLATE_EYES, landmark_error

    threads = check_threads(threads)
    model = FaceModel(config, seed=seed)
    S = config.input_size
    val_images = np.asarray(data.images[data.val_idx])                       # (Nv, S, S, 3), small
    val_points = data.points[data.val_idx]
    mon = slice(0, min(monitor_images, len(val_images)))

    def monitor(m):
        e = evaluate(m, val_images[mon], val_points[mon], data.template)
        return {"val_err_px": e["plain"]["net"], "val_jit_err_px": e["jittered"]["net"]}

    train_images = np.asarray(data.images[data.train_idx])                   # (Nt, S, S, 3) in memory
    with limit(threads):
        before = evaluate(model, val_images, val_points, data.template, net=False)  # the untrained net IS identity
        log(f"held-out ({before['n_images']} images of {data.n_val_people} people), mean landmark error px: "
            f"identity {before['plain']['identity']:.3f}, fitted {before['plain']['fitted']:.3f}; jittered: "
            f"identity {before['jittered']['identity']:.3f}, fitted {before['jittered']['fitted']:.3f}")
        log(f"training on {len(train_images)} images of {data.n_train_people} people: {steps} steps of "
            f"{batch_size}, lr {lr:g}, momentum {momentum:g}, gradient clip {clip_norm}, {threads} threads")
        t0 = time.perf_counter()
        history = train_alignment(model, train_images, data.targets[data.train_idx], data.template, steps,
                                  batch_size, lr, momentum, weight_decay, LR_DROPS, seed, flip, jitter,
                                  clip_norm=clip_norm, log_every=log_every, monitor=monitor, log=log)
        train_time = time.perf_counter() - t0
        after = evaluate(model, val_images, val_points, data.template)
        train_fit = float(landmark_error(data.points[data.train_idx], data.targets[data.train_idx],
                                         data.template, S, S).mean())
    metrics = {
        "data": data.description,
        "template_px": np.round(data.template, 3).tolist(),
        "template_eyes_px": TEMPLATE_EYES.tolist(),
        "train_fitted_error_px": train_fit,
        "settings": {"steps": steps, "batch_size": batch_size, "lr": lr, "lr_drops": list(LR_DROPS),
                     "lr_factor": 0.1, "momentum": momentum, "weight_decay": weight_decay, "clip_norm": clip_norm,
                     "seed": seed, "threads": threads, "flip": flip, "jitter": jitter,
                     "loss": "template-landmark displacement, output px^2 "
                             "(npface.pretrain_alignment.warp_loss_forward)"},
        "heldout_landmark_error_px": after,
        "eval_jitter_seed": EVAL_SEED,
        "train_seconds": train_time,
        "history": history,
    }
    model.provenance = {"kind": "alignment pretraining (npface.pretrain_alignment)",
                        **{k: v for k, v in metrics.items() if k != "history"}}
    return model, metrics


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def _arg(kind, test, what):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not test(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m npface.pretrain_alignment",
        description="Pretrain the alignment net to regress the similarity transform that maps each image's 68 "
                    "landmarks onto a canonical 112x112 template (peopleDevTrain people only; held-out people "
                    "report the landmark error). Writes a full model file for python -m npface.train --init.")
    parser.add_argument("--lfw", required=True, metavar="DIR",
                        help="the LFW folder: holds lfw/<person>/<image>, peopleDevTrain.txt and landmarks68.tsv")
    parser.add_argument("--people", metavar="FILE", default=None,
                        help="people list file (LFW people format); default DIR/peopleDevTrain.txt")
    parser.add_argument("--landmarks", metavar="FILE", default=None,
                        help="68-point landmark table (landmarks68.tsv format); default DIR/landmarks68.tsv")
    parser.add_argument("--steps", type=_arg(int, lambda v: v >= 1, "an integer >= 1"), default=DEFAULT_STEPS,
                        help=f"SGD steps (default {DEFAULT_STEPS})")
    parser.add_argument("--batch", type=_arg(int, lambda v: v >= 1, "an integer >= 1"), default=DEFAULT_BATCH,
                        help=f"images per step (default {DEFAULT_BATCH})")
    parser.add_argument("--lr", type=_arg(float, lambda v: 0 < v < np.inf, "a number > 0"), default=DEFAULT_LR,
                        help=f"base learning rate (default {DEFAULT_LR:g}); divided by 10 at "
                             f"{' and '.join(f'{d * 100:.0f}%%' for d in LR_DROPS)} of the run")
    parser.add_argument("--momentum", type=_arg(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
                        default=DEFAULT_MOMENTUM, help=f"SGD momentum (default {DEFAULT_MOMENTUM:g})")
    parser.add_argument("--weight-decay", type=_arg(float, lambda v: 0 <= v < np.inf, "a number >= 0"),
                        default=0.0, help="L2 weight decay on the alignment weights (default 0)")
    parser.add_argument("--clip", type=_arg(float, lambda v: v >= 0, "a number >= 0"), default=DEFAULT_CLIP,
                        help=f"rescale the alignment gradient to this length when longer (loss in output "
                             f"pixels^2; default {DEFAULT_CLIP:g}; 0 turns clipping off)")
    parser.add_argument("--no-flip", action="store_true", help="do not flip training images")
    parser.add_argument("--no-jitter", action="store_true", help="do not jitter training images")
    parser.add_argument("--val-fraction", type=_arg(float, lambda v: 0 < v < 1, "a number in (0, 1)"), default=0.1,
                        help="share of the people held out for the report (default 0.1; split seed 0, "
                             "as npface.train)")
    parser.add_argument("--seed", type=_arg(int, lambda v: v >= 0, "an integer >= 0"), default=0,
                        help="seeds the initial parameters and every step's batch and augmentation (default 0)")
    parser.add_argument("--threads", type=_arg(int, lambda v: v >= 1, "an integer >= 1"), default=2,
                        help="Numba threads for training (default 2)")
    parser.add_argument("--log-every", type=_arg(int, lambda v: v >= 1, "an integer >= 1"), default=100,
                        help="print a progress line (loss, held-out error) every N steps (default 100)")
    parser.add_argument("--out", type=output_file, metavar="PATH", default=DEFAULT_OUT,
                        help=f"where to write the model (.npz; default {DEFAULT_OUT})")
    parser.add_argument("--json", type=output_file, metavar="PATH", default=None,
                        help="also write the metrics (errors, settings, history) as JSON to PATH")
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        threads = check_threads(args.threads)
    except ValueError as e:
        print(f"{prog}: error: --threads: {e}", file=sys.stderr)
        return 2
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    try:
        data = prepare_lfw(args.lfw, args.people, args.landmarks, args.val_fraction, progress=True)
        if args.batch > len(data.train_idx):
            raise ValueError(f"--batch {args.batch} is larger than the {len(data.train_idx)} training images")
    except (FileNotFoundError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        model, metrics = pretrain(data, args.steps, args.batch, args.lr, args.momentum, args.weight_decay,
                                  args.clip or None, args.seed, threads, not args.no_flip, not args.no_jitter,
                                  args.log_every, log=log)
    except FloatingPointError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    metrics["total_seconds"] = time.perf_counter() - t0
    model.provenance["total_seconds"] = metrics["total_seconds"]
    model.save(args.out)
    e = metrics["heldout_landmark_error_px"]
    log(f"held-out mean landmark error (px, {e['n_images']} images): "
        f"plain: identity {e['plain']['identity']:.3f}  fitted {e['plain']['fitted']:.3f}  "
        f"net {e['plain']['net']:.3f}; jittered: identity {e['jittered']['identity']:.3f}  "
        f"fitted {e['jittered']['fitted']:.3f}  net {e['jittered']['net']:.3f}")
    log(f"trained in {metrics['train_seconds']:.0f} s; model written to {args.out}")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(metrics, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m npface.pretrain_alignment"))
