"""kernels.tile: the register-tiled float32 product against its float64 reference, and where the plan uses it."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels import tile
from kernels.blas import matmul_bias

PANEL = tile.PANEL
SENTINEL = np.float32(-12345.5)       # what the array around out holds (finite: a stray store shows either way)


def padded(rng, rows, cols, pad_rows, pad_cols):
    """A (rows, cols) float32 view into a bigger NaN-filled array (rows ``cols + pad_cols`` apart), and it."""
    big = np.full((rows + 2 * pad_rows, cols + pad_cols), np.nan, np.float32)
    view = big[pad_rows:pad_rows + rows, :cols]
    view[...] = rng.standard_normal((rows, cols)).astype(np.float32)
    return view, big


@given(st.integers(1, 13), st.one_of(st.integers(0, 40), st.integers(tile.KC - 3, 2 * tile.KC + 5)),
       st.integers(1, 2 * PANEL + 5), st.integers(0, 3), st.integers(0, 9), st.booleans(), st.booleans(),
       st.integers(0, 2 ** 16))
def test_the_tiles_equal_the_float64_product_and_touch_nothing_else(M, K, N, pad_rows, pad_cols, has_bias, relu, seed):
    """Every edge: rows not a multiple of 4, columns not a multiple of the panel or of a vector, K = 0, K
    over one or two blocks of KC (sums added into out), operands and output that are views into bigger
    arrays (the NaN around a and b would spread into out if read; the sentinel around out must stay)."""
    rng = np.random.default_rng(seed)
    a, _ = padded(rng, M, K, pad_rows, pad_cols)
    b, _ = padded(rng, K, N, pad_rows, pad_cols)
    out, out_big = padded(rng, M, N, pad_rows, pad_cols)
    out_big[...] = SENTINEL
    bias = rng.standard_normal(M).astype(np.float32)
    a0, b0, bias0 = a.copy(), b.copy(), bias.copy()
    lda, ldb, ldo = (x.strides[0] // 4 for x in (a, b, out))
    tile.tiled_matmul(a, lda, b, ldb, out, ldo, bias if has_bias else bias[:0], has_bias, relu)
    want = tile.tiled_matmul_reference(a, b, bias if has_bias else None, relu)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * (1 + np.sqrt(K)))
    outside = np.ones(out_big.shape, bool)
    outside[pad_rows:pad_rows + M, :N] = False
    assert (out_big[outside] == SENTINEL).all()                             # nothing written outside out
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)
    np.testing.assert_array_equal(bias, bias0)


def test_relu_keeps_nan_and_clips_negative_zero_sums():
    a = np.array([[1.0], [np.nan], [-1.0], [0.0]], np.float32)             # (4, 1)
    b = np.ones((1, 5), np.float32)
    out = np.empty((4, 5), np.float32)
    tile.tiled_matmul(a, 1, b, 5, out, 5, np.zeros(4, np.float32), True, True)
    assert (out[0] == 1).all() and np.isnan(out[1]).all() and (out[2] == 0).all() and (out[3] == 0).all()


@pytest.mark.parametrize("relu", [False, True])
def test_matmul_bias_takes_the_tiles_only_when_asked(relu):
    """conv6's product (128 x 1152 x 16): with tiled, matmul_bias gives exactly the tiles' result; without,
    exactly the BLAS's and then add_bias's; both within float32 rounding of the float64 product."""
    from kernels.blas import add_bias, matmul
    rng = np.random.default_rng(0)
    a = rng.standard_normal((128, 1152)).astype(np.float32)
    b = rng.standard_normal((1152, 16)).astype(np.float32)
    bias = rng.standard_normal(128).astype(np.float32)
    by_tiles, by_blas = np.empty((128, 16), np.float32), np.empty((128, 16), np.float32)
    tile.tiled_matmul(a, 1152, b, 16, by_tiles, 16, bias, True, relu)
    matmul(a, b, by_blas)
    add_bias(by_blas, bias, relu)
    if np.array_equal(by_tiles, by_blas):
        pytest.skip("this BLAS adds in the tiles' order here: the two ways cannot be told apart")
    got = {}
    for tiled in (False, True):
        got[tiled] = np.empty((128, 16), np.float32)
        matmul_bias(a, b, bias, relu, tiled, got[tiled])
    np.testing.assert_array_equal(got[False], by_blas)
    np.testing.assert_array_equal(got[True], by_tiles if tile.AVAILABLE else by_blas)
    want = tile.tiled_matmul_reference(a, b, bias, relu)
    for tiled in (False, True):
        np.testing.assert_allclose(got[tiled], want, rtol=1e-5, atol=2e-4)
    out64 = np.empty((128, 16))                                             # float64 never takes the tiles
    matmul_bias(a.astype(np.float64), b.astype(np.float64), bias.astype(np.float64), relu, True, out64)
    np.testing.assert_allclose(out64, want, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not tile.AVAILABLE, reason="this processor has no AVX2/FMA: every product goes to the BLAS")
def test_which_of_table_2s_products_the_tiles_take():
    # (N pixels, K = C*K*K) of the forward products at batch 1
    assert tile.fits(16, 1152)                 # conv6
    assert tile.fits(576, 300)                 # align.conv3
    assert tile.fits(196, 288)                 # nin2.conv
    assert not tile.fits(3136, 75)             # nin1.conv: a short sum
    assert not tile.fits(196, 96)              # nin2.mlp: a short sum
    assert not tile.fits(16, 128)              # a product of Winograd's method
    assert not tile.fits(49, 864)              # nin3.conv: 7 x 7 outputs leave too many lanes idle


def test_inference_runs_the_tiles_and_training_and_its_own_inference_calls_do_not():
    """FaceModel.tiles (default True) puts inference's suitable float32 products on the tiles: their rounding
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


def test_a_strided_bias_goes_the_blas_way_and_is_read_right():
    """The tiles read bias as contiguous; a strided one (a view) is left to add_bias."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((8, 300)).astype(np.float32)
    b = rng.standard_normal((300, 32)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)[::2]               # (8,), every other element
    out = np.empty((8, 32), np.float32)
    matmul_bias(a, b, bias, False, True, out)
    np.testing.assert_allclose(out, tile.tiled_matmul_reference(a, b, bias), rtol=1e-5, atol=1e-4)
