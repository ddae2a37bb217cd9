"""Gradient estimators for the metric loss: Multibatch and random pairs (paper section 3).

Both take the signatures of one mini-batch of k faces and return the loss
and its gradients with respect to the signatures and the threshold. This is
the seam of a training step: *signatures in, signature gradients out*;
everything before it (images -> signatures) and after it (signature
gradients -> parameter gradients) is the network's forward and backward pass.

- ``multibatch``: the loss over all k^2 - k ordered pairs of the batch
  (L_pi of section 3). Unbiased, with variance O(1/k^2) when the row means
  A_i of Theorem 1 are small.
- ``pairs``: the classic estimator the paper compares with: k/2 independent
  random pairs of the training set, k/4 same and k/4 different. The batch
  itself is drawn as pairs (``npface.data.sampler.RandomPairSampler``,
  ``SyntheticFaces.sample_random_pairs``): pair i is rows 2i and 2i + 1
  (``pair_rows``), so the estimator only reads that layout. k images, the
  same forward/backward cost as a Multibatch step. Variance O(1/k).
- ``pairs-in-batch``: k/2 disjoint pairs drawn inside a P x K batch
  (``random_pairs``), as close to half same as the batch allows. Its pairs
  are not independent draws from the training set (all same pairs come from
  a few of the batch's P people), so it is kept only for comparison.

``photos`` (multibatch only): each image's photo, e.g. its row in the
dataset. A P x K batch fills the K slots of a person with fewer than K
photos by repeating photos, and a pair of one photo twice (differently
augmented) is an easy same pair that takes a share of the same pairs'
weight. With ``photos`` those pairs are left out (``distinct_photo_pairs``).

Either is weighted with ``balance`` (default True: same and not-same pairs
weigh half each, the paper's down-weighting of the more numerous not-same
pairs).
"""
from typing import NamedTuple, Optional

import numpy as np

from npface import ops

ESTIMATORS = ("multibatch", "pairs", "pairs-in-batch")
PAIR_BATCH_ESTIMATORS = ("pairs",)    # estimators whose batch is drawn as k/2 pairs, not P x K


class SignatureGradients(NamedTuple):
    loss: float
    dsig: np.ndarray          # (k, D) dL/d signatures
    dthreshold: float         # dL/d theta
    n_pairs: int              # how many pairs the estimate used
    landmark_loss: Optional[float] = None   # set by training.train_step when a landmark loss is added
    distill_loss: Optional[float] = None    # set by training.train_step when a distillation loss is added


def random_pairs(labels, rng) -> np.ndarray:
    """k/2 disjoint pairs of the batch (P, 2): as close to half same, half different as the labels allow.

    Same pairs are drawn first, two unused images of one identity at a time
    (identities in random order), up to k/4 of them; the remaining images are
    then paired at random among different identities. Each image is in at
    most one pair, so the pairs are independent given the batch.
    """
    labels = np.asarray(labels)
    k = len(labels)
    want_same = k // 4
    unused = np.ones(k, dtype=bool)
    pairs = []
    for ident in rng.permutation(np.unique(labels)):
        if len(pairs) >= want_same:
            break
        members = rng.permutation(np.flatnonzero(labels == ident))
        for i in range(0, len(members) - 1, 2):
            if len(pairs) >= want_same:
                break
            pairs.append((members[i], members[i + 1]))
            unused[members[i]] = unused[members[i + 1]] = False
    free = list(rng.permutation(np.flatnonzero(unused)))
    while len(pairs) < k // 2 and len(free) >= 2:
        i = free.pop()
        j = next((m for m in free if labels[m] != labels[i]), None)
        if j is None:                       # only one identity left among the free images
            j = free[-1]
        free.remove(j)
        pairs.append((i, j))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def pair_rows(k: int) -> np.ndarray:
    """The pairs (k/2, 2) of a batch drawn as pairs: rows (0, 1), (2, 3), ..."""
    return np.arange(k - k % 2, dtype=np.int64).reshape(-1, 2)


def distinct_photo_pairs(photos) -> np.ndarray:
    """All ordered pairs (i, j) of a batch whose two images are different photos (P, 2), in row-major order.

    photos (k,): each image's photo (any integer id). With k distinct photos
    this is all k^2 - k ordered pairs, the Multibatch set.
    """
    photos = np.asarray(photos)
    if photos.ndim != 1 or photos.dtype.kind not in "iu":
        raise ValueError(f"photos must be an integer array of shape (k,), got {photos.dtype} {photos.shape}")
    i, j = np.nonzero(photos[:, None] != photos[None, :])            # the diagonal (i == j) is never listed
    return np.stack([i, j], axis=1).astype(np.int64)


def signature_gradients(sig, labels, threshold, estimator="multibatch", rng=None, balance=True,
                        photos=None) -> SignatureGradients:
    """Loss and gradients of one batch of signatures (k, D) under ``estimator``.

    For ``pairs`` the batch must be laid out as pairs (``pair_rows``); for
    ``pairs-in-batch`` ``rng`` draws the pairs inside the batch. ``photos``
    (k,), multibatch only: leave out the pairs of one photo twice.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    pairs: Optional[np.ndarray] = None
    if photos is not None:
        if estimator != "multibatch":
            raise ValueError(f"photos (leaving out pairs of one photo twice) needs the multibatch estimator, "
                             f"got {estimator!r}")
        if np.shape(photos) != (len(labels),):
            raise ValueError(f"photos must hold one id per signature ({len(labels)}), got shape {np.shape(photos)}")
        pairs = distinct_photo_pairs(photos)
        if len(pairs) == 0:
            raise ValueError("every image of the batch is one photo: no pair of distinct photos is left")
    elif estimator == "pairs":
        pairs = pair_rows(len(labels))
    elif estimator == "pairs-in-batch":
        if rng is None:
            raise ValueError("the pairs-in-batch estimator needs a random generator to draw its pairs")
        pairs = random_pairs(labels, rng)
    loss, cache = ops.pair_hinge_forward(sig, labels, threshold, pairs, balance)
    dsig, dthreshold = ops.pair_hinge_backward(cache)
    k = len(labels)
    return SignatureGradients(loss, dsig, dthreshold, k * (k - 1) if pairs is None else len(pairs))
