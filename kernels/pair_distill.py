"""Distance distillation over all pairs of a batch: the student's geometry matched to a teacher's.

Notation::

    emb      (k, D)   the student's signatures e_i of a mini-batch of k faces
    teacher  (k, E)   the teacher's embedding t_i of each face (e.g. several
                      models' signatures, each scaled by 1 / sqrt(M theta_m))
    theta             the student's learned threshold, held constant here

For an ordered pair (i, j), i != j::

    d_ij = ||e_i - e_j||^2            the student's squared distance
    t_ij = ||t_i - t_j||^2            the teacher's, in units of its threshold(s)
    r_ij = d_ij / theta - t_ij        the mismatch, in units of the threshold

    L = 1 / (k^2 - k) * sum_{i != j} huber(r_ij),
    huber(r) = r^2 / 2 where |r| <= 1, else |r| - 1/2

so the student's distances, measured in its own threshold, are pulled towards
the teacher's, measured in the teacher's: a pair the teacher places at its
threshold (t = 1) is pulled to the student's (d = theta). Over all k^2 - k
pairs, as the Multibatch hinge (``pair_hinge``), the term sees every pair the
batch holds, not-same pairs of different people included, whose relative
distances carry what the labels alone do not say (which faces look alike).

Why Huber's loss and not r^2: d is already a square, so r^2 is quartic in the
signatures and its gradient grows without bound with their scale; with a
fresh network (distances far from the teacher's) SGD diverged within a few
steps. Huber's gradient in d is at most 1 / theta per pair, bounded like the
hinge's (1 per pair), and it is r^2 / 2 near the teacher.

Gradient. dL/dd_ij = clip(r_ij, -1, 1) / (theta (k^2 - k)); collect it in a (k, k)
matrix A[i, j], and since dd_ij/de_i = 2 (e_i - e_j) = -dd_ij/de_j the
signatures' gradient is ``pair_hinge.pair_hinge_backward``'s product
2 (r_i e_i - (S @ emb)_i), S = A + A^T, r = S.sum(1): the same kernel, as the
two losses differ only in what A holds. theta gets no gradient from this term
(the hinge alone sets it), so the term cannot shrink by moving the threshold.
"""
import numpy as np

from kernels.jit import kernel


@kernel
def pair_distill_all_forward(emb, teacher, theta, A):
    """Loss over all ordered pairs i != j; A (k, k) is overwritten with dL/dd_ij. Returns the loss."""
    k, D = emb.shape
    E = teacher.shape[1]
    n = k * (k - 1)
    inv_theta = 1.0 / theta
    A[:] = 0.0
    loss = 0.0
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            d = 0.0
            for c in range(D):
                diff = emb[i, c] - emb[j, c]
                d += diff * diff
            t = 0.0
            for c in range(E):
                diff = teacher[i, c] - teacher[j, c]
                t += diff * diff
            r = d * inv_theta - t
            if r > 1.0:
                loss += r - 0.5
                g = 1.0
            elif r < -1.0:
                loss += -r - 0.5
                g = -1.0
            else:
                loss += 0.5 * r * r
                g = r
            A[i, j] = g * inv_theta / n
    return loss / n


# --------------------------------------------------------------------------
# Reference: one pair at a time, in float64
# --------------------------------------------------------------------------

def pair_distill_reference(emb, teacher, theta):
    """(loss, demb) by looping over every ordered pair, in float64."""
    emb = np.asarray(emb, dtype=np.float64)
    teacher = np.asarray(teacher, dtype=np.float64)
    k = len(emb)
    n = k * (k - 1)
    loss = 0.0
    demb = np.zeros_like(emb)
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            diff = emb[i] - emb[j]
            r = diff @ diff / theta - (teacher[i] - teacher[j]) @ (teacher[i] - teacher[j])
            loss += (0.5 * r * r if abs(r) <= 1 else abs(r) - 0.5) / n          # Huber's loss, delta = 1
            g = np.clip(r, -1.0, 1.0) / (theta * n)                             # dL/dd_ij
            demb[i] += g * 2 * diff
            demb[j] -= g * 2 * diff
    return loss, demb
