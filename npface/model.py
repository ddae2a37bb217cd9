"""The face network of Table 2: alignment net, warp, signature net, and the threshold.

One image's path through the network (shapes for the default configuration)::

    image (112, 112, 3) uint8 --preprocess--> x (3, 112, 112) float32 in [-1, 1]
    x --resize_area--> small (3, 50, 50) --alignment net--> pose (4,) = (a, b, tx, ty)
    theta = [[a, -b, tx], [b, a, ty]]                 (rotation + uniform scale + shift)
    x --warp by theta--> aligned (3, 112, 112) --signature net--> signature (128,)

The layer lists live in ``npface.architecture``; this module turns them into
parameters, a forward pass that keeps what the backward pass needs, and the
backward pass itself. The learned threshold theta of the loss (eq. 2) is a
parameter too, ``params["threshold"]``, so a saved model can say "same" or
"not same" by itself: two faces are the same person when the squared
distance of their signatures is below it.

A training step, in one straight line::

    sig, cache = model.forward(images, train=True)                  # (N, 128)
    loss, lc = ops.pair_hinge_forward(sig, labels, model.threshold)  # eq. 2-3
    dsig, dthreshold = ops.pair_hinge_backward(lc)
    grads = model.backward(dsig, dthreshold, cache)                 # name -> gradient
"""
import json
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from kernels import preprocess, warp
from npface import __version__, ops
from npface.data.cache import atomic_write_npz, read_npz
from npface.ops import pose_to_theta  # noqa: F401  (the model's similarity transform; re-exported)
from npface.architecture import (ALIGN_INPUT_SIZE, ALIGNMENT_NET, INPUT_SIZE, SIGNATURE_NET, Conv, Layer, Linear,
                                 MaxPool, trace)
from npface.plan import Plan, PlanCache, kernel_view
from npface.threads import check_threads, limit

_PLAN_LOCK = threading.Lock()      # guards the lazy creation of a model's plan

FORMAT = "npface-model"
FORMAT_VERSION = 1
METADATA_KEY = "metadata.json"
# The initial theta. Eq. 1 asks same pairs for d < theta - 1 and different pairs for d > theta + 1;
# with theta <= 1 the first can only hold when signatures coincide, which pulls the embedding towards
# collapse (all signatures equal, a stationary point of any loss on distances, since dd/de = 2 (e_i - e_j)).
# 2 is the smallest threshold that leaves room [0, 1) for same pairs; training moves it from there.
DEFAULT_THRESHOLD = 2.0
PRETRAINED_PATH = Path(__file__).resolve().parent / "pretrained" / "npface-lfw.npz"

