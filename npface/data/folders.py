"""Folders of identities (the LFW layout): listing, decoding, cropping, caching.

Layout: ``root/<identity>/<image>``, one folder per person, e.g. LFW's
``lfw/George_W_Bush/George_W_Bush_0001.jpg``. Optionally a list file keeps
only some people; its format is LFW's ``peopleDevTrain.txt``: the first line
is the number of people, then one ``name<TAB>n_images`` line per person.

Every image is decoded with Pillow, turned upright by its EXIF orientation
tag if it has one, converted to RGB (grayscale, palette,
CMYK and RGBA alike; alpha is dropped), cropped to a fixed square box and
resized to 112x112 (``CropBox``, ``LFW_CROP``). The result is a uint8 array
``images`` (N, 112, 112, 3) RGB, HWC, with ``labels`` (N,) indexing
``identities`` (P,).

Files that cannot be decoded are skipped with one warning and listed in
``FaceDataset.skipped``; a bad file never stops a run.

Decoded arrays are cached as an ``.npy`` file under the user cache folder
(``npface.data.cache``) and opened memory-mapped, read-only, so an epoch never
decodes JPEGs again. The cache key hashes the file list (relative path, size,
modification time of every file) and the crop parameters, so a changed
dataset or crop never reuses a stale cache.

Coordinates (shared with ``npface.data.landmarks``): pixel (0, 0) has its
centre at (0, 0), x is the column, y the row -- dlib's convention, in which a
W-pixel row spans -0.5 .. W - 0.5.
"""
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageOps

from npface.data import cache as _cache

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
CACHE_FORMAT = 1  # bump when the layout or meaning of cached arrays changes

PathLike = Union[str, os.PathLike]
ProgressArg = Union[bool, None, Callable[[int, int], None]]


# --------------------------------------------------------------------------
# The crop
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class CropBox:
    """A square box in a reference frame, resampled to ``out`` x ``out`` pixels.

    The box covers columns ``left .. left + size - 1`` and rows
    ``top .. top + size - 1`` of a ``frame`` x ``frame`` image, i.e. the
    continuous region [left - 0.5, left + size - 0.5] in pixel-centre
    coordinates. Output pixel q (centre at q) sees the frame position::

        p = left - 0.5 + (q + 0.5) * size / out        (the same for x and y)

    An image of another size W x H gets the box scaled by W / frame
    horizontally and H / frame vertically (so a non-square image is
    stretched to a square). Resampling is Pillow's bilinear ``resize``
    with ``box=``, which widens its kernel when shrinking (anti-aliased).
    """
    left: int
    top: int
    size: int
    frame: int = 250
    out: int = 112

    def __post_init__(self):
        for name in ("left", "top", "size", "frame", "out"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"CropBox: {name} must be an integer, got {v!r}")
        if self.size < 1 or self.frame < 1 or self.out < 1:
            raise ValueError(f"CropBox: size, frame and out must be >= 1, got {self.size}, {self.frame}, {self.out}")

    def pil_box(self, width: int, height: int) -> tuple:
        """The box in Pillow's edge coordinates (pixel i spans [i, i+1]) for a ``width`` x ``height`` image."""
        sx, sy = width / self.frame, height / self.frame
        return (self.left * sx, self.top * sy, (self.left + self.size) * sx, (self.top + self.size) * sy)

    def points_to_crop(self, points: np.ndarray) -> np.ndarray:
        """Map points (..., 2) (x, y) from the reference frame to the ``out`` x ``out`` crop, in pixels."""
        points = _points(points, "points")
        origin = np.array([self.left, self.top], dtype=np.float64)
        return (points + 0.5 - origin) * (self.out / self.size) - 0.5

    def points_from_crop(self, points: np.ndarray) -> np.ndarray:
        """Inverse of ``points_to_crop``: (..., 2) crop pixels -> reference-frame pixels."""
        points = _points(points, "points")
        origin = np.array([self.left, self.top], dtype=np.float64)
        return (points + 0.5) * (self.size / self.out) + origin - 0.5

    def widened(self, margin: int) -> "CropBox":
        """The same crop with ``margin`` more output pixels of the picture on every side: an
        (out + 2 margin)-pixel crop whose central out x out pixels sample the frame where this crop does.

        The new box must have whole-pixel corners in the frame (margin x size / out an integer: for
        ``LFW_CROP``, margin a multiple of 7) and stay inside it; otherwise ValueError.
        """
        if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
            raise ValueError(f"margin must be an integer >= 0, got {margin!r}")
        grow, rest = divmod(int(margin) * self.size, self.out)                # frame pixels on every side
        if rest:
            raise ValueError(f"margin {margin}: the widened box would not have whole-pixel corners in the frame "
                             f"(margin x {self.size} / {self.out} must be an integer)")
        if self.left - grow < 0 or self.top - grow < 0 or max(self.left, self.top) + self.size + grow > self.frame:
            raise ValueError(f"margin {margin}: the widened box leaves the {self.frame}-pixel frame")
        return CropBox(self.left - grow, self.top - grow, self.size + 2 * grow, self.frame,
                       self.out + 2 * int(margin))

    def describe(self) -> dict:
        """A JSON-able description (part of the cache key)."""
        return {"left": int(self.left), "top": int(self.top), "size": int(self.size),
                "frame": int(self.frame), "out": int(self.out), "resample": "pillow-bilinear"}


