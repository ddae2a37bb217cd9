"""The framing net: moves a face cut by a detector's calibrated square onto the training crop.

``npface.framing`` turns a detector box into the square that LFW's crop would
have cut, by three constants that are right on average; for one face the
square is off by a few pixels and a few percent of scale (docs/PHOTOS.md),
and the signatures move with it. The framing net predicts, from the face as
that square cut it, where the training crop lies.

The net is a second copy of the alignment net's layers (Table 2's alignment
rows, ``npface.architecture.ALIGNMENT_NET``, on the same 50 x 50 resize of
the 112 x 112 cut), with parameters of its own, trained by
``python -m npface.pretrain_framing`` to output the warp theta that takes a
cut back to the training crop: theta (2, 3) maps the training crop's
normalised coordinates to the cut's, the warp convention of
``npface.ops.warp_forward``. It is not part of the paper, which starts from
framed faces; it only serves ``--frame detect``.

Refinement (``refine_square``)
------------------------------
Cut the square from the picture (``npface.framing.cut_frame``), predict
theta = [[a, -b, tx], [b, a, ty]], and move the square to where theta puts
the training crop (``move_square``): a square of side L centred at c becomes
the square of side L sqrt(a^2 + b^2) centred at c + (L / 2) (tx, ty). The
rotation is dropped: squares stay upright, and the model's alignment net
undoes a face's rotation as it does for any input. This is repeated
``ITERATIONS`` times, each cut taken from the picture itself, so resampling
never compounds. Two rounds: on the selection people's pasted pictures
(``benchmarks.photos --people selection``), with a net trained the same
way during development, two rounds kept more of verify's decisions than
one.

File
----
An ``.npz`` read without pickle: the ``align.*`` arrays (float32) and
``metadata.json`` (format, version, the layer list, provenance). Loading
checks every array's name, shape, dtype and finiteness against the layers.
``load_framing_net()`` with no path reads the file shipped in
``npface/pretrained/``; ``bundled()`` returns None when there is none.
"""
import json
from pathlib import Path

import numpy as np

from npface import __version__, ops
from npface.data.cache import atomic_write_npz
from npface.model import (METADATA_KEY, TABLE2, FaceModel, ModelConfig, align_forward, checked_parameters,
                          init_parameters, parameter_shapes, read_npface_file)

__all__ = ["FORMAT", "ITERATIONS", "PRETRAINED_PATH", "FramingNet", "bundled", "load_framing_net", "move_square",
           "refine_square"]

FORMAT = "npface-framing-net"
FORMAT_VERSION = 1
PRETRAINED_PATH = Path(__file__).resolve().parent / "pretrained" / "framing-net.npz"
ITERATIONS = 2


def _alignment_shapes():
    """{name: shape} of the alignment layers' parameters (Table 2's alignment rows)."""
    return {k: v for k, v in parameter_shapes(TABLE2).items() if k.startswith("align.")}


class FramingNet:
    """The alignment net's layers with parameters of their own (``params``: ``align.*`` float32 arrays).

    It offers what ``npface.model.align_forward`` and
    ``npface.pretrain_alignment.train_alignment`` read from a model
    (``config``, ``params``, ``dtype``, ``preprocess``), so they run and
    train it as they run and train a model's alignment net. ``FramingNet(seed=s)`` starts where a fresh
    model's alignment net starts: the identity warp.
    """

    config = TABLE2                       # its alignment layers and input sizes; the signature rows are not used
    # The model's own input checks and normalisation ([-1, 1], NCHW), read from config.input_size and dtype.
    check_images = FaceModel.check_images
    _check_float_range = staticmethod(FaceModel._check_float_range)
    preprocess = FaceModel.preprocess

    def __init__(self, params=None, seed=0, provenance=None):
        names = _alignment_shapes()
        if params is None:
            params = {k: v for k, v in init_parameters(TABLE2, seed).items() if k in names}
        self.params = params
        self.provenance = dict(provenance or {})

    @classmethod
    def from_model(cls, model):
        """A framing net starting from a copy of ``model``'s alignment net (a ``FaceModel``)."""
        return cls({name: np.array(model.params[name], dtype=np.float32) for name in _alignment_shapes()})

    @property
    def dtype(self):
        return self.params["align.fc7.bias"].dtype

    def predict(self, crops):
        """crops (N, 112, 112, 3) uint8 -> theta (N, 2, 3) float64: where each cut's training crop lies."""
        pose, _ = align_forward(self, crops)                                  # (N, 4) (a, b, tx, ty)
        return ops.pose_to_theta(pose.astype(np.float64))

    def save(self, path):
        """Write the net to ``path`` (.npz) atomically."""
        metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "npface_version": __version__,
                    "config": ModelConfig().to_json(), "provenance": self.provenance}
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in self.params.items()}
        arrays[METADATA_KEY] = np.array(json.dumps(metadata, indent=1))
        atomic_write_npz(Path(path), arrays)


def load_framing_net(path=None):
    """Read a framing net written by ``FramingNet.save``; with no path, the one shipped with npface.

    Raises FileNotFoundError for a missing file and ValueError, naming the
    file and the entry, for anything else wrong with it.
    """
    path = Path(path) if path is not None else PRETRAINED_PATH
    arrays, metadata = read_npface_file(path, "framing net")
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format {metadata.get('format')!r} version {metadata.get('format_version')!r}, "
                         f"expected {FORMAT!r} version {FORMAT_VERSION}")
    if metadata.get("config") != ModelConfig().to_json():
        raise ValueError(f"{path}: its layers are not the alignment net's (Table 2)")
    return FramingNet(checked_parameters(path, arrays, _alignment_shapes()), provenance=metadata.get("provenance"))


_BUNDLED = []


def bundled():
    """The framing net shipped in ``npface/pretrained/`` (read once per process), or None if there is none."""
    if not _BUNDLED:
        _BUNDLED.append(load_framing_net() if PRETRAINED_PATH.is_file() else None)
    return _BUNDLED[0]


def move_square(square, theta):
    """The upright square (x0, y0, x1, y1) where theta (2, 3), predicted on the square's cut, puts the crop.

    Centre c + (L / 2) (tx, ty), side L sqrt(a^2 + b^2) for a square of side
    L centred at c (module docstring); edge coordinates, as ``cut_frame``.
    """
    x0, y0, x1, y1 = (float(v) for v in square)
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (2, 3) or not np.isfinite(theta).all():
        raise ValueError(f"theta must be a finite (2, 3) warp, got shape {theta.shape}")
    side = x1 - x0
    cx, cy = (x0 + x1) / 2 + theta[0, 2] * side / 2, (y0 + y1) / 2 + theta[1, 2] * side / 2
    half = side * np.sqrt(abs(np.linalg.det(theta[:, :2]))) / 2          # det = a^2 + b^2 for a similarity
    return (cx - half, cy - half, cx + half, cy + half)


def refine_square(picture, square, net, iterations=ITERATIONS):
    """Move ``square`` (x0, y0, x1, y1) over a Pillow RGB ``picture`` onto its face's training crop.

    ``iterations`` rounds of cut, predict, ``move_square`` (module
    docstring); 0 returns the square unchanged.
    """
    from npface.framing import cut_frame
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}")
    for _ in range(iterations):
        theta = net.predict(cut_frame(picture, square, net.config.input_size)[None])[0]
        square = move_square(square, theta)
    return tuple(float(v) for v in square)
