"""Tests of npface.data.sampler: P x K batches, augmentation, validation pairs."""
import os
from pathlib import Path

import numpy as np
import pytest

from npface.data.landmarks import (FLIP_THETA, alignment_thetas, augmented_thetas, identity_theta,
                                   similarity_params)
from npface.data.sampler import (PKSampler, augment, jitter_thetas, validation_pairs, warp_images)

LFW = Path(os.environ.get("NPFACE_LFW", Path(__file__).resolve().parents[2] / ".." / "shared" / "lfw"))


def make_labels():
    """Person 0: 20 images, 1: 5, 2: 1 (ineligible), 3: 3, 4: 16, 5: 2, 6: 1 (ineligible); shuffled rows."""
    counts = [20, 5, 1, 3, 16, 2, 1]
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(0).permutation(labels)


# --------------------------------------------------------------------------
# P x K sampling
# --------------------------------------------------------------------------

def test_eligibility_and_errors():
    labels = make_labels()
    s = PKSampler(labels, n_identities=3, n_per_identity=4)
    np.testing.assert_array_equal(s.eligible, [0, 1, 3, 4, 5])
    assert s.n_eligible_images == 20 + 5 + 3 + 16 + 2 and s.batch_size == 12
    assert len(PKSampler(labels, 2, 4, min_images=5).eligible) == 3
    with pytest.raises(ValueError, match="only 5 people have >= 2 images, cannot draw 6"):
        PKSampler(labels, n_identities=6, n_per_identity=4)
    with pytest.raises(ValueError, match="n_per_identity must be an integer >= 1"):
        PKSampler(labels, 2, 0)
    with pytest.raises(ValueError, match=r"labels must be a 1-D integer array \(N,\)"):
        PKSampler(labels.astype(float), 2, 2)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 48\)"):
        PKSampler(labels, 2, 2, indices=[0, 48])
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        PKSampler(labels, 2, 2).sample(0)


def test_pk_structure_and_replacement_rule():
    labels = make_labels()
    labels0 = labels.copy()
    K = 6
    s = PKSampler(labels, n_identities=5, n_per_identity=K)
    rng = np.random.default_rng(1)
    for _ in range(20):
        idx, lab = s.sample(rng)
        assert idx.shape == (30,) and lab.shape == (30,) and idx.dtype == np.int64
        np.testing.assert_array_equal(labels[idx], lab)
        blocks = lab.reshape(5, K)
        assert (blocks == blocks[:, :1]).all()                         # identity-major blocks
        assert len(set(blocks[:, 0])) == 5                             # P distinct people
        assert not np.isin(lab, [2, 6]).any()                          # single-image people never drawn
        for b in idx.reshape(5, K):
            person = labels[b[0]]
            rows = np.flatnonzero(labels == person)
            if len(rows) >= K:
                assert len(set(b)) == K                                # without replacement
            else:
                assert set(b) == set(rows)                             # every image, plus repeats
    np.testing.assert_array_equal(labels, labels0)


