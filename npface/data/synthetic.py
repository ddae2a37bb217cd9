"""Procedural synthetic faces: the trainer's default data set.

A face *identity* is a fixed random parameter vector (head shape, skin tone,
eye, brow, nose and mouth shapes, positions, sizes and colours, hair, glasses,
facial hair, a mole). Every *image* of an identity draws fresh nuisance: a
random similarity transform (rotation, scale, shift), a little out-of-plane
pose, lighting, expression, background clutter, blur and noise. The images are
drawn directly from shape primitives (anti-aliased ellipses, rings, strokes
and convex quadrilaterals) by one Numba kernel, fast enough to render fresh
images for every training step.

Shape vocabulary: N images, S = 112 image side, P_ID = ``len(PARAM_NAMES)``
identity parameters, P identities per batch, K images per identity.

Identities
----------
Identity ``i`` (any integer 0 <= i < 2**62) of ``SyntheticFaces(seed)`` is drawn
from ``numpy.random.default_rng([seed, i])``: it depends on (seed, i) only,
never on how many identities are in use. The identity label of an image is the
identity index itself (int64).

- Training identities are ``0 .. n_identities - 1``.
- Held-out identities are ``HELDOUT_OFFSET + j`` (``HELDOUT_OFFSET = 2**32``),
  ``j = 0, 1, ...``; ``n_identities`` may not exceed ``HELDOUT_OFFSET``, so the
  two sets are disjoint by construction.

The canonical (aligned) face frame
----------------------------------
Geometry is written in normalised coordinates of the *aligned* S x S crop, the
convention of ``npface.ops.warp_forward``: x is the column, y the row (down),
both span [-1, 1] edge to edge, pixel p's centre sits at u = (2p + 1)/S - 1.

Faces are designed in *face units*: the point (x, y) of a face sits at
canonical (FACE_ZOOM x, FACE_ZOOM y + FACE_DROP) = (1.2 x, 1.2 y + 0.05),
so 0.01 face unit = 0.67 px. The skull is then centred near canonical
(0, 0), about 1.13 wide and 1.42 high, the chin near y = 0.7, the hair top
near y = -0.85, shoulders at the bottom edge: a loose face crop.

Identity parameters (one row of ``identity_params``, columns ``PARAM_NAMES``;
lengths in face units; colours RGB in 0..255; "U[a, b]" = uniform;
categorical codes are stored as floats)::

    head_rx      U[0.42, 0.52]   half-width of the skull ellipse
    head_ry      U[0.54, 0.64]   half-height of the skull ellipse
    head_cy      U[-0.09, -0.01] y of the skull centre (x is 0)
    jaw_rx       head_rx * U[0.62, 0.90]   half-width of the jaw ellipse
    jaw_ry       head_ry * U[0.45, 0.65]   half-height of the jaw ellipse
    chin         U[0, 0.10]      chin drop below the skull, in head_ry units
    ear_size     U[0.07, 0.11]   ear half-height (half-width is 0.55 of it)
    ear_y        U[-0.04, 0.10]  ear centre below the skull centre
    neck_w       U[0.15, 0.24]   neck half-width
    skin_r/g/b   tone t ~ U[0, 1] between (92, 58, 40) and (242, 205, 178),
                 plus U[-14, 14] per channel
    blush        U[0, 0.3]       cheek blush opacity
    hair_style   {0 short (40 %), 1 long (25 %), 2 buzz / bald (12 %), 3 bob (23 %)}
    hair_r/g/b   one of black, dark brown, brown, auburn, blond, grey,
                 times U[0.8, 1.2]
    hairline     U[0.35, 0.75]   hairline height above the skull centre, head_ry units
    hair_volume  U[1.03, 1.16]   hair cap size relative to the skull
    hair_part    U[-0.35, 0.35]  tilt of the fringe (radians): side parting
    hair_length  U[0.35, 0.75]   half-length of long / bob side hair
    eye_dx       U[0.15, 0.21]   half the distance between the eye centres
    eye_y        U[-0.10, 0.0]   eye centres relative to the skull centre
    eye_rx       U[0.058, 0.085] eye half-width
    eye_ry       eye_rx * U[0.42, 0.66]   eye half-height (open)
    eye_tilt     U[-0.12, 0.18]  outer corners up (radians)
    iris_r       eye_rx * U[0.50, 0.70]   iris radius
    iris_cr/cg/cb  one of dark brown, brown, hazel, green, blue, grey, times U[0.8, 1.2]
    lid          U[0.35, 0.9]    opacity of the dark upper-lid line
    brow_gap     U[0.06, 0.11]   brow centre above the eye centre
    brow_half    U[0.055, 0.09]  brow half-length
    brow_thick   U[0.009, 0.022] brow stroke radius
    brow_arch    U[-0.005, 0.035] brow arch height
    brow_tilt    U[-0.18, 0.22]  outer ends up (radians)
    brow_dark    U[0.45, 0.95]   brow colour = hair colour * brow_dark
    nose_len     U[0.15, 0.26]   nose tip below the eye line
    nose_w       U[0.05, 0.09]   nose half-width at the base
    nose_shade   U[0.10, 0.28]   opacity of the darker nose shape
    nostril      U[0.010, 0.018] nostril radius
    mouth_y      U[0.10, 0.17]   mouth line below the nose tip
    mouth_w      U[0.085, 0.145] mouth half-width
    lip_thick    U[0.009, 0.020] lip stroke radius
    lip_r/g/b    skin mixed towards (175, 65, 75) by U[0.3, 0.75]
    smile        U[-0.012, 0.03] resting mouth curvature (> 0: corners up)
    facial_hair  {0 none (66 %), 1 moustache (14 %), 2 beard and moustache (20 %)}
    glasses      {0, 1 (15 %)}
    glasses_r/g/b  frame colour: black, brown, metal, red or navy
    rim          U[0.008, 0.016] frame half-thickness
    mole         {0, 1 (30 %)}
    mole_x       U[-0.28, 0.28]  mole position, relative to (0, skull centre)
    mole_y       U[-0.05, 0.35]
    mole_size    U[0.009, 0.018] mole radius

Nuisance (per image; ``Nuisance`` scales every group, defaults in brackets)
--------------------------------------------------------------------------
- Similarity pose: rotation U[-r, r] (r = ``max_rotation_deg`` [10 deg]),
  scale exp(U[-log(1 + m), log(1 + m)]) (m = ``max_scale`` [0.10]), shift
  U[-t, t] per axis in normalised units (t = ``max_shift`` [0.09], 5 px).
  Returned as ``pose`` (N, 4) = (a, b, tx, ty), a = s cos(rot), b = s sin(rot).
  The warp matrix theta = [[a, -b, tx], [b, a, ty]] maps a point of the
  canonical frame to the rendered image (both normalised), which is exactly
  the theta that ``npface.ops.warp_forward`` needs to warp the rendered image
  back into the canonical frame. Scale s > 1 draws the face larger.
- Out-of-plane pose (``pose_3d``): yaw, pitch ~ U[-1, 1] shift the inner
  features against the head outline by (0.05 yaw, 0.03 pitch) x depth face
  units, depth about 1 for eyes, brows and mouth, 1.6 for the nose tip, the
  ears moving the other way: not undoable by a similarity, like real pose.
- Expression (``expression``): smile U[-0.025, 0.025], mouth opening up to
  0.035 (cubed uniform: mostly closed), brow raise U[-0.02, 0.02], eye
  opening 65-100 % (a blink 6 % of the time), gaze up to 0.3 (sideways) /
  0.15 (up-down) eye half-width, hairline U[-0.015, 0.015] and parting
  U[-0.08, 0.08] rad jitter.
- Lighting (``lighting``): a directional light from a random azimuth, tilted
  up to 58 degrees from frontal (Lambertian shading of the face on its head
  ellipsoid, normalised to 1 at the face centre), ambient 0.4-0.7,
  brightness x exp(U[-0.22, 0.22]), colour cast per channel
  x exp(U[-0.07, 0.07]), an image-wide linear illumination gradient up to
  +-25 %, contrast x exp(U[-0.15, 0.15]).
- Clutter (``clutter``): a two-colour gradient background (colours
  U[20, 235]^3), six random shapes (ellipse, rectangle or bent stroke, 8-56
  px, random colour and opacity) behind the head, each present with
  probability 0.75, one small shape (4-14 px) in front of the face with
  probability 0.2; shirt colour and width. With ``clutter = 0`` the
  background and shirt are plain grey 128.
- Blur (``blur``): edge softness 1-1.8 px.
- Noise (``noise``): zero-mean, triangular-distributed pixel noise, standard
  deviation U[1, 8] grey levels.

Every render draws the same number of values from ``rng`` in the same order
whatever the ``Nuisance`` settings and whether ``pose`` is given, so two
renders from equal generators differ only in what the settings change.

Determinism: equal (seed, identities, rng state, Nuisance) give bit-identical
images on one machine and Numba build. The kernel is compiled with the
project's fastmath policy, so on another CPU a rare pixel may round
differently by one grey level.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

from kernels.jit import kernel
from npface.ops import pose_to_theta  # noqa: F401  (re-exported: the renderer's pose convention)

__all__ = [
    "FACE_DROP",
    "FACE_ZOOM",
    "HELDOUT_OFFSET",
    "IMAGE_SIZE",
    "PARAM_NAMES",
    "Nuisance",
    "SyntheticFaces",
    "VerificationSet",
    "pose_to_theta",
]

IMAGE_SIZE = 112
HELDOUT_OFFSET = 1 << 32
FACE_ZOOM = 1.2
FACE_DROP = 0.05
_MAX_IDENTITY = 1 << 62
_PARAM_CACHE_SIZE = 200_000  # identity rows kept (about 0.5 KB each)

PARAM_NAMES = (
    "head_rx", "head_ry", "head_cy", "jaw_rx", "jaw_ry", "chin",
    "ear_size", "ear_y", "neck_w",
    "skin_r", "skin_g", "skin_b", "blush",
    "hair_style", "hair_r", "hair_g", "hair_b", "hairline", "hair_volume",
    "hair_part", "hair_length",
    "eye_dx", "eye_y", "eye_rx", "eye_ry", "eye_tilt", "iris_r",
    "iris_cr", "iris_cg", "iris_cb", "lid",
    "brow_gap", "brow_half", "brow_thick", "brow_arch", "brow_tilt", "brow_dark",
    "nose_len", "nose_w", "nose_shade", "nostril",
    "mouth_y", "mouth_w", "lip_thick", "lip_r", "lip_g", "lip_b", "smile",
    "facial_hair", "glasses", "glasses_r", "glasses_g", "glasses_b", "rim",
    "mole", "mole_x", "mole_y", "mole_size",
)
_PI = {name: k for k, name in enumerate(PARAM_NAMES)}

# Uniform draws per identity: one per entry of _IDENTITY_DRAWS, in this order.
_IDENTITY_DRAWS = (
    "head_rx", "head_ry", "head_cy", "jaw_rx", "jaw_ry", "chin", "ear_size",
    "ear_y", "neck_w", "skin_tone", "skin_jr", "skin_jg", "skin_jb", "blush",
    "hair_style", "hair_color", "hair_light", "hairline", "hair_volume",
    "hair_part", "hair_length", "eye_dx", "eye_y", "eye_rx", "eye_aspect",
    "eye_tilt", "iris_r", "iris_color", "iris_light", "lid", "brow_gap",
    "brow_half", "brow_thick", "brow_arch", "brow_tilt", "brow_dark",
    "nose_len", "nose_w", "nose_shade", "nostril", "mouth_y", "mouth_w",
    "lip_thick", "lip_mix", "smile", "facial_hair", "glasses",
    "glasses_color", "rim", "mole", "mole_x", "mole_y", "mole_size",
)
_ID = {name: k for k, name in enumerate(_IDENTITY_DRAWS)}

_SKIN_DARK = np.array([92.0, 58.0, 40.0])
_SKIN_LIGHT = np.array([242.0, 205.0, 178.0])
_HAIR_PALETTE = np.array([[25, 22, 22], [60, 40, 28], [105, 70, 45],
                          [140, 70, 40], [205, 170, 110], [165, 160, 155]], np.float64)
_IRIS_PALETTE = np.array([[55, 35, 25], [100, 65, 40], [120, 100, 55],
                          [80, 115, 80], [70, 110, 160], [115, 125, 135]], np.float64)
_GLASSES_PALETTE = np.array([[20, 20, 25], [90, 55, 30], [170, 170, 175],
                             [150, 30, 35], [30, 40, 90]], np.float64)
_LIP_RED = np.array([175.0, 65.0, 75.0])

# Per-image uniform draws: the fixed groups first, then the clutter slots.
_NUISANCE_DRAWS = (
    "rot", "scale", "tx", "ty", "yaw", "pitch",
    "smile", "mouth_open", "brow_raise", "eye_open", "blink", "gaze_x", "gaze_y",
    "hairline", "part",
    "light_az", "light_slant", "ambient", "brightness", "cast_r", "cast_g", "cast_b",
    "grad_az", "grad_strength", "contrast",
    "bg0_r", "bg0_g", "bg0_b", "bg1_r", "bg1_g", "bg1_b", "bg_az", "bg_strength",
    "shirt_r", "shirt_g", "shirt_b", "shirt_w",
    "soft", "noise",
)
_NZ = {name: k for k, name in enumerate(_NUISANCE_DRAWS)}
_CLUTTER_DRAWS = ("present", "kind", "x", "y", "size", "aspect", "angle",
                  "r", "g", "b", "alpha", "bend")
_CZ = {name: k for k, name in enumerate(_CLUTTER_DRAWS)}
_N_BACK_CLUTTER = 6
_N_CLUTTER = _N_BACK_CLUTTER + 1  # the last slot is the front occluder
_N_DRAWS = len(_NUISANCE_DRAWS) + _N_CLUTTER * len(_CLUTTER_DRAWS)


# --------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Nuisance:
    """How strongly each image departs from its identity's canonical look.

    The three pose ranges are absolute; every other field multiplies the
    default range of its group (1 = the default, 0 = switched off; see the
    module docstring for the ranges). ``Nuisance.none()`` renders canonical,
    aligned faces on a plain grey background with frontal light and no noise.
    """

    max_rotation_deg: float = 10.0
    max_scale: float = 0.10
    max_shift: float = 0.09
    pose_3d: float = 1.0
    expression: float = 1.0
    lighting: float = 1.0
    clutter: float = 1.0
    blur: float = 1.0
    noise: float = 1.0

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
                raise ValueError(f"Nuisance.{f.name} must be a finite number >= 0, got {v!r}")
        if self.max_scale >= 1.0:
            raise ValueError(f"Nuisance.max_scale must be < 1, got {self.max_scale!r}")
        if self.max_rotation_deg > 180.0:
            raise ValueError(f"Nuisance.max_rotation_deg must be <= 180, got {self.max_rotation_deg!r}")

    @classmethod
    def none(cls) -> "Nuisance":
        """No nuisance at all: identity pose, neutral expression, flat scene."""
        return cls(**{f.name: 0.0 for f in fields(cls)})


class VerificationSet(NamedTuple):
    """A fixed set of image pairs with balanced same / different labels.

    images:   (M, S, S, 3) uint8, identity-major: K images of each identity.
    labels:   (M,) int64 identity index of each image.
    pairs:    (n_pairs, 2) int64 indices into ``images``; never an image with itself.
    is_same:  (n_pairs,) bool, exactly n_pairs / 2 True.
    fold:     (n_pairs,) int64 fold 0 .. n_folds - 1, no identity in two folds
              (``npface.verification.person_folds``; for ``npface.verification.k_fold``).
    """

    images: np.ndarray
    labels: np.ndarray
    pairs: np.ndarray
    is_same: np.ndarray
    fold: np.ndarray


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------

def _int_arg(name, v, minimum):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _as_rng(rng, name="rng"):
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ValueError(f"{name} must be a numpy.random.Generator or an integer seed >= 0, got {rng!r}")


def _check_identities(identities):
    ids = np.asarray(identities)
    if ids.ndim != 1:
        raise ValueError(f"identities must be a 1-d integer array of shape (N,), got shape {ids.shape}")
    if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"identities must be an integer array of shape (N,), got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= _MAX_IDENTITY):
        raise ValueError(f"identities must lie in [0, 2**62), got values in "
                         f"[{int(ids.min())}, {int(ids.max())}]")
    return ids.astype(np.int64)


# --------------------------------------------------------------------------
# Identity parameters
# --------------------------------------------------------------------------

def _lerp(u, lo, hi):
    return lo + (hi - lo) * u


def _pick(u, palette):
    """Palette row for each u in [0, 1): (N,) -> (N, 3)."""
    k = np.minimum((u * len(palette)).astype(np.int64), len(palette) - 1)
    return palette[k]


def _categorical(u, probs):
    """Category index for each u in [0, 1): (N,) -> (N,) float."""
    return np.searchsorted(np.cumsum(probs)[:-1], u, side="right").astype(np.float64)


def _identity_table(u):
    """Identity parameter rows from their uniform draws: u (N, len(_IDENTITY_DRAWS)) -> (N, P_ID)."""
    g = {name: u[:, k] for name, k in _ID.items()}  # each (N,)
    p = np.empty((u.shape[0], len(PARAM_NAMES)), np.float64)  # (N, P_ID)

    def put(name, value):
        p[:, _PI[name]] = value

    put("head_rx", _lerp(g["head_rx"], 0.42, 0.52))
    put("head_ry", _lerp(g["head_ry"], 0.54, 0.64))
    put("head_cy", _lerp(g["head_cy"], -0.09, -0.01))
    put("jaw_rx", p[:, _PI["head_rx"]] * _lerp(g["jaw_rx"], 0.62, 0.90))
    put("jaw_ry", p[:, _PI["head_ry"]] * _lerp(g["jaw_ry"], 0.45, 0.65))
    put("chin", _lerp(g["chin"], 0.0, 0.10))
    put("ear_size", _lerp(g["ear_size"], 0.07, 0.11))
    put("ear_y", _lerp(g["ear_y"], -0.04, 0.10))
    put("neck_w", _lerp(g["neck_w"], 0.15, 0.24))
    skin = _SKIN_DARK + (_SKIN_LIGHT - _SKIN_DARK) * g["skin_tone"][:, None]  # (N, 3)
    skin += np.stack([g["skin_jr"], g["skin_jg"], g["skin_jb"]], 1) * 28.0 - 14.0
    skin = np.clip(skin, 0.0, 255.0)
    put("skin_r", skin[:, 0]), put("skin_g", skin[:, 1]), put("skin_b", skin[:, 2])
    put("blush", _lerp(g["blush"], 0.0, 0.3))
    put("hair_style", _categorical(g["hair_style"], [0.40, 0.25, 0.12, 0.23]))
    hair = np.clip(_pick(g["hair_color"], _HAIR_PALETTE) * _lerp(g["hair_light"], 0.8, 1.2)[:, None], 0, 255)
    put("hair_r", hair[:, 0]), put("hair_g", hair[:, 1]), put("hair_b", hair[:, 2])
    put("hairline", _lerp(g["hairline"], 0.35, 0.75))
    put("hair_volume", _lerp(g["hair_volume"], 1.03, 1.16))
    put("hair_part", _lerp(g["hair_part"], -0.35, 0.35))
    put("hair_length", _lerp(g["hair_length"], 0.35, 0.75))
    put("eye_dx", _lerp(g["eye_dx"], 0.15, 0.21))
    put("eye_y", _lerp(g["eye_y"], -0.10, 0.0))
    put("eye_rx", _lerp(g["eye_rx"], 0.058, 0.085))
    put("eye_ry", p[:, _PI["eye_rx"]] * _lerp(g["eye_aspect"], 0.42, 0.66))
    put("eye_tilt", _lerp(g["eye_tilt"], -0.12, 0.18))
    put("iris_r", p[:, _PI["eye_rx"]] * _lerp(g["iris_r"], 0.50, 0.70))
    iris = np.clip(_pick(g["iris_color"], _IRIS_PALETTE) * _lerp(g["iris_light"], 0.8, 1.2)[:, None], 0, 255)
    put("iris_cr", iris[:, 0]), put("iris_cg", iris[:, 1]), put("iris_cb", iris[:, 2])
    put("lid", _lerp(g["lid"], 0.35, 0.9))
    put("brow_gap", _lerp(g["brow_gap"], 0.06, 0.11))
    put("brow_half", _lerp(g["brow_half"], 0.055, 0.09))
    put("brow_thick", _lerp(g["brow_thick"], 0.009, 0.022))
    put("brow_arch", _lerp(g["brow_arch"], -0.005, 0.035))
    put("brow_tilt", _lerp(g["brow_tilt"], -0.18, 0.22))
    put("brow_dark", _lerp(g["brow_dark"], 0.45, 0.95))
    put("nose_len", _lerp(g["nose_len"], 0.15, 0.26))
    put("nose_w", _lerp(g["nose_w"], 0.05, 0.09))
    put("nose_shade", _lerp(g["nose_shade"], 0.10, 0.28))
    put("nostril", _lerp(g["nostril"], 0.010, 0.018))
    put("mouth_y", _lerp(g["mouth_y"], 0.10, 0.17))
    put("mouth_w", _lerp(g["mouth_w"], 0.085, 0.145))
    put("lip_thick", _lerp(g["lip_thick"], 0.009, 0.020))
    lip = skin + (_LIP_RED - skin) * _lerp(g["lip_mix"], 0.3, 0.75)[:, None]  # (N, 3)
    put("lip_r", lip[:, 0]), put("lip_g", lip[:, 1]), put("lip_b", lip[:, 2])
    put("smile", _lerp(g["smile"], -0.012, 0.03))
    put("facial_hair", _categorical(g["facial_hair"], [0.66, 0.14, 0.20]))
    put("glasses", (g["glasses"] < 0.15).astype(np.float64))
    frame = _pick(g["glasses_color"], _GLASSES_PALETTE)
    put("glasses_r", frame[:, 0]), put("glasses_g", frame[:, 1]), put("glasses_b", frame[:, 2])
    put("rim", _lerp(g["rim"], 0.008, 0.016))
    put("mole", (g["mole"] < 0.30).astype(np.float64))
    put("mole_x", _lerp(g["mole_x"], -0.28, 0.28))
    put("mole_y", _lerp(g["mole_y"], -0.05, 0.35))
    put("mole_size", _lerp(g["mole_size"], 0.009, 0.018))
    return p


# --------------------------------------------------------------------------
# Scene description: the primitive table the kernel draws
# --------------------------------------------------------------------------
# A scene is M primitives per image, drawn in order, each a kind (N, M) and a
# row of L floats (N, M, L), all lengths and positions in PIXELS (x column,
# y row, pixel centres at integers). Common columns: colour r, g, b (0..255),
# alpha (0..1), shade (0..1, how much head-ellipsoid lighting applies).

_NONE, _ELLIPSE, _STROKE, _QUAD = 0, 1, 2, 3
_L = 17
# ellipse: centre, half-axes, angle (rad, x towards y), ring half-width (0 =
# filled), optional clip ellipse (clip_rx <= 0: none).
_E_CX, _E_CY, _E_RX, _E_RY, _E_ANG, _E_RING = 5, 6, 7, 8, 9, 10
_E_KCX, _E_KCY, _E_KRX, _E_KRY, _E_KANG = 11, 12, 13, 14, 15
# stroke: a quadratic Bezier curve p0 -> p2 with control point p1, and a radius.
_S_P0X, _S_P0Y, _S_P1X, _S_P1Y, _S_P2X, _S_P2Y, _S_RAD = 5, 6, 7, 8, 9, 10, 11
# quad: four vertices of a convex quadrilateral, in either orientation (a
# repeated vertex gives a triangle).
_Q_X0 = 5  # x0, y0, x1, y1, x2, y2, x3, y3 in columns 5..12

# Per-image globals (N, G).
(_G_BG0, _G_BG1, _G_BGX, _G_BGY, _G_HCX, _G_HCY, _G_HIRX, _G_HIRY, _G_HCOS,
 _G_HSIN, _G_LU, _G_LV, _G_LZ, _G_AMB, _G_SNORM, _G_GAIN, _G_GRADX, _G_GRADY,
 _G_CONTRAST, _G_SOFT, _G_SIGMA) = (0, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                    17, 18, 19, 22, 23, 24, 25, 26)
_G = 27
_BEZIER_SEGMENTS = 8


class _Scene:
    """Collects primitives given in face units (arrays (N,) or scalars), converted to pixels."""

    def __init__(self, pose, size):
        self.n = pose.shape[0]
        self.a, self.b, self.tx, self.ty = (pose[:, k] for k in range(4))  # each (N,)
        self.s = np.hypot(self.a, self.b)  # (N,)
        self.phi = np.arctan2(self.b, self.a)  # (N,)
        self.size = size
        self.kinds = []  # M entries, each (N,) int64
        self.rows = []  # M entries, each (N, L)

    # face units -> canonical -> image (normalised) -> pixels
    def pt(self, x, y):
        x = FACE_ZOOM * x
        y = FACE_ZOOM * y + FACE_DROP
        xi = self.a * x - self.b * y + self.tx
        yi = self.b * x + self.a * y + self.ty
        return ((xi + 1.0) * self.size - 1.0) * 0.5, ((yi + 1.0) * self.size - 1.0) * 0.5

    def length(self, r):
        return r * FACE_ZOOM * self.s * (0.5 * self.size)

    def _row(self, kind, color, alpha, shade):
        row = np.zeros((self.n, _L), np.float64)  # (N, L)
        row[:, 0:3] = color
        row[:, 3] = alpha
        row[:, 4] = shade
        self.kinds.append(np.broadcast_to(np.asarray(kind, np.int64), (self.n,)))
        self.rows.append(row)
        return row

    def ellipse(self, cx, cy, rx, ry, ang, color, alpha=1.0, shade=0.0, ring=0.0, clip=None):
        row = self._row(_ELLIPSE, color, alpha, shade)
        row[:, _E_CX], row[:, _E_CY] = self.pt(cx, cy)
        row[:, _E_RX], row[:, _E_RY] = self.length(rx), self.length(ry)
        row[:, _E_ANG] = ang + self.phi
        row[:, _E_RING] = self.length(ring)
        if clip is not None:
            kcx, kcy, krx, kry, kang = clip
            row[:, _E_KCX], row[:, _E_KCY] = self.pt(kcx, kcy)
            row[:, _E_KRX], row[:, _E_KRY] = self.length(krx), self.length(kry)
            row[:, _E_KANG] = kang + self.phi

    def stroke(self, p0, p1, p2, radius, color, alpha=1.0, shade=0.0):
        row = self._row(_STROKE, color, alpha, shade)
        row[:, _S_P0X], row[:, _S_P0Y] = self.pt(*p0)
        row[:, _S_P1X], row[:, _S_P1Y] = self.pt(*p1)
        row[:, _S_P2X], row[:, _S_P2Y] = self.pt(*p2)
        row[:, _S_RAD] = self.length(radius)

    def quad(self, verts, color, alpha=1.0, shade=0.0):
        row = self._row(_QUAD, color, alpha, shade)
        for k, (x, y) in enumerate(verts):
            row[:, _Q_X0 + 2 * k], row[:, _Q_X0 + 2 * k + 1] = self.pt(x, y)

    def raw(self, kind, row):
        """A primitive already in pixels: kind (N,), row (N, L)."""
        self.kinds.append(kind)
        self.rows.append(row)

    def tables(self):
        kinds = np.ascontiguousarray(np.stack(self.kinds, axis=1))  # (N, M)
        prims = np.ascontiguousarray(np.stack(self.rows, axis=1))  # (N, M, L)
        return kinds, prims


def _clutter_rows(c, size, front):
    """Clutter primitives in pixels from their draws c (N, len(_CLUTTER_DRAWS)) -> kind (N,), row (N, L)."""
    n = c.shape[0]
    g = {name: c[:, k] for name, k in _CZ.items()}  # each (N,)
    kind = np.array([_ELLIPSE, _QUAD, _STROKE], np.int64)[np.minimum((g["kind"] * 3).astype(np.int64), 2)]
    cx = _lerp(g["x"], -0.1, 1.1) * size
    cy = _lerp(g["y"], -0.1, 1.1) * size
    half = _lerp(g["size"], 2.0, 7.0) if front else _lerp(g["size"], 4.0, 28.0)
    aspect = _lerp(g["aspect"], 0.3, 1.0)
    ang = g["angle"] * 2.0 * np.pi
    co, si = np.cos(ang), np.sin(ang)
    row = np.zeros((n, _L), np.float64)  # (N, L)
    row[:, 0] = g["r"] * 255.0
    row[:, 1] = g["g"] * 255.0
    row[:, 2] = g["b"] * 255.0
    row[:, 3] = _lerp(g["alpha"], 0.5, 1.0)
    # ellipse
    e = kind == _ELLIPSE
    row[e, _E_CX], row[e, _E_CY] = cx[e], cy[e]
    row[e, _E_RX], row[e, _E_RY], row[e, _E_ANG] = half[e], half[e] * aspect[e], ang[e]
    # rectangle
    q = kind == _QUAD
    hw, hh = half[q], half[q] * aspect[q]
    for k, (sx, sy) in enumerate(((-1, -1), (1, -1), (1, 1), (-1, 1))):
        row[q, _Q_X0 + 2 * k] = cx[q] + co[q] * sx * hw - si[q] * sy * hh
        row[q, _Q_X0 + 2 * k + 1] = cy[q] + si[q] * sx * hw + co[q] * sy * hh
    # stroke: a bent line across the shape's extent
    s = kind == _STROKE
    bend = (g["bend"][s] * 2.0 - 1.0) * half[s]
    row[s, _S_P0X], row[s, _S_P0Y] = cx[s] - co[s] * half[s], cy[s] - si[s] * half[s]
    row[s, _S_P2X], row[s, _S_P2Y] = cx[s] + co[s] * half[s], cy[s] + si[s] * half[s]
    row[s, _S_P1X], row[s, _S_P1Y] = cx[s] - si[s] * bend, cy[s] + co[s] * bend
    row[s, _S_RAD] = np.maximum(0.6, half[s] * aspect[s] * 0.15)
    return kind, row


def _build_scenes(params, u, pose, nuisance, size):
    """Primitive tables of a batch.

    params (N, P_ID) identity parameters, u (N, _N_DRAWS) uniform nuisance
    draws, pose (N, 4) -> kinds (N, M) int64, prims (N, M, L) float64,
    glob (N, G) float64.
    """
    n = params.shape[0]
    P = {name: params[:, k] for name, k in _PI.items()}  # each (N,)
    z = {name: u[:, k] for name, k in _NZ.items()}  # each (N,)
    sym = lambda v: 2.0 * v - 1.0  # noqa: E731  U[0, 1) -> U[-1, 1)
    nu = nuisance
    sc = _Scene(pose, size)

    skin = params[:, [_PI["skin_r"], _PI["skin_g"], _PI["skin_b"]]]  # (N, 3)
    hair = params[:, [_PI["hair_r"], _PI["hair_g"], _PI["hair_b"]]]  # (N, 3)
    iris = params[:, [_PI["iris_cr"], _PI["iris_cg"], _PI["iris_cb"]]]  # (N, 3)
    lip = params[:, [_PI["lip_r"], _PI["lip_g"], _PI["lip_b"]]]  # (N, 3)
    frame = params[:, [_PI["glasses_r"], _PI["glasses_g"], _PI["glasses_b"]]]  # (N, 3)
    shirt = 128.0 + nu.clutter * (np.stack([z["shirt_r"], z["shirt_g"], z["shirt_b"]], 1) * 215.0 + 20.0 - 128.0)
    style = P["hair_style"]
    zero = np.zeros(n)

    # Head geometry (face units).
    hcy, hrx, hry = P["head_cy"], P["head_rx"], P["head_ry"]
    jaw_cy = hcy + hry * (1.0 + P["chin"]) - P["jaw_ry"]
    # Out-of-plane pose: inner features move against the outline, by depth.
    yaw = sym(z["yaw"]) * nu.pose_3d
    pitch = sym(z["pitch"]) * nu.pose_3d
    fx = lambda depth: yaw * 0.05 * depth  # noqa: E731
    fy = lambda depth: pitch * 0.03 * depth  # noqa: E731

    # Expression.
    ex = nu.expression
    smile = P["smile"] + sym(z["smile"]) * 0.025 * ex
    mouth_open = z["mouth_open"] ** 3 * 0.035 * ex
    brow_raise = sym(z["brow_raise"]) * 0.02 * ex
    eye_open = 1.0 - 0.35 * ex * z["eye_open"]
    eye_open = np.where(z["blink"] < 0.06 * ex, 0.12, eye_open)
    gaze_x = sym(z["gaze_x"]) * 0.3 * ex * P["eye_rx"]
    gaze_y = sym(z["gaze_y"]) * 0.15 * ex * P["eye_rx"]
    hairline = hcy - hry * P["hairline"] + sym(z["hairline"]) * 0.015 * ex
    part = P["hair_part"] + sym(z["part"]) * 0.08 * ex

    # Background clutter (image frame, behind everything).
    cl = u[:, len(_NUISANCE_DRAWS):].reshape(n, _N_CLUTTER, len(_CLUTTER_DRAWS))  # (N, 7, 12)
    for k in range(_N_CLUTTER):
        kind, row = _clutter_rows(cl[:, k], size, front=k == _N_BACK_CLUTTER)
        p_present = (0.2 if k == _N_BACK_CLUTTER else 0.75) * nu.clutter
        row[:, 3] *= cl[:, k, _CZ["present"]] < p_present
        if k == _N_BACK_CLUTTER:
            front = (kind, row)
        else:
            sc.raw(kind, row)

    # Body and hair behind the head.
    shirt_w = _lerp(z["shirt_w"], 0.75, 1.0)
    sc.ellipse(0.0, jaw_cy + P["jaw_ry"] + 0.55, shirt_w, 0.42, zero, shirt)
    long_alpha = ((style == 1) | (style == 3)).astype(np.float64)
    side_len = np.where(style == 1, P["hair_length"], P["hair_length"] * 0.6)
    for sgn in (-1.0, 1.0):
        sc.ellipse(sgn * hrx * 0.82, hcy + side_len * 0.55, 0.2, side_len, sgn * -0.12, hair,
                   long_alpha, 0.3)
    nw = P["neck_w"]
    neck_top = jaw_cy
    sc.quad(((-nw, neck_top), (nw, neck_top), (nw * 1.15, neck_top + 0.7), (-nw * 1.15, neck_top + 0.7)),
            skin * 0.85, 1.0, 0.6)
    vol = P["hair_volume"]
    cap_alpha = (style != 2).astype(np.float64)
    sc.ellipse(zero, hcy - hry * 0.25, hrx * vol, hry * vol * 0.86, zero, hair, cap_alpha, 0.3)
    for sgn in (-1.0, 1.0):
        sc.ellipse(sgn * hrx * 0.98 - fx(0.3), hcy + P["ear_y"] + fy(0.3), P["ear_size"] * 0.55,
                   P["ear_size"], sgn * 0.15, skin * 0.92, 1.0, 1.0)

    # Face.
    sc.ellipse(zero, hcy, hrx, hry, zero, skin, 1.0, 1.0)
    sc.ellipse(zero, jaw_cy, P["jaw_rx"], P["jaw_ry"], zero, skin, 1.0, 1.0)
    eye_y = hcy + P["eye_y"] + fy(1.0)
    for sgn in (-1.0, 1.0):
        sc.ellipse(sgn * (P["eye_dx"] + 0.02) + fx(0.8), eye_y + P["nose_len"] * 0.75, 0.075, 0.05, zero,
                   np.array([205.0, 90.0, 95.0]), P["blush"], 1.0)
    beard = (P["facial_hair"] == 2).astype(np.float64)
    mouth_y = eye_y + P["nose_len"] + P["mouth_y"] + fy(0.3)
    beard_top = eye_y + P["nose_len"] + fy(1.0) + 0.03  # just below the nose tip
    sc.ellipse(fx(0.5), beard_top + 0.45, P["jaw_rx"] * 1.3, 0.45, zero, hair, beard * 0.9,
               0.6, clip=(zero, jaw_cy - 0.02, P["jaw_rx"] * 1.01, P["jaw_ry"] * 1.01, zero))
    fringe_alpha = np.where(style == 2, 0.28, 1.0)
    fringe_ry = hry * 1.2
    # the fringe's lowest point (local (0, +ry), rotated by the parting) sits on the hairline
    sc.ellipse(np.sin(part) * fringe_ry, hairline - np.cos(part) * fringe_ry, hrx * 1.15, fringe_ry, part,
               hair, fringe_alpha, 0.5, clip=(zero, hcy, hrx * 1.02, hry * 1.02, zero))

    # Eyes.
    for sgn in (-1.0, 1.0):
        ecx = sgn * P["eye_dx"] + fx(1.0)
        ang = -sgn * P["eye_tilt"]
        erx, ery = P["eye_rx"], P["eye_ry"] * eye_open
        eye = (ecx, eye_y, erx, ery, ang)
        sc.ellipse(ecx, eye_y, erx, ery, ang, np.array([236.0, 232.0, 225.0]), 1.0, 0.5)
        icx, icy = ecx + gaze_x, eye_y + gaze_y
        sc.ellipse(icx, icy, P["iris_r"], P["iris_r"], zero, iris, 1.0, 0.4, clip=eye)
        sc.ellipse(icx, icy, P["iris_r"] * 0.45, P["iris_r"] * 0.45, zero, np.array([12.0, 10.0, 10.0]), 1.0, 0.0,
                   clip=eye)
        c, s = np.cos(ang), np.sin(ang)
        lid_r = 0.006 + 0.006 * P["lid"]
        sc.stroke((ecx - c * erx, eye_y - s * erx), (ecx + s * 2.0 * ery, eye_y - c * 2.0 * ery),
                  (ecx + c * erx, eye_y + s * erx), lid_r, np.array([35.0, 25.0, 25.0]), P["lid"], 0.0)
        # brow: inner end near the nose, outer end raised by the tilt
        bcx = ecx + fx(0.1)
        bcy = eye_y - P["brow_gap"] - brow_raise
        bang = -sgn * P["brow_tilt"]
        bc, bs = np.cos(bang), np.sin(bang)
        bh = P["brow_half"]
        sc.stroke((bcx - bc * bh, bcy - bs * bh), (bcx + bs * 2.0 * P["brow_arch"], bcy - bc * 2.0 * P["brow_arch"]),
                  (bcx + bc * bh, bcy + bs * bh), P["brow_thick"], hair * P["brow_dark"][:, None], 0.95, 0.3)

    # Nose.
    tip_y = eye_y + P["nose_len"] + fy(1.5)
    tip_x = fx(1.6)
    nw_ = P["nose_w"]
    sc.quad(((fx(1.0) - 0.02, eye_y + 0.03), (fx(1.0) + 0.02, eye_y + 0.03), (tip_x + nw_, tip_y),
             (tip_x - nw_, tip_y)), skin * 0.72, P["nose_shade"], 1.0)
    sc.ellipse(tip_x, tip_y - 0.01, nw_ * 0.75, nw_ * 0.45, zero, skin * 0.8, P["nose_shade"] * 1.5, 1.0)
    for sgn in (-1.0, 1.0):
        sc.ellipse(tip_x + sgn * nw_ * 0.5, tip_y + 0.005, P["nostril"] * 1.3, P["nostril"], sgn * 0.3,
                   skin * 0.35, 0.8, 0.5)

    # Mouth: corners at (+-mouth_w, mouth_y); smile > 0 lifts the corners.
    mx = fx(0.9)
    mw = P["mouth_w"]
    mid = mouth_y + 2.0 * smile
    sc.ellipse(mx, mouth_y + smile, mw * 0.8, mouth_open + 1e-3, zero, np.array([70.0, 20.0, 25.0]),
               (mouth_open > 0.004).astype(np.float64), 0.0)
    sc.stroke((mx - mw, mouth_y), (mx, mid - 2.0 * mouth_open), (mx + mw, mouth_y), P["lip_thick"], lip, 1.0, 0.6)
    sc.stroke((mx - mw * 0.9, mouth_y + P["lip_thick"]), (mx, mid + 2.0 * (mouth_open + P["lip_thick"] * 1.2)),
              (mx + mw * 0.9, mouth_y + P["lip_thick"]), P["lip_thick"] * 1.25, lip * 0.92, 1.0, 0.6)
    moustache = (P["facial_hair"] >= 1).astype(np.float64)
    must_y = (tip_y + mouth_y) * 0.5 + 0.01
    sc.stroke((mx - mw * 0.95, must_y + 0.03), (mx, must_y - 0.04), (mx + mw * 0.95, must_y + 0.03), 0.017, hair,
              moustache * 0.9, 0.3)
    sc.ellipse(P["mole_x"] + fx(0.6), hcy + P["mole_y"] + fy(0.6), P["mole_size"], P["mole_size"], zero,
               skin * 0.35, P["mole"] * 0.85, 0.0)

    # Glasses: rims around the eyes, at least 0.05 apart, and a bridge.
    grx = np.minimum(P["eye_rx"] * 1.75, P["eye_dx"] - 0.025)
    for sgn in (-1.0, 1.0):
        ecx = sgn * P["eye_dx"] + fx(1.1)
        sc.ellipse(ecx, eye_y + 0.005, grx, P["eye_rx"] * 1.35, zero, frame, P["glasses"], 0.0, ring=P["rim"])
    gx0 = P["eye_dx"] - grx
    sc.stroke((fx(1.1) - gx0, eye_y - 0.005), (fx(1.1), eye_y - 0.03), (fx(1.1) + gx0, eye_y - 0.005), P["rim"],
              frame, P["glasses"], 0.0)

    sc.raw(*front)
    kinds, prims = sc.tables()

    # Per-image globals.
    glob = np.zeros((n, _G), np.float64)  # (N, G)
    cn = nu.clutter
    bg0 = 128.0 + cn * (np.stack([z["bg0_r"], z["bg0_g"], z["bg0_b"]], 1) * 215.0 + 20.0 - 128.0)
    bg1 = 128.0 + cn * (np.stack([z["bg1_r"], z["bg1_g"], z["bg1_b"]], 1) * 215.0 + 20.0 - 128.0)
    glob[:, _G_BG0:_G_BG0 + 3] = bg0
    glob[:, _G_BG1:_G_BG1 + 3] = bg1
    bg_az = z["bg_az"] * 2.0 * np.pi
    bg_k = z["bg_strength"] / size  # blend weight change per pixel
    glob[:, _G_BGX], glob[:, _G_BGY] = np.cos(bg_az) * bg_k, np.sin(bg_az) * bg_k
    # head frame for shading (pixels)
    glob[:, _G_HCX], glob[:, _G_HCY] = sc.pt(zero, hcy + 0.05)
    glob[:, _G_HIRX] = 1.0 / sc.length(hrx * 1.02)
    glob[:, _G_HIRY] = 1.0 / sc.length(hry * 1.08)
    glob[:, _G_HCOS], glob[:, _G_HSIN] = np.cos(sc.phi), np.sin(sc.phi)
    li = nu.lighting
    light_az = z["light_az"] * 2.0 * np.pi
    slant = np.minimum(0.85 * li * z["light_slant"], 0.95)
    lx, ly = slant * np.cos(light_az), slant * np.sin(light_az)  # image frame
    c, s = np.cos(sc.phi), np.sin(sc.phi)
    glob[:, _G_LU] = c * lx + s * ly  # light in the head frame
    glob[:, _G_LV] = -s * lx + c * ly
    lz = np.sqrt(1.0 - slant ** 2)
    glob[:, _G_LZ] = lz
    amb = 0.55 + sym(z["ambient"]) * 0.15 * li
    glob[:, _G_AMB] = amb
    glob[:, _G_SNORM] = 1.0 / (amb + (1.0 - amb) * lz)
    bright = np.exp(sym(z["brightness"]) * 0.22 * li)
    cast = np.exp(np.stack([sym(z["cast_r"]), sym(z["cast_g"]), sym(z["cast_b"])], 1) * 0.07 * li)
    glob[:, _G_GAIN:_G_GAIN + 3] = bright[:, None] * cast
    grad_az = z["grad_az"] * 2.0 * np.pi
    grad = z["grad_strength"] * 0.25 * li / (0.5 * size)  # relative change per pixel
    glob[:, _G_GRADX], glob[:, _G_GRADY] = np.cos(grad_az) * grad, np.sin(grad_az) * grad
    glob[:, _G_CONTRAST] = np.exp(sym(z["contrast"]) * 0.15 * li)
    glob[:, _G_SOFT] = 1.0 + 0.8 * nu.blur * z["soft"]
    glob[:, _G_SIGMA] = nu.noise * (1.0 + 7.0 * z["noise"])
    return kinds, prims, glob


def _draw_pose(u, nuisance):
    """Similarity pose from the uniform draws u (N, _N_DRAWS) -> (N, 4) = (a, b, tx, ty)."""
    rot = (2.0 * u[:, _NZ["rot"]] - 1.0) * math.radians(nuisance.max_rotation_deg)
    s = np.exp((2.0 * u[:, _NZ["scale"]] - 1.0) * math.log1p(nuisance.max_scale))
    pose = np.empty((u.shape[0], 4), np.float64)  # (N, 4)
    pose[:, 0], pose[:, 1] = s * np.cos(rot), s * np.sin(rot)
    pose[:, 2] = (2.0 * u[:, _NZ["tx"]] - 1.0) * nuisance.max_shift
    pose[:, 3] = (2.0 * u[:, _NZ["ty"]] - 1.0) * nuisance.max_shift
    return pose


# --------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------

@kernel
def _clamp01(v):
    return 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)


@kernel
def _ellipse_sd(x, y, cx, cy, c, s, irx2, iry2):
    """Approximate signed distance (pixels, < 0 inside) from (x, y) to an ellipse.

    F / |grad F| with F = (u/rx)^2 + (v/ry)^2 - 1 in the ellipse frame: exact on
    the boundary to first order, which is all the anti-aliasing ramp needs.
    """
    dx = x - cx
    dy = y - cy
    u = c * dx + s * dy
    v = -s * dx + c * dy
    f = u * u * irx2 + v * v * iry2 - 1.0
    gu = u * irx2
    gv = v * iry2
    g = 2.0 * math.sqrt(gu * gu + gv * gv)
    if g < 1e-9:
        return -1e9
    return f / g


@kernel
def _shade(x, y, sh):
    """Lambertian factor of the head ellipsoid at pixel (x, y), 1 at its centre.

    sh = (hcx, hcy, cos, sin, 1/rx, 1/ry, lu, lv, lz, ambient, norm): the head
    ellipse in pixels and the light direction in its frame.
    """
    dx = x - sh[0]
    dy = y - sh[1]
    u = (sh[2] * dx + sh[3] * dy) * sh[4]
    v = (-sh[3] * dx + sh[2] * dy) * sh[5]
    r2 = u * u + v * v
    if r2 > 1.0:
        r = math.sqrt(r2)
        u /= r
        v /= r
        nz = 0.0
    else:
        nz = math.sqrt(1.0 - r2)
    lam = u * sh[6] + v * sh[7] + nz * sh[8]
    if lam < 0.0:
        lam = 0.0
    return (sh[9] + (1.0 - sh[9]) * lam) * sh[10]


@kernel
def _put(buf, y, x, a, shade, sh, cr, cg, cb):
    """Composite colour (cr, cg, cb), shaded by ``shade``, over buf[y, x] with opacity a."""
    if shade > 0.0:
        k = 1.0 - shade + shade * _shade(float(x), float(y), sh)
        cr *= k
        cg *= k
        cb *= k
    b0 = buf[y, x, 0]
    b1 = buf[y, x, 1]
    b2 = buf[y, x, 2]
    buf[y, x, 0] = b0 + a * (cr - b0)
    buf[y, x, 1] = b1 + a * (cg - b1)
    buf[y, x, 2] = b2 + a * (cb - b2)


@kernel
def _span(lo, hi, n):
    """Integer pixel range [i0, i1) covering [lo, hi], clipped to [0, n)."""
    i0 = int(math.floor(lo))
    i1 = int(math.ceil(hi)) + 1
    if i0 < 0:
        i0 = 0
    if i1 > n:
        i1 = n
    return i0, i1


@kernel
def _draw_ellipse(buf, p, sh, inv_soft):
    H, W = buf.shape[0], buf.shape[1]
    cr, cg, cb, alpha, shade = p[0], p[1], p[2], p[3], p[4]
    cx, cy, rx, ry = p[_E_CX], p[_E_CY], p[_E_RX], p[_E_RY]
    if rx <= 0.0 or ry <= 0.0:
        return
    c, s = math.cos(p[_E_ANG]), math.sin(p[_E_ANG])
    ring = p[_E_RING]
    pad = ring + 2.0 / inv_soft + 1.0
    ex = math.sqrt((rx * c) ** 2 + (ry * s) ** 2) + pad
    ey = math.sqrt((rx * s) ** 2 + (ry * c) ** 2) + pad
    x0, x1 = _span(cx - ex, cx + ex, W)
    y0, y1 = _span(cy - ey, cy + ey, H)
    krx, kry = p[_E_KRX], p[_E_KRY]
    clip = krx > 0.0 and kry > 0.0
    kcx, kcy, kc, ks, kirx2, kiry2 = 0.0, 0.0, 1.0, 0.0, 0.0, 0.0
    if clip:
        kcx, kcy = p[_E_KCX], p[_E_KCY]
        kc, ks = math.cos(p[_E_KANG]), math.sin(p[_E_KANG])
        kex = math.sqrt((krx * kc) ** 2 + (kry * ks) ** 2) + 2.0 / inv_soft + 1.0
        key = math.sqrt((krx * ks) ** 2 + (kry * kc) ** 2) + 2.0 / inv_soft + 1.0
        a0, a1 = _span(kcx - kex, kcx + kex, W)
        b0, b1 = _span(kcy - key, kcy + key, H)
        x0, x1 = max(x0, a0), min(x1, a1)
        y0, y1 = max(y0, b0), min(y1, b1)
        kirx2, kiry2 = 1.0 / (krx * krx), 1.0 / (kry * kry)
    irx2, iry2 = 1.0 / (rx * rx), 1.0 / (ry * ry)
    # |grad F| <= 2 / min(rx, ry) inside, so F <= -soft / min(rx, ry) puts a
    # filled ellipse's pixel at least soft / 2 inside: full coverage, no sqrt.
    f_inner = -1.0 / (inv_soft * min(rx, ry)) if ring <= 0.0 else -2.0
    for y in range(y0, y1):
        dy = y - cy
        for x in range(x0, x1):
            dx = x - cx
            u = c * dx + s * dy
            v = -s * dx + c * dy
            if u * u * irx2 + v * v * iry2 - 1.0 <= f_inner:
                cov = 1.0
            else:
                d = _ellipse_sd(float(x), float(y), cx, cy, c, s, irx2, iry2)
                if ring > 0.0:
                    d = abs(d) - ring
                cov = _clamp01(0.5 - d * inv_soft)
            if cov <= 0.0:
                continue
            if clip:
                dk = _ellipse_sd(float(x), float(y), kcx, kcy, kc, ks, kirx2, kiry2)
                cov = min(cov, _clamp01(0.5 - dk * inv_soft))
            _put(buf, y, x, cov * alpha, shade, sh, cr, cg, cb)


@kernel
def _draw_stroke(buf, p, sh, inv_soft, pts):
    H, W = buf.shape[0], buf.shape[1]
    cr, cg, cb, alpha, shade = p[0], p[1], p[2], p[3], p[4]
    nseg = pts.shape[0] - 1
    for i in range(nseg + 1):
        t = i / nseg
        w0, w1, w2 = (1.0 - t) ** 2, 2.0 * (1.0 - t) * t, t * t
        pts[i, 0] = w0 * p[_S_P0X] + w1 * p[_S_P1X] + w2 * p[_S_P2X]
        pts[i, 1] = w0 * p[_S_P0Y] + w1 * p[_S_P1Y] + w2 * p[_S_P2Y]
    rad = p[_S_RAD]
    pad = rad + 2.0 / inv_soft + 1.0
    lo_x = min(p[_S_P0X], p[_S_P1X], p[_S_P2X]) - pad
    hi_x = max(p[_S_P0X], p[_S_P1X], p[_S_P2X]) + pad
    lo_y = min(p[_S_P0Y], p[_S_P1Y], p[_S_P2Y]) - pad
    hi_y = max(p[_S_P0Y], p[_S_P1Y], p[_S_P2Y]) + pad
    x0, x1 = _span(lo_x, hi_x, W)
    y0, y1 = _span(lo_y, hi_y, H)
    for y in range(y0, y1):
        for x in range(x0, x1):
            best = 1e18
            for i in range(nseg):
                ax, ay = pts[i, 0], pts[i, 1]
                bx, by = pts[i + 1, 0] - ax, pts[i + 1, 1] - ay
                px, py = x - ax, y - ay
                bb = bx * bx + by * by
                t = 0.0
                if bb > 1e-12:
                    t = _clamp01((px * bx + py * by) / bb)
                qx, qy = px - t * bx, py - t * by
                d2 = qx * qx + qy * qy
                if d2 < best:
                    best = d2
            cov = _clamp01(0.5 - (math.sqrt(best) - rad) * inv_soft)
            if cov > 0.0:
                _put(buf, y, x, cov * alpha, shade, sh, cr, cg, cb)


@kernel
def _draw_quad(buf, p, sh, inv_soft):
    H, W = buf.shape[0], buf.shape[1]
    cr, cg, cb, alpha, shade = p[0], p[1], p[2], p[3], p[4]
    area = 0.0
    for k in range(4):
        j = (k + 1) % 4
        area += p[_Q_X0 + 2 * k] * p[_Q_X0 + 2 * j + 1] - p[_Q_X0 + 2 * j] * p[_Q_X0 + 2 * k + 1]
    if abs(area) < 1e-9:
        return
    orient = 1.0 if area > 0.0 else -1.0
    lo_x, hi_x, lo_y, hi_y = 1e18, -1e18, 1e18, -1e18
    for k in range(4):
        lo_x = min(lo_x, p[_Q_X0 + 2 * k])
        hi_x = max(hi_x, p[_Q_X0 + 2 * k])
        lo_y = min(lo_y, p[_Q_X0 + 2 * k + 1])
        hi_y = max(hi_y, p[_Q_X0 + 2 * k + 1])
    pad = 2.0 / inv_soft + 1.0
    x0, x1 = _span(lo_x - pad, hi_x + pad, W)
    y0, y1 = _span(lo_y - pad, hi_y + pad, H)
    for y in range(y0, y1):
        for x in range(x0, x1):
            # signed distance of a convex polygon: the largest outward edge distance
            d = -1e18
            for k in range(4):
                j = (k + 1) % 4
                ax, ay = p[_Q_X0 + 2 * k], p[_Q_X0 + 2 * k + 1]
                ex, ey = p[_Q_X0 + 2 * j] - ax, p[_Q_X0 + 2 * j + 1] - ay
                el = math.sqrt(ex * ex + ey * ey)
                if el < 1e-9:
                    continue
                # outward normal of a counter-clockwise (area > 0, y down) edge is (ey, -ex)
                dk = orient * (ey * (x - ax) - ex * (y - ay)) / el
                if dk > d:
                    d = dk
            cov = _clamp01(0.5 - d * inv_soft)
            if cov > 0.0:
                _put(buf, y, x, cov * alpha, shade, sh, cr, cg, cb)


@kernel
def _noise(seed, i):
    """Zero-mean, unit-variance triangular noise for counter i (splitmix64 hash)."""
    z = seed + np.uint64(i) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    lo = float(z & np.uint64(0xFFFFFFFF)) * (1.0 / 4294967296.0)
    hi = float(z >> np.uint64(32)) * (1.0 / 4294967296.0)
    return (lo + hi - 1.0) * 2.449489742783178  # sqrt(6): unit variance


@kernel
def _render_kernel(kinds, prims, glob, seeds, out):
    """Draw N scenes: kinds (N, M) int64, prims (N, M, L), glob (N, G), seeds (N,) uint64 -> out (N, H, W, 3) uint8."""
    N, H, W = out.shape[0], out.shape[1], out.shape[2]
    M = kinds.shape[1]
    buf = np.empty((H, W, 3), np.float64)  # (H, W, 3) working image, 0..255
    pts = np.empty((_BEZIER_SEGMENTS + 1, 2), np.float64)
    cx0, cy0 = 0.5 * (W - 1), 0.5 * (H - 1)
    for n in range(N):
        g = glob[n]
        inv_soft = 1.0 / g[_G_SOFT]
        sh = (g[_G_HCX], g[_G_HCY], g[_G_HCOS], g[_G_HSIN], g[_G_HIRX], g[_G_HIRY],
              g[_G_LU], g[_G_LV], g[_G_LZ], g[_G_AMB], g[_G_SNORM])
        for y in range(H):
            for x in range(W):
                t = _clamp01(0.5 + (x - cx0) * g[_G_BGX] + (y - cy0) * g[_G_BGY])
                for ch in range(3):
                    buf[y, x, ch] = g[_G_BG0 + ch] + t * (g[_G_BG1 + ch] - g[_G_BG0 + ch])
        for m in range(M):
            k = kinds[n, m]
            p = prims[n, m]
            if k == _NONE or p[3] <= 0.0:
                continue
            if k == _ELLIPSE:
                _draw_ellipse(buf, p, sh, inv_soft)
            elif k == _STROKE:
                _draw_stroke(buf, p, sh, inv_soft, pts)
            elif k == _QUAD:
                _draw_quad(buf, p, sh, inv_soft)
        contrast, sigma, seed = g[_G_CONTRAST], g[_G_SIGMA], seeds[n]
        for y in range(H):
            for x in range(W):
                light = 1.0 + (x - cx0) * g[_G_GRADX] + (y - cy0) * g[_G_GRADY]
                for ch in range(3):
                    v = buf[y, x, ch] * g[_G_GAIN + ch] * light
                    v = (v - 128.0) * contrast + 128.0
                    if sigma > 0.0:
                        v += sigma * _noise(seed, (y * W + x) * 3 + ch)
                    if v < 0.0:
                        v = 0.0
                    elif v > 255.0:
                        v = 255.0
                    out[n, y, x, ch] = np.uint8(v + 0.5)


# --------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------

class SyntheticFaces:
    """A deterministic population of synthetic identities and their images.

    Args:
        seed: int >= 0; with an identity index it fixes that identity's
            parameters (``numpy.random.default_rng([seed, i])``).
        n_identities: int >= 2, the training identities ``0 .. n_identities - 1``
            (at most ``HELDOUT_OFFSET``). Held-out identities start at
            ``HELDOUT_OFFSET`` whatever this is.
        nuisance: the ``Nuisance`` every render uses (default ``Nuisance()``).

    Identity parameters are computed once per identity and kept (a few hundred
    bytes each). Rendering is single-threaded.
    """

    size = IMAGE_SIZE

    def __init__(self, seed: int = 0, n_identities: int = 10_000, nuisance: Nuisance | None = None):
        self.seed = _int_arg("seed", seed, 0)
        self.n_identities = _int_arg("n_identities", n_identities, 2)
        if self.n_identities > HELDOUT_OFFSET:
            raise ValueError(f"n_identities must be <= HELDOUT_OFFSET = {HELDOUT_OFFSET} so that training "
                             f"and held-out identities stay disjoint, got {n_identities}")
        if nuisance is None:
            nuisance = Nuisance()
        if not isinstance(nuisance, Nuisance):
            raise ValueError(f"nuisance must be a Nuisance, got {type(nuisance).__name__}")
        self.nuisance = nuisance
        self._params: dict[int, np.ndarray] = {}

    def __repr__(self):
        return f"SyntheticFaces(seed={self.seed}, n_identities={self.n_identities}, nuisance={self.nuisance})"

    # ---- identity sets -------------------------------------------------

    @property
    def train_identities(self) -> np.ndarray:
        """(n_identities,) int64: 0 .. n_identities - 1."""
        return np.arange(self.n_identities, dtype=np.int64)

    def heldout_identities(self, n: int) -> np.ndarray:
        """(n,) int64: HELDOUT_OFFSET .. HELDOUT_OFFSET + n - 1, disjoint from every training set."""
        n = _int_arg("n", n, 1)
        return HELDOUT_OFFSET + np.arange(n, dtype=np.int64)

    # ---- parameters ----------------------------------------------------

    def identity_params(self, identities) -> np.ndarray:
        """Identity parameter vectors: identities (N,) int -> (N, P_ID) float64, columns ``PARAM_NAMES``."""
        ids = _check_identities(identities)  # (N,)
        missing = [i for i in dict.fromkeys(ids.tolist()) if i not in self._params]
        if missing:
            if len(self._params) + len(missing) > _PARAM_CACHE_SIZE:
                self._params.clear()
            u = np.stack([np.random.default_rng([self.seed, i]).random(len(_IDENTITY_DRAWS))
                          for i in missing])  # (n_missing, U)
            for i, row in zip(missing, _identity_table(u)):
                row.setflags(write=False)
                self._params[i] = row
        if ids.size == 0:
            return np.empty((0, len(PARAM_NAMES)), np.float64)
        return np.stack([self._params[i] for i in ids.tolist()])

    # ---- rendering -----------------------------------------------------

    def render(self, identities, rng, *, pose=None, return_pose: bool = False):
        """Render one image of each listed identity.

        Args:
            identities: (N,) integer identity indices (repeats allowed).
            rng: numpy.random.Generator (advanced by the call) or int seed;
                the only source of nuisance.
            pose: optional (N, 4) float (a, b, tx, ty), replacing the drawn
                similarity pose (the draws are still consumed, so all other
                nuisance is unchanged); e.g. (1, 0, 0, 0) renders aligned faces.
            return_pose: also return the pose used.

        Returns:
            images (N, S, S, 3) uint8 RGB, and with ``return_pose`` also
            pose (N, 4) float64 (a, b, tx, ty): ``pose_to_theta(pose)`` is the
            warp theta mapping the canonical (aligned) frame to the image.
        """
        ids = _check_identities(identities)  # (N,)
        rng = _as_rng(rng)
        n = ids.shape[0]
        if pose is not None:
            pose = np.asarray(pose)
            if pose.shape != (n, 4) or not np.issubdtype(pose.dtype, np.floating):
                raise ValueError(f"pose must be a float array of shape (N, 4) = ({n}, 4), "
                                 f"got shape {pose.shape}, dtype {pose.dtype}")
            if not np.all(np.isfinite(pose)) or np.any(np.hypot(pose[:, 0], pose[:, 1]) <= 0):
                raise ValueError("pose must be finite with scale hypot(a, b) > 0")
            pose = pose.astype(np.float64)
        params = self.identity_params(ids)  # (N, P_ID)
        u = rng.random((n, _N_DRAWS))  # (N, _N_DRAWS)
        seeds = rng.integers(0, np.iinfo(np.int64).max, size=n, dtype=np.int64).astype(np.uint64)  # (N,)
        drawn = _draw_pose(u, self.nuisance)  # (N, 4)
        if pose is None:
            pose = drawn
        images = np.empty((n, self.size, self.size, 3), np.uint8)  # (N, S, S, 3)
        if n:
            kinds, prims, glob = _build_scenes(params, u, pose, self.nuisance, self.size)
            _render_kernel(kinds, prims, glob, seeds, images)
        if return_pose:
            return images, pose.copy()
        return images

    def sample_batch(self, n_identities: int, images_per_identity: int, rng, *, return_pose: bool = False):
        """A P x K training batch: P distinct training identities, K images each.

        Args:
            n_identities: P >= 1 (at most ``self.n_identities``).
            images_per_identity: K >= 2 (a batch must hold same-identity pairs).
            rng: numpy.random.Generator or int seed (identities and nuisance).

        Returns:
            images (P*K, S, S, 3) uint8 and labels (P*K,) int64 identity
            indices, identity-major (image j of the p-th identity is row
            p*K + j); with ``return_pose`` also pose (P*K, 4).
        """
        P = _int_arg("n_identities", n_identities, 1)
        K = _int_arg("images_per_identity", images_per_identity, 2)
        if P > self.n_identities:
            raise ValueError(f"n_identities (P = {P}) must be <= the number of training identities "
                             f"({self.n_identities})")
        rng = _as_rng(rng)
        chosen = rng.choice(self.n_identities, size=P, replace=False).astype(np.int64)  # (P,)
        labels = np.repeat(chosen, K)  # (P*K,)
        out = self.render(labels, rng, return_pose=return_pose)
        if return_pose:
            return out[0], labels, out[1]
        return out, labels

    def sample_random_pairs(self, batch_size: int, rng):
        """The classic estimator's batch: k/2 independent random pairs, k/4 same then k/4 different.

        Pair i is rows 2i and 2i + 1. A same pair renders one training
        identity (drawn uniformly) twice, so its two images differ in pose
        and nuisance; a different pair renders two distinct identities drawn
        uniformly. Pairs are drawn independently (with replacement across
        pairs), as ``npface.data.sampler.RandomPairSampler`` does for folders.

        Returns images (k, S, S, 3) uint8 and labels (k,) int64.
        """
        k = _int_arg("batch_size", batch_size, 4)
        if k % 4:
            raise ValueError(f"batch_size must be a multiple of 4 (k/4 same and k/4 different pairs), got {k}")
        rng = _as_rng(rng)
        q = k // 4
        same = np.repeat(rng.integers(0, self.n_identities, size=q), 2)                       # (k/2,)
        diff = np.concatenate([rng.choice(self.n_identities, size=2, replace=False) for _ in range(q)])
        labels = np.concatenate([same, diff]).astype(np.int64)                               # (k,)
        return self.render(labels, rng), labels

    def verification_set(self, n_pairs: int = 600, n_identities: int = 100, images_per_identity: int = 4,
                         seed: int = 0, n_folds: int = 10) -> VerificationSet:
        """A fixed held-out verification set of balanced same / different pairs.

        Renders K images of each of the held-out identities
        ``heldout_identities(n_identities)``, deals the identities into
        ``n_folds`` groups (identity i to group i mod n_folds) and picks, within
        each group, n_pairs / (2 n_folds) distinct same pairs and as many
        distinct different pairs; the folds are then assigned by person with
        ``npface.verification.person_folds`` (the rule every fold-less pair
        set follows), so no identity is in two folds. Everything is fixed by
        (self.seed, seed, the arguments, the nuisance settings).

        Args:
            n_pairs: positive multiple of 2 * n_folds.
            n_identities: held-out identities, >= 2 per fold.
            images_per_identity: K >= 2.
            seed: int >= 0, the set's own seed.
            n_folds: >= 1.
        """
        n_pairs = _int_arg("n_pairs", n_pairs, 1)
        n_ids = _int_arg("n_identities", n_identities, 2)
        K = _int_arg("images_per_identity", images_per_identity, 2)
        seed = _int_arg("seed", seed, 0)
        n_folds = _int_arg("n_folds", n_folds, 1)
        if n_pairs % (2 * n_folds):
            raise ValueError(f"n_pairs must be a multiple of 2 * n_folds = {2 * n_folds} (balanced folds), "
                             f"got {n_pairs}")
        from npface.verification import person_folds
        if n_ids < 2 * n_folds:
            raise ValueError(f"n_identities must be at least 2 * n_folds = {2 * n_folds} (two per fold), "
                             f"got {n_ids}")
        per = n_pairs // (2 * n_folds)                # same pairs, and different pairs, per fold
        ids_per = n_ids // n_folds                    # identities in the smallest group
        n_same_avail = ids_per * K * (K - 1) // 2
        M = ids_per * K
        n_diff_avail = M * (M - 1) // 2 - n_same_avail
        if per > n_same_avail:
            raise ValueError(f"n_pairs / (2 n_folds) = {per} same pairs per fold requested but {ids_per} identities "
                             f"per fold x {K} images give only {n_same_avail}")
        if per > n_diff_avail // 2:  # rejection sampling stays quick while at most half are taken
            raise ValueError(f"n_pairs / (2 n_folds) = {per} different pairs per fold requested; at most "
                             f"{n_diff_avail // 2} (half of those available) are allowed with {ids_per} identities "
                             f"per fold x {K} images")
        rng = np.random.default_rng([self.seed, seed, 0x5E7])
        labels = np.repeat(self.heldout_identities(n_ids), K)  # (M,)
        images = self.render(labels, rng)  # (M, S, S, 3)
        jj, kk = np.triu_indices(K, 1)  # (K(K-1)/2,)
        pairs = np.empty((n_pairs, 2), np.int64)
        is_same = np.zeros(n_pairs, bool)
        for f in range(n_folds):
            members = np.arange(f, n_ids, n_folds)  # (n_f,) identity positions of group f
            # same pairs: all (j < k) within each identity of the group, then a random subset
            base = (members * K)[:, None]  # (n_f, 1)
            same_all = np.stack([(base + jj).ravel(), (base + kk).ravel()], 1)
            same = same_all[rng.choice(len(same_all), size=per, replace=False)]  # (per, 2)
            # different pairs: rejection-sample distinct unordered pairs across the group's identities
            rows = (base + np.arange(K)).ravel()  # (n_f K,) image rows of the group
            seen: set[tuple[int, int]] = set()
            diff = []
            while len(diff) < per:
                for i, j in zip(rng.choice(rows, size=2 * per).tolist(), rng.choice(rows, size=2 * per).tolist()):
                    key = (min(i, j), max(i, j))
                    if i // K == j // K or key in seen:
                        continue
                    seen.add(key)
                    diff.append(key)
                    if len(diff) == per:
                        break
            o = 2 * per * f
            pairs[o:o + per] = same
            pairs[o + per:o + 2 * per] = np.asarray(diff, np.int64)
            is_same[o:o + per] = True
        fold = person_folds(labels[pairs[:, 0]], labels[pairs[:, 1]], is_same, n_folds) if n_folds > 1 \
            else np.zeros(n_pairs, np.int64)  # (n_pairs,)
        return VerificationSet(images, labels, pairs, is_same, fold)