NORMALISATION = ("uint8 pixels v in 0..255 become v / 255 in [0, 1]; float images are taken as already in "
                 "[0, 1]; then x = (v - 0.5) / 0.5, in [-1, 1], RGB, NCHW")


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelConfig:
    """The architecture: input sizes and the two layer lists (Table 2 by default).

    ``align_rounds``: how many times the alignment net looks at the face. 1 is the paper's network:
    pose from the input, one warp. With R > 1, round r (r = 2 .. R) runs the alignment net again on
    the resize of the previous round's warp, composes its transform with the ones before
    (``ops.compose_theta``), and warps the input once by the composition, so there is still one
    bilinear interpolation between the input and the signature net. Extra rounds are a test-time
    choice: they give no gradient to the alignment net (``FaceModel.backward`` refuses to train it
    with R > 1). Written to a model file only when it is not 1.
    """
    input_size: int = INPUT_SIZE
    align_input_size: int = ALIGN_INPUT_SIZE
    alignment: Tuple[Layer, ...] = ALIGNMENT_NET
    signature: Tuple[Layer, ...] = SIGNATURE_NET
    align_rounds: int = 1

    def to_json(self):
        layer = lambda l: {"type": type(l).__name__, **asdict(l)}  # noqa: E731
        out = {"input_size": self.input_size, "align_input_size": self.align_input_size,
               "alignment": [layer(l) for l in self.alignment], "signature": [layer(l) for l in self.signature]}
        if self.align_rounds != 1:                   # files of the paper's single round read as before
            out["align_rounds"] = self.align_rounds
        return out

    @classmethod
    def from_json(cls, d):
        kinds = {"Conv": Conv, "MaxPool": MaxPool, "Linear": Linear}

        def layer(spec):
            spec = dict(spec)
            kind = spec.pop("type", None)
            if kind not in kinds:
                raise ValueError(f"unknown layer type {kind!r} in the model configuration")
            return kinds[kind](**spec)

        return cls(int(d["input_size"]), int(d["align_input_size"]), tuple(layer(s) for s in d["alignment"]),
                   tuple(layer(s) for s in d["signature"]), d.get("align_rounds", 1))      # checked by check()

    def check(self):
        """Raise ValueError unless the layer lists fit together: alignment ends in 4 numbers, signature in D."""
        if isinstance(self.align_rounds, bool) or not isinstance(self.align_rounds, int) or self.align_rounds < 1:
            raise ValueError(f"align_rounds must be an integer >= 1, got {self.align_rounds!r}")
        for name, layers, size in (("alignment", self.alignment, self.align_input_size),
                                   ("signature", self.signature, self.input_size)):
            shapes = trace(layers, (3, size, size))
            if any(min(s.output) < 1 for s in shapes):
                bad = next(s for s in shapes if min(s.output) < 1)
                raise ValueError(f"{name} net: layer {bad.layer.name} gets input {bad.input} and "
                                 f"would output {bad.output}")
            if not isinstance(layers[-1], Linear) or layers[-1].relu:
                raise ValueError(f"{name} net must end in an affine layer without ReLU")
        if self.alignment[-1].out_features != 4:
            raise ValueError("the alignment net must output 4 numbers (a, b, tx, ty)")
        return self

    @property
    def signature_dim(self):
        return self.signature[-1].out_features


TABLE2 = ModelConfig()


def parameter_shapes(config) -> Dict[str, Tuple[int, ...]]:
    """Every parameter's name and shape, in network order; ``threshold`` last."""
    shapes = {}
    for layers, size in ((config.alignment, config.align_input_size), (config.signature, config.input_size)):
        for s in trace(layers, (3, size, size)):
            if isinstance(s.layer, Conv):
                k = s.layer.kernel
                shapes[s.layer.name + ".weight"] = (s.layer.out_channels, s.input[0], k, k)   # (F, C, K, K)
                shapes[s.layer.name + ".bias"] = (s.layer.out_channels,)
            elif isinstance(s.layer, Linear):
                shapes[s.layer.name + ".weight"] = (s.layer.out_features, int(np.prod(s.input)))  # (F, D)
                shapes[s.layer.name + ".bias"] = (s.layer.out_features,)
    shapes["threshold"] = ()
    return shapes


def init_parameters(config, seed=0, threshold=DEFAULT_THRESHOLD):
    """Initial parameters, reproducible from ``seed``.

    - He initialisation, N(0, 2 / fan_in), for every layer followed by a ReLU,
      so activations keep their scale through the stack; N(0, 1 / fan_in)
      for the signature layer, which has no ReLU. Biases start at 0.
    - The alignment net's last layer starts at the identity transform: zero
      weights and bias (a, b, tx, ty) = (1, 0, 0, 0), so an untrained model
      warps nothing, and the first gradients reach it through the warp.
    """
    rng = np.random.default_rng(seed)
    params = {}
    last_align = config.alignment[-1].name
    for name, shape in parameter_shapes(config).items():
        if name == "threshold":
            params[name] = np.array(threshold, dtype=np.float32)
        elif name.endswith(".bias"):
            params[name] = np.zeros(shape, dtype=np.float32)
            if name == last_align + ".bias":
                params[name][0] = 1.0                                  # a = 1: identity
        elif name.startswith(last_align + "."):
            params[name] = np.zeros(shape, dtype=np.float32)
        else:
            fan_in = int(np.prod(shape[1:]))
            layer_name = name[:-len(".weight")]
            relu = next(l for l in config.alignment + config.signature if l.name == layer_name).relu
            std = np.sqrt((2.0 if relu else 1.0) / fan_in)
            params[name] = (rng.standard_normal(shape) * std).astype(np.float32)
    return params