def _points(points, name):
    points = np.asarray(points, dtype=np.float64)
    if points.ndim < 1 or points.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (..., 2) of (x, y) pixels, got shape {points.shape}")
    return points


# The LFW crop, chosen from the statistics of landmarks68.tsv (all 13,233
# images, 250x250 deep-funneled frame; the 9,525 peopleDevTrain images give
# the same numbers to within 0.2 px):
#
#   face extent (mean shape)   x 76.8 .. 173.6 (jaw), y 97.6 (brow top) .. 192.7 (chin)
#                               -> centre (125.2, 145.1), height 95 px, width 97 px
#   eye midpoint               (124.9, 113.4), sd (3.2, 2.4) px
#   chin (point 8)             y 192.7, sd 7.3; 99th percentile 217
#   outer-eye distance         56.5 px, sd 5.4 (about +-10 % in scale)
#
# Box: centre (125, 145) = the centre of the mean face, side 144 px = 1.5 x
# the face height, so columns 53..196, rows 73..216 -- inside the 250 frame,
# no padding needed. The face (brows to chin, jaw to jaw) fills about the
# middle two thirds of the 112x112 crop (scale 112/144 = 0.78: about
# 74 x 75 px), leaving about 18 px of the crop on every side. That margin is
# the room the alignment warp needs: over the peopleDevTrain images the
# fitted warp (``npface.data.landmarks.alignment_thetas``, output -> input)
# has scale 0.87 .. 1.31, rotation -8 .. +7 degrees and shift -5 .. +9 px
# (1st .. 99th percentiles), and the template face region it samples lies
# inside the crop for 98.5 % of the images; the rest are extreme poses and
# fallback detections. A 136 px box drops that to 97.8 %; a 160 px box
# raises it to 99.3 % but shrinks the face to 67 px.
LFW_CROP = CropBox(left=53, top=73, size=144, frame=250, out=112)

# The training crop with 21 px more of the picture on every side (27 px of the frame: columns 26..223, rows
# 46..243, 154 x 154), for the similarity jitter to draw from (``npface.data.sampler.augment``'s ``context``).
# The default jitter (+-8 degrees, +-8 % scale, +-0.06 shift) reaches at most 15.7 px past the 112 crop's edge
# (a corner: 56 px x 1.08 x (cos 8 + sin 8) + 3.4 px - 56 px); the strong one (+-15, +-15 %, +-0.1), 28.5 px.
CONTEXT_MARGIN = 21
LFW_CONTEXT = LFW_CROP.widened(CONTEXT_MARGIN)


# --------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------

