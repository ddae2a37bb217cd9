"""The network as one ONNX graph: ``export_onnx(model, path)``, built with the ``onnx`` helper API alone.

The graph does exactly what ``FaceModel.embed`` does to uint8 images (shapes
for the default configuration; N is a dynamic batch dimension)::

    images (N, 112, 112, 3) uint8 RGB
      Cast, Mul 1/255, Sub 0.5, Div 0.5, Transpose  -> x (N, 3, 112, 112) float32 in [-1, 1]
      MatMul R (50, 112), MatMul R^T (112, 50)      -> small (N, 3, 50, 50)       area resize
      alignment net: Conv/Relu/MaxPool, Flatten, Gemm/Relu -> pose (N, 4) = (a, b, tx, ty)
      MatMul P (4, 6), Reshape                      -> theta (N, 2, 3) = [[a, -b, tx], [b, a, ty]]
      AffineGrid(theta, (N, 3, 112, 112)), GridSample(x) -> aligned (N, 3, 112, 112)
      signature net                                 -> signatures (N, 128) float32

With ``align_rounds`` R > 1 (``npface.model.ModelConfig``), each round after the
first (its nodes named ``warp.round<r>.*``) resizes ``aligned``, runs the
alignment net again (the same initializers), makes its theta, composes it
into the one before (MatMul of theta (N, 2, 3) with the new one padded to
(N, 3, 3) by the row (0, 0, 1)), and warps x again; ``theta`` is the last
composition.

- The area resize is linear and separable (``kernels.resize``): out = R x R^T
  per image and channel, so two MatMuls with a fixed resampling matrix are
  exact. R is read off the project's own resize, applied to the columns of
  an identity matrix, so the rule lives in one place.
- The pose -> theta map is linear too, with P read off ``pose_to_theta`` at
  the four unit poses; every column of P holds one entry +-1, so the MatMul
  only copies and negates.
- The warp convention of ``kernels.warp`` is ONNX's AffineGrid + GridSample
  with bilinear interpolation, zero padding and align_corners = 0, which
  need opset 20 or later.
- Convolutions and affine layers keep their weight layout: (F, C, K, K) is
  ONNX's Conv weight, and Gemm with transB = 1 takes (F, D).

The file says what it is in ``metadata_props`` (all values strings):
``format`` ("npface-onnx"), ``format_version``, ``npface_version``,
``threshold`` (the learned theta: same person iff the squared distance of two
signatures is below it), ``input`` and ``outputs`` (JSON: names, dtypes,
layouts, the normalisation), ``config`` (the architecture as JSON, as in
``.npz`` model files), ``provenance`` (JSON) and ``weights_sha256`` (a
SHA-256 of every initializer, which ``npface.onnx_backend`` checks, so a
damaged file is refused rather than run).

``onnx`` and ``onnxruntime`` are the optional extra ``npface[onnx]``; this
module imports them only when called.
"""
import hashlib
import json

import numpy as np

from npface import __version__, extras

FORMAT = "npface-onnx"
FORMAT_VERSION = 1
DEFAULT_OPSET = 20
MIN_OPSET = 20              # AffineGrid appears in opset 20, GridSample's "linear" mode too
INPUT = "images"            # (N, S, S, 3) uint8
SIGNATURES = "signatures"   # (N, D) float32
THETA = "theta"             # (N, 2, 3) float32
BATCH = "N"                 # the dynamic batch dimension's name


def import_extra(name):
    """Import ``name`` (``onnx`` or ``onnxruntime``), or raise MissingExtra naming the ``onnx`` extra."""
    return extras.import_extra(name, "onnx", "ONNX support")


def check_opset(opset):
    """Return ``opset`` as an int, or raise ValueError unless MIN_OPSET <= opset <= what onnx knows."""
    onnx = import_extra("onnx")
    top = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= top:
        raise ValueError(f"opset must be an integer from {MIN_OPSET} (AffineGrid, GridSample 'linear') "
                         f"to {top} (the newest this onnx {onnx.__version__} knows), got {opset!r}")
    return int(opset)


def resize_matrix(size, out_size):
    """R (out_size, size) float32 with resize(v) = R v along one axis, read off ``ops.resize_area``.

    An identity stack (size, 1, size, 1) resized to (size, 1, out_size, 1)
    turns each unit column e_p into R e_p, column p of R.
    """
    from npface import ops
    eye = np.eye(size, dtype=np.float32)[:, None, :, None]                  # (size, 1, size, 1)
    return np.ascontiguousarray(ops.resize_area(eye, out_size, 1)[:, 0, :, 0].T)


