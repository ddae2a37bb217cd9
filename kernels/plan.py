"""The whole network as one compiled call: an interpreter of layer tables over a preallocated workspace.

``npface.plan`` turns a model's layer lists into integer tables (one row per
layer, columns below) and allocates every buffer once; these kernels walk
the tables and call the same per-sample kernels the per-op path
(``npface.ops``) calls: ``conv2d_forward_sample``, ``maxpool2d_forward_sample``,
``warp_forward_sample``, ``linear_forward``, ... No Python runs between
layers, nothing is allocated, nothing is validated (``npface.plan`` checks
the input once, at the boundary).

Execution order. A sample goes through the whole convolutional part on one
thread: normalise (uint8 -> [-1, 1], NCHW), area resize, alignment net
(its affine layers as 1-row products), pose -> theta, warp, the signature
net's convolutions and pools; its flattened features land in row n of the
tail buffer. The signature net's affine layers (the "tail") then run as
batch products, rows dealt to the threads in contiguous chunks. Samples are
dealt to G groups as in ``kernels.conv`` (group g: samples g, g+G, ...), so
one thread reuses one group's scratch while the samples of that group stream
through it.

Activation rows. Every sample slot owns one flat row of ``acts`` holding, at
fixed offsets, the normalised image x (3, S, S), its resize (3, A, A), every
layer's output, the pose (4,) and the aligned image (3, S, S); ``argmax``
rows hold the max-pool winners. For inference there is one slot per group
(reused sample after sample); for training one slot per sample, so that
the backward pass finds every layer's input and output (its cache) in place.

Table columns (``PROGRAM_COLUMNS``): kind, C, H, W (the input), F, Ho, Wo
(the output), K (kernel or window size), stride, pad, relu, p (index into
the weight and bias lists), in and out (offsets in the activation row, or
for tail layers in the tail buffer, in units of N), aux (offset in the
argmax row), gw and gb (offsets of dw and db in the flat gradient vector).
A Linear's input is C = D features, H = W = 1; its output F.
"""
import numpy as np
from numba import prange

from kernels.activation import relu_backward_serial
from kernels.conv import (conv1x1_backward_sample, conv1x1_forward_sample, conv2d_backward_sample,
                          conv2d_forward_sample)
from kernels.jit import kernel, parallel_kernel
from kernels.linear import linear_backward, linear_forward
from kernels.pool import maxpool2d_backward_sample, maxpool2d_forward_sample
from kernels.preprocess import normalise_sample
from kernels.resize import resize_plane
from kernels.warp import dtheta_to_dpose_sample, pose_to_theta_sample, warp_backward_sample, warp_forward_sample

CONV, CONV1X1, POOL, LINEAR = 0, 1, 2, 3
PROGRAM_COLUMNS = ("kind", "C", "H", "W", "F", "Ho", "Wo", "K", "stride", "pad", "relu", "p", "in", "out", "aux",
                   "gw", "gb")
KIND, C_, H_, W_, F_, HO, WO, K_, STRIDE, PAD, RELU, P_, IN, OUT, AUX, GW, GB = range(len(PROGRAM_COLUMNS))
# layout (int64, LAYOUT_FIELDS): where the fixed stages keep their data in an activation row
LAYOUT_FIELDS = ("S", "A", "small", "pose", "aligned", "features", "D")
L_S, L_A, L_SMALL, L_POSE, L_ALIGNED, L_FEATURES, L_D = range(len(LAYOUT_FIELDS))


# --------------------------------------------------------------------------
# One layer, one sample
# --------------------------------------------------------------------------

