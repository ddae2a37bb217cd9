"""Alignment pretraining: the warp loss and its gradient, training on a toy problem, the model file, the CLI."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import npface
from npface.architecture import Conv, Linear, MaxPool
from npface.data.landmarks import TEMPLATE_EYES, alignment_thetas, output_points, theta_to_pixel
from npface.data.sampler import jitter_thetas, warp_images
from npface.model import FaceModel, ModelConfig, dtheta_to_dpose, pose_to_theta
from npface.pretrain_alignment import (align_forward, alignment_params, evaluate, main, predict_thetas,
                                       prepare_lfw, template_moments, train_alignment, warp_loss_backward,
                                       warp_loss_forward)
from npface.threads import limit
from tests.test_model import TINY

LFW = Path(os.environ.get("NPFACE_LFW", Path(__file__).resolve().parents[1] / ".." / "shared" / "lfw"))


def random_similarities(rng, n, max_angle=0.3, scale=(0.8, 1.2), max_t=0.15):
    """theta (n, 2, 3) random similarities [[a, -b, tx], [b, a, ty]]."""
    s = rng.uniform(*scale, size=n)
    phi = rng.uniform(-max_angle, max_angle, size=n)
    t = rng.uniform(-max_t, max_t, size=(n, 2))
    return pose_to_theta(np.stack([s * np.cos(phi), s * np.sin(phi), t[:, 0], t[:, 1]], 1))


def loss_reference(theta, target, template, size):
    """Slow oracle: where theta samples each template point, seen in the target-aligned output, point by point."""
    total, N = 0.0, len(theta)
    for i in range(N):
        T_px = theta_to_pixel(theta[i], size, size)              # output px -> input px, predicted warp
        S_px = theta_to_pixel(target[i], size, size)             # output px -> input px, target warp
        S_inv = np.linalg.inv(np.vstack([S_px, [0, 0, 1]]))
        for q in template:
            p_in = T_px[:, :2] @ q + T_px[:, 2]                 # input pixel the prediction samples for q
            q_seen = S_inv[:2, :2] @ p_in + S_inv[:2, 2]         # where that input pixel sits once aligned
            total += ((q_seen - q) ** 2).sum() / len(template)
    return total / N


# --------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------

def test_warp_loss_matches_the_point_by_point_oracle():
    rng = np.random.default_rng(0)
    template = rng.uniform(10, 100, size=(68, 2))
    theta, target = random_similarities(rng, 5), random_similarities(rng, 5)
    theta[1] += rng.normal(0, 0.05, size=(2, 3))              # any affine prediction, not only similarities
    copies = theta.copy(), target.copy(), template.copy()
    loss, _ = warp_loss_forward(theta, target, template, 112)
    assert loss == pytest.approx(loss_reference(theta, target, template, 112), rel=1e-12)
    for a, b in zip((theta, target, template), copies):
        np.testing.assert_array_equal(a, b)
    # zero exactly at the target
    loss0, cache0 = warp_loss_forward(target, target, template)
    assert loss0 == 0.0 and not warp_loss_backward(cache0).any()
    # the template's second moments in normalised output coordinates
    q = np.c_[(2 * template + 1) / 112 - 1, np.ones(68)]
    np.testing.assert_allclose(template_moments(template, 112), q.T @ q / 68, rtol=1e-13)


def test_warp_loss_against_the_landmark_error_of_the_fitted_points():
    """Landmarks that are an exact similarity of the template: per image, the squared landmark error after the
    warp is the loss with the predicted scale s in place of the target's s* (A^-1 D q~ against A*^-1 D q~)."""
    rng = np.random.default_rng(1)
    template = rng.uniform(20, 90, size=(68, 2))
    G = random_similarities(rng, 4)
    points = output_points(np.broadcast_to(template, (4, 68, 2)), G)         # the template, moved by G^-1
    target = alignment_thetas(points, template)
    theta = random_similarities(rng, 4, max_angle=0.1, scale=(0.95, 1.05), max_t=0.05)
    seen = output_points(points, theta)                                        # where the landmarks land
    landmark_sq = ((seen - template) ** 2).sum(-1).mean(-1)                   # (4,)
    s2 = lambda t: t[:, 0, 0] * t[:, 1, 1] - t[:, 0, 1] * t[:, 1, 0]           # squared scale of a similarity
    per_image = [warp_loss_forward(theta[i:i + 1], target[i:i + 1], template)[0] for i in range(4)]
    np.testing.assert_allclose(per_image, landmark_sq * s2(theta) / s2(target), rtol=1e-9)
    assert warp_loss_forward(theta, target, template)[0] == pytest.approx(np.mean(per_image), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warp_loss_gradient_central_differences(seed):
    """dL/dtheta element by element, and dL/dpose along a random direction, against central differences."""
    rng = np.random.default_rng(seed)
    N, size = 3, int(rng.integers(20, 120))
    template = rng.uniform(0, size - 1, size=(int(rng.integers(2, 10)), 2))
    target = random_similarities(rng, N)
    theta = target + rng.normal(0, 0.1, size=(N, 2, 3))
    dloss = rng.normal()
    _, cache = warp_loss_forward(theta, target, template, size)
    grad = warp_loss_backward(cache, dloss)
    assert grad.shape == (N, 2, 3) and grad.dtype == np.float64
    h = 1e-6
    numeric = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        e = np.zeros_like(theta)
        e[idx] = h
        numeric[idx] = dloss * (warp_loss_forward(theta + e, target, template, size)[0]
                                - warp_loss_forward(theta - e, target, template, size)[0]) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8 * np.abs(numeric).max())
    # through pose_to_theta: the chain rule the training step uses
    pose = rng.normal(size=(N, 4)) * 0.1 + [1, 0, 0, 0]
    v = rng.normal(size=(N, 4))
    _, cache = warp_loss_forward(pose_to_theta(pose), target, template, size)
    dpose = dtheta_to_dpose(warp_loss_backward(cache))
    num = (warp_loss_forward(pose_to_theta(pose + h * v), target, template, size)[0]
           - warp_loss_forward(pose_to_theta(pose - h * v), target, template, size)[0]) / (2 * h)
    assert (dpose * v).sum() == pytest.approx(num, rel=1e-6)


