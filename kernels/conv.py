"""2-D convolution (cross-correlation, as in every deep-learning library), NCHW.

Shapes (the project's vocabulary)::

    x    (N, C, H, W)      input
    w    (F, C, K, K)      filters; in the kernels flattened to w2 (F, C*K*K)
    b    (F,)              bias
    out  (N, F, Ho, Wo)    Ho = (H + 2*pad - K) // stride + 1, likewise Wo

    out[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xpad[n, c, i*stride + p, j*stride + q]

where ``xpad`` is ``x`` with ``pad`` zeros on every side.

How the fast kernels work: for each sample, ``im2col`` copies every receptive
field into a column of ``cols`` (C*K*K, Ho*Wo), row index (c, p, q) in the
same C order as ``w2``, column index (i, j); the convolution is then one
matrix product ``w2 @ cols`` done by BLAS (``kernels.blas.matmul``). The backward pass is two more
products and ``col2im``, the adjoint of ``im2col``, which adds each column back
to the pixels it came from::

    dw2   += dout_n (F, Ho*Wo) @ cols_n.T (Ho*Wo, C*K*K)
    dcols  = w2.T (C*K*K, F) @ dout_n (F, Ho*Wo)      -> col2im -> dx_n

Narrow layers in chunks. Where Ho*Wo is small (Table 2's 7x7 and 4x4
layers), one sample's products are thin (K = 49 in dw2's) and BLAS runs
well below its peak; ``conv2d_forward_chunk`` / ``conv2d_backward_chunk``
put a chunk of nb samples side by side, cols (C*K*K, nb*Ho*Wo) with sample
i's columns in block i, so that each layer makes one product per chunk:

    out_chunk (F, nb*Ho*Wo) = w2 @ cols            (sample i's output: block i)
    dw2 += dout_chunk (F, nb*Ho*Wo) @ cols.T      (the sum over the chunk's samples)
    dcols = w2.T @ dout_chunk                      (block i -> col2im -> dx_i)

The 1x1 convolution of a network-in-network block (K = 1, stride 1, no pad)
needs no ``im2col`` at all: ``x_n`` viewed as (C, H*W) already is ``cols``.

Inference on the tiles (``conv2d_forward_tiled``; the compiled plan's inference calls, one sample at a
time). ``kernels.tile`` reads the product's right operand by rows from a flat array, B[k, n] =
b[rows[k] + n], so the im2col matrix need not be built: split the padded input into its stride^2
polyphase planes (as ``_im2col_phases`` does), phase (a, b)[r, c] = xpad[r*stride + a, c*stride + b],
each Hh x Wh. Tap (p, q) of output (i, j) is then phase (p % stride, q % stride)[i + p // stride,
j + q // stride], so for a fixed (c, p, q) the outputs (i, j), counted i*Wh + j over a "wide" grid of
Ho rows of Wh columns, are consecutive elements of one plane from the tap's start::

    rows[(c*K + p)*K + q] = (c*stride^2 + (p % stride)*stride + q % stride)*Hh*Wh + (p // stride)*Wh + q // stride
    wide (F, Ho*Wh) = w2 @ B,  out_n[f, i*Wo + j] = wide[f, i*Wh + j] for j < Wo

The wide grid's Wh - Wo extra columns of each row are computed and dropped (they read the next row's
start, or the (K-1)//stride zeros kept after the planes). Where those columns cost too many vectors
(``kernels.tile.direct_fits``: conv6, 4 x 5 for 4 x 4), the tiles take the im2col matrix instead,
rows[k] = k * Ho*Wo, or (``kernels.tile.fits``) leave the layer to im2col and the BLAS.

Parallelism: samples are dealt to G groups (the caller passes G, normally
min(N, threads)), group g taking samples g, g+G, g+2G, ...; a ``prange`` over groups writes disjoint samples of
``out`` and ``dx`` and a private weight-gradient partial, and the partials are
summed in group order, so results are reproducible for a given thread count.
BLAS must run single-threaded inside these loops (``npface.threads``).
"""
import numpy as np
from numba import prange

