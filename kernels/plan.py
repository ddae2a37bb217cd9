"""The whole network as one compiled call: an interpreter of layer tables over a preallocated workspace.

``npface.plan`` turns a model's layer lists into integer tables (one row per
layer, columns below) and allocates every buffer once; these kernels walk
the tables and call the same per-sample kernels the per-op path
(``npface.ops``) calls: ``conv2d_forward_sample``, ``maxpool2d_forward_sample``,
``warp_forward_sample``, ``linear_forward``, ... No Python runs between
layers, nothing is allocated, nothing is validated (``npface.plan`` checks
the input once, at the boundary).

Execution order. Samples are dealt to G groups as in ``kernels.conv``
(group g: samples g, g+G, ...), one thread per group, and each group takes
its samples in chunks of up to B. A sample of the chunk goes through the
early layers on its own: normalise (uint8 -> [-1, 1], NCHW), area resize,
alignment net (its affine layers as 1-row products), pose -> theta, warp,
the signature net's layers before ``split``. The narrow layers from
``split`` on (Ho*Wo small: one sample's products are too thin for BLAS)
then run for the whole chunk at once, a convolution as one product over the
chunk's columns (``conv2d_forward_chunk``), or for inference a 3x3
stride-1 one by Winograd's method over the chunk's tiles (``WINOGRAD`` rows,
``kernels.winograd``), a 1x1 convolution or pool sample by sample; the
backward pass mirrors this (with im2col). Each sample's flattened
features land in row n of the tail buffer, and the signature net's affine
layers (the "tail") run as batch products, rows dealt to the threads in
contiguous chunks. One thread reuses one group's scratch while the samples
of that group stream through it.

Threads. Every kernel here is serial and releases the GIL (``kernels.jit``):
``npface.plan`` runs ``group_forward`` for the G groups on G Python threads
side by side, then ``tail_forward`` on G row ranges; for the backward,
``tail_backward`` on one thread, ``group_backward`` on G threads, and
``reduce_groups`` adds the groups' gradients in group order. Python runs
only at those few hand-overs, never between layers. (Numba's parallel
loops would do the same work, but compiling one around these kernels
costs about as long again as compiling the kernels themselves.)

Activation rows. Every sample slot owns one flat row of ``acts`` holding, at
fixed offsets, the normalised image x (3, S, S), its resize (3, A, A), every
layer's output, the pose (4,) and the aligned image (3, S, S); ``argmax``
rows hold the max-pool winners. For training there is one slot per sample,
so that the backward pass finds every layer's input and output (its cache)
in place. For inference there is one slot per group (reused sample after
sample), and B short rows per group that hold only the chunked layers'
activations (one per sample of a chunk, reused chunk after chunk).

Table columns (``PROGRAM_COLUMNS``): kind, C, H, W (the input), F, Ho, Wo
(the output), K (kernel or window size), stride, pad, relu, p (index into
the weight and bias lists), in and out (offsets in the activation row, or
for tail layers in the tail buffer, in units of N), aux (offset in the
argmax row), gw and gb (offsets of dw and db in the flat gradient vector).
A Linear's input is C = D features, H = W = 1; its output F.
"""

from kernels.activation import relu_backward_serial
from kernels.conv import (conv1x1_backward_sample, conv1x1_forward_sample, conv2d_backward_chunk,
                          conv2d_backward_sample, conv2d_forward_chunk, conv2d_forward_sample,
                          conv2d_forward_tiled)
from kernels.jit import kernel
from kernels.linear import linear_backward, linear_forward
from kernels.pool import maxpool2d_backward_sample, maxpool2d_forward_sample
from kernels.preprocess import normalise_sample
from kernels.resize import resize_plane
from kernels.warp import (compose_theta_sample, dtheta_to_dpose_sample, pose_to_theta_sample, warp_backward_sample,
                          warp_forward_sample)
from kernels.winograd import conv3x3_winograd_chunk