def test_warp_loss_validation():
    tpl = np.zeros((5, 2)) + np.arange(5)[:, None]
    th = random_similarities(np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match=r"theta must have shape \(N, 2, 3\)"):
        warp_loss_forward(th[:, :, :2], th, tpl)
    with pytest.raises(ValueError, match=r"target must have shape \(N, 2, 3\) = \(2, 2, 3\)"):
        warp_loss_forward(th, th[:1], tpl)
    with pytest.raises(ValueError, match=r"template must have shape \(M, 2\)"):
        warp_loss_forward(th, th, tpl[:, :1])
    with pytest.raises(ValueError, match="out_size must be a positive integer"):
        warp_loss_forward(th, th, tpl, 0)
    singular = th.copy()
    singular[0, :, :2] = 0
    with pytest.raises(ValueError, match="target: every warp must be invertible"):
        warp_loss_forward(th, singular, tpl)


# --------------------------------------------------------------------------
# The alignment net on its own
# --------------------------------------------------------------------------

def test_align_forward_is_the_models_alignment_path():
    model = FaceModel(TINY, seed=3)
    rng = np.random.default_rng(3)
    model.params["a.out.weight"][...] = rng.normal(0, 0.1, size=model.params["a.out.weight"].shape)
    images = rng.integers(0, 256, (4, 12, 12, 3), dtype=np.uint8)
    before = images.copy()
    _, cache = model.forward(images, train=True, per_op=True)      # the reference path: the same products
    pose, _ = align_forward(model, images)
    np.testing.assert_array_equal(pose_to_theta(pose), cache.theta)
    np.testing.assert_array_equal(predict_thetas(model, images), cache.theta.astype(np.float64))
    # in batches of 3 and 1: the same up to float32 rounding (sums grouped differently)
    np.testing.assert_allclose(predict_thetas(model, images, batch_size=3), cache.theta, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(images, before)
    assert sorted(alignment_params(model)) == sorted(k for k in model.params if k.startswith("a."))


# A toy alignment problem: one pattern seen through known similarities. The alignment net must learn to
# read the pose off the image; the landmarks are fixed spots of the pattern.
TOY = ModelConfig(
    input_size=32, align_input_size=16,
    alignment=(Conv("align.conv", 8, 3), MaxPool("align.pool", 2, 2), Linear("align.fc", 32),
               Linear("align.out", 4, relu=False)),
    signature=(Conv("s.conv", 2, 3, stride=2), Linear("s.sig", 4, relu=False)),
)


def toy_pattern():
    """(pattern (1, 32, 32, 3) uint8, template (5, 2) pixels): five coloured blobs, their centres the landmarks."""
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    blobs = [(10, 12, 3.0, (255, 40, 40)), (21, 12, 3.0, (40, 255, 40)), (16, 18, 2.0, (250, 250, 60)),
             (16, 24, 4.0, (60, 60, 255)), (12, 22, 1.5, (255, 255, 255))]
    base = np.zeros((32, 32, 3))
    for x, y, r, colour in blobs:
        base += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * r * r))[..., None] * colour
    return np.clip(base, 0, 255).astype(np.uint8)[None], np.array([b[:2] for b in blobs], dtype=np.float64)