@kernel
def layer_forward(row, weights, biases, act, am, cols):
    """Run the layer of table row ``row`` on one sample's activation row ``act`` (and argmax row ``am``)."""
    kind, C, H, W, F, Ho, Wo = row[KIND], row[C_], row[H_], row[W_], row[F_], row[HO], row[WO]
    K, stride, pad, relu, p = row[K_], row[STRIDE], row[PAD], row[RELU] != 0, row[P_]
    x = act[row[IN]:row[IN] + C * H * W]
    out = act[row[OUT]:row[OUT] + F * Ho * Wo]
    if kind == CONV:
        CKK, P = C * K * K, Ho * Wo
        conv2d_forward_sample(x.reshape((C, H, W)), weights[p], biases[p], K, stride, pad, relu,
                              cols[:CKK * P].reshape((CKK, P)), out.reshape((F, P)))
    elif kind == CONV1X1:
        conv1x1_forward_sample(x.reshape((C, H * W)), weights[p], biases[p], relu, out.reshape((F, Ho * Wo)))
    elif kind == POOL:
        maxpool2d_forward_sample(x.reshape((C, H, W)), K, stride, out.reshape((F, Ho, Wo)),
                                 am[row[AUX]:row[AUX] + F * Ho * Wo].reshape((F, Ho, Wo)))
    else:
        linear_forward(x.reshape((1, C)), weights[p], biases[p], relu, out.reshape((1, F)))


@kernel
def layer_backward(row, weights, act, am, dout, dx, cols, dcols, dw_n, grad, want_dx):
    """Backward of one layer for one sample: dout (its output's gradient, flat) -> dx (its input's, flat,
    written only if want_dx); parameter gradients added into the flat vector ``grad`` at the row's gw, gb.
    A fused ReLU masks dout in place first. cols, dcols, dw_n are scratch."""
    kind, C, H, W, F, Ho, Wo = row[KIND], row[C_], row[H_], row[W_], row[F_], row[HO], row[WO]
    K, stride, pad, p = row[K_], row[STRIDE], row[PAD], row[P_]
    size_in, size_out = C * H * W, F * Ho * Wo
    x = act[row[IN]:row[IN] + size_in]
    d = dout[:size_out]
    if row[RELU] != 0:
        relu_backward_serial(d, act[row[OUT]:row[OUT] + size_out], d)
    dxs = dx[:size_in]
    if kind == POOL:
        if want_dx:
            maxpool2d_backward_sample(d.reshape((F, Ho, Wo)), am[row[AUX]:row[AUX] + size_out].reshape((F, Ho, Wo)),
                                      K, stride, dxs.reshape((C, H, W)))
        return
    gw, gb = row[GW], row[GB]
    w = weights[p]
    nw = w.shape[0] * w.shape[1]
    dw_acc = grad[gw:gw + nw].reshape(w.shape)
    db_acc = grad[gb:gb + F]
    if kind == CONV:
        CKK, P = C * K * K, Ho * Wo
        conv2d_backward_sample(d.reshape((F, P)), x.reshape((C, H, W)), w.T, K, stride, pad,
                               cols[:CKK * P].reshape((CKK, P)), dcols[:CKK * P].reshape((CKK, P)),
                               dw_n[:nw].reshape(w.shape), dw_acc, db_acc, want_dx, dxs.reshape((C, H, W)))
    elif kind == CONV1X1:
        P = H * W
        conv1x1_backward_sample(d.reshape((F, P)), x.reshape((C, P)), w.T, dw_n[:nw].reshape(w.shape), dw_acc,
                                db_acc, want_dx, dxs.reshape((C, P)))
    else:
        db_n = dw_n[nw:nw + F]
        linear_backward(d.reshape((1, F)), x.reshape((1, C)), w, dxs.reshape((1, C)), dw_n[:nw].reshape(w.shape),
                        db_n)
        dw_acc += dw_n[:nw].reshape(w.shape)
        db_acc += db_n


# --------------------------------------------------------------------------
# One sample through the convolutional part
# --------------------------------------------------------------------------