def test_sampling_is_deterministic_and_uniform_over_people():
    labels = make_labels()
    s = PKSampler(labels, 2, 3)
    a = [s.sample(np.random.default_rng(7))[0] for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    assert not np.array_equal(s.sample(np.random.default_rng(8))[0], a[0])
    rng = np.random.default_rng(9)
    seen = np.concatenate([s.sample(rng)[1][::3] for _ in range(3000)])
    freq = np.bincount(seen, minlength=7)[[0, 1, 3, 4, 5]] / 6000
    np.testing.assert_allclose(freq, 0.2, atol=0.02)                   # each eligible person equally likely


def test_indices_subset():
    labels = make_labels()
    subset = np.flatnonzero(np.isin(labels, [0, 3, 5]))
    s = PKSampler(labels, 3, 4, indices=subset)
    np.testing.assert_array_equal(s.eligible, [0, 3, 5])
    idx, _ = s.sample(np.random.default_rng(0))
    assert np.isin(idx, subset).all()


# --------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------

def _images(n, h=20, w=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def reference_warp_uint8(img, theta, out_h=None, out_w=None):
    """Slow bilinear sampler, project convention, for one (H, W, 3) uint8 image -> float (out_h, out_w, 3)
    (default: H, W)."""
    H, W, _ = img.shape
    Ho, Wo = out_h or H, out_w or W
    out = np.zeros((Ho, Wo, 3))
    for r in range(Ho):
        for c in range(Wo):
            xi, yi = theta @ np.array([(2 * c + 1) / Wo - 1, (2 * r + 1) / Ho - 1, 1.0])
            ix, iy = ((xi + 1) * W - 1) / 2, ((yi + 1) * H - 1) / 2
            x0, y0 = int(np.floor(ix)), int(np.floor(iy))
            wx, wy = ix - x0, iy - y0
            for dy, dx, wt in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx),
                               (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
                if 0 <= y0 + dy < H and 0 <= x0 + dx < W:
                    out[r, c] += wt * img[y0 + dy, x0 + dx]
    return out


def test_augment_off_and_flip_only():
    x = _images(6)
    x0 = x.copy()
    out, G, fl = augment(x, np.random.default_rng(0), flip=False, jitter=False)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(G, identity_theta(6))
    assert not fl.any() and out is not x
    out, G, fl = augment(x, np.random.default_rng(0), flip=True, jitter=False)
    assert fl.any() and not fl.all()
    np.testing.assert_array_equal(out[fl], x[fl][:, :, ::-1])
    np.testing.assert_array_equal(out[~fl], x[~fl])
    np.testing.assert_array_equal(G[fl], np.broadcast_to(FLIP_THETA, G[fl].shape))
    # the flip as a theta, through the warp, is exactly the column reversal
    np.testing.assert_array_equal(warp_images(x[fl], G[fl]), out[fl])
    np.testing.assert_array_equal(x, x0)


def test_augment_jitter_matches_reference_warp():
    x = _images(4, seed=1)
    x0 = x.copy()
    out, G, fl = augment(x, np.random.default_rng(2), flip=True, jitter=True, max_rotation=10, max_scale=0.1,
                         max_shift=0.1)
    np.testing.assert_array_equal(x, x0)
    assert out.shape == x.shape and out.dtype == np.uint8
    for i in range(4):
        ref = np.clip(np.rint(reference_warp_uint8(x[i], G[i])), 0, 255)
        assert np.abs(out[i].astype(int) - ref).max() <= 1           # float32 vs float64 rounding
    # same seed, same augmentation
    out2, G2, fl2 = augment(x, np.random.default_rng(2), flip=True, jitter=True, max_rotation=10, max_scale=0.1,
                            max_shift=0.1)
    np.testing.assert_array_equal(out2, out)
    with pytest.raises(ValueError, match="jitter options"):
        augment(x, np.random.default_rng(0), jitter=False, max_rotation=3)
    with pytest.raises(ValueError, match=r"images must be a uint8 array \(N, H, W, 3\)"):
        augment(x.astype(np.float32), np.random.default_rng(0))


def test_jitter_with_context_samples_the_wider_crop_where_the_plain_jitter_shows_black():
    """context: the same images with m px more of their picture on every side; the jitter then draws the
    border from it: the warp of the context by G scaled to its normalised coordinates, never zeros."""
    m = 6
    rng = np.random.default_rng(7)
    context = rng.integers(60, 250, size=(5, 16 + 2 * m, 20 + 2 * m, 3), dtype=np.uint8)   # (N, H+2m, W+2m, 3)
    x = context[:, m:-m, m:-m].copy()                                    # (5, 16, 20, 3): the centres
    x0, c0 = x.copy(), context.copy()
    kw = dict(flip=True, jitter=True, max_rotation=12, max_scale=0.15, max_shift=0.1)
    plain, G, fl = augment(x, np.random.default_rng(3), **kw)
    wide, G2, fl2 = augment(x, np.random.default_rng(3), context=context, **kw)
    np.testing.assert_array_equal(G2, G)                                 # the same draws
    np.testing.assert_array_equal(fl2, fl)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(context, c0)
    assert wide.shape == x.shape and wide.dtype == np.uint8
    assert (plain == 0).all(-1).any() and wide.min() >= 60               # black corners, then picture instead
    scale = np.array([[20 / (20 + 2 * m)], [16 / (16 + 2 * m)]])         # x row by W / Wc, y row by H / Hc
    for i in range(5):
        ref = np.clip(np.rint(reference_warp_uint8(context[i], scale * G[i], out_h=16, out_w=20)), 0, 255)
        assert np.abs(wide[i].astype(int) - ref).max() <= 1              # float32 vs float64 rounding
    inside = (plain != 0).all(-1) & (wide != 0).all(-1)                  # pixels the plain jitter fills fully...
    core = np.zeros_like(inside)
    core[:, 3:-3, 3:-3] = True                                           # ...away from the blended edge
    assert np.abs(plain.astype(int) - wide)[inside & core].max() <= 1    # the same picture there
    # without jitter the context is not used: a flip alone stays the exact column reversal
    out, _, f = augment(x, np.random.default_rng(3), flip=True, jitter=False, context=context)
    np.testing.assert_array_equal(out[f], x[f][:, :, ::-1])
    for bad, match in ((context[:, 1:], "the same margin m on every side"),
                       (context[:4], "context must have shape"),
                       (context.astype(np.float32), "context must be a uint8 array")):
        with pytest.raises(ValueError, match=match):
            augment(x, np.random.default_rng(0), context=bad)


def test_jitter_thetas_ranges():
    G = jitter_thetas(2000, np.random.default_rng(3), max_rotation=5.0, max_scale=0.1, max_shift=0.05)
    p = similarity_params(G)
    s, ang = np.hypot(p[:, 0], p[:, 1]), np.degrees(np.arctan2(p[:, 1], p[:, 0]))
    assert s.min() >= 1 / 1.1 - 1e-12 and s.max() <= 1.1 + 1e-12 and s.min() < 0.92 and s.max() > 1.08
    assert np.abs(ang).max() <= 5 + 1e-9 and np.abs(ang).max() > 4.9
    assert np.abs(p[:, 2:]).max() <= 0.05 and np.abs(p[:, 2:]).max() > 0.049
    with pytest.raises(ValueError, match="max_scale must be a finite number >= 0"):
        jitter_thetas(3, np.random.default_rng(0), max_scale=-1)


def _blob_image(points, size=112, sigma=2.0):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.zeros((size, size))
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return np.repeat((255 * np.clip(img, 0, 1)).round().astype(np.uint8)[..., None], 3, axis=-1)


def _centroids(img, points, half=6):
    img = img[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    out = []
    for x, y in points:
        w = img * ((np.abs(xx - x) <= half) & (np.abs(yy - y) <= half))
        out.append([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])
    return np.array(out)


def test_augmented_images_with_adjusted_targets_align():
    """Augment an image, warp it by the adjusted target: the landmarks land on the (mirrored) template."""
    tpl = np.array([[38.0, 36.0], [74.0, 36.0], [56.0, 58.0], [42.0, 80.0], [70.0, 78.0]])
    pts = tpl * 0.95 + [4.0, 2.0]                                        # a slightly shifted, smaller face
    x = np.repeat(_blob_image(pts)[None], 6, axis=0)                     # (6, 112, 112, 3)
    theta = alignment_thetas(np.repeat(pts[None], 6, 0), tpl)
    out, G, fl = augment(x, np.random.default_rng(4))
    assert fl.any() and not fl.all()
    aligned = warp_images(out, augmented_thetas(theta, G, fl))
    for i in range(6):
        want = tpl * [-1, 1] + [111, 0] if fl[i] else tpl
        np.testing.assert_allclose(_centroids(aligned[i], want), want, atol=0.3)   # two uint8 resamplings


def test_batch():
    labels = make_labels()
    images = _images(len(labels), 16, 16)
    images[:, 0, 0, 0] = np.arange(len(labels))                           # tag each row
    s = PKSampler(labels, 3, 4)
    b = s.batch(images, np.random.default_rng(5), flip=False, jitter=False)
    assert b.images.shape == (12, 16, 16, 3) and b.labels.shape == (12,) and b.aug_theta.shape == (12, 2, 3)
    np.testing.assert_array_equal(b.images[:, 0, 0, 0], b.indices)
    np.testing.assert_array_equal(labels[b.indices], b.labels)
    b1 = s.batch(images, np.random.default_rng(6))
    b2 = s.batch(images, np.random.default_rng(6))
    np.testing.assert_array_equal(b1.images, b2.images)
    np.testing.assert_array_equal(b1.indices, b2.indices)


# --------------------------------------------------------------------------
# Validation pairs
# --------------------------------------------------------------------------

def test_validation_pairs():
    labels = make_labels()
    pairs, same = validation_pairs(labels, 40, seed=0)
    assert pairs.shape == (80, 2) and same.shape == (80,) and same.sum() == 40
    assert (pairs[:, 0] < pairs[:, 1]).all()
    assert len({tuple(p) for p in pairs}) == 80
    np.testing.assert_array_equal(labels[pairs[:, 0]] == labels[pairs[:, 1]], same)
    p2, s2 = validation_pairs(labels, 40, seed=0)
    np.testing.assert_array_equal(p2, pairs)
    np.testing.assert_array_equal(s2, same)
    assert not np.array_equal(validation_pairs(labels, 40, seed=1)[0], pairs)
    subset = np.flatnonzero(np.isin(labels, [1, 3, 6]))
    ps, ss = validation_pairs(labels, 10, seed=0, indices=subset)
    assert np.isin(ps, subset).all() and ss.sum() == 10
    # all 10 + 3 same pairs of persons 1 and 3 exist; asking for 13 takes every one of them
    ps, ss = validation_pairs(labels, 13, seed=0, indices=subset)
    assert ss.sum() == 13
    with pytest.raises(ValueError, match="only 13 distinct same-person pairs exist, asked for 14"):
        validation_pairs(labels, 14, indices=subset)
    with pytest.raises(ValueError, match="only 0 distinct different-person pairs"):
        validation_pairs(labels, 1, indices=np.flatnonzero(labels == 0))
    with pytest.raises(ValueError, match="n_each must be an integer >= 1"):
        validation_pairs(labels, 0)


# --------------------------------------------------------------------------
# LFW (skipped when absent)
# --------------------------------------------------------------------------

@pytest.mark.lfw
@pytest.mark.skipif(not (LFW / "lfw").is_dir(), reason=f"LFW not found at {LFW}")
def test_lfw_eligible_counts():
    """peopleDevTrain with 10 % of the people held out: the numbers quoted in the sampler docstring."""
    from npface.data.folders import scan_folder, split_identities
    idx = scan_folder(LFW / "lfw", LFW / "peopleDevTrain.txt")
    train, val = split_identities(idx.identities, 0.1, seed=0)
    assert len(train) == 3634 and len(val) == 404
    rows = np.flatnonzero(np.isin(np.array(idx.identities)[idx.labels], train))
    s = PKSampler(idx.labels, 16, 16, indices=rows)
    assert len(s.eligible) == 1061 and s.n_eligible_images == 5527
    full = PKSampler(idx.labels, 16, 16)
    assert len(full.eligible) == 1184 and full.n_eligible_images == 6671
    vrows = np.flatnonzero(np.isin(np.array(idx.identities)[idx.labels], val))
    pairs, same = validation_pairs(idx.labels, 300, seed=0, indices=vrows)
    assert np.isin(pairs, vrows).all() and same.sum() == 300
