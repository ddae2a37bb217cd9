"""The public forward/backward API: validation, allocation, dispatch.

Every op is a pair ``op_forward(...) -> (out, cache)`` and
``op_backward(dout, cache) -> grads``: the cache holds exactly what the
backward pass needs, and nothing else. Inputs are never modified.

Conventions (see the README for the shape vocabulary):

- Layout NCHW; convolution weights (F, C, K, K); linear weights (F, D)
  (out, in) -- the PyTorch/ONNX order, so models can be exchanged.
- float32 is the working dtype; float64 works everywhere (gradient checks).
  All floating arrays passed to one op must share one dtype; nothing is
  silently up- or down-cast.
- Non-contiguous inputs are accepted (copied to C order once, here).
- Bad input raises ``ValueError`` naming the op, the argument and the
  expected shape, before any kernel runs.

Threads: the kernels split the batch across Numba's threads and call BLAS
inside those loops, so BLAS should run on one thread; ``npface.threads``
sets both (the model and trainer do it for you).
"""
from typing import NamedTuple, Optional

import numba
import numpy as np

from kernels import activation, conv, linear, pair_distill, pair_hinge, pool, resize, warp

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------

def _float_array(op, name, a, shape_doc, ndim, dtype=None):
    """Check ``a`` is a float32/float64 array of ``ndim`` dims (and ``dtype``); return it C-contiguous."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{op}: {name} must be a numpy array of shape {shape_doc}, got {type(a).__name__}")
    if a.ndim != ndim:
        raise ValueError(f"{op}: {name} must have shape {shape_doc}, got shape {a.shape}")
    if a.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: {name} must be float32 or float64, got dtype {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise ValueError(f"{op}: {name} has dtype {a.dtype} but the other inputs are {dtype}; "
                         f"all float inputs of one op must share a dtype")
    if 0 in a.shape:
        raise ValueError(f"{op}: {name} must not be empty, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _positive_int(op, name, v, minimum=1):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{op}: {name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _finite_scalar(op, name, v):
    """``v`` (a Python or NumPy real, or a 0-d array) as a finite Python float."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not np.isfinite(v):
        raise ValueError(f"{op}: {name} must be a finite real scalar, got {v!r}")
    return float(v)


def _batch_groups(N):
    """How many groups the batch is split into for a parallel kernel: one per thread."""
    return max(1, min(N, numba.get_num_threads()))


# --------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------

class Conv2dCache(NamedTuple):
    x: np.ndarray        # (N, C, H, W)
    w: np.ndarray        # (F, C, K, K)
    stride: int
    pad: int
    out: Optional[np.ndarray]   # (N, F, Ho, Wo) the output when a ReLU was fused in, else None


def _relu_mask(dout, out):
    """dout where out > 0, else 0: the backward of a fused ReLU (a new array)."""
    dx = np.empty_like(dout)
    activation.relu_backward(dout.reshape(-1), out.reshape(-1), dx.reshape(-1))
    return dx


