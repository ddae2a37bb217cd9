"""Mini-batches of P identities x K images, augmentation, and validation pairs.

The paper's Multibatch step (Section 4) uses k = 256 images per batch: 16
people, 16 images each; every one of the k^2 - k ordered pairs of the batch
enters the loss. ``PKSampler`` draws such batches:

- Only people with at least ``min_images`` (default 2) images are eligible:
  a person with a single image gives no "same" pair. On peopleDevTrain
  that leaves 1,184 of 4,038 people (6,671 of 9,525 images); after holding
  out 10 % of the people for validation (``split_identities``, seed 0),
  1,061 people and 5,527 images.
- P distinct people are drawn uniformly (each person equally likely,
  whatever their number of images), then K images of each:
  without replacement when the person has at least K images; otherwise with
  replacement, as every one of their n images once plus K - n more drawn
  uniformly with replacement (so no image is left out, and the duplicates
  differ once augmented).
- A batch is identity-major: rows p*K .. p*K + K - 1 are person p.
- Everything is drawn from a ``numpy.random.Generator`` passed in by the
  caller, so a seed reproduces the batch sequence.

Single-image people (``singletons``, off by default): a person with one
image gives no "same" pair, but can still be the other side of "not-same"
pairs. ``PKSampler(..., singletons=m)`` appends m such people, one image
each, after the P x K rows (each with their own label), so a batch holds
P K + m images; under the balanced loss they add only to the not-same half.

Augmentation (``augment``) draws, per image, a horizontal flip (probability
1/2) and a small similarity jitter (rotation, scale, shift), both
switchable; it returns the warp used, so the alignment targets can follow
(``npface.data.landmarks.augmented_thetas``). The jitter of a 112 x 112
crop reaches past its edge (up to 16 px at the default ranges), where the
warp reads zeros: black borders, which no test image has. Given ``context``,
the same faces cropped with more of their picture around them
(``npface.data.folders.LFW_CONTEXT``), it reads the picture there instead.
``Photometric`` adds, when asked, colour jitter, blur, grayscale and random
erasing after the warp.
"""
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from npface.data.landmarks import FLIP_THETA, compose_affine, identity_theta


def _int_arg(name, v, minimum):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _labels_arg(labels, indices):
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array (N,), got dtype {labels.dtype} shape {labels.shape}")
    if indices is None:
        indices = np.arange(len(labels), dtype=np.int64)
    else:
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"indices must be a 1-D integer array (M,), "
                             f"got dtype {indices.dtype} shape {indices.shape}")
        if len(indices) and (indices.min() < 0 or indices.max() >= len(labels)):
            raise ValueError(f"indices must lie in [0, {len(labels)}), got values {indices.min()} .. {indices.max()}")
        if len(np.unique(indices)) != len(indices):
            raise ValueError("indices must not repeat")
        indices = np.sort(indices).astype(np.int64)
    return labels, indices


def _groups(labels, indices):
    """{label: (n,) sorted int64 rows} for the rows in ``indices``."""
    sub = labels[indices]
    order = np.argsort(sub, kind="stable")
    uniq, starts = np.unique(sub[order], return_index=True)
    bounds = list(starts) + [len(order)]
    return {int(u): indices[order[bounds[i]:bounds[i + 1]]] for i, u in enumerate(uniq)}


def _eligible(labels, indices, min_images):
    """(labels (E,) int64 of the people with >= min_images rows in ``indices``, [their rows] * E)."""
    labels, indices = _labels_arg(labels, indices)
    groups = _groups(labels, indices)
    eligible = np.array(sorted(l for l, g in groups.items() if len(g) >= min_images), dtype=np.int64)
    return eligible, [groups[int(l)] for l in eligible]


class Batch(NamedTuple):
    images: np.ndarray      # (P*K, H, W, 3) uint8, augmented
    labels: np.ndarray      # (P*K,) int64 person labels (dataset labels)
    indices: np.ndarray     # (P*K,) int64 dataset rows
    aug_theta: np.ndarray   # (P*K, 2, 3) warp each augmented image applied (identity when none)
    flipped: np.ndarray     # (P*K,) bool