# WINOGRAD: a 3x3, stride-1, pad-1 convolution run by Winograd's method (kernels.winograd); inference's
# chunked layers only (npface.plan marks them). Its weights, transformed beforehand, are entry aux of the
# weight list (p still names its bias).
CONV, CONV1X1, POOL, LINEAR, WINOGRAD = 0, 1, 2, 3, 4
PROGRAM_COLUMNS = ("kind", "C", "H", "W", "F", "Ho", "Wo", "K", "stride", "pad", "relu", "p", "in", "out", "aux",
                   "gw", "gb")
KIND, C_, H_, W_, F_, HO, WO, K_, STRIDE, PAD, RELU, P_, IN, OUT, AUX, GW, GB = range(len(PROGRAM_COLUMNS))
# layout (int64, LAYOUT_FIELDS): where the fixed stages keep their data in an activation row
# split: the signature net's layers from this index on run in chunks of up to B samples (see below)
# (chunk_base: the offset of the first chunked layer's input in an activation row)
# (rounds: the model's align_rounds, npface.model.ModelConfig)
LAYOUT_FIELDS = ("S", "A", "small", "pose", "aligned", "features", "D", "split", "B", "chunk_base", "rounds")
L_S, L_A, L_SMALL, L_POSE, L_ALIGNED, L_FEATURES, L_D, L_SPLIT, L_B, L_CHUNK_BASE, L_ROUNDS = \
    range(len(LAYOUT_FIELDS))


# --------------------------------------------------------------------------
# One layer, one sample
# --------------------------------------------------------------------------