def conv2d_forward(x, w, b, stride=1, pad=0, relu=False):
    """2-D convolution (cross-correlation) with zero padding.

    x (N, C, H, W), w (F, C, K, K), b (F,) -> out (N, F, Ho, Wo) with
    Ho = (H + 2 pad - K) // stride + 1 and likewise Wo (both must be >= 1).
    out[n, f, i, j] = b[f] + sum_{c,p,q} w[f, c, p, q] xpad[n, c, i stride + p, j stride + q].
    A 1x1 convolution with stride 1 and no padding (a network-in-network
    layer) takes a fast path with no im2col. ``relu=True`` applies max(., 0)
    to the output in the same pass (conv + ReLU, as every convolution of
    Table 2 is followed by one); the backward pass then masks dout itself.
    """
    op = "conv2d_forward"
    x = _float_array(op, "x", x, "(N, C, H, W)", 4)
    w = _float_array(op, "w", w, "(F, C, K, K)", 4, x.dtype)
    b = _float_array(op, "b", b, "(F,)", 1, x.dtype)
    stride = _positive_int(op, "stride", stride)
    pad = _positive_int(op, "pad", pad, minimum=0)
    N, C, H, W = x.shape
    F, Cw, K, K2 = w.shape
    if K != K2:
        raise ValueError(f"{op}: w must have square kernels (F, C, K, K), got shape {w.shape}")
    if Cw != C:
        raise ValueError(f"{op}: w has {Cw} input channels but x has {C}: w must be (F, C={C}, K, K), got {w.shape}")
    if b.shape != (F,):
        raise ValueError(f"{op}: b must have shape (F,) = ({F},), got {b.shape}")
    Ho, Wo = conv.output_size(H, W, K, stride, pad)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"{op}: a {K}x{K} kernel with pad {pad} does not fit the {H}x{W} input "
                         f"(output would be {Ho}x{Wo}); pad more or use a smaller kernel")
    out = np.empty((N, F, Ho, Wo), dtype=x.dtype)
    w2 = w.reshape(F, C * K * K)
    relu = bool(relu)
    if K == 1 and stride == 1 and pad == 0:
        conv.conv1x1_forward(x, w2, b, _batch_groups(N), relu, out)
    else:
        conv.conv2d_forward(x, w2, b, K, stride, pad, _batch_groups(N), relu, out)
    return out, Conv2dCache(x, w, stride, pad, out if relu else None)


def conv2d_backward(dout, cache):
    """Gradients of ``conv2d_forward`` (with its ReLU, if fused): (dx (N, C, H, W), dw (F, C, K, K), db (F,))."""
    x, w, stride, pad, out = cache
    N, C, H, W = x.shape
    F, _, K, _ = w.shape
    expected = (N, F, *conv.output_size(H, W, K, stride, pad))
    dout = _float_array("conv2d_backward", "dout", dout, f"(N, F, Ho, Wo) = {expected}", 4, x.dtype)
    if dout.shape != expected:
        raise ValueError(f"conv2d_backward: dout must have shape (N, F, Ho, Wo) = {expected}, got {dout.shape}")
    if out is not None:
        dout = _relu_mask(dout, out)
    dx = np.empty_like(x)
    dw = np.empty_like(w)
    db = np.empty(F, dtype=x.dtype)
    w2, dw2 = w.reshape(F, -1), dw.reshape(F, -1)
    if K == 1 and stride == 1 and pad == 0:
        conv.conv1x1_backward(dout, x, w2, _batch_groups(N), dx, dw2, db)
    else:
        conv.conv2d_backward(dout, x, w2, K, stride, pad, _batch_groups(N), dx, dw2, db)
    return dx, dw, db


# --------------------------------------------------------------------------
# Affine
# --------------------------------------------------------------------------

class LinearCache(NamedTuple):
    x: np.ndarray        # (N, D)
    w: np.ndarray        # (F, D)
    out: Optional[np.ndarray]   # (N, F) the output when a ReLU was fused in, else None


def linear_forward(x, w, b, relu=False):
    """Affine layer: x (N, D), w (F, D), b (F,) -> out (N, F) = x @ w.T + b (then max(., 0) if relu)."""
    op = "linear_forward"
    x = _float_array(op, "x", x, "(N, D)", 2)
    w = _float_array(op, "w", w, "(F, D)", 2, x.dtype)
    b = _float_array(op, "b", b, "(F,)", 1, x.dtype)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"{op}: w must have shape (F, D={x.shape[1]}) to match x {x.shape}, got {w.shape}")
    if b.shape != (w.shape[0],):
        raise ValueError(f"{op}: b must have shape (F,) = ({w.shape[0]},), got {b.shape}")
    out = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    linear.linear_forward(x, w, b, bool(relu), out)
    return out, LinearCache(x, w, out if relu else None)


