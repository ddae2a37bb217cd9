"""The framing net: its geometry, its file, its training cuts and command, and the shipped net on LFW people."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from npface.data.sampler import warp_images
from npface.framing_net import PRETRAINED_PATH, FramingNet, load_framing_net, move_square, refine_square
from npface.pretrain_framing import heldout_error, jittered_cuts, main, pretrain_framing
from npface.threads import limit

LFW = Path(os.environ.get("NPFACE_LFW", Path(__file__).resolve().parents[1] / ".." / "shared" / "lfw"))
NO_JITTER = {"max_rotation": 0.0, "max_scale": 0.0, "max_shift": 0.0}


def _net(seed=1, scale=0.05):
    """A framing net whose last layer is not zero, so its warps depend on the image."""
    net = FramingNet(seed=seed)
    rng = np.random.default_rng(seed)
    w = net.params["align.fc7.weight"]
    w[...] = rng.normal(0, scale, size=w.shape)
    return net


# --------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------

def test_a_fresh_net_predicts_the_identity_and_leaves_squares_where_they_are():
    crops = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    copy = crops.copy()
    theta = FramingNet(seed=0).predict(crops)
    np.testing.assert_array_equal(crops, copy)
    assert theta.shape == (3, 2, 3) and theta.dtype == np.float64
    np.testing.assert_array_equal(theta, np.broadcast_to(np.eye(2, 3), (3, 2, 3)))
    assert move_square((10.0, 20.0, 110.0, 120.0), theta[0]) == (10.0, 20.0, 110.0, 120.0)


def test_move_square_puts_the_square_where_theta_samples():
    # theta = 1.1 x scale, shift (0.2, -0.1) of the half side 50: centre (50, 50) -> (60, 45), side 100 -> 110
    theta = np.array([[1.1, 0.0, 0.2], [0.0, 1.1, -0.1]])
    np.testing.assert_allclose(move_square((0, 0, 100, 100), theta), (5, -10, 115, 100), atol=1e-12)
    # a rotation is dropped: the side is the similarity's scale sqrt(a^2 + b^2)
    a, b = 1.2 * np.cos(0.3), 1.2 * np.sin(0.3)
    np.testing.assert_allclose(move_square((0, 0, 100, 100), np.array([[a, -b, 0], [b, a, 0]])), (-10, -10, 110, 110))
    # the square cut from the moved square is what the warp samples from the old cut (the warp's convention)
    rng = np.random.default_rng(2)
    picture = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    picture = np.asarray(Image.fromarray(picture).filter(ImageFilter.GaussianBlur(4)))   # smooth, so that
    # two bilinear resamplings of it differ by little more than rounding
    from npface.framing import cut_frame
    square = (50.0, 60.0, 250.0, 260.0)
    theta = np.array([[0.9, 0.0, 0.1], [0.0, 0.9, 0.05]])
    moved = cut_frame(Image.fromarray(picture), move_square(square, theta)).astype(float)
    warped = warp_images(cut_frame(Image.fromarray(picture), square)[None], theta[None])[0].astype(float)
    assert np.abs(moved - warped)[8:-8, 8:-8].mean() < 1.0


def test_refine_square_iterates_from_the_picture_and_validates():
    picture = Image.fromarray(np.random.default_rng(3).integers(0, 256, (200, 240, 3), dtype=np.uint8))
    square = (20.0, 30.0, 140.0, 150.0)
    net = _net()
    assert refine_square(picture, square, net, 0) == square
    once = refine_square(picture, square, net, 1)
    from npface.framing import cut_frame
    assert once == pytest.approx(move_square(square, net.predict(cut_frame(picture, square)[None])[0]))
    twice = refine_square(picture, square, net, 2)
    assert twice == pytest.approx(move_square(once, net.predict(cut_frame(picture, once)[None])[0]))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="iterations must be an integer >= 0"):
            refine_square(picture, square, net, bad)
    with pytest.raises(ValueError, match=r"theta must be a finite \(2, 3\) warp"):
        move_square(square, np.full((2, 3), np.nan))


# --------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------

def test_from_model_copies_the_alignment_net():
    from npface.model import FaceModel
    model = FaceModel(seed=4)
    model.params["align.fc7.weight"][...] = 0.01
    net = FramingNet.from_model(model)
    assert sorted(net.params) == sorted(k for k in model.params if k.startswith("align."))
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, model.params[k])
        assert v is not model.params[k]
    crops = np.random.default_rng(4).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    from npface.pretrain_alignment import predict_thetas
    np.testing.assert_allclose(net.predict(crops), predict_thetas(model, crops), rtol=1e-6, atol=1e-7)


def test_save_and_load_round_trip(tmp_path):
    net = _net()
    net.provenance = {"kind": "test"}
    net.save(tmp_path / "f.npz")
    back = load_framing_net(tmp_path / "f.npz")
    assert back.provenance == {"kind": "test"} and sorted(back.params) == sorted(net.params)
    for k in net.params:
        np.testing.assert_array_equal(back.params[k], net.params[k])
        assert back.params[k].dtype == np.float32


@pytest.mark.parametrize("damage, message", [
    (lambda a: a.pop("align.fc7.bias"), r"missing \['align.fc7.bias'\]"),
    (lambda a: a.update(extra=np.zeros(2, np.float32)), r"unexpected \['extra'\]"),
    (lambda a: a.update({"align.fc7.bias": np.zeros(5, np.float32)}),
     r"'align.fc7.bias' has shape \(5,\), expected \(4,\)"),
    (lambda a: a.update({"align.fc7.bias": np.zeros(4, np.float64)}),
     r"'align.fc7.bias' has dtype float64, expected float32"),
    (lambda a: a.update({"align.fc7.bias": np.array([1, np.nan, 0, 0], np.float32)}), "1 NaN or infinite"),
    (lambda a: a.pop("metadata.json"), "no 'metadata.json' entry"),
    (lambda a: a.update({"metadata.json": np.array("{")}), "is not valid JSON"),
    (lambda a: a.update({"metadata.json": np.array(json.dumps({"format": "npface-model"}))}), "format 'npface-model'"),
])
def test_load_rejects_a_damaged_file_naming_it(tmp_path, damage, message):
    _net().save(tmp_path / "f.npz")
    with np.load(tmp_path / "f.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    damage(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message) as e:
        load_framing_net(tmp_path / "bad.npz")
    assert str(tmp_path / "bad.npz") in str(e.value)


def test_load_rejects_other_layers_and_missing_files(tmp_path):
    _net().save(tmp_path / "f.npz")
    with np.load(tmp_path / "f.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["metadata.json"]))
    meta["config"]["align_input_size"] = 40
    arrays["metadata.json"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "other.npz", **arrays)
    with pytest.raises(ValueError, match="its layers are not the alignment net's"):
        load_framing_net(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="framing net file not found"):
        load_framing_net(tmp_path / "none.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable npface framing net file"):
        load_framing_net(tmp_path / "text.npz")


# --------------------------------------------------------------------------
# Training cuts and training
# --------------------------------------------------------------------------

def _context(n, seed=0):
    """n context images (154 x 154): smooth noise with a bright off-centre disc, so position is visible."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:154, 0:154]
    out = np.empty((n, 154, 154, 3), dtype=np.uint8)
    for i in range(n):
        base = rng.uniform(40, 80) + 10 * np.sin(xx / rng.uniform(5, 9)) * np.cos(yy / rng.uniform(5, 9))
        disc = ((xx - 70) ** 2 + (yy - 62) ** 2 < 30 ** 2) * rng.uniform(120, 170)
        out[i] = np.clip(base + disc, 0, 255)[..., None].astype(np.uint8)
    return out