def read_people_file(path: PathLike) -> list:
    """Parse an LFW people list (``peopleDevTrain.txt`` format) into [(name, n_images), ...].

    Line 1: the number of people. Then one line per person:
    ``name<TAB>n_images`` (any whitespace separates the two fields; names
    contain no spaces in LFW). Blank lines are ignored. Raises
    FileNotFoundError if the file is missing and ValueError, naming the file
    and line, for a malformed line, a wrong count or a repeated name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"people list not found: {path}")
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines())]
    lines = [(i, ln) for i, ln in lines if ln]
    if not lines:
        raise ValueError(f"{path}: empty people list (expected a count on the first line)")
    first_no, first = lines[0]
    try:
        count = int(first)
    except ValueError:
        raise ValueError(f"{path}:{first_no}: expected the number of people on the first line, got {first!r}") from None
    people, seen = [], set()
    for no, ln in lines[1:]:
        fields = ln.split()
        n = None
        if len(fields) == 2:
            try:
                n = int(fields[1])
            except ValueError:
                n = None
        if n is None or n < 1:
            raise ValueError(f"{path}:{no}: expected 'name<TAB>n_images' with n_images >= 1, got {ln!r}")
        if fields[0] in seen:
            raise ValueError(f"{path}:{no}: person {fields[0]!r} is listed twice")
        seen.add(fields[0])
        people.append((fields[0], n))
    if len(people) != count:
        raise ValueError(f"{path}: first line says {count} people but {len(people)} are listed")
    return people


@dataclass(frozen=True)
class FolderIndex:
    """The files of a folder of identities, before decoding.

    identities  (P,)  person names (folder names), sorted
    files       (N,)  image paths relative to ``root``, '/'-separated, grouped by person, sorted
    labels      (N,)  int64, index into ``identities``
    """
    root: Path
    identities: tuple
    files: tuple
    labels: np.ndarray


def _image_files(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir()
                  if not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def scan_folder(root: PathLike, people: Union[None, PathLike, Sequence[str]] = None) -> FolderIndex:
    """List ``root/<identity>/<image>`` files.

    people: None (every sub-folder that holds images), a list-file path
    (``read_people_file`` format) or a sequence of names. A listed person
    without a folder raises FileNotFoundError naming the folder; a list count
    that differs from the files found gives a warning (the files found are
    used). Image files are recognised by extension (``IMAGE_EXTENSIONS``,
    any case); hidden files and files directly in ``root`` are ignored.
    Raises FileNotFoundError for a missing ``root`` and ValueError when no
    image is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    expected = {}
    source = None
    if people is None:
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    elif isinstance(people, (str, os.PathLike)):
        source = Path(people)
        listed = read_people_file(source)
        expected = dict(listed)
        names = sorted(expected)
    else:
        names = list(people)
        for nm in names:
            if not isinstance(nm, str) or not nm or "/" in nm or nm in (".", ".."):
                raise ValueError(f"people must be a list-file path or a sequence of folder names, got entry {nm!r}")
        if len(set(names)) != len(names):
            raise ValueError("people: a name is given more than once")
        names = sorted(names)

    identities, files, labels, mismatched = [], [], [], []
    for name in names:
        folder = root / name
        if not folder.is_dir():
            where = f"{source}: " if source is not None else ""
            raise FileNotFoundError(f"{where}person {name!r} has no folder {folder}")
        found = _image_files(folder)
        if name in expected and expected[name] != len(found):
            mismatched.append(f"{name} (listed {expected[name]}, found {len(found)})")
        if not found:
            continue
        label = len(identities)
        identities.append(name)
        files.extend(f"{name}/{f}" for f in found)
        labels.extend([label] * len(found))
    if mismatched:
        warnings.warn(f"{source}: {len(mismatched)} people have a different number of images than listed, "
                      f"e.g. {mismatched[0]}; using the files found", stacklevel=2)
    if not files:
        raise ValueError(f"empty dataset: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) "
                         f"in the person folders under {root}")
    return FolderIndex(root, tuple(identities), tuple(files), np.asarray(labels, dtype=np.int64))


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------

