"""python -m npface.eval, and the shared image -> signature path of npface.faces."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npface import metrics
from npface import verification as ver
from npface import eval as npeval
from npface.data.folders import LFW_CROP, decode_face
from npface.faces import compute_signatures, embed_faces, face_crop, open_model, read_face
from npface.model import TABLE2, FaceModel

LFW = Path(os.environ.get("NPFACE_LFW", Path(__file__).resolve().parents[1] / ".." / "shared" / "lfw"))
PEOPLE = {"Alice": (200, 40, 40), "Bob": (40, 200, 40), "Carol": (40, 40, 200), "Dave": (200, 200, 40)}
N_IMAGES = 3


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NPFACE_CACHE", str(tmp_path / "cache"))


def face_image(colour, seed, size=(250, 250)):
    """A (H, W, 3) uint8 frame: a person's colour, noise, and a bright block left of centre (not symmetric)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.empty((h, w, 3), dtype=np.float64)
    img[:] = colour
    img += rng.normal(0, 6, img.shape)
    img[h // 3:h // 2, w // 4:w // 2] = 250                                    # in the crop, off its axis
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def lfw(tmp_path):
    """A tiny LFW layout: lfw/<name>/<name>_000k.jpg, 250x250 JPEGs."""
    root = tmp_path / "lfwroot"
    for p, (name, colour) in enumerate(PEOPLE.items()):
        (root / "lfw" / name).mkdir(parents=True)
        for k in range(1, N_IMAGES + 1):
            Image.fromarray(face_image(colour, 10 * p + k)).save(root / "lfw" / name / f"{name}_{k:04d}.jpg",
                                                                 quality=95)
    return root


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "m.npz"
    FaceModel(TABLE2, seed=0).save(path)
    return path


VIEW1 = """4
Alice\t1\t2
Bob\t1\t3
Carol\t2\t3
Dave\t1\t2
Alice\t1\tBob\t2
Alice\t3\tBob\t1
Carol\t2\tDave\t3
Carol\t1\tDave\t2
"""

VIEW2 = """2\t2
Alice\t1\t2
Bob\t1\t3
Alice\t3\tCarol\t1
Bob\t3\tDave\t2
Carol\t2\t3
Dave\t1\t2
Alice\t1\tBob\t2
Carol\t2\tDave\t3
"""

FIT = """2
Alice\t2\t3
Dave\t2\t3
Bob\t2\tCarol\t3
Alice\t2\tDave\t1
"""


def write(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(text)
    return path


def run(capsys, *argv):
    """main(argv) -> (exit status, stdout, stderr)."""
    status = npeval.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("python -m npface.eval: error: ")
    for f in fragments:
        assert f in lines[0], lines[0]


class EmbedCounter:
    """Wraps FaceModel.embed to count the images it is asked to embed."""

    def __init__(self, monkeypatch):
        self.images = 0
        original = FaceModel.embed

        def counting(model, images, batch_size=64, threads=None):
            self.images += len(images)
            return original(model, images, batch_size=batch_size, threads=threads)

        monkeypatch.setattr(FaceModel, "embed", counting)


def oracle_distances(model_path, lfw, pairs_text, flip=False, views=1):
    """Distances (P,) and is_same (P,) computed image by image, without the eval command."""
    model = open_model(model_path).model
    lines = pairs_text.strip().splitlines()[1:]
    d, s = [], []
    for ln in lines:
        f = ln.split()
        a, b = ((f[0], f[1]), (f[0], f[2])) if len(f) == 3 else ((f[0], f[1]), (f[2], f[3]))
        imgs = np.stack([read_face(lfw / "lfw" / n / f"{n}_{int(i):04d}.jpg", "lfw") for n, i in (a, b)])
        sig = embed_faces(model, imgs, flip, views=views)
        d.append(float(((sig[0].astype(np.float64) - sig[1]) ** 2).sum()))
        s.append(len(f) == 3)
    return np.array(d), np.array(s)


# --------------------------------------------------------------------------
# Reading faces
# --------------------------------------------------------------------------

def test_read_face_is_the_training_crop_for_lfw_frames(lfw):
    path = lfw / "lfw" / "Alice" / "Alice_0001.jpg"
    expected = decode_face(path, LFW_CROP)                                     # (112, 112, 3)
    for frame in ("auto", "lfw"):
        face = read_face(path, frame)
        assert face.dtype == np.uint8 and face.shape == (112, 112, 3)
        np.testing.assert_array_equal(face, expected)
    assert not np.array_equal(read_face(path, "crop"), expected)               # the whole frame instead


def test_crop_boxes_use_the_centred_square():
    lfw_box, crop_box, auto_box = face_crop("lfw"), face_crop("crop"), face_crop("auto")
    assert lfw_box.pil_box(250, 250) == LFW_CROP.pil_box(250, 250) == (53, 73, 197, 217)
    assert auto_box.pil_box(250, 250) == (53, 73, 197, 217)
    # 500 x 400: the centred square is x 50..450, y 0..400; the LFW box scaled by 400 / 250 = 1.6.
    np.testing.assert_allclose(lfw_box.pil_box(500, 400), (50 + 53 * 1.6, 73 * 1.6, 50 + 197 * 1.6, 217 * 1.6))
    assert crop_box.pil_box(300, 200) == (50, 0, 250, 200)
    assert auto_box.pil_box(300, 200) == (50, 0, 250, 200)                  # not 250 x 250: taken as a face crop
    assert auto_box.pil_box(112, 112) == (0, 0, 112, 112)
    with pytest.raises(ValueError, match="frame must be one of auto, lfw, crop"):
        face_crop("tight")


def test_flip_averages_the_mirror_signature(lfw, model_path):
    loaded = open_model(model_path)
    files = [lfw / "lfw" / "Bob" / "Bob_0001.jpg", lfw / "lfw" / "Carol" / "Carol_0002.jpg"]
    plain = compute_signatures(loaded, files, frame="lfw", flip=False, cache=False, progress=False)
    flipped = compute_signatures(loaded, files, frame="lfw", flip=True, cache=False, progress=False)
    faces = np.stack([read_face(f, "lfw") for f in files])                    # (2, 112, 112, 3)
    before = faces.copy()
    e = loaded.model.embed(faces)                                              # (2, 128)
    e_mirror = loaded.model.embed(np.ascontiguousarray(faces[:, :, ::-1]))
    np.testing.assert_array_equal(faces, before)
    np.testing.assert_allclose(plain.signatures, e, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flipped.signatures, (e + e_mirror) / 2, rtol=1e-5, atol=1e-6)
    assert np.abs(flipped.signatures - plain.signatures).max() > 1e-3        # the faces are not symmetric


# --------------------------------------------------------------------------
# Protocols end to end
# --------------------------------------------------------------------------

def test_view1_folds_are_people_disjoint():
    # VIEW1 links Alice with Bob and Carol with Dave: two groups of four pairs, one fold each
    pl = ver.parse_pairs(VIEW1)
    fold = ver.person_folds(pl.name_a, pl.name_b, pl.is_same, 2)
    np.testing.assert_array_equal(fold, [0, 0, 1, 1, 0, 0, 1, 1])


def test_view1_end_to_end(tmp_path, capsys, lfw, model_path):
    pairs = write(tmp_path, VIEW1, "pairs.txt")
    out_json = tmp_path / "out" / "report.json"
    status, out, err = run(capsys, "--lfw", lfw, "--pairs", pairs, "--model", model_path, "--folds", "2",
                           "--json", out_json)
    assert status == 0, err
    r = json.loads(out_json.read_text())
    for key in ("protocol", "n_pairs", "accuracy", "accuracy_std", "auc", "eer", "tar_at_far", "threshold",
                "learned_threshold_accuracy", "model", "flip", "timing"):
        assert key in r
    assert r["protocol"] == "k-fold" and r["fold_source"] == "assigned" and r["n_folds"] == 2
    assert r["n_pairs"] == 8 and r["n_same"] == 4 and r["signatures"]["n_images"] == 12
    assert 0 <= r["accuracy"] <= 1 and 0 <= r["learned_threshold_accuracy"] <= 1 and r["accuracy_std"] >= 0
    assert r["model"]["path"] == str(model_path) and r["model"]["threshold"] == 2.0 and r["flip"] is False
    assert r["timing"]["total"] > 0 and r["learned_threshold_protocol"]["protocol"] == "learned-threshold"
    # The figures agree with distances computed image by image.
    d, s = oracle_distances(model_path, lfw, VIEW1)
    assert r["learned_threshold_accuracy"] == pytest.approx(metrics.accuracy(d, s, 2.0))
    assert r["auc"] == pytest.approx(metrics.roc_auc(d, s))
    assert r["learned_threshold_protocol"]["accuracy"] == r["learned_threshold_accuracy"]
    fold = np.array([0, 0, 1, 1, 0, 0, 1, 1])                                # by person (see above)
    fold_acc = [metrics.accuracy(d[fold == f], s[fold == f], metrics.fit_threshold(d[fold != f], s[fold != f]))
                for f in range(2)]
    assert r["fold_accuracies"] == pytest.approx(fold_acc, abs=1e-12)
    assert "accuracy" in out and "learned theta 2.0000" in out


def test_view1_default_folds_need_enough_pairs(tmp_path, capsys, lfw, model_path):
    status, out, err = run(capsys, "--lfw", lfw, "--pairs", write(tmp_path, VIEW1, "p.txt"), "--model", model_path)
    assert status == 1 and out == ""
    one_line_error(err, "cannot split 8 pairs into 10 people-disjoint folds", "fewer folds")


def test_view2_uses_the_files_folds(tmp_path, capsys, lfw, model_path):
    pairs = write(tmp_path, VIEW2, "pairs.txt")
    status, out, err = run(capsys, "--lfw", lfw, "--pairs", pairs, "--model", model_path, "--json", tmp_path / "r.json")
    assert status == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["protocol"] == "k-fold" and r["fold_source"] == "file" and r["n_folds"] == 2 and r["n_pairs"] == 8
    d, s = oracle_distances(model_path, lfw, VIEW2)
    fold = np.repeat([0, 1], 4)                                                # the file's folds: 4 pairs each
    expected = [metrics.accuracy(d[fold == f], s[fold == f], metrics.fit_threshold(d[fold != f], s[fold != f]))
                for f in range(2)]
    assert r["fold_accuracies"] == pytest.approx(expected, abs=1e-12)
    status, out, err = run(capsys, "--lfw", lfw, "--pairs", pairs, "--model", model_path, "--folds", "3")
    assert status == 1
    one_line_error(err, "--folds applies only to a single-block")


def test_fit_and_test(tmp_path, capsys, lfw, model_path):
    pairs, fit = write(tmp_path, VIEW1, "test.txt"), write(tmp_path, FIT, "fit.txt")
    status, out, err = run(capsys, "--lfw", lfw, "--pairs", pairs, "--fit-pairs", fit, "--model", model_path,
                           "--json", tmp_path / "r.json", "--flip")
    assert status == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["protocol"] == "fit-and-test" and r["n_pairs"] == 8 and r["n_fit_pairs"] == 4 and r["flip"] is True
    assert r["signatures"]["n_images"] == 12                                   # the fit pairs add no new image
    dt, st = oracle_distances(model_path, lfw, FIT, flip=True)
    d, s = oracle_distances(model_path, lfw, VIEW1, flip=True)
    assert r["threshold"] == pytest.approx(metrics.fit_threshold(dt, st), rel=1e-6)
    assert r["accuracy"] == pytest.approx(metrics.accuracy(d, s, r["threshold"]))
    assert r["accuracy_std"] is None and r["learned_threshold_accuracy"] == pytest.approx(metrics.accuracy(d, s, 2.0))
    assert "fit-and-test" in out


def test_fit_and_test_with_views(tmp_path, capsys, lfw, model_path):
    pairs, fit = write(tmp_path, VIEW1, "test.txt"), write(tmp_path, FIT, "fit.txt")
    status, out, err = run(capsys, "--lfw", lfw, "--pairs", pairs, "--fit-pairs", fit, "--model", model_path,
                           "--json", tmp_path / "r.json", "--views", "5")
    assert status == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["views"] == 5 and r["flip"] is False and "views 5" in out
    dt, st = oracle_distances(model_path, lfw, FIT, views=5)
    d, s = oracle_distances(model_path, lfw, VIEW1, views=5)
    assert r["threshold"] == pytest.approx(metrics.fit_threshold(dt, st), rel=1e-5)
    assert r["accuracy"] == pytest.approx(metrics.accuracy(d, s, r["threshold"]))


def test_a_perfect_signature_scores_perfectly(tmp_path, capsys, lfw, model_path, monkeypatch):
    # Signatures that are the mean colour of the crop (/ 10): one person's images share a colour, so
    # same pairs are at distance ~0 and different pairs at >= (160 / 10)^2, far beyond theta = 2.
    def colour(model, images, batch_size=64, threads=None):
        sig = np.zeros((len(images), 128), dtype=np.float32)
        sig[:, :3] = images.reshape(len(images), -1, 3).mean(axis=1) / 10
        return sig

    monkeypatch.setattr(FaceModel, "embed", colour)
    for extra in (["--folds", "2"], ["--fit-pairs", write(tmp_path, FIT, "fit.txt")]):
        status, out, err = run(capsys, "--lfw", lfw, "--pairs", write(tmp_path, VIEW1, "p.txt"), "--model",
                               model_path, "--json", tmp_path / "r.json", *extra)
        assert status == 0, err
        r = json.loads((tmp_path / "r.json").read_text())
        assert (r["accuracy"], r["auc"], r["eer"], r["learned_threshold_accuracy"]) == (1.0, 1.0, 0.0, 1.0)


def test_signature_cache_is_reused(tmp_path, capsys, lfw, model_path, monkeypatch):
    counter = EmbedCounter(monkeypatch)
    argv = ["--lfw", lfw, "--pairs", write(tmp_path, VIEW1, "p.txt"), "--model", model_path, "--folds", "2",
            "--json", tmp_path / "r.json"]
    reports = []
    for _ in range(2):
        assert run(capsys, *argv)[0] == 0
        reports.append(json.loads((tmp_path / "r.json").read_text()))
    assert counter.images == 12                                                # the second run embedded nothing
    assert reports[1]["signatures"]["n_cached"] == 12 and reports[1]["signatures"]["n_embedded"] == 0
    assert reports[1]["accuracy"] == reports[0]["accuracy"] and reports[1]["auc"] == reports[0]["auc"]
    cache_files = list((tmp_path / "cache" / "signatures").glob("*.npz"))
    assert len(cache_files) == 1

    # A touched image is embedded again, and only that one.
    image = lfw / "lfw" / "Bob" / "Bob_0002.jpg"
    st = os.stat(image)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert run(capsys, *argv)[0] == 0
    assert counter.images == 13

    # Flip is part of the key (twice the images: crops and mirrors); --no-cache embeds and stores nothing new.
    assert run(capsys, *argv, "--flip")[0] == 0
    assert counter.images == 13 + 24
    assert len(list((tmp_path / "cache" / "signatures").glob("*.npz"))) == 2
    assert run(capsys, *argv, "--no-cache")[0] == 0
    assert counter.images == 13 + 24 + 12

    # Another model file (other bytes) has its own cache.
    other = tmp_path / "other.npz"
    FaceModel(TABLE2, seed=1).save(other)
    argv[argv.index(model_path)] = other
    assert run(capsys, *argv)[0] == 0
    assert counter.images == 13 + 24 + 12 + 12


# --------------------------------------------------------------------------
# Errors and options
# --------------------------------------------------------------------------

def test_a_pairs_file_may_be_named_inside_lfw(tmp_path, capsys, lfw, model_path, monkeypatch):
    write(lfw, VIEW1, "pairsHere.txt")
    monkeypatch.chdir(tmp_path)                                  # no pairsHere.txt here: the one in --lfw is read
    status, _, err = run(capsys, "--lfw", lfw, "--pairs", "pairsHere.txt", "--model", model_path, "--folds", "2",
                         "--json", tmp_path / "r.json")
    assert status == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_pairs"] == 8 and report["pairs"] == str(lfw / "pairsHere.txt")   # the file read is named


def test_errors_are_one_line(tmp_path, capsys, lfw, model_path, monkeypatch):
    pairs = write(tmp_path, VIEW1, "p.txt")
    status, _, err = run(capsys, "--lfw", tmp_path / "nowhere", "--pairs", pairs, "--model", model_path)
    assert status == 1
    one_line_error(err, "LFW folder not found")
    status, _, err = run(capsys, "--lfw", lfw, "--pairs", tmp_path / "none.txt", "--model", model_path)
    assert status == 1
    one_line_error(err, "pairs file not found")
    status, _, err = run(capsys, "--lfw", lfw, "--pairs", "none.txt", "--model", model_path)
    assert status == 1
    one_line_error(err, f"pairs file not found: none.txt (nor in {lfw})")
    status, _, err = run(capsys, "--lfw", lfw, "--pairs", write(tmp_path, VIEW1.replace("Dave\t1\t2", "Dave\t1\t9"),
                                                                  "bad.txt"), "--model", model_path, "--folds", "2")
    assert status == 1
    one_line_error(err, "image not found", "Dave_0009.jpg")
    status, _, err = run(capsys, "--lfw", lfw, "--pairs", write(tmp_path, "2\nAlice\t1\n", "short.txt"),
                         "--model", model_path)
    assert status == 1
    one_line_error(err, "short.txt:2:")
    status, _, err = run(capsys, "--lfw", lfw, "--pairs", pairs, "--model", pairs, "--folds", "2")
    assert status == 1
    one_line_error(err, "not a readable npface model file")
    monkeypatch.setattr("npface.model.PRETRAINED_PATH", tmp_path / "pretrained" / "npface-lfw.npz")
    status, _, err = run(capsys, "--lfw", lfw, "--pairs", pairs, "--folds", "2")
    assert status == 1
    one_line_error(err, "no pretrained model is shipped")


def test_unreadable_image_stops_the_evaluation(tmp_path, capsys, lfw, model_path):
    (lfw / "lfw" / "Carol" / "Carol_0003.jpg").write_bytes(b"not a jpeg")
    status, out, err = run(capsys, "--lfw", lfw, "--pairs", write(tmp_path, VIEW1, "p.txt"), "--model", model_path,
                           "--folds", "2", "--quiet")
    assert status == 1 and out == ""
    one_line_error(err, "Carol_0003.jpg", "cannot read image", "1 unreadable image(s)")


def test_bad_flags(tmp_path, capsys, lfw, model_path):
    base = ["--lfw", str(lfw), "--pairs", str(write(tmp_path, VIEW1, "p.txt")), "--model", str(model_path)]
    for extra in (["--folds", "1"], ["--batch-size", "0"], ["--threads", "0"], ["--folds", "x"]):
        with pytest.raises(SystemExit) as exc:
            npeval.main(base + extra)
        assert exc.value.code == 2
        assert extra[0] in capsys.readouterr().err


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        npeval.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--lfw", "--pairs", "--fit-pairs", "--model", "--flip", "--folds", "--json", "--roc", "--threads",
                 "--batch-size", "--no-cache", "--quiet"):
        assert flag in text
    assert "View 1" in text and "View 2" in text and "learned threshold" in text


def test_roc_without_matplotlib_fails_before_embedding(tmp_path, capsys, lfw, model_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)                      # import matplotlib -> ImportError
    counter = EmbedCounter(monkeypatch)
    status, out, err = run(capsys, "--lfw", lfw, "--pairs", write(tmp_path, VIEW1, "p.txt"), "--model", model_path,
                           "--folds", "2", "--roc", tmp_path / "roc.png")
    assert status == 1 and counter.images == 0 and not (tmp_path / "roc.png").exists()
    one_line_error(err, "pip install 'npface[plots]'")


def test_roc_png(tmp_path, capsys, lfw, model_path):
    pytest.importorskip("matplotlib")
    status, out, err = run(capsys, "--lfw", lfw, "--pairs", write(tmp_path, VIEW1, "p.txt"), "--model", model_path,
                           "--folds", "2", "--roc", tmp_path / "roc.png")
    assert status == 0, err
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------
# Real LFW
# --------------------------------------------------------------------------

@pytest.mark.lfw
def test_eval_on_a_slice_of_lfw_dev_train(tmp_path, capsys, model_path):
    source = LFW / "pairsDevTrain.txt"
    if not source.is_file() or not (LFW / "lfw").is_dir():
        pytest.skip(f"LFW not found at {LFW} (set NPFACE_LFW)")
    lines = source.read_text().splitlines()
    n = int(lines[0])
    head = lines[1:1 + 20] + lines[1 + n:1 + n + 20]                           # 20 same, 20 different pairs
    pairs = write(tmp_path, "20\n" + "\n".join(head) + "\n", "slice.txt")
    status, out, err = run(capsys, "--lfw", LFW, "--pairs", pairs, "--model", model_path, "--folds", "4",
                           "--json", tmp_path / "r.json", "--quiet")
    assert status == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["n_pairs"] == 40 and r["n_folds"] == 4 and 0 <= r["accuracy"] <= 1
    first = LFW / "lfw" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
    np.testing.assert_array_equal(read_face(first), decode_face(first, LFW_CROP))


def test_eval_warns_once_about_people_the_model_trained_on(tmp_path, capsys, lfw):
    pairs = write(tmp_path, VIEW1, "pairs.txt")
    trained = tmp_path / "trained.npz"
    FaceModel(TABLE2, seed=0, provenance={"train_people": ["Bob", "Zed"]}).save(trained)
    status, out, err = run(capsys, "--lfw", lfw, "--pairs", pairs, "--model", trained, "--folds", "2", "--quiet")
    assert status == 0
    assert err.strip().splitlines() == [
        "warning: 1 of the 4 people in the pairs are in the model's training list (e.g. Bob); "
        "accuracies on them, and thresholds fitted on them, do not carry over to new people"]
    fresh = tmp_path / "fresh.npz"
    FaceModel(TABLE2, seed=0, provenance={"train_people": ["Zed"]}).save(fresh)
    status, out, err = run(capsys, "--lfw", lfw, "--pairs", pairs, "--model", fresh, "--folds", "2", "--quiet")
    assert status == 0 and "warning" not in err


def test_training_people_rebuilt_from_an_older_provenance(tmp_path):
    listing = tmp_path / "people.txt"
    names = [f"P{i:02d}" for i in range(20)]
    listing.write_text(f"{len(names)}\n" + "".join(f"{n}\t2\n" for n in names))
    prov = {"config": {"data": "folder", "lfw": str(tmp_path), "people": "people.txt", "val_fraction": 0.1}}
    from npface.data.folders import split_identities
    assert npeval.training_people(prov) == set(split_identities(names, 0.1, seed=0)[0])
    assert npeval.training_people({"config": {"data": "synthetic"}}) is None
