"""Signatures of many face images: ``python -m npface.embed DIR_OR_FILES... --out signatures.npz``.

    python -m npface.embed photos/ --out photos.npz --model m.npz
    python -m npface.embed a.jpg b.jpg c.png --out three.npz --model m.npz --no-flip

Folders are searched recursively for image files (by extension, any case;
hidden files and folders are skipped); files named explicitly are always
tried. Each image is cropped as in training (``npface.faces.read_face``,
framing rule ``--frame``) and embedded with its mirror image, the two
signatures averaged (``--no-flip``: the image alone).

With ``--frame detect`` every face the detector finds is a row (main face
first within a picture, ``npface.detect``); with ``--frame auto`` (the default) each picture
gets the rule that fits it (``npface.photos``): an LFW frame, a face crop,
or detection in a larger picture.

The output is an ``.npz`` (written atomically, loadable with
``np.load(path, allow_pickle=False)``) holding, one row per face:

- ``signatures`` (N, D) float32 (D = 128);
- ``paths`` (N,) str: each face's picture, relative to ``root``,
  '/'-separated, in the order found (argument order; sorted within a folder);
- ``faces`` (N,) int64: the face's index in its picture (0 = the main face;
  always 0 for a picture framed by the 'lfw' or 'crop' rule);
- ``boxes`` (N, 4) float32: the detector's box (left, top, width, height) in
  picture pixels, NaN when the face was not detected (fixed rules);
- ``frames`` (N,) str: the rule that framed the face's picture;
- ``metadata.json``: a 0-d str array of JSON: the model's path, SHA-256,
  threshold and provenance, flip, views, ``--frame``, ``root`` (the deepest folder
  holding every input, absolute), the skipped files and their reasons, the
  pictures without a face, each picture's rule and the reason for it.

and, beside it, a CSV with the same rows (``OUT.csv`` for ``OUT.npz``):
``path,face,left,top,width,height,s0,...,s127`` (box fields empty when not
detected).

Two signatures ``a``, ``b`` are the same person when
``((a - b) ** 2).sum() < metadata["model"]["threshold"]``.

Unreadable files and pictures without a face are skipped with a warning
and counted. The run fails when no picture can be read (exit status 1) or
when no readable picture has a face (exit status 3).
"""
import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from npface import __version__
from npface.cli import output_file, run_main
from npface.data.cache import read_npz
from npface.faces import CommandError, check_common_args, find_images, open_model, write_output
from npface.photos import NO_FACE_STATUS, NoFace, embed_pictures, run_command
from npface.verify import add_model_options

PROG = "python -m npface.embed"
METADATA_KEY = "metadata.json"
MAX_WARNINGS = 10           # skipped files named one by one; the rest are counted



def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compute the signatures of the faces in pictures and save them, one row per face, to an "
                    ".npz file with arrays 'signatures' (N, 128) float32, 'paths' (N,) str (relative to the "
                    "deepest folder holding all inputs), 'faces' (N,) the face's index in its picture (0 = "
                    "the main face), 'boxes' (N, 4) the detector's box (left, top, width, height; NaN when not "
                    "detected), 'frames' (N,) the framing rule, and 'metadata.json' (model path, hash, threshold "
                    "and provenance; flip; views; frame; skipped files; pictures without a face), loadable with "
                    "allow_pickle=False; and the same rows as OUT.csv beside it (path,face,left,top,width,height,"
                    "s0..s127). Unreadable files and pictures without a face are skipped with a warning. Exit "
                    f"status: 0 done, 1 error (nothing readable, bad model, OpenCV missing for --frame detect), "
                    f"2 bad arguments, {NO_FACE_STATUS} no face in any readable picture.")
    parser.add_argument("inputs", nargs="+", metavar="DIR_OR_FILE",
                        help="image files, or folders searched recursively for image files "
                             "(.jpg .jpeg .png .bmp .gif .tif .tiff .webp .ppm .pgm)")
    parser.add_argument("--out", type=output_file, required=True, metavar="OUT.npz",
                        help="the output file (replaced atomically); the CSV goes beside it with the suffix .csv")
    add_model_options(parser)
    parser.add_argument("--batch-size", type=int, default=64, metavar="B", help="images per forward pass (default 64)")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor update the per-model signature cache ($NPFACE_CACHE, "
                             "default ~/.cache/npface)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def save_signatures(path, signatures, paths, metadata, faces=None, boxes=None, frames=None):
    """Write the rows (signatures (N, D) float32, paths (N,), faces (N,), boxes (N, 4), frames (N,)) and JSON
    metadata to ``path`` (.npz) atomically; faces, boxes and frames are left out when None."""
    arrays = {"signatures": np.ascontiguousarray(signatures, dtype=np.float32),       # (N, D)
              "paths": np.array(list(paths), dtype=str).reshape(len(paths)),           # (N,)
              METADATA_KEY: np.array(json.dumps(metadata, indent=1, allow_nan=False))}
    if faces is not None:
        arrays["faces"] = np.asarray(faces, dtype=np.int64)                           # (N,)
        arrays["boxes"] = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)          # (N, 4)
        arrays["frames"] = np.array(list(frames), dtype=str).reshape(len(paths))     # (N,)

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    write_output(path, write)


@dataclass
class Signatures:
    """The rows of a signatures file (``save_signatures``): N faces.

    signatures (N, D) float32; paths (N,) str; faces (N,) int64; boxes (N, 4) float32 (NaN: not detected);
    metadata the JSON dict. Files written before faces and boxes existed read as face 0, NaN boxes.
    """
    signatures: np.ndarray
    paths: np.ndarray
    faces: np.ndarray
    boxes: np.ndarray
    metadata: dict

    @property
    def threshold(self) -> float:
        """The learned threshold theta of the model that made the signatures."""
        return float(self.metadata["model"]["threshold"])


