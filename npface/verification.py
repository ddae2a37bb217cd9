"""LFW pairs files and the verification protocols built on :mod:`npface.metrics`.

Pairs files
-----------
The format is LFW's (README.txt, sections 3a-3c). Fields are separated by
whitespace (LFW uses tabs); image numbers are 1-based; image ``n`` of person
``name`` is the file ``lfw/<name>/<name>_%04d.jpg``.

- Header, line 1: either one integer N (View 1, e.g. ``pairsDevTrain.txt``:
  one fold of N same pairs then N different pairs) or two integers
  ``folds N`` (View 2, ``pairs.txt``: ``folds`` consecutive folds, each of N
  same pairs then N different pairs).
- A same pair is 3 fields, ``name n1 n2``; a different pair is 4 fields,
  ``name1 n1 name2 n2``.

So pair p (0-based, in file order, on line p + 2) belongs to fold
p // (2 N) and is a same pair iff p % (2 N) < N.

Parsing is strict, because one dropped or misread line shifts every later
pair into the wrong fold or class: a wrong field count, a non-integer or
non-positive image number, a same pair of one image with itself, a different
pair naming one person twice, a blank line among the pairs, too few or too
many lines, or an empty file all raise ValueError naming the file and the line
number (``<file>:<line>: <message>``). Blank lines at the very end are allowed.

Protocols
---------
Three ways to turn the distances of scored pairs into an accuracy, all
returning a :class:`VerificationResult`:

- :func:`fit_and_test`: fit the threshold on one set of pairs (e.g. View 1
  training pairs), apply it to another.
- :func:`k_fold`: for each fold, fit the threshold on the other folds and test
  on it (LFW's 10-fold protocol on View 2); the accuracy is the mean over
  folds, with its standard deviation.
- :func:`with_learned_threshold`: apply a given threshold, the model's own
  learned theta of eq. 1-2, with no fitting at all.

Folds. View 2's folds are its own (each holds different people). Where pairs
come without folds (a View 1 file, the trainer's validation pairs, the
synthetic verification set), :func:`person_folds` assigns them, by person:
no person appears in two folds, so a threshold is never fitted on pairs that
share people with the fold it is tested on.

Distances follow :mod:`npface.metrics`: squared Euclidean, a pair is declared
same iff distance < threshold.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from npface import metrics
from npface.metrics import DEFAULT_FARS

__all__ = [
    "PairList",
    "ResolvedPairs",
    "VerificationResult",
    "fit_and_test",
    "image_path",
    "k_fold",
    "lfw_images_dir",
    "parse_pairs",
    "person_folds",
    "read_pairs",
    "resolve_pairs",
    "with_learned_threshold",
]

_POSITIVE_INT = re.compile(r"[0-9]+\Z")


# --------------------------------------------------------------------------
# Pairs files
# --------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class PairList:
    """The pairs of an LFW pairs file, in file order (P pairs).

    Pair p compares image ``image_a[p]`` of ``name_a[p]`` with image
    ``image_b[p]`` of ``name_b[p]``; for a same pair ``name_b[p] == name_a[p]``.
    Image numbers are 1-based, as in the file.
    """
    source: str                 # the file the pairs were read from
    name_a: tuple[str, ...]     # (P,)
    image_a: np.ndarray         # (P,) int64, >= 1
    name_b: tuple[str, ...]     # (P,)
    image_b: np.ndarray         # (P,) int64, >= 1
    is_same: np.ndarray         # (P,) bool
    fold: np.ndarray            # (P,) int64 in [0, n_folds)
    line: np.ndarray            # (P,) int64, the 1-based line of each pair in the file
    n_folds: int                # 1 for a View 1 file (single-count header)
    same_per_fold: int          # N: same pairs per fold, equal to different pairs per fold

    @property
    def n_pairs(self) -> int:
        """P = 2 * n_folds * same_per_fold."""
        return int(self.is_same.shape[0])


def parse_pairs(text: str, source: str = "<pairs>") -> PairList:
    """Parse the text of an LFW pairs file (see the module docstring).

    Args:
        text: the whole file.
        source: the name used in error messages and stored in the result.

    Raises:
        ValueError: ``"<source>:<line>: <what is wrong>"`` for any deviation
            from the format.
    """
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{source}: empty pairs file (expected a header line)")

    def fail(lineno: int, message: str) -> ValueError:
        return ValueError(f"{source}:{lineno}: {message}")

    def positive_int(token: str, lineno: int, what: str) -> int:
        if not _POSITIVE_INT.match(token) or int(token) < 1:
            raise fail(lineno, f"{what} must be a positive integer, got {token!r}")
        return int(token)

    header = lines[0].split()
    if len(header) == 1:
        n_folds = 1
        per_fold = positive_int(header[0], 1, "the number of same pairs")
    elif len(header) == 2:
        n_folds = positive_int(header[0], 1, "the number of folds")
        per_fold = positive_int(header[1], 1, "the number of same pairs per fold")
    else:
        raise fail(1, "header must be 'N' (View 1) or 'folds N' (View 2), "
                      f"got {len(header)} fields: {lines[0].strip()!r}")

    n_pairs = 2 * n_folds * per_fold
    n_lines = len(lines) - 1

    name_a: list[str] = []
    name_b: list[str] = []
    image_a = np.empty(n_pairs, dtype=np.int64)  # (P,)
    image_b = np.empty(n_pairs, dtype=np.int64)  # (P,)
    pair_index = np.arange(n_pairs, dtype=np.int64)  # (P,)
    fold = pair_index // (2 * per_fold)  # (P,)
    is_same = (pair_index % (2 * per_fold)) < per_fold  # (P,)
    line = pair_index + 2  # (P,)

    for p in range(n_pairs):
        lineno = p + 2
        kind = "same" if is_same[p] else "different"
        if p >= n_lines:
            raise fail(lineno, f"missing line: expected a {kind} pair (pair {p + 1} of {n_pairs}, "
                               f"fold {fold[p] + 1} of {n_folds}), the file ends after "
                               f"line {len(lines)}")
        fields = lines[p + 1].split()
        if not fields:
            raise fail(lineno, f"blank line where a {kind} pair was expected")
        if is_same[p]:
            if len(fields) != 3:
                raise fail(lineno, "expected a same pair 'name n1 n2' (3 fields), "
                                   f"got {len(fields)} fields: {lines[p + 1].strip()!r}")
            a, i, j = fields
            b = a
            ia = positive_int(i, lineno, "image number n1")
            ib = positive_int(j, lineno, "image number n2")
            if ia == ib:
                raise fail(lineno, f"same pair compares image {ia} of {a} with itself")
        else:
            if len(fields) != 4:
                raise fail(lineno, "expected a different pair 'name1 n1 name2 n2' (4 fields), "
                                   f"got {len(fields)} fields: {lines[p + 1].strip()!r}")
            a, i, b, j = fields
            ia = positive_int(i, lineno, "image number n1")
            ib = positive_int(j, lineno, "image number n2")
            if a == b:
                raise fail(lineno, f"different pair names the same person twice: {a!r}")
        name_a.append(a)
        name_b.append(b)
        image_a[p] = ia
        image_b[p] = ib

    if n_lines > n_pairs:
        raise fail(n_pairs + 2, f"extra line: the header announces {n_pairs} pairs "
                                f"({n_folds} fold(s) of {per_fold} same + {per_fold} different), "
                                f"the file has {n_lines} lines after it")

    return PairList(source=source, name_a=tuple(name_a), image_a=image_a,
                    name_b=tuple(name_b), image_b=image_b, is_same=is_same, fold=fold,
                    line=line, n_folds=n_folds, same_per_fold=per_fold)


def read_pairs(path) -> PairList:
    """Read and parse an LFW pairs file (UTF-8; CRLF line ends are fine).

    Raises:
        ValueError: as :func:`parse_pairs`, naming ``path`` and the line.
        FileNotFoundError: when ``path`` does not exist.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    return parse_pairs(text, source=str(path))


