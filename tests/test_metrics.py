"""Tests of npface.metrics against slow, obvious references.

The references below scan every candidate threshold with the literal rule
"same iff d < t", and count AUC wins pair by pair in exact fractions.
"""
from fractions import Fraction
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy import stats

from npface import metrics

# --------------------------------------------------------------------------
# Slow references
# --------------------------------------------------------------------------


def ref_candidates(d):
    """Candidate thresholds, written out: below the min, midpoints, above the max."""
    values = sorted(set(float(x) for x in d))
    out = [values[0] - 1.0]
    for lo, hi in zip(values[:-1], values[1:]):
        out.append((lo + hi) / 2.0)
    out.append(values[-1] + 1.0)
    return out


def ref_correct(d, s, t):
    """Number of pairs classified correctly at threshold t, one pair at a time."""
    return sum(1 for x, y in zip(d, s) if (x < t) == bool(y))


def ref_fit_threshold(d, s):
    """Best threshold by brute force; ties go to the smallest threshold."""
    best_t, best_c = None, -1
    for t in ref_candidates(d):  # increasing, so '>' keeps the smallest on ties
        c = ref_correct(d, s, t)
        if c > best_c:
            best_t, best_c = t, c
    return best_t, best_c


def ref_rates(d, s, t):
    """(FAR, TAR) at threshold t, one pair at a time."""
    n_same = sum(1 for y in s if y)
    n_diff = len(s) - n_same
    fa = sum(1 for x, y in zip(d, s) if x < t and not y)
    ta = sum(1 for x, y in zip(d, s) if x < t and y)
    return fa / n_diff, ta / n_same


def ref_auc(d, s):
    """AUC as an O(P^2) count over (same, different) pairs, in exact fractions."""
    same = [Fraction(float(x)) for x, y in zip(d, s) if y]
    diff = [Fraction(float(x)) for x, y in zip(d, s) if not y]
    wins = Fraction(0)
    for a in same:
        for b in diff:
            if a < b:
                wins += 1
            elif a == b:
                wins += Fraction(1, 2)
    return wins / (len(same) * len(diff))


def ref_eer(d, s):
    """EER: walk the ROC polyline segment by segment until FAR - FRR changes sign."""
    points = [ref_rates(d, s, t) for t in ref_candidates(d)]
    for (f0, t0), (f1, t1) in zip(points[:-1], points[1:]):
        g0, g1 = f0 - (1 - t0), f1 - (1 - t1)
        if g0 == 0:
            return f0
        if g0 < 0 <= g1:
            a = -g0 / (g1 - g0)
            return f0 + a * (f1 - f0)
    raise AssertionError("the ROC polyline never crossed FAR = FRR")


def ref_tar_at_far(d, s, far):
    """Largest TAR over candidate thresholds with FAR <= far (counted exactly)."""
    n_diff = sum(1 for y in s if not y)
    best = None
    for t in ref_candidates(d):
        fa = sum(1 for x, y in zip(d, s) if x < t and not y)
        # The intended rate (e.g. 1/3, not its float): the rates tested are simple fractions.
        if Fraction(fa, n_diff) <= Fraction(far).limit_denominator(1000):
            _, tar = ref_rates(d, s, t)
            best = tar if best is None else max(best, tar)
    return best


# --------------------------------------------------------------------------
# Strategies: small inputs, integer-valued distances so that ties are common
# --------------------------------------------------------------------------

pairs_any = st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=1, max_size=25)


@st.composite
def pairs_both(draw, values=st.integers(0, 6)):
    """(d, s) with at least one same and one different pair."""
    rows = draw(st.lists(st.tuples(values, st.booleans()), min_size=2, max_size=25))
    d = np.array([r[0] for r in rows], dtype=np.float64)  # (P,)
    s = np.array([r[1] for r in rows], dtype=bool)  # (P,)
    n = len(rows)
    i = draw(st.integers(0, n - 1))
    j = draw(st.integers(0, n - 2))
    j = j + 1 if j >= i else j  # j != i
    s[i], s[j] = True, False
    return d, s


real_values = st.floats(-3.0, 5.0, allow_nan=False, allow_infinity=False, width=32)