def read_signatures(path) -> Signatures:
    """Read a signatures file written by ``npface.embed``; ValueError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"signatures file not found: {path}")
    arrays = read_npz(path, "not an npface signatures file (.npz from python -m npface.embed)")
    missing = {"signatures", "paths", METADATA_KEY} - set(arrays)
    if missing:
        raise ValueError(f"{path}: not an npface signatures file: no {', '.join(sorted(missing))}")
    sig, paths = arrays["signatures"], arrays["paths"]
    try:
        metadata = json.loads(str(arrays[METADATA_KEY]))
        float(metadata["model"]["threshold"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path}: metadata.json has no model threshold") from None
    n = len(paths)
    faces = arrays.get("faces", np.zeros(n, dtype=np.int64))
    boxes = arrays.get("boxes", np.full((n, 4), np.nan, dtype=np.float32))
    if (sig.ndim != 2 or sig.dtype != np.float32 or paths.shape != (len(sig),) or faces.shape != (n,)
            or boxes.shape != (n, 4) or not np.isfinite(sig).all()):
        raise ValueError(f"{path}: inconsistent arrays: signatures {sig.dtype} {sig.shape}, paths {paths.shape}, "
                         f"faces {faces.shape}, boxes {boxes.shape} (expected finite float32 (N, D), (N,), (N,), (N, 4))")
    return Signatures(sig, paths, faces.astype(np.int64), boxes.astype(np.float32), metadata)


def csv_path(out) -> Path:
    """Where the CSV of ``OUT.npz`` goes: ``OUT.csv``."""
    return Path(out).with_suffix(".csv")


def save_csv(path, signatures, paths, faces, boxes):
    """``path,face,left,top,width,height,s0..s{D-1}`` rows, atomically; empty box fields for NaN boxes."""
    import csv
    D = signatures.shape[1]

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["path", "face", "left", "top", "width", "height"] + [f"s{d}" for d in range(D)])
            for p, f, b, s in zip(paths, faces, boxes, signatures):
                box = ["" if np.isnan(v) else f"{v:.2f}" for v in b]
                out.writerow([p, int(f)] + box + [repr(float(v)) for v in s])

    write_output(path, write)


def warn_list(entries, what):
    """'warning: <what> <path>[: reason]' lines on stderr, the first MAX_WARNINGS of them, then a count."""
    for entry in entries[:MAX_WARNINGS]:
        print(f"warning: {what} {': '.join(entry[1:])}", file=sys.stderr)
    if len(entries) > MAX_WARNINGS:
        print(f"warning: ... and {len(entries) - MAX_WARNINGS} more", file=sys.stderr)


def embed(args):
    """Run the command of parsed ``args``; return (n saved, skipped list, run)."""
    out = Path(args.out)                          # checked as the flags were read (npface.cli.output_file)
    root, files, relative = find_images(args.inputs)
    if not files:
        raise CommandError(f"no image files found in {', '.join(args.inputs)}")
    loaded = open_model(args.model, onnx=args.onnx)
    run = embed_pictures(loaded, files, relative, frame=args.frame, flip=args.flip, batch_size=args.batch_size,
                         threads=args.threads, cache=not args.no_cache, progress=not args.quiet, views=args.views)
    warn_list(run.skipped, "skipped")
    warn_list(run.no_face, "no face in")
    if len(run.skipped) == len(files):
        raise CommandError(f"none of the {len(files)} files could be read as an image; nothing written")
    if len(run.signatures) == 0:
        raise NoFace(f"no face found in any of the {len(files) - len(run.skipped)} readable picture(s); "
                     "nothing written")
    read = [i for i in range(len(files)) if run.rules[i]]
    metadata = {
        "format": "npface-signatures", "format_version": 2, "npface_version": __version__,
        "model": loaded.describe(), "flip": bool(args.flip), "views": int(args.views), "frame": args.frame,
        "root": str(root),
        "n_signatures": int(len(run.signatures)), "n_skipped": len(run.skipped),
        "skipped": [{"path": rel, "reason": reason} for _, rel, reason in run.skipped],
        "no_face": [rel for _, rel in run.no_face],
        "pictures": [{"path": relative[i], "frame": run.rules[i], "reason": run.reasons[i]} for i in read],
        "distance": "squared Euclidean; same person iff distance < model.threshold",
    }
    paths = [relative[i] for i in run.file_index]
    save_signatures(out, run.signatures, paths, metadata, run.faces, run.boxes,
                    [run.rules[i] for i in run.file_index])
    save_csv(csv_path(out), run.signatures, paths, run.faces, run.boxes)
    return len(run.signatures), run.skipped, run


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_common_args(parser, args)
    t0 = time.perf_counter()
    status, done = run_command(PROG, embed, args)
    if status:
        return status
    n, skipped, run = done
    rules = Counter(r for r in run.rules if r)
    print(f"{n} signatures written to {args.out} and {csv_path(args.out)} ({run.n_embedded} embedded, "
          f"{run.n_cached} from cache; {time.perf_counter() - t0:.1f} s)"
          + (f"; skipped {len(skipped)} unreadable file(s)" if skipped else "")
          + (f"; {len(run.no_face)} picture(s) without a face" if run.no_face else ""))
    print("frames: " + ", ".join(f"{k} {rules[k]} picture(s)" for k in sorted(rules)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