# --------------------------------------------------------------------------
# The similarity transform
# --------------------------------------------------------------------------

def dtheta_to_dpose(dtheta):
    """The chain rule through ``pose_to_theta``: dtheta (N, 2, 3) -> dpose (N, 4)."""
    dtheta = np.ascontiguousarray(dtheta)
    dpose = np.empty((len(dtheta), 4), dtype=dtheta.dtype)
    warp.dtheta_to_dpose(dtheta, dpose)
    return dpose


# --------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------

def forward_layers(layers, x, params, keep, timings=None):
    """Run ``layers`` on x; return (out, caches) where caches (if keep) let ``backward_layers`` undo them.

    ``timings``, if a dict, accumulates each layer's wall time (seconds) under its name.
    """
    caches = []
    for layer in layers:
        if timings is not None:
            start = time.perf_counter()
        if isinstance(layer, Conv):                   # convolution + its ReLU, in one pass
            x, cache = ops.conv2d_forward(x, params[layer.name + ".weight"], params[layer.name + ".bias"],
                                          layer.stride, layer.pad, relu=layer.relu)
        elif isinstance(layer, MaxPool):
            x, cache = ops.maxpool2d_forward(x, layer.size, layer.stride)
        else:
            flat_from = x.shape                       # a Linear sees a (C, H, W) activation flattened in C order
            x, cache = ops.linear_forward(x.reshape(x.shape[0], -1), params[layer.name + ".weight"],
                                          params[layer.name + ".bias"], relu=layer.relu)
            cache = (cache, flat_from)
        if keep:
            caches.append((layer, cache))
        if timings is not None:
            timings[layer.name] = timings.get(layer.name, 0.0) + time.perf_counter() - start
    return x, caches


def align_forward(model, images, keep=False):
    """The alignment net alone on images (N, S, S, 3) uint8 -> (pose (N, 4) model dtype, caches if keep).

    The same input path as ``FaceModel.forward``: preprocess to [-1, 1] NCHW,
    area-resize to align_input_size, then the alignment layers. ``model`` is
    a ``FaceModel`` or anything with its ``config``, ``params`` and
    ``preprocess`` (``npface.framing_net.FramingNet``).
    """
    return align_pose(model, model.preprocess(images), keep)


def align_pose(model, x, keep=False):
    """The alignment net on preprocessed images x (N, 3, S, S): area resize to align_input_size, then the
    alignment layers -> (pose (N, 4), caches if keep)."""
    A = model.config.align_input_size
    small = ops.resize_area(x, A, A)                                         # (N, 3, A, A)
    # (a FramingNet's parameters are its own writable copies; a loaded FaceModel's are read-only)
    params = model._kernel_params() if isinstance(model, FaceModel) else model.params
    return forward_layers(model.config.alignment, small, params, keep)


def further_rounds(model, x, theta, aligned, warp_cache):
    """The alignment rounds after the first (``ModelConfig.align_rounds``), on the per-op path.

    x (N, 3, S, S) the preprocessed images, theta (N, 2, 3) the first round's warps and aligned
    (N, 3, S, S), warp_cache their warp; each round resizes the last aligned image, runs the alignment
    net on it, composes its warp into theta and warps x again. Returns (theta, aligned, warp_cache) of
    the last round (the inputs themselves with one round).
    """
    S = model.config.input_size
    for _ in range(model.config.align_rounds - 1):
        theta = ops.compose_theta(theta, pose_to_theta(align_pose(model, aligned)[0]))   # (N, 2, 3)
        aligned, warp_cache = ops.warp_forward(x, theta, S, S)                  # (N, 3, S, S)
    return theta, aligned, warp_cache


def warp_thetas(model, images):
    """theta (N, 2, 3), the model's dtype: the warps the model applies to images (N, S, S, 3), every
    alignment round included (the per-op path)."""
    x = model.preprocess(images)                                             # (N, 3, S, S)
    theta = pose_to_theta(align_pose(model, x)[0])
    if model.config.align_rounds == 1:
        return theta
    S = model.config.input_size
    return further_rounds(model, x, theta, *ops.warp_forward(x, theta, S, S))[0]


