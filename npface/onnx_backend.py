"""An exported ``.onnx`` file run by ONNX Runtime, behind the same face as ``FaceModel``.

``load_onnx(path)`` opens a file written by ``npface.onnx_export`` and checks
it before anything runs: that it parses, that its metadata says npface-onnx
in a version this npface reads, that the SHA-256 of its weights matches the
one recorded at export (a damaged file is refused, not run), that its input
and outputs have the documented names, dtypes and shapes, and that ONNX
Runtime accepts the graph. Every problem is a ValueError of one line naming
the file.

The model it returns has what the commands use of a ``FaceModel``:
``embed(images, batch_size, threads)``, ``threshold``, ``distance``, ``same``,
``config`` and ``provenance``. Like npface, it runs on one thread unless told
otherwise (one ONNX Runtime session per thread count, made on first use).
"""
import json
from pathlib import Path

import numpy as np

from npface.model import FaceModel, ModelConfig
from npface.onnx_export import (BATCH, FORMAT, FORMAT_VERSION, INPUT, SIGNATURES, THETA, import_extra,
                                weights_sha256)
from npface.threads import check_threads


class OnnxModel:
    """A checked ONNX Runtime model (see ``load_onnx``)."""

    def __init__(self, path, data, config, threshold, provenance):
        self.path = Path(path)
        self.config = config
        self.params = {"threshold": np.array(threshold, dtype=np.float32)}   # the weights live in the graph
        self.provenance = dict(provenance)
        self.threads = 1
        self._data = data              # the file's bytes, for sessions with other thread counts
        self._sessions = {}

    # FaceModel's own threshold, image checks and distances: they use only config and params["threshold"]
    threshold = FaceModel.threshold
    check_images = FaceModel.check_images
    distance = FaceModel.distance
    same = FaceModel.same
    _signatures = FaceModel._signatures

    def session(self, threads=1):
        """The ONNX Runtime session on ``threads`` intra-op threads (made once per count)."""
        if threads not in self._sessions:
            self._sessions[threads] = _session(self._data, threads, self.path)
        return self._sessions[threads]

    def profiling_session(self, prefix, threads=1):
        """A new session like ``session``'s that records ONNX Runtime's per-node profile; its
        ``end_profiling()`` writes it to a JSON file whose name starts with ``prefix`` and returns the name."""
        return _session(self._data, threads, self.path, profile_prefix=prefix)

    def run(self, images, threads=None):
        """(signatures (N, D), theta (N, 2, 3)), both float32, of uint8 images (N, S, S, 3), in one call."""
        threads = self._check_args(images, threads)
        sig, theta = self.session(threads).run([SIGNATURES, THETA], {INPUT: np.ascontiguousarray(images)})
        return sig, theta

    def embed(self, images, batch_size=64, threads=None):
        """Signatures (N, D) float32 of uint8 images (N, S, S, 3), in batches of ``batch_size``."""
        threads = self._check_args(images, threads)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        session = self.session(threads)
        out = np.empty((len(images), self.config.signature_dim), dtype=np.float32)   # (N, D)
        for start in range(0, len(images), batch_size):
            batch = np.ascontiguousarray(images[start:start + batch_size])
            out[start:start + len(batch)] = session.run([SIGNATURES], {INPUT: batch})[0]
        return out

    def _check_args(self, images, threads):
        threads = check_threads(self.threads if threads is None else threads)
        self.check_images(images)
        if images.dtype != np.uint8:
            raise ValueError(f"an ONNX model takes uint8 images (0..255), got dtype {images.dtype}")
        return threads


def _one_line(error):
    return " ".join(str(error).split())