def decode_face(path: PathLike, crop: CropBox = LFW_CROP) -> np.ndarray:
    """Decode one image file, convert to RGB, crop and resize: -> (out, out, 3) uint8.

    An EXIF orientation tag is applied first, so the crop is taken from the
    upright image.

    Raises whatever Pillow raises for an unreadable file (``load_folder``
    catches it and skips the file).
    """
    im = open_upright_rgb(path)
    box = crop.pil_box(*im.size)
    out = im.resize((crop.out, crop.out), Image.Resampling.BILINEAR, box=box)
    return np.asarray(out, dtype=np.uint8)  # (out, out, 3)


def open_upright_rgb(path: PathLike) -> Image.Image:
    """Decode one image file with Pillow, turned upright by its EXIF orientation tag, as an RGB image.

    Raises whatever Pillow raises for an unreadable file.
    """
    with Image.open(path) as opened:
        opened.load()
        im = ImageOps.exif_transpose(opened)  # honour an EXIF orientation tag (camera photos); no-op otherwise
        if im.mode != "RGB":
            # Palette images may carry transparency: go through RGBA so it is
            # dropped the same way as an alpha channel (colour kept, alpha ignored).
            im = im.convert("RGBA").convert("RGB") if im.mode == "P" else im.convert("RGB")
        return im.copy() if im is opened else im   # closing the file releases ``opened``'s pixels


