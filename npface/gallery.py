"""Many signatures at once: all close pairs, clusters of identities, nearest neighbours, and their scores.

    G   faces in a gallery (rows of signatures (G, D))
    Q   query faces (Q, D)
    E   close pairs (edges of the graph)

Two faces are the same person when the squared distance of their signatures
is below the model's learned threshold theta (eq. 1-2). The graph joins
every such pair; clustering turns it into identities.

Distances in blocks
-------------------
All pairs are O(G^2). They are computed in row blocks against all later
rows (upper triangle), as ``|a|^2 + |b|^2 - 2 a . b`` with one float32
matrix product per block, so the product runs at BLAS speed. A block has at
most ``chunk`` rows and at most ``BLOCK_ELEMENTS`` distances (64 MB of
float32), so memory stays bounded however large G is (beside the pairs
found). A pair's
distance is exact up to float32 rounding of that expansion (relative
error about 1e-6 of |a|^2 + |b|^2), which can only flip a pair lying that
close to theta.

Clustering
----------
- ``components``: connected components of the graph (single linkage at
  theta): two faces share a cluster when a chain of same-person pairs joins
  them. One wrong pair merges two people.
- ``whispers``: Chinese whispers (Biemann 2006, ``kernels/whispers.py``):
  label propagation, each face taking the label with the largest summed
  weight among its neighbours; weight theta - d, so a pair just under theta
  counts little. A single wrong pair rarely merges two dense clusters.
- ``majority``: average linkage on theta's votes. Every pair of faces votes
  "same" (closer than theta) or "different"; starting from single faces,
  the two clusters whose cross pairs vote "same" most often are merged, for
  as long as more than half of their cross pairs do. A wrong pair can join
  two single faces, but not a face to a cluster of several faces, nor two
  clusters, unless most of their faces agree. When theta's errors are many
  (a model with a high false-match rate on new people), this keeps
  different people apart where the two graph methods chain them together.

``benchmarks.photos`` measures all three on held-out people; the commands'
default is the best there (``DEFAULT_METHOD``).
"""
import heapq

import numpy as np

METHODS = ("majority", "whispers", "components")
DEFAULT_METHOD = "majority"
CHUNK = 2048              # at most this many rows per block
BLOCK_ELEMENTS = 1 << 24  # and at most this many distances per block (64 MB of float32)
WHISPERS_PASSES = 30

__all__ = ["CHUNK", "DEFAULT_METHOD", "METHODS", "close_pairs", "cluster", "majority_linkage", "nearest", "pair_scores"]


def _signatures(s, name):
    s = np.asarray(s)
    if s.ndim != 2 or s.dtype.kind != "f" or s.shape[1] < 1:
        raise ValueError(f"{name} must be signatures of shape (N, D), float, got {s.dtype} {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} must be finite (NaN rows are unreadable images; leave them out)")
    return np.ascontiguousarray(s, dtype=np.float32)


def _threshold(threshold):
    if isinstance(threshold, bool) or not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    return float(threshold)


def _chunk(chunk):
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    return int(chunk)


def _block_distances(a, b, sq_a, sq_b):
    """Squared distances (n, m) of rows a (n, D) to rows b (m, D), clipped at 0 against rounding; one (n, m) array."""
    d = a @ b.T
    d *= -2.0
    d += sq_a[:, None]
    d += sq_b[None, :]
    return np.maximum(d, 0.0, out=d)