from kernels.blas import matmul, matmul_bias, tiles_bias
from kernels.jit import kernel, parallel_kernel
from kernels.tile import direct_fits, fits, matrix_rows


# --------------------------------------------------------------------------
# im2col / col2im
# --------------------------------------------------------------------------

# A convolution whose output rows are at least this wide builds its columns from polyphase planes, row
# segment by row segment (long contiguous copies, ``_im2col_phases``); narrower ones gather from one
# zero-padded plane per channel instead (``im2col``), where many short segments would cost more in loop
# overhead than in copying. Measured on Table 2's layers (one thread): nin1's 5x5 stride-2 columns (56-wide
# rows) 0.123 -> 0.035 ms, the alignment net's stride-1 5x5 layers 3.5 to 7 times faster; at 14-wide rows
# the two ways are within 20%, at 7-wide rows the gather is twice as fast.
WIDE_ROW = 12


@kernel
def output_size(H, W, K, stride, pad):
    """(Ho, Wo): the output's size, K x K windows every ``stride`` pixels over the input zero-padded by ``pad``
    on each side."""
    return (H + 2 * pad - K) // stride + 1, (W + 2 * pad - K) // stride + 1


@kernel
def output_and_planes(H, W, K, stride, pad):
    """(Ho, Wo, Hh, Wh): the output's size, and that of each of the padded input's stride^2 polyphase planes
    (``_im2col_phases``, ``conv2d_forward_tiled``)."""
    Ho, Wo = output_size(H, W, K, stride, pad)
    Hh, Wh = (H + 2 * pad + stride - 1) // stride, (W + 2 * pad + stride - 1) // stride
    return Ho, Wo, Hh, Wh


@kernel
def im2col_scratch_size(H, W, K, stride, pad):
    """Elements of the scratch ``im2col`` (and ``col2im_add``) needs: the larger of the zero-padded plane
    (H+2pad)(W+2pad) with the gather index of the Ho*Wo output positions after it (int32, kept in the
    same buffer: at least one element each), and the stride^2 polyphase planes of ``_im2col_phases``."""
    Ho, Wo, Hh, Wh = output_and_planes(H, W, K, stride, pad)
    return max((H + 2 * pad) * (W + 2 * pad) + Ho * Wo, stride * stride * Hh * Wh)


@kernel
def _plane_and_index(scratch, H, W, Ho, Wo, stride, pad):
    """(plane, index) in ``scratch`` (``im2col_scratch_size``): a flat (Hp * Wp) plane for one zero-padded
    channel, and the (>= Ho*Wo) int32 map index[i*Wo + j] = i*stride*Wp + j*stride from output position
    to the top-left tap of its receptive field in that plane (filled here), kept after it."""
    Hp, Wp = H + 2 * pad, W + 2 * pad
    plane = scratch[:Hp * Wp]
    index = scratch[Hp * Wp:Hp * Wp + Ho * Wo].view(np.int32)
    for i in range(Ho):
        for j in range(Wo):
            index[i * Wo + j] = i * stride * Wp + j * stride
    return plane, index


