"""kernels.tile: the register-tiled float32 product against its float64 reference, the convolution on it
(kernels.conv.conv2d_forward_tiled), and where the plan uses them."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels import tile
from kernels.blas import tiles_bias

PANEL = tile.PANEL
SENTINEL = np.float32(-12345.5)       # what the array around out holds (finite: a stray store shows either way)


def padded(rng, rows, cols, pad_rows, pad_cols):
    """A (rows, cols) float32 view into a bigger NaN-filled array (rows ``cols + pad_cols`` apart), and it."""
    big = np.full((rows + 2 * pad_rows, cols + pad_cols), np.nan, np.float32)
    view = big[pad_rows:pad_rows + rows, :cols]
    view[...] = rng.standard_normal((rows, cols)).astype(np.float32)
    return view, big


def gathered_rows(rng, K, N, pad):
    """A flat NaN-filled float32 array b with K random rows of N values at random, possibly overlapping,
    offsets rows_b (K,) int64 (B[k] = b[rows_b[k]:rows_b[k] + N]: the NaN between them would spread into
    out if read), and B (K, N) itself."""
    size = N + pad + 3 * K
    b = np.full(size, np.nan, np.float32)
    rows_b = np.sort(rng.integers(0, size - N + 1, K)).astype(np.int64) if K else np.zeros(0, np.int64)
    for start in rows_b:
        b[start:start + N] = rng.standard_normal(N).astype(np.float32)
    B = np.stack([b[start:start + N] for start in rows_b]) if K else np.zeros((0, N), np.float32)
    return b, rows_b, B


@given(st.integers(1, 13), st.one_of(st.integers(0, 40), st.integers(tile.KC - 3, 2 * tile.KC + 5)),
       st.integers(1, 2 * PANEL + 5), st.integers(0, 3), st.integers(0, 9), st.booleans(), st.booleans(),
       st.integers(0, 2 ** 16))
def test_the_tiles_equal_the_float64_product_and_touch_nothing_else(M, K, N, pad_rows, pad_cols, has_bias, relu, seed):
    """Every edge: rows not a multiple of 4, columns not a multiple of the panel or of a vector, K = 0, K
    over one or two blocks of KC (sums added into out), a and out views into bigger arrays, B's rows at
    any offsets of a flat array (the NaN around a and B's rows would spread into out if read; the
    sentinel around out must stay)."""
    rng = np.random.default_rng(seed)
    a, _ = padded(rng, M, K, pad_rows, pad_cols)
    b, rows_b, B = gathered_rows(rng, K, N, pad_cols)
    out, out_big = padded(rng, M, N, pad_rows, pad_cols)
    out_big[...] = SENTINEL
    bias = rng.standard_normal(M).astype(np.float32)
    a0, b0, rows0, bias0 = a.copy(), b.copy(), rows_b.copy(), bias.copy()
    lda, ldo = a.strides[0] // 4, out.strides[0] // 4
    tile.tiled_matmul(a, lda, b, rows_b, out, ldo, bias if has_bias else bias[:0], has_bias, relu)
    want = tile.tiled_matmul_reference(a, b, rows_b, N, bias if has_bias else None, relu)
    np.testing.assert_allclose(want, tile.tiled_matmul_reference(a, B.ravel(), np.arange(K) * N, N,
                                                                 bias if has_bias else None, relu))
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * (1 + np.sqrt(K)))
    outside = np.ones(out_big.shape, bool)
    outside[pad_rows:pad_rows + M, :N] = False
    assert (out_big[outside] == SENTINEL).all()                             # nothing written outside out
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)
    np.testing.assert_array_equal(rows_b, rows0)
    np.testing.assert_array_equal(bias, bias0)


def test_matrix_rows_are_a_matrix_rows():
    rows_b = np.empty(5, np.int64)
    tile.matrix_rows(5, 7, rows_b)
    np.testing.assert_array_equal(rows_b, [0, 7, 14, 21, 28])


def test_relu_keeps_nan_and_clips_negative_zero_sums():
    a = np.array([[1.0], [np.nan], [-1.0], [0.0]], np.float32)             # (4, 1)
    b = np.ones(5, np.float32)
    out = np.empty((4, 5), np.float32)
    tile.tiled_matmul(a, 1, b, np.zeros(1, np.int64), out, 5, np.zeros(4, np.float32), True, True)
    assert (out[0] == 1).all() and np.isnan(out[1]).all() and (out[2] == 0).all() and (out[3] == 0).all()


@pytest.mark.parametrize("relu", [False, True])
def test_tiles_bias_is_the_tiles_product_and_declines_what_they_cannot_read(relu):
    """conv6's product (128 x 1152 x 16) through the compiled entry point: exactly the tiles' result,
    within float32 rounding of the float64 product; a strided bias, a float64 product or a transposed
    a are declined (False) with out left as it was."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((128, 1152)).astype(np.float32)
    b = rng.standard_normal(1152 * 16).astype(np.float32)
    rows_b = np.arange(1152, dtype=np.int64) * 16
    bias = rng.standard_normal(128).astype(np.float32)
    by_tiles, got = np.empty((128, 16), np.float32), np.empty((128, 16), np.float32)
    tile.tiled_matmul(a, 1152, b, rows_b, by_tiles, 16, bias, True, relu)
    assert tiles_bias(a, b, rows_b, bias, relu, got)
    np.testing.assert_array_equal(got, by_tiles)
    np.testing.assert_allclose(got, tile.tiled_matmul_reference(a, b, rows_b, 16, bias, relu), rtol=1e-5, atol=2e-4)
    untouched = np.full((128, 16), SENTINEL, np.float32)
    strided_bias = np.repeat(bias, 2)[::2]
    assert not tiles_bias(a, b, rows_b, strided_bias, relu, untouched)
    assert not tiles_bias(np.asfortranarray(a), b, rows_b, bias, relu, untouched)
    assert (untouched == SENTINEL).all()
    out64 = np.full((128, 16), 7.0)
    assert not tiles_bias(a.astype(np.float64), b.astype(np.float64), rows_b, bias.astype(np.float64), relu, out64)
    assert (out64 == 7.0).all()