def test_cuts_without_jitter_are_the_centre_and_the_target_undoes_the_jitter():
    context = _context(4)
    copy = context.copy()
    cuts, target = jittered_cuts(context, np.random.default_rng(0), NO_JITTER, flip=False)
    np.testing.assert_array_equal(context, copy)
    # output pixel q samples context pixel q + 21 exactly (T0 = 112/154, the warp's edge convention)
    np.testing.assert_array_equal(cuts, context[:, 21:133, 21:133])
    np.testing.assert_allclose(target, np.broadcast_to(np.eye(2, 3), (4, 2, 3)), atol=1e-15)
    # with jitter, warping a cut by its target gives back the centre (inside the cut, up to resampling)
    cuts, target = jittered_cuts(context, np.random.default_rng(1), flip=False)
    back = warp_images(cuts, target).astype(float)
    assert np.abs(back - context[:, 21:133, 21:133])[:, 20:-20, 20:-20].mean() < 3.0
    assert np.abs(cuts.astype(float) - context[:, 21:133, 21:133])[:, 20:-20, 20:-20].mean() > 6.0
    # mirroring: with flip, each cut is its image's cut or the mirror of it
    flipped, _ = jittered_cuts(context, np.random.default_rng(5), NO_JITTER, flip=True)
    for c, f in zip(context[:, 21:133, 21:133], flipped):
        assert (f == c).all() or (f == c[:, ::-1]).all()


