"""Winograd's F(2x2, 3x3): a 3x3 convolution, stride 1, pad 1, with 16 products per 2x2 output tile
instead of 36.

For one input channel, a 4x4 input tile d and a 3x3 filter g give the 2x2 output tile

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise)

    B^T = [[1, 0, -1, 0],      G = [[1,    0,   0 ],      A^T = [[1, 1,  1,  0],
           [0, 1,  1, 0],           [1/2,  1/2, 1/2],             [0, 1, -1, -1]]
           [0, -1, 1, 0],           [1/2, -1/2, 1/2],
           [0, 1,  0, -1]]          [0,    0,   1 ]]

(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016). The transforms are
linear, so the sum over input channels can be taken between them: for each of the 16 positions k of the
4x4 transformed tile, over all T tiles at once,

    M[k] (F, T) = U[k] (F, C) @ V[k] (C, T)
    U[k][f, c]  = (G w[f, c] G^T) at k         the weights, transformed once (``winograd_weights``)
    V[k][c, t]  = (B^T d_t,c B) at k           the input tiles (``winograd_input``)

and each output tile is A^T M[:, f, t] A (``winograd_output``, which adds the bias and the ReLU).

Tiles. Output pixel (i, j) equals input pixel (i, j) in position (stride 1, pad 1). Tile (ty, tx) covers
output rows 2ty, 2ty + 1 and columns 2tx, 2tx + 1, so it reads input rows 2ty - 1 .. 2ty + 2 (and the
same columns): TH = ceil(H / 2) by TW = ceil(W / 2) tiles, read from a copy of the channel with a zero
border (one pixel before; one after an even size, two after an odd one). Outputs of a last tile that fall
outside the image are dropped.

Layout. V and M are 2-D, (16, L): row k holds V[k] (C, T) or M[k] (F, T) at its start. L
(``row_length``) is a little longer than the matrix and never a multiple of 4 KiB, so that the 16 rows
do not lie a multiple of 4 KiB apart: the input and output transforms touch all 16 rows for every tile,
and rows at such a distance would share a set of the L1 cache (the transforms ran several times slower
that way on this project's benchmark machine).

Cost. Per channel pair and 2x2 output tile, 16 multiply-adds in the products against 36 for the direct
convolution; the transforms are additions. The rounding differs from the direct sum but stays at its
size (``tests/test_winograd.py`` checks float64 against the reference convolution to 1e-12).
"""
import numpy as np

from kernels.blas import matmul
from kernels.jit import kernel

# G (4, 3) and its use on both sides: U[:, f, c] (16,) = WINOGRAD_WEIGHTS (16, 9) @ w[f, c] (9,), the taps
# in (kh, kw) order, since vec(G g G^T) = (G kron G) vec(g) for row-major vec.
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
B_T = np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
A_T = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]])
WINOGRAD_WEIGHTS = np.kron(G, G)
ROW_PAD = 16      # extra floats at the end of each of V's and M's 16 rows (see Layout above)


@kernel
def tiles(H, W):
    """(TH, TW): the 2x2 output tiles of an H x W image (stride 1, pad 1: the output is H x W too)."""
    return (H + 1) // 2, (W + 1) // 2


def plane_size(H, W):
    """Floats of ``winograd_input``'s scratch: one channel with its zero border."""
    TH, TW = tiles(H, W)
    return (2 * TH + 2) * (2 * TW + 2)


# --------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------

