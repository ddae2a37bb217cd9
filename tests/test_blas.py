"""kernels.blas: the kernels' matrix product, by NumPy's own CBLAS or by the np.dot callbacks."""
import ctypes

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kernels import blas


# Numba compiles a kernel once per combination of its arguments' layout types (C-contiguous, Fortran, any),
# but matmul reads the memory layout from the strides at call time (``_operand``). These callers take every
# operand as layout 'A', so one specialisation per dtype meets all the layouts below, instead of the 18 per
# dtype that calling matmul from Python with each layout would compile and no kernel uses.
@numba.njit([f"void({t}[:, :], {t}[:, :], {t}[:, :])" for t in ("float32", "float64")])
def _matmul_any_layout(a, b, out):
    blas.matmul(a, b, out)


def _layouts(x):
    """x (R, C) as a C-contiguous array, a transposed view, and a strided view inside a larger array."""
    R, C = x.shape
    big = np.full((R + 3, 2 * C + 5), np.nan, dtype=x.dtype)
    big[1:R + 1, 2:2 * C + 2:2] = x                               # row stride 2C+5, column stride 2
    inner = np.full((R + 2, C + 4), np.nan, dtype=x.dtype)
    inner[1:R + 1, 3:C + 3] = x                                   # adjacent columns, row stride C+4
    return {"C": x.copy(), "transposed": np.asfortranarray(x),
            "row-strided": inner[1:R + 1, 3:C + 3], "both strided": big[1:R + 1, 2:2 * C + 2:2]}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 75, 250), (13, 7, 9), (1, 20, 30), (30, 20, 1), (5, 0, 6), (2, 3, 2)])
def test_matmul_equals_the_float64_product_for_every_layout(dtype, shape):
    M, K, N = shape
    rng = np.random.default_rng(M * 100 + K * 10 + N)
    a, b = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a_name, a_view in _layouts(a).items():
        for b_name, b_view in _layouts(b).items():
            a_before, b_before = a_view.copy(), b_view.copy()
            for out in (np.full((M, N), np.nan, dtype), _layouts(np.zeros((M, N), dtype))["row-strided"]):
                _matmul_any_layout(a_view, b_view, out)
                scale = max(1.0, np.abs(want).max(initial=0.0))
                assert np.abs(out - want).max(initial=0.0) <= tol * scale * max(K, 1), (a_name, b_name)
            np.testing.assert_array_equal(a_view, a_before)                   # inputs left unchanged
            np.testing.assert_array_equal(b_view, b_before)


def test_matmul_writes_only_inside_a_strided_output():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    room = np.full((8, 9), -7.0, np.float32)
    blas.matmul(a, b, room[1:7, 2:6])
    np.testing.assert_allclose(room[1:7, 2:6], a @ b, rtol=1e-5, atol=1e-5)
    outside = np.ones(room.shape, bool)
    outside[1:7, 2:6] = False
    assert np.all(room[outside] == -7.0)


@pytest.mark.parametrize("which, dtype, scalar", [(0, np.float32, ctypes.c_float), (1, np.float64, ctypes.c_double)])
@settings(max_examples=25, deadline=None)
@given(M=st.integers(1, 6), N=st.integers(1, 6), K=st.integers(0, 6), transa=st.booleans(), transb=st.booleans(),
       pad=st.integers(0, 3), alpha=st.sampled_from([1.0, -0.5, 2.0]), beta=st.sampled_from([0.0, 1.0, 0.25]))
def test_the_np_dot_callbacks_follow_cblas_gemm(which, dtype, scalar, M, N, K, transa, transb, pad, alpha, beta):
    """Where NumPy has no ILP64 CBLAS, these callbacks stand in for it: row-major
    C = alpha op(A) @ op(B) + beta C with leading dimensions, as cblas_?gemm."""
    callback = blas.numba_callbacks()[which]
    rng = np.random.default_rng(M + 7 * N + 49 * K)
    a = rng.standard_normal((K, M) if transa else (M, K))
    b = rng.standard_normal((N, K) if transb else (K, N))
    c = rng.standard_normal((M, N))
    A = np.zeros((a.shape[0], a.shape[1] + pad), dtype)
    B = np.zeros((b.shape[0], b.shape[1] + pad), dtype)
    C = np.full((M, N + pad), 3.0, dtype)
    A[:, :a.shape[1]], B[:, :b.shape[1]], C[:, :N] = a, b, c
    T = {False: blas.NO_TRANS, True: blas.TRANS}
    callback.ctypes(blas.ROW_MAJOR, T[transa], T[transb], M, N, K, scalar(alpha), A.ctypes.data,
                    max(A.shape[1], 1), B.ctypes.data, max(B.shape[1], 1), scalar(beta), C.ctypes.data, C.shape[1])
    want = alpha * ((a.T if transa else a) @ (b.T if transb else b)) + beta * c
    np.testing.assert_allclose(C[:, :N], want, rtol=1e-5, atol=1e-5)
    assert np.all(C[:, N:] == 3.0)                                       # the padding beyond N untouched


def test_blas_names_the_library_the_kernels_call():
    assert blas.BLAS in ("NumPy's BLAS (cblas_?gemm64_)", "np.dot (SciPy's BLAS, through Numba)")


def test_the_np_dot_callbacks_run_the_kernels_in_a_process_that_chooses_them():
    """NPFACE_BLAS=numba: the compiled kernels (from the same on-disk cache) call the callbacks instead, and a
    convolution's forward and backward equal this process's."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from npface import ops

    code = """if True:
        import json, sys, numpy as np
        from kernels import blas
        from npface import ops
        rng = np.random.default_rng(0)
        x, w, b = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
        out, cache = ops.conv2d_forward(x, w, b, stride=1, pad=1)
        dx, dw, db = ops.conv2d_backward(np.ones_like(out), cache)
        json.dump({"blas": blas.BLAS, "out": out.tolist(), "dx": dx.tolist(), "dw": dw.tolist()}, sys.stdout)
    """
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, NPFACE_BLAS="numba", PYTHONPATH=str(root))
    got = json.loads(subprocess.run([sys.executable, "-c", code], env=env, cwd=root, check=True,
                                    capture_output=True, text=True).stdout)
    assert got["blas"] == "np.dot (SciPy's BLAS, through Numba)"
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    out, cache = ops.conv2d_forward(x, w, b, stride=1, pad=1)
    dx, dw, _ = ops.conv2d_backward(np.ones_like(out), cache)
    for name, want in (("out", out), ("dx", dx), ("dw", dw)):
        np.testing.assert_allclose(np.array(got[name]), want, rtol=1e-12, atol=1e-12, err_msg=name)
