"""Area (box-filter) resize, NCHW: each output pixel is the mean of the input
area it covers, so shrinking does not alias.

Along one axis of input length S resized to So, output pixel o covers the
input interval [o s, (o + 1) s), s = S / So; input pixel p (covering [p, p+1))
gets weight |[p, p+1) ∩ [o s, (o+1) s)| / s. The weights of an output pixel
sum to 1. The 2-D resize is this along the columns and along the rows;
as a matrix product, out[n, c] = R_h (Ho, H) @ img[n, c] (H, W) @ R_w.T (W, Wo).

It is the fixed, parameter-free step that gives the alignment net its 50x50
copy of the 112x112 face (Table 2), so it has no backward pass.

The taps are passed in banded form: ``start (So,)`` is the first input pixel
of output o and ``weights (So, T)`` the weights of pixels start[o] .. start[o] + T - 1
(trailing weights 0).
"""
import numpy as np
from numba import prange

from kernels.jit import kernel, parallel_kernel


def area_weights(size, out_size):
    """Dense resize matrix R (out_size, size) of the area filter (the reference's form)."""
    R = np.zeros((out_size, size))
    scale = size / out_size
    for o in range(out_size):
        lo, hi = o * scale, (o + 1) * scale
        for p in range(int(np.floor(lo)), min(size, int(np.ceil(hi)))):
            R[o, p] = (min(hi, p + 1) - max(lo, p)) / scale
    return R


def area_taps(size, out_size, dtype):
    """Banded form of ``area_weights``: (start (out_size,) int64, weights (out_size, T)).

    Every window start[o] .. start[o] + T - 1 lies inside the input (a window
    that would run past the end starts earlier, with leading zero weights),
    so the kernel's tap loops have a fixed length and no bounds checks.
    """
    R = area_weights(size, out_size)
    nonzero = R > 0
    first = np.argmax(nonzero, axis=1)
    last = size - 1 - np.argmax(nonzero[:, ::-1], axis=1)
    T = int((last - first + 1).max())
    start = np.minimum(first, size - T)
    weights = np.zeros((out_size, T), dtype=dtype)
    for o in range(out_size):
        weights[o] = R[o, start[o]:start[o] + T]
    return start.astype(np.int64), weights


@kernel
def resize_plane(img_c, start_h, weights_h, start_w, weights_w, rows, out_c):
    """One channel plane: out_c (Ho, Wo) = area resize of img_c (H, W); rows (Ho, W) is scratch.

    Rows first (whole contiguous rows are blended, which vectorises), then
    columns on the already shorter image.
    """
    H, W = img_c.shape
    Ho, Wo = out_c.shape
    Th, Tw = weights_h.shape[1], weights_w.shape[1]
    rows[:] = 0.0
    for o in range(Ho):
        s = start_h[o]
        for t in range(Th):
            wt = weights_h[o, t]
            for q in range(W):
                rows[o, q] += wt * img_c[s + t, q]
    for o in range(Ho):
        for q in range(Wo):
            s = start_w[q]
            acc = 0.0
            for t in range(Tw):
                acc += weights_w[q, t] * rows[o, s + t]
            out_c[o, q] = acc


@parallel_kernel
def resize_forward(img, start_h, weights_h, start_w, weights_w, out):
    """out (N, C, Ho, Wo) = area resize of img (N, C, H, W) with banded taps per axis."""
    N, C, H, W = img.shape
    Ho = out.shape[2]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        rows = np.empty((Ho, W), img.dtype)                    # (Ho, W): resized along the rows
        resize_plane(img[n, c], start_h, weights_h, start_w, weights_w, rows, out[n, c])


def resize_forward_reference(img, out_h, out_w):
    """R_h @ img @ R_w.T for every image and channel, with dense resize matrices."""
    N, C, H, W = img.shape
    R_h, R_w = area_weights(H, out_h), area_weights(W, out_w)
    return np.einsum("oh,nchw,qw->ncoq", R_h, img, R_w).astype(img.dtype)