@kernel
def layer_forward(row, weights, biases, act, am, cols, tiled):
    """Run the layer of table row ``row`` on one sample's activation row ``act`` (and argmax row ``am``);
    a convolution on ``kernels.tile``'s tiles where they suit it if tiled (inference: ``group_forward``;
    ``conv2d_forward_tiled``, its scratch ``cols``, which the plan sizes for it)."""
    kind, C, H, W, F, Ho, Wo = row[KIND], row[C_], row[H_], row[W_], row[F_], row[HO], row[WO]
    K, stride, pad, relu, p = row[K_], row[STRIDE], row[PAD], row[RELU] != 0, row[P_]
    x = act[row[IN]:row[IN] + C * H * W]
    out = act[row[OUT]:row[OUT] + F * Ho * Wo]
    if kind == CONV:
        CKK, P = C * K * K, Ho * Wo
        if not (tiled and conv2d_forward_tiled(x.reshape((C, H, W)), weights[p], biases[p], K, stride, pad, relu,
                                               cols, out.reshape((F, P)))):
            conv2d_forward_sample(x.reshape((C, H, W)), weights[p], biases[p], K, stride, pad, relu,
                                  cols[:CKK * P].reshape((CKK, P)), cols[CKK * P:], out.reshape((F, P)))
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
                               cols[:CKK * P].reshape((CKK, P)), dcols[:CKK * P].reshape((CKK, P)), cols[CKK * P:],
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
                   weights_w, act, am, cols, rows, t, stages, tiled):
    """img (S, S, 3) -> act (every stage's output up to the end of sig_prog), t (2, 3) its theta.

    sig_prog: the signature net's layers this sample runs on its own (those before the split).
    Only the first ``stages`` stages run (normalise+resize, each alignment layer, the warp, each
    signature layer; for profiling): a full run passes at least their number. The alignment rounds
    after the first (layout's rounds: ``ModelConfig.align_rounds``) belong to the warp's stage: each
    resizes the aligned image into the alignment net's input, runs the net again, composes its
    transform into t and warps x again (the pose and the alignment layers' outputs are overwritten).
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
        layer_forward(align_prog[i], weights, biases, act, am, cols, tiled)
    if stages < na + 2:
        return
    pose = act[layout[L_POSE]:layout[L_POSE] + 4]
    pose_to_theta_sample(pose, t)
    aligned = act[layout[L_ALIGNED]:layout[L_ALIGNED] + 3 * S * S].reshape((3, S, S))
    warp_forward_sample(x, t, aligned)
    again = rows[:6].reshape((2, 3))                       # the resize's scratch is free between rounds
    for _ in range(layout[L_ROUNDS] - 1):
        for c in range(3):
            resize_plane(aligned[c], start_h, weights_h, start_w, weights_w, rows[:A * S].reshape((A, S)), small[c])
        for i in range(na):
            layer_forward(align_prog[i], weights, biases, act, am, cols, tiled)
        pose_to_theta_sample(pose, again)
        compose_theta_sample(t, again, t)
        warp_forward_sample(x, t, aligned)
    for i in range(min(sig_prog.shape[0], stages - na - 2)):
        layer_forward(sig_prog[i], weights, biases, act, am, cols, tiled)


@kernel
def chunk_forward(prog, weights, biases, acts, argmax, first, step, nb, cols, prod, tiled):
    """The layers of ``prog`` for the nb samples in slots first, first + step, ...: a convolution as one
    product over the chunk (``conv2d_forward_chunk``), or as 16 by Winograd's method (``WINOGRAD`` rows:
    weights[aux] holds the layer's transformed weights, and cols is its scratch), any other layer
    sample by sample."""
    for li in range(prog.shape[0]):
        row = prog[li]
        if row[KIND] == WINOGRAD:
            conv3x3_winograd_chunk(acts, first, step, nb, row[IN], row[C_], row[H_], row[W_], weights[row[AUX]],
                                   biases[row[P_]], row[RELU] != 0, cols, row[OUT])
        elif row[KIND] == CONV:
            conv2d_forward_chunk(acts, first, step, nb, row[IN], row[C_], row[H_], row[W_], weights[row[P_]],
                                 biases[row[P_]], row[K_], row[STRIDE], row[PAD], row[RELU] != 0, tiled, cols,
                                 prod, row[OUT])
        else:
            for i in range(nb):
                layer_forward(row, weights, biases, acts[first + i * step], argmax[first + i * step], cols, tiled)


@kernel
def chunk_backward(prog, weights, acts, argmax, first, step, nb, dA, dB, cols, dcols, dprod, dw_n, grad,
                   want_dx_first):
    """Backward of ``chunk_forward``'s layers: dA (>= nb, ...) row i holds sample i's gradient of the last
    layer's output -> the gradient of the first layer's input, in dA or dB (returned: True if in dB).
    Parameter gradients are added into ``grad``; the first layer's dx only if want_dx_first."""
    dcur, dnext = dA, dB
    for li in range(prog.shape[0] - 1, -1, -1):
        row = prog[li]
        want_dx = li > 0 or want_dx_first
        if row[KIND] == CONV:
            size_out = row[F_] * row[HO] * row[WO]
            w = weights[row[P_]]
            nw = w.shape[0] * w.shape[1]
            for i in range(nb):
                if row[RELU] != 0:
                    d = dcur[i, :size_out]
                    relu_backward_serial(d, acts[first + i * step, row[OUT]:row[OUT] + size_out], d)
            conv2d_backward_chunk(dcur, acts, first, step, nb, row[IN], row[C_], row[H_], row[W_], w.T, row[K_],
                                  row[STRIDE], row[PAD], cols, dcols, dprod, dw_n[:nw].reshape(w.shape),
                                  grad[row[GW]:row[GW] + nw].reshape(w.shape), grad[row[GB]:row[GB] + row[F_]],
                                  want_dx, dnext)
        else:
            for i in range(nb):
                n = first + i * step
                layer_backward(row, weights, acts[n], argmax[n], dcur[i], dnext[i], cols, dcols, dw_n, grad,
                               want_dx)
        dcur, dnext = dnext, dcur
    return prog.shape[0] % 2 == 1


