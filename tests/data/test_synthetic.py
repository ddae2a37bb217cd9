"""Tests of the procedural synthetic-face generator (npface.data.synthetic).

Oracles kept here on purpose, slow and obvious:
- ``_supersampled``: pixel coverage of a shape by 16 x 16 point sampling,
  against which the kernels' analytic anti-aliasing is checked;
- ``_warp_reference``: bilinear sampling through theta, the ONNX
  AffineGrid + GridSample convention of the brief, written as a plain loop.
"""
import numpy as np
import pytest

from npface.data import synthetic as syn
from npface.data.synthetic import (HELDOUT_OFFSET, IMAGE_SIZE, PARAM_NAMES, Nuisance, SyntheticFaces,
                                   pose_to_theta)

S = IMAGE_SIZE


@pytest.fixture(scope="module")
def faces():
    return SyntheticFaces(seed=0, n_identities=50)


def _blocks(images, b=8):
    """Blurred, downsampled feature: mean over b x b blocks, (N, S, S, 3) uint8 -> (N, (S/b)^2 * 3)."""
    n = images.shape[0]
    x = images.astype(np.float64).reshape(n, S // b, b, S // b, b, 3)
    return x.mean(axis=(2, 4)).reshape(n, -1)


# --------------------------------------------------------------------------
# Shapes, dtypes, determinism
# --------------------------------------------------------------------------

def test_render_shapes_dtype_and_range(faces):
    ids = np.array([0, 1, 1, 7, 49], np.int64)
    ids_before = ids.copy()
    images, pose = faces.render(ids, np.random.default_rng(0), return_pose=True)
    assert images.shape == (5, S, S, 3) and images.dtype == np.uint8
    assert pose.shape == (5, 4) and pose.dtype == np.float64
    np.testing.assert_array_equal(ids, ids_before)
    # real pictures: many grey levels, both dark and bright pixels
    for im in images:
        assert im.std() > 15.0
        assert len(np.unique(im)) > 100
    assert faces.render(np.array([3], np.int32), 1).shape == (1, S, S, 3)
    assert faces.render(np.zeros(0, np.int64), 1).shape == (0, S, S, 3)


def test_same_seed_gives_identical_bytes(faces):
    ids = np.arange(6)
    a = faces.render(ids, np.random.default_rng(123))
    b = faces.render(ids, np.random.default_rng(123))
    c = SyntheticFaces(seed=0, n_identities=50).render(ids, 123)  # fresh object, int seed
    assert a.tobytes() == b.tobytes() == c.tobytes()


def test_different_seeds_give_different_images(faces):
    ids = np.arange(6)
    a = faces.render(ids, 1)
    assert np.all(np.any(a != faces.render(ids, 2), axis=(1, 2, 3)))
    other = SyntheticFaces(seed=1, n_identities=50)
    assert np.all(np.any(a != other.render(ids, 1), axis=(1, 2, 3)))
    assert not np.allclose(faces.identity_params(ids), other.identity_params(ids))


def test_rng_is_advanced(faces):
    rng = np.random.default_rng(5)
    a = faces.render(np.arange(3), rng)
    b = faces.render(np.arange(3), rng)
    assert np.all(np.any(a != b, axis=(1, 2, 3)))


def test_identity_is_independent_of_population_size_and_batch():
    small = SyntheticFaces(seed=3, n_identities=10)
    large = SyntheticFaces(seed=3, n_identities=5000)
    np.testing.assert_array_equal(small.identity_params([7]), large.identity_params([7]))
    np.testing.assert_array_equal(large.identity_params([4000, 7])[1], small.identity_params([7])[0])
    # the image in slot 0 depends only on its identity and the rng, not on its neighbours
    a = small.render(np.array([7, 1]), 9)
    b = large.render(np.array([7, 4000]), 9)
    assert a[0].tobytes() == b[0].tobytes()
    assert a[1].tobytes() != b[1].tobytes()


def test_pose_override_keeps_the_other_nuisance(faces):
    ids = np.arange(4)
    _, drawn = faces.render(ids, 11, return_pose=True)
    again, pose = faces.render(ids, 11, pose=drawn, return_pose=True)
    np.testing.assert_array_equal(pose, drawn)
    assert again.tobytes() == faces.render(ids, 11).tobytes()
    pose_in = np.tile([1.0, 0.0, 0.0, 0.0], (4, 1))
    before = pose_in.copy()
    _, used = faces.render(ids, 11, pose=pose_in, return_pose=True)
    np.testing.assert_array_equal(pose_in, before)
    np.testing.assert_array_equal(used, pose_in)


def test_drawn_pose_stays_in_the_nuisance_ranges():
    nu = Nuisance(max_rotation_deg=8.0, max_scale=0.2, max_shift=0.05)
    _, pose = SyntheticFaces(0, 10, nu).render(np.zeros(400, np.int64), 0, return_pose=True)
    scale = np.hypot(pose[:, 0], pose[:, 1])
    rot = np.degrees(np.arctan2(pose[:, 1], pose[:, 0]))
    assert np.all(np.abs(rot) <= 8.0) and np.abs(rot).max() > 7.0
    assert np.all((scale >= 1 / 1.2 - 1e-12) & (scale <= 1.2 + 1e-12))
    assert scale.min() < 0.88 and scale.max() > 1.14
    assert np.all(np.abs(pose[:, 2:]) <= 0.05) and np.abs(pose[:, 2:]).max() > 0.045
    _, none = SyntheticFaces(0, 10, Nuisance.none()).render(np.zeros(3, np.int64), 0, return_pose=True)
    np.testing.assert_array_equal(none, np.tile([1.0, 0.0, 0.0, 0.0], (3, 1)))


# --------------------------------------------------------------------------
# Identity parameters
# --------------------------------------------------------------------------

# (low, high) documented in the module docstring, for the directly drawn columns
_RANGES = {
    "head_rx": (0.42, 0.52), "head_ry": (0.54, 0.64), "head_cy": (-0.09, -0.01), "chin": (0.0, 0.10),
    "eye_dx": (0.15, 0.21), "eye_rx": (0.058, 0.085), "eye_tilt": (-0.12, 0.18),
    "brow_thick": (0.009, 0.022), "nose_len": (0.15, 0.26), "mouth_w": (0.085, 0.145),
    "hair_part": (-0.35, 0.35), "mole_size": (0.009, 0.018),
}


def test_identity_parameters_follow_the_documented_distribution():
    gen = SyntheticFaces(seed=0, n_identities=10)
    p = gen.identity_params(np.arange(2000))  # (2000, P_ID)
    assert p.shape == (2000, len(PARAM_NAMES)) and p.dtype == np.float64
    col = {name: p[:, k] for k, name in enumerate(PARAM_NAMES)}
    for name, (lo, hi) in _RANGES.items():
        v = col[name]
        assert v.min() >= lo and v.max() <= hi, name
        assert v.min() < lo + 0.05 * (hi - lo) and v.max() > hi - 0.05 * (hi - lo), name  # spans the range
    aspect = col["eye_ry"] / col["eye_rx"]
    assert aspect.min() >= 0.42 - 1e-12 and aspect.max() <= 0.66 + 1e-12
    for name in ("skin_r", "skin_g", "skin_b", "hair_r", "hair_g", "hair_b", "lip_r", "iris_cb"):
        assert col[name].min() >= 0 and col[name].max() <= 255, name
    assert set(np.unique(col["hair_style"])) == {0.0, 1.0, 2.0, 3.0}
    assert set(np.unique(col["facial_hair"])) == {0.0, 1.0, 2.0}
    # Bernoulli rates within 4 standard deviations of the documented ones
    for name, rate in (("glasses", 0.15), ("mole", 0.30)):
        assert set(np.unique(col[name])) == {0.0, 1.0}
        assert abs(col[name].mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / 2000), name
    # identities differ in every continuous attribute
    assert all(len(np.unique(col[name])) > 1900 for name in _RANGES)


def test_identity_params_are_not_exposed_for_writing(faces):
    p = faces.identity_params([2])
    p[:] = 0.0
    assert np.all(faces.identity_params([2])[0, :3] != 0.0)


# --------------------------------------------------------------------------
# Identity versus nuisance
# --------------------------------------------------------------------------

def test_without_nuisance_all_images_of_an_identity_are_equal():
    gen = SyntheticFaces(seed=0, n_identities=20, nuisance=Nuisance.none())
    a = gen.render(np.array([4, 4, 5]), 0)
    assert a[0].tobytes() == a[1].tobytes()
    assert a[0].tobytes() != a[2].tobytes()
    assert a[0].tobytes() == gen.render(np.array([4]), 99)[0].tobytes()


def test_within_identity_images_differ_but_are_closer_than_between():
    gen = SyntheticFaces(seed=2, n_identities=200)
    images, labels = gen.sample_batch(40, 4, np.random.default_rng(0))
    f = _blocks(images)  # (160, 588)
    d = ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1)  # (160, 160)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    within, between = d[same & off], d[~same]
    assert within.min() > 0  # every image of an identity is a different picture
    assert within.mean() < 0.9 * between.mean()
    # the identity signal is real but far from trivial: verification by this
    # raw pixel feature, even at its best threshold, stays modest
    dist = np.concatenate([within, between])
    is_same = np.concatenate([np.ones(within.size, bool), np.zeros(between.size, bool)])
    w = np.where(is_same, 0.5 / within.size, 0.5 / between.size)  # balanced accuracy
    acc = max(w[(dist < t) == is_same].sum() for t in np.quantile(dist, np.linspace(0.01, 0.99, 99)))
    assert 0.55 < acc < 0.9


