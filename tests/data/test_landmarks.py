"""Tests of npface.data.landmarks: the TSV, similarity fits, theta conversion, template, errors."""
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import least_squares

from npface.data.folders import LFW_CROP, read_people_file, split_identities
from npface.data.landmarks import (FLIP_THETA, LEFT_EYE, RIGHT_EYE, TEMPLATE_EYES, alignment_thetas,
                                   apply_affine, augmented_thetas, compose_affine, fit_similarity, identity_theta,
                                   invert_affine, landmark_error, make_template, output_points,
                                   pixel_to_theta, procrustes_mean, read_landmarks, similarity_matrix,
                                   similarity_params, theta_to_pixel)
from npface.data.sampler import jitter_thetas

LFW = Path(os.environ.get("NPFACE_LFW", Path(__file__).resolve().parents[2] / ".." / "shared" / "lfw"))


def random_params(rng, n, scale=(0.7, 1.4), max_angle=0.5, max_t=20.0):
    s = rng.uniform(*scale, size=n)
    phi = rng.uniform(-max_angle, max_angle, size=n)
    t = rng.uniform(-max_t, max_t, size=(n, 2))
    return np.stack([s * np.cos(phi), s * np.sin(phi), t[:, 0], t[:, 1]], -1)   # (n, 4)


def apply_params_loop(params, pts):
    """Slow reference: p -> [[a, -b], [b, a]] p + t, point by point."""
    a, b, tx, ty = params
    return np.array([[a * x - b * y + tx, b * x + a * y + ty] for x, y in pts])


# --------------------------------------------------------------------------
# Similarity fit
# --------------------------------------------------------------------------

def test_fit_similarity_exact():
    rng = np.random.default_rng(0)
    params = random_params(rng, 6)                                   # (6, 4)
    src = rng.uniform(0, 112, size=(6, 68, 2))
    dst = np.stack([apply_params_loop(p, s) for p, s in zip(params, src)])
    src0, dst0 = src.copy(), dst.copy()
    got = fit_similarity(src, dst)
    np.testing.assert_array_equal(src, src0)
    np.testing.assert_array_equal(dst, dst0)
    assert got.shape == (6, 4)
    np.testing.assert_allclose(got, params, atol=1e-10)
    # one src against many dst, and many src against one dst (a template)
    np.testing.assert_allclose(fit_similarity(src[0], dst[0]), params[0], atol=1e-10)
    tpl = rng.uniform(0, 112, size=(68, 2))
    src2 = np.stack([apply_params_loop(p, tpl) for p in params])
    inv = similarity_params(invert_affine(similarity_matrix(params)))
    np.testing.assert_allclose(fit_similarity(src2, tpl), inv, atol=1e-10)


def test_fit_similarity_matches_scipy_on_noisy_points():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 112, size=(30, 2))
    dst = apply_params_loop(random_params(rng, 1)[0], src) + rng.normal(0, 2.0, size=(30, 2))
    got = fit_similarity(src, dst)

    def resid(p):
        return (apply_params_loop(p, src) - dst).ravel()

    ref = least_squares(resid, x0=np.array([1.0, 0.0, 0.0, 0.0]), xtol=1e-14, ftol=1e-14, gtol=1e-14).x
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-7)
    # and no nearby parameters do better (brute force over a small grid of perturbations)
    best = (resid(got) ** 2).sum()
    for d in np.array(np.meshgrid(*[[-1e-3, 0, 1e-3]] * 4)).reshape(4, -1).T:
        assert (resid(got + d) ** 2).sum() >= best - 1e-9