class PKSampler:
    """Draws P people x K images (see the module docstring for the rules).

    labels (N,) integer person label of every dataset row; indices (M,)
    optional rows to draw from (e.g. the training people's images, from
    ``FaceDataset.indices_of``); n_identities P, n_per_identity K (the
    paper's 16 x 16); min_images: people with fewer images are not eligible.
    singletons m: besides, m distinct people with exactly one image among
    ``indices``, their image each, appended after the P x K rows.
    Raises ValueError if fewer than P people are eligible, or fewer than m
    have one image.
    """

    def __init__(self, labels, n_identities: int = 16, n_per_identity: int = 16,
                 indices: Optional[np.ndarray] = None, min_images: int = 2, singletons: int = 0):
        self.P = _int_arg("n_identities", n_identities, 1)
        self.K = _int_arg("n_per_identity", n_per_identity, 1)
        self.min_images = _int_arg("min_images", min_images, 1)
        self.m = _int_arg("singletons", singletons, 0)
        self.eligible, self._rows = _eligible(labels, indices, self.min_images)  # (E,), E arrays of rows
        if len(self.eligible) < self.P:
            raise ValueError(f"n_identities: only {len(self.eligible)} people have >= {self.min_images} images, "
                             f"cannot draw {self.P} distinct people per batch")
        labels, indices = _labels_arg(labels, indices)
        single = [g[0] for g in _groups(labels, indices).values() if len(g) == 1]
        self.single_rows = np.array(sorted(single), dtype=np.int64)          # (S,) the one image of each
        self._labels = labels
        if self.m and self.m > len(self.single_rows):
            raise ValueError(f"singletons: only {len(self.single_rows)} people have exactly one image, "
                             f"cannot draw {self.m} per batch")

    @property
    def n_eligible_images(self) -> int:
        """Number of images of the eligible people."""
        return int(sum(len(r) for r in self._rows))

    @property
    def batch_size(self) -> int:
        return self.P * self.K + self.m

    def sample(self, rng: np.random.Generator) -> tuple:
        """Draw one batch: (indices (P*K + m,) int64 dataset rows, labels (P*K + m,) int64), identity-major,
        the m single-image people last."""
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        people = rng.choice(len(self.eligible), size=self.P, replace=False)   # (P,)
        out = np.empty(self.P * self.K, dtype=np.int64)                       # (P*K,)
        for p, e in enumerate(people):
            rows = self._rows[e]
            n = len(rows)
            if n >= self.K:
                pick = rows[rng.choice(n, size=self.K, replace=False)]
            else:  # every image once, the rest with replacement, in random order
                pick = rng.permutation(np.concatenate([rows, rows[rng.integers(0, n, size=self.K - n)]]))
            out[p * self.K:(p + 1) * self.K] = pick
        labels = np.repeat(self.eligible[people], self.K)                     # (P*K,)
        if self.m:            # drawn only when asked, so a batch without them is drawn exactly as before
            single = self.single_rows[rng.choice(len(self.single_rows), size=self.m, replace=False)]  # (m,)
            out, labels = np.concatenate([out, single]), np.concatenate([labels, self._labels[single]])
        return out, labels

    def batch(self, images: np.ndarray, rng: np.random.Generator, flip: bool = True, jitter: bool = True,
              photometric: Optional["Photometric"] = None, context: Optional[np.ndarray] = None,
              **jitter_kw) -> Batch:
        """Draw a batch and gather its images (N, H, W, 3) uint8 (e.g. ``FaceDataset.images``), augmented.

        flip / jitter / context / jitter_kw: see ``augment`` (context: (N, H + 2m, W + 2m, 3), row i the
        wider crop of image i); photometric: a ``Photometric`` applied after them.
        """
        return _gather(self, images, rng, flip, jitter, jitter_kw, photometric, context)