# --------------------------------------------------------------------------
# Pose convention
# --------------------------------------------------------------------------

def _warp_reference(img, theta, out_size):
    """Bilinear warp, zeros outside: img (H, W, C) float, theta (2, 3) -> (out, out, C).

    Output pixel (i, j) has normalised position x_o = (2j + 1)/out - 1,
    y_o = (2i + 1)/out - 1 and samples the input at theta @ (x_o, y_o, 1),
    converted to pixels by p = ((u + 1) * size - 1) / 2.
    """
    H, W, C = img.shape
    out = np.zeros((out_size, out_size, C))
    for i in range(out_size):
        for j in range(out_size):
            xo, yo = (2 * j + 1) / out_size - 1, (2 * i + 1) / out_size - 1
            xi, yi = theta @ np.array([xo, yo, 1.0])
            px, py = ((xi + 1) * W - 1) / 2, ((yi + 1) * H - 1) / 2
            x0, y0 = int(np.floor(px)), int(np.floor(py))
            fx, fy = px - x0, py - y0
            for yy, xx, wgt in ((y0, x0, (1 - fx) * (1 - fy)), (y0, x0 + 1, fx * (1 - fy)),
                                (y0 + 1, x0, (1 - fx) * fy), (y0 + 1, x0 + 1, fx * fy)):
                if 0 <= yy < H and 0 <= xx < W:
                    out[i, j] += wgt * img[yy, xx]
    return out


