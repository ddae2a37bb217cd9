"""Bilinear warp of an image by an affine transform (a spatial-transformer sampler).

Notation::

    img    (N, C, H, W)          input images
    theta  (N, 2, 3)             one affine transform per image
    out    (N, C, Ho, Wo)        warped images

Coordinate convention (exactly ONNX AffineGrid + GridSample with bilinear
interpolation, zero padding and align_corners = 0):

- Normalised coordinates span [-1, 1] across an image, edge to edge. Pixel
  index p of an axis of length S has its centre at u = (2p + 1) / S - 1;
  x is the column (horizontal) axis, y the row axis.
- ``theta`` maps an OUTPUT pixel's normalised position to the INPUT position
  it samples::

      [x_i]   [t00 t01 t02]   [x_o]
      [y_i] = [t10 t11 t12] . [y_o]
                              [ 1 ]

  so the identity [[1, 0, 0], [0, 1, 0]] with Ho = H, Wo = W copies the image.
- Back to input pixel units ("unnormalise"): ix = ((x_i + 1) W - 1) / 2,
  iy = ((y_i + 1) H - 1) / 2.
- Bilinear interpolation between the four pixels around (ix, iy), with
  x0 = floor(ix), wx = ix - x0 (likewise y0, wy), and pixels outside the
  image read as 0::

      out = (1-wy)(1-wx) v00 + (1-wy) wx v01 + wy (1-wx) v10 + wy wx v11

Gradients. ``out`` is linear in ``img``: dimg scatters dout back to the four
pixels with the same weights. In theta, through (ix, iy)::

      d out / d ix = (1-wy)(v01 - v00) + wy (v11 - v10)
      d out / d iy = (1-wx)(v10 - v00) + wx (v11 - v01)
      d ix / d theta[0, :] = (W / 2) (x_o, y_o, 1),  d iy / d theta[1, :] = (H / 2) (x_o, y_o, 1)

These are the derivatives inside a pixel cell; where ix or iy is exactly an
integer the bilinear surface has a crease, and we take the one-sided
derivative of the cell that ``floor`` selects.
"""
import math

import numpy as np
from numba import prange

from kernels.jit import kernel, parallel_kernel


@kernel
def _pixel(img_n, c, y, x):
    """img_n[c, y, x], or 0 outside the image."""
    H, W = img_n.shape[1], img_n.shape[2]
    if 0 <= y < H and 0 <= x < W:
        return img_n[c, y, x]
    return 0.0


@kernel
def _sample_point(t, x_o, y_o, H, W):
    """(x0, y0, wx, wy): the top-left pixel of the bilinear cell that output point
    (x_o, y_o) samples through theta ``t`` (2, 3), and the offsets inside it."""
    ix = ((t[0, 0] * x_o + t[0, 1] * y_o + t[0, 2] + 1.0) * W - 1.0) * 0.5
    iy = ((t[1, 0] * x_o + t[1, 1] * y_o + t[1, 2] + 1.0) * H - 1.0) * 0.5
    fx, fy = math.floor(ix), math.floor(iy)
    return int(fx), int(fy), ix - fx, iy - fy


@kernel
def pose_to_theta_sample(pose, t):
    """pose (4,) = (a, b, tx, ty) -> t (2, 3) = [[a, -b, tx], [b, a, ty]], the similarity transform."""
    a, b, tx, ty = pose[0], pose[1], pose[2], pose[3]
    t[0, 0], t[0, 1], t[0, 2] = a, -b, tx
    t[1, 0], t[1, 1], t[1, 2] = b, a, ty


@kernel
def dtheta_to_dpose_sample(dt, dpose):
    """The chain rule through ``pose_to_theta_sample``: dt (2, 3) -> dpose (4,)."""
    dpose[0] = dt[0, 0] + dt[1, 1]
    dpose[1] = dt[1, 0] - dt[0, 1]
    dpose[2] = dt[0, 2]
    dpose[3] = dt[1, 2]


