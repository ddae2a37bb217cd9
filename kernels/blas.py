"""Matrix products inside the kernels: ``matmul(a, b, out)``, out = a @ b, by the BLAS NumPy itself uses.

``np.dot`` inside a Numba kernel calls the BLAS that SciPy ships (through
``scipy.linalg.cython_blas``), a different OpenBLAS build from NumPy's own. On
the shapes of Table 2's layers at batch 1 the two differ a great deal: measured
on this project's benchmark machine (one thread, float32), the alignment net's
first convolution, 4 x 75 x 2500, took 0.072 ms through SciPy's OpenBLAS 0.3.30
and 0.028 ms through NumPy's OpenBLAS 0.3.31; nin1's 32 x 75 x 3136 0.206 and
0.154 ms; the 128 x 1152 x 49 layers about 10% apart. So the kernels call
NumPy's ``cblas_?gemm`` directly when they can find it:

- NumPy's wheels carry an ILP64 OpenBLAS whose CBLAS symbols end in ``64_``
  (``scipy_cblas_sgemm64_`` since NumPy 2, ``cblas_sgemm64_`` before). The
  symbol is looked up through NumPy's own extension module (``dlsym`` searches
  the libraries it links), and its address is given to LLVM under a fixed name
  (``npface_sgemm`` / ``npface_dgemm``), which the compiled kernels call as an
  external function: the address is resolved when a kernel is loaded, so
  Numba's on-disk cache stays valid from one process to the next.
- Where no such symbol exists (a NumPy built on another BLAS), the same names
  are given to the two callbacks of ``numba_callbacks`` below: compiled C callbacks
  with the same CBLAS signature that do the product with ``np.dot``, that is
  as before. ``BLAS`` says which one this process uses; the environment
  variable ``NPFACE_BLAS=numba`` picks the callbacks even where NumPy's is found.

Either way the maths is one row-major GEMM, C (M, N) = alpha op(A) @ op(B) + beta C,
and ``matmul`` only works out how each operand lies in memory. A single row
times a matrix (the affine layers at batch 1) is one matrix-vector product,
``np.dot`` of the vector and the matrix (BLAS's gemv, which reads the matrix
once: Table 2's fc1 at batch 1 took 0.035 ms this way against 0.068 ms as a
1-row GEMM, measured on the benchmark machine, one thread). Other products
with a single row or column, and operands laid out so that no leading
dimension describes them, keep ``np.dot`` as a matrix product.

BLAS runs single-threaded inside the parallel kernels: ``npface.threads.limit``
limits every BLAS library loaded in the process, NumPy's included.
"""
import ctypes
import functools
import os

import numpy as np
from llvmlite import binding as llvm
from numba import carray, cfunc, types
from numba.extending import overload

from kernels.jit import kernel
from kernels.tile import TILES_SIGNATURE, tiles_address

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112       # CBLAS's enum values (cblas.h)

_I32, _I64, _PTR = types.int32, types.int64, types.voidptr


def _gemm_signature(scalar):
    """void cblas_?gemm(order, transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), ILP64."""
    return types.void(_I32, _I32, _I32, _I64, _I64, _I64, scalar, _PTR, _I64, _PTR, _I64, scalar, _PTR, _I64)


_SGEMM_SIG, _DGEMM_SIG = _gemm_signature(types.float32), _gemm_signature(types.float64)
_sgemm = types.ExternalFunction("npface_sgemm", _SGEMM_SIG)
_dgemm = types.ExternalFunction("npface_dgemm", _DGEMM_SIG)
# kernels.tile's product, compiled once and called through its address like the BLAS (not inlined into
# every kernel that multiplies): (M, N, K, a, lda, b, len(b), rows_b, out, ldo, bias, has_bias, relu)
_tiles = types.ExternalFunction("npface_tiles", TILES_SIGNATURE)


