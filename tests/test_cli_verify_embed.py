"""python -m npface.verify and python -m npface.embed."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from npface import embed as npembed
from npface import verify as npverify
from npface.faces import embed_faces, find_images, open_model, read_face
from npface.model import TABLE2, FaceModel
from tests.test_cli_eval import face_image


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NPFACE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def images(tmp_path):
    """Three faces: a 250x250 LFW frame, a 112x112 PNG crop, a 300x200 JPEG."""
    folder = tmp_path / "img"
    folder.mkdir()
    paths = {"lfw": folder / "lfw.jpg", "crop": folder / "crop.png", "wide": folder / "wide.jpg"}
    Image.fromarray(face_image((200, 40, 40), 1)).save(paths["lfw"], quality=95)
    Image.fromarray(face_image((40, 200, 40), 2, size=(112, 112))).save(paths["crop"])
    Image.fromarray(face_image((40, 40, 200), 3, size=(300, 200))).save(paths["wide"], quality=95)
    return paths


def saved_model(tmp_path, threshold=2.0, name="m.npz"):
    path = tmp_path / name
    FaceModel(TABLE2, seed=0, threshold=threshold, provenance={"purpose": "test"}).save(path)
    return path


def oracle_distance(model_path, a, b, flip=True):
    """The distance verify should print; flip=True as verify's default."""
    model = open_model(model_path).model
    sig = embed_faces(model, np.stack([read_face(a), read_face(b)]), flip)    # (2, 128)
    return float(((sig[0].astype(np.float64) - sig[1]) ** 2).sum())


def one_line_error(err, prog, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"python -m npface.{prog}: error: ")
    for f in fragments:
        assert f in lines[0], lines[0]


# --------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------

def verify(capsys, *argv):
    status = npverify.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_verify_same_and_different_both_exit_0(tmp_path, capsys, images):
    model = saved_model(tmp_path, threshold=1e-3)
    status, out, err = verify(capsys, images["lfw"], images["lfw"], "--model", model)
    assert (status, err) == (0, "")
    assert out.splitlines() == ["A: lfw (250x250 pixels: an LFW frame)", "B: lfw (250x250 pixels: an LFW frame)",
                                "distance:  0.0000", "threshold: 0.0010", "SAME"]
    d = oracle_distance(model, images["lfw"], images["wide"])
    assert d > 1e-3                                                            # two different images
    status, out, err = verify(capsys, images["lfw"], images["wide"], "--model", model)
    assert (status, err) == (0, "")
    assert out.splitlines()[2:] == [f"distance:  {d:.4f}", "threshold: 0.0010", "DIFFERENT"]


def test_verify_verdict_follows_the_threshold(tmp_path, capsys, images):
    a, b = images["crop"], images["wide"]
    d = oracle_distance(saved_model(tmp_path), a, b, flip=True)
    for threshold, verdict in ((d * 1.01, "SAME"), (d * 0.99, "DIFFERENT")):
        model = saved_model(tmp_path, threshold=threshold, name=f"m{threshold}.npz")
        for flags in (["--flip"], []):                                      # flip is the default
            status, out, _ = verify(capsys, a, b, "--model", model, *flags)
            assert status == 0 and out.splitlines()[-1] == verdict
            assert float(out.splitlines()[2].split()[1]) == pytest.approx(d, abs=1e-4)
    status, out, _ = verify(capsys, a, b, "--model", model, "--no-flip")      # without flip: another distance
    assert float(out.splitlines()[2].split()[1]) == pytest.approx(oracle_distance(model, a, b, flip=False),
                                                                   abs=1e-4)
    assert abs(float(out.splitlines()[2].split()[1]) - d) > 1e-4


def test_verify_frame_rule(tmp_path, capsys, images):
    model = saved_model(tmp_path)
    a, b = images["lfw"], images["wide"]
    outputs = {}
    for frame in ("auto", "lfw", "crop"):
        status, out, _ = verify(capsys, a, b, "--model", model, "--frame", frame)
        assert status == 0
        outputs[frame] = out.splitlines()[2]
    assert outputs["auto"] != outputs["lfw"] and outputs["auto"] != outputs["crop"]
    assert outputs["auto"] == f"distance:  {oracle_distance(model, a, b):.4f}"