def lfw_images_dir(lfw_root) -> Path:
    """The folder that holds the ``<name>/`` folders of LFW.

    ``lfw_root`` may be the dataset folder (the one holding README.txt, the
    pairs files and ``lfw/``, as NPFACE_LFW names it), in which case its
    ``lfw/`` subfolder is returned; otherwise, when it has no ``lfw/``
    subfolder, it is taken to be the images folder itself.

    Raises:
        FileNotFoundError: when ``lfw_root`` is not a directory.
    """
    root = Path(lfw_root)
    if not root.is_dir():
        raise FileNotFoundError(f"LFW folder not found: {root}")
    inner = root / "lfw"
    return inner if inner.is_dir() else root


def image_path(images_dir, name: str, number: int) -> Path:
    """``images_dir/<name>/<name>_%04d.jpg``: image ``number`` (1-based) of ``name``."""
    return Path(images_dir) / name / f"{name}_{int(number):04d}.jpg"


@dataclass(frozen=True, eq=False)
class ResolvedPairs:
    """Pairs with both images resolved to existing files (P pairs, in file order)."""
    source: str
    paths_a: tuple[Path, ...]   # (P,)
    paths_b: tuple[Path, ...]   # (P,)
    is_same: np.ndarray         # (P,) bool
    fold: np.ndarray            # (P,) int64 in [0, n_folds)
    n_folds: int

    @property
    def n_pairs(self) -> int:
        return int(self.is_same.shape[0])

    def unique_images(self) -> tuple[tuple[Path, ...], np.ndarray, np.ndarray]:
        """The distinct images, so that each is embedded once.

        Returns:
            ``(paths, index_a, index_b)``: ``paths`` (M,) the distinct image
            paths in order of first appearance, and ``index_a``, ``index_b``
            (P,) int64 such that pair p compares ``paths[index_a[p]]`` with
            ``paths[index_b[p]]``. With signatures ``sig`` (M, D) of ``paths``,
            ``metrics.squared_distances(sig[index_a], sig[index_b])`` gives the
            (P,) distances.
        """
        position: dict[Path, int] = {}
        index_a = np.empty(self.n_pairs, dtype=np.int64)  # (P,)
        index_b = np.empty(self.n_pairs, dtype=np.int64)  # (P,)
        for p, (a, b) in enumerate(zip(self.paths_a, self.paths_b)):
            index_a[p] = position.setdefault(a, len(position))
            index_b[p] = position.setdefault(b, len(position))
        return tuple(position), index_a, index_b


