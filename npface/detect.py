"""Find faces in ordinary pictures: OpenCV's frontal-face Haar cascade (the ``detect`` extra).

    faces = detect_faces(read_picture("party.jpg"))    # main face first (see Order)
    faces[0].box                                        # (left, top, width, height), picture pixels

The detector is the Viola-Jones cascade of Haar-like features that
``opencv-python-headless`` 4.x ships as ``haarcascade_frontalface_default.xml``
under ``cv2.data.haarcascades`` (OpenCV 5 no longer ships these files, hence
the extra's ``<5`` pin). It needs no download and no compiler. Other
detectors were considered and left out: OpenCV's YuNet
(``cv2.FaceDetectorYN``) and UniFace fetch their weights separately, and
the current MediaPipe release ships none of its models.

Pictures are decoded exactly as every other npface command decodes them
(``npface.data.folders.open_upright_rgb``: Pillow, EXIF orientation applied,
RGB), so a box refers to the upright picture the user sees.

Search
------
The cascade slides a 24 x 24 window over an image pyramid (scale step
``SCALE_STEP``); a face is a cluster of at least ``MIN_NEIGHBOURS``
overlapping window hits. To keep a 4000 x 3000 photo fast, the search runs
on a grey copy whose longer side is at most ``MAX_SIDE`` pixels, and boxes
are scaled back. So the smallest face found is ``MIN_FACE`` pixels in that
copy: ``MIN_FACE * max(W, H) / MAX_SIDE`` pixels in a larger picture.
Smaller faces are not found (a picture with only such faces has no face).

The copy is first histogram-equalised, which spreads the grey levels of a
dim or flat picture. Where a bright, busy background fills most of the
histogram, equalisation instead squeezes the face's levels together, so a
picture in which the equalised copy shows no face is searched once more
as it is (``docs/PHOTOS.md`` gives what this second look finds, and what
it costs in false detections on pictures without a face).

Order
-----
Faces are listed main face first, then the others largest first. The main
face is the largest, except that a face whose box side is at least
``NEAR_TIE`` of the largest one's counts as tied with it, and among tied
faces the higher score wins: two people side by side give boxes a few
percent apart in size, and so does a face next to a slightly larger false
detection, whose score is lower. ``npface.verify`` takes the main face
unless told otherwise (``--face``).

Score
-----
``Face.score`` is the cascade's level weight of the detection (OpenCV's
``detectMultiScale3`` with ``outputRejectLevels``): the summed stage
response of its final stage, larger for a more face-like window. It ranks
detections within one picture; it is not a probability.

Coordinates: Pillow's edge coordinates, pixel i spanning [i, i + 1]; a box
(left, top, width, height) covers [left, left + width] x [top, top + height].
"""
from dataclasses import dataclass
from typing import List

import numpy as np

from npface.data.folders import open_upright_rgb
from npface.extras import MissingExtra, install_hint

INSTALL_HINT = install_hint("detect")
CASCADE_FILE = "haarcascade_frontalface_default.xml"
MAX_SIDE = 1024          # the search runs on a copy at most this large (longer side, pixels)
MIN_FACE = 24            # the cascade's window: the smallest face found, in that copy's pixels
SCALE_STEP = 1.1         # pyramid step between window sizes
MIN_NEIGHBOURS = 5       # overlapping window hits that make a detection
NEAR_TIE = 0.8           # a box side at least this share of the largest one's ties with it (see Order)

__all__ = ["CASCADE_FILE", "Face", "MissingExtra", "detect_faces", "detector_available", "main_face_first",
           "read_picture"]


@dataclass(frozen=True)
class Face:
    """One detection: a box in picture pixels (edge coordinates) and the cascade's score."""
    left: float
    top: float
    width: float
    height: float
    score: float

    @property
    def box(self) -> tuple:
        """(left, top, width, height)."""
        return (self.left, self.top, self.width, self.height)