def test_fit_similarity_errors():
    with pytest.raises(ValueError, match="at least 2 points"):
        fit_similarity(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="all points coincide"):
        fit_similarity(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="same number of points"):
        fit_similarity(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"src must have shape \(\.\.\., M, 2\)"):
        fit_similarity(np.zeros((5, 3)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="dst must be finite"):
        fit_similarity(np.eye(2), np.full((2, 2), np.nan))


def test_similarity_params_round_trip_and_rejects_affine():
    p = random_params(np.random.default_rng(2), 4)
    np.testing.assert_allclose(similarity_params(similarity_matrix(p)), p, atol=1e-15)
    with pytest.raises(ValueError, match="must be a similarity"):
        similarity_params(np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"params must have shape \(\.\.\., 4\)"):
        similarity_matrix(np.zeros(3))


def test_affine_helpers():
    rng = np.random.default_rng(3)
    T1, T2 = similarity_matrix(random_params(rng, 3)), similarity_matrix(random_params(rng, 3))
    pts = rng.uniform(0, 100, size=(3, 10, 2))
    np.testing.assert_allclose(apply_affine(compose_affine(T1, T2), pts), apply_affine(T1, apply_affine(T2, pts)),
                               atol=1e-10)
    np.testing.assert_allclose(apply_affine(invert_affine(T1), apply_affine(T1, pts)), pts, atol=1e-10)
    with pytest.raises(ValueError, match="singular"):
        invert_affine(np.zeros((2, 3)))


# --------------------------------------------------------------------------
# Pixel <-> theta
# --------------------------------------------------------------------------

def test_pixel_theta_conventions():
    ident_px = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(pixel_to_theta(ident_px, 112, 112), ident_px, atol=1e-15)
    # a shift of 56 px (half of 112) is a shift of 1.0 in normalised units
    np.testing.assert_allclose(pixel_to_theta(np.array([[1.0, 0, 56.0], [0, 1.0, -28.0]]), 112, 112),
                               [[1, 0, 1.0], [0, 1, -0.5]], atol=1e-15)
    # pixel centres: output pixel 0 of a 2-pixel image sits at u = -0.5; copying a 4-pixel input
    # by "input = 2 * output + 0.5" (box-downsampling) is the identity in normalised coordinates
    np.testing.assert_allclose(pixel_to_theta(np.array([[2.0, 0, 0.5], [0, 2.0, 0.5]]), 4, 2),
                               [[1, 0, 0], [0, 1, 0]], atol=1e-15)
    rng = np.random.default_rng(4)
    T = rng.normal(size=(5, 2, 3))
    for in_hw, out_hw in [(112, 112), ((50, 60), (112, 90))]:
        np.testing.assert_allclose(theta_to_pixel(pixel_to_theta(T, in_hw, out_hw), in_hw, out_hw), T, atol=1e-12)
    with pytest.raises(ValueError, match="in_hw must be a size"):
        pixel_to_theta(T, 0, 112)


def _render_blobs(points, size=112, sigma=1.8):
    """(size, size) image with one Gaussian blob per point (x, y)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.zeros((size, size))
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return img


def reference_warp(img, theta, out_h, out_w):
    """Slow bilinear sampler in the project convention (one image (H, W), theta (2, 3))."""
    H, W = img.shape
    out = np.zeros((out_h, out_w))
    for r in range(out_h):
        for c in range(out_w):
            xo, yo = (2 * c + 1) / out_w - 1, (2 * r + 1) / out_h - 1
            xi, yi = theta @ np.array([xo, yo, 1.0])
            ix, iy = ((xi + 1) * W - 1) / 2, ((yi + 1) * H - 1) / 2
            x0, y0 = int(np.floor(ix)), int(np.floor(iy))
            wx, wy = ix - x0, iy - y0
            v = 0.0
            for dy, dx, w in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx),
                              (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
                yy, xx = y0 + dy, x0 + dx
                if 0 <= yy < H and 0 <= xx < W:
                    v += w * img[yy, xx]
            out[r, c] = v
    return out


def _centroids(img, points, half=5):
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    out = []
    for x, y in points:
        w = img * ((np.abs(xx - x) <= half) & (np.abs(yy - y) <= half))
        out.append([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])
    return np.array(out)


def test_theta_warp_puts_points_on_template():
    """Warping an image of blobs at known landmarks by the fitted theta moves the blobs onto the template."""
    tpl = np.array([[40.0, 35.0], [72.0, 33.0], [56.0, 60.0], [44.0, 80.0], [68.0, 82.0]])   # (5, 2)
    true = np.array([0.7 * np.cos(0.3), 0.7 * np.sin(0.3), 12.0, -6.0])   # output px -> input px similarity
    pts = apply_params_loop(true, tpl)                    # landmarks in the input image
    img = _render_blobs(pts)
    theta = alignment_thetas(pts[None], tpl)              # (1, 2, 3)
    np.testing.assert_allclose(similarity_params(theta)[0],
                               similarity_params(pixel_to_theta(similarity_matrix(true))), atol=1e-10)
    warped = reference_warp(img, theta[0], 112, 112)
    np.testing.assert_allclose(_centroids(warped, tpl), tpl, atol=0.02)   # a half-pixel slip would show as ~0.15
    from npface.ops import warp_forward
    fast, _ = warp_forward(img[None, None], theta, 112, 112)
    np.testing.assert_allclose(fast[0, 0], warped, atol=1e-9)
    np.testing.assert_allclose(landmark_error(pts[None], theta, tpl), [0.0], atol=1e-9)


def test_output_points_and_landmark_error():
    rng = np.random.default_rng(5)
    tpl = rng.uniform(20, 90, size=(68, 2))
    pts = tpl + rng.normal(0, 3, size=(4, 68, 2))
    pts0 = pts.copy()
    e_id = landmark_error(pts, identity_theta(4), tpl)
    np.testing.assert_allclose(e_id, np.linalg.norm(pts - tpl, axis=-1).mean(-1), atol=1e-12)
    theta = alignment_thetas(pts, tpl)
    e_fit = landmark_error(pts, theta, tpl)
    S = similarity_matrix(fit_similarity(pts, tpl))
    np.testing.assert_allclose(output_points(pts, theta), apply_affine(S, pts), atol=1e-10)
    rms = lambda q: np.sqrt(((q - tpl) ** 2).sum(-1).mean(-1))
    assert (rms(output_points(pts, theta)) <= rms(pts) + 1e-12).all()
    assert e_fit.shape == (4,) and (e_fit > 0).all()
    np.testing.assert_array_equal(pts, pts0)
    with pytest.raises(ValueError, match=r"theta must have shape \(N, 2, 3\) = \(4, 2, 3\)"):
        landmark_error(pts, identity_theta(3), tpl)
    with pytest.raises(ValueError, match=r"template must have shape \(68, 2\)"):
        landmark_error(pts, identity_theta(4), tpl[:5])


def test_augmented_thetas_follow_the_augmentation():
    """Landmarks seen through an augmentation and then its adjusted target land on the (mirrored) aligned spots."""
    rng = np.random.default_rng(6)
    tpl = rng.uniform(25, 85, size=(68, 2))
    pts = np.stack([apply_params_loop(p, tpl) for p in random_params(rng, 8, scale=(0.9, 1.1), max_t=5)])
    theta = alignment_thetas(pts, tpl)
    flipped = np.array([False, True] * 4)
    F = np.where(flipped[:, None, None], FLIP_THETA, identity_theta(1)[0])
    G = compose_affine(jitter_thetas(8, rng), F)                       # as sampler.augment builds it
    pts_aug = output_points(pts, G)                                    # landmarks in the augmented images
    theta_aug = augmented_thetas(theta, G, flipped)
    similarity_params(theta_aug)                                       # still a similarity
    got = output_points(pts_aug, theta_aug)
    want = np.where(flipped[:, None, None], tpl * [-1, 1] + [111, 0], tpl)   # mirrored: x -> 111 - x
    np.testing.assert_allclose(got, want, atol=1e-9)
    with pytest.raises(ValueError, match=r"flipped \(N,\)"):
        augmented_thetas(theta, G, flipped[:3])


# --------------------------------------------------------------------------
# Template
# --------------------------------------------------------------------------

def test_procrustes_mean_and_template():
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 100, size=(68, 2))
    shapes = np.stack([apply_params_loop(p, base) for p in random_params(rng, 10)])
    mean = procrustes_mean(shapes)
    # every shape is a similarity of base, so the mean is too (zero residual)
    fitted = apply_params_loop(fit_similarity(base, mean), base)
    np.testing.assert_allclose(fitted, mean, atol=1e-8)
    tpl = make_template(shapes)
    np.testing.assert_allclose(tpl[LEFT_EYE].mean(0), TEMPLATE_EYES[0], atol=1e-10)
    np.testing.assert_allclose(tpl[RIGHT_EYE].mean(0), TEMPLATE_EYES[1], atol=1e-10)
    fitted = apply_params_loop(fit_similarity(base, tpl), base)
    np.testing.assert_allclose(fitted, tpl, atol=1e-8)
    with pytest.raises(ValueError, match=r"shapes must have shape \(N, 68, 2\)"):
        make_template(shapes[:, :10])


# --------------------------------------------------------------------------
# The TSV
# --------------------------------------------------------------------------

def _write_tsv(path, rows, header=None):
    cols = ["path", "detected", "box_left", "box_top", "box_right", "box_bottom"] + \
           [f"{c}{i}" for i in range(68) for c in "xy"]
    lines = ["\t".join(header or cols)] + ["\t".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_landmarks_small(tmp_path):
    rng = np.random.default_rng(8)
    pts = rng.uniform(0, 250, size=(2, 68, 2)).round(1)
    rows = [["lfw/Ann/Ann_0001.jpg", 1, 70, 70, 180, 180] + list(pts[0].ravel()),
            ["lfw/Bob/Bob_0001.jpg", 0, 70, 70, 180, 180] + list(pts[1].ravel())]
    tab = read_landmarks(_write_tsv(tmp_path / "l.tsv", rows))
    assert len(tab) == 2 and tab.paths[1] == "lfw/Bob/Bob_0001.jpg"
    np.testing.assert_array_equal(tab.detected, [True, False])
    np.testing.assert_array_equal(tab.boxes[0], [70, 70, 180, 180])
    np.testing.assert_allclose(tab.points, pts)
    np.testing.assert_array_equal(tab.rows_for(["Bob/Bob_0001.jpg", "/x/lfw/Ann/Ann_0001.jpg"]), [1, 0])
    np.testing.assert_allclose(tab.crop_points(["Ann/Ann_0001.jpg"])[0], LFW_CROP.points_to_crop(pts[0]))
    with pytest.raises(ValueError, match="have no landmarks, e.g. 'Cy/Cy_0001.jpg'"):
        tab.rows_for(["Cy/Cy_0001.jpg"])


def test_read_landmarks_errors(tmp_path):
    good = ["lfw/A/A_0001.jpg", 1, 0, 0, 1, 1] + [1.0] * 136
    with pytest.raises(FileNotFoundError, match="landmark file not found: .*nope.tsv"):
        read_landmarks(tmp_path / "nope.tsv")
    with pytest.raises(ValueError, match=r"h\.tsv:1: expected the header"):
        read_landmarks(_write_tsv(tmp_path / "h.tsv", [good], header=["path", "x0"]))
    with pytest.raises(ValueError, match=r"f\.tsv:3: expected 142 tab-separated fields, got 141"):
        read_landmarks(_write_tsv(tmp_path / "f.tsv", [good, good[:-1]]))
    with pytest.raises(ValueError, match=r"n\.tsv:2: non-numeric field"):
        read_landmarks(_write_tsv(tmp_path / "n.tsv", [good[:7] + ["abc"] + good[8:]]))
    with pytest.raises(ValueError, match="'detected' must be 0 or 1"):
        read_landmarks(_write_tsv(tmp_path / "d.tsv", [good[:1] + [2] + good[2:]]))
    with pytest.raises(ValueError, match="no landmark rows"):
        read_landmarks(_write_tsv(tmp_path / "e.tsv", []))


# --------------------------------------------------------------------------
# LFW (skipped when absent)
# --------------------------------------------------------------------------

lfw = pytest.mark.skipif(not (LFW / "landmarks68.tsv").is_file(), reason=f"LFW not found at {LFW}")


@pytest.fixture(scope="module")
def lfw_table():
    return read_landmarks(LFW / "landmarks68.tsv")


@pytest.fixture(scope="module")
def lfw_train(lfw_table):
    """Training split of peopleDevTrain: (template, crop landmarks of a fixed sample of 600 images)."""
    people = [n for n, _ in read_people_file(LFW / "peopleDevTrain.txt")]
    train, _ = split_identities(people, 0.1, seed=0)
    train = set(train)
    rows = np.array([i for i, p in enumerate(lfw_table.paths) if p.split("/")[1] in train])
    pts = LFW_CROP.points_to_crop(lfw_table.points[rows])                     # (n, 68, 2)
    tpl = make_template(pts)
    sample = np.random.default_rng(0).choice(len(rows), size=600, replace=False)
    return tpl, pts[sample]


@pytest.mark.lfw
@lfw
def test_lfw_parse(lfw_table):
    assert len(lfw_table) == 13233
    assert list(lfw_table.paths) == sorted(lfw_table.paths, key=lambda s: s.encode())
    assert (~lfw_table.detected).sum() == 39
    iod = np.linalg.norm(lfw_table.points[:, 45] - lfw_table.points[:, 36], axis=-1)
    assert abs(iod.mean() - 56.5) < 0.05                        # LANDMARKS.md: 56.5 px
    np.testing.assert_allclose(lfw_table.points.mean(axis=(0, 1)), [125.5, 139.1], atol=0.05)


@pytest.mark.lfw
@lfw
def test_lfw_crop_statistics(lfw_table, lfw_train):
    """The crop box centres the mean face and leaves the margin its comment claims."""
    mean = lfw_table.points.mean(axis=0)                         # (68, 2) in the 250 frame
    face_centre = np.array([(mean[:, 0].min() + mean[:, 0].max()) / 2, (mean[17:27, 1].min() + mean[8, 1]) / 2])
    box_centre = np.array([LFW_CROP.left, LFW_CROP.top]) + LFW_CROP.size / 2 - 0.5
    assert np.abs(face_centre - box_centre).max() < 1.0
    face_height = mean[8, 1] - mean[17:27, 1].min()
    assert abs(LFW_CROP.size / face_height - 1.5) < 0.05
    q = LFW_CROP.points_to_crop(mean)                            # the mean face inside the crop
    assert q.min() > 15 and q.max() < 111 - 15
    # where the template face comes from in each crop under its fitted warp: inside the crop for >= 98 %
    tpl, pts = lfw_train
    theta = alignment_thetas(pts, tpl)
    src = apply_affine(theta_to_pixel(theta), tpl)                # template (output px) -> input crop px
    inside = ((src >= -0.5) & (src <= 111.5)).all(axis=(1, 2))
    assert inside.mean() >= 0.98


@pytest.mark.lfw
@lfw
def test_lfw_template(lfw_train):
    tpl, pts = lfw_train
    np.testing.assert_allclose(tpl[LEFT_EYE].mean(0), TEMPLATE_EYES[0], atol=1e-9)
    np.testing.assert_allclose(tpl[RIGHT_EYE].mean(0), TEMPLATE_EYES[1], atol=1e-9)
    # the pinned eyes are close to where the average training face has them, so the mean warp is near identity
    p = similarity_params(alignment_thetas(pts, tpl)).mean(0)
    assert abs(np.hypot(p[0], p[1]) - 1) < 0.05 and np.abs(p[2:]).max() < 0.05
    assert 10 < tpl[:, 1].min() and tpl[8, 1] < 100                 # brows to chin inside the output


@pytest.mark.lfw
@lfw
def test_lfw_fitted_vs_identity_error(lfw_train):
    tpl, pts = lfw_train
    n = len(pts)
    e_id = landmark_error(pts, identity_theta(n), tpl)
    theta = alignment_thetas(pts, tpl)
    e_fit = landmark_error(pts, theta, tpl)
    rms = lambda q: np.sqrt(((q - tpl) ** 2).sum(-1).mean(-1))
    assert (rms(output_points(pts, theta)) <= rms(pts) + 1e-9).all()    # least squares never loses in RMS
    # deep-funneled LFW is already roughly aligned: the fit removes about a quarter of the error
    assert e_fit.mean() < 0.85 * e_id.mean()
    # with the sampler's default jitter the identity warp gets worse, while the fit absorbs any
    # similarity exactly: the same residual per image as without jitter
    G = jitter_thetas(n, np.random.default_rng(1))
    pj = output_points(pts, G)
    ej_id = landmark_error(pj, identity_theta(n), tpl)
    ej_fit = landmark_error(pj, alignment_thetas(pj, tpl), tpl)
    assert ej_id.mean() > e_id.mean() + 1.0
    np.testing.assert_allclose(ej_fit, e_fit, atol=1e-9)
