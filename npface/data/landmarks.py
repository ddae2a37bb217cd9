"""68-point landmarks -> alignment targets: the warps the alignment net regresses.

Notation::

    N   images            M   landmarks per image (68)
    points   (N, M, 2)    (x, y) pixels, x the column, y the row
    params   (N, 4)       similarity (a, b, tx, ty): p -> [[a, -b], [b, a]] p + (tx, ty)
    T        (N, 2, 3)    an affine map of PIXEL coordinates, p -> T[:, :2] p + T[:, 2]
    theta    (N, 2, 3)    an affine map of NORMALISED coordinates (the warp convention)

Pixel convention (dlib's, used by landmarks68.tsv): pixel (0, 0) has its
centre at (0, 0); an image S pixels wide spans -0.5 .. S - 0.5.

Normalised convention (``npface.ops.warp_forward``; ONNX AffineGrid +
GridSample, align_corners = 0): u = (2 p + 1) / S - 1, so an axis spans
[-1, 1] edge to edge. ``theta`` maps an OUTPUT position to the INPUT
position it samples: (x_i, y_i) = theta @ (x_o, y_o, 1). The alignment net
predicts theta = [[a, -b, tx], [b, a, ty]]; the identity is a = 1, b = tx = ty = 0.
With square input and output (112 x 112 here) a pixel similarity stays a
similarity in normalised coordinates, and theta does not depend on the
resolution, so the same targets serve the 50x50 alignment-net input.

Pipeline for LFW:

1. ``read_landmarks``: the 13,233 rows of ``landmarks68.tsv``.
2. ``LandmarkTable.crop_points``: the landmarks of dataset files, mapped into
   the 112x112 crop by the same ``CropBox`` that cut the images
   (``npface.data.folders.LFW_CROP``).
3. ``make_template``: the canonical 68-point face in the 112x112 aligned
   output -- the Procrustes mean shape of the training images' landmarks,
   placed by a similarity that puts its two eye centres exactly at
   ``TEMPLATE_EYES`` (level, symmetric about the vertical centre line).
4. ``alignment_thetas``: per image, the least-squares similarity from its
   crop landmarks onto the template (``fit_similarity``), inverted (the warp
   samples the input for each output pixel) and converted to ``theta``.
5. ``landmark_error``: mean distance, in output pixels, between where the
   landmarks land after a warp and the template.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from npface.data.folders import LFW_CROP, CropBox

N_LANDMARKS = 68
# iBUG 68-point indices (0-based). "Left"/"right" are IMAGE sides.
LEFT_EYE = slice(36, 42)    # the subject's right eye; 36 outer corner, 39 inner corner
RIGHT_EYE = slice(42, 48)   # the subject's left eye; 42 inner corner, 45 outer corner

# Template eye centres (mean of the six points of each eye) in the 112x112
# aligned output, pixels: (x, y) of the image-left eye, then the image-right
# eye. On level eyes, symmetric about the centre column 55.5, 32 px apart.
# They round the eye centres of the Procrustes mean of the training faces
# in the LFW_CROP frame ((39.8, 31.5) and (71.7, 30.8)), levelled: so the
# average fitted warp is close to the identity (median scale 1.01, median
# rotation -1.3 degrees from the levelling) and the alignment net regresses
# a correction around it; the template face (brows y ~ 19 to chin y ~ 93,
# jaw x ~ 18 .. 94) keeps the crop's margin on every side.
TEMPLATE_EYES = np.array([[39.5, 31.0], [71.5, 31.0]])  # (2, 2)

TSV_FIXED_COLUMNS = ("path", "detected", "box_left", "box_top", "box_right", "box_bottom")


# --------------------------------------------------------------------------
# The landmark file
# --------------------------------------------------------------------------

def _key(path: str) -> str:
    """Lookup key of an image path: its last two components, '<person>/<file>'."""
    parts = str(path).replace("\\", "/").split("/")
    return "/".join(parts[-2:])


@dataclass(frozen=True)
class LandmarkTable:
    """The rows of landmarks68.tsv.

    paths     (N,)          image paths as in the file ('lfw/<person>/<file>')
    detected  (N,) bool     True: face box from the detector; False: fixed fallback box
    boxes     (N, 4) int64  left, top, right, bottom (inclusive) of the box given to the predictor
    points    (N, 68, 2)    float64 landmarks (x, y) in the 250x250 frame, dlib pixel convention
    """
    paths: tuple
    detected: np.ndarray
    boxes: np.ndarray
    points: np.ndarray

    def __len__(self):
        return len(self.paths)

    def rows_for(self, files: Sequence[str]) -> np.ndarray:
        """(M,) int64 row of each file; files are matched on '<person>/<file>' (their last two components)."""
        pos = {_key(p): i for i, p in enumerate(self.paths)}
        rows = [pos.get(_key(f), -1) for f in files]
        missing = [f for f, r in zip(files, rows) if r < 0]
        if missing:
            raise ValueError(f"files: {len(missing)} have no landmarks, e.g. {missing[0]!r}")
        return np.asarray(rows, dtype=np.int64)

    def crop_points(self, files: Sequence[str], crop: CropBox = LFW_CROP) -> np.ndarray:
        """(M, 68, 2) landmarks of ``files`` in the crop's output pixels (``CropBox.points_to_crop``)."""
        return crop.points_to_crop(self.points[self.rows_for(files)])