def pose_matrix():
    """P (4, 6) float32 with theta.reshape(N, 6) = pose (N, 4) @ P, read off ``pose_to_theta``."""
    from npface.model import pose_to_theta
    P = pose_to_theta(np.eye(4, dtype=np.float32)).reshape(4, 6)            # row i: theta of unit pose e_i
    # every theta entry must be one pose entry, copied or negated, so that the MatMul adds exact zeros only
    if not (set(np.unique(P)) <= {-1.0, 0.0, 1.0} and (np.abs(P).sum(axis=0) == 1).all()):
        raise ValueError("pose_to_theta is not a signed copy of the pose entries; the export cannot reproduce it")
    return np.ascontiguousarray(P)


def weights_sha256(initializers):
    """Hex SHA-256 over every initializer's name, dtype, shape and bytes, in order."""
    from onnx import numpy_helper
    h = hashlib.sha256()
    for t in initializers:
        a = np.ascontiguousarray(numpy_helper.to_array(t))
        h.update(json.dumps([t.name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class _Graph:
    """Nodes and initializers of the graph under construction; ``add`` returns the output's name."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.initializers, self._names = onnx, [], [], set()

    def const(self, name, array):
        """The initializer ``name`` (added once: a second round of a net reads the same weights)."""
        if name not in self._names:
            self._names.add(name)
            self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def add(self, op, inputs, output, **attrs):
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [output], name=output, **attrs))
        return output

    def layers(self, layers, x, params, prefix=""):
        """Append ``layers`` (npface.architecture) to the graph from tensor ``x``; return the last output.
        Nodes are named ``prefix`` + the layer's name; the weights keep the layer's name."""
        from npface.architecture import Conv, MaxPool
        rank4 = True                                   # the nets start on (N, C, H, W) images
        for layer in layers:
            name = prefix + layer.name
            if isinstance(layer, Conv):
                k, s, p = layer.kernel, layer.stride, layer.pad
                x = self.add("Conv", [x, self.const(layer.name + ".weight", params[layer.name + ".weight"]),
                                      self.const(layer.name + ".bias", params[layer.name + ".bias"])], name,
                             kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p])
            elif isinstance(layer, MaxPool):
                x = self.add("MaxPool", [x], name, kernel_shape=[layer.size, layer.size],
                             strides=[layer.stride, layer.stride])
            else:
                if rank4:                              # (N, C, H, W) -> (N, C*H*W) in C order, as forward_layers
                    x = self.add("Flatten", [x], name + ".flatten", axis=1)
                    rank4 = False
                x = self.add("Gemm", [x, self.const(layer.name + ".weight", params[layer.name + ".weight"]),
                                      self.const(layer.name + ".bias", params[layer.name + ".bias"])], name,
                             transB=1)
            if getattr(layer, "relu", False):
                x = self.add("Relu", [x], name + ".relu")
        return x


def build_onnx(model, opset=None):
    """The ``onnx.ModelProto`` of ``model`` (a FaceModel), checked with ``check_model(full_check=True)``.

    ``opset``: the ONNX opset version, DEFAULT_OPSET when None.
    """
    onnx = import_extra("onnx")
    from onnx import TensorProto, helper
    from npface.model import NORMALISATION
    opset = check_opset(DEFAULT_OPSET if opset is None else opset)
    config = model.config
    S, A, D = config.input_size, config.align_input_size, config.signature_dim
    params = {k: np.asarray(v, dtype=np.float32) for k, v in model.params.items()}
    g = _Graph(onnx)

    # preprocess: uint8 v -> (v / 255 - 0.5) / 0.5, the same float32 steps as FaceModel.preprocess
    x = g.add("Cast", [INPUT], "pixels", to=TensorProto.FLOAT)                           # (N, S, S, 3)
    x = g.add("Mul", [x, g.const("one_over_255", np.array(1.0 / 255.0, np.float32))], "unit")
    x = g.add("Sub", [x, g.const("half", np.array(0.5, np.float32))], "centred")
    x = g.add("Div", [x, "half"], "nhwc")
    x = g.add("Transpose", [x], "x", perm=[0, 3, 1, 2])                                   # (N, 3, S, S)

    # area resize S -> A: rows, then columns (out = R x R^T), as kernels.resize
    R = resize_matrix(S, A)                                                               # (A, S)
    small = g.add("MatMul", [g.const("resize.rows", R), x], "resize.rows_out")            # (N, 3, A, S)
    small = g.add("MatMul", [small, g.const("resize.cols", R.T)], "small")                # (N, 3, A, A)

    rounds = config.align_rounds
    pose = g.layers(config.alignment, small, params)                                      # (N, 4)
    theta = g.add("MatMul", [pose, g.const("pose_to_theta", pose_matrix())], "theta_flat")  # (N, 6)
    theta = g.add("Reshape", [theta, g.const("theta_shape", np.array([-1, 2, 3], np.int64))],
                  THETA if rounds == 1 else "warp.round1.theta")                              # (N, 2, 3)

    # the warp S -> S: sampling grid (N, S, S, 2) of input coordinates, then bilinear sampling
    size = g.add("Shape", [x], "warp.size")                                               # [N, 3, S, S]
    grid = g.add("AffineGrid", [theta, size], "warp.grid", align_corners=0)
    aligned = g.add("GridSample", [x, grid], "aligned", mode="linear", padding_mode="zeros", align_corners=0)

    for r in range(2, rounds + 1):       # ModelConfig.align_rounds: look again, compose, warp x once more
        p = f"warp.round{r}."
        again = g.add("MatMul", ["resize.rows", aligned], p + "resize.rows_out")          # (N, 3, A, S)
        again = g.add("MatMul", [again, "resize.cols"], p + "small")                      # (N, 3, A, A)
        again = g.layers(config.alignment, again, params, prefix=p)                       # (N, 4)
        again = g.add("MatMul", [again, "pose_to_theta"], p + "theta_flat")               # (N, 6)
        again = g.add("Reshape", [again, "theta_shape"], p + "theta")                     # (N, 2, 3)
        # [theta2; 0 0 1] (N, 3, 3): a zero row below, then 1 in its corner
        again = g.add("Pad", [again, g.const("compose.pads", np.array([0, 0, 0, 0, 1, 0], np.int64))],
                      p + "padded")
        again = g.add("Add", [again, g.const("compose.corner", np.array([[0, 0, 0], [0, 0, 0], [0, 0, 1]],
                                                                        np.float32))], p + "homogeneous")
        theta = g.add("MatMul", [theta, again], THETA if r == rounds else p + "composed")  # (N, 2, 3)
        grid = g.add("AffineGrid", [theta, size], p + "grid", align_corners=0)
        aligned = g.add("GridSample", [x, grid], p + "aligned", mode="linear", padding_mode="zeros",
                        align_corners=0)

    sig = g.layers(config.signature, aligned, params)                                     # (N, D)
    g.nodes[-1].output[0] = SIGNATURES

    graph = helper.make_graph(
        g.nodes, "npface", [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, [BATCH, S, S, 3])],
        [helper.make_tensor_value_info(SIGNATURES, TensorProto.FLOAT, [BATCH, D]),
         helper.make_tensor_value_info(THETA, TensorProto.FLOAT, [BATCH, 2, 3])],
        initializer=g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="npface", producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets),
                              doc_string="npface face signatures: uint8 RGB faces in, signatures and the "
                                         "alignment warp out; same person iff squared distance < threshold")
    metadata = {
        "format": FORMAT, "format_version": str(FORMAT_VERSION), "npface_version": __version__,
        "threshold": repr(model.threshold),
        "input": json.dumps({"name": INPUT, "dtype": "uint8", "shape": [BATCH, S, S, 3], "channels": "RGB",
                             "normalisation": NORMALISATION + " (inside the graph)"}),
        "outputs": json.dumps({
            SIGNATURES: {"dtype": "float32", "shape": [BATCH, D],
                         "meaning": "signatures; two faces are the same person iff the squared Euclidean "
                                    "distance of their signatures is below threshold"},
            THETA: {"dtype": "float32", "shape": [BATCH, 2, 3],
                    "meaning": "the alignment warp [[a, -b, tx], [b, a, ty]]: maps an output pixel's "
                               "normalised (x, y, 1) to the input position it samples (ONNX AffineGrid, "
                               "align_corners = 0)"}}),
        "config": json.dumps(config.to_json()),
        "provenance": json.dumps(model.provenance),
        "weights_sha256": weights_sha256(g.initializers),
    }
    helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model, path, opset=None):
    """Write ``model`` (a FaceModel) to ``path`` as an ONNX file, atomically; return the path.

    See the module docstring for the graph and its metadata. Raises
    MissingExtra when ``onnx`` is not installed, ValueError for a bad opset.
    """
    from npface.faces import write_output
    data = build_onnx(model, opset).SerializeToString()
    return write_output(path, lambda tmp: tmp.write_bytes(data))