@pytest.mark.skipif(not tile.AVAILABLE, reason="this processor has no AVX2/FMA: every convolution goes to the BLAS")
def test_which_of_table_2s_convolutions_the_tiles_take():
    from kernels.conv import TILED_DECLINED, TILED_IM2COL, TILED_PLANES, tiled_way
    from npface.architecture import Conv, alignment_shapes, signature_shapes
    names = {TILED_PLANES: "planes", TILED_IM2COL: "im2col", TILED_DECLINED: "BLAS"}
    taken = {}
    for s in alignment_shapes() + signature_shapes():
        layer = s.layer
        if not isinstance(layer, Conv) or layer.kernel == 1:
            continue
        taken[layer.name] = names[tiled_way(*s.input, layer.kernel, layer.stride, layer.pad)]
    # conv6: 4 x 5 wide columns would take two vectors for the 4 x 4 outputs' one
    assert taken == {**{name: "planes" for name in taken if name != "conv6"}, "conv6": "im2col"}
    assert len(taken) == 11
    assert not tile.fits(3136, 75)             # a short sum: from an im2col matrix, the BLAS was faster
    assert not tile.fits(49, 864)              # 7 x 7 outputs leave too many lanes idle


conv_shapes = st.tuples(st.integers(1, 40), st.integers(1, 20), st.integers(1, 20), st.integers(1, 9),
                        st.integers(1, 5), st.integers(1, 2), st.integers(0, 2))


def test_the_planes_rows_stay_inside_the_planes():
    """Over the wide grid, row k of B is read from rows[k] to rows[k] + Ho*Wh - 1: never past the planes and
    the (K-1)//stride zeros conv2d_forward_tiled keeps after them, for every layer shape up to 24 x 24."""
    from kernels.conv import plane_rows
    for H in range(1, 25):
        for W in range(1, 25):
            for K in range(1, 6):
                for stride in (1, 2, 3):
                    for pad in range(3):
                        if H + 2 * pad < K or W + 2 * pad < K:
                            continue
                        Ho = (H + 2 * pad - K) // stride + 1
                        Hh, Wh = -(-(H + 2 * pad) // stride), -(-(W + 2 * pad) // stride)
                        rows = np.empty(2 * K * K, np.int64)
                        plane_rows(2, K, stride, Hh, Wh, rows)
                        assert rows.max() + Ho * Wh <= 2 * stride * stride * Hh * Wh + (K - 1) // stride


@given(conv_shapes, st.booleans(), st.integers(0, 2 ** 16))
def test_the_tiled_convolution_equals_the_reference(shape, relu, seed):
    """conv2d_forward_tiled against the float64 convolution on small layers of every kind (``check_tiled``)."""
    C, H, W, F, K, stride, pad = shape
    if H + 2 * pad >= K and W + 2 * pad >= K:
        check_tiled(shape, relu, seed)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", [(128, 7, 7, 128, 3, 2, 1),      # conv6: from im2col's matrix
                                   (96, 14, 14, 128, 3, 2, 1),     # nin3.conv: from the planes, K over 3 blocks
                                   (3, 112, 112, 32, 5, 2, 2),     # nin1.conv
                                   (12, 24, 24, 12, 5, 1, 2)])     # align.conv3: stride 1