def arrays(rows):
    d = np.array([r[0] for r in rows], dtype=np.float64)  # (P,)
    s = np.array([r[1] for r in rows], dtype=bool)  # (P,)
    return d, s


# --------------------------------------------------------------------------
# fit_threshold
# --------------------------------------------------------------------------


@given(pairs_any)
def test_fit_threshold_matches_brute_force_scan(rows):
    d, s = arrays(rows)
    d0, s0 = d.copy(), s.copy()
    t = metrics.fit_threshold(d, s)
    ref_t, ref_c = ref_fit_threshold(d, s)
    assert t == ref_t
    assert metrics.accuracy(d, s, t) == ref_c / len(d)
    np.testing.assert_array_equal(d, d0)
    np.testing.assert_array_equal(s, s0)


@given(st.lists(st.tuples(real_values, st.booleans()), min_size=1, max_size=25))
def test_fit_threshold_matches_brute_force_scan_on_real_values(rows):
    d, s = arrays(rows)
    t = metrics.fit_threshold(d, s)
    ref_t, ref_c = ref_fit_threshold(d, s)
    assert t == ref_t
    assert ref_correct(d, s, t) == ref_c


@given(pairs_any, st.lists(st.floats(-10, 10, allow_nan=False), max_size=20))
def test_no_threshold_beats_the_fitted_one(rows, extra):
    """Completeness of the candidates: try the data values, their neighbours, and random points."""
    d, s = arrays(rows)
    best = ref_correct(d, s, metrics.fit_threshold(d, s))
    trial = list(extra)
    for x in d:
        trial += [x, np.nextafter(x, -np.inf), np.nextafter(x, np.inf), x + 0.5, x - 0.5]
    for t in trial:
        assert ref_correct(d, s, t) <= best


def test_fit_threshold_tie_rule_picks_the_smallest_threshold():
    d = np.array([1.0, 2.0, 3.0, 4.0])  # (P,)
    s = np.array([True, False, True, False])  # (P,)
    # Candidates 0, 1.5, 2.5, 3.5, 5 classify 2, 3, 2, 3, 2 pairs correctly.
    assert metrics.fit_threshold(d, s) == 1.5
    order = np.array([3, 0, 2, 1])  # the order of the pairs does not matter
    assert metrics.fit_threshold(d[order], s[order]) == 1.5


def test_fit_threshold_perfect_separator():
    d = np.array([0.3, 0.1, 0.2, 1.4, 1.0, 2.0])  # (P,)
    s = np.array([True, True, True, False, False, False])  # (P,)
    t = metrics.fit_threshold(d, s)
    assert t == pytest.approx(0.65)
    assert metrics.accuracy(d, s, t) == 1.0


def test_fit_threshold_one_class_only():
    d = np.array([2.0, 1.0, 3.0])  # (P,)
    assert metrics.fit_threshold(d, np.ones(3, bool)) == 4.0  # above the max: all same
    assert metrics.fit_threshold(d, np.zeros(3, bool)) == 0.0  # below the min: all different


def test_fit_threshold_adjacent_floats_and_huge_values():
    a = 1.0
    b = float(np.nextafter(a, 2.0))
    d = np.array([a, b])  # (P,)
    s = np.array([True, False])  # (P,)
    t = metrics.fit_threshold(d, s)
    assert a < t <= b
    assert metrics.accuracy(d, s, t) == 1.0
    big = np.array([2.0 ** 60])  # (P,) where big + 1 == big in float64
    t = metrics.fit_threshold(big, np.array([True]))
    assert t > big[0]
    assert metrics.accuracy(big, np.array([True]), t) == 1.0


def test_candidate_thresholds_written_out():
    c = metrics.candidate_thresholds(np.array([3.0, 1.0, 3.0, 2.0]))
    np.testing.assert_array_equal(c, [0.0, 1.5, 2.5, 4.0])


@given(pairs_any)
def test_candidate_thresholds_match_reference(rows):
    d, _ = arrays(rows)
    np.testing.assert_array_equal(metrics.candidate_thresholds(d), ref_candidates(d))


# --------------------------------------------------------------------------
# accuracy
# --------------------------------------------------------------------------