def backward_layers(dout, caches, grads):
    """Walk the caches backwards; add parameter gradients to ``grads``; return the input gradient."""
    for layer, cache in reversed(caches):
        if isinstance(layer, Conv):
            dout, grads[layer.name + ".weight"], grads[layer.name + ".bias"] = ops.conv2d_backward(dout, cache)
        elif isinstance(layer, MaxPool):
            dout = ops.maxpool2d_backward(dout, cache)
        else:
            cache, flat_from = cache
            dout, grads[layer.name + ".weight"], grads[layer.name + ".bias"] = ops.linear_backward(dout, cache)
            dout = dout.reshape(flat_from)
    return dout


def reference_forward(model, images):
    """The whole network built from the slow reference kernels: the oracle for ``FaceModel.forward``."""
    from kernels.conv import conv2d_forward_reference
    from kernels.linear import linear_forward_reference
    from kernels.pool import maxpool2d_forward_reference
    from kernels.resize import resize_forward_reference
    from kernels.warp import warp_forward_reference

    def run(layers, x):
        for layer in layers:
            w, b = model.params.get(layer.name + ".weight"), model.params.get(layer.name + ".bias")
            if isinstance(layer, Conv):
                x = conv2d_forward_reference(x, w, b, layer.stride, layer.pad)
            elif isinstance(layer, MaxPool):
                x = maxpool2d_forward_reference(x, layer.size, layer.stride)
            else:
                x = linear_forward_reference(x.reshape(len(x), -1), w, b)
            if getattr(layer, "relu", False):
                x = np.maximum(x, 0)
        return x

    from kernels.warp import compose_theta_reference

    x = model.preprocess(images)
    S, A = model.config.input_size, model.config.align_input_size
    theta = pose_to_theta(run(model.config.alignment, resize_forward_reference(x, A, A)))
    aligned = warp_forward_reference(x, theta, S, S)
    for _ in range(model.config.align_rounds - 1):          # ModelConfig: look again, warp the input once
        again = pose_to_theta(run(model.config.alignment, resize_forward_reference(aligned, A, A)))
        theta = compose_theta_reference(theta, again)
        aligned = warp_forward_reference(x, theta, S, S)
    return run(model.config.signature, aligned)


@dataclass
class ForwardCache:
    alignment: list          # the alignment net's layer caches
    warp: object             # ops.WarpCache
    signature: list          # the signature net's layer caches
    theta: np.ndarray        # (N, 2, 3) the transforms that were applied