def _block_rows(chunk, width):
    """Rows per block: at most ``chunk``, and at most BLOCK_ELEMENTS / width."""
    return max(1, min(chunk, BLOCK_ELEMENTS // max(width, 1)))


def close_pairs(signatures, threshold, chunk=CHUNK, progress=None):
    """Every pair i < j with squared distance < ``threshold``: (i (E,), j (E,), d (E,)), d float32.

    ``progress(done_rows, total_rows)`` is called after each block.
    """
    s = _signatures(signatures, "signatures")                     # (G, D)
    threshold, chunk = _threshold(threshold), _chunk(chunk)
    sq = (s.astype(np.float64) ** 2).sum(1).astype(np.float32)    # (G,)
    n = len(s)
    rows, cols, dist = [], [], []
    a = 0
    while a < n:
        b = min(a + _block_rows(chunk, n - a), n)
        d = _block_distances(s[a:b], s[a:], sq[a:b], sq[a:])     # (b - a, n - a)
        d[np.tril_indices(b - a, 0, d.shape[1])] = np.inf        # keep j > i only
        i, j = np.nonzero(d < threshold)
        rows.append(i + a)
        cols.append(j + a)
        dist.append(d[i, j])
        if progress is not None:
            progress(b, n)
        a = b
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt)) if rows else (lambda parts, dt: np.zeros(0, dt))
    return cat(rows, np.int64), cat(cols, np.int64), cat(dist, np.float32)


