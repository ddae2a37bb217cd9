"""The paper's random-pairs baseline (batches drawn as k/2 independent pairs) and the people-disjoint fold rule."""
import numpy as np
import pytest

from npface import training
from npface.data.sampler import RandomPairSampler, validation_pairs
from npface.data.synthetic import SyntheticFaces
from npface.verification import person_folds

# 8 people: 0 and 5 have one image (never eligible), the others 2 .. 6
LABELS = np.repeat(np.arange(8), [1, 2, 3, 4, 5, 1, 6, 2])


def test_random_pair_batch_is_half_same_half_different_from_eligible_people():
    sampler = RandomPairSampler(LABELS, 16)
    eligible = {1, 2, 3, 4, 6, 7}
    assert sampler.n_eligible_images == 22
    for seed in range(20):
        idx, labels = sampler.sample(np.random.default_rng(seed))
        assert idx.shape == labels.shape == (16,)
        np.testing.assert_array_equal(LABELS[idx], labels)
        pa, pb = labels[0::2], labels[1::2]                                    # (8,), (8,): pair i = rows 2i, 2i+1
        assert (pa[:4] == pb[:4]).all() and (pa[4:] != pb[4:]).all()
        assert (idx[0::2][:4] != idx[1::2][:4]).all()                          # two distinct images of one person
        assert set(labels.tolist()) <= eligible


def test_random_pairs_draw_people_uniformly_and_independently():
    sampler = RandomPairSampler(LABELS, 4)                                     # one same, one different pair
    rng = np.random.default_rng(0)
    first = np.array([sampler.sample(rng)[1][0] for _ in range(6000)])
    counts = np.array([(first == p).sum() for p in (1, 2, 3, 4, 6, 7)])       # uniform over people, not images
    assert np.abs(counts / 6000 - 1 / 6).max() < 0.02
    # a P x K batch would repeat a person; independent pairs repeat people only by chance
    same_people = [sampler.sample(rng)[1] for _ in range(2000)]
    assert np.mean([s[0] == s[2] or s[0] == s[3] for s in same_people]) < 0.5


def test_random_pair_sampler_rejects_bad_sizes():
    with pytest.raises(ValueError, match="batch_size must be a multiple of 4"):
        RandomPairSampler(LABELS, 10)
    with pytest.raises(ValueError, match="only 1 people have >= 2 images"):
        RandomPairSampler(np.array([0, 0, 1]), 4)


def test_synthetic_random_pairs_and_the_trainer_source():
    faces = SyntheticFaces(seed=0, n_identities=50)
    images, labels = faces.sample_random_pairs(8, np.random.default_rng(1))
    assert images.shape == (8, 112, 112, 3) and labels.tolist()[0] == labels.tolist()[1]
    assert labels[2] == labels[3] and labels[4] != labels[5] and labels[6] != labels[7]
    assert not np.array_equal(images[0], images[1])                           # one identity, two renders
    cfg = training.TrainConfig(estimator="pairs", batch_identities=2, images_per_identity=4, synthetic_identities=50)
    a = training.SyntheticSource(cfg).batch(np.random.default_rng([0, 3]))
    b = training.SyntheticSource(cfg).batch(np.random.default_rng([0, 3]))
    np.testing.assert_array_equal(a[0], b[0])                                  # (seed, step) fixes the batch
    assert a[1][0] == a[1][1] and a[1][4] != a[1][5]
    with pytest.raises(ValueError, match="multiple of 4 images"):
        training.TrainConfig(estimator="pairs", batch_identities=3, images_per_identity=2).check()


def test_person_folds_keep_people_disjoint_and_balanced():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 300, size=400)
    b = np.where(np.arange(400) < 200, a, (a + rng.integers(1, 3, size=400)) % 300)   # different: a neighbour
    same = a == b
    fold = person_folds(a, b, same, 5)
    assert fold.shape == (400,) and set(fold.tolist()) == set(range(5))
    people = [set(a[fold == f]) | set(b[fold == f]) for f in range(5)]
    assert all(not people[f] & people[g] for f in range(5) for g in range(f))
    np.testing.assert_array_equal(fold, person_folds(a, b, same, 5))          # deterministic
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= 0.5 * sizes.mean()
    names = np.array([f"p{x}" for x in a]), np.array([f"p{x}" for x in b])   # names work as labels too
    assert set(person_folds(*names, same, 5).tolist()) == set(range(5))


def test_person_folds_errors():
    with pytest.raises(ValueError, match="folds must be an integer >= 2"):
        person_folds([0, 1], [0, 2], [True, False], 1)
    chain = np.arange(10)                                                      # pairs (i, i+1): one linked group
    with pytest.raises(ValueError, match="cannot split 10 pairs into 2 people-disjoint folds"):
        person_folds(chain, chain + 1, np.zeros(10, bool), 2)
    with pytest.raises(ValueError, match="one shape"):
        person_folds([0, 1], [0], [True, False], 2)


def test_grouped_validation_pairs_allow_people_disjoint_folds():
    labels = np.repeat(np.arange(60), 4)
    pairs, same = validation_pairs(labels, 50, seed=0, n_groups=10)
    assert pairs.shape == (100, 2) and same.sum() == 50
    lab = labels[pairs]
    np.testing.assert_array_equal(lab[:, 0] == lab[:, 1], same)
    fold = person_folds(lab[:, 0], lab[:, 1], same, 10)
    for f in range(10):
        assert same[fold == f].any() and (~same[fold == f]).any()
    people = [set(lab[fold == f].ravel().tolist()) for f in range(10)]
    assert all(not people[f] & people[g] for f in range(10) for g in range(f))