def resolve_pairs(pairs: PairList, lfw_root) -> ResolvedPairs:
    """Map every pair to its two image files under ``lfw_root`` and check they exist.

    No pair is ever dropped (that would shift every later pair's fold): if any
    image is missing, nothing is returned.

    Args:
        pairs: from :func:`read_pairs` / :func:`parse_pairs`.
        lfw_root: the LFW dataset folder or its images folder (see
            :func:`lfw_images_dir`).

    Raises:
        FileNotFoundError: naming the first missing image, its pair and line,
            and how many images are missing in all.
    """
    images = lfw_images_dir(lfw_root)
    paths_a = tuple(image_path(images, n, i) for n, i in zip(pairs.name_a, pairs.image_a))
    paths_b = tuple(image_path(images, n, i) for n, i in zip(pairs.name_b, pairs.image_b))
    exists: dict[Path, bool] = {}
    first_missing = None
    for p in range(pairs.n_pairs):
        for path in (paths_a[p], paths_b[p]):
            if path not in exists:
                exists[path] = path.is_file()
            if not exists[path] and first_missing is None:
                first_missing = (p, path)
    if first_missing is not None:
        p, path = first_missing
        n_missing = sum(1 for ok in exists.values() if not ok)
        raise FileNotFoundError(
            f"image not found: {path} (pair {p + 1}, line {int(pairs.line[p])} of {pairs.source}); "
            f"{n_missing} distinct image(s) missing in all")
    return ResolvedPairs(source=pairs.source, paths_a=paths_a, paths_b=paths_b,
                         is_same=pairs.is_same.copy(), fold=pairs.fold.copy(),
                         n_folds=pairs.n_folds)


# --------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------

