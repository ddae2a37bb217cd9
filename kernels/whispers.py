"""Chinese whispers (Biemann 2006) on a graph in CSR form: the label-propagation loop.

Every node starts in its own cluster. A pass visits the nodes in a given
order; a node takes the label that has the largest summed edge weight among
its neighbours (ties: the smallest label), seeing the labels its
predecessors in this pass already changed. Passes repeat until none changes
a label, or ``passes`` are done.

    indptr  (N + 1,) int64, indices (E,) int64, weights (E,) float64: the symmetric graph
    orders  (passes, N) int64: the visiting order of each pass
    labels  (N,) int64, written
"""
import numpy as np

from kernels.jit import kernel


@kernel
def chinese_whispers(indptr, indices, weights, orders, labels):
    n = labels.shape[0]
    for i in range(n):
        labels[i] = i
    score = np.zeros(n)                      # summed weight per label, for the node being visited
    passes_run = 0
    for p in range(orders.shape[0]):
        changed = 0
        passes_run += 1
        for t in range(n):
            v = orders[p, t]
            lo, hi = indptr[v], indptr[v + 1]
            if lo == hi:
                continue
            best, best_score = labels[v], -1.0
            for e in range(lo, hi):
                score[labels[indices[e]]] += weights[e]
            for e in range(lo, hi):
                lab = labels[indices[e]]
                s = score[lab]
                if s > best_score or (s == best_score and lab < best):
                    best, best_score = lab, s
            for e in range(lo, hi):
                score[labels[indices[e]]] = 0.0
            if best != labels[v]:
                labels[v] = best
                changed += 1
        if changed == 0:
            break
    return passes_run


def chinese_whispers_reference(indptr, indices, weights, orders):
    """The same loop in plain Python with a dict per node: the test oracle."""
    n = len(indptr) - 1
    labels = list(range(n))
    passes_run = 0
    for order in orders:
        passes_run += 1
        changed = 0
        for v in order:
            if indptr[v] == indptr[v + 1]:
                continue
            score = {}
            for e in range(indptr[v], indptr[v + 1]):
                lab = labels[indices[e]]
                score[lab] = score.get(lab, 0.0) + weights[e]
            best = min(score, key=lambda lab: (-score[lab], lab))
            if best != labels[v]:
                labels[v] = best
                changed += 1
        if changed == 0:
            break
    return np.asarray(labels, dtype=np.int64), passes_run
