"""Faces in the users' own pictures: choose the framing rule, find the faces, cut each one's training frame.

The commands (``npface.verify``, ``npface.embed``, ``npface.search``) take
``--frame``:

- ``lfw`` / ``crop``: one face per picture, framed by the fixed rules of
  ``npface.faces`` (an LFW-style frame, or a face crop).
- ``detect``: every face the detector finds (``npface.detect``), main face
  first (the largest, near-ties broken by the detector's score), each cut
  at its calibrated training frame (``npface.framing``), moved onto the
  face by the framing net (``npface.framing_net``). A picture without a
  face has no rows.
- ``auto``: per picture, the first rule that applies:

  1. exactly 250 x 250 pixels: an LFW frame (``lfw``);
  2. the detector is not installed: a face crop (``crop``), as before
     detection existed;
  3. no face found: taken as a face crop (``crop``; tight crops often give
     the cascade too little context);
  4. the main face's box spans at least ``CROP_FILL`` of the picture's
     shorter side: a face crop (``crop``);
  5. otherwise: a face in a larger picture (``detect``).

  Every picture's rule and the reason are reported by the commands.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

from npface.data.folders import open_upright_rgb
from npface.faces import FRAMES as FIXED_FRAMES
from npface.extras import MissingExtra
from npface.faces import LFW_FRAME, USER_ERRORS, CommandError, embed_faces, face_crop, print_error

FRAMES = FIXED_FRAMES + ("detect",)
NO_FACE_STATUS = 3        # the exit status of a command asked for a face a picture does not have
# 'auto' takes a picture as a face crop when its main face's box spans at least this share of the
# shorter side: a crop framed like the model's input has a box of 1 / calibration scale of its side,
# an LFW frame about 0.46 (a 115 px box in 250 px).
CROP_FILL = 0.6

FRAME_HELP = ("how faces are found and framed: 'detect' = every face the OpenCV Haar cascade finds (needs "
              "pip install 'npface[detect]'), each cut at the square the training crop would take around it "
              "(calibrated on LFW landmarks, then moved onto the face by the framing net), main face first; "
              "'lfw' = an LFW-style frame (face centred as in LFW's 250x250 images), cropped with the training "
              "crop LFW_CROP (columns 53..196, rows 73..216 of 250) scaled to the centred square; 'crop' = already "
              "a face crop framed like the model's input, its centred square resized to 112x112; 'auto' = per "
              "picture: 'lfw' for exactly 250x250 pixels, "
              f"else 'detect' when a face is found that spans less than {round(100 * CROP_FILL)}%% of the shorter "
              "side, else 'crop' (also when the detector is not installed or finds no face); the rule used is "
              "reported")


class NoFace(CommandError):
    """A picture has no face (or not the one asked for); commands exit with ``NO_FACE_STATUS``."""


def run_command(prog, work, args):
    """(0, work(args)), or, for an error the user can act on, one line on stderr and (status, None).

    The exit statuses that verify, embed and search share: NO_FACE_STATUS when a picture has no face,
    1 for any other bad input, file or missing extra (``npface.faces.USER_ERRORS``).
    """
    try:
        return 0, work(args)
    except NoFace as e:
        print_error(prog, e)
        return NO_FACE_STATUS, None
    except USER_ERRORS + (MissingExtra,) as e:
        print_error(prog, e)
        return 1, None


@dataclass
class FramedFace:
    """One face ready for the network: crop (S, S, 3) uint8, its index in the picture, detector box and score."""
    crop: np.ndarray
    face: int = 0
    box: Optional[Tuple[float, float, float, float]] = None     # (left, top, width, height), picture pixels
    score: Optional[float] = None


@dataclass
class PictureFaces:
    """The faces of one picture under one rule: ``rule`` ('lfw', 'crop' or 'detect'), why, and the faces."""
    rule: str
    reason: str
    size: Tuple[int, int]                                        # (W, H) after EXIF rotation
    faces: List[FramedFace] = field(default_factory=list)


def _check_frame(frame):
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {', '.join(FRAMES)}, got {frame!r}")


def _fixed(im: Image.Image, rule: str, out: int) -> FramedFace:
    """The one face of the fixed rules, cut exactly as ``npface.faces.read_face`` cuts it."""
    crop = face_crop(rule)
    face = im.resize((out, out), Image.Resampling.BILINEAR, box=crop.pil_box(*im.size))
    return FramedFace(np.asarray(face, dtype=np.uint8))


def _detected(im: Image.Image, faces, out: int, refine: bool = True, framing_net=None) -> List[FramedFace]:
    """Each face cut at its calibrated square, moved by the framing net when ``refine`` (``framing_net``, a
    ``FramingNet``; None: the shipped one, if npface ships one)."""
    from npface.framing import calibration, cut_frame, frame_square
    from npface.framing_net import bundled, refine_square
    cal, net = calibration(), None
    if refine:
        net = framing_net if framing_net is not None else bundled()
    framed = []
    for n, f in enumerate(faces):
        square = frame_square(f.box, cal)
        if net is not None:
            square = refine_square(im, square, net)
        framed.append(FramedFace(cut_frame(im, square, out), n, f.box, f.score))
    return framed


def frame_picture(path, frame: str = "auto", out: int = 112, refine: bool = True,
                  plain_detector: bool = False, framing_net=None) -> PictureFaces:
    """Decode ``path`` (Pillow, EXIF rotation, RGB) and frame its faces under ``frame`` (module docstring).

    ``refine``: move each detected face's square with the framing net
    (``npface.framing_net``) when npface ships one; False keeps the
    calibrated square (for measuring what the net adds); ``framing_net``: a
    ``FramingNet`` to use instead of the shipped one (for measuring another).
    ``plain_detector``: ``npface.detect.detect_faces(..., plain=True)``,
    without its second look and main-face rule (likewise).

    Raises FileNotFoundError for a missing file, CommandError naming the
    file for an unreadable one, and MissingExtra (``npface.detect``) for
    ``detect`` without OpenCV.
    """
    from npface import detect
    _check_frame(frame)
    try:
        im = open_upright_rgb(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # any decoder failure means "unreadable image"
        raise CommandError(f"{path}: cannot read image: {type(exc).__name__}: {exc}") from None
    size = im.size
    if frame in FIXED_FRAMES and frame != "auto":
        return PictureFaces(frame, f"--frame {frame}", size, [_fixed(im, frame, out)])
    if frame == "auto" and size == (LFW_FRAME, LFW_FRAME):
        return PictureFaces("lfw", f"{LFW_FRAME}x{LFW_FRAME} pixels: an LFW frame", size, [_fixed(im, "lfw", out)])
    if frame == "auto" and not detect.detector_available():
        return PictureFaces("crop", f"not {LFW_FRAME}x{LFW_FRAME} and no detector installed "
                                    f"({detect.INSTALL_HINT}): a face crop", size, [_fixed(im, "crop", out)])
    faces = detect.detect_faces(np.asarray(im, dtype=np.uint8), plain=plain_detector)
    if frame == "detect":
        return PictureFaces("detect", "--frame detect", size, _detected(im, faces, out, refine, framing_net))
    if not faces:
        return PictureFaces("crop", "no face found: a face crop", size, [_fixed(im, "crop", out)])
    fill = max(faces[0].width, faces[0].height) / min(size)
    if fill >= CROP_FILL:
        return PictureFaces("crop", f"the face spans {fill:.0%} of the picture: a face crop", size,
                            [_fixed(im, "crop", out)])
    return PictureFaces("detect", f"{len(faces)} face(s) found in a larger picture", size,
                        _detected(im, faces, out, refine, framing_net))


def pick_face(path, picture: PictureFaces, index: Optional[int]) -> FramedFace:
    """The face ``index`` of a picture (None: the first, the main face); NoFace naming the file if absent."""
    if not picture.faces:
        raise NoFace(f"{path}: no face found")
    i = 0 if index is None else index
    if i >= len(picture.faces):
        raise NoFace(f"{path}: has {len(picture.faces)} face(s), no face {i} (faces count from 0, main face first)")
    return picture.faces[i]


@dataclass
class PhotoRun:
    """The faces of M listed pictures, one row per face (N rows), from :func:`embed_pictures`.

    signatures  (N, D) float32
    file_index  (N,) int64, the row's picture (index into the listed files)
    faces       (N,) int64, the face's index in its picture (0 = the main face)
    boxes       (N, 4) float32 (left, top, width, height), NaN for faces framed by a fixed rule
    scores      (N,) float32 detector score, NaN likewise
    rules       (M,) str, each picture's rule ('' for unreadable pictures); reasons (M,) str likewise
    skipped     [(index, relative path, reason)] unreadable pictures
    no_face     [(index, relative path)] readable pictures without a face (``detect``)
    """
    signatures: np.ndarray
    file_index: np.ndarray
    faces: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    rules: list
    reasons: list
    skipped: list
    no_face: list
    n_cached: int = 0
    n_embedded: int = 0


def embed_pictures(loaded, files, relative, frame="auto", flip=False, batch_size=64, threads=None, cache=True,
                   progress=True, views=1) -> PhotoRun:
    """Signatures of every face of ``files`` under ``frame`` (module docstring), in file order, faces in order.

    Pictures framed by a fixed rule ('lfw', 'crop') go through
    ``npface.faces.compute_signatures`` (the per-model signature cache);
    detected faces are embedded directly (not cached: their crops depend on
    the detector and its calibration). Unreadable pictures are listed in
    ``skipped``, pictures without a face in ``no_face``; neither stops the run.
    """
    from npface.data.folders import _Progress
    from npface.faces import CHUNK, compute_signatures
    _check_frame(frame)
    files = [Path(f) for f in files]
    model = loaded.model
    S, D = model.config.input_size, model.config.signature_dim
    m = len(files)
    rules, reasons = [""] * m, [""] * m
    skipped, no_face = [], []
    fixed = {"lfw": [], "crop": []}                     # picture indices per fixed rule
    detected, crops = [], []                            # (picture index, FramedFace) and their crops
    det_sig = []                                        # (n, D) blocks, in ``detected`` order

    def flush():
        if crops:
            det_sig.append(embed_faces(model, np.stack(crops), flip, batch_size, threads, views))
            crops.clear()

    if frame in fixed:
        fixed[frame] = list(range(m))
        rules, reasons = [frame] * m, [f"--frame {frame}"] * m
    else:
        bar = _Progress(progress, m, "finding faces")
        try:
            for i, f in enumerate(files):
                try:
                    pic = frame_picture(f, frame, S)
                except (CommandError, OSError) as exc:
                    skipped.append((i, relative[i], str(exc).split(": ", 1)[-1] if isinstance(exc, CommandError)
                                    else f"cannot read image: {type(exc).__name__}: {exc}"))
                    continue
                rules[i], reasons[i] = pic.rule, pic.reason
                if pic.rule in fixed:
                    fixed[pic.rule].append(i)
                elif not pic.faces:
                    no_face.append((i, relative[i]))
                for face in pic.faces if pic.rule == "detect" else []:
                    detected.append((i, face))
                    crops.append(face.crop)
                    face.crop = None                    # the crop lives in ``crops`` until embedded
                    if len(crops) == CHUNK:
                        flush()
                bar.update(i + 1)
        finally:
            bar.close()
        flush()

    rows = {}                                           # picture index -> list of (face, box, score, signature)
    n_cached = n_embedded = 0
    for rule, idx in fixed.items():
        if not idx:
            continue
        run = compute_signatures(loaded, [files[i] for i in idx], [relative[i] for i in idx], frame=rule, flip=flip,
                                 batch_size=batch_size, threads=threads, cache=cache, progress=progress,
                                 views=views)
        n_cached, n_embedded = n_cached + run.n_cached, n_embedded + run.n_embedded
        skipped += [(idx[k], rel, reason) for k, rel, reason in run.skipped]
        for k, _, _ in run.skipped:
            rules[idx[k]] = reasons[idx[k]] = ""
        for k in np.flatnonzero(run.ok):
            rows[idx[k]] = [(0, None, None, run.signatures[k])]
    sig = np.concatenate(det_sig) if det_sig else np.zeros((0, D), np.float32)   # (n detected, D)
    for (i, face), s in zip(detected, sig):
        rows.setdefault(i, []).append((face.face, face.box, face.score, s))
    n_embedded += len(detected)

    order = [(i, r) for i in sorted(rows) for r in rows[i]]
    nan4 = (np.nan,) * 4
    skipped.sort()
    return PhotoRun(
        signatures=np.array([r[3] for _, r in order], dtype=np.float32).reshape(len(order), D),
        file_index=np.array([i for i, _ in order], dtype=np.int64),
        faces=np.array([r[0] for _, r in order], dtype=np.int64),
        boxes=np.array([nan4 if r[1] is None else r[1] for _, r in order], dtype=np.float32).reshape(-1, 4),
        scores=np.array([np.nan if r[2] is None else r[2] for _, r in order], dtype=np.float32),
        rules=rules, reasons=reasons, skipped=skipped, no_face=no_face, n_cached=n_cached, n_embedded=n_embedded)