class FaceModel:
    """The Table 2 network with its parameters and learned threshold.

    ``FaceModel(config, seed)`` builds a fresh, initialised model; ``npface.load``
    reads a saved one. ``params`` maps stable names (``"nin1.conv.weight"``,
    ``"threshold"``, ...) to float32 arrays.
    """

    def __init__(self, config=TABLE2, seed=0, threshold=DEFAULT_THRESHOLD, params=None, provenance=None):
        self.config = config.check()
        self.params = params if params is not None else init_parameters(config, seed, threshold)
        self.provenance = dict(provenance or {})
        self.threads = 1                    # inference threads: one, like the paper's single ARM core
        # inference's convolutions on kernels.tile's tiles where they suit them (False: the BLAS throughout,
        # as npface.train's own inference calls keep it, so that its runs stay bit for bit what they were)
        self.tiles = True
        self.frozen = ()                    # name prefixes of parameters that get no gradient (e.g. "align.")
        self._plan = None
        self._kernel_views = None           # (params' entries, their kernel views): see _kernel_params

    # ---------------------------------------------------------- properties
    @property
    def threshold(self):
        """The learned global threshold theta (eq. 2), a Python float."""
        return float(self.params["threshold"])

    @property
    def dtype(self):
        return self.params["threshold"].dtype

    def _kernel_params(self):
        """``params`` as the per-op path hands them to the kernels: each read-only array as a view of its
        memory that Numba types as writable (``npface.plan.kernel_view``), so that the kernels are not
        compiled again for read-only arrays. Made again only when an entry of ``params`` is replaced.
        Never write through these views: the memory is meant to be immutable, and the plan relies on it."""
        entries = tuple(self.params.items())
        if self._kernel_views is None or len(entries) != len(self._kernel_views[0]) or any(
                k != k0 or v is not v0 for (k, v), (k0, v0) in zip(entries, self._kernel_views[0])):
            self._kernel_views = (entries, {k: kernel_view(v) for k, v in entries})
        return self._kernel_views[1]

    def copy(self):
        """A copy of the model with writable copies of every parameter (e.g. to fine-tune a loaded model);
        it keeps ``tiles``."""
        return self._derived(self.config, {k: np.array(v) for k, v in self.params.items()})

    def astype(self, dtype):
        """A copy of the model with every parameter in ``dtype`` (float64 for gradient checks); it keeps
        ``tiles``. The kernels run float32 and float64 only."""
        try:
            kind = np.dtype(dtype).type if dtype is not None else None      # np.dtype(None) would be float64
        except TypeError:
            kind = None
        if kind not in (np.float32, np.float64):
            raise ValueError(f"astype: dtype must be float32 or float64, got {dtype!r}")
        return self._derived(self.config, {k: v.astype(kind) for k, v in self.params.items()})

    def with_align_rounds(self, rounds):
        """The same parameters (shared, not copied) run with ``rounds`` alignment rounds
        (``ModelConfig.align_rounds``): another network, e.g. the paper's single round of a 2-round model.
        It keeps ``tiles``."""
        return self._derived(replace(self.config, align_rounds=rounds), self.params)

    def _derived(self, config, params):
        """A model of ``config`` with ``params``, this one's provenance and its ``tiles``."""
        model = FaceModel(config, params=params, provenance=self.provenance)
        model.tiles = self.tiles
        return model

    # ---------------------------------------------------------- forward / backward
    def check_images(self, images):
        """Raise ValueError unless images is a batch (N, S, S, 3) of uint8 or float pixels."""
        S = self.config.input_size
        if not isinstance(images, np.ndarray):
            raise ValueError(f"images must be a numpy array of shape (N, {S}, {S}, 3), got {type(images).__name__}")
        if images.ndim == 3 and images.shape == (S, S, 3):
            raise ValueError(f"images must be a batch (N, {S}, {S}, 3); for one image use images[None]")
        if images.ndim != 4 or images.shape[1:] != (S, S, 3):
            raise ValueError(f"images must have shape (N, {S}, {S}, 3) (RGB, channels last), got {images.shape}")
        if images.shape[0] == 0:
            raise ValueError(f"images is an empty batch (0, {S}, {S}, 3): give at least one image")
        if images.dtype != np.uint8 and images.dtype.kind != "f":
            raise ValueError(f"images must be uint8 (0..255) or float (0..1), got dtype {images.dtype}")

    def preprocess(self, images):
        """images (N, S, S, 3) uint8 or float in [0, 1] -> x (N, 3, S, S) in [-1, 1], the model's dtype."""
        self.check_images(images)
        self._check_float_range(images)
        if images.dtype != np.uint8:
            images = images.astype(self.dtype, copy=False)
        S = self.config.input_size
        x = np.empty((len(images), 3, S, S), dtype=self.dtype)
        preprocess.normalise(np.ascontiguousarray(images), self.dtype.type(1.0 / 255.0 if images.dtype == np.uint8
                                                                           else 1.0), x)
        return x

    @staticmethod
    def _check_float_range(images):
        """Float pixels must be finite and in [0, 1] (uint8 pixels are 0..255 by their type)."""
        if images.dtype != np.uint8 and (not np.all(np.isfinite(images)) or images.min() < 0.0
                                         or images.max() > 1.0):
            finite = images[np.isfinite(images)]
            if finite.size == 0:
                got = "only NaN or infinite pixels"
            else:
                got = (("NaN or infinite pixels, and finite ones " if finite.size < images.size else "values ")
                       + f"in [{finite.min():.3g}, {finite.max():.3g}]")
            raise ValueError(f"float images must be finite and in [0, 1] (uint8 images are 0..255); got {got}")

    def forward(self, images, train=False, timings=None, per_op=False):
        """Signatures (N, D) of a batch of images; with train=True also the cache for ``backward``.

        By default the whole network runs as one compiled call (``npface.plan``). ``per_op=True`` runs
        it layer by layer through ``npface.ops`` instead: the readable reference path, which the plan
        must equal. ``timings``, if a dict, accumulates the wall time of every stage and layer of the
        per-op path (for profiling; it implies per_op).
        """
        if not (per_op or timings is not None):
            self.check_images(images)
            self._check_float_range(images)
            plan = self.plan
            with plan.lock:                        # one call at a time on the shared workspaces (plan.lock)
                sig, ws = plan.forward(images, train, tiled=self.tiles)
                if not train:
                    return sig.copy(), None
                return sig.copy(), PlanCache(ws, ws.generation, ws.theta.copy())
        clock = time.perf_counter
        t = clock()
        x = self.preprocess(images)                                               # (N, 3, S, S)
        A, S = self.config.align_input_size, self.config.input_size
        small = ops.resize_area(x, A, A)                                          # (N, 3, A, A)
        if timings is not None:
            timings["preprocess+resize"] = timings.get("preprocess+resize", 0.0) + clock() - t
        params = self._kernel_params()
        pose, align_caches = forward_layers(self.config.alignment, small, params, train, timings)     # (N, 4)
        t = clock()
        theta = pose_to_theta(pose)                                               # (N, 2, 3)
        aligned, warp_cache = ops.warp_forward(x, theta, S, S)                    # (N, 3, S, S)
        theta, aligned, warp_cache = further_rounds(self, x, theta, aligned, warp_cache)   # align_rounds > 1
        if timings is not None:
            timings["warp"] = timings.get("warp", 0.0) + clock() - t
        sig, sig_caches = forward_layers(self.config.signature, aligned, params, train, timings)     # (N, D)
        return sig, (ForwardCache(align_caches, warp_cache, sig_caches, theta) if train else None)

    def trained_parameters(self) -> list:
        """Names of the parameters ``backward`` gives gradients: all but the threshold and the ``frozen`` ones."""
        return [n for n in self.params if n != "threshold" and not n.startswith(tuple(self.frozen))]

    def trains_alignment(self) -> bool:
        """Whether ``backward`` runs the alignment net's backward (and the warp's): some of its parameters
        are trained."""
        align_names = {layer.name + s for layer in self.config.alignment for s in (".weight", ".bias")}
        return any(n in align_names for n in self.trained_parameters())

    def backward(self, dsig, dthreshold, cache, dtheta_extra=None):
        """Gradients of every parameter (a dict like ``params``) from dsig (N, D) and dL/dthreshold.

        Parameters whose names start with a prefix in ``self.frozen`` get no gradient (they are left out
        of the dict); when that covers the whole alignment net, its backward pass, and the warp's, are
        skipped. dtheta_extra (N, 2, 3): the gradient of another loss term with respect to the warps
        ``cache.theta`` (e.g. the landmark loss of ``npface.pretrain_alignment``), added to what flows
        back through the warp.
        """
        if cache is None:
            raise ValueError("backward needs the cache of forward(images, train=True)")
        N, D = len(cache.theta), self.config.signature_dim
        dsig = np.asarray(dsig)
        if dsig.shape != (N, D) or dsig.dtype.kind != "f":
            raise ValueError(f"backward: dsig must be a float array of shape (N, D) = ({N}, {D}), got "
                             f"{dsig.dtype} {dsig.shape}")
        if dtheta_extra is not None and np.shape(dtheta_extra) != cache.theta.shape:
            raise ValueError(f"dtheta_extra must have shape {cache.theta.shape}, got {np.shape(dtheta_extra)}")
        wanted = self.trained_parameters()
        want_align = self.trains_alignment()
        if want_align and self.config.align_rounds > 1:
            raise ValueError(f"backward: the alignment net cannot be trained with align_rounds = "
                             f"{self.config.align_rounds} (the extra rounds carry no gradient); freeze it "
                             f"(model.frozen = ('align.',), npface.train --align-lr-scale 0)")
        dsig = np.ascontiguousarray(dsig, dtype=self.dtype)
        if isinstance(cache, PlanCache):
            plan = self.plan
            with plan.lock:
                grads = plan.gradient_dict(plan.backward(dsig, cache, want_align, dtheta_extra), wanted)
        else:
            grads = {}
            daligned = backward_layers(dsig, cache.signature, grads)
            if want_align:
                _, dtheta = ops.warp_backward(daligned, cache.warp)
                if dtheta_extra is not None:
                    dtheta = dtheta + dtheta_extra
                backward_layers(dtheta_to_dpose(dtheta).astype(self.dtype), cache.alignment, grads)
            grads = {n: grads[n] for n in wanted}
        grads["threshold"] = np.array(dthreshold, dtype=self.dtype)
        return grads

    @property
    def plan(self):
        """The compiled forward and backward of this model (built on first use)."""
        if self._plan is None:
            with _PLAN_LOCK:                       # two threads' first calls build one plan, not two
                if self._plan is None:
                    self._plan = Plan(self)
        return self._plan

    def __getstate__(self):
        # The plan is a cache (tables, workspaces, a lock) rebuilt on first use: a pickled model (e.g.
        # broadcast to MPI ranks) leaves it out.
        state = self.__dict__.copy()
        state["_plan"] = None
        state["_kernel_views"] = None
        return state

    # ---------------------------------------------------------- inference
    def embed_with_features(self, images, batch_size=64, threads=None):
        """Signatures (N, D) and the inputs of the final ``signature`` layer (N, F), both float32.

        The signature is the affine map s = W h + b of these features h, so
        the gradient of any loss with respect to W is sum_i dL/ds_i h_i^T:
        with h fixed it needs no backward pass (``benchmarks.variance`` uses this).
        """
        threads = self._check_embed_args(images, batch_size, threads)
        last = self.config.signature[-1]            # an affine layer without ReLU (ModelConfig.check)
        n_in = self.params[last.name + ".weight"].shape[1]
        sig = np.empty((len(images), self.config.signature_dim), dtype=np.float32)   # (N, D)
        feats = np.empty((len(images), n_in), dtype=np.float32)                      # (N, F)
        with limit(threads):
            for start in range(0, len(images), batch_size):
                s, cache = self.forward(images[start:start + batch_size], train=True, per_op=True)
                linear_cache, _ = cache.signature[-1][1]
                sig[start:start + len(s)] = s
                feats[start:start + len(s)] = linear_cache.x
        return sig, feats

    def embed(self, images, batch_size=64, threads=None):
        """Signatures (N, D) float32 of images (N, S, S, 3), uint8 or float in [0, 1].

        Runs on ``threads`` threads (default ``self.threads``, i.e. one), in
        batches of ``batch_size``.
        """
        threads = self._check_embed_args(images, batch_size, threads)
        out = np.empty((len(images), self.config.signature_dim), dtype=np.float32)
        with limit(threads):
            for start in range(0, len(images), batch_size):
                out[start:start + batch_size] = self.forward(images[start:start + batch_size])[0]
        return out

    def _check_embed_args(self, images, batch_size, threads) -> int:
        """Raise ValueError on bad ``embed`` arguments; return the thread count to run on."""
        threads = check_threads(self.threads if threads is None else threads)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.check_images(images)
        return threads

    def distance(self, a, b):
        """Squared Euclidean distance between signatures a and b ((D,) or (N, D), broadcast: e.g.
        ``distance(s[:, None], s[None])`` is the (N, N) matrix of all pairs)."""
        a, b = self._signatures(a, "a"), self._signatures(b, "b")
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"a and b do not broadcast: signatures of shapes {a.shape} and {b.shape} (the same "
                             f"number, or one against many)") from None
        return ((a - b) ** 2).sum(axis=-1)

    def same(self, a, b):
        """True where signatures a and b are closer than the learned threshold: the same person."""
        return self.distance(a, b) < self.threshold

    def _signatures(self, s, name):
        D = self.config.signature_dim
        s = np.asarray(s)
        if s.dtype.kind != "f" or s.shape[-1:] != (D,):
            raise ValueError(f"{name} must be signatures of shape (D,) or (N, D) with D = {D}, got "
                             f"{s.dtype} {s.shape}; use model.embed(images) to get them")
        if not np.isfinite(s).all():
            raise ValueError(f"{name} holds NaN or infinite values: not signatures model.embed returns")
        return s.astype(np.float64)

    # ---------------------------------------------------------- files
    def save(self, path):
        """Write the model to ``path`` (.npz) atomically: a crash never leaves a half-written file."""
        save_model(self, path)


