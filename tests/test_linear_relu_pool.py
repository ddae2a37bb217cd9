"""linear, relu and maxpool2d: forward against the reference, backward against
central differences, hand-computed cases, kinks avoided on purpose."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels.activation import relu_backward_reference, relu_forward_reference
from kernels.linear import linear_backward_reference, linear_forward_reference
from kernels.pool import maxpool2d_backward_reference, maxpool2d_forward_reference
from npface import ops
from tests.gradcheck import STEP, assert_gradient, assert_unchanged, numerical_gradient, snapshot

seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from([np.float32, np.float64])


# --------------------------------------------------------------------- linear

@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), seeds, dtypes)
def test_linear_matches_reference(N, D, F, seed, dtype):
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((N, D), (F, D), (F,)))
    before = snapshot(x, w, b)
    out, cache = ops.linear_forward(x, w, b)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, linear_forward_reference(x, w, b), **tol)
    dout = rng.standard_normal(out.shape).astype(dtype)
    for g, r in zip(ops.linear_backward(dout, cache), linear_backward_reference(dout, x, w)):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, r, **tol)
    assert_unchanged(before, [x, w, b])


@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 4), seeds)
def test_linear_gradients(N, D, F, seed):
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s) for s in ((N, D), (F, D), (F,)))
    out, cache = ops.linear_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = ops.linear_backward(dout, cache)
    f = lambda: ops.linear_forward(x, w, b)[0]  # noqa: E731
    for g, a, name in ((dx, x, "x"), (dw, w, "w"), (db, b, "b")):
        assert_gradient(g, numerical_gradient(f, a, dout), name)


@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), seeds, dtypes)
def test_linear_fused_relu_equals_linear_then_relu(N, D, F, seed, dtype):
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((N, D), (F, D), (F,)))
    fused, cache = ops.linear_forward(x, w, b, relu=True)
    pre, c1 = ops.linear_forward(x, w, b)
    post, c2 = ops.relu_forward(pre)
    np.testing.assert_array_equal(fused, post)
    dout = rng.standard_normal(fused.shape).astype(dtype)
    for a, r in zip(ops.linear_backward(dout, cache), ops.linear_backward(ops.relu_backward(dout, c2), c1)):
        np.testing.assert_array_equal(a, r)


def test_linear_hand_computed():
    out, _ = ops.linear_forward(np.array([[1.0, 2.0]]), np.array([[3.0, 4.0], [5.0, 6.0]]), np.array([1.0, -1.0]))
    np.testing.assert_array_equal(out, [[12.0, 16.0]])


# ----------------------------------------------------------------------- relu

@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), seeds, dtypes)
def test_relu_matches_reference_and_gradient(shape, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x[np.abs(x) < 10 * STEP] = 0.5                       # stay off the kink
    x = x.astype(dtype)
    before = snapshot(x)
    out, cache = ops.relu_forward(x)
    np.testing.assert_array_equal(out, relu_forward_reference(x))
    dout = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(ops.relu_backward(dout, cache), relu_backward_reference(dout, x))
    assert_unchanged(before, [x])
    if dtype == np.float64:
        assert_gradient(ops.relu_backward(dout, cache), numerical_gradient(lambda: ops.relu_forward(x)[0], x, dout), "x")


def test_relu_hand_computed_and_kink_convention():
    out, cache = ops.relu_forward(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(out, [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(ops.relu_backward(np.full(3, 5.0), cache), [0.0, 0.0, 5.0])  # 0 at x = 0


def test_relu_keeps_the_shape_of_a_scalar():
    out, cache = ops.relu_forward(np.array(-2.0))
    assert out.shape == () and ops.relu_backward(np.array(1.0), cache).shape == ()


def test_relu_keeps_nan_visible():
    out, _ = ops.relu_forward(np.array([np.nan, -1.0], dtype=np.float32))
    assert np.isnan(out[0]) and out[1] == 0


# -------------------------------------------------------------------- maxpool

@st.composite
def pool_case(draw):
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    size, stride = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(size, 7)), draw(st.integers(size, 7))
    rng = np.random.default_rng(draw(seeds))
    # distinct values at least 0.01 apart: no ties, and central differences
    # never change which element wins a window
    x = rng.permutation(N * C * H * W).reshape(N, C, H, W) * 0.01 + rng.uniform(-1, 1)
    return x, size, stride, rng


@given(pool_case(), dtypes)
def test_maxpool_matches_reference(case, dtype):
    x, size, stride, rng = case
    x = x.astype(dtype)
    before = snapshot(x)
    out, cache = ops.maxpool2d_forward(x, size, stride)
    np.testing.assert_array_equal(out, maxpool2d_forward_reference(x, size, stride))
    dout = rng.standard_normal(out.shape).astype(dtype)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(ops.maxpool2d_backward(dout, cache), maxpool2d_backward_reference(dout, x, size, stride), **tol)
    assert_unchanged(before, [x])


@given(pool_case())
def test_maxpool_gradient(case):
    x, size, stride, rng = case
    out, cache = ops.maxpool2d_forward(x, size, stride)
    dout = rng.standard_normal(out.shape)
    assert_gradient(ops.maxpool2d_backward(dout, cache),
                    numerical_gradient(lambda: ops.maxpool2d_forward(x, size, stride)[0], x, dout), "x")


def test_maxpool_hand_computed_and_tie_rule():
    x = np.array([[[[1.0, 2.0, 7.0, 7.0], [3.0, 4.0, 7.0, 7.0]]]])
    out, cache = ops.maxpool2d_forward(x)
    np.testing.assert_array_equal(out, [[[[4.0, 7.0]]]])
    dx = ops.maxpool2d_backward(np.array([[[[1.0, 2.0]]]]), cache)
    # the 4 wins its window; of the four tied 7s the first in row-major order takes the gradient
    np.testing.assert_array_equal(dx, [[[[0.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 0.0]]]])


def test_maxpool_odd_size_drops_last_row_and_column():
    out, _ = ops.maxpool2d_forward(np.arange(25.0).reshape(1, 1, 5, 5))
    np.testing.assert_array_equal(out[0, 0], [[6.0, 8.0], [16.0, 18.0]])


def test_maxpool_overlapping_windows_accumulate():
    x = np.array([[[[0.0, 5.0, 1.0], [0.0, 0.0, 0.0]]]])
    out, cache = ops.maxpool2d_forward(x, size=2, stride=1)   # both windows hold the 5
    np.testing.assert_array_equal(out, [[[[5.0, 5.0]]]])
    np.testing.assert_array_equal(ops.maxpool2d_backward(np.ones((1, 1, 1, 2)), cache)[0, 0, 0], [0.0, 2.0, 0.0])


@pytest.mark.parametrize("x", [np.zeros((1, 1, 1, 3)), np.zeros((1, 1, 3, 1))])
def test_maxpool_window_larger_than_image_is_an_error(x):
    with pytest.raises(ValueError, match="at least 2x2"):
        ops.maxpool2d_forward(x)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(0, 1),
       st.integers(0, 1), st.integers(1, 3), seeds, dtypes)
def test_maxpool_2x2_fast_path_keeps_the_tie_rule(N, C, Ho, Wo, extra_h, extra_w, stride, seed, dtype):
    # few distinct values: most windows have ties, which must go to the first maximum; odd sizes leave
    # a row or column in no stride-2 window (its gradient is 0); strides 2 and 1 have loops of their own
    # in the 2x2 kernel, 3 takes its loop for any stride
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (N, C, 2 * Ho + extra_h, 2 * Wo + extra_w)).astype(dtype)
    out, cache = ops.maxpool2d_forward(x, 2, stride)
    np.testing.assert_array_equal(out, maxpool2d_forward_reference(x, 2, stride))
    dout = rng.standard_normal(out.shape).astype(dtype)
    np.testing.assert_array_equal(ops.maxpool2d_backward(dout, cache),
                                  maxpool2d_backward_reference(dout, x, 2, stride))


@pytest.mark.parametrize("size, stride", [(2, 2), (2, 1), (2, 3), (3, 2)])
def test_maxpool_nan_is_the_maximum_and_the_first_nan_wins(size, stride):
    """As in np.max and np.argmax (the references): a NaN anywhere in a window is its maximum, and the
    gradient goes to the first NaN, so a NaN in the activations is not dropped on its way to the loss."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (1, 2, 7, 7)).astype(np.float64)
    x[rng.random(x.shape) < 0.2] = np.nan
    out, cache = ops.maxpool2d_forward(x, size, stride)
    np.testing.assert_array_equal(out, maxpool2d_forward_reference(x, size, stride))   # NaNs in equal places
    dout = rng.standard_normal(out.shape)
    np.testing.assert_array_equal(ops.maxpool2d_backward(dout, cache),
                                  maxpool2d_backward_reference(dout, x, size, stride))
