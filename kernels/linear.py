"""Affine (fully connected) layer.

Shapes::

    x    (N, D)     input rows
    w    (F, D)     weights, PyTorch/ONNX order (out, in)
    b    (F,)
    out  (N, F)     out = x @ w.T + b

Backward::

    dx = dout @ w          (N, D)
    dw = dout.T @ x        (F, D)
    db = dout.sum(0)       (F,)

The products go to BLAS (``kernels.blas.matmul``); the batch is small next to the convolutions
(Table 2's affine layers are under 2% of the multiply-adds), so no batch
parallelism is attempted here.
"""
import numpy as np

from kernels.blas import matmul
from kernels.jit import kernel


@kernel
def linear_forward(x, w, b, relu, out):
    """out (N, F) = x (N, D) @ w.T (D, F) + b (F,), then ReLU if relu."""
    matmul(x, w.T, out)
    N, F = out.shape
    for n in range(N):
        for f in range(F):
            v = out[n, f] + b[f]
            out[n, f] = 0.0 if (relu and v <= 0.0) else v


@kernel
def linear_backward(dout, x, w, dx, dw, db):
    """dx (N, D), dw (F, D), db (F,) from dout (N, F); all overwritten."""
    matmul(dout, w, dx)
    matmul(dout.T, x, dw)
    N, F = dout.shape
    db[:] = 0.0
    for n in range(N):
        for f in range(F):
            db[f] += dout[n, f]


def linear_forward_reference(x, w, b):
    """out[n, f] = b[f] + sum_d x[n, d] w[f, d], written as explicit sums."""
    N, F = x.shape[0], w.shape[0]
    out = np.empty((N, F), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            out[n, f] = b[f] + np.sum(x[n] * w[f])
    return out


def linear_backward_reference(dout, x, w):
    """(dx, dw, db) of ``linear_forward_reference`` as explicit sums over the batch."""
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for n in range(x.shape[0]):
        for f in range(w.shape[0]):
            dx[n] += dout[n, f] * w[f]
            dw[f] += dout[n, f] * x[n]
    return dx, dw, dout.sum(axis=0)