def test_accuracy_perfect_and_random():
    rng = np.random.default_rng(0)
    P = 20000
    s = rng.random(P) < 0.5  # (P,)
    perfect = np.where(s, rng.random(P), 2.0 + rng.random(P))  # (P,) same pairs all below 1
    assert metrics.accuracy(perfect, s, 1.5) == 1.0
    assert metrics.accuracy(perfect, s, metrics.fit_threshold(perfect, s)) == 1.0
    # Distances independent of the labels: at a FIXED threshold each pair is right
    # with probability 1/2, so accuracy ~ Binomial(P, 1/2) / P with standard
    # deviation 0.5 / sqrt(P) = 0.0035; 5 standard deviations is 0.018.
    noise = rng.random(P)  # (P,)
    assert abs(metrics.accuracy(noise, s, 0.37) - 0.5) < 5 * 0.5 / math.sqrt(P)


def test_accuracy_strict_inequality():
    d = np.array([1.0, 1.0])  # (P,)
    s = np.array([True, False])  # (P,)
    # d == threshold is NOT declared same.
    assert metrics.accuracy(d, s, 1.0) == 0.5
    assert metrics.accuracy(np.array([1.0]), np.array([True]), 1.0) == 0.0


# --------------------------------------------------------------------------
# ROC and AUC
# --------------------------------------------------------------------------


@given(pairs_both())
def test_roc_curve_matches_reference(ds):
    d, s = ds
    roc = metrics.roc_curve(d, s)
    ref = [ref_rates(d, s, t) for t in ref_candidates(d)]
    np.testing.assert_array_equal(roc.thresholds, ref_candidates(d))
    np.testing.assert_allclose(roc.far, [r[0] for r in ref], rtol=0, atol=1e-15)
    np.testing.assert_allclose(roc.tar, [r[1] for r in ref], rtol=0, atol=1e-15)
    assert roc.far[0] == roc.tar[0] == 0.0 and roc.far[-1] == roc.tar[-1] == 1.0
    assert np.all(np.diff(roc.far) >= 0) and np.all(np.diff(roc.tar) >= 0)


@given(pairs_both())
def test_auc_matches_pair_count(ds):
    d, s = ds
    d0, s0 = d.copy(), s.copy()
    auc = metrics.roc_auc(d, s)
    assert auc == pytest.approx(float(ref_auc(d, s)), rel=1e-12, abs=1e-15)
    # ... and the trapezoidal area under the ROC polyline.
    far, tar, _ = metrics.roc_curve(d, s)
    trapezoids = np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0)
    assert auc == pytest.approx(trapezoids, rel=1e-12, abs=1e-15)
    np.testing.assert_array_equal(d, d0)
    np.testing.assert_array_equal(s, s0)


@given(pairs_both(values=real_values))
def test_auc_matches_pair_count_on_real_values(ds):
    d, s = ds
    assert metrics.roc_auc(d, s) == pytest.approx(float(ref_auc(d, s)), rel=1e-12, abs=1e-15)


def test_auc_equals_mann_whitney_u():
    rng = np.random.default_rng(1)
    d = np.round(rng.normal(size=400), 1)  # (P,) rounded so that there are many ties
    s = rng.random(400) < 0.4  # (P,)
    u = stats.mannwhitneyu(d[~s], d[s], alternative="two-sided").statistic
    assert metrics.roc_auc(d, s) == pytest.approx(u / (s.sum() * (~s).sum()), rel=1e-12)


def test_auc_special_cases():
    s = np.array([True, True, False, False])  # (P,)
    assert metrics.roc_auc(np.array([0.0, 1.0, 2.0, 3.0]), s) == 1.0
    assert metrics.roc_auc(np.array([2.0, 3.0, 0.0, 1.0]), s) == 0.0
    assert metrics.roc_auc(np.full(4, 7.0), s) == 0.5
    # Random scores: AUC ~ 1/2 with standard deviation sqrt((n_s + n_d + 1) / (12 n_s n_d)).
    rng = np.random.default_rng(2)
    P = 20000
    s = rng.random(P) < 0.5  # (P,)
    n_s, n_d = s.sum(), (~s).sum()
    sd = math.sqrt((n_s + n_d + 1) / (12.0 * n_s * n_d))  # ~ 0.0041
    assert abs(metrics.roc_auc(rng.random(P), s) - 0.5) < 5 * sd


