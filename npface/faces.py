"""From image files to signatures: the one place that turns a face image file into model input.

Every command that reads images (``npface.eval``, ``npface.verify``,
``npface.embed``) goes through :func:`read_face`, which crops and resizes
exactly as training does (``npface.data.folders.decode_face``: EXIF
orientation applied, converted to RGB, a square box resampled bilinearly to
112 x 112). The pixel normalisation (uint8 v -> (v / 255 - 0.5) / 0.5) is
``FaceModel.preprocess``, which both training and ``FaceModel.embed`` call,
so nothing here repeats it.

Framing rules (``frame=``)
--------------------------
A face must reach the network framed as in training: the LFW crop
(``LFW_CROP``: columns 53..196, rows 73..216 of the 250 x 250 LFW frame),
in which the face (brows to chin, jaw to jaw) fills about the middle two
thirds of the 112 x 112 crop.

- ``"lfw"``: the image is an LFW-style frame (face centred, as LFW's
  250 x 250 images are). Its centred square is cropped with the LFW box
  scaled to that square's side. For a 250 x 250 image this is exactly
  ``LFW_CROP``; a 500 x 500 frame gets the box doubled; a non-square image
  loses its excess width or height evenly on both sides (never stretched).
- ``"crop"``: the image is already a face crop framed like the model's input
  (face centred, brows to chin about two thirds of the height, e.g. a
  112 x 112 crop saved from LFW). Its centred square is resized to 112 x 112.
- ``"auto"``: ``"lfw"`` for an image of exactly 250 x 250 pixels (the LFW
  frame), ``"crop"`` for any other size. The size is taken after the EXIF
  rotation. The commands' ``--frame auto`` (``npface.photos``) adds face
  detection to this rule and falls back to it without a detector.

``npface.eval`` reads LFW-layout folders and always uses ``"lfw"``.

Test-time flip
--------------
With ``flip=True`` the signature of an image is the AVERAGE of the
signatures of its crop and of the crop's mirror image (left-right)::

    s = (e + e_flip) / 2

i.e. the sum of the two, normalised by their count. It is not
L2-normalised: the learned threshold theta is an absolute squared distance
(eq. 1-2), fitted for signatures at the scale the network produces, and an
average of two such signatures stays at that scale, whereas rescaling to unit
length would make theta meaningless. The LFW box is centred on the frame's
middle column (columns 53..196 of 0..249), so mirroring the crop equals
cropping the mirrored frame.

Test-time views
---------------
With ``views=5`` the signature of an image is the average over five views
of its crop: the crop itself and the crop shifted by ``VIEW_SHIFT_PX``
pixels left, right, up and down (the pixels shifted in are black). The
signatures change with where exactly the face sits in the crop, and a
detector frames a face to within about 3 pixels of the training crop
(``docs/PHOTOS.md``); averaging over shifts of that size makes a signature
depend less on it. Like the flip, it is an average at the network's own
scale, so the learned threshold keeps its meaning; with ``flip`` too, each
view is averaged with its mirror image (2 x 5 signatures per face).
``views=1`` (the default) is the crop alone.

Signature cache
---------------
Signatures are cached per model under ``cache_dir()/signatures/`` in one
``.npz`` store per (model file, framing rule, flip, views): its name is a
hash of the SHA-256 of the model file's bytes, the crop description, the
flip flag and the number of views. Inside, each signature is keyed by a hash of the image's path relative
to the folder it was listed from, its size and its modification time (ns),
so an edited image is embedded again, and a moved dataset folder keeps its
cache. Stores are written atomically (temporary file, then rename); a store
that cannot be read is ignored with a warning and rebuilt.

Cached signatures were computed with whatever thread count the first run
used; the kernels' float rounding depends on it slightly (differences of the
order of float32 epsilon), far below anything that changes a decision.
"""
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from npface import __version__
from npface.data import cache as _cache
from npface.data.folders import IMAGE_EXTENSIONS, LFW_CROP, CropBox, _Progress, decode_face


class CommandError(Exception):
    """A user error in one of the commands (eval, verify, embed), reported as one line on stderr."""


# what the commands report as a one-line error instead of a traceback
USER_ERRORS = (CommandError, FileNotFoundError, ValueError, OSError)


def check_common_args(parser, args):
    """The checks eval, verify and embed share: --threads (and --batch-size where the command has it)."""
    from npface.threads import check_threads
    if getattr(args, "batch_size", 1) < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        check_threads(args.threads)
    except ValueError as e:
        parser.error(f"--threads: {e}")