def cluster(n, i, j, d, threshold, method=DEFAULT_METHOD, seed=0):
    """Cluster labels (n,) int64, 0..C-1 numbered by first appearance, from close pairs (``close_pairs``).

    method: ``"majority"``, ``"whispers"`` or ``"components"`` (module docstring); seed
    orders the whispers' passes.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    i, j, d = (np.asarray(x) for x in (i, j, d))
    if not (i.shape == j.shape == d.shape) or i.ndim != 1:
        raise ValueError(f"i, j and d must be (E,) arrays of one length, got {i.shape}, {j.shape}, {d.shape}")
    if len(i) and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n):
        raise ValueError(f"pair indices must lie in 0..{n - 1}")
    threshold = _threshold(threshold)
    w = np.maximum(threshold - d.astype(np.float64), 1e-12)                 # (E,) closer pairs weigh more
    graph = coo_matrix((np.concatenate([w, w]), (np.concatenate([i, j]), np.concatenate([j, i]))),
                       shape=(n, n)).tocsr()
    if method == "components":
        _, labels = connected_components(graph, directed=False)
    elif method == "majority":
        labels = majority_linkage(n, i, j, d)
    else:
        from kernels.whispers import chinese_whispers
        rng = np.random.default_rng(seed)
        orders = np.stack([rng.permutation(n) for _ in range(WHISPERS_PASSES)]) if n else np.zeros((0, 0), np.int64)
        labels = np.empty(n, dtype=np.int64)
        chinese_whispers(graph.indptr.astype(np.int64), graph.indices.astype(np.int64),
                         graph.data.astype(np.float64), orders.astype(np.int64), labels)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def majority_linkage(n, i, j, d):
    """Cluster labels (n,) int64 (any numbering) of average linkage on theta's votes (module docstring).

    i, j, d (E,): the close pairs (each unordered pair once); every other pair votes "different".
    A merge takes the two clusters A, B with the highest share of "same" votes
    ``same(A, B) / (|A| |B|)``; ties go to the smaller mean distance of their close pairs, then to the
    smaller pair of (smallest face index of A, of B). Merging stops when no share exceeds 1/2.

    Each cluster keeps a map of its neighbour clusters to (count, summed distance) of the close pairs
    between them; a merge folds the smaller map into the larger, and pushes the merged cluster's shares
    onto a heap whose entries from before a merge are recognised as stale by a version number.
    """
    links = [dict() for _ in range(n)]             # links[a][b] = [close pairs between a and b, their summed d]
    for a, b, dist in zip(np.asarray(i).tolist(), np.asarray(j).tolist(), np.asarray(d, np.float64).tolist()):
        if a != b:
            link = links[a].setdefault(b, [0, 0.0])
            link[0] += 1
            link[1] += dist
            links[b][a] = link                     # one shared record per pair of clusters
    size, name, version = [1] * n, list(range(n)), [0] * n
    into = np.arange(n, dtype=np.int64)            # into[b] = the cluster b was folded into (itself while alive)

    def entry(a, b):
        count, total = links[a][b]
        first, second = sorted((name[a], name[b]))
        return (-count / (size[a] * size[b]), total / count, first, second, a, b, version[a], version[b])

    heap = [entry(a, b) for a in range(n) for b in links[a] if a < b]
    heapq.heapify(heap)
    while heap:
        share, _, _, _, a, b, va, vb = heapq.heappop(heap)
        if va != version[a] or vb != version[b]:
            continue                               # stale: a or b has merged since this entry
        if -share <= 0.5:
            break
        if len(links[a]) < len(links[b]):
            a, b = b, a                            # fold b (fewer neighbours) into a
        del links[a][b], links[b][a]
        for c, link in links[b].items():
            del links[c][b]
            if c in links[a]:
                links[a][c][0] += link[0]
                links[a][c][1] += link[1]
            else:
                links[a][c] = links[c][a] = link
        links[b] = {}
        size[a] += size[b]
        name[a] = min(name[a], name[b])
        version[a] += 1
        version[b] += 1
        into[b] = a
        for c in links[a]:
            heapq.heappush(heap, entry(a, c))
    label = into.copy()
    while True:                                    # follow each face's folds to its final cluster
        hop = label[label]
        if np.array_equal(hop, label):
            return label
        label = hop


def nearest(gallery, queries, k, chunk=CHUNK * 8):
    """The k nearest gallery rows of each query, exact: (index (Q, k) int64, distance (Q, k) float32), nearest first.

    Gallery rows are scanned in blocks of at most ``chunk`` rows (and
    BLOCK_ELEMENTS distances); the best k so far are kept per query. k larger than G gives G columns.
    """
    g = _signatures(gallery, "gallery")                         # (G, D)
    q = _signatures(queries, "queries")                         # (Q, D)
    if g.shape[1] != q.shape[1]:
        raise ValueError(f"gallery and queries must have the same D, got {g.shape[1]} and {q.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    chunk = _chunk(chunk)
    k = min(int(k), len(g))
    sq_g = (g.astype(np.float64) ** 2).sum(1).astype(np.float32)
    sq_q = (q.astype(np.float64) ** 2).sum(1).astype(np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    best_d = np.zeros((len(q), 0), dtype=np.float32)
    step = _block_rows(chunk, len(q))
    for a in range(0, len(g), step):
        d = _block_distances(q, g[a:a + step], sq_q, sq_g[a:a + step])            # (Q, m)
        cand_d = np.concatenate([best_d, d], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(np.arange(a, a + d.shape[1]), d.shape)], axis=1)
        if cand_d.shape[1] > k:
            part = np.argpartition(cand_d, k - 1, axis=1)[:, :k]
            cand_d, cand_i = np.take_along_axis(cand_d, part, 1), np.take_along_axis(cand_i, part, 1)
        best_d, best_i = cand_d, cand_i
    order = np.lexsort((best_i, best_d), axis=1) if best_d.size else np.zeros(best_d.shape, np.int64)
    return np.take_along_axis(best_i, order, 1), np.take_along_axis(best_d, order, 1)


def pair_scores(truth, predicted):
    """Pairwise precision, recall and F1, and purity, of cluster labels ``predicted`` (N,) against ``truth`` (N,).

    Over all unordered pairs of faces: precision = pairs put together that
    are the same person / pairs put together; recall = same-person pairs put
    together / same-person pairs. Purity = sum over clusters of the count
    of its commonest person / N. A score with nothing to count (no pair put
    together, no same-person pair) is 1.
    """
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    if truth.shape != predicted.shape or truth.ndim != 1 or len(truth) == 0:
        raise ValueError(f"truth and predicted must be (N,) label arrays, N >= 1, got {truth.shape}, {predicted.shape}")
    _, t = np.unique(truth, return_inverse=True)
    _, p = np.unique(predicted, return_inverse=True)
    table = np.zeros((t.max() + 1, p.max() + 1), dtype=np.int64)             # (people, clusters)
    np.add.at(table, (t.reshape(-1), p.reshape(-1)), 1)

    def pairs(c):
        return float((c * (c - 1) // 2).sum())
    together, same, both = pairs(table.sum(0)), pairs(table.sum(1)), pairs(table)
    precision = both / together if together else 1.0
    recall = both / same if same else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "purity": float(table.max(0).sum() / len(t)),
            "clusters": int(table.shape[1]), "people": int(table.shape[0]), "faces": int(len(t))}
