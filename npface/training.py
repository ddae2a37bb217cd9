"""Training: data sources, the training step, checkpoints, validation, the run loop.

A step, in one straight line (paper section 3)::

    images, labels = source.batch(step)                 # P identities x K images, uint8 (k, 112, 112, 3)
    sig, cache = model.forward(images, train=True)      # signatures (k, 128)
    est = signature_gradients(sig, labels, theta, ...)  # loss, dL/dsig (k, 128), dL/dtheta  <- the seam
    grads = model.backward(est.dsig, est.dthreshold, cache)
    optimiser.step(grads, lr)

Reproducibility and resuming. Step s draws all its randomness (which
identities and images, augmentation, the pairs estimator's pairs) from
``default_rng([seed, s])``, so a batch depends only on the seed and the step
number. A checkpoint holds the parameters, the momentum velocities and the
step; resuming from it replays exactly the steps an uninterrupted run would
have taken, so (for the same thread count, which fixes the order of the
parallel sums) the result is the same to the last bit. Checkpoints are
written atomically; a run killed at any moment, ``kill -9`` included, loses
at most the steps since the last one. SIGINT/SIGTERM finish the current step
and write a checkpoint first.

The output folder::

    config.json        the exact configuration (written once, reused by --resume)
    checkpoint.npz     the latest checkpoint
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
from typing import Optional, Tuple

import numpy as np

from npface import verification
from npface.data.cache import atomic_write_text
from npface.estimators import ESTIMATORS, signature_gradients
from npface.model import TABLE2, FaceModel, ModelConfig, load
from npface.optim import SGD, StepSchedule
from npface.threads import check_threads, limit

CHECKPOINT_FORMAT = 1


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

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
    balance: bool = True
    threshold_init: Optional[float] = None  # None: the median squared distance of the first batch
    flip: bool = False
    jitter: bool = False
    seed: int = 0
    threads: int = 2
    init: Optional[str] = None              # a model file to start from (e.g. a pretrained alignment net)
    val_fraction: float = 0.1               # folder data: share of people held out for validation
    val_pairs: int = 1000                   # validation pairs (half same, half different)
    validate_every: int = 50
    checkpoint_every: int = 50
    synthetic_identities: int = 5000

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
        return cls(**d)

    def check(self):
        """Raise ValueError (naming the flag) for any setting that cannot work."""
        def positive(name, v):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
        for name in ("steps", "batch_identities", "validate_every", "checkpoint_every", "val_pairs"):
            positive(name, getattr(self, name))
        if self.images_per_identity < 2:
            raise ValueError(f"--images-per-identity must be at least 2 (a batch needs same-identity pairs), "
                             f"got {self.images_per_identity}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"--estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        if self.data not in ("synthetic", "folder"):
            raise ValueError(f"data must be 'synthetic' or 'folder', got {self.data!r}")
        if self.data == "folder" and not self.lfw:
            raise ValueError("folder data needs --lfw DIR")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        check_threads(self.threads)
        SGD({}, self.lr, self.momentum, self.weight_decay, {"align.": self.align_lr_scale})  # validates these
        StepSchedule(self.lr, self.steps, self.lr_drops, self.lr_factor)      # validates the schedule
        return self


# --------------------------------------------------------------------------
# Data sources: batch(rng) -> (images (k, S, S, 3) uint8, labels (k,)); a fixed validation set
# --------------------------------------------------------------------------

@dataclass
class ValidationSet:
    images: np.ndarray       # (M, S, S, 3) uint8
    pairs: np.ndarray        # (Q, 2) rows of images
    is_same: np.ndarray      # (Q,) bool
    fold: np.ndarray         # (Q,) int, 10 folds balanced in same / different
    description: str


def _folds(is_same, n_folds=10):
    """Fold of each pair: the same pairs dealt round-robin, then the different pairs, so folds stay balanced."""
    fold = np.empty(len(is_same), dtype=np.int64)
    for value in (True, False):
        idx = np.flatnonzero(is_same == value)
        fold[idx] = np.arange(len(idx)) % n_folds
    return fold


class SyntheticSource:
    """Procedural identities (``npface.data.synthetic``): train identities and disjoint held-out ones."""

    def __init__(self, cfg: TrainConfig):
        from npface.data.synthetic import SyntheticFaces
        self.faces = SyntheticFaces(seed=cfg.seed, n_identities=cfg.synthetic_identities)
        self.cfg = cfg
        self.description = f"synthetic faces, {cfg.synthetic_identities} training identities (seed {cfg.seed})"

    def batch(self, rng):
        images, labels = self.faces.sample_batch(self.cfg.batch_identities, self.cfg.images_per_identity, rng)
        if self.cfg.flip or self.cfg.jitter:
            from npface.data.sampler import augment
            images = augment(images, rng, flip=self.cfg.flip, jitter=self.cfg.jitter)[0]
        return images, labels

    def validation(self):
        n = self.cfg.val_pairs
        vs = self.faces.verification_set(n_pairs=n, n_identities=max(50, n // 6), images_per_identity=4, seed=12345)
        return ValidationSet(vs.images, vs.pairs, vs.is_same, vs.fold,
                             f"{n} pairs of {max(50, n // 6)} held-out synthetic identities")


class FolderSource:
    """Folders of identities (LFW's layout); people split into training and held-out validation people."""

    def __init__(self, cfg: TrainConfig, progress=True):
        from npface.data.folders import load_folder, split_identities
        from npface.data.sampler import PKSampler
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
        train_names, val_names = split_identities(self.ds.identities, cfg.val_fraction, seed=0)
        self.train_idx = self.ds.indices_of(train_names)
        self.val_idx = self.ds.indices_of(val_names)
        self.sampler = PKSampler(self.ds.labels, cfg.batch_identities, cfg.images_per_identity,
                                 indices=self.train_idx)
        self.cfg = cfg
        self.description = (f"{images_root}: {len(train_names)} training people ({len(self.train_idx)} images, "
                            f"{self.sampler.n_eligible_images} in people with >= 2), {len(val_names)} held out")

    def batch(self, rng):
        b = self.sampler.batch(self.ds.images, rng, flip=self.cfg.flip, jitter=self.cfg.jitter)
        return b.images, b.labels

    def validation(self):
        from npface.data.sampler import validation_pairs
        pairs, same = validation_pairs(self.ds.labels, self.cfg.val_pairs // 2, seed=0, indices=self.val_idx)
        rows = np.unique(pairs)
        local = np.searchsorted(rows, pairs)
        return ValidationSet(np.asarray(self.ds.images[rows]), local, same, _folds(same),
                             f"{len(same)} pairs of held-out people ({len(rows)} images)")


def make_source(cfg, progress=True):
    return SyntheticSource(cfg) if cfg.data == "synthetic" else FolderSource(cfg, progress)


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------

def validate(model, vset: ValidationSet, threads):
    """Held-out verification: accuracy with the learned theta, and 10-fold accuracy with a fitted threshold."""
    sig = model.embed(vset.images, threads=threads)
    d = ((sig[vset.pairs[:, 0]] - sig[vset.pairs[:, 1]]) ** 2).sum(axis=1, dtype=np.float64)
    result = verification.k_fold(d, vset.is_same, vset.fold, learned_threshold=model.threshold)
    return {"val_accuracy": result.accuracy, "val_accuracy_std": result.accuracy_std, "val_auc": result.auc,
            "val_learned_threshold_accuracy": result.learned_threshold_accuracy,
            "val_mean_same_distance": float(d[vset.is_same].mean()),
            "val_mean_different_distance": float(d[~vset.is_same].mean())}


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------

def save_checkpoint(path, model, optimiser, step, cfg, best):
    """Parameters, momentum, step and configuration, written atomically (temp file + rename)."""
    path = Path(path)
    arrays = {f"param/{k}": v for k, v in model.params.items()}
    arrays.update(optimiser.state())
    state = {"format": CHECKPOINT_FORMAT, "step": step, "config": cfg.to_json(), "best": best,
             "model_config": model.config.to_json(), "provenance": model.provenance}
    arrays["state.json"] = np.array(json.dumps(state))
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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


class _StopRequest:
    """SIGINT / SIGTERM set a flag; the loop finishes its step, checkpoints and stops."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.previous = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handler(self, signum, frame):
        if self.requested:                   # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

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


def _duration(seconds):
    seconds = int(max(0, seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _initial_model(cfg, source):
    """A fresh Table 2 model, or the --init model; theta set from the first batch when not given."""
    if cfg.init:
        model = load(cfg.init)
        model.provenance = {"init": str(cfg.init), "init_provenance": model.provenance}
    else:
        model = FaceModel(TABLE2, seed=cfg.seed)
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


def run(cfg: TrainConfig, out_dir, resume=False, log=print, progress=True):
    """Train (or resume) into ``out_dir``; return the final validation metrics."""
    out_dir = Path(out_dir)
    metrics_path = out_dir / "metrics.jsonl"
    checkpoint = out_dir / "checkpoint.npz"
    if resume:
        if not checkpoint.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint.npz in {out_dir}")
        params, opt_arrays, state = load_checkpoint(checkpoint)
        cfg = TrainConfig.from_json(state["config"]).check()
        start, best = int(state["step"]), state.get("best")
        log(f"Resuming {out_dir} at step {start} of {cfg.steps}")
    else:
        cfg.check()
        if checkpoint.exists():
            raise FileExistsError(f"{out_dir} already holds a run (checkpoint.npz); use --resume {out_dir} "
                                  f"to continue it, or choose another --out")
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "config.json", json.dumps(cfg.to_json(), indent=1) + "\n")
        start, best = 0, None

    source = make_source(cfg, progress=progress)
    log(f"Data: {source.description}")
    vset = source.validation()
    log(f"Validation: {vset.description}")

    if resume:
        model = FaceModel(ModelConfig.from_json(state["model_config"]), params=params,
                          provenance=state.get("provenance"))
        _truncate_metrics(metrics_path, start)
    else:
        model = _initial_model(cfg, source)
    optimiser = SGD(model.params, cfg.lr, cfg.momentum, cfg.weight_decay, {"align.": cfg.align_lr_scale})
    model.frozen = ("align.",) if cfg.align_lr_scale == 0 else ()      # a frozen net needs no backward pass
    if resume:
        optimiser.load_state(opt_arrays)
    schedule = StepSchedule(cfg.lr, cfg.steps, cfg.lr_drops, cfg.lr_factor)
    k = cfg.batch_identities * cfg.images_per_identity
    log(f"Training {cfg.steps} steps, {cfg.estimator} estimator, batch {cfg.batch_identities} x "
        f"{cfg.images_per_identity} = {k}, lr {cfg.lr} (x{cfg.lr_factor} at {list(cfg.lr_drops)}), "
        f"momentum {cfg.momentum}, weight decay {cfg.weight_decay}, alignment lr x{cfg.align_lr_scale}, "
        f"{cfg.threads} threads, "
        f"theta starts at {model.threshold:.3f}")

    bar = Progress(cfg.steps, start, log) if progress else None
    started = time.perf_counter()
    last = {}
    with _StopRequest() as stop, limit(cfg.threads), open(metrics_path, "a") as metrics:
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            rng = np.random.default_rng([cfg.seed, step])
            images, labels = source.batch(rng)
            sig, cache = model.forward(images, train=True)
            if not np.all(np.isfinite(sig)):
                # checked here, not left to the loss: a NaN distance fails the hinge's "u > 0" test, so the
                # loss of NaN signatures is 0, not NaN, and training would go on without any gradient
                raise TrainingDiverged(f"step {step + 1}: the signatures are no longer finite; stopped. "
                                       + _last_good(checkpoint))
            est = signature_gradients(sig, labels, model.threshold, cfg.estimator, rng, cfg.balance)
            if not math.isfinite(est.loss):
                raise TrainingDiverged(f"step {step + 1}: the loss is {est.loss}; stopped. " + _last_good(checkpoint))
            grads = model.backward(est.dsig, est.dthreshold, cache)
            lr = schedule(step)
            optimiser.step(grads, lr)
            dt = time.perf_counter() - t0
            row = {"step": step + 1, "loss": est.loss, "threshold": model.threshold, "lr": lr,
                   "images_per_s": k / dt, "pairs": est.n_pairs, "time": time.perf_counter() - started}
            metrics.write(json.dumps(row) + "\n")
            if bar:
                bar.update(step, row, (cfg.steps - step - 1) * dt)

            done = step + 1 == cfg.steps
            if (step + 1) % cfg.validate_every == 0 or done:
                last = validate(model, vset, cfg.threads)
                last["step"] = step + 1
                metrics.write(json.dumps(last) + "\n")
                if bar:
                    bar.write(f"step {step + 1}: held-out accuracy {last['val_accuracy']:.4f} "
                              f"(+-{last['val_accuracy_std']:.4f}, 10-fold), with learned theta "
                              f"{last['val_learned_threshold_accuracy']:.4f}, AUC {last['val_auc']:.4f}")
                if best is None or last["val_accuracy"] > best["val_accuracy"]:
                    best = dict(last)
                    _with_provenance(model, cfg, source, vset, step + 1, last).save(out_dir / "best.npz")
            if (step + 1) % cfg.checkpoint_every == 0 or done or stop.requested:
                metrics.flush()
                if not all(np.all(np.isfinite(v)) for v in model.params.values()):
                    raise TrainingDiverged(f"step {step + 1}: parameters are no longer finite; stopped. "
                                           + _last_good(checkpoint))
                save_checkpoint(checkpoint, model, optimiser, step + 1, cfg, best)
            if stop.requested and not done:
                if bar:
                    bar.close()
                log(f"Stopped at step {step + 1}; checkpoint written. Continue with --resume {out_dir}")
                return last
    if bar:
        bar.close()
    _with_provenance(model, cfg, source, vset, cfg.steps, last).save(out_dir / "model.npz")
    log(f"Done: {out_dir / 'model.npz'}; held-out accuracy {last.get('val_accuracy', float('nan')):.4f} "
        f"(10-fold), with the learned theta {last.get('val_learned_threshold_accuracy', float('nan')):.4f}; "
        f"best {best['val_accuracy']:.4f} at step {best['step']} ({out_dir / 'best.npz'})")
    return last


def _with_provenance(model, cfg, source, vset, step, val):
    model.provenance.update({"trained_steps": step, "data": source.description, "validation": vset.description,
                             "validation_metrics": val, "config": cfg.to_json()})
    return model


def _last_good(checkpoint: Path) -> str:
    """Where a diverged run can go on from."""
    if checkpoint.is_file():
        return f"The last good checkpoint is {checkpoint} (resume it with a lower --lr)"
    return "No checkpoint was written yet (start again with a lower --lr)"


def _truncate_metrics(path, step):
    """Drop metric lines after ``step`` (written after the checkpoint a resumed run restarts from)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))