def _cv2():
    """The ``cv2`` module, or a one-line MissingExtra naming the extra to install."""
    try:
        import cv2
    except ImportError:
        raise MissingExtra(f"face detection needs OpenCV 4.x: {INSTALL_HINT}") from None
    return cv2


def detector_available() -> bool:
    """True when OpenCV and its bundled frontal-face cascade can be loaded."""
    try:
        _cascade()
    except MissingExtra:
        return False
    return True


_CASCADE = []


def _cascade():
    """The loaded cascade (one per process; OpenCV's classifier is reused across calls)."""
    if not _CASCADE:
        cv2 = _cv2()
        path = getattr(getattr(cv2, "data", None), "haarcascades", None)
        if path is None:
            raise MissingExtra(f"this OpenCV build ships no Haar cascades (OpenCV 5 dropped them): {INSTALL_HINT}")
        cascade = cv2.CascadeClassifier(str(path) + CASCADE_FILE)
        if cascade.empty():
            raise MissingExtra(f"cannot load {CASCADE_FILE} from {path}: {INSTALL_HINT}")
        _CASCADE.append(cascade)
    return _CASCADE[0]


def read_picture(path) -> np.ndarray:
    """Decode a picture as every npface command does: -> (H, W, 3) uint8 RGB, EXIF rotation applied."""
    return np.asarray(open_upright_rgb(path), dtype=np.uint8)


def detect_faces(picture: np.ndarray, plain: bool = False) -> List[Face]:
    """Every frontal face in ``picture`` (H, W, 3) uint8 RGB, main face first (module docstring, Order).

    ``plain``: one search of the equalised copy and the faces largest first,
    without the second look and the main-face rule (for measuring what they
    add). Returns [] when there is none. Raises ValueError for a picture of
    another shape or dtype and MissingExtra when OpenCV is not installed.
    ``picture`` is not modified.
    """
    if not isinstance(picture, np.ndarray) or picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"picture must be an (H, W, 3) RGB array, got "
                         f"{getattr(picture, 'shape', type(picture).__name__)}")
    if picture.dtype != np.uint8:
        raise ValueError(f"picture must be uint8, got dtype {picture.dtype}")
    cv2 = _cv2()
    h, w = picture.shape[:2]
    k = min(1.0, MAX_SIDE / max(h, w))                   # search-copy pixels per picture pixel
    gray = cv2.cvtColor(np.ascontiguousarray(picture), cv2.COLOR_RGB2GRAY)     # (H, W)
    if k < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    if min(gray.shape) < MIN_FACE:
        return []
    sx, sy = w / gray.shape[1], h / gray.shape[0]        # exact back-scale of the rounded copy
    faces = _search(cv2.equalizeHist(gray), sx, sy)
    if plain:
        return _largest_first(faces)
    return main_face_first(faces or _search(gray, sx, sy))


def _search(gray, sx, sy) -> List[Face]:
    """The cascade's detections in the grey search copy (h, w) uint8, as Faces in picture pixels."""
    rects, _, weights = _cascade().detectMultiScale3(gray, scaleFactor=SCALE_STEP, minNeighbors=MIN_NEIGHBOURS,
                                                     minSize=(MIN_FACE, MIN_FACE), outputRejectLevels=True)
    return [Face(float(x * sx), float(y * sy), float(bw * sx), float(bh * sy), float(s))
            for (x, y, bw, bh), s in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1))]


def _largest_first(faces: List[Face]) -> List[Face]:
    """``faces`` by box area, largest first (equal areas: higher score first)."""
    return sorted(faces, key=lambda f: (-f.width * f.height, -f.score))


def main_face_first(faces: List[Face]) -> List[Face]:
    """``faces`` ordered main face first, then the others largest first (module docstring, Order)."""
    faces = _largest_first(faces)
    if not faces:
        return faces
    side = max(faces[0].width, faces[0].height)
    tied = [f for f in faces if max(f.width, f.height) >= NEAR_TIE * side]
    main = max(tied, key=lambda f: f.score)              # the first of equal scores: the larger
    return [main] + [f for f in faces if f is not main]