def test_training_on_a_toy_problem_learns_to_undo_the_jitter():
    context = _context(48)
    with limit(1):
        net, metrics = pretrain_framing(context, np.arange(40), np.arange(40, 48), steps=150, batch_size=16,
                                        lr=3e-4, seed=0, threads=1, log_every=150, log=None)
    e = metrics["heldout_rms_px"]
    assert e["images"] == 8 and np.isfinite(e["net"])
    assert e["net"] < 0.8 * e["identity"], e                   # it learnt where the disc should be
    assert net.provenance["kind"].startswith("framing net") and metrics["settings"]["steps"] == 150
    assert heldout_error(net, context[40:])["net"] == pytest.approx(e["net"])


def test_command_line_help_and_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--lfw", "--people", "--steps", "--batch", "--lr", "--clip", "--init", "--seed", "--threads",
                 "--out", "--json"):
        assert flag in out
    assert main(["--lfw", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m npface.pretrain_framing: error: --lfw: no LFW image")
    assert main(["--lfw", str(tmp_path), "--init", str(tmp_path / "none.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: --init: model file not found" in err[0]
    with pytest.raises(SystemExit):
        main(["--lfw", str(tmp_path), "--steps", "0"])
    assert "expected an integer >= 1" in capsys.readouterr().err


# --------------------------------------------------------------------------
# The shipped net on held-out LFW people
# --------------------------------------------------------------------------

@pytest.mark.lfw
def test_the_shipped_net_moves_held_out_faces_towards_their_training_crop():
    if not (LFW / "peopleDevTrain.txt").is_file():
        pytest.skip(f"LFW not found at {LFW} (set NPFACE_LFW)")
    if not PRETRAINED_PATH.is_file():
        pytest.skip("no framing net is shipped")
    from npface.data.folders import load_folder, read_people_file, split_identities
    from npface.pretrain_framing import CONTEXT_CROP
    names = sorted(n for n, _ in read_people_file(LFW / "peopleDevTrain.txt"))
    _, held_out = split_identities(names, 0.1, seed=0)
    ds = load_folder(LFW / "lfw", list(held_out[:40]), crop=CONTEXT_CROP, progress=False)
    net = load_framing_net()
    error = heldout_error(net, np.asarray(ds.images))
    recorded = net.provenance["heldout_rms_px"]
    # every held-out image was in the recorded figure; these are a sample of them
    assert error["net"] < 0.6 * error["identity"], error
    assert error["net"] == pytest.approx(recorded["net"], rel=0.25), (error, recorded)