def linear_backward(dout, cache):
    """Gradients of ``linear_forward`` (with its ReLU, if fused): (dx (N, D), dw (F, D), db (F,))."""
    x, w, out = cache
    expected = (x.shape[0], w.shape[0])
    dout = _float_array("linear_backward", "dout", dout, f"(N, F) = {expected}", 2, x.dtype)
    if dout.shape != expected:
        raise ValueError(f"linear_backward: dout must have shape (N, F) = {expected}, got {dout.shape}")
    if out is not None:
        dout = _relu_mask(dout, out)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(w.shape[0], dtype=x.dtype)
    linear.linear_backward(dout, x, w, dx, dw, db)
    return dx, dw, db


# --------------------------------------------------------------------------
# ReLU
# --------------------------------------------------------------------------

class ReluCache(NamedTuple):
    out: np.ndarray      # the forward output, any shape: the gradient flows where out > 0


def relu_forward(x):
    """out = max(x, 0) elementwise, any shape. The derivative at exactly 0 is taken as 0."""
    if not isinstance(x, np.ndarray) or x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"relu_forward: x must be a float32 or float64 array, got "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    x = np.ascontiguousarray(x).reshape(x.shape)          # (ascontiguousarray makes 0-d arrays 1-d)
    out = np.empty_like(x)
    if x.size:
        activation.relu_forward(x.reshape(-1), out.reshape(-1))
    return out, ReluCache(out)


def relu_backward(dout, cache):
    """dx = dout where the forward output was > 0, else 0."""
    out = cache.out
    if not isinstance(dout, np.ndarray) or dout.shape != out.shape or dout.dtype != out.dtype:
        raise ValueError(f"relu_backward: dout must be a {out.dtype} array of the forward shape {out.shape}, "
                         f"got {getattr(dout, 'dtype', type(dout).__name__)} {getattr(dout, 'shape', '')}")
    dout = np.ascontiguousarray(dout).reshape(out.shape)
    dx = np.empty_like(out)
    if out.size:
        activation.relu_backward(dout.reshape(-1), out.reshape(-1), dx.reshape(-1))
    return dx


# --------------------------------------------------------------------------
# Max-pool
# --------------------------------------------------------------------------

class MaxPoolCache(NamedTuple):
    x_shape: tuple       # (N, C, H, W)
    x_dtype: np.dtype    # the forward's dtype: dout and dx share it
    argmax: np.ndarray   # (N, C, Ho, Wo) int32: winner's offset p*size + q in its window
    size: int
    stride: int


def maxpool2d_forward(x, size=2, stride=2):
    """Max over size x size windows moved by stride, no padding.

    x (N, C, H, W) -> out (N, C, Ho, Wo), Ho = (H - size) // stride + 1.
    Ties go to the first maximum in row-major window order.
    """
    op = "maxpool2d_forward"
    x = _float_array(op, "x", x, "(N, C, H, W)", 4)
    size = _positive_int(op, "size", size)
    stride = _positive_int(op, "stride", stride)
    N, C, H, W = x.shape
    if H < size or W < size:
        raise ValueError(f"{op}: x must be at least {size}x{size} for a {size}x{size} window, got {H}x{W}")
    Ho, Wo = (H - size) // stride + 1, (W - size) // stride + 1
    out = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    argmax = np.empty((N, C, Ho, Wo), dtype=np.int32)
    if size == 2:
        pool.maxpool2x2_forward(x, stride, out, argmax)
    else:
        pool.maxpool2d_forward(x, size, stride, out, argmax)
    return out, MaxPoolCache(x.shape, x.dtype, argmax, size, stride)


def maxpool2d_backward(dout, cache):
    """dx (N, C, H, W): each window's upstream gradient goes to its maximum."""
    x_shape, x_dtype, argmax, size, stride = cache
    dout = _float_array("maxpool2d_backward", "dout", dout, f"{argmax.shape}", 4, x_dtype)
    if dout.shape != argmax.shape:
        raise ValueError(f"maxpool2d_backward: dout must have shape (N, C, Ho, Wo) = {argmax.shape}, got {dout.shape}")
    dx = np.empty(x_shape, dtype=dout.dtype)
    pool.maxpool2d_backward(dout, argmax, size, stride, dx)
    return dx