@dataclass
class VerificationResult:
    """The outcome of one protocol. Rates are fractions in [0, 1].

    Fields that a protocol does not define are None (never 0), so that a
    missing figure cannot be read as a measured one:

    - ``protocol``: "fit-and-test", "k-fold" or "learned-threshold".
    - ``n_pairs``, ``n_same``, ``n_different``: the pairs the accuracy and the
      threshold-free metrics are computed on (the test pairs; for k-fold all
      pairs, each of which is tested once).
    - ``accuracy``: fit-and-test: on the test pairs at the threshold fitted on
      the training pairs. k-fold: the MEAN of the per-fold test accuracies.
      learned-threshold: at the given threshold.
    - ``accuracy_std``: k-fold only: the sample standard deviation (ddof=1) of
      the per-fold accuracies; None otherwise (one accuracy has no spread).
    - ``accuracy_sem``: k-fold only: accuracy_std / sqrt(n_folds), the standard
      error of the mean that LFW's reporting procedure asks for; None otherwise.
    - ``auc``, ``eer``, ``tar_at_far``: threshold-free, on the same pairs as
      ``n_pairs`` (for k-fold, pooled over all folds: the distances come from
      one model, so they are comparable across folds). ``tar_at_far`` maps each
      FAR to its TAR, or to None when there are fewer than 1/FAR different
      pairs; ``tar_at_far_note`` then says so (None when every FAR resolved).
    - ``threshold``: the one threshold applied: fitted on the training pairs
      (fit-and-test) or the given theta (learned-threshold); None for k-fold,
      whose thresholds are in ``fold_thresholds``.
    - ``train_accuracy``: fit-and-test: the fitted threshold's accuracy on the
      training pairs; None otherwise.
    - ``n_folds``, ``fold_thresholds``, ``fold_accuracies``: k-fold only (fold
      f's threshold is fitted on the other folds, its accuracy is on fold f).
    - ``learned_threshold``, ``learned_threshold_accuracy``: when a learned
      theta is given, it and the accuracy at it on the same pairs as
      ``n_pairs`` (no fitting, so for k-fold all pairs are test pairs).
    """
    protocol: str
    n_pairs: int
    n_same: int
    n_different: int
    accuracy: float
    auc: float
    eer: float
    tar_at_far: dict[float, float | None]
    tar_at_far_note: str | None = None
    accuracy_std: float | None = None
    accuracy_sem: float | None = None
    threshold: float | None = None
    train_accuracy: float | None = None
    n_folds: int | None = None
    fold_thresholds: list[float] | None = None
    fold_accuracies: list[float] | None = None
    learned_threshold: float | None = None
    learned_threshold_accuracy: float | None = None
    tar_at_far_detail: dict[float, metrics.TarAtFar] = field(default_factory=dict, repr=False)

    def to_json_dict(self) -> dict:
        """A dict of plain Python values, for ``json.dumps(..., allow_nan=False)``.

        FAR keys become strings in ``%g`` form ("0.01", "0.001"); the per-FAR
        detail (reached FAR, threshold, different-pair count) is kept under
        ``tar_at_far_detail``.
        """
        out = {
            "protocol": self.protocol,
            "n_pairs": int(self.n_pairs),
            "n_same": int(self.n_same),
            "n_different": int(self.n_different),
            "accuracy": float(self.accuracy),
            "accuracy_std": _opt_float(self.accuracy_std),
            "accuracy_sem": _opt_float(self.accuracy_sem),
            "auc": float(self.auc),
            "eer": float(self.eer),
            "tar_at_far": {f"{far:g}": _opt_float(tar) for far, tar in self.tar_at_far.items()},
            "tar_at_far_note": self.tar_at_far_note,
            "threshold": _opt_float(self.threshold),
            "train_accuracy": _opt_float(self.train_accuracy),
            "n_folds": None if self.n_folds is None else int(self.n_folds),
            "fold_thresholds": _opt_floats(self.fold_thresholds),
            "fold_accuracies": _opt_floats(self.fold_accuracies),
            "learned_threshold": _opt_float(self.learned_threshold),
            "learned_threshold_accuracy": _opt_float(self.learned_threshold_accuracy),
            "tar_at_far_detail": {
                f"{far:g}": {"tar": _opt_float(r.tar), "far": _opt_float(r.far),
                             "threshold": _opt_float(r.threshold), "n_different": int(r.n_diff),
                             "resolvable": bool(r.resolvable), "note": r.note}
                for far, r in self.tar_at_far_detail.items()
            },
        }
        return out


def _opt_float(x) -> float | None:
    return None if x is None else float(x)


def _opt_floats(xs) -> list[float] | None:
    return None if xs is None else [float(x) for x in xs]


def _check_fars(fars) -> tuple[float, ...]:
    try:
        values = tuple(float(f) for f in fars)
    except (TypeError, ValueError):
        raise ValueError(f"fars must be a sequence of rates in (0, 1], got {fars!r}") from None
    for f in values:
        if not (0.0 < f <= 1.0):
            raise ValueError(f"fars must be rates in (0, 1], got {f}")
    return values


