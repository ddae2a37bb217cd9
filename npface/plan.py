"""The fast path: the whole network as one compiled call over a workspace allocated once.

``FaceModel.forward`` / ``backward`` / ``embed`` run through a ``Plan`` by
default; the per-op path (``forward_layers``, ``ops``) stays as the readable
reference and the test oracle. Both call the same kernels: the plan only
decides, in ``kernels.plan``, the order of the calls and where their
outputs live.

What a plan holds:

- the layer tables (``kernels.plan`` documents the columns), built once from
  the model's configuration;
- the weight and bias lists the kernels read: views of ``model.params``, so
  in-place updates (the optimiser's) are seen; rebuilt when an entry of
  ``params`` is replaced by another array;
- for inference, Winograd's method (``kernels.winograd``) for the chunked
  3x3 stride-1 convolutions: their transformed weights. Made from read-only
  weights (a loaded model's, ``npface.model.load``), they are kept as long as
  the layer's weights are that same memory; made from writable ones, with a
  copy of those weights, and remade when a call finds the layer's weights
  differ from the copy;
- workspaces, one per (batch size, dtype, threads, train): every activation,
  scratch buffer and gradient buffer, allocated on first use and reused by
  every later call of that shape (``MAX_WORKSPACES`` are kept, the least
  recently used dropped first).

A training forward keeps each sample's activations in its workspace: the
cache it returns names that workspace, and is valid until the next training
forward of the same shape (``backward`` checks and says so otherwise).
"""
import ctypes
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from kernels import plan as kplan
from kernels import winograd as kwinograd
from kernels.conv import im2col_scratch_size, tiled_work_size
from kernels.resize import area_taps
from npface.architecture import Conv, Linear, MaxPool, trace

MAX_WORKSPACES = 4


class _Groups:
    """Runs ``kernel(g, *args)`` for g = 0 .. G-1 side by side, one Python thread per group, and waits.

    The plan's kernels are serial and release the GIL, so the G calls run in parallel; a kernel's
    error is raised here. G = 1 calls the kernel on the calling thread. The threads are kept (and grown
    when a larger G comes) for the life of the process.
    """

    def __init__(self):
        self._pool, self._size, self._lock = None, 0, threading.Lock()

    def run(self, G, kernel, *args):
        if G == 1:
            kernel(0, *args)
            return
        with self._lock:
            if self._size < G:
                if self._pool is not None:
                    self._pool.shutdown()
                self._pool, self._size = ThreadPoolExecutor(G, thread_name_prefix="npface-plan"), G
            pool = self._pool
        for future in [pool.submit(kernel, g, *args) for g in range(G)]:
            future.result()


_GROUPS = _Groups()
# The signature net's layers from the first convolution with at most CHUNK_MAX_PIXELS output pixels on run
# CHUNK samples at a time (kernels.plan): Table 2's 7x7 and 4x4 layers, whose one-sample products are thin.
CHUNK = 8
CHUNK_MAX_PIXELS = 64