@kernel
def compose_theta_sample(t1, t2, out):
    """out (2, 3) = t1 o t2: sampling through t2, then through t1 (the warp convention above).

    A point p of the output goes to t2 p in the image that t1's warp made, which t1 maps to the
    input: out p = A1 (A2 p + b2) + b1, so out = [A1 A2 | A1 b2 + b1] for t = [A | b]. ``out`` may be
    ``t1`` or ``t2`` (every entry is read before any is written).
    """
    a00 = t1[0, 0] * t2[0, 0] + t1[0, 1] * t2[1, 0]
    a01 = t1[0, 0] * t2[0, 1] + t1[0, 1] * t2[1, 1]
    a10 = t1[1, 0] * t2[0, 0] + t1[1, 1] * t2[1, 0]
    a11 = t1[1, 0] * t2[0, 1] + t1[1, 1] * t2[1, 1]
    b0 = t1[0, 0] * t2[0, 2] + t1[0, 1] * t2[1, 2] + t1[0, 2]
    b1 = t1[1, 0] * t2[0, 2] + t1[1, 1] * t2[1, 2] + t1[1, 2]
    out[0, 0], out[0, 1], out[0, 2] = a00, a01, b0
    out[1, 0], out[1, 1], out[1, 2] = a10, a11, b1


@kernel
def compose_theta(theta1, theta2, out):
    """out (N, 2, 3) = theta1 o theta2, row by row (``compose_theta_sample``)."""
    for n in range(theta1.shape[0]):
        compose_theta_sample(theta1[n], theta2[n], out[n])


@kernel
def pose_to_theta(pose, theta):
    """pose (N, 4) -> theta (N, 2, 3), row by row."""
    for n in range(pose.shape[0]):
        pose_to_theta_sample(pose[n], theta[n])


@kernel
def dtheta_to_dpose(dtheta, dpose):
    """dtheta (N, 2, 3) -> dpose (N, 4), row by row."""
    for n in range(dtheta.shape[0]):
        dtheta_to_dpose_sample(dtheta[n], dpose[n])


@kernel
def warp_forward_sample(img_n, t, out_n):
    """One image: out_n (C, Ho, Wo) = img_n (C, H, W) sampled through t (2, 3), all channels per grid point."""
    C, H, W = img_n.shape
    Ho, Wo = out_n.shape[1], out_n.shape[2]
    one = img_n.dtype.type(1.0)
    for i in range(Ho):
        y_o = (2.0 * i + 1.0) / Ho - 1.0
        for j in range(Wo):
            x_o = (2.0 * j + 1.0) / Wo - 1.0
            x0, y0, wx_, wy_ = _sample_point(t, x_o, y_o, H, W)
            # the bilinear weights in the image's dtype: a float32 blend of float32 pixels runs twice as
            # fast as one promoted to float64 (the position itself is found in float64)
            wx, wy = img_n.dtype.type(wx_), img_n.dtype.type(wy_)
            w00, w01 = (one - wy) * (one - wx), (one - wy) * wx
            w10, w11 = wy * (one - wx), wy * wx
            if 0 <= x0 and x0 + 1 < W and 0 <= y0 and y0 + 1 < H:
                # the whole cell is inside the image: no bounds checks
                for c in range(C):
                    out_n[c, i, j] = (w00 * img_n[c, y0, x0] + w01 * img_n[c, y0, x0 + 1]
                                      + w10 * img_n[c, y0 + 1, x0] + w11 * img_n[c, y0 + 1, x0 + 1])
            else:
                for c in range(C):
                    out_n[c, i, j] = (w00 * _pixel(img_n, c, y0, x0) + w01 * _pixel(img_n, c, y0, x0 + 1)
                                      + w10 * _pixel(img_n, c, y0 + 1, x0) + w11 * _pixel(img_n, c, y0 + 1, x0 + 1))


@parallel_kernel
def warp_forward(img, theta, out):
    for n in prange(img.shape[0]):
        warp_forward_sample(img[n], theta[n], out[n])


@kernel
def _scatter(dimg_n, c, y, x, v):
    H, W = dimg_n.shape[1], dimg_n.shape[2]
    if 0 <= y < H and 0 <= x < W:
        dimg_n[c, y, x] += v


