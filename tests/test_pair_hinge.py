"""The pairwise hinge loss (paper eq. 2-3): both pair sets, both weightings, theta's gradient."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kernels.pair_hinge import all_ordered_pairs, pair_hinge_reference
from npface import ops
from tests.gradcheck import assert_gradient, assert_unchanged, numerical_gradient, snapshot


@st.composite
def batch(draw, min_k=2):
    k, D = draw(st.integers(min_k, 8)), draw(st.integers(1, 4))
    n_ids = draw(st.integers(1, k))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    emb = rng.standard_normal((k, D))
    labels = rng.integers(0, n_ids, size=k)
    threshold = float(rng.uniform(0.5, 6.0))
    return emb, labels, threshold, rng


def random_pairs(rng, k, P):
    i = rng.integers(0, k, size=P)
    j = (i + rng.integers(1, k, size=P)) % k          # j != i
    return np.stack([i, j], axis=1)


def margins(emb, labels, threshold, pairs):
    """u_ij = 1 - y (theta - d) for each listed pair: the hinge's argument."""
    d = ((emb[pairs[:, 0]] - emb[pairs[:, 1]]) ** 2).sum(1)
    y = np.where(labels[pairs[:, 0]] == labels[pairs[:, 1]], 1.0, -1.0)
    return 1 - y * (threshold - d)


@given(batch(), st.booleans(), st.booleans(), st.sampled_from([np.float32, np.float64]))
def test_matches_reference(case, balance, listed, dtype):
    emb, labels, threshold, rng = case
    pairs = random_pairs(rng, len(labels), int(rng.integers(1, 10))) if listed else None
    ref_pairs = pairs if listed else all_ordered_pairs(len(labels))
    emb = emb.astype(dtype)
    before = snapshot(emb, labels)
    loss, cache = ops.pair_hinge_forward(emb, labels, threshold, pairs, balance)
    demb, dthreshold = ops.pair_hinge_backward(cache)
    rloss, rdemb, rdthreshold = pair_hinge_reference(emb, labels, threshold, ref_pairs, balance)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    assert isinstance(loss, float) and isinstance(dthreshold, float) and demb.dtype == dtype
    np.testing.assert_allclose(loss, rloss, **tol)
    np.testing.assert_allclose(demb, rdemb, **tol)
    np.testing.assert_allclose(dthreshold, rdthreshold, **tol)
    assert_unchanged(before, [emb, labels])


@given(batch(), st.booleans(), st.booleans())
def test_gradients_match_central_differences(case, balance, listed):
    emb, labels, threshold, rng = case
    pairs = random_pairs(rng, len(labels), int(rng.integers(1, 10))) if listed else None
    assume(np.abs(margins(emb, labels, threshold, pairs if listed else all_ordered_pairs(len(labels)))).min() > 1e-3)
    loss, cache = ops.pair_hinge_forward(emb, labels, threshold, pairs, balance)
    dloss = float(rng.uniform(0.5, 2.0))
    demb, dthreshold = ops.pair_hinge_backward(cache, dloss)
    f = lambda: np.array(ops.pair_hinge_forward(emb, labels, t[0], pairs, balance)[0])  # noqa: E731
    t = np.array([threshold])
    assert_gradient(demb, numerical_gradient(f, emb, dloss), "emb")
    assert_gradient(np.array([dthreshold]), numerical_gradient(f, t, dloss), "threshold")


@given(batch(), st.booleans())
def test_all_pairs_equals_the_explicit_list_of_ordered_pairs(case, balance):
    emb, labels, threshold, _ = case
    a, ca = ops.pair_hinge_forward(emb, labels, threshold, None, balance)
    b, cb = ops.pair_hinge_forward(emb, labels, threshold, all_ordered_pairs(len(labels)), balance)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(ops.pair_hinge_backward(ca)[0], ops.pair_hinge_backward(cb)[0], rtol=1e-12, atol=1e-15)


@given(batch(min_k=3))
def test_balanced_is_half_same_mean_plus_half_different_mean(case):
    emb, labels, threshold, _ = case
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1)
    same = labels[:, None] == labels[None]
    off = ~np.eye(len(labels), dtype=bool)
    losses = np.maximum(0, 1 - np.where(same, 1, -1) * (threshold - d))
    s, t = losses[same & off], losses[~same & off]
    expected = 0.5 * s.mean() + 0.5 * t.mean() if len(s) and len(t) else (s if len(s) else t).mean()
    np.testing.assert_allclose(ops.pair_hinge_forward(emb, labels, threshold)[0], expected, rtol=1e-12)
    np.testing.assert_allclose(ops.pair_hinge_forward(emb, labels, threshold, balance=False)[0],
                               losses[off].mean(), rtol=1e-12)