# --------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------

def save_model(model, path):
    path = Path(path)
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "npface_version": __version__,
        "config": model.config.to_json(),
        "input": {"size": model.config.input_size, "channels": "RGB", "layout": "(N, S, S, 3)",
                  "normalisation": NORMALISATION},
        "threshold": model.threshold,
        "provenance": model.provenance,
    }
    arrays = {name: np.asarray(v, dtype=np.float32) for name, v in model.params.items()}
    arrays[METADATA_KEY] = np.array(json.dumps(metadata, indent=1))
    atomic_write_npz(path, arrays)


def load(path=None, writable=False):
    """Read a model saved by ``FaceModel.save``; with no path, the pretrained model shipped with npface.

    Every array is checked against the architecture in the file's metadata:
    its name, shape, dtype (float32) and finiteness. Any problem raises
    ValueError naming the file and the offending entry.

    The parameters are read-only unless ``writable``: each is a view of an immutable ``bytes``
    object, which NumPy will not let anyone write through. So what the compiled plan derives from
    them once (the transformed weights of Winograd's method) stays valid without comparing the
    weights on every call. To train or change a loaded model, load it with ``writable=True`` or
    take ``model.copy()``.
    """
    if path is None:
        path = PRETRAINED_PATH
        if not path.exists():
            raise FileNotFoundError(f"no pretrained model is shipped in this installation ({path}); "
                                    "train one with python -m npface.train and load it by path")
    path = Path(path)
    arrays, metadata = read_npface_file(path, "model")
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: format is {metadata.get('format')!r}, expected {FORMAT!r}")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {metadata.get('format_version')!r} is not supported "
                         f"(this npface reads version {FORMAT_VERSION})")
    try:
        config = ModelConfig.from_json(metadata["config"]).check()
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad architecture configuration in the metadata: {e}") from None
    params = checked_parameters(path, arrays, parameter_shapes(config))
    if not writable:
        params = {name: read_only(a) for name, a in params.items()}
    return FaceModel(config, params=params, provenance=metadata.get("provenance") or {})