# --------------------------------------------------------------------------
# Bilinear warp
# --------------------------------------------------------------------------

class WarpCache(NamedTuple):
    img: np.ndarray      # (N, C, H, W)
    theta: np.ndarray    # (N, 2, 3)
    out_h: int
    out_w: int


def warp_forward(img, theta, out_h, out_w):
    """Resample each image through an affine map of normalised coordinates.

    img (N, C, H, W), theta (N, 2, 3) -> out (N, C, out_h, out_w). theta maps
    an output pixel's normalised position (x_o, y_o, 1) to the input position
    (x_i, y_i) it samples; normalised coordinates run over [-1, 1] edge to
    edge with pixel p's centre at (2p + 1)/size - 1; bilinear, zero outside
    (ONNX AffineGrid + GridSample, align_corners = 0). See ``kernels.warp``.
    """
    op = "warp_forward"
    img = _float_array(op, "img", img, "(N, C, H, W)", 4)
    theta = _float_array(op, "theta", theta, "(N, 2, 3)", 3, img.dtype)
    if theta.shape != (img.shape[0], 2, 3):
        raise ValueError(f"{op}: theta must have shape (N, 2, 3) = ({img.shape[0]}, 2, 3), got {theta.shape}")
    out_h = _positive_int(op, "out_h", out_h)
    out_w = _positive_int(op, "out_w", out_w)
    out = np.empty((img.shape[0], img.shape[1], out_h, out_w), dtype=img.dtype)
    warp.warp_forward(img, theta, out)
    return out, WarpCache(img, theta, out_h, out_w)


def warp_backward(dout, cache):
    """Gradients of ``warp_forward``: (dimg (N, C, H, W), dtheta (N, 2, 3))."""
    img, theta, out_h, out_w = cache
    dout = _float_array("warp_backward", "dout", dout, "(N, C, out_h, out_w)", 4, img.dtype)
    expected = (img.shape[0], img.shape[1], out_h, out_w)
    if dout.shape != expected:
        raise ValueError(f"warp_backward: dout must have shape (N, C, out_h, out_w) = {expected}, got {dout.shape}")
    dimg, dtheta = np.empty_like(img), np.empty_like(theta)
    warp.warp_backward(dout, img, theta, dimg, dtheta)
    return dimg, dtheta


def pose_to_theta(pose):
    """Warp matrices of similarity poses: pose (N, 4) = (a, b, tx, ty) -> theta (N, 2, 3), same float dtype.

    theta = [[a, -b, tx], [b, a, ty]]: a rotation by atan2(b, a), a scale
    sqrt(a^2 + b^2) and a shift, in the warp convention above (output ->
    input, normalised coordinates). The alignment net predicts the pose; its
    chain rule is ``npface.model.dtheta_to_dpose``.
    """
    p = np.asarray(pose)
    if p.ndim != 2 or p.shape[1] != 4 or p.dtype not in FLOAT_DTYPES:
        raise ValueError(f"pose must be a float array of shape (N, 4) = (a, b, tx, ty), "
                         f"got shape {p.shape}, dtype {p.dtype}")
    theta = np.empty((len(p), 2, 3), dtype=p.dtype)                          # (N, 2, 3)
    warp.pose_to_theta(np.ascontiguousarray(p), theta)
    return theta


def compose_theta(theta1, theta2):
    """theta1 o theta2 (N, 2, 3): the warp by theta1 followed by the warp by theta2, as one warp.

    Warping an image by theta1 and the result by theta2 samples the input at
    theta1 (theta2 p) for each output point p (``kernels.warp``'s convention:
    theta maps output to input); warping the input once by the composition
    samples the same points, with one bilinear interpolation instead of two.
    """
    op = "compose_theta"
    theta1 = _float_array(op, "theta1", theta1, "(N, 2, 3)", 3)
    theta2 = _float_array(op, "theta2", theta2, "(N, 2, 3)", 3, theta1.dtype)
    if theta1.shape[1:] != (2, 3) or theta2.shape != theta1.shape:
        raise ValueError(f"{op}: theta1 and theta2 must both have shape (N, 2, 3), got {theta1.shape} and "
                         f"{theta2.shape}")
    out = np.empty_like(theta1)
    warp.compose_theta(theta1, theta2, out)
    return out


