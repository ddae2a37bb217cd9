"""The training levers: single-image people in the batch, appearance augmentation, jitter ranges, kept
checkpoints and their average; all off by default."""
import json

import numpy as np
import pytest
from PIL import Image

from npface import ops, training
from npface.average import average, main as average_main
from npface.data.sampler import PKSampler, Photometric
from npface.model import load
from npface.train import config_from_args, main as train_main, parser
from npface.training import TrainConfig, load_checkpoint, run


def tiny(**kw):
    base = dict(steps=4, batch_identities=2, images_per_identity=2, synthetic_identities=50, val_pairs=20,
                validate_every=2, checkpoint_every=1, threads=1, lr=0.01, lr_drops=(0.5,))
    base.update(kw)
    return TrainConfig(**base)


def quiet(*args):
    pass


# people 0..5 with 3 images each, people 6..9 with one
LABELS = np.concatenate([np.repeat(np.arange(6), 3), np.arange(6, 10)])


def test_singletons_are_appended_after_the_unchanged_pk_rows():
    plain = PKSampler(LABELS, 3, 2).sample(np.random.default_rng(4))
    rows, labels = PKSampler(LABELS, 3, 2, singletons=3).sample(np.random.default_rng(4))
    assert rows.shape == labels.shape == (9,)
    np.testing.assert_array_equal(rows[:6], plain[0])                   # the P x K draw is made first, as before
    np.testing.assert_array_equal(labels[:6], plain[1])
    single = labels[6:]
    assert len(set(single.tolist())) == 3 and set(single.tolist()) <= {6, 7, 8, 9}
    np.testing.assert_array_equal(LABELS[rows], labels)
    with pytest.raises(ValueError, match="only 4 people have exactly one image"):
        PKSampler(LABELS, 3, 2, singletons=5)


def test_singletons_only_add_not_same_pairs_to_the_balanced_loss():
    # signatures: the P x K people near the origin, the single-image people far away, so their
    # not-same pairs are beyond the hinge (zero loss) and the loss must not change with them
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 2)
    sig = rng.standard_normal((6, 4)) * 0.3
    far = np.array([[100.0], [-100.0]]) + rng.standard_normal((2, 4))   # far from everything and each other
    base, _ = ops.pair_hinge_forward(sig, labels, 2.0)
    diff_pairs = labels[:, None] != labels[None]
    d = ((sig[:, None] - sig[None]) ** 2).sum(-1)
    same_term = np.maximum(0, 1 - (2.0 - d))[(~diff_pairs) & ~np.eye(6, dtype=bool)].mean()
    diff_term = np.maximum(0, 1 + (2.0 - d))[diff_pairs]
    with_single, _ = ops.pair_hinge_forward(np.vstack([sig, far]), np.concatenate([labels, [7, 8]]), 2.0)
    # the same half is unchanged; the not-same half is the mean over more pairs, the new ones at zero loss
    n_new = 2 * (2 * 6 + 1)                                             # ordered pairs touching the two new rows
    np.testing.assert_allclose(with_single, 0.5 * same_term + 0.5 * diff_term.sum() / (diff_term.size + n_new))
    np.testing.assert_allclose(base, 0.5 * same_term + 0.5 * diff_term.mean())


def test_photometric_is_off_by_default_deterministic_and_does_what_it_says():
    assert not Photometric() and Photometric(erase=0.5)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(6, 20, 20, 3), dtype=np.uint8)
    before = x.copy()
    p = Photometric(color=0.4, blur=0.5, grayscale=0.5, erase=0.5)
    a, b = p(x, np.random.default_rng(1)), p(x, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x, before)                            # the input is left alone
    assert a.dtype == np.uint8 and a.shape == x.shape and not np.array_equal(a, x)
    # colour: brightness, then contrast about the mean gray, then saturation about each pixel's gray
    b, c, sat = np.random.default_rng(2).uniform(0.6, 1.4, size=(3, 6))[:, :, None, None, None]
    w = np.array([0.299, 0.587, 0.114])
    ref = b * x
    mean = (ref @ w).mean(axis=(1, 2))[:, None, None, None]
    ref = mean + c * (ref - mean)
    ref = (ref @ w)[..., None] + sat * (ref - (ref @ w)[..., None])
    coloured = Photometric(color=0.4)(x, np.random.default_rng(2)).astype(int)
    assert np.abs(coloured - np.clip(np.rint(ref), 0, 255)).max() <= 1
    gray = Photometric(grayscale=1.0)(x, rng)
    assert np.abs(gray.astype(int) - gray[..., :1]).max() == 0          # every channel the luma
    erased = Photometric(erase=1.0)(x, rng)
    changed = np.any(erased != x, axis=-1)                              # (6, 20, 20)
    for c in changed:                                                   # one filled rectangle per image
        r, q = np.flatnonzero(c.any(1)), np.flatnonzero(c.any(0))
        assert 0 < c.sum() <= 0.2 * 400 + 1 and c.sum() <= len(r) * len(q)
    blurred = Photometric(blur=1.0)(x, rng)
    assert np.abs(np.diff(blurred.astype(int), axis=1)).mean() < np.abs(np.diff(x.astype(int), axis=1)).mean()
    with pytest.raises(ValueError, match="colour jitter strength"):
        Photometric(color=1.5)
    with pytest.raises(ValueError, match="uint8 array"):
        p(x.astype(np.float32), rng)