def print_error(prog, error):
    """Print ``error`` as one line on stderr, prefixed by the command's name."""
    import sys
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)


FRAMES = ("auto", "lfw", "crop")
LFW_FRAME = 250                  # the side of an LFW image, in pixels
SIGNATURE_CACHE_FORMAT = 1       # bump when the layout or meaning of a store changes
CHUNK = 256                      # images decoded and embedded at a time (about 10 MB of crops)

__all__ = [
    "FRAMES", "CentredSquareBox", "LoadedModel", "SignatureRun", "compute_signatures", "embed_faces",
    "face_crop", "file_sha256", "find_images", "open_model", "read_face", "write_output",
]


# --------------------------------------------------------------------------
# Framing and decoding
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class CentredSquareBox(CropBox):
    """A ``CropBox`` placed in the image's centred square instead of stretched over the whole image.

    For a W x H image let s = min(W, H); the centred square spans
    [(W - s) / 2, (W + s) / 2] x [(H - s) / 2, (H + s) / 2] (Pillow edge
    coordinates). The box (``left``, ``top``, ``size`` in a ``frame`` x
    ``frame`` reference) is scaled by s / frame and placed in that square.
    For a square image this is ``CropBox.pil_box`` exactly; a non-square
    image is never stretched. ``auto_crop``: for images that are not exactly
    ``frame`` x ``frame``, use the whole centred square instead of the box
    (the "auto" rule of the module docstring).
    """
    auto_crop: bool = False

    def pil_box(self, width: int, height: int) -> tuple:
        s = min(width, height)
        x0, y0 = (width - s) / 2, (height - s) / 2
        if self.auto_crop and (width, height) != (self.frame, self.frame):
            return (x0, y0, x0 + s, y0 + s)
        k = s / self.frame
        return (x0 + self.left * k, y0 + self.top * k, x0 + (self.left + self.size) * k,
                y0 + (self.top + self.size) * k)

    def describe(self) -> dict:
        d = super().describe()
        d["placement"] = "centred-square"
        d["auto_crop"] = bool(self.auto_crop)
        return d


def face_crop(frame: str = "auto") -> CentredSquareBox:
    """The crop box of a framing rule (``"auto"``, ``"lfw"`` or ``"crop"``; see the module docstring)."""
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {', '.join(FRAMES)}, got {frame!r}")
    if frame == "crop":                                # the whole (centred square of the) image
        return CentredSquareBox(left=0, top=0, size=1, frame=1, out=LFW_CROP.out)
    return CentredSquareBox(left=LFW_CROP.left, top=LFW_CROP.top, size=LFW_CROP.size, frame=LFW_CROP.frame,
                            out=LFW_CROP.out, auto_crop=(frame == "auto"))


def read_face(path, frame: str = "auto") -> np.ndarray:
    """Decode one image file into model input: -> (112, 112, 3) uint8 RGB.

    The crop follows ``frame`` (see the module docstring); decoding, EXIF
    orientation, RGB conversion and resampling are ``decode_face``'s, the
    same as in training. Raises FileNotFoundError for a missing file and
    whatever Pillow raises for an unreadable one.
    """
    return decode_face(path, face_crop(frame))