# --------------------------------------------------------------------------
# Area resize (no parameters, so no backward)
# --------------------------------------------------------------------------

_resize_taps = {}


def resize_area(img, out_h, out_w):
    """Shrink (or grow) images by area averaging: img (N, C, H, W) -> (N, C, out_h, out_w).

    Each output pixel is the mean of the input area it covers (a box filter),
    so shrinking does not alias. Used for the alignment net's 50x50 copy of
    the face; a fixed data step, so it has no backward pass.
    """
    op = "resize_area"
    img = _float_array(op, "img", img, "(N, C, H, W)", 4)
    out_h = _positive_int(op, "out_h", out_h)
    out_w = _positive_int(op, "out_w", out_w)
    N, C, H, W = img.shape
    key = (H, W, out_h, out_w, img.dtype)
    if key not in _resize_taps:                      # a handful of sizes per process: cache the taps
        _resize_taps[key] = resize.area_taps(H, out_h, img.dtype) + resize.area_taps(W, out_w, img.dtype)
    start_h, weights_h, start_w, weights_w = _resize_taps[key]
    out = np.empty((N, C, out_h, out_w), dtype=img.dtype)
    resize.resize_forward(img, start_h, weights_h, start_w, weights_w, out)
    return out


# --------------------------------------------------------------------------
# Pairwise hinge loss (paper eq. 2-3)
# --------------------------------------------------------------------------

class PairHingeCache(NamedTuple):
    emb: np.ndarray      # (k, D)
    A: np.ndarray        # (k, k) w_ij y_ij summed over the active pairs (i, j)
    dthreshold: float    # dL/dtheta


def pair_hinge_forward(emb, labels, threshold, pairs: Optional[np.ndarray] = None, balance=True):
    """Mean hinge loss over a set of pairs with a learned global threshold.

    emb (k, D) signatures, labels (k,) integer identities, threshold a real
    scalar. For a pair (i, j): d = ||e_i - e_j||^2, y = +1 if same label else
    -1, loss max(0, 1 - y (threshold - d)) (eq. 2). The pair set is all k^2 - k
    ordered pairs i != j when ``pairs`` is None (the Multibatch estimator),
    else the rows (i, j) of ``pairs`` (P, 2) (e.g. k/2 random pairs).
    ``balance=False``: the plain mean (eq. 3). ``balance=True``: half the mean
    over same pairs plus half the mean over not-same pairs (one group empty:
    the mean of the other). At a hinge's kink (exactly 0) the subgradient 0 is
    used. Returns (loss as a Python float, cache).
    """
    op = "pair_hinge_forward"
    emb = _float_array(op, "emb", emb, "(k, D)", 2)
    k = emb.shape[0]
    labels = np.asarray(labels)
    if labels.shape != (k,) or labels.dtype.kind not in "iu":
        raise ValueError(f"{op}: labels must be an integer array of shape (k,) = ({k},), "
                         f"got {labels.dtype} {labels.shape}")
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    threshold = _finite_scalar(op, "threshold", threshold)
    A = np.empty((k, k), dtype=emb.dtype)
    if pairs is None:
        if k < 2:
            raise ValueError(f"{op}: all-pairs mode needs at least 2 signatures, got k = {k}")
        n_same, n_diff = pair_hinge.count_all_pairs(labels)
        w_same, w_diff = pair_hinge.pair_weights(n_same, n_diff, bool(balance))
        loss, dthreshold = pair_hinge.pair_hinge_all_forward(emb, labels, threshold, w_same, w_diff, A)
    else:
        pairs = np.asarray(pairs)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] == 0 or pairs.dtype.kind not in "iu":
            raise ValueError(f"{op}: pairs must be a non-empty integer array of shape (P, 2), "
                             f"got {pairs.dtype} {pairs.shape}")
        if pairs.min() < 0 or pairs.max() >= k:
            raise ValueError(f"{op}: pairs index signatures 0..{k - 1}, got values in "
                             f"[{pairs.min()}, {pairs.max()}]")
        if np.any(pairs[:, 0] == pairs[:, 1]):
            raise ValueError(f"{op}: pairs must not pair a signature with itself (row "
                             f"{int(np.argmax(pairs[:, 0] == pairs[:, 1]))})")
        pairs = np.ascontiguousarray(pairs, dtype=np.int64)
        n_same, n_diff = pair_hinge.count_listed_pairs(labels, pairs)
        w_same, w_diff = pair_hinge.pair_weights(n_same, n_diff, bool(balance))
        loss, dthreshold = pair_hinge.pair_hinge_listed_forward(emb, labels, pairs, threshold, w_same, w_diff, A)
    return float(loss), PairHingeCache(emb, A, float(dthreshold))


