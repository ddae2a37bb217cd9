"""Are two face images the same person? ``python -m npface.verify A.jpg B.jpg``.

    python -m npface.verify a.jpg b.jpg --model m.npz
    A: lfw (250x250 pixels: an LFW frame)
    B: detect (2 face(s) found in a larger picture): face 0 of 2, box 812,404,353,353
    distance:  0.8734
    threshold: 2.0000
    SAME

Each picture's face is found and framed as ``--frame`` says
(``npface.photos``; by default ``auto``: an LFW frame, a face crop, or the
detector's main face in a larger picture, with the rule printed), embedded,
and compared: SAME when the squared distance of their signatures is below
the model's learned threshold theta (eq. 1-2), DIFFERENT otherwise. The last
line of the output is the verdict; ``--json`` prints one JSON object instead.
Exit status: 0 for either verdict, 1 for an error (a missing or unreadable
image, a bad model file, OpenCV missing for ``--frame detect``), 2 for bad
arguments, 3 when a picture has no face (or not the ``--face`` asked for);
errors are one line on stderr.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from npface.cli import run_main
from npface.detect import NEAR_TIE
from npface.faces import FLIP_HELP, VIEWS, VIEWS_HELP, CommandError, check_common_args, embed_faces, open_model
from npface.photos import FRAME_HELP, FRAMES, NO_FACE_STATUS, frame_picture, pick_face, run_command
from npface.threads import max_threads

PROG = "python -m npface.verify"


def add_model_options(parser):
    """The flags verify and embed share: --model or --onnx, --flip, --views, --frame, --threads."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", metavar="PATH",
                       help="model file (.npz) saved by npface; default: the pretrained model shipped with npface")
    which.add_argument("--onnx", metavar="PATH",
                       help="instead of --model: a model exported with python -m npface.export (.onnx), run by "
                            "ONNX Runtime, to check that a deployed file agrees with npface (needs "
                            "pip install 'npface[onnx]')")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                        help=FLIP_HELP + "; on by default here, where decisions are made at the learned threshold: "
                             "chosen on the selection people, where flip made those decisions markedly more "
                             "accurate (docs/RESULTS.md, section 5); --no-flip embeds each crop once, at half the work")
    parser.add_argument("--views", type=int, choices=VIEWS, default=1, help=VIEWS_HELP)
    parser.add_argument("--frame", choices=FRAMES, default="auto", help=FRAME_HELP + " (default auto)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help=f"threads for the network, 1 to {max_threads()} "
                             "(default 1, as on the paper's single core)")


def face_indices(text):
    """--face: 'N' (both pictures) or 'N,M' (A, then B) -> (N, M), non-negative."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2) or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected N or N,M with non-negative integers, got {text!r}")
    return values * 2 if len(values) == 1 else values


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compare two face pictures: prints the framing rule of each picture, the squared distance "
                    "of their signatures, the model's learned threshold theta, and SAME (distance < theta) or "
                    "DIFFERENT. Theta is learned in training as the same/different boundary: a distance below it "
                    "means the model takes the two faces for one person. Exit status 0 for either verdict, 1 for "
                    "an error (missing or unreadable image, bad model file, OpenCV missing for --frame detect), "
                    f"2 for bad arguments, {NO_FACE_STATUS} when a picture has no face (or not the --face asked "
                    "for).")
    parser.add_argument("image_a", metavar="A", help="the first picture (JPEG, PNG, ...; any size)")
    parser.add_argument("image_b", metavar="B", help="the second picture")
    add_model_options(parser)
    parser.add_argument("--face", type=face_indices, default=None, metavar="N[,M]",
                        help="use face N of each picture, or face N of A and face M of B (0 = the main face: "
                             f"the largest, where faces at least {NEAR_TIE:.0%}% of its size count as tied and the "
                             "detector's higher score wins; the others follow largest first, as npface.embed "
                             "--frame detect numbers them); default: the main face of each")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object {"a", "b", "distance", "threshold", "same", "boxes", "frames"} '
                             "instead of text; boxes are [left, top, width, height] in picture pixels (null when "
                             "the face was not detected), frames the rule and reason per picture")
    return parser


def verify(args):
    """Compare the two pictures of parsed ``args``; return a JSON-able dict (the ``--json`` object)."""
    names = (args.image_a, args.image_b)
    for name in names:
        path = Path(name)
        if not path.exists():
            raise CommandError(f"image not found: {path}")
        if not path.is_file():
            raise CommandError(f"not a file: {path}")
    loaded = open_model(args.model, onnx=args.onnx)
    S = loaded.model.config.input_size
    pictures = [frame_picture(name, args.frame, S) for name in names]
    wanted = args.face or (None, None)
    faces = [pick_face(name, pic, n) for name, pic, n in zip(names, pictures, wanted)]
    sig = embed_faces(loaded.model, np.stack([f.crop for f in faces]), args.flip, threads=args.threads,
                      views=args.views)                                                                  # (2, D)
    model = loaded.model
    distance = float(model.distance(sig[0], sig[1]))
    return {"a": str(names[0]), "b": str(names[1]), "distance": distance, "threshold": model.threshold,
            "same": bool(distance < model.threshold),
            "boxes": [None if f.box is None else [round(v, 2) for v in f.box] for f in faces],
            "frames": [{"rule": p.rule, "reason": p.reason, "face": f.face, "faces": len(p.faces)}
                       for p, f in zip(pictures, faces)]}


def describe_frame(frame, box):
    """One line on how a picture was framed: 'detect (reason): face 0 of 2, box l,t,w,h'."""
    text = f"{frame['rule']} ({frame['reason']})"
    if box is not None:
        text += f": face {frame['face']} of {frame['faces']}, box {','.join(f'{v:.0f}' for v in box)}"
    return text


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_common_args(parser, args)
    status, result = run_command(PROG, verify, args)
    if status:
        return status
    if args.json:
        print(json.dumps(result))
        return 0
    for name, frame, box in zip("AB", result["frames"], result["boxes"]):
        print(f"{name}: {describe_frame(frame, box)}")
    print(f"distance:  {result['distance']:.4f}")
    print(f"threshold: {result['threshold']:.4f}")
    print("SAME" if result["same"] else "DIFFERENT")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