def test_levers_are_off_by_default_and_recorded_in_config_and_provenance(tmp_path):
    default = config_from_args(parser().parse_args(["--lfw", "x"]))
    assert (default.singletons, default.color_jitter, default.blur, default.grayscale, default.erase,
            default.keep_checkpoints, default.weight_decay) == (0, 0.0, 0.0, 0.0, 0.0, 0, 0.0)
    assert default.photometric() is None
    cfg = config_from_args(parser().parse_args(
        ["--color-jitter", "0.3", "--blur", "0.2", "--grayscale", "0.1", "--erase", "0.25", "--jitter",
         "--jitter-rotation", "15", "--jitter-scale", "0.15", "--jitter-shift", "0.1", "--keep-checkpoints", "2"]))
    assert cfg.jitter_ranges() == {"max_rotation": 15.0, "max_scale": 0.15, "max_shift": 0.1}
    cfg = TrainConfig(**{**cfg.to_json(), **tiny().to_json(), "color_jitter": 0.3, "erase": 0.25, "jitter": True,
                         "jitter_rotation": 15.0, "keep_checkpoints": 2})
    run(cfg, tmp_path / "r", log=quiet, progress=False)
    written = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (written["color_jitter"], written["erase"], written["jitter_rotation"]) == (0.3, 0.25, 15.0)
    assert load(tmp_path / "r" / "model.npz").provenance["config"]["erase"] == 0.25
    kept = sorted(p.name for p in (tmp_path / "r").glob("ckpt-*.npz"))
    assert kept == ["ckpt-0000003.npz", "ckpt-0000004.npz"]             # the last 2 of 4 checkpoints


def test_stronger_jitter_changes_the_batch_and_the_default_ranges_do_not():
    rng = lambda: np.random.default_rng([0, 1])                         # noqa: E731
    plain = training.SyntheticSource(tiny(jitter=True)).batch(rng())[0]
    explicit = training.SyntheticSource(tiny(jitter=True, jitter_rotation=8.0)).batch(rng())[0]
    strong = training.SyntheticSource(tiny(jitter=True, jitter_rotation=20.0)).batch(rng())[0]
    np.testing.assert_array_equal(plain, explicit)
    assert not np.array_equal(plain, strong)