def test_verify_errors(tmp_path, capsys, images):
    model = saved_model(tmp_path)
    status, out, err = verify(capsys, tmp_path / "none.jpg", images["lfw"], "--model", model)
    assert status == 1 and out == ""
    one_line_error(err, "verify", "image not found", "none.jpg")
    status, out, err = verify(capsys, images["lfw"], tmp_path, "--model", model)
    assert status == 1
    one_line_error(err, "verify", "not a file")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    status, out, err = verify(capsys, images["lfw"], broken, "--model", model)
    assert status == 1 and out == ""
    one_line_error(err, "verify", "broken.jpg", "cannot read image")
    status, out, err = verify(capsys, images["lfw"], images["crop"], "--model", images["crop"])
    assert status == 1
    one_line_error(err, "verify", "not a readable npface model file")
    status, out, err = verify(capsys, images["lfw"], images["crop"], "--model", tmp_path / "missing.npz")
    assert status == 1
    one_line_error(err, "verify", "model file not found")
    with pytest.raises(SystemExit) as exc:
        npverify.main([str(images["lfw"])])
    assert exc.value.code == 2


def test_verify_help(capsys):
    with pytest.raises(SystemExit) as exc:
        npverify.main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--model", "--flip", "--views", "--frame", "--threads"):
        assert flag in text
    assert "exactly 250x250" in text and "SAME" in text and "Exit status 0" in text


# --------------------------------------------------------------------------
# embed
# --------------------------------------------------------------------------