def toy_data(n, seed):
    """(images (n, 32, 32, 3) uint8, landmark points (n, 5, 2), template (5, 2)): the pattern warped by G_i."""
    pattern, template = toy_pattern()
    G = jitter_thetas(n, np.random.default_rng(seed), max_rotation=20, max_scale=0.2, max_shift=0.2)
    images = warp_images(np.repeat(pattern, n, axis=0), G)                   # image i samples the pattern at G_i
    points = output_points(np.broadcast_to(template, (n, 5, 2)), G, 32, 32)  # where the blobs appear in it
    return images, points, template


def test_training_reduces_the_landmark_error_on_a_toy_problem():
    images, points, template = toy_data(256, seed=0)
    targets = alignment_thetas(points, template, 32, 32)
    val_images, val_points, _ = toy_data(64, seed=1)
    model = FaceModel(TOY, seed=0)
    copies = images.copy(), targets.copy()

    def val_error(m):
        return evaluate(m, val_images, val_points, template)["plain"]["net"]

    with limit(1):                        # tiny kernels: one thread avoids waking a pool for microseconds of work
        history = train_alignment(model, images, targets, template, steps=300, batch_size=32, lr=1e-3,
                                  clip_norm=30.0, flip=False, jitter=False, log_every=100, log=None,
                                  monitor=lambda m: {"val": val_error(m)})
    np.testing.assert_array_equal(images, copies[0])
    np.testing.assert_array_equal(targets, copies[1])
    assert [h["step"] for h in history] == [100, 200, 300]
    errors = evaluate(model, val_images, val_points, template)["plain"]
    assert errors["fitted"] < 1e-6                           # the landmarks are an exact similarity of the pattern
    assert errors["identity"] > 2.0
    assert errors["net"] < 0.25 * errors["identity"]         # the net recovers most of the pose
    assert history[-1]["loss_rms_px"] < 0.5 * history[0]["loss_rms_px"]
    assert history[0]["clipped"] > 0                         # the early, large gradients were clipped
    assert history[-1]["val"] == pytest.approx(errors["net"])


def test_training_with_augmentation_follows_the_jitter():
    """Trained on jittered, flipped copies of one upright pattern, the net learns to undo the jitter."""
    pattern, template = toy_pattern()
    upright = np.repeat(pattern, 64, axis=0)                                  # (64, 32, 32, 3) all aligned
    upright_points = np.broadcast_to(template, (64, 5, 2)).copy()
    targets = alignment_thetas(upright_points, template, 32, 32)             # the identity, up to rounding
    np.testing.assert_allclose(targets, np.tile([[1.0, 0, 0], [0, 1.0, 0]], (64, 1, 1)), atol=1e-9)
    model = FaceModel(TOY, seed=1)
    wide = dict(max_rotation=20, max_scale=0.2, max_shift=0.2)
    with limit(1):
        train_alignment(model, upright, targets, template, steps=300, batch_size=32, lr=1e-3, clip_norm=30.0,
                        flip=True, jitter=True, jitter_kw=wide, log_every=300, log=None)
    errors = evaluate(model, upright[:32], upright_points[:32], template, jitter_kw=wide)["jittered"]
    assert errors["identity"] > 2.0
    assert errors["net"] < 0.25 * errors["identity"]


