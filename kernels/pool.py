"""Max-pooling over size x size windows with a stride, no padding, NCHW.

Shapes::

    x       (N, C, H, W)
    out     (N, C, Ho, Wo)    Ho = (H - size) // stride + 1, likewise Wo
    argmax  (N, C, Ho, Wo)    int32 offset p*size + q of the winner inside its window

Ties: the first maximum in row-major window order wins and alone receives
the gradient (windows with ties have no derivative; this is the subgradient
we pick). Backward adds dout to the winner, so overlapping windows
(stride < size) accumulate correctly. A NaN counts as larger than any number
and the first NaN of a window wins, as in np.max and np.argmax (the
references): a NaN in the activations reaches the loss.
"""
import numpy as np
from numba import prange

from kernels.jit import kernel, parallel_kernel


@kernel
def maxpool2d_forward_plane(x_c, size, stride, out_c, argmax_c):
    """One channel plane: out_c (Ho, Wo) = window maxima of x_c (H, W); argmax_c (Ho, Wo) the winners."""
    Ho, Wo = out_c.shape
    for i in range(Ho):
        for j in range(Wo):
            h0, w0 = i * stride, j * stride
            best = x_c[h0, w0]
            best_k = 0
            for p in range(size):
                for q in range(size):
                    v = x_c[h0 + p, w0 + q]
                    if v > best or (v != v and best == best):          # (a first NaN wins, as in np.argmax)
                        best = v
                        best_k = p * size + q
            out_c[i, j] = best
            argmax_c[i, j] = best_k


@kernel
def _first_max(x, i, y, j):
    """Of two window entries, x (index i) before y (index j) in row-major order: the one the tie rule
    keeps, with its index. NaN counts as larger than any number, and the first NaN wins (as in np.max and
    np.argmax), so a NaN reaches the loss."""
    return (x, i) if (x >= y or x != x) else (y, j)


@kernel
def _max_of_four(a, b, c, d):
    """(the maximum of a 2x2 window a, b / c, d; the index 0..3 of its first maximum in row-major order),
    as pairs of ``_first_max``: selects, no branches."""
    m1, k1 = _first_max(a, 0, b, 1)
    m2, k2 = _first_max(c, 2, d, 3)
    return _first_max(m1, k1, m2, k2)


@kernel
def maxpool2x2_forward_plane(x_c, stride, out_c, argmax_c):
    """The 2x2 case of ``maxpool2d_forward_plane`` (Table 2's pools: stride 2, and stride 1 once): same
    results. Each window is ``_max_of_four``, and Table 2's two strides get loops of their own, in which the
    stride is a constant: LLVM then vectorises the row, which the compare-and-branch scan of the general
    kernel does not allow."""
    Ho, Wo = out_c.shape
    for i in range(Ho):
        top, bottom = x_c[i * stride], x_c[i * stride + 1]
        out_row, k_row = out_c[i], argmax_c[i]
        if stride == 2:
            for j in range(Wo):
                out_row[j], k_row[j] = _max_of_four(top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1])
        elif stride == 1:
            for j in range(Wo):
                out_row[j], k_row[j] = _max_of_four(top[j], top[j + 1], bottom[j], bottom[j + 1])
        else:
            for j in range(Wo):
                w = j * stride
                out_row[j], k_row[j] = _max_of_four(top[w], top[w + 1], bottom[w], bottom[w + 1])


@kernel
def maxpool2d_forward_sample(x_n, size, stride, out_n, argmax_n):
    """One sample, every channel: x_n (C, H, W) -> out_n, argmax_n (C, Ho, Wo); 2x2 takes the unrolled path."""
    for c in range(x_n.shape[0]):
        if size == 2:
            maxpool2x2_forward_plane(x_n[c], stride, out_n[c], argmax_n[c])
        else:
            maxpool2d_forward_plane(x_n[c], size, stride, out_n[c], argmax_n[c])