@dataclass
class Tables:
    """The configuration compiled to integer tables and sizes (dtype-independent)."""
    layout: np.ndarray        # (len(LAYOUT_FIELDS),) int64
    align: np.ndarray         # (L_align, len(PROGRAM_COLUMNS)) int64
    sig: np.ndarray           # (L_conv, ...) the signature net up to its first affine layer
    chunk: np.ndarray         # sig[split:] with offsets counted from chunk_base (inference's short chunk rows)
    chunk_winograd: np.ndarray  # the same with its 3x3 stride-1 convolutions as WINOGRAD rows
    tail: np.ndarray          # (L_tail, ...) the signature net's affine layers, batched
    act_size: int             # floats in one sample's activation row
    argmax_size: int          # int32s in one sample's argmax row
    cols_size: int            # the largest im2col matrix of one sample, with im2col's scratch after it (or the
                              # tiles' work, kernels.conv.tiled_work_size, if larger)
    chunk_cols_size: int      # per sample of a chunk: the largest C*K*K * Ho*Wo of a chunked convolution
                              # (or of Winograd's scratch, kernels.winograd.scratch_size, per sample)
    scratch_size: int         # the largest im2col scratch (kernels.conv.im2col_scratch_size) of any layer
                              # (or the part of Winograd's scratch that does not grow with the chunk)
    prod_size: int            # per sample of a chunk: the largest F * Ho*Wo of a chunked convolution
    chunk_act_size: int       # floats of an inference chunk row: the activations from chunk_base on
    chunk_delta_size: int     # the largest activation of the chunked layers (their gradient buffers' row)
    winograd_layers: tuple    # (p, slot) of each WINOGRAD row of chunk_winograd: its weights' index in the
                              # weight list, and where its transformed weights go in that list (the row's aux)
    grad_size: int            # floats in the flat gradient vector of every parameter but the threshold
    tail_size: int            # per-sample floats of the tail blocks (times N in the buffer)
    delta_size: int           # the largest activation (a gradient buffer's size)
    dw_size: int              # the largest F*D + F of one layer (weight and bias scratch)
    param_order: tuple        # parameter names in table order: weights[p] is param_order[p] + ".weight"
    grad_offsets: dict        # name -> (offset, shape) in the flat gradient vector