def _posed_and_aligned(n=3):
    """Images with strong pose and their aligned twins (same nuisance otherwise)."""
    nu = Nuisance(max_rotation_deg=15.0, max_scale=0.15, max_shift=0.12, lighting=0.0, clutter=0.0,
                  noise=0.0, blur=0.0)
    gen = SyntheticFaces(seed=4, n_identities=10, nuisance=nu)
    ids = np.arange(n)
    posed, pose = gen.render(ids, 21, return_pose=True)
    aligned = gen.render(ids, 21, pose=np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)))
    return posed, pose, aligned


def test_pose_maps_the_canonical_frame_to_the_image():
    posed, pose, aligned = _posed_and_aligned()
    theta = pose_to_theta(pose)  # (3, 2, 3)
    flipped = theta.copy()
    flipped[:, 0, 1] *= -1  # the opposite rotation
    flipped[:, 1, 0] *= -1
    c = slice(30, 82)  # the face, away from the borders the warp leaves empty
    for k in range(len(pose)):
        ref = aligned[k, c, c].astype(np.float64)
        back = _warp_reference(posed[k].astype(np.float64), theta[k], S)
        wrong = _warp_reference(posed[k].astype(np.float64), flipped[k], S)
        err = np.abs(back[c, c] - ref).mean()
        assert err < 4.0
        assert err < 0.4 * np.abs(posed[k, c, c] - ref).mean()
        assert err < 0.4 * np.abs(wrong[c, c] - ref).mean()


def test_pose_matches_npface_warp_forward():
    ops = pytest.importorskip("npface.ops")
    posed, pose, aligned = _posed_and_aligned()
    img = posed.transpose(0, 3, 1, 2).astype(np.float64)  # (N, 3, S, S)
    out, _ = ops.warp_forward(img, pose_to_theta(pose), S, S)
    back = out.transpose(0, 2, 3, 1)
    c = slice(30, 82)
    for k in range(len(pose)):
        np.testing.assert_allclose(back[k], _warp_reference(posed[k].astype(np.float64),
                                                            pose_to_theta(pose)[k], S), atol=1e-9)
        assert np.abs(back[k, c, c] - aligned[k, c, c]).mean() < 4.0