@kernel
def sample_forward(img, scale, layout, align_prog, sig_prog, weights, biases, start_h, weights_h, start_w,
                   weights_w, act, am, cols, rows, t, features, stages):
    """img (S, S, 3) -> act (every stage's output), t (2, 3) its theta, features (D,) for the tail.

    Only the first ``stages`` stages run (normalise+resize, each alignment layer, the warp, each
    signature layer; for profiling): a full run passes at least their number.
    """
    if stages < 1:
        return
    S, A = layout[L_S], layout[L_A]
    x = act[:3 * S * S].reshape((3, S, S))
    normalise_sample(img, scale, x)
    small = act[layout[L_SMALL]:layout[L_SMALL] + 3 * A * A].reshape((3, A, A))
    for c in range(3):
        resize_plane(x[c], start_h, weights_h, start_w, weights_w, rows[:A * S].reshape((A, S)), small[c])
    na = align_prog.shape[0]
    for i in range(min(na, stages - 1)):
        layer_forward(align_prog[i], weights, biases, act, am, cols)
    if stages < na + 2:
        return
    pose_to_theta_sample(act[layout[L_POSE]:layout[L_POSE] + 4], t)
    aligned = act[layout[L_ALIGNED]:layout[L_ALIGNED] + 3 * S * S].reshape((3, S, S))
    warp_forward_sample(x, t, aligned)
    for i in range(min(sig_prog.shape[0], stages - na - 2)):
        layer_forward(sig_prog[i], weights, biases, act, am, cols)
    features[:] = act[layout[L_FEATURES]:layout[L_FEATURES] + layout[L_D]]


@kernel
def sample_backward(dfeatures, layout, align_prog, sig_prog, weights, act, am, t, want_align, dt_extra,
                    da, db, cols, dcols, dw_n, dt, grad):
    """dfeatures (D,) -> parameter gradients of this sample added into ``grad``; da, db, dt (2, 3) scratch.

    The aligned image's gradient is computed only for the warp's theta gradient, so only when the
    alignment net is wanted; the warp's image gradient and the input's are never computed. dt_extra
    (2, 3): another loss term's gradient with respect to this sample's theta, added to the warp's.
    """
    dcur, dnext = da, db
    dcur[:layout[L_D]] = dfeatures
    for i in range(sig_prog.shape[0] - 1, -1, -1):
        layer_backward(sig_prog[i], weights, act, am, dcur, dnext, cols, dcols, dw_n, grad, i > 0 or want_align)
        dcur, dnext = dnext, dcur
    if not want_align:
        return
    S = layout[L_S]
    x = act[:3 * S * S].reshape((3, S, S))
    warp_backward_sample(dcur[:3 * S * S].reshape((3, S, S)), x, t, False, dnext[:3 * S * S].reshape((3, S, S)), dt)
    dt += dt_extra
    dtheta_to_dpose_sample(dt, dnext[:4])
    dcur, dnext = dnext, dcur
    for i in range(align_prog.shape[0] - 1, -1, -1):
        layer_backward(align_prog[i], weights, act, am, dcur, dnext, cols, dcols, dw_n, grad, i > 0)
        dcur, dnext = dnext, dcur


# --------------------------------------------------------------------------
# The signature net's affine tail, batched
# --------------------------------------------------------------------------

@kernel
def tail_forward(tail_prog, weights, biases, tail, N, lo, hi):
    """Rows lo..hi-1 of the batch through the affine tail; tail holds each layer's (N, F) block at N * offset."""
    for i in range(tail_prog.shape[0]):
        row = tail_prog[i]
        D, F, p = row[C_], row[F_], row[P_]
        x = tail[N * row[IN]:N * (row[IN] + D)].reshape((N, D))
        out = tail[N * row[OUT]:N * (row[OUT] + F)].reshape((N, F))
        linear_forward(x[lo:hi], weights[p], biases[p], row[RELU] != 0, out[lo:hi])


