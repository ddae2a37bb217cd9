"""ReLU: out = max(x, 0), elementwise, any shape (the kernels see it flattened).

Kink convention: the derivative at exactly x = 0 is taken as 0 (the gradient
flows only where out > 0), the usual subgradient choice. Backward needs only
the forward output, since out > 0 exactly where x > 0.
"""
import numpy as np
from numba import prange

from kernels.jit import kernel, parallel_kernel


@parallel_kernel
def relu_forward(x, out):
    """out (M,) = max(x (M,), 0). A NaN stays NaN (``NaN > 0`` is false, so a
    plain comparison would silently turn it into 0 and hide a diverging run)."""
    for k in prange(x.shape[0]):
        v = x[k]
        out[k] = v if (v > 0.0 or v != v) else 0.0


@kernel
def relu_backward_serial(dout, out, dx):
    """dx (M,) = dout (M,) where out (M,) > 0, else 0, on the calling thread (dx may be dout itself)."""
    for k in range(dout.shape[0]):
        dx[k] = dout[k] if out[k] > 0.0 else 0.0


@parallel_kernel
def relu_backward(dout, out, dx):
    """``relu_backward_serial`` with the array cut into chunks that run on Numba's threads."""
    M = dout.shape[0]
    chunk = 16384
    for i in prange((M + chunk - 1) // chunk):
        lo, hi = i * chunk, min(M, (i + 1) * chunk)
        relu_backward_serial(dout[lo:hi], out[lo:hi], dx[lo:hi])


def relu_forward_reference(x):
    """max(x, 0) elementwise (np.maximum keeps NaN, like the kernel)."""
    return np.maximum(x, np.zeros_like(x))


def relu_backward_reference(dout, x):
    """dout where x > 0, else 0."""
    return np.where(x > 0, dout, np.zeros_like(dout))