@kernel
def warp_backward_sample(dout_n, img_n, t, want_dimg, dimg_n, dt):
    """One image's gradients: dt (2, 3) overwritten from dout_n (C, Ho, Wo); dimg_n (C, H, W) overwritten
    too if want_dimg (a network whose input needs no gradient skips that scatter)."""
    C, H, W = img_n.shape
    Ho, Wo = dout_n.shape[1], dout_n.shape[2]
    if want_dimg:
        dimg_n[:] = 0.0
    g00 = g01 = g02 = g10 = g11 = g12 = 0.0
    for i in range(Ho):
        y_o = (2.0 * i + 1.0) / Ho - 1.0
        for j in range(Wo):
            x_o = (2.0 * j + 1.0) / Wo - 1.0
            x0, y0, wx, wy = _sample_point(t, x_o, y_o, H, W)
            d_ix = 0.0                                  # sum_c dout * d out / d ix
            d_iy = 0.0
            inside = 0 <= x0 and x0 + 1 < W and 0 <= y0 and y0 + 1 < H
            for c in range(C):
                g = dout_n[c, i, j]
                if inside:
                    v00, v01 = img_n[c, y0, x0], img_n[c, y0, x0 + 1]
                    v10, v11 = img_n[c, y0 + 1, x0], img_n[c, y0 + 1, x0 + 1]
                    if want_dimg:
                        dimg_n[c, y0, x0] += g * (1.0 - wy) * (1.0 - wx)
                        dimg_n[c, y0, x0 + 1] += g * (1.0 - wy) * wx
                        dimg_n[c, y0 + 1, x0] += g * wy * (1.0 - wx)
                        dimg_n[c, y0 + 1, x0 + 1] += g * wy * wx
                else:
                    v00, v01 = _pixel(img_n, c, y0, x0), _pixel(img_n, c, y0, x0 + 1)
                    v10, v11 = _pixel(img_n, c, y0 + 1, x0), _pixel(img_n, c, y0 + 1, x0 + 1)
                    if want_dimg:
                        _scatter(dimg_n, c, y0, x0, g * (1.0 - wy) * (1.0 - wx))
                        _scatter(dimg_n, c, y0, x0 + 1, g * (1.0 - wy) * wx)
                        _scatter(dimg_n, c, y0 + 1, x0, g * wy * (1.0 - wx))
                        _scatter(dimg_n, c, y0 + 1, x0 + 1, g * wy * wx)
                d_ix += g * ((1.0 - wy) * (v01 - v00) + wy * (v11 - v10))
                d_iy += g * ((1.0 - wx) * (v10 - v00) + wx * (v11 - v01))
            d_xi = d_ix * 0.5 * W                       # chain rule through the unnormalisation
            d_yi = d_iy * 0.5 * H
            g00 += d_xi * x_o
            g01 += d_xi * y_o
            g02 += d_xi
            g10 += d_yi * x_o
            g11 += d_yi * y_o
            g12 += d_yi
    dt[0, 0] = g00
    dt[0, 1] = g01
    dt[0, 2] = g02
    dt[1, 0] = g10
    dt[1, 1] = g11
    dt[1, 2] = g12


@parallel_kernel
def warp_backward(dout, img, theta, dimg, dtheta):
    """dimg (N, C, H, W) and dtheta (N, 2, 3), both overwritten, from dout (N, C, Ho, Wo)."""
    for n in prange(img.shape[0]):
        warp_backward_sample(dout[n], img[n], theta[n], True, dimg[n], dtheta[n])


# --------------------------------------------------------------------------
# Reference: the same formulas, vectorised over pixels with NumPy
# --------------------------------------------------------------------------