def find_images(inputs: Sequence, recursive: bool = True) -> Tuple[Path, List[Path], List[str]]:
    """List the image files named by ``inputs`` (files and folders), in argument order.

    A folder contributes every file below it (recursively) whose extension
    is an image extension (``IMAGE_EXTENSIONS``, any case), sorted by
    relative path; hidden files and folders (names starting with ".") are
    skipped. A file named explicitly is always kept, whatever its extension
    (an unreadable one is skipped later with a warning). A file listed twice
    is kept once.

    Returns:
        ``(root, files, relative)``: ``root`` the deepest folder that holds
        every input (absolute; symbolic links are not resolved), ``files``
        (N,) the paths, and ``relative`` (N,) each file's path relative to
        ``root``, '/'-separated.

    Raises:
        FileNotFoundError: for an input that does not exist.
        ValueError: when there are no inputs.
    """
    if not inputs:
        raise ValueError("inputs: give at least one image file or folder")
    files, seen, anchors = [], set(), []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            anchors.append(_absolute(item))
            found = []
            for dirpath, dirnames, filenames in os.walk(item):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found += [Path(dirpath) / f for f in filenames
                          if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
            found.sort(key=lambda p: p.relative_to(item).as_posix())
        elif item.exists():
            anchors.append(_absolute(item).parent)
            found = [item]
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    root = Path(os.path.commonpath([str(a) for a in anchors]))
    relative = [_absolute(p).relative_to(root).as_posix() for p in files]
    return root, files, relative


def _absolute(path: Path) -> Path:
    """An absolute, normalised path that keeps symbolic links (so linked files stay below their folder)."""
    return Path(os.path.abspath(path))


def write_output(path, write) -> Path:
    """Write a user's output file atomically (``atomic_write``: flushed, renamed into place, with the
    permissions of a file opened normally); ``write(tmp)`` fills the temporary file."""
    return _cache.atomic_write(Path(path), write)


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class LoadedModel:
    """A model with the file it came from (``sha256`` keys the signature cache)."""
    model: object            # npface.model.FaceModel, or npface.onnx_backend.OnnxModel
    path: Path
    sha256: str

    def describe(self) -> dict:
        """JSON-able: path, hash, threshold and provenance."""
        return {"path": str(self.path), "sha256": self.sha256, "threshold": self.model.threshold,
                "provenance": self.model.provenance}


def open_model(path=None, onnx=None) -> LoadedModel:
    """Load a model file (None: the pretrained model shipped with npface) and hash its bytes.

    With ``onnx``, a path to an exported ``.onnx`` file, the model is that file
    run by ONNX Runtime instead (``npface.onnx_backend``; ``path`` must then be
    None). Raises FileNotFoundError, ValueError or CommandError with a one-line
    message (see ``npface.model.load`` and ``npface.onnx_backend.load_onnx``).
    """
    if onnx is not None:
        if path is not None:
            raise CommandError("give either a model file (.npz) or an ONNX file, not both")
        from npface.onnx_backend import load_onnx
        from npface.extras import MissingExtra
        try:
            return LoadedModel(load_onnx(onnx), Path(onnx), file_sha256(onnx))
        except MissingExtra as e:
            raise CommandError(str(e)) from None
    from npface.model import PRETRAINED_PATH, load
    model = load(path)
    path = Path(PRETRAINED_PATH if path is None else path)
    return LoadedModel(model, path, file_sha256(path))


# --------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------

VIEWS = (1, 5)            # the test-time view counts ``embed_faces`` takes (module docstring)
VIEW_SHIFT_PX = 3         # the shift of the four shifted views, pixels of the S x S crop
# The commands' help for the two test-time averages (npface.verify, embed, eval)
FLIP_HELP = ("test-time flip: each signature is the average of those of the crop and its mirror image, "
             "(e + e_flip) / 2, which keeps the scale the learned threshold was trained for")
VIEWS_HELP = (f"test-time views: 5 averages each signature over the crop and four copies shifted by "
              f"{VIEW_SHIFT_PX} px (left, right, up, down), which makes it depend less on where exactly the face "
              "sits in its frame (a detector's framing is off by about that much); 5 times the work (default 1: the "
              "crop alone)")


def check_views(views) -> int:
    """Return ``views`` if it is one of ``VIEWS``, else raise ValueError."""
    if isinstance(views, bool) or views not in VIEWS:
        raise ValueError(f"views must be one of {', '.join(map(str, VIEWS))}, got {views!r}")
    return int(views)


def shifted_views(images: np.ndarray, views: int) -> np.ndarray:
    """images (N, S, S, 3) -> (views * N, S, S, 3): the crops, then (views = 5) the crops shifted by
    VIEW_SHIFT_PX to the right, left, down and up, black where the shift leaves no pixel."""
    if check_views(views) == 1:
        return images
    k = VIEW_SHIFT_PX
    out = np.zeros((5,) + images.shape, dtype=images.dtype)              # (5, N, S, S, 3)
    out[0] = images
    out[1][:, :, k:] = images[:, :, :-k]                                 # content moves right
    out[2][:, :, :-k] = images[:, :, k:]                                 # left
    out[3][:, k:] = images[:, :-k]                                       # down
    out[4][:, :-k] = images[:, k:]                                       # up
    return out.reshape((-1,) + images.shape[1:])


def embed_faces(model, images: np.ndarray, flip: bool = False, batch_size: int = 64, threads=None,
                views: int = 1) -> np.ndarray:
    """Signatures (N, D) float32 of face crops images (N, S, S, 3) uint8.

    With ``flip``, each signature is (e + e_flip) / 2, e_flip being the
    signature of the left-right mirror of the crop; with ``views=5``, the
    average over the crop and four shifted copies (``shifted_views``), each
    with its mirror if ``flip`` (module docstring). ``images`` is not modified.
    """
    if check_views(views) == 1 and not flip:
        return model.embed(images, batch_size=batch_size, threads=threads)
    n = len(images)
    stack = shifted_views(images, views)                                 # (V N, S, S, 3)
    if flip:
        stack = np.concatenate([stack, stack[:, :, ::-1]])              # (2 V N, ...): then their mirrors
    sig = model.embed(stack, batch_size=batch_size, threads=threads)    # (2 V N, D) or (V N, D)
    if views == 1:                                                       # flip alone: exactly (e + e_flip) / 2
        return ((sig[:n] + sig[n:]) * np.float32(0.5)).astype(np.float32)
    return sig.reshape(-1, n, sig.shape[1]).mean(axis=0, dtype=np.float64).astype(np.float32)


@dataclass
class SignatureRun:
    """The outcome of :func:`compute_signatures` for M listed images.

    signatures  (M, D) float32; rows of skipped images are NaN
    ok          (M,) bool, False for the skipped images
    skipped     [(index, relative path, reason), ...] images that could not be read
    """
    signatures: np.ndarray
    ok: np.ndarray
    skipped: list
    n_cached: int = 0
    n_embedded: int = 0
    seconds: dict = field(default_factory=dict)   # "decode", "embed", "cache", "total" (of this call)
    cache_file: Optional[Path] = None

    def timing(self) -> dict:
        """JSON-able timing in seconds ("signatures" is this call's total), with milliseconds per embedded image.

        ``ms_per_embedded_image`` is (decode + embed) / images embedded; None when nothing was embedded.
        """
        out = {("signatures" if k == "total" else k): round(v, 4) for k, v in self.seconds.items()}
        out["ms_per_embedded_image"] = (round(1000 * (self.seconds.get("decode", 0) + self.seconds.get("embed", 0))
                                              / self.n_embedded, 3) if self.n_embedded else None)
        return out


def _entry_key(rel: str, st: os.stat_result) -> str:
    return _cache.cache_key([rel, int(st.st_size), int(st.st_mtime_ns)])


def _store_path(model_sha256: str, crop: CropBox, flip: bool, views: int = 1) -> Tuple[Path, dict]:
    description = {"kind": "signatures", "format": SIGNATURE_CACHE_FORMAT, "model_sha256": model_sha256,
                   "crop": crop.describe(), "flip": bool(flip)}
    if views != 1:                                      # (stores made before views existed keep their names)
        description["views"] = int(views)
    key = _cache.cache_key(description)
    return _cache.cache_dir() / "signatures" / f"{key[:40]}.npz", description


def _read_store(path: Path, description: dict, dim: int) -> dict:
    """{entry key: signature (D,)} from a store, or {} (with a warning) if it is absent or unusable."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys, sig = npz["keys"], npz["signatures"]                     # (M,), (M, D)
            meta = json.loads(str(npz["metadata.json"]))
    except (OSError, ValueError, KeyError, EOFError) as exc:
        warnings.warn(f"ignoring unreadable signature cache {path} ({exc}); embedding again", stacklevel=3)
        return {}
    if (meta.get("description") != description or keys.ndim != 1 or sig.dtype != np.float32
            or sig.shape != (len(keys), dim)):
        warnings.warn(f"ignoring inconsistent signature cache {path}; embedding again", stacklevel=3)
        return {}
    return dict(zip(keys.tolist(), sig))


def _write_store(path: Path, description: dict, new: dict, dim: int) -> None:
    """Merge ``new`` entries into the store at ``path`` (re-read first, so concurrent runs add up)."""
    entries = _read_store(path, description, dim)
    entries.update(new)
    keys = np.array(list(entries), dtype=str)                                  # (M,)
    sig = np.stack(list(entries.values())).astype(np.float32, copy=False)      # (M, D)
    meta = np.array(json.dumps({"description": description, "npface_version": __version__}))

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=keys, signatures=sig, **{"metadata.json": meta})

    _cache.atomic_write(path, write)


def compute_signatures(loaded: LoadedModel, files: Sequence, relative: Optional[Sequence[str]] = None, *,
                       frame: str = "auto", flip: bool = False, batch_size: int = 64, threads=None,
                       cache: bool = True, progress=True, views: int = 1) -> SignatureRun:
    """Signatures of image files, each decoded and embedded once, batched, cached per model.

    Args:
        loaded: the model and its file (``open_model``).
        files: (M,) image paths, distinct.
        relative: (M,) the paths as keyed in the cache (relative to the
            folder they were listed from); default: each file's resolved
            absolute path.
        frame: the framing rule (``FRAMES``).
        flip: average with the mirror image's signature (module docstring).
        views: 1, or 5 to average over shifted views of each crop (module docstring).
        batch_size, threads: passed to ``FaceModel.embed``.
        cache: read and update the signature store of this model.
        progress: True prints progress on stderr (tqdm if installed, else a
            line per tenth), False is silent, or a callable (done, total).

    Unreadable or missing files do not stop the run: they are listed in
    ``skipped`` and their rows are NaN; the caller decides what that means.
    """
    t_start = time.perf_counter()
    crop = face_crop(frame)
    views = check_views(views)
    files = [Path(f) for f in files]
    if relative is None:
        relative = [str(f.resolve()) for f in files]
    if len(relative) != len(files):
        raise ValueError(f"relative must name every file: {len(relative)} names for {len(files)} files")
    model = loaded.model
    dim = model.config.signature_dim
    S = model.config.input_size
    if crop.out != S:
        raise ValueError(f"the model takes {S}x{S} images but faces are cropped to {crop.out}x{crop.out}")
    m = len(files)
    signatures = np.full((m, dim), np.nan, dtype=np.float32)                  # (M, D)
    ok = np.zeros(m, dtype=bool)                                              # (M,)
    skipped, seconds = [], {"decode": 0.0, "embed": 0.0, "cache": 0.0}

    # Stat every file: its key, or the reason it is skipped.
    keys = [None] * m
    for i, (f, rel) in enumerate(zip(files, relative)):
        try:
            st = os.stat(f)
        except FileNotFoundError:
            skipped.append((i, rel, "file not found"))
            continue
        except OSError as exc:
            skipped.append((i, rel, f"cannot stat: {exc.strerror or exc}"))
            continue
        if not os.path.isfile(f):
            skipped.append((i, rel, "not a regular file"))
            continue
        keys[i] = _entry_key(rel, st)

    store_file, description, stored = None, None, {}
    if cache:
        t = time.perf_counter()
        store_file, description = _store_path(loaded.sha256, crop, flip, views)
        stored = _read_store(store_file, description, dim)
        seconds["cache"] += time.perf_counter() - t
    todo = []
    for i, k in enumerate(keys):
        if k is None:
            continue
        if k in stored:
            signatures[i] = stored[k]
            ok[i] = True
        else:
            todo.append(i)
    n_cached = int(ok.sum())

    new = {}
    bar = _Progress(progress if todo else False, len(todo), "embedding faces")
    try:
        buf = np.empty((min(CHUNK, max(len(todo), 1)), S, S, 3), dtype=np.uint8)   # (chunk, S, S, 3)
        for start in range(0, len(todo), CHUNK):
            t = time.perf_counter()
            rows = []
            for i in todo[start:start + CHUNK]:
                try:
                    buf[len(rows)] = decode_face(files[i], crop)
                    rows.append(i)
                except Exception as exc:  # any decoder failure means "unreadable image": skip it, never crash
                    skipped.append((i, relative[i], f"cannot read image: {type(exc).__name__}: {exc}"))
            seconds["decode"] += time.perf_counter() - t
            if rows:
                t = time.perf_counter()
                sig = embed_faces(model, buf[:len(rows)], flip, batch_size, threads, views)   # (n, D)
                seconds["embed"] += time.perf_counter() - t
                signatures[rows] = sig
                ok[rows] = True
                new.update({keys[i]: signatures[i] for i in rows})
            bar.update(min(start + CHUNK, len(todo)))
    except KeyboardInterrupt:
        if not (cache and new):
            raise
        try:
            _write_store(store_file, description, new, dim)         # what is done is kept for the next run
        except OSError as e:
            raise KeyboardInterrupt(f"the {len(new)} faces embedded so far could not be cached ({e})") from None
        raise KeyboardInterrupt(f"the {len(new)} of {len(todo)} faces embedded so far are cached; run the same "
                                f"command again to go on from them") from None
    finally:
        bar.close()
    if cache and new:
        t = time.perf_counter()
        _write_store(store_file, description, new, dim)
        seconds["cache"] += time.perf_counter() - t
    skipped.sort()
    seconds["total"] = time.perf_counter() - t_start
    return SignatureRun(signatures, ok, skipped, n_cached, len(new), seconds, store_file)
