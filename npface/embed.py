"""Signatures of many face images: ``python -m npface.embed DIR_OR_FILES... --out signatures.npz``.

    python -m npface.embed photos/ --out photos.npz --model m.npz
    python -m npface.embed a.jpg b.jpg c.png --out three.npz --model m.npz --flip

Folders are searched recursively for image files (by extension, any case;
hidden files and folders are skipped); files named explicitly are always
tried. Each image is cropped as in training (``npface.faces.read_face``,
framing rule ``--frame``) and embedded once.

The output is an ``.npz`` (written atomically, loadable with
``np.load(path, allow_pickle=False)``) holding:

- ``signatures`` (N, D) float32: one row per readable image (D = 128);
- ``paths`` (N,) str: each image's path relative to ``root``, '/'-separated,
  in the order found (argument order; sorted within a folder);
- ``metadata.json``: a 0-d str array of JSON: the model's path, SHA-256,
  threshold and provenance, flip, framing rule, ``root`` (the deepest folder
  holding every input, absolute), the skipped files and their reasons.

Two signatures ``a``, ``b`` are the same person when
``((a - b) ** 2).sum() < metadata["model"]["threshold"]``.

Unreadable files are skipped with a warning and counted; the run fails only
when no image at all can be read.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from npface import __version__
from npface.faces import USER_ERRORS, CommandError, check_common_args, print_error, compute_signatures, find_images, open_model, write_output
from npface.verify import add_model_options

PROG = "python -m npface.embed"
METADATA_KEY = "metadata.json"
MAX_WARNINGS = 10           # skipped files named one by one; the rest are counted



def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compute the signatures of face images and save them to an .npz file with arrays "
                    "'signatures' (N, 128) float32, 'paths' (N,) str (relative to the deepest folder holding all "
                    "inputs) and 'metadata.json' (model path, hash, threshold and provenance; flip; frame; skipped "
                    "files), loadable with allow_pickle=False. Unreadable files are skipped with a warning.")
    parser.add_argument("inputs", nargs="+", metavar="DIR_OR_FILE",
                        help="image files, or folders searched recursively for image files "
                             "(.jpg .jpeg .png .bmp .gif .tif .tiff .webp .ppm .pgm)")
    parser.add_argument("--out", required=True, metavar="OUT.npz", help="the output file (replaced atomically)")
    add_model_options(parser)
    parser.add_argument("--batch-size", type=int, default=64, metavar="B", help="images per forward pass (default 64)")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor update the per-model signature cache ($NPFACE_CACHE, "
                             "default ~/.cache/npface)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def save_signatures(path, signatures, paths, metadata):
    """Write signatures (N, D) float32, paths (N,) and JSON metadata to ``path`` (.npz) atomically."""
    arrays = {"signatures": np.ascontiguousarray(signatures, dtype=np.float32),       # (N, D)
              "paths": np.array(list(paths), dtype=str).reshape(len(paths)),           # (N,)
              METADATA_KEY: np.array(json.dumps(metadata, indent=1, allow_nan=False))}

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    write_output(path, write)


def embed(args):
    """Run the command of parsed ``args``; return (n saved, skipped list, run)."""
    out = Path(args.out)
    if out.is_dir():
        raise CommandError(f"--out is a folder, expected a file name: {out}")
    root, files, relative = find_images(args.inputs)
    if not files:
        raise CommandError(f"no image files found in {', '.join(args.inputs)}")
    loaded = open_model(args.model, onnx=args.onnx)
    run = compute_signatures(loaded, files, relative, frame=args.frame, flip=args.flip,
                             batch_size=args.batch_size, threads=args.threads, cache=not args.no_cache,
                             progress=not args.quiet)
    for _, rel, reason in run.skipped[:MAX_WARNINGS]:
        print(f"warning: skipped {rel}: {reason}", file=sys.stderr)
    if len(run.skipped) > MAX_WARNINGS:
        print(f"warning: ... and {len(run.skipped) - MAX_WARNINGS} more", file=sys.stderr)
    if not run.ok.any():
        raise CommandError(f"none of the {len(files)} files could be read as an image; nothing written")
    keep = np.flatnonzero(run.ok)                                              # (N,)
    metadata = {
        "format": "npface-signatures", "format_version": 1, "npface_version": __version__,
        "model": loaded.describe(), "flip": bool(args.flip), "frame": args.frame, "root": str(root),
        "n_signatures": int(len(keep)), "n_skipped": len(run.skipped),
        "skipped": [{"path": rel, "reason": reason} for _, rel, reason in run.skipped],
        "distance": "squared Euclidean; same person iff distance < model.threshold",
    }
    save_signatures(out, run.signatures[keep], [relative[i] for i in keep], metadata)
    return len(keep), run.skipped, run


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_common_args(parser, args)
    try:
        n, skipped, run = embed(args)
    except USER_ERRORS as e:
        print_error(PROG, e)
        return 1
    t = run.seconds
    print(f"{n} signatures written to {args.out} ({run.n_embedded} embedded, {run.n_cached} from cache; "
          f"{t['total']:.1f} s)" + (f"; skipped {len(skipped)} unreadable file(s)" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