def read_landmarks(path: Union[str, os.PathLike]) -> LandmarkTable:
    """Parse landmarks68.tsv (header line, then path, detected, box, x0, y0, ..., x67, y67 per row).

    Raises FileNotFoundError if missing and ValueError, naming the file and
    line, for a wrong header or a malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"landmark file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    expected = list(TSV_FIXED_COLUMNS) + [f"{c}{i}" for i in range(N_LANDMARKS) for c in "xy"]
    if not lines or lines[0].split("\t") != expected:
        raise ValueError(f"{path}:1: expected the header 'path<TAB>detected<TAB>box_left ... x67<TAB>y67'")
    paths, numbers = [], []
    n_cols = len(expected)
    for no, ln in enumerate(lines[1:], start=2):
        if not ln.strip():
            continue
        fields = ln.split("\t")
        if len(fields) != n_cols:
            raise ValueError(f"{path}:{no}: expected {n_cols} tab-separated fields, got {len(fields)}")
        try:
            numbers.append([float(v) for v in fields[1:]])
        except ValueError:
            raise ValueError(f"{path}:{no}: non-numeric field in {fields[0]!r}") from None
        paths.append(fields[0])
    if not paths:
        raise ValueError(f"{path}: no landmark rows")
    arr = np.asarray(numbers, dtype=np.float64)  # (N, 1 + 4 + 136)
    detected = arr[:, 0]
    if not np.isin(detected, (0.0, 1.0)).all():
        bad = int(np.flatnonzero(~np.isin(detected, (0.0, 1.0)))[0])
        raise ValueError(f"{path}: 'detected' must be 0 or 1, row of {paths[bad]!r} has {detected[bad]}")
    return LandmarkTable(tuple(paths), detected == 1.0, arr[:, 1:5].astype(np.int64),
                         arr[:, 5:].reshape(-1, N_LANDMARKS, 2))


# --------------------------------------------------------------------------
# Similarity transforms
# --------------------------------------------------------------------------

def _shapes(points, name, ndim_min=2):
    points = np.asarray(points, dtype=np.float64)
    if points.ndim < ndim_min or points.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (..., M, 2) of (x, y) points, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(f"{name} must be finite")
    return points


def _affines(T, name):
    T = np.asarray(T, dtype=np.float64)
    if T.ndim < 2 or T.shape[-2:] != (2, 3):
        raise ValueError(f"{name} must have shape (..., 2, 3), got shape {T.shape}")
    return T


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity from ``src`` onto ``dst``: params (..., 4) = (a, b, tx, ty).

    src, dst: (..., M, 2), broadcast against each other (e.g. (N, M, 2)
    against a template (M, 2)). Minimises over (a, b, t)::

        sum_m || [[a, -b], [b, a]] src_m + t - dst_m ||^2

    which is linear in (a, b, t). Closed form: with the centred points
    s = src - mean(src), d = dst - mean(dst),

        a = sum(s . d) / sum|s|^2,   b = sum(s_x d_y - s_y d_x) / sum|s|^2,
        t = mean(dst) - [[a, -b], [b, a]] mean(src).

    (scale sqrt(a^2 + b^2), rotation atan2(b, a); no reflection.)
    Raises ValueError for fewer than 2 points or all ``src`` points equal.
    """
    src = _shapes(src, "src")
    dst = _shapes(dst, "dst")
    if src.shape[-2] != dst.shape[-2]:
        raise ValueError(f"src and dst must have the same number of points M, got {src.shape} and {dst.shape}")
    if src.shape[-2] < 2:
        raise ValueError(f"src must have at least 2 points, got shape {src.shape}")
    src, dst = np.broadcast_arrays(src, dst)
    ms = src.mean(axis=-2)                 # (..., 2)
    md = dst.mean(axis=-2)                 # (..., 2)
    s = src - ms[..., None, :]             # (..., M, 2)
    d = dst - md[..., None, :]             # (..., M, 2)
    den = (s * s).sum(axis=(-2, -1))       # (...,)
    if (den <= 1e-12 * np.maximum(1.0, np.abs(ms).sum(-1) ** 2)).any():
        raise ValueError("src: all points coincide, a similarity is not determined")
    a = (s * d).sum(axis=(-2, -1)) / den
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(axis=-1) / den
    tx = md[..., 0] - (a * ms[..., 0] - b * ms[..., 1])
    ty = md[..., 1] - (b * ms[..., 0] + a * ms[..., 1])
    return np.stack([a, b, tx, ty], axis=-1)