def test_pose_to_theta():
    pose = np.array([[1.0, 0.0, 0.0, 0.0], [0.9, 0.2, -0.1, 0.05]])
    before = pose.copy()
    theta = pose_to_theta(pose)
    np.testing.assert_array_equal(pose, before)
    np.testing.assert_array_equal(theta[0], [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(theta[1], [[0.9, -0.2, -0.1], [0.2, 0.9, 0.05]])
    with pytest.raises(ValueError, match=r"pose must be a float array of shape \(N, 4\)"):
        pose_to_theta(np.zeros((2, 3)))


# --------------------------------------------------------------------------
# Primitive kernels against supersampled coverage
# --------------------------------------------------------------------------

_FLAT = (0.0,) * 10 + (1.0,)  # shading tuple; unused when shade = 0


def _supersampled(inside, size=40, k=16):
    """Coverage per pixel: fraction of k x k sample points (centred sub-pixels) inside."""
    o = (np.arange(k) + 0.5) / k - 0.5
    ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    cov = np.zeros((size, size))
    for dy in o:
        for dx in o:
            cov += inside(xs + dx, ys + dy)
    return cov / (k * k)


def _prim():
    """A primitive row: white, opaque, unshaded; geometry columns left to the caller."""
    p = np.zeros(syn._L)
    p[0:5] = [255.0, 255.0, 255.0, 1.0, 0.0]
    return p


def _drawn(draw, p, *extra):
    buf = np.zeros((40, 40, 3))
    before = p.copy()
    draw(buf, p, _FLAT, 1.0, *extra)
    np.testing.assert_array_equal(p, before)
    np.testing.assert_allclose(buf[..., 0], buf[..., 1])
    return buf[..., 0] / 255.0


def _check_coverage(got, want):
    assert np.abs(got - want).max() < 0.3
    assert np.abs(got - want).mean() < 0.02
    assert abs(got.sum() - want.sum()) < 0.02 * want.sum()


def test_ellipse_coverage():
    cx, cy, rx, ry, ang = 19.3, 20.6, 12.0, 6.5, 0.6
    p = _prim()
    p[[syn._E_CX, syn._E_CY, syn._E_RX, syn._E_RY, syn._E_ANG]] = cx, cy, rx, ry, ang
    c, s = np.cos(ang), np.sin(ang)

    def inside(x, y, r=0.0):
        u, v = c * (x - cx) + s * (y - cy), -s * (x - cx) + c * (y - cy)
        return (u / (rx + r)) ** 2 + (v / (ry + r)) ** 2 <= 1

    _check_coverage(_drawn(syn._draw_ellipse, p), _supersampled(inside))
    # clipped by a disc: the intersection
    q = p.copy()
    q[[syn._E_KCX, syn._E_KCY, syn._E_KRX, syn._E_KRY]] = 25.0, 20.0, 7.0, 7.0
    disc = lambda x, y: (x - 25.0) ** 2 + (y - 20.0) ** 2 <= 49.0  # noqa: E731
    _check_coverage(_drawn(syn._draw_ellipse, q), _supersampled(lambda x, y: inside(x, y) & disc(x, y)))
    # a ring of half-width 1.5 around the outline (approximately the band between
    # the ellipses grown and shrunk by 1.5)
    r = p.copy()
    r[syn._E_RING] = 1.5
    band = _supersampled(lambda x, y: inside(x, y, 1.5) & ~inside(x, y, -1.5))
    got = _drawn(syn._draw_ellipse, r)
    assert abs(got.sum() - band.sum()) < 0.05 * band.sum()
    assert np.abs(got - band).mean() < 0.05


def test_stroke_coverage():
    p0, p1, p2, rad = np.array([6.0, 30.0]), np.array([20.0, 2.0]), np.array([34.0, 28.0]), 2.5
    p = _prim()
    p[[syn._S_P0X, syn._S_P0Y, syn._S_P1X, syn._S_P1Y, syn._S_P2X, syn._S_P2Y, syn._S_RAD]] = (*p0, *p1, *p2, rad)
    t = np.linspace(0, 1, syn._BEZIER_SEGMENTS + 1)[:, None]
    curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2  # the drawn polyline's vertices

    def inside(x, y):
        best = np.full(x.shape, np.inf)
        for a, b in zip(curve[:-1], curve[1:]):
            e = b - a
            w = np.clip(((x - a[0]) * e[0] + (y - a[1]) * e[1]) / (e @ e), 0, 1)
            best = np.minimum(best, np.hypot(x - a[0] - w * e[0], y - a[1] - w * e[1]))
        return best <= rad

    _check_coverage(_drawn(syn._draw_stroke, p, np.empty((syn._BEZIER_SEGMENTS + 1, 2))), _supersampled(inside))


def test_quad_coverage_in_both_orientations():
    verts = np.array([[5.0, 8.0], [30.0, 4.5], [35.0, 33.0], [9.5, 28.0]])
    for order in (verts, verts[::-1]):
        p = _prim()
        p[syn._Q_X0:syn._Q_X0 + 8] = order.ravel()

        def inside(x, y):
            ok = np.ones(x.shape, bool)
            for a, b in zip(verts, np.roll(verts, -1, axis=0)):
                ok &= (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]) >= 0  # clockwise on screen
            return ok

        want = _supersampled(inside)
        d1, d2 = verts[2] - verts[0], verts[3] - verts[1]
        assert abs(want.sum() - 0.5 * abs(d1[0] * d2[1] - d1[1] * d2[0])) < 1.0  # the oracle's own check
        _check_coverage(_drawn(syn._draw_quad, p), want)


# --------------------------------------------------------------------------
# Batches and held-out sets
# --------------------------------------------------------------------------

def test_sample_batch_layout(faces):
    images, labels = faces.sample_batch(5, 3, np.random.default_rng(0))
    assert images.shape == (15, S, S, 3) and images.dtype == np.uint8
    assert labels.shape == (15,) and labels.dtype == np.int64
    groups = labels.reshape(5, 3)
    assert np.all(groups == groups[:, :1])  # identity-major
    assert len(np.unique(groups[:, 0])) == 5  # P distinct identities
    assert labels.min() >= 0 and labels.max() < faces.n_identities
    im2, lab2, pose = faces.sample_batch(5, 3, np.random.default_rng(0), return_pose=True)
    assert im2.tobytes() == images.tobytes() and np.array_equal(lab2, labels) and pose.shape == (15, 4)


def test_train_and_heldout_identities_are_disjoint(faces):
    train = faces.train_identities
    np.testing.assert_array_equal(train, np.arange(50))
    held = faces.heldout_identities(30)
    assert held.min() == HELDOUT_OFFSET and len(np.unique(held)) == 30
    assert not set(train.tolist()) & set(held.tolist())
    vs = faces.verification_set(n_pairs=20, n_identities=8, images_per_identity=3, n_folds=2)
    assert vs.labels.min() >= HELDOUT_OFFSET
    batch_labels = faces.sample_batch(50, 2, 0)[1]
    assert not set(batch_labels.tolist()) & set(vs.labels.tolist())
    # the offset bounds the training range for every seed
    with pytest.raises(ValueError, match="n_identities must be <= HELDOUT_OFFSET"):
        SyntheticFaces(0, HELDOUT_OFFSET + 1)


def test_verification_set_is_balanced_and_fixed(faces):
    vs = faces.verification_set(n_pairs=40, n_identities=16, images_per_identity=3, seed=1, n_folds=4)
    M = 16 * 3
    assert vs.images.shape == (M, S, S, 3) and vs.images.dtype == np.uint8
    assert vs.labels.shape == (M,) and np.array_equal(vs.labels, np.repeat(faces.heldout_identities(16), 3))
    assert vs.pairs.shape == (40, 2) and vs.pairs.dtype == np.int64
    assert vs.is_same.shape == (40,) and vs.is_same.dtype == bool and vs.is_same.sum() == 20
    assert vs.pairs.min() >= 0 and vs.pairs.max() < M
    assert np.all(vs.pairs[:, 0] != vs.pairs[:, 1])
    lab = vs.labels[vs.pairs]  # (40, 2)
    np.testing.assert_array_equal(lab[:, 0] == lab[:, 1], vs.is_same)
    assert len({tuple(sorted(p)) for p in vs.pairs.tolist()}) == 40  # no repeated pair
    for f in range(4):
        assert vs.is_same[vs.fold == f].sum() == 5 and (~vs.is_same[vs.fold == f]).sum() == 5
    people_of = [set(lab[vs.fold == f].ravel().tolist()) for f in range(4)]  # no identity in two folds
    assert all(not people_of[f] & people_of[g] for f in range(4) for g in range(f))
    again = faces.verification_set(n_pairs=40, n_identities=16, images_per_identity=3, seed=1, n_folds=4)
    for a, b in zip(vs, again):
        assert a.tobytes() == b.tobytes()
    other = faces.verification_set(n_pairs=40, n_identities=16, images_per_identity=3, seed=2, n_folds=4)
    assert other.images.tobytes() != vs.images.tobytes()


def test_verification_set_can_use_every_same_pair(faces):
    vs = faces.verification_set(n_pairs=6, n_identities=3, images_per_identity=2, n_folds=1)
    same = {tuple(sorted(p)) for p in vs.pairs[vs.is_same].tolist()}
    assert same == {(0, 1), (2, 3), (4, 5)}


# --------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------

def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        SyntheticFaces(seed=-1)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        SyntheticFaces(seed=1.5)
    with pytest.raises(ValueError, match="n_identities must be an integer >= 2"):
        SyntheticFaces(0, n_identities=-3)
    with pytest.raises(ValueError, match="nuisance must be a Nuisance"):
        SyntheticFaces(0, 10, nuisance={"noise": 0})
    with pytest.raises(ValueError, match="Nuisance.noise must be a finite number >= 0"):
        Nuisance(noise=-1.0)
    with pytest.raises(ValueError, match="Nuisance.lighting must be a finite number >= 0"):
        Nuisance(lighting=float("nan"))
    with pytest.raises(ValueError, match="Nuisance.max_scale must be < 1"):
        Nuisance(max_scale=1.0)
    with pytest.raises(ValueError, match="Nuisance.max_rotation_deg must be <= 180"):
        Nuisance(max_rotation_deg=200.0)


def test_bad_render_arguments(faces):
    with pytest.raises(ValueError, match="identities must be an integer array"):
        faces.render(np.array([1.0, 2.0]), 0)
    with pytest.raises(ValueError, match="identities must be an integer array"):
        faces.render(np.array([True, False]), 0)
    with pytest.raises(ValueError, match=r"identities must be a 1-d integer array of shape \(N,\)"):
        faces.render(np.zeros((2, 2), np.int64), 0)
    with pytest.raises(ValueError, match=r"identities must lie in \[0, 2\*\*62\)"):
        faces.render(np.array([3, -1]), 0)
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator or an integer seed"):
        faces.render(np.array([1]), "seed")
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator or an integer seed"):
        faces.render(np.array([1]), -4)
    with pytest.raises(ValueError, match=r"pose must be a float array of shape \(N, 4\) = \(2, 4\)"):
        faces.render(np.array([1, 2]), 0, pose=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"pose must be a float array of shape \(N, 4\)"):
        faces.render(np.array([1, 2]), 0, pose=np.ones((2, 4), np.int64))
    with pytest.raises(ValueError, match="pose must be finite with scale"):
        faces.render(np.array([1]), 0, pose=np.zeros((1, 4)))
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        faces.heldout_identities(0)


def test_bad_batch_arguments(faces):
    with pytest.raises(ValueError, match="images_per_identity must be an integer >= 2"):
        faces.sample_batch(4, 1, 0)
    with pytest.raises(ValueError, match="n_identities must be an integer >= 1"):
        faces.sample_batch(-2, 4, 0)
    with pytest.raises(ValueError, match="n_identities must be an integer >= 1"):
        faces.sample_batch(2.0, 4, 0)
    with pytest.raises(ValueError, match=r"n_identities \(P = 51\) must be <= the number of training identities"):
        faces.sample_batch(51, 2, 0)


def test_bad_verification_arguments(faces):
    with pytest.raises(ValueError, match="images_per_identity must be an integer >= 2"):
        faces.verification_set(n_pairs=20, n_identities=5, images_per_identity=1)
    with pytest.raises(ValueError, match="n_pairs must be an integer >= 1"):
        faces.verification_set(n_pairs=-20)
    with pytest.raises(ValueError, match="n_identities must be an integer >= 2"):
        faces.verification_set(n_pairs=20, n_identities=1)
    with pytest.raises(ValueError, match=r"n_pairs must be a multiple of 2 \* n_folds = 20"):
        faces.verification_set(n_pairs=30, n_identities=5, n_folds=10)
    with pytest.raises(ValueError, match=r"n_identities must be at least 2 \* n_folds = 20"):
        faces.verification_set(n_pairs=20, n_identities=5, n_folds=10)
    with pytest.raises(ValueError, match="4 same pairs per fold requested but 2 identities per fold x 2 images give only 2"):
        faces.verification_set(n_pairs=8, n_identities=2, images_per_identity=2, n_folds=1)
    with pytest.raises(ValueError, match="different pairs per fold requested"):
        faces.verification_set(n_pairs=18, n_identities=2, images_per_identity=4, n_folds=1)