@kernel
def maxpool2d_backward_plane(dout_c, argmax_c, size, stride, dx_c):
    """dx_c (H, W) overwritten: zero but at each window's winner, which gets the window's dout_c (Ho, Wo)."""
    dx_c[:] = 0.0
    Ho, Wo = dout_c.shape
    for i in range(Ho):
        for j in range(Wo):
            k = argmax_c[i, j]
            dx_c[i * stride + k // size, j * stride + k % size] += dout_c[i, j]


@kernel
def maxpool2x2_backward_plane(dout_c, argmax_c, dx_c):
    """The 2x2, stride-2 case of ``maxpool2d_backward_plane``: the windows do not overlap, so each one's
    four pixels are written once (the winner dout_c, the others 0) instead of zeroing dx_c first and adding.
    The last row and column of an odd-sized plane, in no window, are zeroed."""
    Ho, Wo = dout_c.shape
    H, W = dx_c.shape
    for i in range(Ho):
        for j in range(Wo):
            k = argmax_c[i, j]
            d = dout_c[i, j]
            dx_c[2 * i, 2 * j] = d if k == 0 else 0.0
            dx_c[2 * i, 2 * j + 1] = d if k == 1 else 0.0
            dx_c[2 * i + 1, 2 * j] = d if k == 2 else 0.0
            dx_c[2 * i + 1, 2 * j + 1] = d if k == 3 else 0.0
        for w in range(2 * Wo, W):
            dx_c[2 * i, w] = 0.0
            dx_c[2 * i + 1, w] = 0.0
    for h in range(2 * Ho, H):
        dx_c[h, :] = 0.0


@kernel
def maxpool2d_backward_sample(dout_n, argmax_n, size, stride, dx_n):
    """``maxpool2d_backward_plane`` over the channels of one sample: dout_n (C, Ho, Wo) -> dx_n (C, H, W);
    2x2/2 takes the unrolled path."""
    for c in range(dx_n.shape[0]):
        if size == 2 and stride == 2:
            maxpool2x2_backward_plane(dout_n[c], argmax_n[c], dx_n[c])
        else:
            maxpool2d_backward_plane(dout_n[c], argmax_n[c], size, stride, dx_n[c])


@parallel_kernel
def maxpool2d_forward(x, size, stride, out, argmax):
    N, C = x.shape[0], x.shape[1]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        maxpool2d_forward_plane(x[n, c], size, stride, out[n, c], argmax[n, c])


@parallel_kernel
def maxpool2x2_forward(x, stride, out, argmax):
    """The 2x2 case of ``maxpool2d_forward``: same results, unrolled."""
    N, C = x.shape[0], x.shape[1]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        maxpool2x2_forward_plane(x[n, c], stride, out[n, c], argmax[n, c])


@parallel_kernel
def maxpool2d_backward(dout, argmax, size, stride, dx):
    """dx (N, C, H, W) overwritten: zero but at each window's winner (2x2/2: the unrolled plane)."""
    N, C = dx.shape[0], dx.shape[1]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        if size == 2 and stride == 2:
            maxpool2x2_backward_plane(dout[n, c], argmax[n, c], dx[n, c])
        else:
            maxpool2d_backward_plane(dout[n, c], argmax[n, c], size, stride, dx[n, c])


def maxpool2d_forward_reference(x, size, stride):
    """Max over each window, one window at a time."""
    N, C, H, W = x.shape
    Ho, Wo = (H - size) // stride + 1, (W - size) // stride + 1
    out = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            window = x[:, :, i * stride:i * stride + size, j * stride:j * stride + size]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out


def maxpool2d_backward_reference(dout, x, size, stride):
    """Route each window's upstream gradient to its first maximum (row-major)."""
    N, C, H, W = x.shape
    Ho, Wo = dout.shape[2], dout.shape[3]
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = x[n, c, i * stride:i * stride + size, j * stride:j * stride + size]
                    p, q = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, i * stride + p, j * stride + q] += dout[n, c, i, j]
    return dx
