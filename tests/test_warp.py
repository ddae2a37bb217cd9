"""warp_forward / warp_backward: bilinear affine warp, ONNX GridSample convention."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kernels.warp import _sample_points_reference, warp_backward_reference, warp_forward_reference
from npface import ops
from tests.gradcheck import assert_gradient, assert_unchanged, numerical_gradient, snapshot

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@st.composite
def warp_case(draw, margin=1e-3):
    """Random images and near-identity transforms (rotation, scale, shear, shift),
    with sample points kept at least ``margin`` pixels off the integer grid lines,
    where the bilinear surface has creases."""
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    Ho, Wo = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    img = rng.standard_normal((N, C, H, W))
    theta = IDENTITY + draw(st.sampled_from([0.05, 0.3, 0.8])) * rng.standard_normal((N, 2, 3))
    ix, iy = _sample_points_reference(theta, H, W, Ho, Wo)
    off_grid = lambda v: np.abs(v - np.round(v)).min() > margin  # noqa: E731
    assume(off_grid(ix) and off_grid(iy))
    return img, theta, Ho, Wo, rng


@given(warp_case(), st.sampled_from([np.float32, np.float64]))
def test_forward_and_backward_match_reference(case, dtype):
    img, theta, Ho, Wo, rng = case
    img, theta = img.astype(dtype), theta.astype(dtype)
    before = snapshot(img, theta)
    out, cache = ops.warp_forward(img, theta, Ho, Wo)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out, warp_forward_reference(img, theta, Ho, Wo), **tol)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dimg, dtheta = ops.warp_backward(dout, cache)
    rimg, rtheta = warp_backward_reference(dout, img, theta)
    np.testing.assert_allclose(dimg, rimg, **tol)
    np.testing.assert_allclose(dtheta, rtheta, **(dict(rtol=1e-3, atol=1e-3) if dtype == np.float32 else tol))
    assert_unchanged(before, [img, theta])


@given(warp_case())
def test_backward_matches_central_differences(case):
    img, theta, Ho, Wo, rng = case
    out, cache = ops.warp_forward(img, theta, Ho, Wo)
    dout = rng.standard_normal(out.shape)
    dimg, dtheta = ops.warp_backward(dout, cache)
    f = lambda: ops.warp_forward(img, theta, Ho, Wo)[0]  # noqa: E731
    assert_gradient(dimg, numerical_gradient(f, img, dout), "img")
    assert_gradient(dtheta, numerical_gradient(f, theta, dout), "theta")


def test_identity_copies_the_image():
    img = np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(np.float32)
    out, _ = ops.warp_forward(img, np.tile(IDENTITY, (2, 1, 1)).astype(np.float32), 5, 7)
    np.testing.assert_array_equal(out, img)


def test_shift_by_one_pixel():
    # tx = 2/W moves the sample point one pixel right: out[..., j] = img[..., j + 1], zero past the edge.
    img = np.arange(12.0).reshape(1, 1, 3, 4)
    theta = IDENTITY.copy()[None]
    theta[0, 0, 2] = 2.0 / 4
    out, _ = ops.warp_forward(img, theta, 3, 4)
    expected = np.concatenate([img[..., 1:], np.zeros((1, 1, 3, 1))], axis=-1)
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_half_turn_flips_both_axes():
    img = np.arange(12.0).reshape(1, 1, 3, 4)
    out, _ = ops.warp_forward(img, -IDENTITY[None], 3, 4)
    np.testing.assert_allclose(out, img[..., ::-1, ::-1], atol=1e-12)


def test_resize_by_half_averages_2x2_blocks():
    # Output pixel i of 2 samples input position 2i + 0.5: the mean of a 2x2 block.
    img = np.arange(16.0).reshape(1, 1, 4, 4)
    out, _ = ops.warp_forward(img, IDENTITY[None], 2, 2)
    np.testing.assert_allclose(out[0, 0], img[0, 0].reshape(2, 2, 2, 2).mean(axis=(1, 3)), atol=1e-12)


def test_far_outside_is_zero_with_zero_gradient():
    img = np.ones((1, 1, 3, 3))
    theta = IDENTITY.copy()[None]
    theta[0, :, 2] = 10.0
    out, cache = ops.warp_forward(img, theta, 2, 2)
    assert not out.any()
    dimg, dtheta = ops.warp_backward(np.ones_like(out), cache)
    assert not dimg.any() and not dtheta.any()


def test_theta_batch_must_match_images():
    with pytest.raises(ValueError, match=r"theta must have shape \(N, 2, 3\) = \(2, 2, 3\)"):
        ops.warp_forward(np.zeros((2, 1, 4, 4)), np.zeros((1, 2, 3)), 4, 4)