def test_average_of_kept_checkpoints_is_their_mean(tmp_path, capsys):
    run(tiny(keep_checkpoints=3), tmp_path / "r", log=quiet, progress=False)
    files = sorted((tmp_path / "r").glob("ckpt-*.npz"))
    assert len(files) == 3
    assert average_main([str(f) for f in files] + ["--out", str(tmp_path / "avg.npz")]) == 0
    avg = load(tmp_path / "avg.npz")
    params = [load_checkpoint(f)[0] for f in files]
    for name, value in avg.params.items():
        np.testing.assert_allclose(value, np.mean([p[name] for p in params], axis=0), rtol=1e-6, atol=1e-7)
    assert [r["step"] for r in avg.provenance["averaged"]] == [2, 3, 4]
    assert average([tmp_path / "r" / "model.npz"]).params["threshold"] == load(tmp_path / "r" / "model.npz").threshold
    assert average_main([str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x.npz")]) == 2
    assert capsys.readouterr().err.startswith("python -m npface.average: error: file not found")


@pytest.mark.parametrize("argv, match", [
    (["--singletons", "2"], "--singletons needs folder data"),
    (["--erase", "1.5"], "erase probability must be in"),
    (["--jitter-shift", "-1"], "--jitter-shift must be a finite number"),
    (["--keep-checkpoints", "-1"], "--keep-checkpoints must be an integer"),
    (["--jitter-context"], "--jitter-context needs folder data"),
    (["--lfw", "x", "--no-jitter", "--jitter-context"], "--jitter-context needs folder data (--lfw) and the jitter"),
    (["--distinct-photos"], "--distinct-photos needs folder data (--lfw) and the multibatch estimator"),
    (["--lfw", "x", "--estimator", "pairs", "--distinct-photos"], "--distinct-photos needs folder data"),
])
def test_bad_lever_flags_are_one_line_errors(tmp_path, capsys, argv, match):
    assert train_main(argv + ["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_folder_source_adds_single_image_people(tmp_path):
    for person, n in [(f"p{i}", 3) for i in range(6)] + [(f"s{i}", 1) for i in range(4)]:
        (tmp_path / "lfw" / person).mkdir(parents=True)
        for j in range(n):
            Image.new("RGB", (250, 250), (40 * j, 20 * len(person), 7)).save(tmp_path / "lfw" / person / f"{j}.jpg")
    cfg = tiny(data="folder", lfw=str(tmp_path), singletons=1, val_fraction=0.2).check()
    source = training.FolderSource(cfg, progress=False)
    images, labels = source.batch(np.random.default_rng(0))
    assert images.shape[0] == labels.shape[0] == cfg.batch_size == 5
    single = source.ds.identities[labels[-1]]
    assert single.startswith("s") and single in source.train_people and labels[-1] not in labels[:-1]
    assert "single-image" in source.description


def test_folder_source_hands_each_images_photo_to_the_loss(tmp_path):
    """--distinct-photos: the batch is the same; its photos are the images' dataset rows, repeats included."""
    for i in range(48):                     # person p<i> has 1 + i % 3 photos; half are held out (10 folds)
        (tmp_path / "lfw" / f"p{i}").mkdir(parents=True)
        for j in range(1 + i % 3):
            Image.new("RGB", (250, 250), (40 * j, 20 * i, 7)).save(tmp_path / "lfw" / f"p{i}" / f"{j}.jpg")
    kw = dict(data="folder", lfw=str(tmp_path), val_fraction=0.5, batch_identities=2, images_per_identity=4)
    source = training.FolderSource(tiny(distinct_photos=True, **kw).check(), progress=False)
    images, labels, align, photos, teacher = source.batch_with_targets(np.random.default_rng(0))
    plain = training.FolderSource(tiny(**kw).check(), progress=False).batch_with_targets(np.random.default_rng(0))
    np.testing.assert_array_equal(images, plain[0])
    assert align is None and plain[3] is None and teacher is None and plain[4] is None
    np.testing.assert_array_equal(source.ds.labels[photos], labels)     # each photo is one of its person's images
    assert len(np.unique(photos)) < len(photos)                         # people with 2 or 3 photos fill 4 slots
    rows = np.random.default_rng(0)
    np.testing.assert_array_equal(photos, source.sampler.sample(rows)[0])
    # a run: each step's loss counts only the pairs of distinct photos
    run(tiny(distinct_photos=True, steps=2, validate_every=2, val_pairs=20, **kw), tmp_path / "r", log=quiet,
        progress=False)
    steps = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    pairs = [row["pairs"] for row in steps if "loss" in row]
    assert len(pairs) == 2 and all(0 < n < 8 * 7 for n in pairs)


def test_folder_source_with_context_jitters_from_the_wider_crops(tmp_path):
    """--jitter-context: the same draws as without it; the batch differs only where the plain jitter shows
    black, which it fills with the picture around the crop (here: pictures with no black at all)."""
    rng = np.random.default_rng(0)
    for i in range(4):
        (tmp_path / "lfw" / f"p{i}").mkdir(parents=True)
        for j in range(3):
            colour = rng.integers(80, 220, size=3)
            picture = np.clip(colour + rng.normal(0, 20, (250, 250, 3)), 40, 255).astype(np.uint8)
            Image.fromarray(picture).save(tmp_path / "lfw" / f"p{i}" / f"{j}.png")
    kw = dict(data="folder", lfw=str(tmp_path), val_fraction=0.25, flip=True, jitter=True, jitter_rotation=15.0)
    plain_source = training.FolderSource(tiny(**kw).check(), progress=False)
    source = training.FolderSource(tiny(jitter_context=True, **kw).check(), progress=False)
    assert source.context.shape == (12, 154, 154, 3) and plain_source.context is None
    plain, labels = plain_source.batch(np.random.default_rng(5))
    wide, labels2 = source.batch(np.random.default_rng(5))
    np.testing.assert_array_equal(labels2, labels)
    black = (plain == 0).all(-1)                                         # (4, 112, 112)
    assert black.any() and not (wide == 0).all(-1).any()
    far = ~black
    for _ in range(2):                                                    # away from the blended edge
        far[:, 1:-1, 1:-1] &= far[:, :-2, 1:-1] & far[:, 2:, 1:-1] & far[:, 1:-1, :-2] & far[:, 1:-1, 2:]
        far[:, [0, -1]] = far[:, :, [0, -1]] = False
    assert np.abs(plain.astype(int) - wide)[far].max() <= 1


def test_landmark_term_is_the_gradient_of_the_weighted_mean_landmark_loss():
    from npface.model import TABLE2, FaceModel
    from npface.pretrain_alignment import warp_loss_forward
    rng = np.random.default_rng(0)
    model = FaceModel(TABLE2, seed=0).astype(np.float64)
    images = rng.integers(0, 256, size=(4, 112, 112, 3), dtype=np.uint8)
    template = rng.uniform(20, 90, size=(68, 2))
    target = training.AlignTarget(np.tile([[1.05, 0.02, 0.03], [-0.02, 1.05, -0.04]], (4, 1, 1)),
                                  np.array([True, False, True, True]), template)
    weight = 0.3

    def loss(m):                                  # weight x mean over the usable rows
        _, cache = m.forward(images, train=True)
        return weight * warp_loss_forward(cache.theta[target.use], target.theta[target.use], template)[0]

    _, cache = model.forward(images, train=True)
    dtheta, mean_loss = training.landmark_term(cache.theta, target, slice(0, 4), weight)
    grads = model.backward(np.zeros((4, 128)), 0.0, cache, dtheta)   # before the next training forward reuses
    assert mean_loss * weight == pytest.approx(loss(model))          # the compiled plan's workspace
    assert not dtheta[1].any()                    # the row without landmarks gets nothing
    name = next(k for k in model.params if k.startswith("align") and k.endswith(".bias"))
    for i in range(3):
        eps = 1e-5
        plus, minus = model.astype(np.float64), model.astype(np.float64)
        plus.params[name].flat[i] += eps
        minus.params[name].flat[i] -= eps
        np.testing.assert_allclose(grads[name].flat[i], (loss(plus) - loss(minus)) / (2 * eps), rtol=1e-4, atol=1e-9)
    assert not any(np.any(g) for k, g in grads.items() if not k.startswith("align") and k != "threshold")
    with pytest.raises(ValueError, match="dtheta_extra must have shape"):
        model.backward(np.zeros((4, 128)), 0.0, cache, dtheta[:2])


@pytest.mark.lfw
def test_folder_source_gives_landmark_targets_that_follow_the_augmentation():
    from pathlib import Path
    import os
    lfw = Path(os.environ.get("NPFACE_LFW", Path(__file__).resolve().parents[1] / ".." / "shared" / "lfw"))
    if not (lfw / "landmarks68.tsv").is_file():
        pytest.skip(f"LFW not found at {lfw} (set NPFACE_LFW)")
    cfg = tiny(data="folder", lfw=str(lfw), people="peopleDevTrain.txt", landmark_weight=0.01, flip=True,
               jitter=True).check()
    source = training.FolderSource(cfg, progress=False)
    images, labels, align, photos, _ = source.batch_with_targets(np.random.default_rng(3))
    assert photos is None                                            # only with --distinct-photos
    plain = training.FolderSource(tiny(data="folder", lfw=str(lfw), people="peopleDevTrain.txt", flip=True,
                                       jitter=True), progress=False).batch(np.random.default_rng(3))
    np.testing.assert_array_equal(images, plain[0])                  # the batch itself is unchanged
    assert align.theta.shape == (4, 2, 3) and align.use.shape == (4,) and align.template.shape == (68, 2)
    # the target of an augmented image differs from the un-augmented one by the augmentation's warp
    b = source.sampler.batch(source.ds.images, np.random.default_rng(3), flip=True, jitter=True)
    from npface.data.landmarks import augmented_thetas
    np.testing.assert_allclose(align.theta, augmented_thetas(source.landmarks[2][b.indices], b.aug_theta, b.flipped))
