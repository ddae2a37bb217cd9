"""Are two face images the same person? ``python -m npface.verify A.jpg B.jpg``.

    python -m npface.verify a.jpg b.jpg --model m.npz
    distance:  0.8734
    threshold: 2.0000
    SAME

The two images are cropped as in training (``npface.faces.read_face``), embedded,
and compared: SAME when the squared distance of their signatures is below
the model's learned threshold theta (eq. 1-2), DIFFERENT otherwise. The last
line of the output is the verdict. The exit status is 0 for either verdict
and 1 for an error (a missing or unreadable image, a bad model file), which
is reported as one line on stderr.
"""
import argparse
import sys
from pathlib import Path

from npface.faces import USER_ERRORS, CommandError, check_common_args, print_error, FRAMES, compute_signatures, open_model
from npface.threads import max_threads

PROG = "python -m npface.verify"

FRAME_HELP = ("how the face is framed in the image: 'lfw' = an LFW-style frame (face centred as in LFW's "
              "250x250 images): the centred square is cropped with the training crop LFW_CROP (columns 53..196, "
              "rows 73..216 of 250) scaled to the square's side; 'crop' = already a face crop framed like the "
              "model's input (face centred, brows to chin about 2/3 of the height): the centred square is "
              "resized to 112x112; 'auto' = 'lfw' for an image of exactly 250x250 pixels, 'crop' for any other "
              "size. Non-square images are never stretched: the excess width or height is cut evenly")



def add_model_options(parser):
    """The flags verify and embed share: --model or --onnx, --flip, --frame, --threads."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", metavar="PATH",
                       help="model file (.npz) saved by npface; default: the pretrained model shipped with npface")
    which.add_argument("--onnx", metavar="PATH",
                       help="instead of --model: a model exported with python -m npface.export (.onnx), run by "
                            "ONNX Runtime, to check that a deployed file agrees with npface (needs "
                            "pip install 'npface[onnx]')")
    parser.add_argument("--flip", action="store_true",
                        help="test-time flip: each signature is the average of those of the crop and its mirror "
                             "image, (e + e_flip) / 2, which keeps the scale the learned threshold was trained for")
    parser.add_argument("--frame", choices=FRAMES, default="auto", help=FRAME_HELP + " (default auto)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help=f"threads for the network, 1 to {max_threads()} "
                             "(default 1, as on the paper's single core)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compare two face images: prints the squared distance of their signatures, the model's "
                    "learned threshold theta, and SAME (distance < theta) or DIFFERENT. Exit status 0 for either "
                    "verdict, 1 for an error (missing or unreadable image, bad model file), 2 for bad arguments.")
    parser.add_argument("image_a", metavar="A", help="the first image file (JPEG, PNG, ...; any size)")
    parser.add_argument("image_b", metavar="B", help="the second image file")
    add_model_options(parser)
    return parser


def verify(args):
    """Compare the two images of parsed ``args``; return (distance, threshold, same)."""
    for name in (args.image_a, args.image_b):
        path = Path(name)
        if not path.exists():
            raise CommandError(f"image not found: {path}")
        if not path.is_file():
            raise CommandError(f"not a file: {path}")
    loaded = open_model(args.model, onnx=args.onnx)
    files = [Path(args.image_a), Path(args.image_b)]
    run = compute_signatures(loaded, files, [str(f) for f in files], frame=args.frame, flip=args.flip,
                             threads=args.threads, cache=False, progress=False)
    if run.skipped:
        _, rel, reason = run.skipped[0]
        raise CommandError(f"{rel}: {reason}")
    model = loaded.model
    distance = float(model.distance(run.signatures[0], run.signatures[1]))
    return distance, model.threshold, distance < model.threshold


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_common_args(parser, args)
    try:
        distance, threshold, same = verify(args)
    except USER_ERRORS as e:
        print_error(PROG, e)
        return 1
    print(f"distance:  {distance:.4f}")
    print(f"threshold: {threshold:.4f}")
    print("SAME" if same else "DIFFERENT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
