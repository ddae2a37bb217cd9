"""From a detector's box to the training frame: the square the LFW crop would have cut around the face.

Training sees faces through ``LFW_CROP`` (a 144 px square of the 250 x 250
LFW frame, resampled to 112 x 112), in which the face sits at a particular
place and size. A detector's box sits elsewhere on the face (the frontal
Haar cascade's box runs from the brows to the mouth, narrower than the jaw).
The frame is a square derived from the box by three calibration constants::

    size = sqrt(w h)                                   (the box's side; the cascade's boxes are square)
    centre = (left + w / 2 + dx size, top + h / 2 + dy size)
    side = scale size

in Pillow's edge coordinates (pixel i spans [i, i + 1]). The square is cut
from the picture and resampled bilinearly to 112 x 112 (``cut_frame``);
where it reaches past the picture's edge it is filled with zeros (black),
the warp's own convention for outside pixels.

Calibration
-----------
(dx, dy, scale) are fitted, by ``python -m benchmarks.framing``, on LFW
frames of peopleDevTrain people pasted into larger pictures, with the
68-point landmarks as truth: the least-squares fit puts each face's 68
landmarks where the training crop puts them on average (the mean landmarks
of those faces in their ``LFW_CROP`` crops), i.e. the frame that the
landmarks say is the training frame. With u = (p + 0.5 - left) / size a
landmark's position in box units (p in dlib's pixel-centre convention) it
lands in the crop at::

    (q + 0.5) / 112 = u / scale + (1/2 - (1/2 + dx) / scale)

which is linear in (1 / scale, c_x, c_y): an ordinary least-squares
problem with a shared slope (``fit_calibration``). The fitted constants are
written to ``npface/framing_calibration.py`` by that command; the figures
(framing error before and after the alignment net, on held-out people)
are in ``benchmarks/results/framing.json``.
"""
from dataclasses import dataclass

import numpy as np
from PIL import Image

from npface.data.folders import LFW_CROP

__all__ = ["FrameCalibration", "calibration", "cut_frame", "eyes_in_frame", "fit_calibration", "frame_square"]


@dataclass(frozen=True)
class FrameCalibration:
    """Where the training frame sits relative to a detector box, in units of the box's side."""
    dx: float            # frame centre right of the box centre
    dy: float            # frame centre below the box centre
    scale: float         # frame side / box side

    def __post_init__(self):
        for name in ("dx", "dy", "scale"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"FrameCalibration: {name} must be finite, got {getattr(self, name)!r}")
        if self.scale <= 0:
            raise ValueError(f"FrameCalibration: scale must be > 0, got {self.scale!r}")


def calibration() -> FrameCalibration:
    """The committed calibration of the bundled detector (``npface/framing_calibration.py``)."""
    from npface.framing_calibration import CALIBRATION
    return FrameCalibration(CALIBRATION["dx"], CALIBRATION["dy"], CALIBRATION["scale"])


def _boxes(boxes):
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4) = (left, top, width, height), got {boxes.shape}")
    if not np.isfinite(boxes).all() or (boxes[..., 2:] <= 0).any():
        raise ValueError("boxes must be finite with positive width and height")
    return boxes


def frame_square(boxes, cal: FrameCalibration) -> np.ndarray:
    """Detector boxes (..., 4) (left, top, width, height) -> frames (..., 4) (x0, y0, x1, y1), square, edge coords."""
    boxes = _boxes(boxes)
    left, top, w, h = np.moveaxis(boxes, -1, 0)
    size = np.sqrt(w * h)
    cx = left + w / 2 + cal.dx * size
    cy = top + h / 2 + cal.dy * size
    half = cal.scale * size / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=-1)


def cut_frame(picture: Image.Image, square, out: int = LFW_CROP.out) -> np.ndarray:
    """Cut the square (x0, y0, x1, y1) (edge coordinates) from a Pillow RGB picture: -> (out, out, 3) uint8.

    Bilinear resampling with Pillow's ``resize(box=)`` (anti-aliased when
    shrinking), as ``decode_face`` does for the LFW crop; the part of the
    square outside the picture is black.
    """
    x0, y0, x1, y1 = (float(v) for v in square)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"square must have x1 > x0 and y1 > y0, got {square}")
    ix0, iy0, ix1, iy1 = int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))
    region = picture.crop((ix0, iy0, ix1, iy1))          # zero-filled where it leaves the picture
    face = region.resize((out, out), Image.Resampling.BILINEAR, box=(x0 - ix0, y0 - iy0, x1 - ix0, y1 - iy0))
    return np.asarray(face, dtype=np.uint8)               # (out, out, 3)


def eyes_in_frame(eyes, squares, out: int = LFW_CROP.out) -> np.ndarray:
    """Eye centres (N, 2, 2) in picture pixels (dlib centre convention) -> (N, 2, 2) pixels of the out x out crop."""
    eyes = np.asarray(eyes, dtype=np.float64)
    squares = np.asarray(squares, dtype=np.float64)
    if eyes.ndim != 3 or eyes.shape[1:] != (2, 2) or squares.shape != (len(eyes), 4):
        raise ValueError(f"eyes must have shape (N, 2, 2) and squares (N, 4), got {eyes.shape} and {squares.shape}")
    origin = squares[:, None, :2]                                         # (N, 1, 2)
    side = (squares[:, 2] - squares[:, 0])[:, None, None]                 # (N, 1, 1)
    return (eyes + 0.5 - origin) * (out / side) - 0.5


def fit_calibration(boxes, points, reference, out: int = LFW_CROP.out) -> FrameCalibration:
    """Least-squares calibration putting the landmarks ``points`` (N, M, 2) of the faces in ``boxes`` (N, 4)
    at ``reference`` (M, 2).

    points: picture pixels (dlib centre convention); reference: pixels of
    the out x out crop (e.g. the mean landmarks of training crops). Solves
    (q + 0.5) / out = a u + c per coordinate (module docstring) for a
    shared a and c = (c_x, c_y) over all faces and points, then
    scale = 1 / a, d = (1/2 - c) scale - 1/2.
    """
    boxes = _boxes(boxes)
    points = np.asarray(points, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if boxes.ndim != 2 or points.ndim != 3 or points.shape[0] != len(boxes) or points.shape[1:] != reference.shape \
            or reference.shape[-1] != 2:
        raise ValueError(f"boxes must be (N, 4), points (N, M, 2) and reference (M, 2), got "
                         f"{boxes.shape}, {points.shape}, {reference.shape}")
    if len(boxes) < 2:
        raise ValueError("fit_calibration needs at least 2 faces")
    size = np.sqrt(boxes[:, 2] * boxes[:, 3])                             # (N,)
    u = (points + 0.5 - boxes[:, None, :2]) / size[:, None, None]         # (N, M, 2) box units
    target = np.broadcast_to((reference + 0.5) / out, u.shape)            # (N, M, 2)
    # Columns: a, c_x, c_y; one row per (face, point, coordinate).
    design = np.zeros(u.shape + (3,))
    design[..., 0] = u
    design[..., 0, 1] = 1.0
    design[..., 1, 2] = 1.0
    (a, cx, cy), *_ = np.linalg.lstsq(design.reshape(-1, 3), target.reshape(-1), rcond=None)
    scale = 1.0 / a
    return FrameCalibration(float((0.5 - cx) * scale - 0.5), float((0.5 - cy) * scale - 0.5), float(scale))