def _numba_gemm(dtype):
    """A C callback with cblas_?gemm's signature (row-major order only) that computes with ``np.dot``."""
    def gemm(order, transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):
        a_rows, a_cols = (M, K) if transa == NO_TRANS else (K, M)
        b_rows, b_cols = (K, N) if transb == NO_TRANS else (N, K)
        a = carray(A, (max(a_rows, 1), lda), dtype)[:a_rows, :a_cols]
        b = carray(B, (max(b_rows, 1), ldb), dtype)[:b_rows, :b_cols]
        c = carray(C, (max(M, 1), ldc), dtype)[:M, :N]
        a = np.ascontiguousarray(a if transa == NO_TRANS else a.T)           # (M, K)
        b = np.ascontiguousarray(b if transb == NO_TRANS else b.T)           # (K, N)
        product = np.dot(a, b) if K > 0 else np.zeros((M, N), dtype)
        for i in range(M):
            for j in range(N):
                c[i, j] = alpha * product[i, j] + (beta * c[i, j] if beta != 0 else 0)
    return gemm


@functools.lru_cache(maxsize=None)
def numba_callbacks():
    """(sgemm, dgemm): the ``np.dot`` callbacks, compiled (or loaded from the cache) on first use only, since
    a process that finds NumPy's CBLAS never calls them."""
    return (cfunc(_SGEMM_SIG, cache=True)(_numba_gemm(np.float32)),
            cfunc(_DGEMM_SIG, cache=True)(_numba_gemm(np.float64)))


def _numpy_cblas():
    """(sgemm address, dgemm address) of NumPy's own ILP64 CBLAS, or None where it has none."""
    try:
        from numpy._core import _multiarray_umath as module             # NumPy >= 2
    except ImportError:                                                  # pragma: no cover (NumPy 1.x)
        from numpy.core import _multiarray_umath as module
    try:
        library = ctypes.CDLL(module.__file__)
    except OSError:                                                      # pragma: no cover
        return None
    for prefix in ("scipy_cblas_", "cblas_"):
        try:
            s, d = getattr(library, prefix + "sgemm64_"), getattr(library, prefix + "dgemm64_")
        except AttributeError:
            continue
        return ctypes.cast(s, ctypes.c_void_p).value, ctypes.cast(d, ctypes.c_void_p).value
    return None


def _register():
    """Give the kernels' two GEMM names their addresses; returns which BLAS they reach.

    The environment variable NPFACE_BLAS=numba chooses the ``np.dot`` callbacks even where NumPy's CBLAS
    is found (to compare the two, or to rule one out); any other value, or none, takes NumPy's when found.
    """
    found = None if os.environ.get("NPFACE_BLAS", "").strip().lower() == "numba" else _numpy_cblas()
    if found is None:
        addresses, source = tuple(f.address for f in numba_callbacks()), "np.dot (SciPy's BLAS, through Numba)"
    else:
        addresses, source = found, "NumPy's BLAS (cblas_?gemm64_)"
    llvm.add_symbol("npface_sgemm", addresses[0])
    llvm.add_symbol("npface_dgemm", addresses[1])
    llvm.add_symbol("npface_tiles", tiles_address())
    return source


BLAS = _register()


def _dot_into(a, b, out):
    """out = a @ b by ``np.dot``, for ``matmul``'s cases that BLAS is not called for directly."""
    np.dot(a, b, out)


@overload(_dot_into)
def _dot_into_typed(a, b, out):
    """Numba's ``np.dot`` takes contiguous arrays only (its layout 'C' or 'F', fixed when compiling):
    other views go through contiguous copies. ``a`` may be a vector (then ``out`` is one too: a
    matrix-vector product)."""
    if a.layout in "CF" and b.layout in "CF" and out.layout == "C":
        def direct(a, b, out):
            np.dot(a, b, out)
        return direct

    def copied(a, b, out):
        out[...] = np.dot(np.ascontiguousarray(a), np.ascontiguousarray(b))
    return copied