def pair_hinge_backward(cache, dloss=1.0):
    """Gradients of the loss scaled by ``dloss``: (demb (k, D), dthreshold as a Python float)."""
    emb, A, dthreshold = cache
    if isinstance(dloss, np.ndarray) and dloss.ndim == 0:
        dloss = dloss.item()
    if isinstance(dloss, (bool, np.bool_)) or not isinstance(dloss, (int, float, np.integer, np.floating)):
        raise ValueError(f"pair_hinge_backward: dloss must be a real scalar, got {dloss!r}")
    demb = np.empty_like(emb)
    pair_hinge.pair_hinge_backward(emb, A, float(dloss), demb)
    return demb, float(dloss) * dthreshold


# --------------------------------------------------------------------------
# Distance distillation over all pairs (kernels/pair_distill.py)
# --------------------------------------------------------------------------

class PairDistillCache(NamedTuple):
    emb: np.ndarray      # (k, D)
    A: np.ndarray        # (k, k) dL/dd_ij of every ordered pair (i, j), 0 on the diagonal


def pair_distill_forward(emb, teacher, threshold):
    """Mean Huber loss of the mismatch of the student's and a teacher's pair distances, over all k^2 - k pairs.

    emb (k, D) the student's signatures; teacher (k, E) the teacher's embedding
    of the same k faces (same float dtype); threshold the student's theta (a
    finite positive scalar, held constant). For a pair (i, j):
    r = ||e_i - e_j||^2 / threshold - ||t_i - t_j||^2, and the loss is the mean
    of huber(r) = r^2 / 2 for |r| <= 1, |r| - 1/2 beyond (``kernels/pair_distill.py``).
    Returns (loss as a Python float, cache).
    """
    op = "pair_distill_forward"
    emb = _float_array(op, "emb", emb, "(k, D)", 2)
    k = emb.shape[0]
    if k < 2:
        raise ValueError(f"{op}: needs at least 2 signatures, got k = {k}")
    teacher = _float_array(op, "teacher", teacher, f"(k, E) = ({k}, E)", 2, emb.dtype)
    if teacher.shape[0] != k:
        raise ValueError(f"{op}: teacher must have one row per signature, shape ({k}, E), got {teacher.shape}")
    if not np.all(np.isfinite(teacher)):
        raise ValueError(f"{op}: teacher holds non-finite values")
    threshold = _finite_scalar(op, "threshold", threshold)
    if threshold <= 0:
        raise ValueError(f"{op}: threshold must be positive, got {threshold!r}")
    A = np.empty((k, k), dtype=emb.dtype)
    loss = pair_distill.pair_distill_all_forward(emb, teacher, threshold, A)
    return float(loss), PairDistillCache(emb, A)


def pair_distill_backward(cache, dloss=1.0):
    """dL/demb (k, D) of the distillation loss, scaled by ``dloss`` (``pair_hinge``'s kernel: only A differs)."""
    emb, A = cache
    dloss = _finite_scalar("pair_distill_backward", "dloss", dloss)
    demb = np.empty_like(emb)
    pair_hinge.pair_hinge_backward(emb, A, dloss, demb)
    return demb
