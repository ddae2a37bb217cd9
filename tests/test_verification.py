"""Tests of npface.verification: LFW pairs files, image resolution, and the protocols."""
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from npface import metrics, verification as ver

LFW = Path(os.environ.get("NPFACE_LFW", Path(__file__).resolve().parents[1] / ".." / "shared" / "lfw"))


def write(tmp_path, text, name="pairs.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def view2_text(n_folds, n):
    """A View 2 style file: fold f's same pairs use person S<f>_<i>, different ones A.. vs B.."""
    lines = [f"{n_folds}\t{n}"]
    for f in range(n_folds):
        lines += [f"S{f}_{i}\t{i + 1}\t{i + 2}" for i in range(n)]
        lines += [f"A{f}_{i}\t{i + 1}\tB{f}_{i}\t{i + 3}" for i in range(n)]
    return "\n".join(lines) + "\n"


VIEW1 = "2\nAlice\t1\t2\nBob\t3\t1\nAlice\t1\tCarol\t4\nBob\t2\tDave\t1\n"


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


def test_view1_file(tmp_path):
    pairs = ver.read_pairs(write(tmp_path, VIEW1))
    assert pairs.source == str(tmp_path / "pairs.txt")
    assert (pairs.n_pairs, pairs.n_folds, pairs.same_per_fold) == (4, 1, 2)
    assert pairs.name_a == ("Alice", "Bob", "Alice", "Bob")
    assert pairs.name_b == ("Alice", "Bob", "Carol", "Dave")
    np.testing.assert_array_equal(pairs.image_a, [1, 3, 1, 2])
    np.testing.assert_array_equal(pairs.image_b, [2, 1, 4, 1])
    np.testing.assert_array_equal(pairs.is_same, [True, True, False, False])
    np.testing.assert_array_equal(pairs.fold, [0, 0, 0, 0])
    np.testing.assert_array_equal(pairs.line, [2, 3, 4, 5])


def test_view2_fold_arithmetic(tmp_path):
    n_folds, n = 3, 2
    pairs = ver.read_pairs(write(tmp_path, view2_text(n_folds, n)))
    assert (pairs.n_pairs, pairs.n_folds, pairs.same_per_fold) == (12, 3, 2)
    np.testing.assert_array_equal(pairs.fold, [0] * 4 + [1] * 4 + [2] * 4)
    np.testing.assert_array_equal(pairs.is_same, [True, True, False, False] * 3)
    np.testing.assert_array_equal(pairs.line, np.arange(2, 14))
    # Each pair landed in the fold and class its name says it belongs to.
    for p in range(pairs.n_pairs):
        f = int(pairs.name_a[p][1])
        assert pairs.fold[p] == f
        assert pairs.is_same[p] == pairs.name_a[p].startswith("S")
    # Fold sizes and class balance: n same and n different pairs in every fold.
    for f in range(n_folds):
        in_fold = pairs.fold == f
        assert in_fold.sum() == 2 * n and pairs.is_same[in_fold].sum() == n


def test_crlf_and_trailing_blank_lines(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes((VIEW1.replace("\n", "\r\n") + "\r\n  \n").encode())
    pairs = ver.read_pairs(path)
    assert pairs.n_pairs == 4 and pairs.name_b[3] == "Dave"


@pytest.mark.parametrize("text, line, message", [
    ("2\nAlice\t1\t2\tX\nBob\t3\t1\nAlice\t1\tCarol\t4\nBob\t2\tDave\t1\n", 2,
     r"expected a same pair 'name n1 n2' \(3 fields\), got 4 fields"),
    ("2\nAlice\t1\t2\nBob\t3\t1\nAlice\t1\t4\nBob\t2\tDave\t1\n", 4,
     r"expected a different pair 'name1 n1 name2 n2' \(4 fields\), got 3 fields"),
    ("2\nAlice\t1\tx\nBob\t3\t1\nAlice\t1\tCarol\t4\nBob\t2\tDave\t1\n", 2,
     r"image number n2 must be a positive integer, got 'x'"),
    ("2\nAlice\t1\t2\nBob\t3\t1\nAlice\t1.0\tCarol\t4\nBob\t2\tDave\t1\n", 4,
     r"image number n1 must be a positive integer, got '1.0'"),
    ("2\nAlice\t1\t2\nBob\t0\t1\nAlice\t1\tCarol\t4\nBob\t2\tDave\t1\n", 3,
     r"image number n1 must be a positive integer, got '0'"),
    ("2\nAlice\t1\t2\nBob\t3\t1\nAlice\t1\tCarol\t-4\nBob\t2\tDave\t1\n", 4,
     r"image number n2 must be a positive integer, got '-4'"),
    ("2\nAlice\t1\t2\n\nBob\t3\t1\nAlice\t1\tCarol\t4\nBob\t2\tDave\t1\n", 3,
     r"blank line where a same pair was expected"),
    ("2\nAlice\t2\t2\nBob\t3\t1\nAlice\t1\tCarol\t4\nBob\t2\tDave\t1\n", 2,
     r"same pair compares image 2 of Alice with itself"),
    ("2\nAlice\t1\t2\nBob\t3\t1\nAlice\t1\tAlice\t4\nBob\t2\tDave\t1\n", 4,
     r"different pair names the same person twice"),
    ("2\nAlice\t1\t2\nBob\t3\t1\nAlice\t1\tCarol\t4\n", 5,
     r"missing line: expected a different pair \(pair 4 of 4"),
    (VIEW1 + "Eve\t1\tFrank\t2\n", 6, r"extra line: the header announces 4 pairs"),
    ("1 2 3\nAlice\t1\t2\n", 1, r"header must be 'N' \(View 1\) or 'folds N' \(View 2\), got 3 fields"),
    ("0\n", 1, r"the number of same pairs must be a positive integer, got '0'"),
    ("ten 300\n", 1, r"the number of folds must be a positive integer, got 'ten'"),
    ("2 x\n", 1, r"the number of same pairs per fold must be a positive integer"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}:{line}: {message}"):
        ver.read_pairs(path)


def test_wrong_fold_count_is_caught(tmp_path):
    # A View 2 file whose header claims 3 folds but holds only 2: pair 9 is missing.
    text = view2_text(2, 2).replace("2\t2\n", "3\t2\n", 1)
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:10: missing line: .*fold 3 of 3"):
        ver.read_pairs(path)


@pytest.mark.parametrize("text", ["", "\n\n", "   \n"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: empty pairs file"):
        ver.read_pairs(path)


# --------------------------------------------------------------------------
# Resolving pairs to images
# --------------------------------------------------------------------------


def make_fake_lfw(root, pairs, skip=()):
    """Tiny dummy files at root/lfw/<name>/<name>_NNNN.jpg for every image of the pairs."""
    for name, number in zip(pairs.name_a + pairs.name_b,
                            np.concatenate([pairs.image_a, pairs.image_b])):
        if (name, int(number)) in skip:
            continue
        folder = root / "lfw" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}_{int(number):04d}.jpg").write_bytes(b"\xff\xd8")


def test_resolve_pairs(tmp_path):
    pairs = ver.parse_pairs(VIEW1, source="view1")
    make_fake_lfw(tmp_path, pairs)
    for root in (tmp_path, tmp_path / "lfw"):  # the dataset folder or its images folder
        res = ver.resolve_pairs(pairs, root)
        assert res.n_pairs == 4 and res.n_folds == 1
        assert res.paths_a[0] == tmp_path / "lfw" / "Alice" / "Alice_0001.jpg"
        assert res.paths_b[2] == tmp_path / "lfw" / "Carol" / "Carol_0004.jpg"
        assert res.paths_b[1] == tmp_path / "lfw" / "Bob" / "Bob_0001.jpg"
        np.testing.assert_array_equal(res.is_same, pairs.is_same)
        np.testing.assert_array_equal(res.fold, pairs.fold)


def test_unique_images(tmp_path):
    pairs = ver.parse_pairs(VIEW1, source="view1")
    make_fake_lfw(tmp_path, pairs)
    res = ver.resolve_pairs(pairs, tmp_path)
    paths, ia, ib = res.unique_images()
    # Alice_1 appears twice (pairs 1 and 3); 7 distinct images in all.
    assert len(paths) == 7 == len(set(paths))
    assert ia.shape == ib.shape == (4,)
    for p in range(4):
        assert paths[ia[p]] == res.paths_a[p] and paths[ib[p]] == res.paths_b[p]


def test_missing_image_is_named_not_dropped(tmp_path):
    pairs = ver.parse_pairs(VIEW1, source="view1.txt")
    make_fake_lfw(tmp_path, pairs, skip={("Carol", 4), ("Dave", 1)})
    missing = tmp_path / "lfw" / "Carol" / "Carol_0004.jpg"
    with pytest.raises(FileNotFoundError,
                       match=rf"image not found: {re.escape(str(missing))} \(pair 3, line 4 of view1.txt\); "
                             r"2 distinct image\(s\) missing"):
        ver.resolve_pairs(pairs, tmp_path)


def test_missing_lfw_root(tmp_path):
    pairs = ver.parse_pairs(VIEW1)
    with pytest.raises(FileNotFoundError, match="LFW folder not found"):
        ver.resolve_pairs(pairs, tmp_path / "nowhere")


# --------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------


def balanced_folds(n_folds, n):
    """(fold (P,), is_same (P,)) laid out like a View 2 file."""
    pairs = ver.parse_pairs(view2_text(n_folds, n))
    return pairs.fold, pairs.is_same


def test_k_fold_perfect_separator():
    fold, s = balanced_folds(10, 30)
    rng = np.random.default_rng(0)
    d = np.where(s, rng.random(s.shape[0]), 1.5 + rng.random(s.shape[0]))  # (P,)
    r = ver.k_fold(d, s, fold)
    assert r.protocol == "k-fold" and r.n_folds == 10 and r.n_pairs == 600
    assert r.accuracy == 1.0 and r.accuracy_std == 0.0 and r.accuracy_sem == 0.0
    assert r.auc == 1.0 and r.eer == 0.0
    assert r.fold_accuracies == [1.0] * 10
    assert all(1.0 <= t <= 1.5 for t in r.fold_thresholds)


def test_k_fold_random_scores_give_one_half():
    # Scores independent of the labels, balanced classes: whatever threshold the
    # other folds pick, each test pair is right with probability 1/2, so the mean
    # over all P = 20000 test pairs has standard deviation 0.5 / sqrt(P) = 0.0035.
    # 5 standard deviations: 0.018.
    fold, s = balanced_folds(10, 1000)
    d = np.random.default_rng(1).random(s.shape[0])  # (P,)
    r = ver.k_fold(d, s, fold)
    tol = 5 * 0.5 / math.sqrt(s.shape[0])
    assert abs(r.accuracy - 0.5) < tol
    assert abs(r.auc - 0.5) < tol
    assert abs(r.eer - 0.5) < tol


def test_k_fold_against_hand_loop():
    fold, s = balanced_folds(4, 6)
    rng = np.random.default_rng(2)
    d = np.round(rng.normal(size=s.shape[0]) + 1.2 * ~s, 1)  # (P,) overlapping, with ties
    d0, s0, f0 = d.copy(), s.copy(), fold.copy()
    r = ver.k_fold(d, s, fold, learned_threshold=0.6, fars=(0.1, 0.01))
    accs, ts = [], []
    for f in range(4):
        test = fold == f
        t = metrics.fit_threshold(d[~test], s[~test])
        ts.append(t)
        accs.append(np.mean((d[test] < t) == s[test]))
    assert r.fold_thresholds == ts
    assert r.fold_accuracies == pytest.approx(accs, abs=0)
    assert r.accuracy == pytest.approx(np.mean(accs), rel=1e-15)
    assert r.accuracy_std == pytest.approx(np.std(accs, ddof=1), rel=1e-12)
    assert r.accuracy_sem == pytest.approx(np.std(accs, ddof=1) / 2.0, rel=1e-12)
    assert r.threshold is None and r.train_accuracy is None
    assert r.auc == metrics.roc_auc(d, s) and r.eer == metrics.equal_error_rate(d, s)
    assert r.learned_threshold == 0.6
    assert r.learned_threshold_accuracy == np.mean((d < 0.6) == s)
    # 12 different pairs: FAR 0.1 resolves, FAR 0.01 (needs 100) does not.
    assert r.tar_at_far[0.1] == metrics.tar_at_far(d, s, 0.1).tar
    assert r.tar_at_far[0.01] is None
    assert "needs at least 100 different pairs" in r.tar_at_far_note
    for a, b in ((d, d0), (s, s0), (fold, f0)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fold, message", [
    (np.zeros(8, int), r"at least 2 folds"),
    (np.array([0, 0, 2, 2, 0, 0, 2, 2]), r"fold 1 is empty"),
    (np.array([0, 1, 0, 1, 0, 1, 0, -1]), r"fold labels must be 0 \.\. K-1, got -1"),
    (np.zeros(7, int), r"fold must have shape \(8,\)"),
    (np.zeros(8, float), r"fold must be an integer array"),
])
def test_k_fold_rejects_bad_folds(fold, message):
    d = np.arange(8.0)
    s = np.array([True, False] * 4)
    with pytest.raises(ValueError, match=message):
        ver.k_fold(d, s, fold)


def test_fit_and_test():
    rng = np.random.default_rng(3)
    s_train = rng.random(200) < 0.5  # (Pt,)
    d_train = rng.normal(size=200) + 2.0 * ~s_train  # (Pt,)
    s_test = rng.random(150) < 0.5  # (P,)
    d_test = rng.normal(size=150) + 2.0 * ~s_test  # (P,)
    copies = [x.copy() for x in (d_train, s_train, d_test, s_test)]
    r = ver.fit_and_test(d_train, s_train, d_test, s_test, learned_threshold=1.0)
    t = metrics.fit_threshold(d_train, s_train)
    assert r.protocol == "fit-and-test"
    assert (r.n_pairs, r.n_same) == (150, int(s_test.sum()))
    assert r.threshold == t
    assert r.accuracy == metrics.accuracy(d_test, s_test, t)
    assert r.train_accuracy == metrics.accuracy(d_train, s_train, t)
    assert r.accuracy_std is None and r.fold_accuracies is None
    assert r.auc == metrics.roc_auc(d_test, s_test)
    assert r.eer == metrics.equal_error_rate(d_test, s_test)
    assert r.learned_threshold_accuracy == metrics.accuracy(d_test, s_test, 1.0)
    # Fewer than 100 different test pairs: neither default FAR resolves.
    assert r.tar_at_far == {1e-2: None, 1e-3: None}
    for a, b in zip((d_train, s_train, d_test, s_test), copies):
        np.testing.assert_array_equal(a, b)


def test_fit_and_test_needs_both_classes_in_test_set():
    with pytest.raises(ValueError, match="test_is_same has 2 same and 0 different"):
        ver.fit_and_test(np.arange(4.0), np.array([1, 0, 1, 0]), np.arange(2.0), np.array([1, 1]))


def test_with_learned_threshold():
    s = np.array([True] * 150 + [False] * 150)  # (P,)
    d = np.concatenate([np.linspace(0, 1.2, 150), np.linspace(0.8, 3, 150)])  # (P,)
    r = ver.with_learned_threshold(d, s, 1.0)
    assert r.protocol == "learned-threshold"
    assert r.threshold == r.learned_threshold == 1.0
    assert r.accuracy == r.learned_threshold_accuracy == metrics.accuracy(d, s, 1.0)
    assert r.tar_at_far[1e-2] == metrics.tar_at_far(d, s, 1e-2).tar is not None
    assert r.tar_at_far[1e-3] is None
    assert "1000" in r.tar_at_far_note and "150" in r.tar_at_far_note
    with pytest.raises(ValueError, match="threshold must be finite"):
        ver.with_learned_threshold(d, s, float("inf"))
    with pytest.raises(ValueError, match=r"fars must be rates in \(0, 1\]"):
        ver.with_learned_threshold(d, s, 1.0, fars=(0.0,))


def test_results_are_json_serialisable():
    fold, s = balanced_folds(10, 60)
    d = np.random.default_rng(4).normal(size=s.shape[0]) + 1.5 * ~s  # (P,)
    results = [
        ver.k_fold(d, s, fold, learned_threshold=0.75),
        ver.fit_and_test(d[fold < 5], s[fold < 5], d[fold >= 5], s[fold >= 5]),
        ver.with_learned_threshold(d, s, 0.75),
    ]
    for r in results:
        back = json.loads(json.dumps(r.to_json_dict(), allow_nan=False))
        assert back["protocol"] == r.protocol and back["accuracy"] == r.accuracy
        assert set(back["tar_at_far"]) == {"0.01", "0.001"}
        assert back["tar_at_far"]["0.01"] == r.tar_at_far[0.01]
        assert back["tar_at_far"]["0.001"] is None  # 600 different pairs < 1000
        assert back["tar_at_far_detail"]["0.001"]["resolvable"] is False
    k, f, l = (json.loads(json.dumps(r.to_json_dict())) for r in results)
    assert k["n_folds"] == 10 and len(k["fold_accuracies"]) == 10 and k["accuracy_std"] > 0
    assert k["learned_threshold_accuracy"] == results[2].accuracy
    assert f["accuracy_std"] is None and f["threshold"] is not None
    assert l["learned_threshold"] == 0.75 and l["fold_thresholds"] is None


# --------------------------------------------------------------------------
# The real LFW View 1 training pairs
# --------------------------------------------------------------------------


@pytest.mark.lfw
def test_lfw_dev_train_pairs():
    path = LFW / "pairsDevTrain.txt"
    if not path.is_file() or not (LFW / "lfw").is_dir():
        pytest.skip(f"LFW not found at {LFW} (set NPFACE_LFW)")
    pairs = ver.read_pairs(path)
    assert (pairs.n_pairs, pairs.n_folds, pairs.same_per_fold) == (2200, 1, 1100)
    assert pairs.is_same[:1100].all() and not pairs.is_same[1100:].any()
    assert (pairs.name_a[0], int(pairs.image_a[0]), int(pairs.image_b[0])) == ("Aaron_Peirsol", 1, 2)
    res = ver.resolve_pairs(pairs, LFW)  # raises if any image is missing
    assert all(p.is_file() for p in res.paths_a[:5] + res.paths_b[-5:])
    assert res.paths_a[0] == LFW / "lfw" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
    paths, ia, ib = res.unique_images()
    assert len(paths) <= 4400 and ia.max() < len(paths) and ib.max() < len(paths)