def test_training_is_deterministic_by_seed():
    images, points, template = toy_data(40, seed=4)
    targets = alignment_thetas(points, template, 32, 32)
    runs = []
    for seed in (5, 5, 6):
        model = FaceModel(TOY, seed=seed)
        with limit(1):
            train_alignment(model, images, targets, template, steps=4, batch_size=8, lr=1e-3, seed=seed, log=None)
        runs.append(model.params)
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    assert any(not np.array_equal(runs[0][k], runs[2][k]) for k in runs[0])
    # only the alignment net is trained
    fresh = FaceModel(TOY, seed=5).params
    for k in fresh:
        if not k.startswith("align."):
            np.testing.assert_array_equal(runs[0][k], fresh[k])
    assert not np.array_equal(runs[0]["align.out.weight"], fresh["align.out.weight"])


def test_train_alignment_validation():
    images, points, template = toy_data(8, seed=0)
    targets = alignment_thetas(points, template, 32, 32)
    model = FaceModel(TOY)
    kw = dict(log=None)
    with pytest.raises(ValueError, match=r"images must be a uint8 array \(N, 32, 32, 3\)"):
        train_alignment(model, images.astype(np.float32), targets, template, 1, 4, **kw)
    with pytest.raises(ValueError, match=r"targets must have shape \(N, 2, 3\) = \(8, 2, 3\)"):
        train_alignment(model, images, targets[:5], template, 1, 4, **kw)
    with pytest.raises(ValueError, match="batch_size 9 is larger than the 8 training images"):
        train_alignment(model, images, targets, template, 1, 9, **kw)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        train_alignment(model, images, targets, template, 0, 4, **kw)
    with pytest.raises(ValueError, match="lr must be > 0"):
        train_alignment(model, images, targets, template, 1, 4, lr=0.0, **kw)
    with pytest.raises(ValueError, match=r"template must have shape \(M, 2\)"):
        train_alignment(model, images, targets, template[:, 0], 1, 4, **kw)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_is_reported():
    images, points, template = toy_data(16, seed=0)
    targets = alignment_thetas(points, template, 32, 32)
    with limit(1), pytest.raises(FloatingPointError, match=r"at step \d+: training diverged \(lower the lr\)"):
        train_alignment(FaceModel(TOY), images, targets, template, steps=50, batch_size=16, lr=10.0, log=None)


# --------------------------------------------------------------------------
# The command line, on a fake LFW folder
# --------------------------------------------------------------------------

def fake_lfw(root, n_people=10, per_person=2, seed=0):
    """root/lfw/<person>/<person>_000k.png (250x250), peopleDevTrain.txt, landmarks68.tsv."""
    rng = np.random.default_rng(seed)
    base = np.c_[np.linspace(-40, 40, 68), 20 * np.sin(np.linspace(0, 6, 68))] + [125, 140]   # (68, 2)
    people, rows = [], []
    for p in range(n_people):
        name = f"Person_{p:02d}"
        (root / "lfw" / name).mkdir(parents=True)
        people.append(f"{name}\t{per_person}")
        for k in range(per_person):
            rel = f"lfw/{name}/{name}_{k + 1:04d}.png"
            Image.fromarray(rng.integers(0, 256, (250, 250, 3), dtype=np.uint8)).save(root / rel)
            pts = base + rng.normal(0, 2, size=(68, 2))
            rows.append([rel, 1, 70, 70, 180, 180] + [f"{v:.1f}" for v in pts.ravel()])
    (root / "peopleDevTrain.txt").write_text(f"{n_people}\n" + "\n".join(people) + "\n")
    header = ["path", "detected", "box_left", "box_top", "box_right", "box_bottom"] + \
             [f"{c}{i}" for i in range(68) for c in "xy"]
    (root / "landmarks68.tsv").write_text("\n".join("\t".join(map(str, r)) for r in [header] + rows) + "\n")
    return root