def test_hand_computed_same_pair():
    # d = 1, theta = 0.5: u = 1 - (0.5 - 1) = 1.5 on both ordered pairs.
    emb, labels = np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([7, 7])
    loss, cache = ops.pair_hinge_forward(emb, labels, 0.5)
    demb, dthreshold = ops.pair_hinge_backward(cache)
    assert loss == 1.5
    np.testing.assert_allclose(demb, [[-2.0, 0.0], [2.0, 0.0]])   # pull together
    assert dthreshold == -1.0                                      # raise the threshold


def test_hand_computed_different_pair():
    emb, labels = np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([1, 2])
    loss, cache = ops.pair_hinge_forward(emb, labels, 0.5)
    demb, dthreshold = ops.pair_hinge_backward(cache)
    assert loss == 0.5
    np.testing.assert_allclose(demb, [[2.0, 0.0], [-2.0, 0.0]])   # push apart
    assert dthreshold == 1.0


def test_kink_takes_zero_subgradient():
    # same pair with d = 1 and theta = 2: u = 1 - (2 - 1) = 0 exactly
    loss, cache = ops.pair_hinge_forward(np.array([[0.0], [1.0]]), np.array([0, 0]), 2.0)
    demb, dthreshold = ops.pair_hinge_backward(cache)
    assert loss == 0.0 and not demb.any() and dthreshold == 0.0


@pytest.mark.parametrize("labels", [np.zeros(6, int), np.arange(6)], ids=["all-same", "all-different"])
def test_one_empty_group_gives_the_plain_mean(labels):
    emb = np.random.default_rng(5).standard_normal((6, 3))
    balanced, cb = ops.pair_hinge_forward(emb, labels, 2.0, balance=True)
    plain, cp = ops.pair_hinge_forward(emb, labels, 2.0, balance=False)
    np.testing.assert_allclose(balanced, plain, rtol=1e-12)
    np.testing.assert_allclose(ops.pair_hinge_backward(cb)[0], ops.pair_hinge_backward(cp)[0], rtol=1e-12)


def test_listed_pairs_count_repeats():
    emb, labels = np.array([[0.0], [2.0], [5.0]]), np.array([0, 0, 1])
    once, _ = ops.pair_hinge_forward(emb, labels, 1.0, np.array([[0, 1], [0, 2]]), balance=False)
    twice, _ = ops.pair_hinge_forward(emb, labels, 1.0, np.array([[0, 1], [0, 1], [0, 2]]), balance=False)
    # same pair: d = 4, u = 1 - (1 - 4) = 4; different pair: d = 25, u = 1 + (1 - 25) < 0
    assert once == pytest.approx(4 / 2) and twice == pytest.approx(8 / 3)


@pytest.mark.parametrize("pairs, match", [
    (np.array([[0, 0]]), "itself"),
    (np.array([[0, 3]]), r"index signatures 0\.\.2"),
    (np.array([[0, -1]]), r"index signatures 0\.\.2"),
    (np.zeros((0, 2), int), r"non-empty integer array of shape \(P, 2\)"),
    (np.array([[0.0, 1.0]]), r"non-empty integer array of shape \(P, 2\)"),
    (np.array([0, 1]), r"non-empty integer array of shape \(P, 2\)"),
])
def test_bad_pairs(pairs, match):
    with pytest.raises(ValueError, match=match):
        ops.pair_hinge_forward(np.zeros((3, 2)), np.array([0, 0, 1]), 1.0, pairs)


def test_bad_labels_threshold_and_batch():
    emb = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"labels must be an integer array of shape \(k,\) = \(3,\)"):
        ops.pair_hinge_forward(emb, np.array([0, 1]), 1.0)
    with pytest.raises(ValueError, match=r"labels must be an integer array"):
        ops.pair_hinge_forward(emb, np.array([0.0, 1.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="threshold must be a finite real scalar"):
        ops.pair_hinge_forward(emb, np.array([0, 1, 1]), float("nan"))
    with pytest.raises(ValueError, match="threshold must be a finite real scalar"):
        ops.pair_hinge_forward(emb, np.array([0, 1, 1]), np.ones(2))
    with pytest.raises(ValueError, match="at least 2 signatures"):
        ops.pair_hinge_forward(np.zeros((1, 2)), np.array([0]), 1.0)
