"""conv2d_forward / conv2d_backward: the general K x K path and the 1x1 fast path."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kernels.conv import (col2im_add, conv2d_backward_chunk, conv2d_backward_reference, conv2d_forward_chunk,
                          conv2d_forward_reference, im2col, im2col_scratch_size)
from npface import ops
from tests.gradcheck import assert_gradient, assert_unchanged, numerical_gradient, snapshot


@st.composite
def conv_case(draw):
    """Small random convolutions, including odd ones: 1x1 images, stride > K, pad > K/2."""
    N, C, F = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    K, stride, pad = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(0, 3))
    assume((H + 2 * pad - K) // stride + 1 >= 1 and (W + 2 * pad - K) // stride + 1 >= 1)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C, K, K))
    b = rng.standard_normal(F)
    return x, w, b, stride, pad, rng


@given(conv_case(), st.sampled_from([np.float32, np.float64]))
def test_forward_and_backward_match_reference(case, dtype):
    x, w, b, stride, pad, rng = case
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    before = snapshot(x, w, b)
    out, cache = ops.conv2d_forward(x, w, b, stride, pad)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, conv2d_forward_reference(x, w, b, stride, pad), **tol)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dout_before = snapshot(dout)
    grads = ops.conv2d_backward(dout, cache)
    for g, r, name in zip(grads, conv2d_backward_reference(dout, x, w, stride, pad), ("dx", "dw", "db")):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, r, err_msg=name, **tol)
    assert_unchanged(before + dout_before, [x, w, b, dout])


@given(conv_case())
def test_backward_matches_central_differences(case):
    x, w, b, stride, pad, rng = case
    out, cache = ops.conv2d_forward(x, w, b, stride, pad)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = ops.conv2d_backward(dout, cache)
    f = lambda: ops.conv2d_forward(x, w, b, stride, pad)[0]  # noqa: E731
    assert_gradient(dx, numerical_gradient(f, x, dout), "x")
    assert_gradient(dw, numerical_gradient(f, w, dout), "w")
    assert_gradient(db, numerical_gradient(f, b, dout), "b")


def test_1x1_fast_path_matches_reference_at_nin_shape():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 5, 5)).astype(np.float32)
    w = rng.standard_normal((6, 8, 1, 1)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    out, cache = ops.conv2d_forward(x, w, b)
    np.testing.assert_allclose(out, conv2d_forward_reference(x, w, b, 1, 0), rtol=1e-5, atol=1e-5)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    for g, r in zip(ops.conv2d_backward(dout, cache), conv2d_backward_reference(dout, x, w, 1, 0)):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_hand_computed_valid_convolution():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    out, _ = ops.conv2d_forward(x, np.ones((1, 1, 2, 2)), np.array([1.0]))
    np.testing.assert_array_equal(out[0, 0], [[0 + 1 + 3 + 4 + 1, 1 + 2 + 4 + 5 + 1], [3 + 4 + 6 + 7 + 1, 4 + 5 + 7 + 8 + 1]])


def test_hand_computed_padding_covers_whole_image():
    # With pad 1, every 3x3 window over a 2x2 image contains all four pixels.
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out, cache = ops.conv2d_forward(x, np.ones((1, 1, 3, 3)), np.array([0.5]), stride=1, pad=1)
    np.testing.assert_array_equal(out[0, 0], np.full((2, 2), 10.5))
    dx, dw, db = ops.conv2d_backward(np.ones((1, 1, 2, 2)), cache)
    np.testing.assert_array_equal(dx[0, 0], np.full((2, 2), 4.0))  # each pixel is in all 4 windows
    np.testing.assert_array_equal(db, [4.0])


def test_hand_computed_stride_larger_than_kernel_skips_pixels():
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    out, _ = ops.conv2d_forward(x, np.full((1, 1, 1, 1), 2.0), np.zeros(1), stride=3)
    np.testing.assert_array_equal(out[0, 0], [[0.0, 6.0], [30.0, 36.0]])


def test_one_pixel_image_with_padding():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 1, 1))
    w = rng.standard_normal((3, 2, 3, 3))
    out, _ = ops.conv2d_forward(x, w, np.zeros(3), pad=1)
    np.testing.assert_allclose(out[0, :, 0, 0], w[:, :, 1, 1] @ x[0, :, 0, 0])


def test_non_contiguous_inputs_work():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 10, 9))[:, :, ::2, :]           # strided view
    w = np.ascontiguousarray(rng.standard_normal((3, 3, 4, 4)).transpose(1, 0, 3, 2))[:, :, :3, :3]
    b = rng.standard_normal(8)[::3]
    assert not (x.flags.c_contiguous or w.flags.c_contiguous or b.flags.c_contiguous)
    out, _ = ops.conv2d_forward(x, w, b, stride=2, pad=1)
    np.testing.assert_allclose(out, conv2d_forward_reference(x, w, b, 2, 1), rtol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_result_does_not_depend_on_thread_count_beyond_rounding(threads):
    from npface.threads import limit, max_threads
    if threads > max_threads():
        pytest.skip("needs more Numba threads")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    with limit(threads):
        out, cache = ops.conv2d_forward(x, w, b, 1, 1)
        dx, dw, db = ops.conv2d_backward(np.ones_like(out), cache)
    rdx, rdw, rdb = conv2d_backward_reference(np.ones_like(out), x, w, 1, 1)
    np.testing.assert_allclose(dw, rdw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)


@given(conv_case(), st.sampled_from([np.float32, np.float64]))
def test_fused_relu_equals_conv_then_relu(case, dtype):
    x, w, b, stride, pad, rng = case
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    fused, cache = ops.conv2d_forward(x, w, b, stride, pad, relu=True)
    pre, c1 = ops.conv2d_forward(x, w, b, stride, pad)
    post, c2 = ops.relu_forward(pre)
    np.testing.assert_array_equal(fused, post)
    dout = rng.standard_normal(fused.shape).astype(dtype)
    for a, b_ in zip(ops.conv2d_backward(dout, cache), ops.conv2d_backward(ops.relu_backward(dout, c2), c1)):
        np.testing.assert_array_equal(a, b_)


def im2col_definition(x, K, stride, pad):
    """cols (C*K*K, Ho*Wo) straight from the definition: row (c, p, q), column (i, j) reads xpad."""
    C, H, W = x.shape
    xpad = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = (H + 2 * pad - K) // stride + 1, (W + 2 * pad - K) // stride + 1
    cols = np.empty((C, K, K, Ho, Wo), x.dtype)
    for p in range(K):
        for q in range(K):
            cols[:, p, q] = xpad[:, p:p + stride * Ho:stride, q:q + stride * Wo:stride]
    return cols.reshape(C * K * K, Ho * Wo)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C, H, W, K, stride, pad", [
    (2, 20, 20, 5, 1, 2),                    # stride 1, rows >= kernels.conv.WIDE_ROW: from polyphase planes
    (2, 17, 13, 3, 1, 1), (1, 16, 14, 3, 1, 0), (1, 16, 13, 3, 1, 0),   # rows 13, 12 (WIDE_ROW) and 11 wide
    (3, 19, 23, 5, 2, 2), (1, 40, 41, 4, 3, 3),   # strided and wide: 4 and 9 phases (rows 12 and 15 wide)
    (2, 28, 27, 3, 2, 1), (2, 9, 9, 3, 2, 1),     # strided, an odd width; strided and narrow (a gather)
    (2, 7, 7, 3, 1, 1), (1, 6, 5, 4, 3, 3),       # short rows, and a field that hangs over two edges
])
def test_im2col_both_ways_and_col2im_match_the_definition(C, H, W, K, stride, pad, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((C, H, W)).astype(dtype)
    want = im2col_definition(x, K, stride, pad)
    col0 = 3                                             # written into a block of a wider matrix
    cols = np.full((want.shape[0], col0 + want.shape[1] + 2), np.nan, dtype)
    scratch = np.full(im2col_scratch_size(H, W, K, stride, pad), np.nan, dtype)
    before = snapshot(x)
    im2col(x, K, stride, pad, cols, col0, scratch)
    assert_unchanged(before, [x])
    np.testing.assert_array_equal(cols[:, col0:col0 + want.shape[1]], want)
    assert np.isnan(cols[:, :col0]).all() and np.isnan(cols[:, col0 + want.shape[1]:]).all()

    # col2im_add is its adjoint: <im2col(x), D> = <x, col2im(D)>, and it adds to what dx already holds
    dcols = np.full_like(cols, np.nan)
    dcols[:, col0:col0 + want.shape[1]] = rng.standard_normal(want.shape)
    dx = np.ones_like(x)
    before = snapshot(dcols)
    col2im_add(dcols, K, stride, pad, dx, col0, scratch)
    assert_unchanged(before, [dcols])
    D = dcols[:, col0:col0 + want.shape[1]].astype(np.float64)
    np.testing.assert_allclose(((dx - 1.0).astype(np.float64) * x).sum(), (want * D).sum(), rtol=1e-5)
    expected = np.zeros((C, H + 2 * pad, W + 2 * pad))                   # col2im by the definition, padded
    Ho, Wo = (H + 2 * pad - K) // stride + 1, (W + 2 * pad - K) // stride + 1
    for p in range(K):
        for q in range(K):
            expected[:, p:p + stride * Ho:stride, q:q + stride * Wo:stride] += D.reshape(C, K, K, Ho, Wo)[:, p, q]
    np.testing.assert_allclose(dx - 1.0, expected[:, pad:pad + H, pad:pad + W], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# The chunk kernels (the compiled plan's narrow layers): several samples, one product
# --------------------------------------------------------------------------

def chunk_conv(x, w, b, stride, pad, first, step, dout=None):
    """x (N, C, H, W) placed in flat slot rows (with a gap before and after), the samples first,
    first + step, ... run through conv2d_forward_chunk -> their outputs (nb, F, Ho, Wo), and with dout
    (nb, F, Ho, Wo) through conv2d_backward_chunk -> (dx, dw, db) of those samples as well."""
    N, C, H, W = x.shape
    F, _, K, _ = w.shape
    Ho, Wo = (H + 2 * pad - K) // stride + 1, (W + 2 * pad - K) // stride + 1
    nb = len(range(first, N, step))
    x_off, out_off = 2, 3 + C * H * W
    rows = np.full((N, out_off + F * Ho * Wo + 1), np.nan, x.dtype)
    rows[:, x_off:x_off + C * H * W] = x.reshape(N, -1)
    cols = np.zeros(C * K * K * nb * Ho * Wo + im2col_scratch_size(H, W, K, stride, pad) + 3, x.dtype)
    prod = np.zeros(F * nb * Ho * Wo + 3, x.dtype)
    w2 = w.reshape(F, -1)
    conv2d_forward_chunk(rows, first, step, nb, x_off, C, H, W, w2, b, K, stride, pad, False, False, cols, prod,
                         out_off)
    out = rows[first::step, out_off:out_off + F * Ho * Wo].reshape(nb, F, Ho, Wo).copy()
    if dout is None:
        return out
    douts = np.full((nb + 1, F * Ho * Wo + 2), np.nan, x.dtype)
    douts[:nb, :F * Ho * Wo] = dout.reshape(nb, -1)
    dxs = np.full((nb, C * H * W + 1), np.nan, x.dtype)
    dw, db = np.zeros_like(w2), np.zeros_like(b)
    conv2d_backward_chunk(douts, rows, first, step, nb, x_off, C, H, W, np.ascontiguousarray(w2.T), K, stride, pad,
                          cols, np.zeros_like(cols), np.zeros_like(prod), np.zeros_like(w2), dw, db, True, dxs)
    return out, dxs[:, :C * H * W].reshape(nb, C, H, W), dw.reshape(w.shape), db


@given(conv_case(), st.integers(0, 2), st.integers(1, 2), st.sampled_from([np.float32, np.float64]))
def test_chunk_kernels_match_reference(case, first, step, dtype):
    x, w, b, stride, pad, rng = case
    assume(first < len(x))
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    picked = x[first::step]
    want = conv2d_forward_reference(picked, w, b, stride, pad)
    dout = rng.standard_normal(want.shape).astype(dtype)
    out, dx, dw, db = chunk_conv(x, w, b, stride, pad, first, step, dout)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out, want, **tol)
    for g, r, name in zip((dx, dw, db), conv2d_backward_reference(dout, picked, w, stride, pad), ("dx", "dw", "db")):
        np.testing.assert_allclose(g, r, err_msg=name, **tol)


@pytest.mark.parametrize("first", [0, 2])
def test_chunk_of_one_sample_writes_its_product_straight_to_its_output(first):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((3, 4, 7, 7)), rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5)
    out = chunk_conv(x, w, b, 1, 1, first, 3)                        # a chunk of one: sample `first` alone
    np.testing.assert_allclose(out, conv2d_forward_reference(x[first:first + 1], w, b, 1, 1), rtol=1e-12, atol=1e-12)


@given(conv_case())
def test_chunk_backward_matches_central_differences(case):
    x, w, b, stride, pad, rng = case
    out = chunk_conv(x, w, b, stride, pad, 0, 1)
    dout = rng.standard_normal(out.shape)
    _, dx, dw, db = chunk_conv(x, w, b, stride, pad, 0, 1, dout)
    f = lambda: chunk_conv(x, w, b, stride, pad, 0, 1)  # noqa: E731
    assert_gradient(dx, numerical_gradient(f, x, dout), "x")
    assert_gradient(dw, numerical_gradient(f, w, dout), "w")
    assert_gradient(db, numerical_gradient(f, b, dout), "b")