@kernel
def winograd_weights(w2, transform, U):
    """w2 (F, C*9), the layer's weights with taps in (kh, kw) order -> U (16, F*C): U[:, f*C + c] =
    transform (16, 9) @ w[f, c], one matrix product over all F*C filters (``WINOGRAD_WEIGHTS`` in w2's
    dtype)."""
    FC = w2.shape[0] * (w2.shape[1] // 9)
    matmul(transform, w2.reshape((FC, 9)).T, U)


@kernel
def winograd_input(x_n, V, NT, t0, plane):
    """x_n (C, H, W) -> its tiles' B^T d B, into V (16, >= C*NT): row k holds V[k] (C, NT) at its start,
    and this sample's tiles are its columns t0 .. t0 + TH*TW - 1 (in each channel's block of NT: flat
    index c*NT + t0 + tile). plane: scratch of at least ``plane_size(H, W)`` floats."""
    C, H, W = x_n.shape
    TH, TW = tiles(H, W)
    Wp = 2 * TW + 2
    p = plane[:(2 * TH + 2) * Wp].reshape((2 * TH + 2, Wp))
    p[:] = 0.0                                      # the border stays 0; the interior is each channel in turn
    for c in range(C):
        for h in range(H):
            for w in range(W):
                p[h + 1, w + 1] = x_n[c, h, w]
        for ty in range(TH):
            r = 2 * ty
            d0, d1, d2, d3 = p[r], p[r + 1], p[r + 2], p[r + 3]         # the tile's four rows (padded coords)
            for tx in range(TW):
                q = 2 * tx
                col = c * NT + t0 + ty * TW + tx
                # e = B^T d, one column j at a time: (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
                e00, e01, e02, e03 = d0[q] - d2[q], d0[q + 1] - d2[q + 1], d0[q + 2] - d2[q + 2], d0[q + 3] - d2[q + 3]
                e10, e11, e12, e13 = d1[q] + d2[q], d1[q + 1] + d2[q + 1], d1[q + 2] + d2[q + 2], d1[q + 3] + d2[q + 3]
                e20, e21, e22, e23 = d2[q] - d1[q], d2[q + 1] - d1[q + 1], d2[q + 2] - d1[q + 2], d2[q + 3] - d1[q + 3]
                e30, e31, e32, e33 = d1[q] - d3[q], d1[q + 1] - d3[q + 1], d1[q + 2] - d3[q + 2], d1[q + 3] - d3[q + 3]
                # V = e B, one row i at a time: (e_i0 - e_i2, e_i1 + e_i2, e_i2 - e_i1, e_i1 - e_i3)
                V[0, col], V[1, col], V[2, col], V[3, col] = e00 - e02, e01 + e02, e02 - e01, e01 - e03
                V[4, col], V[5, col], V[6, col], V[7, col] = e10 - e12, e11 + e12, e12 - e11, e11 - e13
                V[8, col], V[9, col], V[10, col], V[11, col] = e20 - e22, e21 + e22, e22 - e21, e21 - e23
                V[12, col], V[13, col], V[14, col], V[15, col] = e30 - e32, e31 + e32, e32 - e31, e31 - e33


@kernel
def winograd_output(M, NT, t0, b, relu, out_n):
    """M (16, >= F*NT), row k holding M[k] (F, NT) at its start -> out_n (F, Ho, Wo), from this sample's
    tiles, columns t0 .. t0 + TH*TW - 1 (in each filter's block of NT: flat index f*NT + t0 + tile): each
    tile's A^T m A, + b[f], then ReLU if relu."""
    F, Ho, Wo = out_n.shape
    TH, TW = tiles(Ho, Wo)
    for f in range(F):
        bf = b[f]
        for ty in range(TH):
            for tx in range(TW):
                col = f * NT + t0 + ty * TW + tx
                # s = A^T m, one column j at a time: (m_0j + m_1j + m_2j, m_1j - m_2j - m_3j)
                s0, u0 = M[0, col] + M[4, col] + M[8, col], M[4, col] - M[8, col] - M[12, col]
                s1, u1 = M[1, col] + M[5, col] + M[9, col], M[5, col] - M[9, col] - M[13, col]
                s2, u2 = M[2, col] + M[6, col] + M[10, col], M[6, col] - M[10, col] - M[14, col]
                s3, u3 = M[3, col] + M[7, col] + M[11, col], M[7, col] - M[11, col] - M[15, col]
                # Y = s A: the same combination along the rows
                y00, y01 = s0 + s1 + s2 + bf, s1 - s2 - s3 + bf
                y10, y11 = u0 + u1 + u2 + bf, u1 - u2 - u3 + bf
                if relu:
                    y00, y01, y10, y11 = max(y00, 0.0), max(y01, 0.0), max(y10, 0.0), max(y11, 0.0)
                i, j = 2 * ty, 2 * tx
                out_n[f, i, j] = y00
                if j + 1 < Wo:
                    out_n[f, i, j + 1] = y01
                if i + 1 < Ho:
                    out_n[f, i + 1, j] = y10
                    if j + 1 < Wo:
                        out_n[f, i + 1, j + 1] = y11


@kernel
def row_length(n):
    """The length of a row of V or M that holds n values: n + ROW_PAD, and ROW_PAD more if that is a
    multiple of 1024 (4 KiB of float32; see Layout above)."""
    L = n + ROW_PAD
    return L + ROW_PAD if L % 1024 == 0 else L


def scratch_size(C, F, H, W, nb):
    """Floats that hold ``conv3x3_winograd_chunk``'s scratch for nb samples: V's and M's 16 rows, then the
    one-channel plane of ``winograd_input``. Each row is counted at its longest (``row_length`` adds at
    most 2 ROW_PAD), so the size is linear in nb: a workspace sized per sample plus a fixed part (as
    ``npface.plan`` sizes it) holds the scratch of every chunk."""
    TH, TW = tiles(H, W)
    return 16 * ((C + F) * nb * TH * TW + 4 * ROW_PAD) + plane_size(H, W)


@kernel
def conv3x3_winograd_chunk(rows, first, step, nb, x_off, C, H, W, U, b, relu, scratch, out_off):
    """nb samples through one 3x3, stride-1, pad-1 convolution by Winograd's method, with 16 matrix products.

    rows (slots, L): one flat row per sample slot, as in ``kernels.conv.conv2d_forward_chunk``: the chunk's
    samples are the rows first, first + step, ...; each holds its input x (C, H, W) at x_off and receives
    its output (F, H*W) at out_off (+ b, then ReLU if relu). U (16, F*C) from ``winograd_weights``.
    scratch: flat, at least ``scratch_size(C, F, H, W, nb)`` floats (V, M and the plane, in that order).
    """
    F = b.shape[0]
    TH, TW = tiles(H, W)
    T = TH * TW
    NT = nb * T                                                    # the chunk's tiles, sample after sample
    lv, lm = row_length(C * NT), row_length(F * NT)                # V's and M's row lengths
    V = scratch[:16 * lv].reshape((16, lv))
    M = scratch[16 * lv:16 * (lv + lm)].reshape((16, lm))
    plane = scratch[16 * (lv + lm):]
    for i in range(nb):
        n = first + i * step
        winograd_input(rows[n, x_off:x_off + C * H * W].reshape((C, H, W)), V, NT, i * T, plane)
    for k in range(16):
        matmul(U[k].reshape((F, C)), V[k, :C * NT].reshape((C, NT)), M[k, :F * NT].reshape((F, NT)))
    for i in range(nb):
        n = first + i * step
        winograd_output(M, NT, i * T, b, relu, rows[n, out_off:out_off + F * H * W].reshape((F, H, W)))


@kernel
def count_differences(a, b):
    """The number of positions where the flat arrays a and b (same length) differ."""
    n = 0
    for i in range(a.shape[0]):
        n += a[i] != b[i]
    return n


# --------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------

def conv3x3_winograd_reference(x, w, b):
    """The same method in NumPy with the matrices written out: x (N, C, H, W), w (F, C, 3, 3), b (F,)
    -> (N, F, H, W), in float64. Slow and obvious; the oracle of the kernels above, as
    ``kernels.conv.conv2d_forward_reference`` (the direct sum) is of both."""
    x, w, b = (np.asarray(a, dtype=np.float64) for a in (x, w, b))
    N, C, H, W = x.shape
    TH, TW = tiles(H, W)
    xp = np.zeros((N, C, 2 * TH + 2, 2 * TW + 2))
    xp[:, :, 1:H + 1, 1:W + 1] = x
    U = np.einsum("ij,fcjk,lk->fcil", G, w, G)                                  # (F, C, 4, 4)
    out = np.zeros((N, w.shape[0], 2 * TH, 2 * TW))
    for ty in range(TH):
        for tx in range(TW):
            d = xp[:, :, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4]                  # (N, C, 4, 4)
            V = np.einsum("ij,ncjk,lk->ncil", B_T, d, B_T)                       # B^T d B
            M = np.einsum("fcil,ncil->nfil", U, V)                               # summed over channels
            out[:, :, 2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2] = np.einsum("ij,nfjk,lk->nfil", A_T, M, A_T)
    return out[:, :, :H, :W] + b[None, :, None, None]