class RandomPairSampler:
    """The classic estimator's batch: k/2 independent random pairs of the training people, half same.

    Pair i is rows 2i and 2i + 1 of the batch (``npface.estimators.pair_rows``); the first k/4
    pairs are same pairs, the other k/4 different pairs (k a multiple of 4):

    - same: a person drawn uniformly among the eligible people (at least
      ``min_images`` >= 2 images), then two distinct images of theirs uniformly;
    - different: two distinct eligible people drawn uniformly, one image of
      each uniformly.

    Every pair is drawn independently of the others (with replacement across
    pairs), from the same people the P x K sampler draws from, so both
    estimators see the same training images and a batch is k images either
    way. labels (N,), indices (M,), min_images: as ``PKSampler``.
    """

    def __init__(self, labels, batch_size: int = 256, indices: Optional[np.ndarray] = None, min_images: int = 2):
        k = _int_arg("batch_size", batch_size, 4)
        if k % 4:
            raise ValueError(f"batch_size must be a multiple of 4 (k/4 same and k/4 different pairs), got {k}")
        self.k = k
        self.min_images = _int_arg("min_images", min_images, 2)
        self.eligible, self._rows = _eligible(labels, indices, self.min_images)  # (E,), E arrays of rows
        if len(self.eligible) < 2:
            raise ValueError(f"only {len(self.eligible)} people have >= {self.min_images} images; "
                             f"different pairs need two")

    @property
    def batch_size(self) -> int:
        return self.k

    @property
    def n_eligible_images(self) -> int:
        """Number of images of the eligible people."""
        return int(sum(len(r) for r in self._rows))

    def sample(self, rng: np.random.Generator) -> tuple:
        """Draw one batch: (indices (k,) int64 dataset rows, labels (k,) int64), pair i in rows 2i, 2i + 1."""
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        q = self.k // 4
        out = np.empty(self.k, dtype=np.int64)                                # (k,)
        people = np.empty(self.k, dtype=np.int64)                             # (k,) index into eligible
        same = rng.integers(0, len(self.eligible), size=q)                    # (k/4,)
        for i, e in enumerate(same):
            rows = self._rows[e]
            out[2 * i:2 * i + 2] = rows[rng.choice(len(rows), size=2, replace=False)]
            people[2 * i:2 * i + 2] = e
        for i in range(q, 2 * q):
            a, b = rng.choice(len(self.eligible), size=2, replace=False)
            out[2 * i] = self._rows[a][rng.integers(len(self._rows[a]))]
            out[2 * i + 1] = self._rows[b][rng.integers(len(self._rows[b]))]
            people[2 * i], people[2 * i + 1] = a, b
        return out, self.eligible[people]

    def batch(self, images: np.ndarray, rng: np.random.Generator, flip: bool = True, jitter: bool = True,
              photometric: Optional["Photometric"] = None, context: Optional[np.ndarray] = None,
              **jitter_kw) -> Batch:
        """Draw a batch and gather its images, augmented exactly as ``PKSampler.batch``."""
        return _gather(self, images, rng, flip, jitter, jitter_kw, photometric, context)


def _gather(sampler, images, rng, flip, jitter, jitter_kw, photometric=None, context=None) -> Batch:
    """Draw ``sampler.sample(rng)`` and gather its images (N, H, W, 3) uint8, augmented (``augment``, then
    ``photometric`` when given); context: None or the images' wider crops (N, H + 2m, W + 2m, 3) (``augment``)."""
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be a uint8 array (N, H, W, 3), got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    if context is not None and (not isinstance(context, np.ndarray) or len(context) != len(images)):
        raise ValueError(f"context must hold one wider crop per image ({len(images)}), got "
                         f"{getattr(context, 'shape', type(context).__name__)}")
    idx, labels = sampler.sample(rng)
    x = np.asarray(images[idx])                                               # (k, H, W, 3)
    ctx = None if context is None or not jitter else np.asarray(context[idx])  # (k, H + 2m, W + 2m, 3)
    x, aug_theta, flipped = augment(x, rng, flip=flip, jitter=jitter, context=ctx, **jitter_kw)
    if photometric is not None:
        x = photometric(x, rng)
    return Batch(x, labels, idx, aug_theta, flipped)


