"""resize_area: the alignment net's fixed area-averaging resize."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels.resize import area_weights, resize_forward_reference
from npface import ops
from tests.gradcheck import assert_unchanged, snapshot


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 20), st.integers(1, 20), st.integers(1, 20),
       st.integers(1, 20), st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64]))
def test_matches_reference(N, C, H, W, Ho, Wo, seed, dtype):
    img = np.random.default_rng(seed).standard_normal((N, C, H, W)).astype(dtype)
    before = snapshot(img)
    out = ops.resize_area(img, Ho, Wo)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, resize_forward_reference(img, Ho, Wo), rtol=tol, atol=tol)
    assert_unchanged(before, [img])


@pytest.mark.parametrize("size, out", [(112, 50), (7, 3), (5, 5), (3, 7), (1, 4)])
def test_weights_are_a_partition_of_unity(size, out):
    R = area_weights(size, out)
    np.testing.assert_allclose(R.sum(axis=1), 1.0)               # each output is a weighted mean
    np.testing.assert_allclose(R.sum(axis=0), out / size)          # each input pixel counted fully once


def test_hand_computed_halving_is_2x2_mean():
    img = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_allclose(ops.resize_area(img, 2, 2)[0, 0], [[2.5, 4.5], [10.5, 12.5]])


def test_same_size_is_identity_and_constant_stays_constant():
    img = np.random.default_rng(0).standard_normal((2, 3, 6, 5))
    np.testing.assert_allclose(ops.resize_area(img, 6, 5), img, atol=1e-12)
    np.testing.assert_allclose(ops.resize_area(np.full((1, 1, 112, 112), 0.3), 50, 50), 0.3, atol=1e-12)


def test_bad_sizes():
    with pytest.raises(ValueError, match="out_h must be an integer >= 1"):
        ops.resize_area(np.zeros((1, 1, 4, 4)), 0, 2)