def _sample_points_reference(theta, H, W, Ho, Wo):
    """(ix, iy), each (N, Ho, Wo): input pixel coordinates sampled by each output pixel."""
    y_o, x_o = np.meshgrid((2 * np.arange(Ho) + 1) / Ho - 1, (2 * np.arange(Wo) + 1) / Wo - 1, indexing="ij")
    grid = np.stack([x_o, y_o, np.ones_like(x_o)], axis=-1)            # (Ho, Wo, 3)
    xy = np.einsum("nrk,hwk->nhwr", theta, grid)                       # (N, Ho, Wo, 2)
    return ((xy[..., 0] + 1) * W - 1) / 2, ((xy[..., 1] + 1) * H - 1) / 2


def _corners_reference(ix, iy, H, W):
    """The four bilinear corners: list of (y, x, weight, inside), each (N, Ho, Wo)."""
    x0, y0 = np.floor(ix).astype(np.int64), np.floor(iy).astype(np.int64)
    wx, wy = ix - x0, iy - y0
    corners = []
    for dy, wyk in ((0, 1 - wy), (1, wy)):
        for dx, wxk in ((0, 1 - wx), (1, wx)):
            y, x = y0 + dy, x0 + dx
            inside = (y >= 0) & (y < H) & (x >= 0) & (x < W)
            corners.append((np.clip(y, 0, H - 1), np.clip(x, 0, W - 1), wyk * wxk, inside))
    return corners


def compose_theta_reference(theta1, theta2):
    """theta1 o theta2 (N, 2, 3) as 3 x 3 matrices: [theta1; 0 0 1] @ [theta2; 0 0 1], top two rows."""
    last = np.broadcast_to(np.array([0.0, 0.0, 1.0]), (len(theta2), 1, 3))
    return (theta1 @ np.concatenate([theta2, last], axis=1)).astype(theta1.dtype)


def warp_forward_reference(img, theta, out_h, out_w):
    N, C, H, W = img.shape
    ix, iy = _sample_points_reference(theta, H, W, out_h, out_w)
    n = np.arange(N)[:, None, None]
    out = np.zeros((N, C, out_h, out_w), dtype=img.dtype)
    for y, x, weight, inside in _corners_reference(ix, iy, H, W):
        for c in range(C):
            out[:, c] += np.where(inside, weight * img[n, c, y, x], 0.0)
    return out


def warp_backward_reference(dout, img, theta):
    """(dimg, dtheta): scatter with np.add.at; theta through the four corner values."""
    N, C, H, W = img.shape
    Ho, Wo = dout.shape[2], dout.shape[3]
    ix, iy = _sample_points_reference(theta, H, W, Ho, Wo)
    x0, y0 = np.floor(ix), np.floor(iy)
    wx, wy = ix - x0, iy - y0
    n = np.broadcast_to(np.arange(N)[:, None, None], ix.shape)
    dimg = np.zeros_like(img)
    v = {}
    for (dy, dx), (y, x, weight, inside) in zip(((0, 0), (0, 1), (1, 0), (1, 1)), _corners_reference(ix, iy, H, W)):
        v[dy, dx] = np.where(inside[:, None], img[n, :, y, x].transpose(0, 3, 1, 2), 0.0)   # (N, C, Ho, Wo)
        for c in range(C):
            np.add.at(dimg[:, c], (n[inside], y[inside], x[inside]), (dout[:, c] * weight)[inside])
    d_ix = (dout * ((1 - wy)[:, None] * (v[0, 1] - v[0, 0]) + wy[:, None] * (v[1, 1] - v[1, 0]))).sum(axis=1)
    d_iy = (dout * ((1 - wx)[:, None] * (v[1, 0] - v[0, 0]) + wx[:, None] * (v[1, 1] - v[0, 1]))).sum(axis=1)
    y_o, x_o = np.meshgrid((2 * np.arange(Ho) + 1) / Ho - 1, (2 * np.arange(Wo) + 1) / Wo - 1, indexing="ij")
    basis = np.stack([x_o, y_o, np.ones_like(x_o)])                    # (3, Ho, Wo)
    dtheta = np.stack([
        np.einsum("nhw,khw->nk", d_ix * W / 2, basis),
        np.einsum("nhw,khw->nk", d_iy * H / 2, basis),
    ], axis=1)                                                          # (N, 2, 3)
    return dimg, dtheta.astype(theta.dtype)
