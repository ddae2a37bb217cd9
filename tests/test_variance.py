"""The variance experiment's machinery (benchmarks/variance.py), checked by brute force on tiny pools."""
from itertools import combinations

import numpy as np
import pytest

from benchmarks import variance as V


def tiny_pool(m=9, D=3, F=4, seed=0):
    """A pool whose hinge has both active and inactive pairs on both sides."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((m, F))                            # (m, F)
    W = rng.standard_normal((D, F)) * 0.6                      # (D, F)
    b = rng.standard_normal(D)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 3, 4][:m], dtype=np.int64)
    s = h @ W.T + b                                            # (m, D)
    d = ((s[:, None] - s[None]) ** 2).sum(-1)[~np.eye(m, dtype=bool)]
    return V.Pool(h, s, labels, float(np.median(d)))


def pair_grad(pool, i, j):
    return V.batch_gradient(pool, np.array([i, j]), np.array([[0, 1]]), balance=False)


def test_pair_gradient_norms_and_row_means_match_brute_force():
    pool = tiny_pool()
    m = len(pool.labels)
    g_full = V.batch_gradient(pool, np.arange(m), None, balance=False)
    grads = {(i, j): pair_grad(pool, i, j) for i in range(m) for j in range(m) if i != j}
    # the full gradient is the mean of the per-pair ones
    np.testing.assert_allclose(np.mean(list(grads.values()), axis=0), g_full, atol=1e-12)
    terms = V.bound_terms(pool, g_full, n_rows=m)
    mean_sq = np.mean([g @ g for g in grads.values()])
    nu2 = np.mean([(g - g_full) @ (g - g_full) for g in grads.values()])
    abar2 = np.mean([np.sum((np.mean([grads[i, j] for j in range(m) if j != i], axis=0) - g_full) ** 2)
                     for i in range(m)])
    assert 0.0 < nu2 and 0.0 < abar2
    assert terms["mean_pair_grad_sq"] == pytest.approx(mean_sq, rel=1e-9)
    assert terms["nu2"] == pytest.approx(nu2, rel=1e-9)
    assert terms["abar2"] == pytest.approx(abar2, rel=1e-9)


@pytest.mark.parametrize("k", [3, 4, 5])
def test_multibatch_is_unbiased_and_its_error_is_the_exact_formula(k):
    """Enumerate every batch of k of the m faces: the mean estimate is grad L, the mean error the formula."""
    pool = tiny_pool(seed=k)
    m = len(pool.labels)
    g_full = V.batch_gradient(pool, np.arange(m), None, balance=False)
    estimates = np.array([V.batch_gradient(pool, np.array(rows), None, balance=False)
                          for rows in combinations(range(m), k)])
    np.testing.assert_allclose(estimates.mean(0), g_full, atol=1e-12)
    error = np.mean(((estimates - g_full) ** 2).sum(1))
    terms = V.bound_terms(pool, g_full, n_rows=m)
    exact = V.exact_multibatch_error(k, m, terms["nu2"], terms["abar2"])
    assert error == pytest.approx(float(exact), rel=1e-9)


@pytest.mark.parametrize("k", [4, 16, 256])
def test_exact_error_is_twice_the_stated_bound_for_a_large_pool(k):
    """For m >> k the finite-pool term vanishes and the exact error is 2 term1 + 2 term2 (the proof's counts doubled)."""
    nu2, abar2 = 7.0, 0.3
    term1, term2 = V.bound(k, nu2, abar2)
    assert float(V.exact_multibatch_error(k, 10 ** 9, nu2, abar2)) == pytest.approx(2 * (term1 + term2), rel=1e-6)
    assert float(V.exact_multibatch_error(k, 10 ** 4, nu2, abar2)) < 2 * (term1 + term2)    # sampling without replacement


def test_pairs_estimate_is_unbiased():
    """k/2 disjoint pairs of a uniformly random ordering: average over all orderings of a batch of 4 of 5."""
    from itertools import permutations
    pool = tiny_pool(m=5, seed=3)
    g_full = V.batch_gradient(pool, np.arange(5), None, balance=False)
    pairs = np.array([[0, 1], [2, 3]])
    est = np.mean([V.batch_gradient(pool, np.array(p), pairs, balance=False) for p in permutations(range(5), 4)],
                  axis=0)
    np.testing.assert_allclose(est, g_full, atol=1e-12)


def test_fit_slope_recovers_a_power_law_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    ks = np.array(V.KS)
    errors = 3.0 * ks[:, None] ** -2.0 * rng.exponential(1.0, size=(len(ks), 400))
    slope, (lo, hi) = V.fit_slope(ks, errors, n_boot=300)
    assert lo < -2.0 < hi and hi - lo < 0.2
    assert slope == pytest.approx(-2.0, abs=0.1)


def test_measure_reports_spread_about_the_mean_not_the_target():
    """A constant, biased estimator: error = bias^2 every draw, spread 0."""
    g_full = np.zeros(3)
    out = V.measure(lambda k, rng: {"multibatch": np.array([1.0, 0, 0]), "pairs": np.array([0, 2.0, 0])},
                    g_full, ks=(8, 16), n_draws=5)
    np.testing.assert_allclose(out["errors"]["multibatch"], 1.0)
    np.testing.assert_allclose(out["errors"]["pairs"], 4.0)
    np.testing.assert_allclose(out["spread"]["multibatch"], 0.0, atol=1e-12)


def test_features_reproduce_the_signatures():
    """embed_with_features: s = W h + b for the network's own output."""
    from npface.model import TABLE2, FaceModel
    model = FaceModel(TABLE2, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    before = images.copy()
    sig, feats = model.embed_with_features(images, batch_size=2, threads=1)
    assert sig.shape == (3, 128) and feats.shape == (3, 256)
    np.testing.assert_array_equal(images, before)
    np.testing.assert_allclose(sig, model.embed(images, threads=1), rtol=1e-5, atol=1e-5)
    W, b = model.params["signature.weight"], model.params["signature.bias"]
    np.testing.assert_allclose(feats @ W.T + b, sig, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="batch_size"):
        model.embed_with_features(images, batch_size=0)
