"""Verification metrics on pair distances: threshold fitting, accuracy, ROC, AUC, EER, TAR@FAR.

Conventions (the paper's eq. 1-2)
---------------------------------
P is the number of pairs.

- ``distances`` (P,): one score per pair, the SQUARED Euclidean distance
  d = ||e_a - e_b||^2 between the two signatures. Smaller means more similar.
  Any finite real values are accepted (the functions never assume d >= 0).
- ``is_same`` (P,) bool: the ground truth, True for a "same" pair (both images
  show one person), False for a "different" pair.
- A pair is DECLARED same iff ``d < threshold`` (strict). A declared-same pair
  is an "accept".

Rates, with n_same same pairs and n_diff different pairs:

- TAR (true accept rate) = (same pairs declared same) / n_same
- FAR (false accept rate) = (different pairs declared same) / n_diff
- FRR (false reject rate) = 1 - TAR
- accuracy = (same pairs declared same + different pairs declared different) / P

Candidate thresholds
--------------------
Let v_1 < v_2 < ... < v_U be the U distinct distances. Because the rule is
``d < threshold``, every threshold in (v_k, v_{k+1}] makes the same decisions,
so the U + 1 candidates

    c_0 = v_1 - 1                 (declares nothing same)
    c_k = midpoint(v_k, v_{k+1})  for k = 1 .. U-1  (declares d <= v_k same)
    c_U = v_U + 1                 (declares everything same)

reach every decision that any real threshold can make. ``c_k`` declares
exactly the pairs with d <= v_k same. The midpoint is computed as
0.5 * v_k + 0.5 * v_{k+1} and, should rounding ever put it at v_k (adjacent
floats), it is replaced by v_{k+1}, which still lies in (v_k, v_{k+1}]; in the
same spirit c_U is nudged to the next float above v_U where v_U + 1 rounds to
v_U. (c_0 needs no care: any value <= v_1 declares nothing same.) The units
"1" are distance units; they only matter in that the outer candidates lie
outside the data.

All functions are O(P log P) (one sort) and leave their inputs unchanged.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "DEFAULT_FARS",
    "RocCurve",
    "TarAtFar",
    "accuracy",
    "candidate_thresholds",
    "equal_error_rate",
    "fit_threshold",
    "roc_auc",
    "roc_curve",
    "squared_distances",
    "tar_at_far",
]

#: The false accept rates at which the TAR is reported by default.
DEFAULT_FARS: tuple[float, ...] = (1e-2, 1e-3)


# --------------------------------------------------------------------------
# Validation at the boundary
# --------------------------------------------------------------------------

def _check_distances(distances, name: str = "distances") -> np.ndarray:
    """Return ``distances`` as a float64 (P,) array (a copy only when needed)."""
    d = np.asarray(distances)
    if d.dtype == np.bool_ or not (np.issubdtype(d.dtype, np.integer)
                                   or np.issubdtype(d.dtype, np.floating)):
        raise ValueError(f"{name} must be a real-valued array of shape (P,), got dtype {d.dtype}")
    if d.ndim != 1:
        raise ValueError(f"{name} must have shape (P,), got shape {d.shape}")
    if d.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one pair, got shape {d.shape}")
    d = d.astype(np.float64, copy=False)  # (P,)
    if not np.all(np.isfinite(d)):
        bad = int(np.flatnonzero(~np.isfinite(d))[0])
        raise ValueError(f"{name} must be finite, got {d[bad]} at index {bad}")
    return d


def _check_is_same(is_same, n: int, name: str = "is_same") -> np.ndarray:
    """Return ``is_same`` as a bool (P,) array; integer 0/1 arrays are accepted too."""
    s = np.asarray(is_same)
    if s.ndim != 1 or s.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the distances, got shape {s.shape}")
    if s.dtype == np.bool_:
        return s
    if np.issubdtype(s.dtype, np.integer) and np.all((s == 0) | (s == 1)):
        return s.astype(np.bool_)
    raise ValueError(f"{name} must be a bool array of shape ({n},) (or integers 0/1), got dtype {s.dtype}")


def _check_pairs(distances, is_same, name_d: str = "distances",
                 name_s: str = "is_same") -> tuple[np.ndarray, np.ndarray]:
    d = _check_distances(distances, name_d)  # (P,)
    s = _check_is_same(is_same, d.shape[0], name_s)  # (P,)
    return d, s


def _require_both_classes(s: np.ndarray, what: str, name_s: str = "is_same") -> tuple[int, int]:
    n_same = int(np.count_nonzero(s))
    n_diff = int(s.shape[0] - n_same)
    if n_same == 0 or n_diff == 0:
        raise ValueError(f"{what} needs at least one same and one different pair; "
                         f"{name_s} has {n_same} same and {n_diff} different")
    return n_same, n_diff


def _check_threshold(threshold, name: str = "threshold") -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {threshold!r}") from None
    if not math.isfinite(t):
        raise ValueError(f"{name} must be finite, got {t}")
    return t


def _check_far(far) -> float:
    try:
        f = float(far)
    except (TypeError, ValueError):
        raise ValueError(f"far must be a real number in (0, 1], got {far!r}") from None
    if not (0.0 < f <= 1.0):
        raise ValueError(f"far must be in (0, 1], got {f}")
    return f


# --------------------------------------------------------------------------
# The sorted, tie-grouped view every metric is computed from
# --------------------------------------------------------------------------

class _Sweep(NamedTuple):
    """The data seen by a threshold sweeping upwards through the distinct distances.

    U distinct values; index k = 0 .. U refers to candidate c_k (see the module
    docstring), which declares the pairs with d <= v_k same.
    """
    values: np.ndarray       # (U,) float64, v_1 < ... < v_U
    same_at: np.ndarray      # (U,) int64, same pairs with d == v_k
    diff_at: np.ndarray      # (U,) int64, different pairs with d == v_k
    accepted_same: np.ndarray  # (U+1,) int64, same pairs declared same by c_k
    accepted_diff: np.ndarray  # (U+1,) int64, different pairs declared same by c_k
    n_same: int
    n_diff: int


def _sweep(d: np.ndarray, s: np.ndarray) -> _Sweep:
    values, inverse = np.unique(d, return_inverse=True)  # (U,), (P,)
    inverse = inverse.reshape(-1)  # (P,)  (numpy 2 may keep the input's shape)
    u = values.shape[0]
    same_at = np.bincount(inverse[s], minlength=u).astype(np.int64)  # (U,)
    diff_at = np.bincount(inverse[~s], minlength=u).astype(np.int64)  # (U,)
    zero = np.zeros(1, dtype=np.int64)
    accepted_same = np.concatenate([zero, np.cumsum(same_at)])  # (U+1,)
    accepted_diff = np.concatenate([zero, np.cumsum(diff_at)])  # (U+1,)
    return _Sweep(values, same_at, diff_at, accepted_same, accepted_diff,
                  int(accepted_same[-1]), int(accepted_diff[-1]))


def _candidates_from_values(values: np.ndarray) -> np.ndarray:
    """The U + 1 candidate thresholds (U+1,) for the sorted distinct values (U,)."""
    lo = values[:-1]  # (U-1,)
    hi = values[1:]   # (U-1,)
    mid = 0.5 * lo + 0.5 * hi  # (U-1,)  no overflow for huge values
    # Keep every midpoint inside (v_k, v_{k+1}] even where rounding would not.
    mid = np.where(mid > lo, np.minimum(mid, hi), hi)  # (U-1,)
    below = values[0] - 1.0
    above = values[-1] + 1.0
    if not above > values[-1]:
        above = float(np.nextafter(values[-1], np.inf))
    return np.concatenate([[below], mid, [above]])  # (U+1,)


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------

def squared_distances(sig_a, sig_b) -> np.ndarray:
    """Squared Euclidean distance between matching rows: d_p = ||a_p - b_p||^2.

    Args:
        sig_a: (P, D) signatures of the first image of each pair.
        sig_b: (P, D) signatures of the second image of each pair.

    Returns:
        (P,) float64 distances (computed in float64 whatever the input dtype).
    """
    a = np.asarray(sig_a)
    b = np.asarray(sig_b)
    if a.ndim != 2:
        raise ValueError(f"sig_a must have shape (P, D), got shape {a.shape}")
    if b.shape != a.shape:
        raise ValueError(f"sig_b must have shape {a.shape} to match sig_a (P, D), got shape {b.shape}")
    for name, x in (("sig_a", a), ("sig_b", b)):
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"{name} must be a real-valued (P, D) array, got dtype {x.dtype}")
    diff = a.astype(np.float64) - b.astype(np.float64)  # (P, D)
    return np.einsum("pd,pd->p", diff, diff)  # (P,)


def candidate_thresholds(distances) -> np.ndarray:
    """All U + 1 thresholds worth trying, increasing (see the module docstring).

    Args:
        distances: (P,) real, finite.

    Returns:
        (U+1,) float64 where U is the number of distinct distances: one below the
        minimum, the midpoints between consecutive distinct sorted distances, and
        one above the maximum.
    """
    d = _check_distances(distances)
    return _candidates_from_values(np.unique(d))


def accuracy(distances, is_same, threshold) -> float:
    """Fraction of pairs classified correctly when "same" iff distance < threshold.

    Args:
        distances: (P,) real, finite.
        is_same: (P,) bool.
        threshold: a finite real number.
    """
    d, s = _check_pairs(distances, is_same)
    t = _check_threshold(threshold)
    return float(np.count_nonzero((d < t) == s)) / d.shape[0]


def fit_threshold(distances, is_same) -> float:
    """The threshold that maximises accuracy on these pairs.

    The search is exact: every candidate of :func:`candidate_thresholds` is
    scored (no grid), and no real threshold can score higher than the best
    candidate, since each threshold makes the same decisions as one candidate.
    Ties: among equally accurate candidates (accuracies compared as exact
    integer counts), the SMALLEST threshold is returned, i.e. the one that
    declares the fewest pairs same and so has the lowest FAR among the optimal
    ones. O(P log P).

    Args:
        distances: (P,) real, finite, P >= 1.
        is_same: (P,) bool. One class may be absent.

    Returns:
        The threshold, a Python float.
    """
    d, s = _check_pairs(distances, is_same)
    sw = _sweep(d, s)
    # Correct decisions for candidate c_k: accepted same + rejected different.
    correct = sw.accepted_same + (sw.n_diff - sw.accepted_diff)  # (U+1,)
    best = int(np.argmax(correct))  # argmax returns the first maximum: the smallest threshold
    return float(_candidates_from_values(sw.values)[best])


class RocCurve(NamedTuple):
    """An ROC curve over all U + 1 candidate thresholds, by increasing threshold.

    far[0] = tar[0] = 0 (nothing accepted) and far[-1] = tar[-1] = 1
    (everything accepted); both are non-decreasing.
    """
    far: np.ndarray         # (U+1,) float64
    tar: np.ndarray         # (U+1,) float64
    thresholds: np.ndarray  # (U+1,) float64, increasing


def roc_curve(distances, is_same) -> RocCurve:
    """FAR and TAR at every candidate threshold (exact, no grid).

    A run of tied distances is passed in one step, so on the piecewise-linear
    ROC a tie between same and different pairs appears as a diagonal segment.

    Args:
        distances: (P,) real, finite.
        is_same: (P,) bool with at least one same and one different pair.
    """
    d, s = _check_pairs(distances, is_same)
    _require_both_classes(s, "roc_curve")
    sw = _sweep(d, s)
    far = sw.accepted_diff / sw.n_diff  # (U+1,)
    tar = sw.accepted_same / sw.n_same  # (U+1,)
    return RocCurve(far, tar, _candidates_from_values(sw.values))


def roc_auc(distances, is_same) -> float:
    """Area under the ROC curve, exact, with ties counted as one half.

    Equals the Mann-Whitney statistic: the probability that a random same pair
    has a SMALLER distance than a random different pair, plus one half the
    probability that they are equal,

        AUC = (#{d_same < d_diff} + 0.5 #{d_same == d_diff}) / (n_same n_diff),

    which is also the trapezoidal area under :func:`roc_curve`. Counted in
    integers and divided once, in O(P log P).

    Args:
        distances: (P,) real, finite.
        is_same: (P,) bool with at least one same and one different pair.
    """
    d, s = _check_pairs(distances, is_same)
    _require_both_classes(s, "roc_auc")
    sw = _sweep(d, s)
    diff_above = sw.n_diff - sw.accepted_diff[1:]  # (U,) different pairs with d > v_k
    twice_wins = 2 * int(np.dot(sw.same_at, diff_above)) + int(np.dot(sw.same_at, sw.diff_at))
    return twice_wins / (2 * sw.n_same * sw.n_diff)


def equal_error_rate(distances, is_same) -> float:
    """The rate at which FAR equals FRR on the piecewise-linear ROC curve.

    The ROC polyline through the points of :func:`roc_curve` runs from
    (FAR, FRR) = (0, 1) to (1, 0) with FAR - FRR strictly increasing along it,
    so it meets the line FAR = FRR exactly once; the EER is the common value
    there, found by linear interpolation on the segment that crosses. It lies
    in [0, 1]; 0 for a perfect separator, 1/2 when all distances are tied.
    For every candidate threshold, min(FAR, FRR) <= EER <= max(FAR, FRR).

    Args:
        distances: (P,) real, finite.
        is_same: (P,) bool with at least one same and one different pair.
    """
    far, tar, _ = roc_curve(distances, is_same)
    gap = far - (1.0 - tar)  # (U+1,) FAR - FRR: -1 at the start, +1 at the end
    k = int(np.argmax(gap >= 0.0))  # first point at or past the crossing, k >= 1
    if gap[k] == 0.0:
        return float(far[k])
    # The segment from point k-1 (gap < 0) to point k (gap > 0) crosses zero.
    alpha = -gap[k - 1] / (gap[k] - gap[k - 1])
    return float(far[k - 1] + alpha * (far[k] - far[k - 1]))


class TarAtFar(NamedTuple):
    """The TAR reached at a target FAR (see :func:`tar_at_far`)."""
    far_target: float
    tar: float | None       # None when the FAR cannot be resolved
    far: float | None       # the FAR actually reached (<= far_target), None likewise
    threshold: float | None  # the candidate threshold that reaches it, None likewise
    n_diff: int
    resolvable: bool
    note: str | None        # why the TAR is missing, None when it is not


def tar_at_far(distances, is_same, far) -> TarAtFar:
    """The largest TAR among the candidate thresholds whose FAR is at most ``far``.

    No interpolation: the operating point is a real candidate threshold, so the
    figure is achievable, not optimistic. Of the candidates with FAR <= far
    reaching that best TAR, the smallest is reported (the lowest FAR for it):
    ``far`` is the FAR reached there and ``threshold`` that candidate.

    Resolution: with n_diff different pairs, FAR moves in steps of 1 / n_diff.
    When n_diff < 1 / far, the only FAR <= far on offer is 0, so the requested
    operating point cannot be resolved: then ``resolvable`` is False, ``tar``,
    ``far`` and ``threshold`` are None and ``note`` says how many different
    pairs would be needed.

    Args:
        distances: (P,) real, finite.
        is_same: (P,) bool with at least one same and one different pair.
        far: the target false accept rate, in (0, 1].
    """
    d, s = _check_pairs(distances, is_same)
    f = _check_far(far)
    n_same, n_diff = _require_both_classes(s, "tar_at_far")
    needed = math.ceil(1.0 / f - 1e-9)  # smallest n_diff with n_diff * far >= 1
    if n_diff < needed:
        note = (f"FAR {f:g} needs at least {needed} different pairs to resolve; "
                f"only {n_diff} given")
        return TarAtFar(f, None, None, None, n_diff, False, note)
    sw = _sweep(d, s)
    # FAR is non-decreasing in the threshold, so FAR <= far holds on a prefix of
    # the candidates. Compare integer counts of false accepts, not rates, so that
    # e.g. 10 / 1000 <= 0.01 is decided exactly.
    max_false_accepts = math.floor(f * n_diff + 1e-9)
    last = int(np.count_nonzero(sw.accepted_diff <= max_false_accepts)) - 1  # >= 0
    # The best TAR is at the last such candidate; report the FIRST candidate that
    # reaches it, the operating point with that TAR and the lowest FAR.
    k = int(np.searchsorted(sw.accepted_same, sw.accepted_same[last], side="left"))
    threshold = float(_candidates_from_values(sw.values)[k])
    return TarAtFar(f, float(sw.accepted_same[k]) / n_same, float(sw.accepted_diff[k]) / n_diff,
                    threshold, n_diff, True, None)