def test_the_tiled_convolution_on_table_2s_layers(shape, relu):
    check_tiled(shape, relu, 0)


def check_tiled(shape, relu, seed):
    """conv2d_forward_tiled, either way (from the planes or from im2col's matrix), against the float64
    convolution: work prefilled with NaN (a read of anything it did not write would spread into out),
    nothing written past tiled_work_size, the inputs unchanged; where neither way suits the layer it
    returns False and leaves out as it was."""
    from kernels.conv import TILED_DECLINED, conv2d_forward_reference, conv2d_forward_tiled, tiled_way, \
        tiled_work_size
    C, H, W, F, K, stride, pad = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((C, H, W)).astype(np.float32)
    w = rng.standard_normal((F, C, K, K)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    w2 = w.reshape(F, -1).copy()
    x0, w0, b0 = x.copy(), w2.copy(), b.copy()
    Ho, Wo = (H + 2 * pad - K) // stride + 1, (W + 2 * pad - K) // stride + 1
    n = tiled_work_size(C, H, W, F, K, stride, pad)
    work = np.full(n + 64, np.nan, np.float32)
    work[n:] = SENTINEL
    out = np.full((F, Ho * Wo), SENTINEL, np.float32)
    done = conv2d_forward_tiled(x, w2, b, K, stride, pad, relu, work[:n], out)
    assert done == (tiled_way(C, H, W, K, stride, pad) != TILED_DECLINED)
    if done:
        want = conv2d_forward_reference(x[None].astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                        stride, pad)[0].reshape(F, -1)
        if relu:
            want = np.maximum(want, 0.0)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * (1 + np.sqrt(C * K * K)))
    else:
        assert (out == SENTINEL).all()
    assert (work[n:] == SENTINEL).all()
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w2, w0)
    np.testing.assert_array_equal(b, b0)


def test_inference_runs_the_tiles_and_training_and_its_own_inference_calls_do_not():
    """FaceModel.tiles (default True) puts inference's suitable float32 convolutions on the tiles: their rounding
    differs from the BLAS's, both stay within 1e-5 of the float64 network. npface.train's models keep the
    BLAS for every call (tiles False), training forwards always do."""
    from npface import training
    from npface.model import TABLE2
    from npface.threads import limit
    from tests.test_plan import images_for, perturbed
    model = perturbed(TABLE2, np.float32)
    images = images_for(TABLE2, 3)
    want, _ = model.astype(np.float64).forward(images, per_op=True)
    with limit(1):
        tiled = model.embed(images)
        trained_tiles_on = model.forward(images, train=True)[0]
        model.tiles = False
        blas = model.embed(images)
        direct = model.plan.forward(images, tiled=False)[0].copy()
        trained, _ = model.forward(images, train=True)
    np.testing.assert_array_equal(blas, direct)
    np.testing.assert_array_equal(trained_tiles_on, trained)               # training never takes the tiles
    assert model.copy().tiles is False and model.astype(np.float64).tiles is False
    for got in (tiled, blas, trained):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if tile.AVAILABLE:
        assert not np.array_equal(tiled, blas)
    from tests.test_training import tiny
    cfg = tiny()
    assert training._initial_model(cfg, training.SyntheticSource(cfg)).tiles is False


def test_the_distillation_teachers_keep_the_blas(monkeypatch, tmp_path):
    """npface.train's teachers embed with tiles off, as the trainer's own model does."""
    from npface import distill
    from npface.model import TABLE2, FaceModel
    FaceModel(TABLE2, seed=0).save(tmp_path / "teacher.npz")
    seen = []

    def recording(model, images, flip, threads):
        seen.append(model.tiles)
        return np.ones((len(images), model.config.signature_dim), np.float32)
    monkeypatch.setattr(distill, "embed_faces", recording)
    distill.teacher_embeddings([str(tmp_path / "teacher.npz")], np.zeros((2, 112, 112, 3), np.uint8), log=lambda m: None)
    assert seen == [False]
