"""Max-pooling over size x size windows with a stride, no padding, NCHW.

Shapes::

    x       (N, C, H, W)
    out     (N, C, Ho, Wo)    Ho = (H - size) // stride + 1, likewise Wo
    argmax  (N, C, Ho, Wo)    int32 offset p*size + q of the winner inside its window

Ties: the first maximum in row-major window order wins and alone receives
the gradient (windows with ties have no derivative; this is the subgradient
we pick). Backward adds dout to the winner, so overlapping windows
(stride < size) accumulate correctly.
"""
import numpy as np
from numba import prange

from kernels.jit import parallel_kernel


@parallel_kernel
def maxpool2d_forward(x, size, stride, out, argmax):
    N, C = x.shape[0], x.shape[1]
    Ho, Wo = out.shape[2], out.shape[3]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for i in range(Ho):
            for j in range(Wo):
                h0, w0 = i * stride, j * stride
                best = x[n, c, h0, w0]
                best_k = 0
                for p in range(size):
                    for q in range(size):
                        v = x[n, c, h0 + p, w0 + q]
                        if v > best:
                            best = v
                            best_k = p * size + q
                out[n, c, i, j] = best
                argmax[n, c, i, j] = best_k


@parallel_kernel
def maxpool2x2_forward(x, out, argmax):
    """The 2x2, stride-2 case of ``maxpool2d_forward`` (Table 2's pools), unrolled: same results."""
    N, C = x.shape[0], x.shape[1]
    Ho, Wo = out.shape[2], out.shape[3]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for i in range(Ho):
            for j in range(Wo):
                best = x[n, c, 2 * i, 2 * j]
                k = 0
                v = x[n, c, 2 * i, 2 * j + 1]
                if v > best:
                    best, k = v, 1
                v = x[n, c, 2 * i + 1, 2 * j]
                if v > best:
                    best, k = v, 2
                v = x[n, c, 2 * i + 1, 2 * j + 1]
                if v > best:
                    best, k = v, 3
                out[n, c, i, j] = best
                argmax[n, c, i, j] = k


@parallel_kernel
def maxpool2d_backward(dout, argmax, size, stride, dx):
    """dx (N, C, H, W) overwritten: zero but at each window's winner."""
    N, C = dx.shape[0], dx.shape[1]
    Ho, Wo = dout.shape[2], dout.shape[3]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        dx[n, c] = 0.0
        for i in range(Ho):
            for j in range(Wo):
                k = argmax[n, c, i, j]
                dx[n, c, i * stride + k // size, j * stride + k % size] += dout[n, c, i, j]


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