def _session(data, threads, path, profile_prefix=None):
    ort = import_extra("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as e:   # ONNX Runtime's own exception types: any of them means "cannot run this file"
        raise ValueError(f"{path}: ONNX Runtime cannot load the model: {_one_line(e)}") from None


def _tensor(value):
    """(dtype name, [dims]) of a graph input/output; a named (dynamic) dimension is its name."""
    import onnx
    t = value.type.tensor_type
    dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
    return onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, dims


def load_onnx(path):
    """Open and check an ONNX file written by ``npface.onnx_export``; return an OnnxModel.

    Raises FileNotFoundError for a missing file, MissingExtra when onnx or
    onnxruntime is not installed, and ValueError (one line, naming the file)
    for a file that is truncated, damaged or not an npface export.
    """
    onnx = import_extra("onnx")
    import_extra("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model file not found: {path}")
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path}: empty file, not an ONNX model")
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as e:   # protobuf's DecodeError and friends
        raise ValueError(f"{path}: not a readable ONNX file (truncated or damaged?): {_one_line(e)}") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an npface ONNX export, or a truncated one (metadata format is "
                         f"{meta.get('format')!r}, expected {FORMAT!r}); export one with python -m npface.export")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise ValueError(f"{path}: npface ONNX format version {meta.get('format_version')!r} is not supported "
                         f"(this npface reads version {FORMAT_VERSION})")
    if weights_sha256(proto.graph.initializer) != meta.get("weights_sha256"):
        raise ValueError(f"{path}: the weights do not match the SHA-256 recorded at export: the file is "
                         "truncated or damaged")
    try:
        config = ModelConfig.from_json(json.loads(meta["config"])).check()
        threshold = float(meta["threshold"])
        provenance = json.loads(meta.get("provenance", "{}"))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad npface metadata: {_one_line(e)}") from None
    S, D = config.input_size, config.signature_dim
    want_in = {INPUT: ("uint8", [BATCH, S, S, 3])}
    want_out = {SIGNATURES: ("float32", [BATCH, D]), THETA: ("float32", [BATCH, 2, 3])}
    got_in = {v.name: _tensor(v) for v in proto.graph.input}
    got_out = {v.name: _tensor(v) for v in proto.graph.output}
    if got_in != want_in or got_out != want_out:
        raise ValueError(f"{path}: graph inputs {got_in} and outputs {got_out} are not the expected "
                         f"{want_in} and {want_out}")
    model = OnnxModel(path, data, config, threshold, provenance)
    model.session(1)                     # ONNX Runtime's own check of the graph, before anything runs
    return model


# The largest difference allowed between ONNX Runtime's and npface's outputs (signatures and theta)
# for the same images: float32 rounding differs between the two (summation order inside the
# convolutions and matrix products), nothing else.
TOLERANCE = 1e-4


def outputs(model, onnx_model, images, batch_size=64):
    """Signatures (N, D) and theta (N, 2, 3) of uint8 images (N, S, S, 3) from a FaceModel and from an
    OnnxModel, one thread each, in batches: ((sig, theta) of npface, (sig, theta) of ONNX Runtime)."""
    from npface.threads import limit
    N, D = len(images), model.config.signature_dim
    ours = (np.empty((N, D), np.float32), np.empty((N, 2, 3), np.float32))
    theirs = (np.empty((N, D), np.float32), np.empty((N, 2, 3), np.float32))
    for start in range(0, N, batch_size):
        batch = images[start:start + batch_size]
        with limit(1):
            sig, cache = model.forward(batch, train=True)
        ours[0][start:start + len(batch)], ours[1][start:start + len(batch)] = sig, cache.theta
        theirs[0][start:start + len(batch)], theirs[1][start:start + len(batch)] = onnx_model.run(batch, threads=1)
    return ours, theirs


def max_differences(model, onnx_model, images):
    """(max |signatures diff|, max |theta diff|) of a FaceModel and an OnnxModel on uint8 images (N, S, S, 3)."""
    (sig, theta), (onnx_sig, onnx_theta) = outputs(model, onnx_model, images)
    return float(np.abs(sig - onnx_sig).max()), float(np.abs(theta - onnx_theta).max())