def _threshold_free(d: np.ndarray, s: np.ndarray, fars: tuple[float, ...]) -> dict:
    """AUC, EER and TAR@FAR on pairs (P,), (P,) that hold both classes."""
    detail = {f: metrics.tar_at_far(d, s, f) for f in fars}
    notes = [r.note for r in detail.values() if r.note is not None]
    return {
        "auc": metrics.roc_auc(d, s),
        "eer": metrics.equal_error_rate(d, s),
        "tar_at_far": {f: r.tar for f, r in detail.items()},
        "tar_at_far_note": "; ".join(notes) if notes else None,
        "tar_at_far_detail": detail,
    }


def _counts(s: np.ndarray) -> dict:
    n_same = int(np.count_nonzero(s))
    return {"n_pairs": int(s.shape[0]), "n_same": n_same, "n_different": int(s.shape[0]) - n_same}


def _checked_set(distances, is_same, name_d: str, name_s: str) -> tuple[np.ndarray, np.ndarray]:
    d, s = metrics._check_pairs(distances, is_same, name_d, name_s)
    metrics._require_both_classes(s, f"scoring {name_d}", name_s)
    return d, s


def fit_and_test(train_distances, train_is_same, test_distances, test_is_same, *,
                 learned_threshold=None, fars=DEFAULT_FARS) -> VerificationResult:
    """Fit the threshold on the training pairs, report on the test pairs.

    Args:
        train_distances: (Pt,) distances of the pairs the threshold is fitted on.
        train_is_same: (Pt,) bool.
        test_distances: (P,) distances of the pairs reported on.
        test_is_same: (P,) bool with at least one same and one different pair.
        learned_threshold: optional model theta, also scored on the test pairs.
        fars: the FARs at which the TAR is reported.
    """
    dt, st = metrics._check_pairs(train_distances, train_is_same, "train_distances", "train_is_same")
    d, s = _checked_set(test_distances, test_is_same, "test_distances", "test_is_same")
    fars = _check_fars(fars)
    threshold = metrics.fit_threshold(dt, st)
    result = VerificationResult(
        protocol="fit-and-test", **_counts(s),
        accuracy=metrics.accuracy(d, s, threshold),
        threshold=threshold,
        train_accuracy=metrics.accuracy(dt, st, threshold),
        **_threshold_free(d, s, fars),
    )
    _add_learned(result, d, s, learned_threshold)
    return result


def k_fold(distances, is_same, fold, *, learned_threshold=None,
           fars=DEFAULT_FARS) -> VerificationResult:
    """K-fold cross-validation: fold f is tested at the threshold fitted on the other folds.

    Args:
        distances: (P,) distances of all pairs.
        is_same: (P,) bool with at least one same and one different pair.
        fold: (P,) int, fold labels 0 .. K-1, K >= 2, every fold non-empty
            (``PairList.fold``; K = 10 for LFW View 2).
        learned_threshold: optional model theta, scored on all pairs.
        fars: the FARs at which the TAR is reported (pooled over all pairs).
    """
    d, s = _checked_set(distances, is_same, "distances", "is_same")
    fold = _check_fold(fold, d.shape[0])  # (P,)
    fars = _check_fars(fars)
    n_folds = int(fold.max()) + 1
    thresholds: list[float] = []
    accuracies: list[float] = []
    for f in range(n_folds):
        test = fold == f  # (P,)
        t = metrics.fit_threshold(d[~test], s[~test])
        thresholds.append(t)
        accuracies.append(metrics.accuracy(d[test], s[test], t))
    acc = np.asarray(accuracies)  # (K,)
    std = float(np.std(acc, ddof=1))
    result = VerificationResult(
        protocol="k-fold", **_counts(s),
        accuracy=float(np.mean(acc)),
        accuracy_std=std,
        accuracy_sem=std / math.sqrt(n_folds),
        n_folds=n_folds,
        fold_thresholds=thresholds,
        fold_accuracies=accuracies,
        **_threshold_free(d, s, fars),
    )
    _add_learned(result, d, s, learned_threshold)
    return result