class _Progress:
    """Report (done, total): to a callback, through tqdm if installed, or as lines on stderr."""

    def __init__(self, progress: ProgressArg, total: int, desc: str):
        self.total, self.desc, self.callback, self.bar = total, desc, None, None
        self.t0, self.step = time.perf_counter(), max(-(-total // 10), 1)
        self.next_print = self.step
        if callable(progress):
            self.callback = progress
        elif progress:
            try:
                from tqdm import tqdm  # optional
                self.bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr)
            except ImportError:
                self.callback = self._print
        else:
            self.callback = None

    def _print(self, done, total):
        """A line on stderr at every tenth of the work and at the end."""
        if done >= min(self.next_print, total):
            rate = done / max(time.perf_counter() - self.t0, 1e-9)
            print(f"{self.desc}: {done}/{total} ({100 * done / max(total, 1):.0f} %, {rate:.0f} img/s)",
                  file=sys.stderr, flush=True)
            self.next_print += self.step

    def update(self, done):
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        elif self.callback is not None:
            self.callback(done, self.total)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _decode_into(out: np.ndarray, root: Path, files, crop, progress):
    """Decode ``files`` into consecutive rows of ``out`` (N, out, out, 3); return (kept, skipped)."""
    kept, skipped = [], []
    bar = _Progress(progress, len(files), f"decoding {root}")
    try:
        for i, rel in enumerate(files):
            try:
                out[len(kept)] = decode_face(root / rel, crop)
                kept.append(i)
            except Exception as exc:  # any decoder failure means "unreadable file": skip, never crash
                skipped.append((rel, f"{type(exc).__name__}: {exc}"))
            bar.update(i + 1)
    finally:
        bar.close()
    return kept, skipped


# --------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------

@dataclass
class FaceDataset:
    """Decoded, cropped faces of a folder of identities.

    images      (N, out, out, 3) uint8 RGB; a read-only memory map when cached
    labels      (N,) int64, index into ``identities``
    identities  (P,) person names, sorted; every one has >= 1 image
    files       (N,) image paths relative to ``root``
    skipped     ((file, reason), ...) files that could not be decoded
    """
    root: Path
    crop: CropBox
    identities: tuple
    files: tuple
    labels: np.ndarray
    images: np.ndarray
    skipped: tuple = ()
    cache_file: Optional[Path] = None
    counts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.counts = np.bincount(self.labels, minlength=len(self.identities)).astype(np.int64)  # (P,)

    def __len__(self):
        return len(self.files)

    def indices_of(self, names: Sequence[str]) -> np.ndarray:
        """(M,) int64 indices of the images of the people ``names`` (sorted by index)."""
        pos = {n: i for i, n in enumerate(self.identities)}
        missing = [n for n in names if n not in pos]
        if missing:
            raise ValueError(f"names: {len(missing)} people are not in the dataset, e.g. {missing[0]!r}")
        want = np.zeros(len(self.identities), dtype=bool)
        want[[pos[n] for n in names]] = True
        return np.flatnonzero(want[self.labels]).astype(np.int64)


def _nothing_decoded(index: FolderIndex, skipped) -> ValueError:
    return ValueError(f"empty dataset: none of the {len(index.files)} image files under {index.root} could be "
                      f"decoded, e.g. {skipped[0][0]} ({skipped[0][1]})")


def _finish(index: FolderIndex, crop, kept, skipped, images, cache_file):
    """Drop skipped files (and people left without images), relabel, warn once."""
    if len(kept) == 0:
        raise _nothing_decoded(index, skipped)
    kept = np.asarray(kept, dtype=np.int64)
    files = tuple(index.files[i] for i in kept)
    old = index.labels[kept]
    present = np.unique(old)
    relabel = np.full(len(index.identities), -1, dtype=np.int64)
    relabel[present] = np.arange(len(present))
    identities = tuple(index.identities[i] for i in present)
    if skipped:
        lost = len(index.identities) - len(present)
        extra = f"; {lost} people lost all their images" if lost else ""
        warnings.warn(f"skipped {len(skipped)} unreadable image file(s) under {index.root}, e.g. "
                      f"{skipped[0][0]} ({skipped[0][1]}){extra}", stacklevel=3)
    return FaceDataset(index.root, crop, identities, files, relabel[old], images, tuple(skipped), cache_file)


def dataset_key(index: FolderIndex, crop: CropBox) -> str:
    """Cache key: hash of every file's (relative path, size, mtime_ns) and of the crop."""
    entries = []
    for rel in index.files:
        st = os.stat(index.root / rel)
        entries.append([rel, st.st_size, st.st_mtime_ns])
    return _cache.cache_key({"kind": "faces", "format": CACHE_FORMAT, "crop": crop.describe(), "files": entries})


def _load_cached(npy: Path, meta_path: Path, key: str, crop: CropBox):
    """Return (meta, memmap) if a complete, matching cache entry exists, else None."""
    if not (npy.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        images = np.load(npy, mmap_mode="r")
    except (OSError, ValueError) as exc:
        warnings.warn(f"ignoring unreadable cache entry {npy} ({exc}); decoding again", stacklevel=3)
        return None
    ok = (isinstance(meta, dict) and meta.get("key") == key and isinstance(meta.get("kept"), list)
          and isinstance(meta.get("skipped"), list) and images.dtype == np.uint8
          and images.shape == (len(meta["kept"]), crop.out, crop.out, 3))
    if not ok:
        warnings.warn(f"ignoring inconsistent cache entry {npy}; decoding again", stacklevel=3)
        return None
    return meta, images


def load_folder(root: PathLike, people: Union[None, PathLike, Sequence[str]] = None,
                crop: CropBox = LFW_CROP, cache: bool = True, progress: ProgressArg = True) -> FaceDataset:
    """List, decode, crop and cache a folder of identities (see the module docstring).

    root: the folder holding one sub-folder per person. people: see
    ``scan_folder``. crop: the box and output size (``LFW_CROP`` for LFW's
    250x250 images). cache: keep decoded images in
    ``cache_dir()/faces-<key>.npy`` (+ ``.json``) and memory-map them; with
    False, decode into memory every time. progress: True prints progress
    (tqdm if installed, else a line per 10 % on stderr), False is silent,
    or a callable ``progress(done, total)``.

    Returns a FaceDataset; ``images`` is (N, crop.out, crop.out, 3) uint8.
    """
    if not isinstance(crop, CropBox):
        raise ValueError(f"crop must be a CropBox, got {type(crop).__name__}")
    index = scan_folder(root, people)
    shape = (crop.out, crop.out, 3)
    if not cache:
        buf = np.empty((len(index.files),) + shape, dtype=np.uint8)  # (N, out, out, 3)
        kept, skipped = _decode_into(buf, index.root, index.files, crop, progress)
        return _finish(index, crop, kept, skipped, buf[:len(kept)], None)

    key = dataset_key(index, crop)
    folder = _cache.cache_dir()
    npy, meta_path = folder / f"faces-{key[:40]}.npy", folder / f"faces-{key[:40]}.json"
    hit = _load_cached(npy, meta_path, key, crop)
    if hit is not None:
        meta, images = hit
        skipped = [tuple(s) for s in meta["skipped"]]
        return _finish(index, crop, meta["kept"], skipped, images, npy)

    # Decode into a temporary full-size memory map; then publish exactly the
    # kept rows under the final name (renamed into place, so readers never
    # see a partial file), and the metadata last: a metadata file implies a
    # complete array.
    result = {}

    def write_full(tmp):
        full = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(index.files),) + shape)
        result["kept"], result["skipped"] = _decode_into(full, index.root, index.files, crop, progress)
        n = len(result["kept"])
        if n == 0:  # nothing to cache; atomic_write removes the temporary file
            raise _nothing_decoded(index, result["skipped"])
        full.flush()
        if n < len(index.files):  # shrink: rewrite only the decoded rows
            part = Path(str(tmp) + ".part")
            try:
                small = np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=(n,) + shape)
                small[:] = full[:n]
                small.flush()
                del small
                os.replace(part, tmp)
            finally:
                part.unlink(missing_ok=True)
        del full

    _cache.atomic_write(npy, write_full)
    meta = {"key": key, "root": str(index.root), "crop": crop.describe(), "kept": result["kept"],
            "skipped": [list(s) for s in result["skipped"]]}
    _cache.atomic_write_text(meta_path, json.dumps(meta))
    images = np.load(npy, mmap_mode="r")
    return _finish(index, crop, result["kept"], result["skipped"], images, npy)


