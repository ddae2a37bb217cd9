"""Find faces in a gallery: ``python -m npface.search GALLERY.npz QUERY_IMAGE...``.

    python -m npface.embed photos/ --frame detect --out gallery.npz
    python -m npface.search gallery.npz me.jpg -k 3
    me.jpg face 0 (detect: 1 face(s) found in a larger picture), box 210,96,180,180:
      1. 2019/beach.jpg face 1   distance 1.0532  SAME
      2. 2021/party.jpg face 0   distance 2.4410  SAME
      3. 2020/work.jpg face 2    distance 6.9021  DIFFERENT

Every face of every query picture (framed by ``--frame``, as in
``npface.embed``) is compared with every gallery face, exactly, in blocks of
gallery rows (``npface.gallery.nearest``); the k nearest are listed with
their squared distance and SAME when it is below the learned threshold
theta, the model's same/different boundary, else DIFFERENT.

Queries are embedded with the gallery's own model, flip and views settings (from
its metadata): ``--model`` is needed only when that model file has moved.
A query picture that cannot be read or has no face is skipped with a
warning. Exit status: 0 done, 1 an error (bad gallery or model, no query
picture readable), 2 bad arguments, 3 no face in any query picture.
"""
import argparse
import json
import sys

import numpy as np

from npface.cli import run_main
from npface.faces import CommandError, check_common_args, find_images, open_model
from npface.gallery import CHUNK, nearest
from npface.photos import FRAME_HELP, FRAMES, NO_FACE_STATUS, NoFace, embed_pictures, run_command
from npface.threads import max_threads

PROG = "python -m npface.search"


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="For every face in the query pictures, list the k nearest faces of a gallery (a signatures "
                    "file from python -m npface.embed) with their squared distance and SAME (below the model's "
                    "learned threshold theta, its same/different boundary) or DIFFERENT. Exact search. Exit status "
                    f"0 done, 1 error, 2 bad arguments, {NO_FACE_STATUS} no face in any query picture.")
    parser.add_argument("gallery", metavar="GALLERY.npz", help="a signatures file written by npface.embed")
    parser.add_argument("queries", nargs="+", metavar="QUERY_IMAGE", help="query pictures (files or folders)")
    parser.add_argument("-k", type=int, default=5, metavar="K", help="neighbours per query face (default 5)")
    parser.add_argument("--frame", choices=FRAMES, default="auto", help=FRAME_HELP + " (default auto)")
    parser.add_argument("--model", metavar="PATH",
                        help="the model that embedded the gallery, when its file is no longer where the gallery's "
                             "metadata says; it must be the same model (checked by SHA-256)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help=f"threads for the network, 1 to {max_threads()} (default 1)")
    parser.add_argument("--chunk", type=int, default=CHUNK * 8, metavar="R",
                        help=f"gallery rows compared at a time (default {CHUNK * 8})")
    parser.add_argument("--json", action="store_true",
                        help='print a JSON list, one object per query face: {"query", "face", "box", "frame", '
                             '"neighbours": [{"path", "face", "box", "distance", "same"}, ...]}')
    return parser


def gallery_model(gallery, path):
    """The model that embedded ``gallery`` (its metadata's file, or ``path``), checked by SHA-256."""
    want = gallery.metadata["model"]
    loaded = open_model(path if path is not None else want.get("path"))
    if loaded.sha256 != want.get("sha256"):
        raise CommandError(f"the gallery was embedded with another model ({want.get('path')}, sha256 "
                           f"{str(want.get('sha256'))[:12]}...) than {loaded.path}; pass that model with --model")
    return loaded


def search(args):
    """Run the search of parsed ``args``; return (JSON-able list of query faces and their neighbours, theta)."""
    from npface.embed import read_signatures
    gallery = read_signatures(args.gallery)
    try:
        loaded = gallery_model(gallery, args.model)
    except FileNotFoundError as exc:
        raise CommandError(f"{exc}; the gallery's model is needed (pass it with --model)") from None
    root, files, relative = find_images(args.queries)
    run = embed_pictures(loaded, files, [str(f) for f in files], frame=args.frame,
                         flip=bool(gallery.metadata.get("flip", False)), threads=args.threads, cache=False,
                         progress=False, views=int(gallery.metadata.get("views", 1)))
    for _, rel, reason in run.skipped:
        print(f"warning: skipped {rel}: {reason}", file=sys.stderr)
    for _, rel in run.no_face:
        print(f"warning: no face in {rel}", file=sys.stderr)
    if len(run.skipped) == len(files):
        raise CommandError(f"none of the {len(files)} query files could be read as an image")
    if len(run.signatures) == 0:
        raise NoFace("no face found in any query picture")
    idx, dist = nearest(gallery.signatures, run.signatures, args.k, chunk=args.chunk)     # (Q, k), (Q, k)
    theta = gallery.threshold

    def box(b):
        return None if np.isnan(b).any() else [round(float(v), 2) for v in b]
    return [{"query": str(files[f]), "face": int(run.faces[q]), "box": box(run.boxes[q]),
             "frame": {"rule": run.rules[f], "reason": run.reasons[f]},
             "neighbours": [{"path": str(gallery.paths[g]), "face": int(gallery.faces[g]), "box": box(gallery.boxes[g]),
                             "distance": float(d), "same": bool(d < theta)} for g, d in zip(idx[q], dist[q])]}
            for q, f in enumerate(run.file_index)], theta


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_common_args(parser, args)
    if args.k < 1:
        parser.error(f"-k must be >= 1, got {args.k}")
    if args.chunk < 1:
        parser.error(f"--chunk must be >= 1, got {args.chunk}")
    status, found = run_command(PROG, search, args)
    if status:
        return status
    results, theta = found
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"threshold: {theta:.4f}")
    for r in results:
        where = "" if r["box"] is None else ", box " + ",".join(f"{v:.0f}" for v in r["box"])
        print(f"{r['query']} face {r['face']} ({r['frame']['rule']}: {r['frame']['reason']}){where}:")
        for rank, nb in enumerate(r["neighbours"], 1):
            print(f"  {rank}. {nb['path']} face {nb['face']}  distance {nb['distance']:.4f}  "
                  f"{'SAME' if nb['same'] else 'DIFFERENT'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