# --------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------

def jitter_thetas(n: int, rng: np.random.Generator, max_rotation: float = 8.0, max_scale: float = 0.08,
                  max_shift: float = 0.06) -> np.ndarray:
    """(n, 2, 3) random similarity warps, in the warp convention (output -> input, normalised).

    Per image, independently and uniformly: rotation phi in
    [-max_rotation, max_rotation] degrees; log-scale in
    [-log(1 + max_scale), log(1 + max_scale)]; shift (tx, ty) in
    [-max_shift, max_shift] normalised units (1.0 = half the image:
    0.06 is 3.4 px of 112). theta = [[s cos phi, -s sin phi, tx],
    [s sin phi, s cos phi, ty]]; s > 1 samples a larger region, so the face
    looks smaller.
    """
    n = _int_arg("n", n, 0)
    for name, v in (("max_rotation", max_rotation), ("max_scale", max_scale), ("max_shift", max_shift)):
        if not (np.isscalar(v) and np.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    phi = np.deg2rad(rng.uniform(-max_rotation, max_rotation, size=n))       # (n,)
    s = np.exp(rng.uniform(-np.log1p(max_scale), np.log1p(max_scale), size=n))
    t = rng.uniform(-max_shift, max_shift, size=(n, 2))                       # (n, 2)
    a, b = s * np.cos(phi), s * np.sin(phi)
    return np.stack([np.stack([a, -b, t[:, 0]], -1), np.stack([b, a, t[:, 1]], -1)], -2)


def warp_images(images: np.ndarray, theta: np.ndarray, out_h: Optional[int] = None,
                out_w: Optional[int] = None) -> np.ndarray:
    """Warp uint8 images (N, H, W, 3) by theta (N, 2, 3) -> uint8 (N, out_h, out_w, 3).

    ``npface.ops.warp_forward`` (bilinear, zeros outside, the project's
    warp convention) in float32 NCHW, rounded back to uint8.
    """
    from npface.ops import warp_forward  # imported here: data loading does not need the kernels otherwise

    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be a uint8 array (N, H, W, 3), got "
                         f"{getattr(images, 'dtype', None)} {getattr(images, 'shape', None)}")
    theta = np.asarray(theta)
    if theta.shape != (images.shape[0], 2, 3):
        raise ValueError(f"theta must have shape (N, 2, 3) = ({images.shape[0]}, 2, 3), got {theta.shape}")
    out_h = images.shape[1] if out_h is None else out_h
    out_w = images.shape[2] if out_w is None else out_w
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)   # (N, 3, H, W)
    out, _ = warp_forward(x, theta.astype(np.float32), out_h, out_w)           # (N, 3, Ho, Wo)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()