@kernel
def tail_backward(tail_prog, weights, tail, dtail, N, dw_n, grad):
    """dtail's last block (N, F_last) -> every block's gradient; dw, db written into ``grad``."""
    for i in range(tail_prog.shape[0] - 1, -1, -1):
        row = tail_prog[i]
        D, F, p = row[C_], row[F_], row[P_]
        d = dtail[N * row[OUT]:N * (row[OUT] + F)]
        if row[RELU] != 0:
            relu_backward_serial(d, tail[N * row[OUT]:N * (row[OUT] + F)], d)
        w = weights[p]
        nw = w.shape[0] * w.shape[1]
        linear_backward(d.reshape((N, F)), tail[N * row[IN]:N * (row[IN] + D)].reshape((N, D)), w,
                        dtail[N * row[IN]:N * (row[IN] + D)].reshape((N, D)), dw_n[:nw].reshape(w.shape),
                        dw_n[nw:nw + F])
        grad[row[GW]:row[GW] + nw] = dw_n[:nw]
        grad[row[GB]:row[GB] + F] = dw_n[nw:nw + F]


# --------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------

@parallel_kernel
def network_forward(images, scale, layout, align_prog, sig_prog, tail_prog, weights, biases, start_h, weights_h,
                    start_w, weights_w, per_sample, G, acts, argmax, cols, rows, theta, tail, stages):
    """images (N, S, S, 3) -> tail's last block (N, D_out) = the signatures; theta (N, 2, 3).

    acts, argmax have one row per sample if per_sample (training: the rows are the cache), else one
    per group; cols, rows one per group. ``stages`` as in ``sample_forward``, the tail's layers counted
    after the signature net's others.
    """
    N = images.shape[0]
    D = layout[L_D]
    for gu in prange(G):
        g = np.int64(gu)                                         # (prange indices are unsigned)
        for n in range(g, N, G):
            slot = n if per_sample else g
            sample_forward(images[n], scale, layout, align_prog, sig_prog, weights, biases, start_h, weights_h,
                           start_w, weights_w, acts[slot], argmax[slot], cols[g], rows[g], theta[n],
                           tail[n * D:(n + 1) * D], stages)
    n_tail = min(tail_prog.shape[0], max(0, stages - 2 - align_prog.shape[0] - sig_prog.shape[0]))
    for gu in prange(G):
        g = np.int64(gu)
        tail_forward(tail_prog[:n_tail], weights, biases, tail, N, g * N // G, (g + 1) * N // G)


@parallel_kernel
def network_backward(layout, align_prog, sig_prog, tail_prog, weights, want_align, dtheta_extra, G, acts, argmax,
                     theta, tail, dtail, da, db, cols, dcols, dw_n, dt, grad_parts, grad):
    """dtail's last block (N, D_out) = dL/dsignatures -> grad (every parameter, flat), overwritten.

    dtheta_extra (N, 2, 3): another loss term's gradient with respect to the warps theta (zeros for none).

    The tail's products run over the whole batch at once and write their gradients into grad; each
    group then adds its samples' gradients into its own row of grad_parts, and the rows are added to
    grad in group order (reproducible for a given thread count). Scratch (da, db, cols, dcols, dw_n, dt) has one row per group.
    """
    N = theta.shape[0]
    D = layout[L_D]
    grad[:] = 0.0
    tail_backward(tail_prog, weights, tail, dtail, N, dw_n[0], grad)
    for g in prange(G):
        grad_parts[g] = 0.0
        for n in range(g, N, G):
            sample_backward(dtail[n * D:(n + 1) * D], layout, align_prog, sig_prog, weights, acts[n], argmax[n],
                            theta[n], want_align, dtheta_extra[n], da[g], db[g], cols[g], dcols[g], dw_n[g], dt[g],
                            grad_parts[g])
    for g in range(G):                                           # in group order; the tail's blocks of
        grad += grad_parts[g]                                    # grad_parts are 0, the rest of grad is 0