@kernel
def _fill_phases(x_c, stride, pad, phases, Hh, Wh):
    """Scatter one channel x_c (H, W) into the interiors of its stride^2 polyphase planes (the zero border
    is the caller's): phase (a, b), at offset (a*stride + b)*Hh*Wh of ``phases``, holds the padded pixel
    xpad[r*stride + a, c*stride + b] at r*Wh + c. Each phase row is one strided read of an input row."""
    H, W = x_c.shape
    s = stride
    for a in range(s):
        for b in range(s):
            base = (a * s + b) * Hh * Wh
            c_lo = max(0, (pad - b + s - 1) // s)                 # phase columns whose pixel w = c*s + b - pad
            c_hi = min(Wh, (W + pad - b + s - 1) // s)            # lies in [0, W)
            if c_hi <= c_lo:
                continue
            w0 = c_lo * s + b - pad
            for r in range(Hh):
                h = r * s + a - pad
                if h < 0 or h >= H:
                    continue
                dst = phases[base + r * Wh + c_lo:base + r * Wh + c_hi]
                row = x_c[h, w0:]
                for c in range(c_hi - c_lo):
                    dst[c] = row[c * s]


@kernel
def _copy_rows(src, s0, ld_src, dst, d0, rows, width):
    """dst[d0 + i*width + j] = src[s0 + i*ld_src + j] for i < rows, j < width (each row one slice copy, whose
    loop LLVM vectorises: a slice's index starts at 0, so no negative-index test is left inside it)."""
    for i in range(rows):
        d = dst[d0 + i * width:d0 + (i + 1) * width]
        s = src[s0 + i * ld_src:s0 + i * ld_src + width]
        for j in range(width):
            d[j] = s[j]


@kernel
def _tap_start(p, q, stride, Hh, Wh):
    """Where tap (p, q)'s values start in one channel's stride^2 polyphase planes of Hh x Wh: phase
    (p % stride, q % stride), row p // stride, column q // stride (``_im2col_phases``)."""
    return ((p % stride) * stride + q % stride) * Hh * Wh + (p // stride) * Wh + q // stride


@kernel
def _im2col_phases(x_n, K, stride, pad, cols, col0, scratch):
    """``im2col`` for wide output rows, from polyphase planes.

    Split the zero-padded channel xpad_c into stride^2 planes by the parity (for stride 2) of row and
    column, phase (a, b)[r, c] = xpad_c[r*stride + a, c*stride + b]. The tap (p, q) of output (i, j)
    reads xpad_c[i*stride + p, j*stride + q] = phase (p % stride, q % stride)[i + p // stride,
    j + q // stride]: for a fixed tap, consecutive j are consecutive elements of one phase row, so the
    tap's row of ``cols`` is Ho contiguous copies of Wo elements, whatever the stride (stride 1: one
    phase, the padded plane itself).
    """
    C, H, W = x_n.shape
    s = stride
    Ho, Wo, Hh, Wh = output_and_planes(H, W, K, s, pad)
    phases = scratch[:s * s * Hh * Wh]
    phases[:] = 0.0                                              # the border stays 0 for every channel
    for c in range(C):
        _fill_phases(x_n[c], s, pad, phases, Hh, Wh)
        for p in range(K):
            for q in range(K):
                _copy_rows(phases, _tap_start(p, q, s, Hh, Wh), Wh, cols[(c * K + p) * K + q], col0, Ho, Wo)


@kernel
def im2col(x_n, K, stride, pad, cols, col0, scratch):
    """Copy receptive fields into columns.

    x_n (C, H, W), cols (C*K*K, >= col0 + Ho*Wo): cols[(c*K + p)*K + q, col0 + i*Wo + j] =
    xpad[c, i*stride + p, j*stride + q], zero where the field hangs over the edge
    (col0 > 0: one sample's block among several side by side). scratch: flat, at least
    ``im2col_scratch_size`` elements of x_n's dtype.

    Two ways, the same result:

    - output rows at least WIDE_ROW wide: from polyphase planes, where every row of ``cols`` is Ho
      contiguous segments of Wo (``_im2col_phases``);
    - otherwise (rows too short for the above to pay): each channel is copied once into a zero-padded
      plane xpad_c (Hp, Wp), and the row of tap (p, q) is one gather over all Ho*Wo outputs,
      cols[row, col0 + k] = xpad_c.flat[p*Wp + q + index[k]] with index[i*Wo + j] = i*stride*Wp +
      j*stride: no bounds tests, one loop per row.
    """
    C, H, W = x_n.shape
    Ho, Wo = output_size(H, W, K, stride, pad)
    if Wo >= WIDE_ROW:
        _im2col_phases(x_n, K, stride, pad, cols, col0, scratch)
        return
    Wp, P = W + 2 * pad, Ho * Wo
    plane, index = _plane_and_index(scratch, H, W, Ho, Wo, stride, pad)
    plane[:] = 0.0                                               # the border stays 0 for every channel
    for c in range(C):
        for h in range(H):
            for w in range(W):
                plane[(h + pad) * Wp + pad + w] = x_n[c, h, w]
        for p in range(K):
            for q in range(K):
                src = plane[p * Wp + q:]
                dst = cols[(c * K + p) * K + q, col0:col0 + P]
                for k in range(P):
                    dst[k] = src[index[k]]


@kernel
def col2im_add(dcols, K, stride, pad, dx_n, col0, scratch):
    """The adjoint of ``im2col``: add each column entry back to its source pixel.

    dcols (C*K*K, >= col0 + Ho*Wo) (the block from column col0), dx_n (C, H, W) accumulated into
    (caller zeroes it); scratch as for ``im2col``. Per channel, every tap's row is scattered into a
    zero-padded plane through the same index map as ``im2col``'s gather, plane.flat[p*Wp + q + index[k]]
    += dcols[row, col0 + k] (one loop per row, taps in row order), and the plane's interior is then
    added to dx_n; what landed in the border came from the zero padding and is dropped.
    """
    C, H, W = dx_n.shape
    Ho, Wo = output_size(H, W, K, stride, pad)
    Wp, P = W + 2 * pad, Ho * Wo
    plane, index = _plane_and_index(scratch, H, W, Ho, Wo, stride, pad)   # plane: one channel's padded gradient
    for c in range(C):
        plane[:] = 0.0
        for p in range(K):
            for q in range(K):
                dst = plane[p * Wp + q:]
                src = dcols[(c * K + p) * K + q, col0:col0 + P]
                for k in range(P):
                    dst[index[k]] += src[k]
        for h in range(H):
            for w in range(W):
                dx_n[c, h, w] += plane[(h + pad) * Wp + pad + w]


@kernel
def _add_param_grads(dout, inputs, dw_n, dw_acc, db_acc):
    """The backward of ``w2 @ inputs + b``: dw_acc (F, R) += dout (F, P) @ inputs.T (P, R), through the
    scratch dw_n (F, R), and db_acc (F,) += dout's row sums. inputs (R, P): im2col columns, or the input
    itself for a 1x1 convolution."""
    matmul(dout, inputs.T, dw_n)
    dw_acc += dw_n
    for f in range(dout.shape[0]):
        db_acc[f] += dout[f].sum()


@kernel
def _sum_groups(parts, total):
    """total (...) = parts[0] + parts[1] + ... in group order (deterministic)."""
    flat_parts = parts.reshape(parts.shape[0], -1)
    flat_total = total.reshape(-1)
    flat_total[:] = flat_parts[0]
    for g in range(1, flat_parts.shape[0]):
        flat_total += flat_parts[g]


# --------------------------------------------------------------------------
# General K x K convolution
# --------------------------------------------------------------------------

@kernel
def conv2d_forward_sample(x_n, w2, b, K, stride, pad, relu, cols, scratch, out_n):
    """One sample: out_n (F, Ho*Wo) = w2 (F, C*K*K) @ im2col(x_n (C, H, W)) + b, then ReLU if relu.

    ``cols`` (C*K*K, Ho*Wo) and ``scratch`` (``im2col``'s) are caller-owned scratch (the whole-network
    plans hand in workspace, the batch kernel below its own).
    """
    im2col(x_n, K, stride, pad, cols, 0, scratch)
    matmul_bias(w2, cols, b, relu, out_n)


@kernel
def tiled_work_size(C, H, W, F, K, stride, pad):
    """Floats of ``work`` that ``conv2d_forward_tiled`` needs: the larger of its two ways' (the planes,
    the (K-1)//stride zeros after them, the row offsets as int64 (with one float to align them) and the
    wide output; or the im2col matrix, im2col's scratch and the row offsets)."""
    s = stride
    Ho, Wo, Hh, Wh = output_and_planes(H, W, K, s, pad)
    CKK = C * K * K
    direct = C * s * s * Hh * Wh + (K - 1) // s + 2 * CKK + 1 + F * Ho * Wh
    compact = CKK * Ho * Wo + im2col_scratch_size(H, W, K, s, pad) + 2 * CKK + 1
    return max(direct, compact)


# How conv2d_forward_tiled runs a layer (tiled_way): declined (im2col and the BLAS), on the tiles from the
# input's polyphase planes, or on the tiles from im2col's matrix
TILED_DECLINED, TILED_PLANES, TILED_IM2COL = 0, 1, 2


@kernel
def tiled_way(C, H, W, K, stride, pad):
    """Which way ``conv2d_forward_tiled`` takes a float32 convolution of a (C, H, W) input: the planes where
    ``kernels.tile.direct_fits`` allows the wide grid, else im2col's matrix where ``kernels.tile.fits``
    allows its product, else neither (``TILED_*``)."""
    Ho, Wo, Hh, Wh = output_and_planes(H, W, K, stride, pad)
    if direct_fits(Ho, Wo, Wh):
        return TILED_PLANES
    if fits(Ho * Wo, C * K * K):
        return TILED_IM2COL
    return TILED_DECLINED


@kernel
def _int64_table(work, start, n):
    """An int64 view of n elements inside the float32 array ``work``, from float ``start`` or ``start + 1``,
    whichever is 8-byte aligned (2n + 1 floats must fit); returns (view, the float just past it)."""
    start += (work.ctypes.data // 4 + start) % 2
    return work[start:start + 2 * n].view(np.int64), start + 2 * n


@kernel
def plane_rows(C, K, stride, Hh, Wh, rows):
    """rows (C*K*K,) int64: where row (c, p, q) of a convolution's im2col matrix starts in its input's
    polyphase planes (channel c's stride^2 planes of Hh x Wh, one after another), counted over the wide
    grid of Ho rows of Wh columns (the module's docstring)."""
    s = stride
    for c in range(C):
        for p in range(K):
            for q in range(K):
                rows[(c * K + p) * K + q] = c * s * s * Hh * Wh + _tap_start(p, q, s, Hh, Wh)


@kernel
def conv2d_forward_tiled(x_n, w2, b, K, stride, pad, relu, work, out_n):
    """``conv2d_forward_sample`` on ``kernels.tile``'s tiles where they suit the layer (float32 only), from
    the input's polyphase planes (the module's docstring) or, for the narrowest outputs, from im2col's
    matrix. Returns False, having written nothing to out_n, where neither suits it (the caller then runs
    ``conv2d_forward_sample``). ``work``: flat float32 scratch of at least ``tiled_work_size`` elements.
    """
    C, H, W = x_n.shape
    F, CKK = w2.shape
    s = stride
    Ho, Wo, Hh, Wh = output_and_planes(H, W, K, s, pad)
    way = tiled_way(C, H, W, K, s, pad)
    if x_n.itemsize != 4 or way == TILED_DECLINED:
        return False
    if way == TILED_PLANES:
        plane, reach = Hh * Wh, (K - 1) // s
        n_planes = C * s * s * plane
        planes = work[:n_planes + reach]
        planes[:] = 0.0                                      # the borders, and the zeros after the last plane
        for c in range(C):
            _fill_phases(x_n[c], s, pad, planes[c * s * s * plane:(c + 1) * s * s * plane], Hh, Wh)
        rows, start = _int64_table(work, n_planes + reach, CKK)
        plane_rows(C, K, s, Hh, Wh, rows)
        N = Ho * Wh
        wide = work[start:start + F * N].reshape((F, N))
        if not tiles_bias(w2, planes, rows, b, relu, wide):
            return False
        for f in range(F):                                   # the Wo real columns of each wide row
            _copy_rows(wide[f], 0, Wh, out_n[f], 0, Ho, Wo)
        return True
    P = Ho * Wo                                              # TILED_IM2COL
    n_scratch = im2col_scratch_size(H, W, K, s, pad)
    cols = work[:CKK * P]
    im2col(x_n, K, s, pad, cols.reshape((CKK, P)), 0, work[CKK * P:CKK * P + n_scratch])
    rows, _ = _int64_table(work, CKK * P + n_scratch, CKK)
    matrix_rows(CKK, P, rows)
    return tiles_bias(w2, cols, rows, b, relu, out_n)


@kernel
def conv2d_backward_sample(dout_n, x_n, w2t, K, stride, pad, cols, dcols, scratch, dw_n, dw_acc, db_acc, want_dx,
                           dx_n):
    """One sample's share of the gradients of ``conv2d_forward_sample`` (without its ReLU).

    dout_n (F, Ho*Wo), x_n (C, H, W), w2t (C*K*K, F) = w2.T. Adds dout_n @ cols.T
    to dw_acc (F, C*K*K) (via the scratch dw_n) and dout_n's row sums to
    db_acc (F,); if want_dx, overwrites dx_n (C, H, W) with col2im(w2.T @ dout_n).
    cols, dcols (C*K*K, Ho*Wo) and ``scratch`` (``im2col``'s) are scratch.
    """
    im2col(x_n, K, stride, pad, cols, 0, scratch)
    _add_param_grads(dout_n, cols, dw_n, dw_acc, db_acc)
    if want_dx:
        matmul(w2t, dout_n, dcols)
        dx_n[:] = 0.0
        col2im_add(dcols, K, stride, pad, dx_n, 0, scratch)


@kernel
def conv2d_forward_chunk(rows, first, step, nb, x_off, C, H, W, w2, b, K, stride, pad, relu, tiled, cols, prod,
                         out_off):
    """nb samples through one convolution with one matrix product.

    rows (slots, L): one flat row per sample slot; the chunk's samples are the rows first, first + step, ...
    Each holds its input x (C, H, W) at x_off and receives its output (F, Ho*Wo) at out_off (+ b, then
    ReLU if relu). cols, prod: flat scratch of at least C*K*K * nb*Ho*Wo + im2col_scratch_size(...) (the
    columns, then ``im2col``'s own scratch) and F * nb*Ho*Wo. With ``tiled``, a chunk of one sample runs on
    the tiles where they suit the layer (``conv2d_forward_tiled``; cols then at least ``tiled_work_size``).
    """
    F, CKK = w2.shape
    Ho, Wo = output_size(H, W, K, stride, pad)
    P = Ho * Wo
    if tiled and nb == 1 and conv2d_forward_tiled(rows[first, x_off:x_off + C * H * W].reshape((C, H, W)), w2, b, K,
                                                  stride, pad, relu, cols,
                                                  rows[first, out_off:out_off + F * P].reshape((F, P))):
        return
    c = cols[:CKK * nb * P].reshape((CKK, nb * P))               # [im2col(x_0) | im2col(x_1) | ...]
    scratch = cols[CKK * nb * P:]
    for i in range(nb):
        n = first + i * step
        im2col(rows[n, x_off:x_off + C * H * W].reshape((C, H, W)), K, stride, pad, c, i * P, scratch)
    if nb == 1:                                                  # one sample: its product is its output
        matmul_bias(w2, c, b, relu, rows[first, out_off:out_off + F * P].reshape((F, P)))
        return
    pr = prod[:F * nb * P].reshape((F, nb * P))
    matmul_bias(w2, c, b, relu, pr)
    for i in range(nb):
        n = first + i * step
        out_n = rows[n, out_off:out_off + F * P].reshape((F, P))
        for f in range(F):
            for k in range(P):
                out_n[f, k] = pr[f, i * P + k]


@kernel
def conv2d_backward_chunk(douts, rows, first, step, nb, x_off, C, H, W, w2t, K, stride, pad, cols, dcols, dprod,
                          dw_n, dw_acc, db_acc, want_dx, dxs):
    """The gradients of ``conv2d_forward_chunk`` (without its ReLU), one product each for the chunk.

    douts (>= nb, >= F*Ho*Wo): sample i's output gradient in row i; rows, first, step, x_off, C, H, W as
    in the forward (the inputs). Adds the chunk's dw2 to dw_acc (F, C*K*K) (via the scratch dw_n) and its
    row sums to db_acc (F,); if want_dx, overwrites row i of dxs (>= nb, >= C*H*W) with sample i's dx.
    cols, dcols, dprod: flat scratch as in the forward (dprod holds the gathered douts; dcols needs no
    room for ``im2col``'s scratch, which comes from the end of cols).
    """
    CKK, F = w2t.shape
    Ho, Wo = output_size(H, W, K, stride, pad)
    P = Ho * Wo
    c = cols[:CKK * nb * P].reshape((CKK, nb * P))
    scratch = cols[CKK * nb * P:]
    dp = dprod[:F * nb * P].reshape((F, nb * P))
    for i in range(nb):
        n = first + i * step
        im2col(rows[n, x_off:x_off + C * H * W].reshape((C, H, W)), K, stride, pad, c, i * P, scratch)
        for f in range(F):
            for k in range(P):
                dp[f, i * P + k] = douts[i, f * P + k]
    _add_param_grads(dp, c, dw_n, dw_acc, db_acc)
    if want_dx:
        dc = dcols[:CKK * nb * P].reshape((CKK, nb * P))
        matmul(w2t, dp, dc)
        for i in range(nb):
            dx_i = dxs[i, :C * H * W].reshape((C, H, W))
            dx_i[:] = 0.0
            col2im_add(dc, K, stride, pad, dx_i, i * P, scratch)


@parallel_kernel
def conv2d_forward(x, w2, b, K, stride, pad, G, relu, out):
    """out (N, F, Ho, Wo) = conv(x (N, C, H, W), w2 (F, C*K*K)) + b (F,), then ReLU if relu."""
    N = x.shape[0]
    F, CKK = w2.shape
    P = out.shape[2] * out.shape[3]
    for g in prange(G):
        cols = np.empty((CKK, P), x.dtype)                       # (C*K*K, Ho*Wo)
        scratch = np.empty(im2col_scratch_size(x.shape[2], x.shape[3], K, stride, pad), x.dtype)
        for n in range(g, N, G):
            conv2d_forward_sample(x[n], w2, b, K, stride, pad, relu, cols, scratch, out[n].reshape(F, P))


@parallel_kernel
def conv2d_backward(dout, x, w2, K, stride, pad, G, dx, dw2, db):
    """Gradients of ``conv2d_forward``.

    dout (N, F, Ho, Wo), x (N, C, H, W), w2 (F, C*K*K) ->
    dx (N, C, H, W), dw2 (F, C*K*K), db (F,) (all overwritten).
    """
    N = x.shape[0]
    F, CKK = w2.shape
    P = dout.shape[2] * dout.shape[3]
    dw_parts = np.zeros((G, F, CKK), x.dtype)
    db_parts = np.zeros((G, F), x.dtype)
    w2t = w2.T                                                   # (C*K*K, F)
    for g in prange(G):
        cols = np.empty((CKK, P), x.dtype)
        dcols = np.empty((CKK, P), x.dtype)
        dw_n = np.empty((F, CKK), x.dtype)
        scratch = np.empty(im2col_scratch_size(x.shape[2], x.shape[3], K, stride, pad), x.dtype)
        for n in range(g, N, G):
            conv2d_backward_sample(dout[n].reshape(F, P), x[n], w2t, K, stride, pad, cols, dcols, scratch, dw_n,
                                   dw_parts[g], db_parts[g], True, dx[n])
    _sum_groups(dw_parts, dw2)
    _sum_groups(db_parts, db)


# --------------------------------------------------------------------------
# 1 x 1 convolution (network-in-network): no im2col
# --------------------------------------------------------------------------

@kernel
def conv1x1_forward_sample(x_n, w2, b, relu, out_n):
    """One sample: out_n (F, H*W) = w2 (F, C) @ x_n (C, H*W) + b, then ReLU if relu."""
    matmul_bias(w2, x_n, b, relu, out_n)


@kernel
def conv1x1_backward_sample(dout_n, x_n, w2t, dw_n, dw_acc, db_acc, want_dx, dx_n):
    """One sample's share of the 1x1 gradients: dw_acc (F, C) += dout_n (F, H*W) @ x_n.T (H*W, C)
    (via the scratch dw_n), db_acc (F,) += row sums; if want_dx, dx_n (C, H*W) = w2t (C, F) @ dout_n."""
    _add_param_grads(dout_n, x_n, dw_n, dw_acc, db_acc)
    if want_dx:
        matmul(w2t, dout_n, dx_n)


@parallel_kernel
def conv1x1_forward(x, w2, b, G, relu, out):
    """out (N, F, H, W) = w2 (F, C) applied at every pixel of x (N, C, H, W), + b (F,), then ReLU if relu."""
    N, C = x.shape[0], x.shape[1]
    F = w2.shape[0]
    P = x.shape[2] * x.shape[3]
    for g in prange(G):
        for n in range(g, N, G):
            conv1x1_forward_sample(x[n].reshape(C, P), w2, b, relu, out[n].reshape(F, P))


@parallel_kernel
def conv1x1_backward(dout, x, w2, G, dx, dw2, db):
    """Gradients of ``conv1x1_forward``: dx (N, C, H, W), dw2 (F, C), db (F,) overwritten."""
    N, C = x.shape[0], x.shape[1]
    F = w2.shape[0]
    P = x.shape[2] * x.shape[3]
    dw_parts = np.zeros((G, F, C), x.dtype)
    db_parts = np.zeros((G, F), x.dtype)
    w2t = w2.T                                                   # (C, F)
    for g in prange(G):
        dw_n = np.empty((F, C), x.dtype)
        for n in range(g, N, G):
            conv1x1_backward_sample(dout[n].reshape(F, P), x[n].reshape(C, P), w2t, dw_n, dw_parts[g],
                                    db_parts[g], True, dx[n].reshape(C, P))
    _sum_groups(dw_parts, dw2)
    _sum_groups(db_parts, db)


# --------------------------------------------------------------------------
# Reference: one shifted slice per filter tap, straight from the definition
# --------------------------------------------------------------------------

def conv2d_forward_reference(x, w, b, stride, pad):
    """Slow, obvious convolution: out = b + sum over taps (p, q) of w[:, :, p, q] . x shifted.

    x (N, C, H, W), w (F, C, K, K), b (F,) -> out (N, F, Ho, Wo).
    """
    N, C, H, W = x.shape
    F, _, K, _ = w.shape
    Ho = (H + 2 * pad - K) // stride + 1
    Wo = (W + 2 * pad - K) // stride + 1
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for p in range(K):
        for q in range(K):
            window = xpad[:, :, p:p + stride * Ho:stride, q:q + stride * Wo:stride]   # (N, C, Ho, Wo)
            out += np.einsum("fc,nchw->nfhw", w[:, :, p, q], window)
    return out + b[None, :, None, None]


def conv2d_backward_reference(dout, x, w, stride, pad):
    """Gradients of ``conv2d_forward_reference``, tap by tap. Returns (dx, dw, db)."""
    N, C, H, W = x.shape
    F, _, K, _ = w.shape
    Ho, Wo = dout.shape[2], dout.shape[3]
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    for p in range(K):
        for q in range(K):
            rows = slice(p, p + stride * Ho, stride)
            colz = slice(q, q + stride * Wo, stride)
            dw[:, :, p, q] = np.einsum("nfhw,nchw->fc", dout, xpad[:, :, rows, colz])
            dxpad[:, :, rows, colz] += np.einsum("fc,nfhw->nchw", w[:, :, p, q], dout)
    dx = dxpad[:, :, pad:pad + H, pad:pad + W]
    return np.ascontiguousarray(dx), dw, dout.sum(axis=(0, 2, 3))