def augment(images: np.ndarray, rng: np.random.Generator, flip: bool = True, jitter: bool = True,
            context: Optional[np.ndarray] = None, **jitter_kw) -> tuple:
    """Random flip and similarity jitter of uint8 images (N, H, W, 3); the input is not modified.

    Returns (out (N, H, W, 3) uint8, aug_theta (N, 2, 3), flipped (N,) bool).
    The augmented image samples the original through aug_theta G
    (out(u) = in(G u), normalised coordinates, ``warp_images``), with
    G = J o F^f: J the jitter (``jitter_thetas(**jitter_kw)``, identity when
    ``jitter`` is False) and F = ``FLIP_THETA`` when the image is flipped
    (probability 1/2 when ``flip``). A flip alone is done exactly, by
    reversing the columns.

    context: None, or (N, H + 2m, W + 2m, 3) uint8, the same images with m more
    pixels of their picture on every side (``CropBox.widened``). Where the
    jitter reaches past the image's edge it then samples those pixels instead
    of zeros (black borders that no test image has). The image is the
    context's centre, so the point at normalised position (x, y) of the image
    is at (x W / (W + 2m), y H / (H + 2m)) in the context, and the output
    samples the context through diag(W / (W + 2m), H / (H + 2m)) G. G, the
    flips and the random draws are the same with or without it; without
    jitter it is not used.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be a uint8 array (N, H, W, 3), got "
                         f"{getattr(images, 'dtype', None)} {getattr(images, 'shape', None)}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    n, H, W = images.shape[:3]
    if context is not None:
        _check_context(context, images.shape)
    flipped = rng.random(n) < 0.5 if flip else np.zeros(n, dtype=bool)        # (n,)
    F = np.where(flipped[:, None, None], FLIP_THETA, identity_theta(1)[0])   # (n, 2, 3)
    if jitter:
        G = compose_affine(jitter_thetas(n, rng, **jitter_kw), F)             # (n, 2, 3)
        if context is None:
            return warp_images(images, G), G, flipped
        Hc, Wc = context.shape[1:3]
        to_context = np.array([[W / Wc], [H / Hc]])                           # (2, 1): rows x and y of G
        return warp_images(context, to_context * G, H, W), G, flipped
    elif jitter_kw:
        raise ValueError(f"jitter options {sorted(jitter_kw)} given with jitter=False")
    out = images.copy()
    out[flipped] = out[flipped][:, :, ::-1]
    return out, F, flipped


def _check_context(context, shape):
    """ValueError unless ``context`` is uint8 (N, H + 2m, W + 2m, 3), m >= 0, for images of ``shape`` (N, H, W, 3)."""
    n, H, W = shape[:3]
    if not isinstance(context, np.ndarray) or context.dtype != np.uint8 or context.ndim != 4:
        raise ValueError(f"context must be a uint8 array (N, H + 2m, W + 2m, 3), got "
                         f"{getattr(context, 'dtype', None)} {getattr(context, 'shape', None)}")
    Hc, Wc = context.shape[1:3]
    m = (Hc - H) // 2
    if context.shape[0] != n or context.shape[-1] != 3 or m < 0 or Hc != H + 2 * m or Wc != W + 2 * m:
        raise ValueError(f"context must have shape (N, H + 2m, W + 2m, 3) for images of shape {tuple(shape)} "
                         f"(the same margin m on every side), got {context.shape}")


@dataclass(frozen=True)
class Photometric:
    """Appearance augmentation of uint8 images (N, H, W, 3), after the geometric one; all off by default.

    Per image, independently, in this order:

    - colour (strength c in [0, 1)): brightness, contrast and saturation
      factors b, a, s each uniform in [1 - c, 1 + c]; x <- b x, then
      x <- mean + a (x - mean) (mean: the image's mean gray), then
      x <- gray + s (x - gray) (gray: the pixel's luma), done as one
      affine map of the colours;
    - blur (probability): a Gaussian blur, sigma uniform in [0.5, 1.5] px;
    - grayscale (probability): every channel replaced by the luma
      (ITU-R BT.601 weights 0.299, 0.587, 0.114);
    - erase (probability): a rectangle of 2-20 % of the image, aspect ratio
      log-uniform in [1/3, 3], filled with one colour uniform in [0, 255]^3
      (random erasing, Zhong et al. 2020).

    Every random number is drawn from the caller's generator whether or not
    its image uses it (a fixed count per image), so a batch depends only on
    the generator's state. Calling it returns a new uint8 array.
    """
    color: float = 0.0
    blur: float = 0.0
    grayscale: float = 0.0
    erase: float = 0.0

    def __post_init__(self):
        if not (np.isscalar(self.color) and 0 <= self.color < 1):
            raise ValueError(f"colour jitter strength must be in [0, 1), got {self.color!r}")
        for name in ("blur", "grayscale", "erase"):
            v = getattr(self, name)
            if not (np.isscalar(v) and 0 <= v <= 1):
                raise ValueError(f"{name} probability must be in [0, 1], got {v!r}")

    def __bool__(self):
        return bool(self.color or self.blur or self.grayscale or self.erase)

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
                or images.shape[-1] != 3:
            raise ValueError(f"images must be a uint8 array (N, H, W, 3), got "
                             f"{getattr(images, 'dtype', None)} {getattr(images, 'shape', None)}")
        from scipy.ndimage import gaussian_filter
        n, h, w, _ = images.shape
        x = images.astype(np.float32)                                          # (n, h, w, 3)
        if self.color:
            # the three steps are one affine map of each pixel's colour (a row vector), done at once:
            # saturation is x -> x S^T with S = s I + (1 - s) 1 w^T (w the luma weights; S 1 = 1, so it
            # keeps a gray offset), hence out = a b x S^T + (1 - a) m 1^T, m = b * mean luma of the input
            b, a, sat = rng.uniform(1 - self.color, 1 + self.color, size=(3, n))  # (n,) each
            m = b * luma(x).mean(axis=(1, 2))                                  # (n,) mean gray after brightness
            S = sat[:, None, None] * np.eye(3) + (1 - sat)[:, None, None] * np.outer(np.ones(3), LUMA)  # (n, 3, 3)
            C = ((a * b)[:, None, None] * S).transpose(0, 2, 1).astype(np.float32)                     # (n, 3, 3)
            x = (x.reshape(n, -1, 3) @ C).reshape(n, h, w, 3) + ((1 - a) * m).astype(np.float32)[:, None, None, None]
        if self.blur:
            use, sigma = rng.random(n) < self.blur, rng.uniform(0.5, 1.5, size=n)
            for i in np.flatnonzero(use):
                x[i] = gaussian_filter(x[i], sigma=(sigma[i], sigma[i], 0), mode="nearest")
        if self.grayscale:
            use = rng.random(n) < self.grayscale                               # (n,)
            x[use] = luma(x[use])[..., None]
        if self.erase:
            use = rng.random(n) < self.erase                                   # (n,)
            area = rng.uniform(0.02, 0.2, size=n) * h * w
            aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3), size=n))
            corner = rng.random((n, 2))                                        # (n, 2) where the box starts
            fill = rng.uniform(0, 255, size=(n, 3)).astype(np.float32)         # (n, 3)
            for i in np.flatnonzero(use):
                eh = int(min(h, max(1, round(np.sqrt(area[i] * aspect[i])))))
                ew = int(min(w, max(1, round(np.sqrt(area[i] / aspect[i])))))
                top, left = int(corner[i, 0] * (h - eh + 1)), int(corner[i, 1] * (w - ew + 1))
                x[i, top:top + eh, left:left + ew] = fill[i]
        np.rint(x, out=x)                                                      # in place: x is our own copy
        return np.clip(x, 0, 255, out=x).astype(np.uint8)


LUMA = np.array([0.299, 0.587, 0.114])          # ITU-R BT.601 luma weights of R, G, B


def luma(x: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of RGB images (..., 3) -> (...)."""
    return x @ LUMA.astype(x.dtype)


# --------------------------------------------------------------------------
# Validation pairs
# --------------------------------------------------------------------------

def validation_pairs(labels, n_each: int, seed: int = 0, indices: Optional[np.ndarray] = None,
                     n_groups: int = 1) -> tuple:
    """A fixed, balanced set of pairs: ``n_each`` "same" and ``n_each`` "different".

    labels (N,) person labels; indices (M,) optional rows to use (e.g. the
    held-out people's images). Deterministic given ``seed``.

    - same: a person is drawn uniformly among those with an unused pair of
      images, then one of their unused unordered pairs uniformly;
    - different: two distinct people drawn uniformly, one image of each
      uniformly; no pair repeats.

    n_groups > 1: the people are first dealt into ``n_groups`` groups that
    hold about as many same pairs each (``_deal``), and each group gets its
    share of ``n_each`` of each kind, drawn among its own people only; no
    pair links two groups, so ``npface.verification.person_folds`` can make
    that many people-disjoint folds of the set.

    Returns (pairs (2 n_each, 2) int64 dataset rows with pairs[:, 0] <
    pairs[:, 1], same (2 n_each,) bool), in a seeded random order. Raises
    ValueError if there are not enough distinct pairs of either kind.
    """
    n_each = _int_arg("n_each", n_each, 1)
    n_groups = _int_arg("n_groups", n_groups, 1)
    labels, indices = _labels_arg(labels, indices)
    groups = _groups(labels, indices)
    people = sorted(groups)
    rng = np.random.default_rng(seed)
    if n_groups == 1:
        same, diff = _draw_pairs(groups, people, n_each, rng)
    else:
        if len(people) < 2 * n_groups:
            raise ValueError(f"n_groups: {len(people)} people cannot make {n_groups} groups of at least 2")
        dealt = _deal(people, groups, n_groups, rng)                           # (people,) group of each person
        same, diff = [], []
        for g in range(n_groups):
            members = [p for p, d in zip(people, dealt) if d == g]
            s, d = _draw_pairs(groups, members, n_each // n_groups + (g < n_each % n_groups), rng)
            same += s
            diff += d
    pairs = np.asarray(same + diff, dtype=np.int64)                            # (2 n_each, 2)
    is_same = np.arange(2 * n_each) < n_each                                   # (2 n_each,)
    order = rng.permutation(2 * n_each)
    return pairs[order], is_same[order]


def _deal(people, groups, n_groups, rng) -> np.ndarray:
    """Group (people,) int64 of each person: about equal numbers of possible same pairs, and of people, per group.

    People in a seeded random order, then by their number of same pairs
    n (n - 1) / 2, largest first. A person with same pairs goes to the group
    with the fewest same pairs so far (ties: the fewest people, then the
    lowest group); a person with one image, to the group with the fewest
    people (ties: the fewest same pairs, then the lowest group).
    """
    pairs = np.array([len(groups[p]) * (len(groups[p]) - 1) // 2 for p in people], dtype=np.int64)  # (people,)
    order = rng.permutation(len(people))
    order = order[np.argsort(-pairs[order], kind="stable")]
    load = np.zeros((n_groups, 2), dtype=np.int64)                            # (groups, 2) same pairs, people
    dealt = np.empty(len(people), dtype=np.int64)
    for i in order:
        if pairs[i]:                    # a person with same pairs: to the group with the fewest same pairs
            g = min(range(n_groups), key=lambda j: (load[j, 0], load[j, 1], j))
        else:                           # one image only: to the group with the fewest people
            g = min(range(n_groups), key=lambda j: (load[j, 1], load[j, 0], j))
        dealt[i] = g
        load[g] += (pairs[i], 1)
    return dealt


def _draw_pairs(groups, people, n_each, rng) -> tuple:
    """n_each distinct same pairs and n_each distinct different pairs among ``people`` (rules: ``validation_pairs``)."""
    avail = {p: len(groups[p]) * (len(groups[p]) - 1) // 2 for p in people}
    if sum(avail.values()) < n_each:
        raise ValueError(f"n_each: only {sum(avail.values())} distinct same-person pairs exist, asked for {n_each}")
    sizes = np.array([len(groups[p]) for p in people], dtype=np.int64)
    n_diff = (sizes.sum() ** 2 - (sizes ** 2).sum()) // 2
    if n_diff < n_each:
        raise ValueError(f"n_each: only {n_diff} distinct different-person pairs exist, asked for {n_each}")

    same, diff, seen = [], [], set()
    open_people = [p for p in people if avail[p] > 0]
    used = {p: 0 for p in people}
    while len(same) < n_each:
        p = open_people[rng.integers(len(open_people))]
        rows = groups[p]
        i, j = rng.choice(len(rows), size=2, replace=False)
        pair = (int(min(rows[i], rows[j])), int(max(rows[i], rows[j])))
        if pair in seen:
            continue
        seen.add(pair)
        same.append(pair)
        used[p] += 1
        if used[p] == avail[p]:
            open_people.remove(p)
    while len(diff) < n_each:
        pa, pb = rng.choice(len(people), size=2, replace=False)
        ra, rb = groups[people[pa]], groups[people[pb]]
        x, y = int(ra[rng.integers(len(ra))]), int(rb[rng.integers(len(rb))])
        pair = (min(x, y), max(x, y))
        if pair in seen:
            continue
        seen.add(pair)
        diff.append(pair)
    return same, diff