def build_tables(config):
    """Compile ``config``'s layer lists to the tables ``kernels.plan`` walks."""
    S, A = config.input_size, config.align_input_size
    ncol = len(kplan.PROGRAM_COLUMNS)
    state = dict(act=0, argmax=0, cols=0, grad=0, delta=3 * S * S, dw=0, prod=0, chunk_cols=0, chunk_delta=0,
                 scratch=0)
    param_order, grad_offsets = [], {}

    def alloc(key, size):
        start = state[key]
        state[key] += size
        return start

    def add_params(name, w_shape, F):
        param_order.append(name)
        gw = alloc("grad", int(np.prod(w_shape)))
        gb = alloc("grad", F)
        grad_offsets[name + ".weight"] = (gw, w_shape)
        grad_offsets[name + ".bias"] = (gb, (F,))
        state["dw"] = max(state["dw"], int(np.prod(w_shape)) + F)
        return len(param_order) - 1, gw, gb

    def program(layers, input_shape, in_off):
        rows = []
        for s in trace(layers, input_shape):
            layer, row = s.layer, np.zeros(ncol, np.int64)
            C, H, W = (int(np.prod(s.input)), 1, 1) if isinstance(layer, Linear) else s.input
            F, Ho, Wo = s.output if len(s.output) == 3 else (s.output[0], 1, 1)
            row[[kplan.C_, kplan.H_, kplan.W_, kplan.F_, kplan.HO, kplan.WO]] = C, H, W, F, Ho, Wo
            out_size = F * Ho * Wo
            if isinstance(layer, Conv):
                K = layer.kernel
                row[kplan.KIND] = kplan.CONV1X1 if (K == 1 and layer.stride == 1 and layer.pad == 0) else kplan.CONV
                row[[kplan.K_, kplan.STRIDE, kplan.PAD, kplan.RELU]] = K, layer.stride, layer.pad, layer.relu
                row[kplan.P_], row[kplan.GW], row[kplan.GB] = add_params(layer.name, (F, C * K * K), F)
                scratch = int(im2col_scratch_size(H, W, K, layer.stride, layer.pad))
                state["cols"] = max(state["cols"], C * K * K * Ho * Wo + scratch)      # the columns, then im2col's
                if row[kplan.KIND] == kplan.CONV:                                      # or the tiles' work
                    state["cols"] = max(state["cols"], int(tiled_work_size(C, H, W, F, K, layer.stride, layer.pad)))
                state["scratch"] = max(state["scratch"], scratch)
            elif isinstance(layer, MaxPool):
                row[[kplan.KIND, kplan.K_, kplan.STRIDE]] = kplan.POOL, layer.size, layer.stride
                row[kplan.AUX] = alloc("argmax", out_size)
            elif isinstance(layer, Linear):
                row[[kplan.KIND, kplan.K_, kplan.STRIDE, kplan.RELU]] = kplan.LINEAR, 1, 1, layer.relu
                row[kplan.P_], row[kplan.GW], row[kplan.GB] = add_params(layer.name, (F, C), F)
            row[kplan.IN] = in_off
            row[kplan.OUT] = in_off = alloc("act", out_size)
            state["delta"] = max(state["delta"], C * H * W, out_size)
            rows.append(row)
        return np.array(rows, dtype=np.int64).reshape(-1, ncol), in_off

    alloc("act", 3 * S * S)                                            # x, the normalised image
    small = alloc("act", 3 * A * A)
    align, pose = program(config.alignment, (3, A, A), small)
    aligned = alloc("act", 3 * S * S)
    n_conv = next(i for i, layer in enumerate(config.signature) if isinstance(layer, Linear))
    sig, features = program(config.signature[:n_conv], (3, S, S), aligned)
    D = int(np.prod(trace(config.signature[:n_conv], (3, S, S))[-1].output))
    narrow = [i for i, row in enumerate(sig)
              if row[kplan.KIND] == kplan.CONV and row[kplan.HO] * row[kplan.WO] <= CHUNK_MAX_PIXELS]
    split = narrow[0] if narrow else len(sig)
    for row in sig[split:]:
        C, H, W, F, P = row[kplan.C_], row[kplan.H_], row[kplan.W_], row[kplan.F_], row[kplan.HO] * row[kplan.WO]
        state["chunk_delta"] = max(state["chunk_delta"], C * H * W, F * P)
        if row[kplan.KIND] == kplan.CONV:
            state["chunk_cols"] = max(state["chunk_cols"], C * row[kplan.K_] ** 2 * P)
            state["prod"] = max(state["prod"], F * P)
    chunk_base = int(sig[split][kplan.IN]) if split < len(sig) else state["act"]
    chunk = sig[split:].copy()
    chunk[:, [kplan.IN, kplan.OUT]] -= chunk_base
    # inference runs the chunked 3x3 stride-1 convolutions by Winograd's method (Plan.forward says why not
    # for training); its scratch lives in the chunk's im2col buffer, which is sized for it too
    chunk_winograd = chunk.copy()
    for row in chunk_winograd:
        if row[kplan.KIND] == kplan.CONV and (row[kplan.K_], row[kplan.STRIDE], row[kplan.PAD]) == (3, 1, 1):
            row[kplan.KIND] = kplan.WINOGRAD
            shape = [int(row[i]) for i in (kplan.C_, kplan.F_, kplan.H_, kplan.W_)]
            fixed = kwinograd.scratch_size(*shape, 0)
            state["chunk_cols"] = max(state["chunk_cols"], kwinograd.scratch_size(*shape, 1) - fixed)
            state["scratch"] = max(state["scratch"], fixed)
    # the tail: its blocks live in their own (N * size) buffer, offsets counted per sample
    act_before = state["act"]
    state["act"] = 0
    alloc("act", D)                                                    # block 0: the features
    tail, _ = program(config.signature[n_conv:], (D,), 0)
    tail_size = state["act"]
    state["act"] = act_before
    layout = np.zeros(len(kplan.LAYOUT_FIELDS), np.int64)
    layout[[kplan.L_S, kplan.L_A, kplan.L_SMALL, kplan.L_POSE, kplan.L_ALIGNED, kplan.L_FEATURES, kplan.L_D,
            kplan.L_SPLIT, kplan.L_B, kplan.L_CHUNK_BASE, kplan.L_ROUNDS]] = S, A, small, pose, aligned, features, \
        D, split, CHUNK, chunk_base, config.align_rounds
    winograd_layers = []
    for i in np.flatnonzero(chunk_winograd[:, kplan.KIND] == kplan.WINOGRAD):
        chunk_winograd[i, kplan.AUX] = len(param_order) + len(winograd_layers)   # after every layer's weights
        winograd_layers.append((int(chunk_winograd[i, kplan.P_]), int(chunk_winograd[i, kplan.AUX])))
    return Tables(layout, align, sig, chunk, chunk_winograd, tail, state["act"], max(1, state["argmax"]),
                  max(1, state["cols"]), state["chunk_cols"], state["scratch"], max(1, state["prod"]),
                  max(1, state["act"] - chunk_base), max(1, state["chunk_delta"], D), tuple(winograd_layers),
                  state["grad"], tail_size, state["delta"], state["dw"], tuple(param_order), grad_offsets)


