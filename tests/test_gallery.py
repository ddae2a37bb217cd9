"""npface.gallery (close pairs, clusters, nearest, scores), the Chinese whispers kernel, and the cluster/search CLIs."""
import json

import numpy as np
import pytest

from kernels.whispers import chinese_whispers, chinese_whispers_reference
from npface import cluster as npcluster
from npface.embed import read_signatures, save_signatures
from npface.gallery import close_pairs, cluster, majority_linkage, nearest, pair_scores


def brute_distances(s):
    s = s.astype(np.float64)
    return ((s[:, None] - s[None]) ** 2).sum(-1)                                  # (N, N)


def people(n_people=12, per=4, d=16, seed=0, spread=0.3):
    """(N, d) float32 signatures of n_people well-separated people, and their labels (N,)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (n_people, d))
    labels = np.repeat(np.arange(n_people), per)
    return (centres[labels] + rng.normal(0, spread, (len(labels), d))).astype(np.float32), labels


@pytest.mark.parametrize("chunk", [1, 5, 7, 1000])
def test_close_pairs_match_brute_force(chunk):
    s, _ = people(seed=chunk)
    theta = float(np.median(brute_distances(s)))                                 # about half the pairs
    i, j, d = close_pairs(s, theta, chunk=chunk)
    full = brute_distances(s)
    want = set(zip(*np.nonzero(np.triu(full < theta, 1))))
    assert set(zip(i.tolist(), j.tolist())) == want and len(i) == len(want)
    np.testing.assert_allclose(d, full[i, j], rtol=1e-4, atol=1e-4)
    assert (i < j).all()


def test_nearest_matches_brute_force():
    s, _ = people(seed=3)
    q = s[[0, 5, 17]] + np.float32(0.01)
    for chunk in (1, 4, 10_000):
        idx, dist = nearest(s, q, 6, chunk=chunk)
        full = ((q[:, None].astype(np.float64) - s[None]) ** 2).sum(-1)           # (3, N)
        np.testing.assert_array_equal(idx, np.argsort(full, axis=1, kind="stable")[:, :6])
        np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :6], rtol=1e-4, atol=1e-4)
    idx, _ = nearest(s[:3], q, 10)
    assert idx.shape == (3, 3)                                                   # k > G: all of G


def test_clusters_recover_separated_people():
    s, labels = people()
    theta = 4.0          # same-person squared distances ~ 2 * 16 * 0.09 ~ 2.9; different ~ 2 * 16 * 9
    i, j, d = close_pairs(s, theta)
    for method in ("components", "whispers"):
        got = cluster(len(s), i, j, d, theta, method)
        scores = pair_scores(labels, got)
        assert scores["precision"] == 1.0 and scores["recall"] == 1.0 and scores["purity"] == 1.0
        assert got[0] == 0 and got.max() == len(np.unique(labels)) - 1           # numbered by first appearance
    # majority needs most of a person's pairs under theta (a few of these are not), and never mixes people
    assert pair_scores(labels, cluster(len(s), i, j, d, theta, "majority"))["precision"] == 1.0
    full = brute_distances(s)
    theta_all = 1.01 * full[labels[:, None] == labels[None, :]].max()           # every same-person pair under it
    got = cluster(len(s), *close_pairs(s, theta_all), theta_all, "majority")
    assert pair_scores(labels, got)["recall"] == 1.0 and pair_scores(labels, got)["precision"] == 1.0
    assert got[0] == 0 and got.max() == len(np.unique(labels)) - 1


def test_whispers_resist_one_bridge_where_components_merge():
    # Two cliques of 5 joined by a single weak edge: components merge them, whispers keep them apart.
    i, j, d = [], [], []
    for base in (0, 5):
        for a in range(5):
            for b in range(a + 1, 5):
                i.append(base + a), j.append(base + b), d.append(0.5)
    i.append(4), j.append(5), d.append(0.99)
    args = (10, np.array(i), np.array(j), np.array(d, dtype=np.float32), 1.0)
    assert len(set(cluster(*args, method="components").tolist())) == 1
    for method in ("whispers", "majority"):
        assert cluster(*args, method=method).tolist() == [0] * 5 + [1] * 5


def test_majority_keeps_a_face_out_of_a_group_it_half_matches():
    # A clique of 4 (d 0.2) and a face close to 2 of them (d 0.9 < theta = 1): 2 of 4 votes are not a majority.
    i, j, d = [0, 0, 0, 1, 1, 2, 4, 4], [1, 2, 3, 2, 3, 3, 0, 1], [0.2] * 6 + [0.9, 0.9]
    args = (5, np.array(i), np.array(j), np.array(d, dtype=np.float32), 1.0)
    assert cluster(*args, method="majority").tolist() == [0, 0, 0, 0, 1]
    assert cluster(*args, method="components").tolist() == [0] * 5             # any chain joins


def majority_reference(n, i, j, d):
    """Average linkage on the votes, the obvious way: recount every pair of clusters after every merge."""
    same = np.zeros((n, n), dtype=np.int64)
    dist = np.zeros((n, n))
    same[i, j] = same[j, i] = 1
    dist[i, j] = dist[j, i] = d
    clusters = [[f] for f in range(n)]
    while True:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                votes = same[np.ix_(clusters[a], clusters[b])].sum()
                if votes:
                    share = votes / (len(clusters[a]) * len(clusters[b]))
                    mean = dist[np.ix_(clusters[a], clusters[b])].sum() / votes
                    key = (-share, mean, *sorted((min(clusters[a]), min(clusters[b]))))
                    best = min(best, (key, a, b)) if best else (key, a, b)
        if best is None or -best[0][0] <= 0.5:
            break
        _, a, b = best
        clusters[a] += clusters.pop(b)
    labels = np.empty(n, dtype=np.int64)
    for c, members in enumerate(clusters):
        labels[members] = c
    return labels


@pytest.mark.parametrize("seed", range(6))
def test_majority_linkage_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = 30
    pairs = {tuple(sorted(p)) for p in rng.integers(0, n, (90, 2)).tolist() if p[0] != p[1]}
    i, j = (np.array(x) for x in zip(*sorted(pairs)))
    d = rng.integers(1, 8, len(i)) / 8.0                                     # exact sums: ties broken by the rule
    got = majority_linkage(n, i, j, d)
    want = majority_reference(n, i, j, d)
    assert pair_scores(want, got)["precision"] == 1.0 and pair_scores(want, got)["recall"] == 1.0
    assert len(np.unique(got)) == len(np.unique(want))


def test_whispers_kernel_matches_reference():
    from scipy.sparse import coo_matrix
    rng = np.random.default_rng(0)
    n = 40
    a, b = rng.integers(0, n, 120), rng.integers(0, n, 120)
    keep = a != b
    w = rng.random(keep.sum())
    g = coo_matrix((np.concatenate([w, w]), (np.concatenate([a[keep], b[keep]]), np.concatenate([b[keep], a[keep]]))),
                   shape=(n, n)).tocsr()
    orders = np.stack([rng.permutation(n) for _ in range(10)])
    labels = np.empty(n, dtype=np.int64)
    passes = chinese_whispers(g.indptr.astype(np.int64), g.indices.astype(np.int64), g.data, orders, labels)
    want, want_passes = chinese_whispers_reference(g.indptr, g.indices, g.data, orders)
    np.testing.assert_array_equal(labels, want)
    assert passes == want_passes


def test_pair_scores_by_hand():
    truth = np.array([0, 0, 0, 1, 1])
    pred = np.array([5, 5, 7, 7, 7])
    # put together: (0,1), (2,3), (2,4), (3,4) = 4; same person: (0,1), (0,2), (1,2), (3,4) = 4; both: (0,1), (3,4)
    s = pair_scores(truth, pred)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5)
    assert s["purity"] == pytest.approx((2 + 2) / 5) and s["clusters"] == 2
    with pytest.raises(ValueError, match="truth and predicted"):
        pair_scores(truth, pred[:3])


def test_gallery_validation():
    s, _ = people()
    before = s.copy()
    with pytest.raises(ValueError, match="threshold must be a positive number"):
        close_pairs(s, -1.0)
    with pytest.raises(ValueError, match=r"signatures must be signatures of shape \(N, D\)"):
        close_pairs(s[0], 1.0)
    bad = s.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        close_pairs(bad, 1.0)
    with pytest.raises(ValueError, match="same D"):
        nearest(s, s[:, :4], 3)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        nearest(s, s, 0)
    with pytest.raises(ValueError, match="method must be one of"):
        cluster(3, np.zeros(0, int), np.zeros(0, int), np.zeros(0), 1.0, "kmeans")
    np.testing.assert_array_equal(s, before)


# --------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------

def signatures_file(tmp_path, name="g.npz", threshold=4.0):
    s, labels = people()
    paths = [f"p{p}/img{k}.jpg" for k, p in enumerate(labels)]
    meta = {"model": {"path": "none.npz", "sha256": "0" * 64, "threshold": threshold}, "flip": False}
    save_signatures(tmp_path / name, s, paths, meta, np.zeros(len(s), np.int64), np.full((len(s), 4), np.nan),
                    ["crop"] * len(s))
    return tmp_path / name, labels


def test_cluster_command_writes_the_people(tmp_path, capsys):
    path, labels = signatures_file(tmp_path)
    assert npcluster.main([str(path), "--quiet", "--method", "whispers"]) == 0
    out = capsys.readouterr().out
    assert "48 faces in 12 clusters" in out and "theta 4.0000" in out
    rows = (tmp_path / "g.clusters.csv").read_text().splitlines()
    assert rows[0] == "path,face,cluster" and len(rows) == 49
    got = np.array([int(r.split(",")[2]) for r in rows[1:]])
    assert pair_scores(labels, got)["precision"] == 1.0 and pair_scores(labels, got)["recall"] == 1.0
    # the default (majority) never mixes two people (a few same-person pairs here lie above theta)
    assert npcluster.main([str(path), "--quiet"]) == 0
    capsys.readouterr()
    rows = (tmp_path / "g.clusters.csv").read_text().splitlines()
    assert pair_scores(labels, np.array([int(r.split(",")[2]) for r in rows[1:]]))["precision"] == 1.0
    # --threshold overrides theta: below every same-person distance, every face is alone.
    assert npcluster.main([str(path), "--quiet", "--threshold", "1e-6", "--out", str(tmp_path / "o.csv")]) == 0
    assert "48 faces in 48 clusters" in capsys.readouterr().out


def test_cluster_command_errors_and_help(tmp_path, capsys):
    status = npcluster.main([str(tmp_path / "missing.npz")])
    err = capsys.readouterr().err.strip()
    assert status == 1 and err.count("\n") == 0
    assert err.startswith("python -m npface.cluster: error: signatures file not found")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    assert npcluster.main([str(tmp_path / "junk.npz")]) == 1
    assert "not an npface signatures file" in capsys.readouterr().err
    path, _ = signatures_file(tmp_path)
    with pytest.raises(SystemExit) as exc:
        npcluster.main([str(path), "--chunk", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        npcluster.main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--out", "--method", "--threshold", "--chunk", "--seed", "--quiet", "theta"):
        assert flag in text


def test_read_signatures_old_format(tmp_path):
    s, _ = people()
    save_signatures(tmp_path / "old.npz", s, [f"{k}.jpg" for k in range(len(s))],
                    {"model": {"threshold": 2.0}})
    data = read_signatures(tmp_path / "old.npz")
    assert (data.faces == 0).all() and np.isnan(data.boxes).all() and data.threshold == 2.0
    meta = json.loads(json.dumps(data.metadata))
    assert meta["model"]["threshold"] == 2.0


def test_truncated_or_foreign_signatures_file_is_a_one_line_value_error(tmp_path):
    s, _ = people()
    good = tmp_path / "s.npz"
    save_signatures(good, s, [f"{k}.jpg" for k in range(len(s))], {"model": {"threshold": 2.0}})
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])      # zipfile raises BadZipFile here
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    for bad in (cut, text):
        with pytest.raises(ValueError, match="not an npface signatures file") as e:
            read_signatures(bad)
        assert "\n" not in str(e.value) and str(bad) in str(e.value)