# --------------------------------------------------------------------------
# Equal error rate
# --------------------------------------------------------------------------


def test_eer_hand_computed():
    s4 = np.array([True, False, True, False])
    assert metrics.equal_error_rate(np.array([1.0, 2.0, 3.0, 4.0]), s4) == 0.5
    s6 = np.array([True, True, False, True, False, False])
    assert metrics.equal_error_rate(np.arange(1.0, 7.0), s6) == pytest.approx(1 / 3)
    # A tie between one same and one different pair: the crossing is interpolated
    # on the diagonal ROC segment, FAR = alpha / 2 = FRR = 1 - alpha at alpha = 2/3.
    d = np.array([1.0, 1.0, 2.0])
    s = np.array([True, False, False])
    assert metrics.equal_error_rate(d, s) == pytest.approx(1 / 3)


def test_eer_extremes():
    s = np.array([True, True, False, False])
    assert metrics.equal_error_rate(np.array([0.0, 1.0, 2.0, 3.0]), s) == 0.0
    assert metrics.equal_error_rate(np.array([2.0, 3.0, 0.0, 1.0]), s) == 1.0
    assert metrics.equal_error_rate(np.full(4, 1.0), s) == 0.5


@given(pairs_both())
def test_eer_matches_reference_and_brackets(ds):
    d, s = ds
    eer = metrics.equal_error_rate(d, s)
    assert eer == pytest.approx(ref_eer(d, s), abs=1e-12)
    assert 0.0 <= eer <= 1.0
    for t in ref_candidates(d):
        far, tar = ref_rates(d, s, t)
        frr = 1.0 - tar
        assert min(far, frr) - 1e-12 <= eer <= max(far, frr) + 1e-12


def test_eer_of_two_gaussians():
    # same ~ N(0, 1), different ~ N(delta, 1): EER = Phi(-delta / 2) = 0.1587 at delta = 2.
    # The sampling error of a rate from n = 20000 pairs is ~ sqrt(0.16 * 0.84 / n) = 0.0026;
    # the tolerance of 0.012 is about 4.5 times that.
    rng = np.random.default_rng(3)
    n = 20000
    d = np.concatenate([rng.normal(0.0, 1.0, n), rng.normal(2.0, 1.0, n)])  # (P,)
    s = np.concatenate([np.ones(n, bool), np.zeros(n, bool)])  # (P,)
    assert abs(metrics.equal_error_rate(d, s) - stats.norm.cdf(-1.0)) < 0.012


# --------------------------------------------------------------------------
# TAR at FAR
# --------------------------------------------------------------------------


@given(pairs_both(), st.sampled_from([0.1, 0.2, 0.25, 1 / 3, 0.5, 1.0]))
def test_tar_at_far_matches_reference(ds, far):
    d, s = ds
    r = metrics.tar_at_far(d, s, far)
    n_diff = int((~s).sum())
    assert r.n_diff == n_diff
    # n_diff * far >= 1 (up to rounding of far itself) is what "resolvable" means.
    assert r.resolvable == (Fraction(n_diff) * Fraction(far).limit_denominator(1000) >= 1)
    if not r.resolvable:
        assert r.tar is None and r.far is None and r.threshold is None
        assert str(math.ceil(1 / far - 1e-9)) in r.note
        return
    assert r.note is None
    assert r.tar == ref_tar_at_far(d, s, far)
    assert r.far <= far
    far_t, tar_t = ref_rates(d, s, r.threshold)
    assert (far_t, tar_t) == (r.far, r.tar)
    # No candidate reaches that TAR at a lower FAR.
    for t in ref_candidates(d):
        f, a = ref_rates(d, s, t)
        assert not (a >= r.tar and f < r.far)