def test_cli_writes_a_loadable_model_with_provenance(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NPFACE_CACHE", str(tmp_path / "cache"))
    root = fake_lfw(tmp_path / "fake")
    out, js = tmp_path / "runs" / "align.npz", tmp_path / "m.json"
    assert main(["--lfw", str(root), "--steps", "2", "--batch", "4", "--log-every", "1", "--threads", "1",
                 "--out", str(out), "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "step 1" in text and "step 2" in text and "held-out mean landmark error" in text
    model = npface.load(out)
    prov = model.provenance
    assert prov["settings"]["steps"] == 2 and prov["settings"]["batch_size"] == 4
    assert prov["data"]["train_people"] == 9 and prov["data"]["val_people"] == 1
    assert prov["data"]["train_images"] == 18 and prov["data"]["val_images"] == 2
    e = prov["heldout_landmark_error_px"]
    assert e["n_images"] == 2 and set(e["plain"]) == {"identity", "fitted", "net", "net_loss_rms"}
    assert e["plain"]["fitted"] <= e["plain"]["identity"] + 1e-9
    assert np.array(prov["template_px"]).shape == (68, 2)
    metrics = json.loads(js.read_text())
    assert metrics["heldout_landmark_error_px"] == e and len(metrics["history"]) == 2
    fresh = FaceModel(seed=0).params                          # the signature net is the seeded initialisation
    for k, v in fresh.items():
        if not k.startswith("align."):
            np.testing.assert_array_equal(model.params[k], v)
    assert not np.array_equal(model.params["align.fc7.bias"], fresh["align.fc7.bias"])


def test_cli_errors(tmp_path, capsys):
    assert main(["--lfw", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "error: --lfw: no LFW image folder" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "lfw").mkdir()
    (tmp_path / "peopleDevTrain.txt").write_text("0\n")
    assert main(["--lfw", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error: --landmarks: landmark file not found" in err and len(err.strip().splitlines()) == 1
    assert main(["--lfw", str(tmp_path), "--people", str(tmp_path / "nope.txt")]) == 2
    assert "error: --people: list file not found" in capsys.readouterr().err
    for bad in (["--steps", "0"], ["--batch", "x"], ["--lr", "-1"], ["--momentum", "1"], ["--seed", "-2"]):
        with pytest.raises(SystemExit) as exc:
            main(["--lfw", str(tmp_path)] + bad)
        assert exc.value.code == 2
        assert f"argument {bad[0]}: expected" in capsys.readouterr().err
    assert main(["--lfw", str(tmp_path), "--threads", "999"]) == 2
    assert "--threads: threads must be an integer from 1" in capsys.readouterr().err


def test_cli_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--lfw", "--people", "--landmarks", "--steps", "--batch", "--lr", "--momentum", "--weight-decay",
                 "--clip", "--no-flip", "--no-jitter", "--val-fraction", "--seed", "--threads", "--log-every", "--out",
                 "--json"):
        assert flag in text


# --------------------------------------------------------------------------
# LFW (skipped when absent)
# --------------------------------------------------------------------------

@pytest.mark.lfw
@pytest.mark.skipif(not (LFW / "landmarks68.tsv").is_file(), reason=f"LFW not found at {LFW}")
def test_lfw_pretraining_data_and_a_few_steps():
    data = prepare_lfw(LFW, progress=False)
    d = data.description
    # peopleDevTrain: 4,038 people, 10 % held out by the trainer's split; fallback-box rows left out of training
    assert d["train_people"] + d["val_people"] == 4038 and d["val_people"] == 404
    assert len(data.val_idx) == d["val_images"] and data.detected[data.train_idx].all()
    assert len(set(data.train_idx) & set(data.val_idx)) == 0
    np.testing.assert_allclose(data.template[36:42].mean(0), TEMPLATE_EYES[0], atol=1e-9)
    # deep-funneled LFW is roughly aligned: the identity warp is a few pixels off, the least-squares
    # similarity removes part of it, and jitter makes the identity warp worse but not the fit
    val = data.val_idx[:300]
    model = FaceModel(seed=0)
    e = evaluate(model, data.images[val], data.points[val], data.template, net=False)
    assert 3.0 < e["plain"]["fitted"] < e["plain"]["identity"] < 6.0
    assert e["jittered"]["identity"] > e["plain"]["identity"] + 1.0
    assert e["jittered"]["fitted"] == pytest.approx(e["plain"]["fitted"], rel=1e-6)
    train = data.train_idx[:64]
    with limit(1):
        history = train_alignment(model, np.asarray(data.images[train]), data.targets[train], data.template,
                                  steps=2, batch_size=8, log_every=1, log=None)
    assert [h["step"] for h in history] == [1, 2] and all(np.isfinite(h["loss_rms_px"]) for h in history)