def load_lfw(lfw_dir: PathLike, people: Optional[str] = "peopleDevTrain.txt", crop: CropBox = LFW_CROP,
             cache: bool = True, progress: ProgressArg = True) -> FaceDataset:
    """Load LFW from its folder (holding ``lfw/`` and the list files).

    people: a list-file name inside ``lfw_dir`` (default ``peopleDevTrain.txt``,
    the only people to train and tune on) or None for all 5,749 people.
    """
    lfw_dir = Path(lfw_dir)
    if not lfw_dir.is_dir():
        raise FileNotFoundError(f"LFW folder not found: {lfw_dir}")
    plist = None if people is None else lfw_dir / people
    return load_folder(lfw_dir / "lfw", plist, crop=crop, cache=cache, progress=progress)


# --------------------------------------------------------------------------
# Train / validation split by person
# --------------------------------------------------------------------------

def split_identities(names: Sequence[str], val_fraction: float = 0.1, seed: int = 0) -> tuple:
    """Split people into (train, val) name tuples, disjoint by person, deterministic by ``seed``.

    The names are sorted first (so the input order does not matter), shuffled
    with ``np.random.default_rng(seed)``, and the first
    ``round(val_fraction * P)`` go to validation. Both tuples come back sorted.
    Default: 10 % of the people held out.
    """
    names = list(names)
    if len(set(names)) != len(names):
        raise ValueError("names: a name is given more than once")
    names = sorted(names)
    if not (isinstance(val_fraction, (float, int)) and 0.0 <= val_fraction < 1.0):
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    perm = np.random.default_rng(seed).permutation(len(names))
    n_val = int(round(val_fraction * len(names)))
    val = sorted(names[i] for i in perm[:n_val])
    train = sorted(names[i] for i in perm[n_val:])
    return tuple(train), tuple(val)