def test_tar_at_far_resolution_boundary():
    s = np.array([True] + [False] * 99)  # 99 different pairs
    d = np.arange(100.0)  # (P,)
    r = metrics.tar_at_far(d, s, 1e-2)
    assert not r.resolvable and r.tar is None
    assert "100" in r.note and "99" in r.note
    s = np.array([True] + [False] * 100)  # 100 different pairs: now resolvable
    r = metrics.tar_at_far(np.arange(101.0), s, 1e-2)
    # TAR 1 is reached before any false accept: the lowest-FAR operating point is reported.
    assert r.resolvable and (r.tar, r.far, r.threshold) == (1.0, 0.0, 0.5)


def test_tar_at_far_counts_false_accepts_exactly():
    # 1000 different pairs: 10 at distance 0.5, 990 at 1000; 100 same pairs at 1 .. 100.
    d = np.concatenate([np.full(10, 0.5), np.full(990, 1000.0), np.arange(1.0, 101.0)])  # (P,)
    s = np.concatenate([np.zeros(1000, bool), np.ones(100, bool)])  # (P,)
    r = metrics.tar_at_far(d, s, 1e-2)  # allows exactly 10 false accepts
    assert (r.tar, r.far) == (1.0, 0.01)
    assert 100.0 < r.threshold < 1000.0
    r = metrics.tar_at_far(d, s, 9e-3)  # allows 9: the 10 tied pairs must all be rejected
    assert (r.tar, r.far) == (0.0, 0.0)
    assert metrics.tar_at_far(d, s, 1e-3).resolvable


# --------------------------------------------------------------------------
# squared_distances
# --------------------------------------------------------------------------


def test_squared_distances_against_loop():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(7, 5)).astype(np.float32)  # (P, D)
    b = rng.normal(size=(7, 5)).astype(np.float32)  # (P, D)
    a0, b0 = a.copy(), b.copy()
    d = metrics.squared_distances(a, b)
    ref = [sum((float(x) - float(y)) ** 2 for x, y in zip(a[p], b[p])) for p in range(7)]
    assert d.dtype == np.float64 and d.shape == (7,)
    np.testing.assert_allclose(d, ref, rtol=1e-12)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_squared_distances_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"sig_a must have shape \(P, D\)"):
        metrics.squared_distances(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"sig_b must have shape \(3, 2\)"):
        metrics.squared_distances(np.zeros((3, 2)), np.zeros((3, 3)))


# --------------------------------------------------------------------------
# Validation at the boundary
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [metrics.fit_threshold, metrics.roc_curve, metrics.roc_auc,
                                metrics.equal_error_rate])
def test_bad_inputs_raise(fn):
    s = np.array([True, False])
    with pytest.raises(ValueError, match=r"distances must have shape \(P,\)"):
        fn(np.zeros((2, 1)), s)
    with pytest.raises(ValueError, match=r"distances must hold at least one pair"):
        fn(np.zeros(0), np.zeros(0, bool))
    with pytest.raises(ValueError, match=r"distances must be finite"):
        fn(np.array([0.0, np.nan]), s)
    with pytest.raises(ValueError, match=r"distances must be a real-valued array"):
        fn(np.array([True, False]), s)
    with pytest.raises(ValueError, match=r"is_same must have shape \(2,\)"):
        fn(np.zeros(2), np.array([True, False, True]))
    with pytest.raises(ValueError, match=r"is_same must be a bool array"):
        fn(np.zeros(2), np.array([0.5, 1.0]))


@pytest.mark.parametrize("fn", [metrics.roc_curve, metrics.roc_auc, metrics.equal_error_rate,
                                lambda d, s: metrics.tar_at_far(d, s, 0.5)])
def test_one_class_raises_where_rates_need_both(fn):
    with pytest.raises(ValueError, match=r"at least one same and one different pair"):
        fn(np.array([1.0, 2.0]), np.array([True, True]))


def test_integer_labels_are_accepted_and_bad_thresholds_rejected():
    d = np.array([1.0, 2.0])
    assert metrics.accuracy(d, np.array([1, 0]), 1.5) == 1.0
    with pytest.raises(ValueError, match=r"threshold must be finite"):
        metrics.accuracy(d, np.array([1, 0]), np.nan)
    with pytest.raises(ValueError, match=r"far must be in \(0, 1\]"):
        metrics.tar_at_far(d, np.array([True, False]), 0.0)