def similarity_matrix(params: np.ndarray) -> np.ndarray:
    """params (..., 4) (a, b, tx, ty) -> (..., 2, 3) [[a, -b, tx], [b, a, ty]]."""
    params = np.asarray(params, dtype=np.float64)
    if params.ndim < 1 or params.shape[-1] != 4:
        raise ValueError(f"params must have shape (..., 4) = (a, b, tx, ty), got shape {params.shape}")
    a, b, tx, ty = np.moveaxis(params, -1, 0)
    return np.stack([np.stack([a, -b, tx], -1), np.stack([b, a, ty], -1)], -2)


def similarity_params(T: np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """(..., 2, 3) similarity matrix -> params (..., 4) (a, b, tx, ty).

    Raises ValueError if T is not of the form [[a, -b, tx], [b, a, ty]]
    within ``atol``.
    """
    T = _affines(T, "T")
    if (np.abs(T[..., 0, 0] - T[..., 1, 1]) > atol).any() or (np.abs(T[..., 0, 1] + T[..., 1, 0]) > atol).any():
        raise ValueError("T must be a similarity [[a, -b, tx], [b, a, ty]]; got a general affine map")
    a = 0.5 * (T[..., 0, 0] + T[..., 1, 1])
    b = 0.5 * (T[..., 1, 0] - T[..., 0, 1])
    return np.stack([a, b, T[..., 0, 2], T[..., 1, 2]], axis=-1)


def _to3(T):
    """(..., 2, 3) -> (..., 3, 3) homogeneous."""
    out = np.zeros(T.shape[:-2] + (3, 3))
    out[..., :2, :] = T
    out[..., 2, 2] = 1.0
    return out


def compose_affine(T1: np.ndarray, T2: np.ndarray) -> np.ndarray:
    """(..., 2, 3) maps -> T1 o T2 (apply T2 first, then T1), (..., 2, 3)."""
    T1, T2 = _affines(T1, "T1"), _affines(T2, "T2")
    return (_to3(T1) @ _to3(T2))[..., :2, :]


def invert_affine(T: np.ndarray) -> np.ndarray:
    """(..., 2, 3) invertible affine map -> its inverse (..., 2, 3)."""
    T = _affines(T, "T")
    det = T[..., 0, 0] * T[..., 1, 1] - T[..., 0, 1] * T[..., 1, 0]
    if (np.abs(det) < 1e-12).any():
        raise ValueError("T is singular (determinant 0), it has no inverse")
    return np.linalg.inv(_to3(T))[..., :2, :]


def apply_affine(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points (..., M, 2) by T (..., 2, 3): T[:, :2] p + T[:, 2]."""
    T = _affines(T, "T")
    points = _shapes(points, "points")
    return np.einsum("...ij,...mj->...mi", T[..., :2], points) + T[..., None, :, 2]


def _norm_from_pixel(hw):
    """(3, 3): pixel (x, y, 1) -> normalised (u, v, 1), u = (2 p + 1) / S - 1."""
    h, w = hw
    return np.array([[2.0 / w, 0.0, 1.0 / w - 1.0],
                     [0.0, 2.0 / h, 1.0 / h - 1.0],
                     [0.0, 0.0, 1.0]])


def _hw(v, name):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (v, v)
    if len(v) != 2 or not all(isinstance(x, (int, np.integer)) and x >= 1 for x in v):
        raise ValueError(f"{name} must be a size S or (H, W) of positive integers, got {v!r}")
    return int(v[0]), int(v[1])


def pixel_to_theta(T_px: np.ndarray, in_hw=112, out_hw=112) -> np.ndarray:
    """Pixel map OUTPUT -> INPUT (..., 2, 3) -> the same map in normalised coordinates (theta).

    theta = P_in o T_px o P_out^-1, where P_S maps pixels to normalised
    coordinates (u = (2 p + 1) / S - 1 per axis). in_hw / out_hw: S or (H, W).
    """
    T_px = _affines(T_px, "T_px")
    P_in, P_out = _norm_from_pixel(_hw(in_hw, "in_hw")), _norm_from_pixel(_hw(out_hw, "out_hw"))
    return (P_in @ _to3(T_px) @ np.linalg.inv(P_out))[..., :2, :]


def theta_to_pixel(theta: np.ndarray, in_hw=112, out_hw=112) -> np.ndarray:
    """Inverse of ``pixel_to_theta``: theta (..., 2, 3) -> pixel map OUTPUT -> INPUT (..., 2, 3)."""
    theta = _affines(theta, "theta")
    P_in, P_out = _norm_from_pixel(_hw(in_hw, "in_hw")), _norm_from_pixel(_hw(out_hw, "out_hw"))
    return (np.linalg.inv(P_in) @ _to3(theta) @ P_out)[..., :2, :]


def identity_theta(n: int) -> np.ndarray:
    """(n, 2, 3) identity warps [[1, 0, 0], [0, 1, 0]]."""
    return np.broadcast_to(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (n, 2, 3)).copy()


# Horizontal flip in normalised coordinates: x -> -x (pixel p -> W - 1 - p exactly).
FLIP_THETA = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # (2, 3)


# --------------------------------------------------------------------------
# Template and targets
# --------------------------------------------------------------------------

def procrustes_mean(shapes: np.ndarray, iters: int = 20, tol: float = 1e-6) -> np.ndarray:
    """Generalised Procrustes mean of shapes (N, M, 2) -> (M, 2).

    Start from the plain mean; repeat: fit every shape onto the current mean
    by a least-squares similarity, average the fitted shapes, and map that
    average back onto the plain mean (fixing position, scale and rotation,
    which Procrustes alone leaves free); stop when no point moves more than
    ``tol`` pixels.
    """
    shapes = _shapes(shapes, "shapes", ndim_min=3)
    if shapes.ndim != 3 or shapes.shape[0] < 1:
        raise ValueError(f"shapes must have shape (N, M, 2) with N >= 1, got {shapes.shape}")
    ref = shapes.mean(axis=0)                                                   # (M, 2)
    mean = ref
    for _ in range(iters):
        aligned = apply_affine(similarity_matrix(fit_similarity(shapes, mean)), shapes)  # (N, M, 2)
        new = aligned.mean(axis=0)
        new = apply_affine(similarity_matrix(fit_similarity(new, ref)), new)
        done = np.abs(new - mean).max() < tol
        mean = new
        if done:
            break
    return mean


def make_template(shapes: np.ndarray, eyes: np.ndarray = TEMPLATE_EYES) -> np.ndarray:
    """Canonical template (M, 2) from training landmarks ``shapes`` (N, M, 2), in output pixels.

    The Procrustes mean shape, moved by the similarity that puts the centres
    of its eyes (points 36-41 and 42-47) exactly at ``eyes`` (2, 2):
    (image-left eye, image-right eye), default ``TEMPLATE_EYES``.
    """
    shapes = _shapes(shapes, "shapes", ndim_min=3)
    if shapes.ndim != 3 or shapes.shape[1] != N_LANDMARKS:
        raise ValueError(f"shapes must have shape (N, {N_LANDMARKS}, 2), got {shapes.shape}")
    eyes = _shapes(eyes, "eyes")
    if eyes.shape != (2, 2):
        raise ValueError(f"eyes must have shape (2, 2) = (left eye (x, y), right eye (x, y)), got {eyes.shape}")
    mean = procrustes_mean(shapes)
    centres = np.stack([mean[LEFT_EYE].mean(0), mean[RIGHT_EYE].mean(0)])       # (2, 2)
    return apply_affine(similarity_matrix(fit_similarity(centres, eyes)), mean)


def alignment_thetas(points: np.ndarray, template: np.ndarray, in_hw=112, out_hw=112) -> np.ndarray:
    """Warp targets theta (N, 2, 3) aligning each image's landmarks to the template.

    points (N, M, 2): landmarks in the input (crop) pixels; template (M, 2)
    in output pixels. Fits the least-squares similarity S (input -> output,
    all M points weighted equally, so it minimises the squared landmark error
    in the OUTPUT frame), inverts it (the warp looks up, for each output
    pixel, the input pixel it samples) and converts it to normalised
    coordinates. The result is a similarity [[a, -b, tx], [b, a, ty]] when
    input and output are square; ``similarity_params`` gives (a, b, tx, ty).
    """
    points = _shapes(points, "points", ndim_min=3)
    template = _shapes(template, "template")
    if points.ndim != 3 or template.shape != points.shape[1:]:
        raise ValueError(f"points must have shape (N, M, 2) and template (M, 2), "
                         f"got {points.shape} and {template.shape}")
    S = similarity_matrix(fit_similarity(points, template))   # (N, 2, 3) input px -> output px
    return pixel_to_theta(invert_affine(S), in_hw, out_hw)


def output_points(points: np.ndarray, theta: np.ndarray, in_hw=112, out_hw=112) -> np.ndarray:
    """Where input points (N, M, 2) appear in the output after warping by theta (N, 2, 3): (N, M, 2) pixels.

    The output pixel q samples the input at T(q), T = ``theta_to_pixel(theta)``,
    so an input point p is seen at q = T^-1(p).
    """
    points = _shapes(points, "points", ndim_min=3)
    theta = _affines(theta, "theta")
    if theta.shape != (points.shape[0], 2, 3):
        raise ValueError(f"theta must have shape (N, 2, 3) = ({points.shape[0]}, 2, 3), got {theta.shape}")
    return apply_affine(invert_affine(theta_to_pixel(theta, in_hw, out_hw)), points)


def landmark_error(points: np.ndarray, theta: np.ndarray, template: np.ndarray, in_hw=112, out_hw=112) -> np.ndarray:
    """(N,) mean Euclidean distance, in output pixels, between warped landmarks and the template.

    points (N, M, 2) input pixels, theta (N, 2, 3), template (M, 2) output
    pixels. ``identity_theta(N)`` gives the error with no alignment.
    """
    template = _shapes(template, "template")
    q = output_points(points, theta, in_hw, out_hw)                         # (N, M, 2)
    if template.shape != q.shape[1:]:
        raise ValueError(f"template must have shape {q.shape[1:]}, got {template.shape}")
    return np.linalg.norm(q - template, axis=-1).mean(axis=-1)


def augmented_thetas(theta: np.ndarray, aug_theta: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """Alignment targets (N, 2, 3) for augmented images.

    An augmented image samples the original through ``aug_theta`` G:
    I_aug(u) = I(G u) (``npface.data.sampler.augment``; G includes the flip
    when ``flipped``). The target for I_aug is the warp whose output is the
    original aligned face -- mirrored when the image was flipped::

        theta_aug = G^-1 o theta o F^f,   F = FLIP_THETA, f = flipped

    so I_aug(theta_aug o) = I(theta F^f o). With a similarity theta and G
    this is again a similarity.
    """
    theta, aug_theta = _affines(theta, "theta"), _affines(aug_theta, "aug_theta")
    flipped = np.asarray(flipped, dtype=bool)
    if theta.ndim != 3 or aug_theta.shape != theta.shape or flipped.shape != theta.shape[:1]:
        raise ValueError(f"theta and aug_theta must have shape (N, 2, 3) and flipped (N,), got "
                         f"{theta.shape}, {aug_theta.shape}, {flipped.shape}")
    F = np.where(flipped[:, None, None], FLIP_THETA, identity_theta(1)[0])   # (N, 2, 3)
    return compose_affine(invert_affine(aug_theta), compose_affine(theta, F))