@kernel
def sample_backward(dstart, layout, align_prog, sig_prog, weights, act, am, t, want_align, dt_extra,
                    da, db, cols, dcols, dw_n, dt, grad):
    """dstart: the gradient of sig_prog's last output (the features (D,), or the input of the chunked
    layers) -> parameter gradients of this sample added into ``grad``; da, db, dt (2, 3) scratch.

    The aligned image's gradient is computed only for the warp's theta gradient, so only when the
    alignment net is wanted; the warp's image gradient and the input's are never computed. dt_extra
    (2, 3): another loss term's gradient with respect to this sample's theta, added to the warp's.
    """
    dcur, dnext = da, db
    dcur[:dstart.shape[0]] = dstart
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

@kernel
def group_forward(g, images, scale, layout, align_prog, sig_prog, chunk_prog, weights, biases, start_h, weights_h,
                  start_w, weights_w, per_sample, G, acts, argmax, chunk_acts, chunk_argmax, cols, prod, rows, theta,
                  tail, stages, tiled):
    """Group g's samples (g, g + G, ...) of images (N, S, S, 3) through the convolutional part, chunk by
    chunk: theta[n] (2, 3) and each sample's features (D,) into row n of the tail buffer.

    Training (per_sample): acts, argmax have one row per sample (the rows are the cache), chunk_acts,
    chunk_argmax are the same arrays and chunk_prog is sig_prog[split:]. Inference: acts, argmax have
    one row per group, chunk_acts, chunk_argmax B per group (one per sample of a chunk), which hold only
    the chunked layers' activations: chunk_prog's offsets are counted from the first one's input
    (layout's chunk_base), which each sample copies there, and its 3x3 stride-1 convolutions may be
    ``WINOGRAD`` rows (as ``chunk_forward``). cols, prod, rows: one per group.
    ``stages`` as in ``sample_forward``, the chunked layers counted after the signature net's early
    layers (the tail's layers come after them: ``tail_forward``).
    ``tiled``: run the convolutions that suit them on ``kernels.tile``'s tiles (inference only: training keeps
    the BLAS, whose rounding the README's default training run was measured with).
    """
    N = images.shape[0]
    D, split, B = layout[L_D], layout[L_SPLIT], layout[L_B]
    n_sig = max(0, min(sig_prog.shape[0], stages - 2 - align_prog.shape[0]))
    chunked = split < sig_prog.shape[0]
    n_in = sig_prog[split, C_] * sig_prog[split, H_] * sig_prog[split, W_] if chunked else 0
    # where the features end up: the chunk rows (at an offset counted from chunk_base for inference's
    # short rows) if there are chunked layers, else the sample's own row
    f0 = layout[L_FEATURES] - (0 if per_sample or not chunked else layout[L_CHUNK_BASE])
    per_group = chunk_acts.shape[0] // G                         # inference: a group's chunk rows
    for n0 in range(g, N, G * B):                                # a chunk: samples n0, n0 + G, ...
        nb = min(B, (N - n0 + G - 1) // G)
        first, step = (n0, G) if per_sample else (g * per_group, 1)
        for i in range(nb):
            n, c = n0 + i * G, first + i * step
            slot = n if per_sample else g
            sample_forward(images[n], scale, layout, align_prog, sig_prog[:split], weights, biases, start_h,
                           weights_h, start_w, weights_w, acts[slot], argmax[slot], cols[g], rows[g], theta[n],
                           stages, tiled)
            if not per_sample and n_sig > split:
                x0 = layout[L_CHUNK_BASE]
                chunk_acts[c, :n_in] = acts[slot, x0:x0 + n_in]
        if n_sig > split:
            chunk_forward(chunk_prog[:n_sig - split], weights, biases, chunk_acts, chunk_argmax, first, step, nb,
                          cols[g], prod[g], tiled)
        if n_sig == sig_prog.shape[0]:
            for i in range(nb):
                n, c = n0 + i * G, first + i * step
                src = chunk_acts[c] if chunked else acts[n if per_sample else g]
                tail[n * D:(n + 1) * D] = src[f0:f0 + D]


@kernel
def group_backward(g, layout, align_prog, sig_prog, weights, want_align, dtheta_extra, G, acts, argmax, theta,
                   dtail, da, db, dchunk, cols, dcols, prod, dw_n, dt, grad_g):
    """Group g's samples' parameter gradients into grad_g (zeroed first), chunk by chunk as in the forward:
    the chunked layers for the chunk, then each sample on its own.

    dtail's last block (N, D_out) = dL/dsignatures, its first (N, D) = dL/dfeatures (``tail_backward``
    has run). dtheta_extra (N, 2, 3): another loss term's gradient with respect to the warps' theta
    (zeros for none). Scratch (da, db, dchunk (2, B, ...), cols, dcols, prod, dw_n, dt): this group's.
    """
    N = theta.shape[0]
    D, split, B = layout[L_D], layout[L_SPLIT], layout[L_B]
    n_sig = sig_prog.shape[0]
    n_in = sig_prog[split, C_] * sig_prog[split, H_] * sig_prog[split, W_] if split < n_sig else D
    grad_g[:] = 0.0
    dA, dB = dchunk[0], dchunk[1]
    for n0 in range(g, N, G * B):
        nb = min(B, (N - n0 + G - 1) // G)
        for i in range(nb):
            n = n0 + i * G
            dA[i, :D] = dtail[n * D:(n + 1) * D]
        in_dB = False
        if split < n_sig:
            in_dB = chunk_backward(sig_prog[split:], weights, acts, argmax, n0, G, nb, dA, dB, cols, dcols, prod,
                                   dw_n, grad_g, split > 0 or want_align)
        for i in range(nb):
            n = n0 + i * G
            dstart = dB[i, :n_in] if in_dB else dA[i, :n_in]
            sample_backward(dstart, layout, align_prog, sig_prog[:split], weights, acts[n], argmax[n], theta[n],
                            want_align, dtheta_extra[n], da, db, cols, dcols, dw_n, dt, grad_g)


@kernel
def reduce_groups(grad_parts, grad):
    """grad += every group's row of grad_parts, in group order (reproducible for a given thread count)."""
    for g in range(grad_parts.shape[0]):
        grad += grad_parts[g]


# --------------------------------------------------------------------------
# Diagnostics: one layer over many samples (for per-layer profiles, not the hot path)
# --------------------------------------------------------------------------

@kernel
def layer_forward_samples(prog, weights, biases, acts, argmax, B, cols, prod):
    """The one-row table ``prog`` for every activation row of acts (n, act_size), in order: sample by
    sample if B == 0, else as a chunked layer, B samples at a time (``chunk_forward``), with the BLAS as
    in training."""
    n = acts.shape[0]
    if B == 0:
        for k in range(n):
            layer_forward(prog[0], weights, biases, acts[k], argmax[k], cols, False)
        return
    for k0 in range(0, n, B):
        chunk_forward(prog, weights, biases, acts, argmax, k0, 1, min(B, n - k0), cols, prod, False)


@kernel
def layer_backward_samples(prog, weights, acts, argmax, douts, dxs, B, cols, dcols, prod, dw_n, grad, want_dx):
    """Backward of ``layer_forward_samples``: douts (n, delta_size) -> dxs (n, delta_size)."""
    n = acts.shape[0]
    if B == 0:
        for k in range(n):
            layer_backward(prog[0], weights, acts[k], argmax[k], douts[k], dxs[k], cols, dcols, dw_n, grad, want_dx)
        return
    for k0 in range(0, n, B):
        nb = min(B, n - k0)
        chunk_backward(prog, weights, acts, argmax, k0, 1, nb, douts[k0:k0 + nb], dxs[k0:k0 + nb], cols, dcols,
                       prod, dw_n, grad, want_dx)