@kernel
def _operand(x):
    """(trans, ld) describing the 2-D array x to BLAS as row-major op(X), or (0, 0) if it cannot be:
    NO_TRANS with ld = its row stride when its columns are adjacent, TRANS with ld = its column stride
    when its rows are (a transposed view). A length-1 axis's stride is free, so it never disqualifies."""
    rows, cols = x.shape
    size = x.itemsize
    s0, s1 = x.strides
    if (cols <= 1 or s1 == size) and (rows <= 1 or (s0 % size == 0 and s0 >= cols * size)):
        return NO_TRANS, max(s0 // size if rows > 1 else cols, 1)
    if (rows <= 1 or s0 == size) and (cols <= 1 or (s1 % size == 0 and s1 >= rows * size)):
        return TRANS, max(s1 // size if cols > 1 else rows, 1)
    return 0, 0


@kernel
def matmul(a, b, out):
    """out (M, N) = a (M, K) @ b (K, N), overwritten; float32 or float64, the three of one dtype.

    Any of the three may be a strided or transposed view; ``out`` must have adjacent columns.
    """
    M, K = a.shape
    N = b.shape[1]
    ta, lda = _operand(a)
    tb, ldb = _operand(b)
    tc, ldc = _operand(out)
    if M == 1 and N > 1 and K > 1:
        _dot_into(a[0], b, out[0])                               # a row times a matrix: gemv reads b once
    elif M <= 1 or N <= 1 or ta == 0 or tb == 0 or tc != NO_TRANS:
        _dot_into(a, b, out)                                     # matrix-vector, or no leading dimension
    elif a.itemsize == 4:
        _sgemm(ROW_MAJOR, ta, tb, M, N, K, np.float32(1.0), a.ctypes, lda, b.ctypes, ldb, np.float32(0.0),
               out.ctypes, ldc)
    else:
        _dgemm(ROW_MAJOR, ta, tb, M, N, K, 1.0, a.ctypes, lda, b.ctypes, ldb, 0.0, out.ctypes, ldc)


@kernel
def add_bias(out, b, relu):
    """out (F, P) += b (F,) broadcast along P; then max(., 0) if relu (the fused ReLU)."""
    F, P = out.shape
    for f in range(F):
        bf = b[f]
        if relu:
            for k in range(P):
                v = out[f, k] + bf
                out[f, k] = 0.0 if v <= 0.0 else v                   # NaN stays NaN (NaN <= 0 is false)
        else:
            for k in range(P):
                out[f, k] += bf


@kernel
def matmul_bias(a, b, bias, relu, out):
    """out (F, P) = a (F, R) @ b (R, P) + bias (F,) broadcast along P, then ReLU if relu: a layer's forward
    by the BLAS (``matmul``), then ``add_bias``."""
    matmul(a, b, out)
    add_bias(out, bias, relu)


@kernel
def tiles_bias(a, b, rows_b, bias, relu, out):
    """out (F, N) = a (F, R) @ B + bias (F,) broadcast along N, then ReLU if relu, on ``kernels.tile``'s
    tiles, where B (R, N) has rows B[k, n] = b[rows_b[k] + n] (b flat, rows_b (R,) int64; every
    rows_b[k] + N <= b's length, the caller's to ensure). Returns False, having done nothing, unless
    the operands are float32 and lie as the tiles read them: a and out with adjacent columns, bias
    contiguous of length F (the caller then multiplies another way)."""
    F, R = a.shape
    N = out.shape[1]
    ta, lda = _operand(a)
    tc, ldc = _operand(out)
    if not (a.itemsize == 4 and b.itemsize == 4 and out.itemsize == 4 and bias.itemsize == 4
            and ta == NO_TRANS and tc == NO_TRANS and bias.shape[0] == F
            and bias.strides[0] == bias.itemsize and b.strides[0] == b.itemsize and rows_b.shape[0] == R
            and rows_b.strides[0] == 8):
        return False
    _tiles(F, N, R, a.ctypes, lda, b.ctypes, b.shape[0], rows_b.ctypes, out.ctypes, ldc, bias.ctypes, 1,
           1 if relu else 0)
    return True