def embed(capsys, *argv):
    status = npembed.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def photo_tree(tmp_path):
    """root/a/x.jpg, root/a/deep/y.png, root/b/z.JPG, a corrupt root/b/bad.jpg, ignored files."""
    root = tmp_path / "photos"
    for sub in ("a/deep", "b", ".hidden"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(face_image((200, 40, 40), 1)).save(root / "a" / "x.jpg")
    Image.fromarray(face_image((40, 200, 40), 2, size=(112, 112))).save(root / "a" / "deep" / "y.png")
    Image.fromarray(face_image((40, 40, 200), 3)).save(root / "b" / "z.JPG", format="JPEG")
    Image.fromarray(face_image((40, 40, 200), 4)).save(root / ".hidden" / "h.jpg")
    (root / "b" / "bad.jpg").write_bytes(b"truncated")
    (root / "b" / "notes.txt").write_text("not an image")
    return root


def test_embed_folder(tmp_path, capsys):
    model = saved_model(tmp_path)
    root = photo_tree(tmp_path)
    out_file = tmp_path / "out" / "sig.npz"
    previous = os.umask(0o022)
    try:
        status, out, err = embed(capsys, root, "--out", out_file, "--model", model, "--quiet")
    finally:
        os.umask(previous)
    assert status == 0
    assert os.stat(out_file).st_mode & 0o777 == 0o644                         # an ordinary file, not a private temp
    assert "warning: skipped b/bad.jpg: cannot read image" in err
    assert "3 signatures written" in out and "skipped 1 unreadable file(s)" in out
    with np.load(out_file, allow_pickle=False) as npz:
        assert set(npz.files) == {"signatures", "paths", "faces", "boxes", "frames", "metadata.json"}
        assert npz["faces"].tolist() == [0, 0, 0] and np.isnan(npz["boxes"]).all()   # no face detected: crops
        sig, paths, meta = npz["signatures"], npz["paths"], json.loads(str(npz["metadata.json"]))
    assert sig.dtype == np.float32 and sig.shape == (3, 128)
    assert paths.tolist() == ["a/deep/y.png", "a/x.jpg", "b/z.JPG"]
    m = open_model(model).model
    expected = embed_faces(m, np.stack([read_face(root / p) for p in paths]), True)  # frame "auto", flip (default)
    np.testing.assert_allclose(sig, expected, rtol=1e-5, atol=1e-6)
    assert meta["model"]["path"] == str(model) and meta["model"]["threshold"] == 2.0
    assert meta["model"]["provenance"] == {"purpose": "test"} and len(meta["model"]["sha256"]) == 64
    assert meta["root"] == os.path.abspath(root) and meta["flip"] is True and meta["frame"] == "auto"
    assert meta["n_skipped"] == 1 and meta["skipped"][0]["path"] == "b/bad.jpg"

    # Again, from the cache: the same signatures, nothing embedded.
    status, out, _ = embed(capsys, root, "--out", out_file, "--model", model, "--quiet")
    assert status == 0 and "0 embedded, 3 from cache" in out
    with np.load(out_file, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["signatures"], sig)


def test_embed_files_and_flip(tmp_path, capsys, images):
    model = saved_model(tmp_path)
    out_file = tmp_path / "sig.npz"
    files = [images["wide"], images["crop"], images["wide"]]                   # a repeated file is kept once
    status, out, err = embed(capsys, *files, "--out", out_file, "--model", model, "--flip", "--frame", "crop")
    assert status == 0, err
    with np.load(out_file, allow_pickle=False) as npz:
        sig, paths, meta = npz["signatures"], npz["paths"], json.loads(str(npz["metadata.json"]))
    assert paths.tolist() == ["wide.jpg", "crop.png"] and meta["flip"] is True and meta["frame"] == "crop"
    faces = np.stack([read_face(images["wide"], "crop"), read_face(images["crop"], "crop")])
    m = open_model(model).model
    e, e_mirror = m.embed(faces), m.embed(np.ascontiguousarray(faces[:, :, ::-1]))
    np.testing.assert_allclose(sig, (e + e_mirror) / 2, rtol=1e-5, atol=1e-6)


def test_shifted_views_move_the_crop_and_fill_black():
    from npface.faces import VIEW_SHIFT_PX as k
    from npface.faces import shifted_views
    rng = np.random.default_rng(0)
    crops = rng.integers(1, 256, (2, 112, 112, 3), dtype=np.uint8)           # no black pixel of its own
    before = crops.copy()
    v = shifted_views(crops, 5).reshape(5, 2, 112, 112, 3)
    np.testing.assert_array_equal(crops, before)
    np.testing.assert_array_equal(v[0], crops)
    np.testing.assert_array_equal(v[1][:, :, k:], crops[:, :, :-k])              # content moved right
    np.testing.assert_array_equal(v[2][:, :, :-k], crops[:, :, k:])              # left
    np.testing.assert_array_equal(v[3][:, k:], crops[:, :-k])                    # down
    np.testing.assert_array_equal(v[4][:, :-k], crops[:, k:])                    # up
    assert not v[1][:, :, :k].any() and not v[2][:, :, -k:].any()
    assert not v[3][:, :k].any() and not v[4][:, -k:].any()
    assert shifted_views(crops, 1) is crops


def test_embed_faces_views_average_the_shifted_crops(tmp_path, images):
    from npface.faces import shifted_views
    model = open_model(saved_model(tmp_path)).model
    faces = np.stack([read_face(images["wide"]), read_face(images["crop"])])   # (2, 112, 112, 3)
    e = model.embed(shifted_views(faces, 5)).reshape(5, 2, -1)                  # (views, N, D)
    e_mirror = model.embed(np.ascontiguousarray(shifted_views(faces, 5)[:, :, ::-1])).reshape(5, 2, -1)
    np.testing.assert_allclose(embed_faces(model, faces, views=5), e.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(embed_faces(model, faces, True, views=5), (e.mean(0) + e_mirror.mean(0)) / 2,
                               rtol=1e-5, atol=1e-6)
    assert np.abs(e.mean(0) - e[0]).max() > 1e-3                               # the views are not the crop
    for bad in (0, 2, 3, True, "5"):
        with pytest.raises(ValueError, match="views must be one of 1, 5"):
            embed_faces(model, faces, views=bad)


def test_verify_and_embed_with_views(tmp_path, capsys, images):
    model = saved_model(tmp_path)
    a, b = images["crop"], images["wide"]
    m = open_model(model).model
    sig = embed_faces(m, np.stack([read_face(a), read_face(b)]), True, views=5)     # flip: the commands' default
    d = float(((sig[0].astype(np.float64) - sig[1]) ** 2).sum())
    status, out, _ = verify(capsys, a, b, "--model", model, "--views", "5", "--json")
    assert status == 0 and json.loads(out)["distance"] == pytest.approx(d, abs=1e-4)
    with pytest.raises(SystemExit) as exc:
        verify(capsys, a, b, "--model", model, "--views", "3")
    assert exc.value.code == 2 and "--views" in capsys.readouterr().err
    out_file = tmp_path / "sig.npz"
    status, _, err = embed(capsys, a, b, "--out", out_file, "--model", model, "--views", "5", "--quiet")
    assert status == 0, err
    with np.load(out_file, allow_pickle=False) as npz:
        np.testing.assert_allclose(npz["signatures"], sig, rtol=1e-5, atol=1e-6)
        assert json.loads(str(npz["metadata.json"]))["views"] == 5
    # the cache keeps views apart: the plain signatures are not served for --views 5, nor the other way round
    status, _, _ = embed(capsys, a, b, "--out", tmp_path / "plain.npz", "--model", model, "--quiet")
    with np.load(tmp_path / "plain.npz", allow_pickle=False) as npz:
        assert np.abs(npz["signatures"] - sig).max() > 1e-3
        assert json.loads(str(npz["metadata.json"]))["views"] == 1


def test_find_images_relative_to_the_common_folder(tmp_path):
    root = photo_tree(tmp_path)
    outside = tmp_path / "elsewhere.jpg"
    Image.fromarray(face_image((9, 9, 9), 5)).save(outside)
    (root / "b" / "link.jpg").symlink_to(outside)
    base, files, relative = find_images([root / "b", root / "a" / "x.jpg", root / "b" / "notes.txt"])
    assert str(base) == os.path.abspath(root)
    # Sorted within a folder, argument order across; a named file is always kept; a link stays where it is.
    assert relative == ["b/bad.jpg", "b/link.jpg", "b/z.JPG", "a/x.jpg", "b/notes.txt"]
    assert files[3] == root / "a" / "x.jpg"
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        find_images([root / "nothing"])
    with pytest.raises(ValueError, match="at least one image"):
        find_images([])


def test_embed_errors(tmp_path, capsys):
    model = saved_model(tmp_path)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"no")
    status, out, err = embed(capsys, junk, "--out", tmp_path / "o.npz", "--model", model, "--quiet")
    assert status == 1 and not (tmp_path / "o.npz").exists()
    assert err.strip().splitlines()[0] == "warning: skipped a.jpg: cannot read image: UnidentifiedImageError: " \
                                          f"cannot identify image file '{junk / 'a.jpg'}'"
    one_line_error(err.strip().splitlines()[-1], "embed", "none of the 1 files could be read")
    status, out, err = embed(capsys, tmp_path / "missing", "--out", tmp_path / "o.npz", "--model", model)
    assert status == 1
    one_line_error(err, "embed", "no such file or folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    status, out, err = embed(capsys, empty, "--out", tmp_path / "o.npz", "--model", model)
    assert status == 1
    one_line_error(err, "embed", "no image files found")
    status, out, err = embed(capsys, junk, "--out", tmp_path / "o.npz", "--model", junk / "a.jpg")
    assert status == 1
    one_line_error(err, "embed", "not a readable npface model file")
    with pytest.raises(SystemExit) as exc:
        npembed.main([str(junk)])                                              # --out is required
    assert exc.value.code == 2


def test_embed_help(capsys):
    with pytest.raises(SystemExit) as exc:
        npembed.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--model", "--flip", "--frame", "--threads", "--batch-size", "--no-cache", "--quiet"):
        assert flag in text
    assert "allow_pickle=False" in " ".join(text.split())