class Workspace:
    """Every buffer one batch shape needs; allocated once, reused by every call of that shape."""

    def __init__(self, tables, N, dtype, G, train):
        t = tables
        B = int(t.layout[kplan.L_B])
        nb = min(B, -(-N // G))                                        # the most samples in a chunk
        slots = N if train else G
        self.N, self.G, self.nb, self.train = N, G, nb, train
        self.acts = np.zeros((slots, t.act_size), dtype)               # one activation row per slot
        self.argmax = np.zeros((slots, t.argmax_size), np.int32)
        if train:                                                      # the chunked layers use the same rows
            self.chunk_acts, self.chunk_argmax = self.acts, self.argmax
        else:                                                          # one short row per sample of a chunk
            self.chunk_acts = np.zeros((G * nb, t.chunk_act_size), dtype)
            self.chunk_argmax = np.zeros((G * nb, t.argmax_size), np.int32)
        # im2col's columns (one sample's, or a chunk's side by side) and its own scratch after them, per group
        self.cols = np.zeros((G, max(t.cols_size, nb * t.chunk_cols_size + t.scratch_size)), dtype)
        self.prod = np.zeros((G, nb * t.prod_size), dtype)           # a chunked convolution's product
        self.rows = np.zeros((G, t.layout[kplan.L_A] * t.layout[kplan.L_S]), dtype)   # resize scratch
        self.theta = np.zeros((N, 2, 3), dtype)
        self.tail = np.zeros(N * t.tail_size, dtype)                  # the affine tail's (N, F) blocks
        if train:
            self.dtail = np.zeros_like(self.tail)
            self.da = np.zeros((G, t.delta_size), dtype)
            self.db = np.zeros_like(self.da)
            self.dchunk = np.zeros((G, 2, B, t.chunk_delta_size), dtype)   # the chunked layers' gradients
            self.dcols = np.zeros_like(self.cols)
            self.dw = np.zeros((G, max(t.dw_size, 1)), dtype)
            self.dt = np.zeros((G, 2, 3), dtype)
            self.dtheta_extra = np.zeros((N, 2, 3), dtype)           # another loss's dL/dtheta (zeros: none)
            self.grad_parts = np.zeros((G, t.grad_size), dtype)
            self.grad = np.zeros(t.grad_size, dtype)
        self.generation = 0                                            # training forwards run on it

    @property
    def nbytes(self):
        arrays = {id(a): a for a in vars(self).values() if isinstance(a, np.ndarray)}   # (shared ones once)
        return sum(a.nbytes for a in arrays.values())

    def signatures(self, tables):
        """The last tail block, (N, D_out): a view, overwritten by the next call."""
        last = tables.tail[-1]
        return self.tail[self.N * last[kplan.OUT]:self.N * (last[kplan.OUT] + last[kplan.F_])].reshape(self.N, -1)


def kernel_view(a):
    """``a`` itself, or, if it is a C-contiguous read-only array, a view of the same memory that Numba types
    as writable.

    Numba compiles every kernel again for read-only arrays, and a loaded model's parameters are read-only
    (``npface.model.load``). The kernels only read parameters, so they are handed this view instead: no
    second compile, and nothing is written through it. The view keeps ``a`` alive.
    """
    if a.flags.writeable or a.size == 0 or not a.flags.c_contiguous:
        return a
    buffer = (ctypes.c_byte * a.nbytes).from_address(a.ctypes.data)
    buffer.owner = a                                    # a outlives every view of its memory
    return np.frombuffer(buffer, a.dtype).reshape(a.shape)


def read_only_memory(a):
    """For an array ``a`` that nothing can write to, a key naming its memory: (the ``bytes`` object at
    the root of its chain of views, a's address, shape, strides, dtype). None for any other array (one
    merely flagged not writeable may own its memory and be flagged back: not this kind).
    Keys are compared with the bytes object by identity (``is``), never by value."""
    root = a
    while isinstance(root, np.ndarray):
        root = root.base
    if not isinstance(root, bytes):
        return None
    return (root, a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)


@dataclass
class PlanCache:
    """What ``Plan.forward(train=True)`` hands to ``Plan.backward``: its workspace, at one generation."""
    workspace: Workspace
    generation: int
    theta: np.ndarray        # (N, 2, 3) the transforms that were applied (a copy)


class Plan:
    """A model's compiled forward and backward over reusable workspaces (see the module docstring)."""

    def __init__(self, model):
        self.model = model
        self.tables = build_tables(model.config)
        # the stage (an index into stage_names()) of the first layer run by Winograd's method: a call that
        # stops before it (forward's ``stages``) needs no transformed weights, and makes no check of them
        names = self.stage_names()
        self._first_winograd_stage = min((names.index(self.tables.param_order[p])
                                          for p, _ in self.tables.winograd_layers), default=len(names))
        self._params_seen = None
        self._lists = None
        self._memory_keys = []
        self._winograd = {}           # p -> (a copy of the weights U was made from, or the read-only memory's
        #                               key: read_only_memory, U): see _winograd_lists
        self._taps = {}
        self._workspaces = OrderedDict()
        # The workspaces are shared and the kernels release the GIL: a caller holds this lock from a call
        # until it has copied what it needs out of the workspace (FaceModel.forward and .backward do).
        self.lock = threading.RLock()

    # ---------------------------------------------------------- parameters
    def _weight_lists(self):
        """(weights, biases): tuples of 2-D / 1-D views of model.params, rebuilt when an entry changed.

        Tuples, not Numba typed lists: a typed list compiles its own methods in every new process
        (about a second), a tuple of arrays passes to a compiled function in microseconds. Their
        length is padded to a power of two (with a 1x1 placeholder) so that models of similar depth
        share one compiled plan.
        """
        params = self.model.params
        seen = tuple(params.get(n + s) for n in self.tables.param_order for s in (".weight", ".bias"))
        if self._params_seen is not None and len(seen) == len(self._params_seen) \
                and all(a is b for a, b in zip(seen, self._params_seen)):
            return self._lists
        dtype = self.model.dtype
        weights, biases, keys, copied = [], [], [], False
        for name in self.tables.param_order:
            w, b = params[name + ".weight"], params[name + ".bias"]
            if w.dtype != dtype or b.dtype != dtype:
                raise ValueError(f"parameter {name} is {w.dtype}/{b.dtype} but the model is {dtype}")
            w2 = w.reshape(w.shape[0], -1)
            copied |= not (w2.flags.c_contiguous and b.flags.c_contiguous and np.shares_memory(w2, w))
            weights.append(kernel_view(np.ascontiguousarray(w2)))
            biases.append(kernel_view(np.ascontiguousarray(b)))
            keys.append(read_only_memory(w))
        # (with a slot for each WINOGRAD row's transformed weights: a placeholder until _winograd_lists)
        padded = max(8, 1 << (len(weights) + len(self.tables.winograd_layers) - 1).bit_length())
        weights += [np.zeros((1, 1), dtype)] * (padded - len(weights))
        biases += [np.zeros(1, dtype)] * (padded - len(biases))
        # contiguous views follow in-place updates; copies of odd layouts do not, so those are rebuilt every call
        self._params_seen = None if copied else seen
        self._lists = (tuple(weights), tuple(biases))
        self._memory_keys = keys              # per layer: read_only_memory(its weight parameter), or None
        return self._lists

    def _winograd_lists(self, weights):
        """The weight tuple with each ``WINOGRAD`` row's slot (its aux) holding the layer's transformed
        weights (``kernels.winograd.winograd_weights``, (16, F*C)).

        Read-only weights (``read_only_memory``) cannot change, so their transform is kept for as long
        as the layer's weights are the same memory, with no look at their values. Writable weights can
        (the optimiser updates them in place), so their transform is kept with a copy of the weights it
        was made from and remade whenever the layer's weights differ from that copy in any element:
        one comparison per such layer per call, about as long as reading the weights once.
        """
        lists = list(weights)
        for p, slot in self.tables.winograd_layers:
            w2 = weights[p]
            key = self._memory_keys[p]
            seen = self._winograd.get(p)
            if key is not None:               # the same bytes object (identity), at the same place
                fresh = seen is None or not isinstance(seen[0], tuple) or seen[0][0] is not key[0] \
                    or seen[0][1:] != key[1:]
            else:
                fresh = seen is None or not isinstance(seen[0], np.ndarray) or seen[0].shape != w2.shape \
                    or seen[0].dtype != w2.dtype or kwinograd.count_differences(seen[0].reshape(-1), w2.reshape(-1))
            if fresh:
                U = np.empty((16, w2.size // 9), w2.dtype)
                kwinograd.winograd_weights(w2, kwinograd.WINOGRAD_WEIGHTS.astype(w2.dtype), U)
                seen = self._winograd[p] = (key if key is not None else w2.copy(), U)
            lists[slot] = seen[1]
        return tuple(lists)

    @property
    def compares_winograd_weights(self):
        """Whether an inference call compares a Winograd layer's weights with those its transform was made
        from: some such layer's weights are writable (``_winograd_lists``). As of the weights last seen."""
        self._weight_lists()
        return any(self._memory_keys[p] is None for p, _ in self.tables.winograd_layers)

    @property
    def winograd_nbytes(self):
        """Bytes held for the Winograd layers beside the workspaces: each one's transformed weights and, for
        writable weights, the copy of the weights they were made from."""
        return sum(a.nbytes for pair in self._winograd.values() for a in pair if isinstance(a, np.ndarray))

    def _resize_taps(self, dtype):
        """(start_h, weights_h, start_w, weights_w): the banded area-resize taps S -> A along each axis."""
        if dtype not in self._taps:
            S, A = self.model.config.input_size, self.model.config.align_input_size
            self._taps[dtype] = area_taps(S, A, dtype) + area_taps(S, A, dtype)
        return self._taps[dtype]

    def workspace(self, N, train):
        """The workspace for a batch of N on the current thread count (allocated on first use)."""
        G = max(1, min(N, numba.get_num_threads()))
        key = (N, np.dtype(self.model.dtype), G, train)
        ws = self._workspaces.pop(key, None)
        if ws is None:
            ws = Workspace(self.tables, N, self.model.dtype, G, train)
            while len(self._workspaces) >= MAX_WORKSPACES:
                self._workspaces.popitem(last=False)
        self._workspaces[key] = ws
        return ws

    # ---------------------------------------------------------- forward / backward
    def stage_names(self):
        """The stages of a forward, in order: what ``forward(..., stages=k)`` runs the first k of."""
        c = self.model.config
        return (["preprocess+resize"] + [layer.name for layer in c.alignment] + ["warp"]
                + [layer.name for layer in c.signature])

    def forward(self, images, train=False, stages=None, winograd=True, tiled=True):
        """images (N, S, S, 3), already checked by ``FaceModel`` -> (signatures (N, D) view, workspace).

        uint8 pixels, and float pixels (checked to be in [0, 1]) in the model's dtype, are normalised
        inside the compiled call (so it is compiled for two pixel types per dtype).
        ``stages``: run only the first that many of ``stage_names()`` (for profiling; default all).
        ``winograd``: False runs an inference call's 3x3 stride-1 convolutions as its other convolutions (the
        tiles, where ``tiled`` and they suit them, else im2col as training does; for side-by-side timing and
        tests; training ignores it).
        ``tiled``: an inference call runs the convolutions that suit them on ``kernels.tile``'s tiles
        (``kernels.conv.conv2d_forward_tiled``); False keeps the BLAS for all of them, as training always does.
        """
        dtype = self.model.dtype
        if images.dtype != np.uint8:                     # float pixels: in the model's dtype, as preprocess does
            images = images.astype(dtype, copy=False)
        images = np.ascontiguousarray(images)
        scale = dtype.type(1.0 / 255.0 if images.dtype == np.uint8 else 1.0)
        weights, biases = self._weight_lists()
        taps = self._resize_taps(dtype)
        t = self.tables
        ws = self.workspace(len(images), train)
        stages = len(self.stage_names()) if stages is None else stages
        # Winograd's method for the chunked 3x3 stride-1 convolutions: for inference, at every batch size.
        # With writable weights, each call first compares the layers' weights with those its transformed
        # weights were made from (_winograd_lists); read-only ones (a loaded model's) need no comparison
        # (docs/fast-path.md). Training keeps im2col: the backward is
        # im2col's either way, and the forward's share of a step was small next to the change its rounding
        # made to a training run (docs/fast-path.md).
        # (a profiling call that stops before the first such layer skips the check, which so counts as that
        # layer's time in benchmarks.inference's stage differences)
        if train:
            chunk_prog = t.sig[t.layout[kplan.L_SPLIT]:]
        elif winograd and stages > self._first_winograd_stage:
            chunk_prog, weights = t.chunk_winograd, self._winograd_lists(weights)
        else:
            chunk_prog = t.chunk
        _GROUPS.run(ws.G, kplan.group_forward, images, scale, t.layout, t.align, t.sig, chunk_prog, weights,
                    biases, *taps, train,
                    ws.G, ws.acts, ws.argmax, ws.chunk_acts, ws.chunk_argmax, ws.cols, ws.prod, ws.rows, ws.theta,
                    ws.tail, stages, tiled and not train)
        N, G = len(images), ws.G
        n_tail = min(len(t.tail), max(0, stages - 2 - len(t.align) - len(t.sig)))
        _GROUPS.run(G, lambda g: kplan.tail_forward(t.tail[:n_tail], weights, biases, ws.tail, N, g * N // G,
                                                    (g + 1) * N // G))
        if train:
            ws.generation += 1
        return ws.signatures(t), ws

    def backward(self, dsig, cache, want_align=True, dtheta_extra=None):
        """dsig (N, D) and the cache of a training forward -> the flat gradient vector (a view).

        dtheta_extra (N, 2, 3) or None: another loss term's gradient with respect to the warps, added to
        what flows back through the warp (only reaches the alignment net, so only with want_align).
        """
        ws = cache.workspace
        if cache.generation != ws.generation or self._workspaces.get(
                (ws.N, np.dtype(self.model.dtype), ws.G, True)) is not ws:
            raise ValueError("backward: this cache's activations were overwritten by a later forward(train=True) "
                             "of the same batch shape; call backward before the next training forward")
        weights, _ = self._weight_lists()
        t = self.tables
        dtail_sig = ws.dtail[ws.N * t.tail[-1][kplan.OUT]:].reshape(ws.N, -1)
        dtail_sig[...] = dsig
        if dtheta_extra is None:
            ws.dtheta_extra[...] = 0.0
        else:
            ws.dtheta_extra[...] = dtheta_extra
        # the tail's products over the whole batch write their gradients into grad (the rest of it 0);
        # each group adds its samples' gradients into its own row of grad_parts (the tail's blocks stay 0);
        # the rows are added to grad in group order, so the sum is reproducible for a given thread count
        ws.grad[...] = 0.0
        kplan.tail_backward(t.tail, weights, ws.tail, ws.dtail, ws.N, ws.dw[0], ws.grad)
        _GROUPS.run(ws.G, lambda g: kplan.group_backward(
            g, t.layout, t.align, t.sig, weights, bool(want_align), ws.dtheta_extra, ws.G, ws.acts, ws.argmax,
            ws.theta, ws.dtail, ws.da[g], ws.db[g], ws.dchunk[g], ws.cols[g], ws.dcols[g], ws.prod[g], ws.dw[g],
            ws.dt[g], ws.grad_parts[g]))
        kplan.reduce_groups(ws.grad_parts, ws.grad)
        return ws.grad

    def gradient_dict(self, grad, names):
        """Copies of the named parameters' gradients out of the flat vector ``grad``."""
        out = {}
        for name in names:
            off, shape = self.tables.grad_offsets[name]
            out[name] = grad[off:off + int(np.prod(shape))].reshape(self.model.params[name].shape).copy()
        return out
