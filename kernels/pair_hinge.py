"""The pairwise hinge loss with a learned global threshold (paper eq. 2-3).

Notation::

    emb     (k, D)   signatures e_i of a mini-batch of k faces
    labels  (k,)     identity of each face
    theta            the learned global threshold (a scalar)
    pairs   (P, 2)   the pair set S, rows (i, j); or all ordered pairs i != j

For a pair (i, j)::

    d_ij = ||e_i - e_j||^2
    y_ij = +1 if labels[i] == labels[j] ("same") else -1 ("not same")
    l_ij = max(0, u_ij),   u_ij = 1 - y_ij (theta - d_ij)                  (eq. 2)

so a same pair is penalised unless d_ij <= theta - 1 and a not-same pair
unless d_ij >= theta + 1 (eq. 1). The loss is a weighted mean over S::

    L = sum_{(i,j) in S} w_ij l_ij

- Unbalanced (eq. 3): w_ij = 1 / |S|.
- Balanced (the paper's down-weighting of not-same pairs, so that false
  negatives and false positives weigh the same): w = 1 / (2 |S_same|) on same
  pairs and 1 / (2 |S_diff|) on not-same pairs, i.e. half the mean over same
  pairs plus half the mean over not-same pairs; when one group is empty, the
  mean over the other.

The Multibatch estimator takes S = all k^2 - k ordered pairs of the batch;
the classic estimator takes k/2 random pairs. Both are the same formula.

Gradient. Where u_ij > 0 (an "active" pair), dl_ij/dd_ij = y_ij and
dl_ij/dtheta = -y_ij; where u_ij < 0 both are 0. Kink convention: at exactly
u_ij = 0 we take the subgradient 0 (the pair counts as satisfied); a NaN u_ij
counts as satisfied too (``u > 0`` is false), so check signatures, not the loss,
for NaN. Collect
the pair coefficients in a (k, k) matrix A with A[i, j] += w_ij y_ij for
every active pair; since dd_ij/de_i = 2 (e_i - e_j) = -dd_ij/de_j::

    dL/de_i  = 2 sum_j S[i, j] (e_i - e_j),     S = A + A^T (symmetric)
             = 2 (r_i e_i - (S @ emb)_i),       r = S.sum(1)
    dL/dtheta = -sum_{active} w_ij y_ij

The forward pass fills A; the backward pass is one (k, k) @ (k, D) product.
"""
import numpy as np

from kernels.blas import matmul
from kernels.jit import kernel


@kernel
def _pair_loss_term(emb, labels, i, j, theta, w_same, w_diff, A):
    """Weighted loss of pair (i, j); adds w y into A[i, j] when active. Returns (loss, dtheta)."""
    d = 0.0
    for k in range(emb.shape[1]):
        diff = emb[i, k] - emb[j, k]
        d += diff * diff
    if labels[i] == labels[j]:
        y, w = 1.0, w_same
    else:
        y, w = -1.0, w_diff
    u = 1.0 - y * (theta - d)
    if u > 0.0:
        A[i, j] += w * y
        return w * u, -w * y
    return 0.0, 0.0


@kernel
def pair_hinge_all_forward(emb, labels, theta, w_same, w_diff, A):
    """Loss over all ordered pairs i != j. A (k, k) is overwritten. Returns (loss, dtheta)."""
    k = emb.shape[0]
    A[:] = 0.0
    loss = 0.0
    dtheta = 0.0
    for i in range(k):
        for j in range(k):
            if i != j:
                l, g = _pair_loss_term(emb, labels, i, j, theta, w_same, w_diff, A)
                loss += l
                dtheta += g
    return loss, dtheta


@kernel
def pair_hinge_listed_forward(emb, labels, pairs, theta, w_same, w_diff, A):
    """Loss over the rows (i, j) of pairs (P, 2). A (k, k) is overwritten. Returns (loss, dtheta)."""
    A[:] = 0.0
    loss = 0.0
    dtheta = 0.0
    for p in range(pairs.shape[0]):
        l, g = _pair_loss_term(emb, labels, pairs[p, 0], pairs[p, 1], theta, w_same, w_diff, A)
        loss += l
        dtheta += g
    return loss, dtheta


@kernel
def count_all_pairs(labels):
    """(same, different) among the k^2 - k ordered pairs i != j."""
    k = labels.shape[0]
    same = 0
    for i in range(k):
        for j in range(k):
            if i != j and labels[i] == labels[j]:
                same += 1
    return same, k * (k - 1) - same


@kernel
def count_listed_pairs(labels, pairs):
    """(same, different) among the rows of pairs (P, 2)."""
    same = 0
    for p in range(pairs.shape[0]):
        if labels[pairs[p, 0]] == labels[pairs[p, 1]]:
            same += 1
    return same, pairs.shape[0] - same


def pair_weights(n_same, n_diff, balance):
    """(w_same, w_diff): the weight of one same / one not-same pair in the mean."""
    if not balance:
        return 1.0 / (n_same + n_diff), 1.0 / (n_same + n_diff)
    if n_same == 0:
        return 0.0, 1.0 / n_diff
    if n_diff == 0:
        return 1.0 / n_same, 0.0
    return 0.5 / n_same, 0.5 / n_diff


@kernel
def pair_hinge_backward(emb, A, scale, demb):
    """demb (k, D) = scale * 2 (r_i e_i - S @ emb), S = A + A^T, r = S.sum(1)."""
    S = A + A.T                                                   # (k, k)
    matmul(S, emb, demb)
    k, D = emb.shape
    for i in range(k):
        r = 0.0
        for j in range(k):
            r += S[i, j]
        for c in range(D):
            demb[i, c] = 2.0 * scale * (r * emb[i, c] - demb[i, c])


# --------------------------------------------------------------------------
# Reference: one pair at a time, straight from eq. 2
# --------------------------------------------------------------------------

def pair_hinge_reference(emb, labels, theta, pairs, balance):
    """(loss, demb, dtheta) by looping over the pair list (P, 2), in float64."""
    emb = np.asarray(emb, dtype=np.float64)
    same = np.array([labels[i] == labels[j] for i, j in pairs])
    n_same, n_diff = int(same.sum()), int((~same).sum())
    w_same, w_diff = pair_weights(n_same, n_diff, balance)
    loss, dtheta = 0.0, 0.0
    demb = np.zeros_like(emb)
    for (i, j), is_same in zip(pairs, same):
        y, w = (1.0, w_same) if is_same else (-1.0, w_diff)
        diff = emb[i] - emb[j]
        u = 1.0 - y * (theta - diff @ diff)
        if u > 0:
            loss += w * u
            dtheta -= w * y
            demb[i] += w * y * 2 * diff
            demb[j] -= w * y * 2 * diff
    return loss, demb, dtheta


def all_ordered_pairs(k):
    """(k^2 - k, 2) array of every ordered pair (i, j), i != j, in row-major order."""
    i, j = np.nonzero(~np.eye(k, dtype=bool))
    return np.stack([i, j], axis=1)
