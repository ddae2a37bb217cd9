"""Export a model to ONNX: ``python -m npface.export --out model.onnx``.

    python -m npface.export --out npface.onnx                    # the shipped model
    python -m npface.export --model runs/lfw/model.npz --out m.onnx --opset 21

The file is one ONNX graph (``npface.onnx_export``): uint8 RGB faces
``images`` (N, 112, 112, 3) in, ``signatures`` (N, 128) float32 and the
alignment warp ``theta`` (N, 2, 3) out, the learned threshold and the input
convention in its metadata. After writing, the file is opened again with the
loader of ``--onnx`` (``npface.onnx_backend``) and run by ONNX Runtime on a
few random images against npface itself; ``--no-check`` skips that.

Exit status: 0 written (and checked), 1 written but ONNX Runtime disagrees
with npface, 2 for bad arguments, an unreadable model file or a missing
``onnx`` extra (``pip install 'npface[onnx]'``), reported as one line.
"""
import argparse
import sys

import numpy as np

from npface.cli import output_file, run_main
from npface.faces import USER_ERRORS, print_error
from npface.extras import MissingExtra
from npface.onnx_export import DEFAULT_OPSET, MIN_OPSET

PROG = "python -m npface.export"
CHECK_IMAGES = 8            # random images of the check after writing


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export an npface model to one ONNX file that takes uint8 RGB faces 'images' (N, 112, 112, 3) "
                    "and returns 'signatures' (N, 128) float32 and the alignment warp 'theta' (N, 2, 3); the "
                    "learned threshold (same person iff squared distance < threshold), the input convention and "
                    "the model's provenance are in the file's metadata. Exit status 0 when written and checked, "
                    "1 when ONNX Runtime disagrees with npface, 2 for bad arguments or input.")
    parser.add_argument("--model", metavar="PATH",
                        help="model file (.npz) saved by npface; default: the pretrained model shipped with npface")
    parser.add_argument("--out", type=output_file, required=True, metavar="OUT.onnx",
                        help="the ONNX file to write (replaced atomically)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="V",
                        help=f"ONNX opset version, at least {MIN_OPSET} (AffineGrid and GridSample's 'linear' "
                             f"mode need it; default {DEFAULT_OPSET})")
    parser.add_argument("--no-check", action="store_true",
                        help=f"do not run the written file in ONNX Runtime against npface on {CHECK_IMAGES} random "
                             "images (the check needs onnxruntime; the export needs only onnx)")
    return parser


def export(args):
    """Write the file of parsed ``args``; return (path, (max signature diff, max theta diff) or None)."""
    from pathlib import Path

    import npface
    from npface.onnx_export import check_opset
    out = Path(args.out)                      # checked as the flags were read (npface.cli.output_file)
    opset = check_opset(args.opset)
    model = npface.load(args.model)
    npface.export_onnx(model, out, opset)
    if args.no_check:
        return out, None
    from npface.onnx_backend import load_onnx, max_differences
    S = model.config.input_size
    images = np.random.default_rng(0).integers(0, 256, (CHECK_IMAGES, S, S, 3), dtype=np.uint8)
    return out, max_differences(model, load_onnx(out), images)


def main(argv=None):
    from npface.onnx_backend import TOLERANCE
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out, diffs = export(args)
    except USER_ERRORS + (MissingExtra,) as e:
        print_error(PROG, e)
        return 2
    size = out.stat().st_size / 1e6
    if diffs is None:
        print(f"wrote {out} ({size:.1f} MB, opset {args.opset}); not checked (--no-check)")
        return 0
    sig, theta = diffs
    agree = max(sig, theta) <= TOLERANCE
    print(f"wrote {out} ({size:.1f} MB, opset {args.opset}); ONNX Runtime on 1 thread against npface on "
          f"{CHECK_IMAGES} random images: max |diff| {sig:.2e} in signatures, {theta:.2e} in theta "
          + ("(within " if agree else "(MORE than ") + f"{TOLERANCE:g})")
    if not agree:
        print_error(PROG, f"{out} disagrees with npface by more than {TOLERANCE:g}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