def read_only(a):
    """An immutable copy of the array ``a``: a view of a ``bytes`` object (``npface.plan.read_only_memory``
    finds it)."""
    a = np.asarray(a)
    return np.frombuffer(a.tobytes(order="C"), dtype=a.dtype).reshape(a.shape)      # 0-d stays 0-d


def read_npface_file(path, what):
    """({name: array}, metadata dict) of an npface .npz file (arrays plus ``metadata.json``), read without
    pickle. ``what`` names the kind of file ("model", "framing net") in the one-line errors: FileNotFoundError
    for a missing file, ValueError for one that is not such a file."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an npface {what} file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    arrays = read_npz(path, f"not a readable npface {what} file (.npz)")
    if METADATA_KEY not in arrays:
        raise ValueError(f"{path}: no '{METADATA_KEY}' entry: not an npface {what} file")
    try:
        metadata = json.loads(str(arrays.pop(METADATA_KEY)))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: '{METADATA_KEY}' is not valid JSON: {e}") from None
    return arrays, metadata


def checked_parameters(path, arrays, expected):
    """Copies of the parameter ``arrays`` {name: array} read from ``path``, checked against ``expected``
    {name: shape}: exactly those names, float32, those shapes, finite. Raises ValueError naming the file and
    the array otherwise."""
    missing = [n for n in expected if n not in arrays]
    extra = [n for n in arrays if n not in expected]
    if missing or extra:
        raise ValueError(f"{path}: arrays do not match the architecture: missing {missing}, unexpected {extra}")
    for name, shape in expected.items():
        a = arrays[name]
        if a.dtype != np.float32:
            raise ValueError(f"{path}: array '{name}' has dtype {a.dtype}, expected float32")
        if a.shape != shape:
            raise ValueError(f"{path}: array '{name}' has shape {a.shape}, expected {shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{path}: array '{name}' has {int((~np.isfinite(a)).sum())} NaN or infinite values")
    return {name: arrays[name].copy() for name in expected}          # copy() keeps 0-d arrays 0-d