def with_learned_threshold(distances, is_same, threshold, *,
                           fars=DEFAULT_FARS) -> VerificationResult:
    """Apply a given threshold (the model's learned theta); nothing is fitted.

    Args:
        distances: (P,) distances.
        is_same: (P,) bool with at least one same and one different pair.
        threshold: theta; a pair is declared same iff distance < theta.
        fars: the FARs at which the TAR is reported.
    """
    d, s = _checked_set(distances, is_same, "distances", "is_same")
    t = metrics._check_threshold(threshold, "threshold")
    fars = _check_fars(fars)
    acc = metrics.accuracy(d, s, t)
    return VerificationResult(
        protocol="learned-threshold", **_counts(s),
        accuracy=acc, threshold=t,
        learned_threshold=t, learned_threshold_accuracy=acc,
        **_threshold_free(d, s, fars),
    )


def _add_learned(result: VerificationResult, d: np.ndarray, s: np.ndarray, learned_threshold) -> None:
    if learned_threshold is None:
        return
    t = metrics._check_threshold(learned_threshold, "learned_threshold")
    result.learned_threshold = t
    result.learned_threshold_accuracy = metrics.accuracy(d, s, t)


def _check_fold(fold, n: int) -> np.ndarray:
    """Return ``fold`` as int64 (P,), labels 0 .. K-1 with K >= 2 and no empty fold."""
    f = np.asarray(fold)
    if f.ndim != 1 or f.shape[0] != n:
        raise ValueError(f"fold must have shape ({n},) to match the distances, got shape {f.shape}")
    if f.dtype == np.bool_ or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"fold must be an integer array of shape ({n},), got dtype {f.dtype}")
    f = f.astype(np.int64, copy=False)
    if f.min() < 0:
        raise ValueError(f"fold labels must be 0 .. K-1, got {int(f.min())}")
    counts = np.bincount(f)  # (K,)
    if counts.shape[0] < 2:
        raise ValueError("fold must hold at least 2 folds (labels 0 .. K-1, K >= 2), got only fold 0")
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(f"fold labels must be 0 .. K-1 with every fold non-empty; "
                         f"fold {int(empty[0])} is empty (K = {counts.shape[0]})")
    return f


def person_folds(person_a, person_b, is_same, n_folds=10) -> np.ndarray:
    """People-disjoint folds for pairs that come without folds: -> fold (P,) int64 in [0, n_folds).

    person_a, person_b (P,): who is in each pair (names or integer labels;
    equal for a same pair); is_same (P,) bool. Pairs that share a person,
    directly or through a chain of pairs, form one group and go to one fold,
    so no person is in two folds. Groups are placed largest first (ties by
    their first pair in input order), each into the fold that keeps the
    folds' same and different counts most even (least sum of squares), so
    the assignment is deterministic. Raises ValueError when n_folds < 2 or
    when the pairs link too many people together for every fold to get at
    least one same and one different pair.
    """
    a, b = np.asarray(person_a), np.asarray(person_b)
    s = np.asarray(is_same, dtype=bool)                                        # (P,)
    if a.ndim != 1 or a.shape != b.shape or a.shape != s.shape:
        raise ValueError(f"person_a, person_b and is_same must have one shape (P,), "
                         f"got {a.shape}, {b.shape}, {s.shape}")
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {n_folds!r}")
    people, ids = np.unique(np.concatenate([a, b]), return_inverse=True)
    ia, ib = ids[:len(a)], ids[len(a):]                                        # (P,), (P,)
    parent = np.arange(len(people))                                            # union-find over people

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(ia.tolist(), ib.tolist()):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    group = np.array([root(x) for x in ia.tolist()], dtype=np.int64)           # (P,) a group per pair
    members = {}
    for p, g in enumerate(group.tolist()):
        members.setdefault(g, []).append(p)
    order = sorted(members.values(), key=lambda m: (-len(m), m[0]))
    counts = np.zeros((n_folds, 2), dtype=np.int64)                            # (K, 2) same, different
    fold = np.empty(len(s), dtype=np.int64)                                    # (P,)
    for m in order:
        add = np.array([s[m].sum(), len(m) - s[m].sum()])                      # (2,)
        f = int(np.argmin(((counts + add) ** 2).sum(1) - (counts ** 2).sum(1)))
        counts[f] += add
        fold[m] = f
    if (counts == 0).any():
        raise ValueError(f"cannot split {len(s)} pairs into {n_folds} people-disjoint folds with a same and a "
                         f"different pair in each: the largest group of pairs linked by shared people holds "
                         f"{len(order[0]) if order else 0}; use fewer folds")
    return fold
