"""Group faces into people: ``python -m npface.cluster SIGNATURES.npz``.

    python -m npface.embed photos/ --frame detect --out photos.npz
    python -m npface.cluster photos.npz                    # -> photos.clusters.csv
    1,204 faces in 312 clusters (97 with 2 or more faces, 215 single); theta 3.0412; written to photos.clusters.csv

Two faces are joined when the squared distance of their signatures is below
the learned threshold theta of the model that embedded them (read from the
file's metadata): the model's own same/different boundary, so no tuning is
needed. The graph of such pairs is built in row blocks (``npface.gallery``:
memory O(block x N), time O(N^2 D)) and clustered by average linkage on
theta's votes (default: two groups merge while most of their cross pairs
are closer than theta), Chinese whispers or connected components;
``benchmarks.photos`` measures the three on held-out people.

The CSV has one row per face of the signatures file, in its order:
``path,face,cluster``; clusters are numbered 0, 1, ... by first appearance.
Exit status: 0 done, 1 an unreadable or malformed signatures file, 2 bad
arguments; errors are one line on stderr.
"""
import argparse
import sys
from pathlib import Path

from npface.cli import output_file, run_main
from npface.data.cache import check_writable
from npface.faces import USER_ERRORS, print_error, write_output
from npface.gallery import CHUNK, DEFAULT_METHOD, METHODS, close_pairs, cluster

PROG = "python -m npface.cluster"


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Group the faces of a signatures file (from python -m npface.embed) into people: faces closer "
                    "than the model's learned threshold theta (its same/different boundary, stored in the file) are "
                    "joined, and the graph of those pairs is clustered. Writes a CSV path,face,cluster. Exit status "
                    "0 done, 1 unreadable or malformed signatures file, 2 bad arguments.")
    parser.add_argument("signatures", metavar="SIGNATURES.npz", help="a signatures file written by npface.embed")
    parser.add_argument("--out", type=output_file, metavar="OUT.csv",
                        help="the CSV to write (replaced atomically); default: SIGNATURES.clusters.csv beside the input")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                        help="'majority' = average linkage on theta's votes: two groups of faces merge while more "
                             "than half of their cross pairs are closer than theta, so stray close pairs do not chain "
                             "people together; 'whispers' = Chinese whispers: each face takes the cluster with the "
                             "largest summed weight (theta - distance) among its close faces; 'components' = "
                             "connected components: any chain of close pairs joins two faces (default "
                             f"{DEFAULT_METHOD}, the best of the three on held-out people)")
    parser.add_argument("--threshold", type=float, metavar="T",
                        help="join faces closer than T instead of the model's theta (squared distance)")
    parser.add_argument("--chunk", type=int, default=CHUNK, metavar="R",
                        help=f"rows per block of the all-pairs distances; memory about 4 x R x N bytes "
                             f"(default {CHUNK})")
    parser.add_argument("--seed", type=int, default=0, help="the order of Chinese whispers' passes (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def default_out(signatures) -> Path:
    p = Path(signatures)
    return p.with_name(p.stem + ".clusters.csv")


def write_clusters(path, paths, faces, labels):
    """``path,face,cluster`` rows, atomically."""
    import csv

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["path", "face", "cluster"])
            out.writerows([p, int(f), int(c)] for p, f, c in zip(paths, faces, labels))

    write_output(path, write)


def run(args):
    """Cluster the file of parsed ``args``; return (labels (N,), theta, out path)."""
    from npface.embed import read_signatures
    from npface.data.folders import _Progress
    data = read_signatures(args.signatures)
    theta = data.threshold if args.threshold is None else args.threshold
    out = Path(args.out) if args.out else default_out(args.signatures)
    check_writable(out)                                  # --out was checked as it was read; its default not
    n = len(data.signatures)
    bar = _Progress(False if args.quiet else True, n, "pairs under theta")
    try:
        i, j, d = close_pairs(data.signatures, theta, chunk=args.chunk, progress=lambda done, total: bar.update(done))
    finally:
        bar.close()
    labels = cluster(n, i, j, d, theta, args.method, seed=args.seed)
    write_clusters(out, data.paths, data.faces, labels)
    return labels, theta, out


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.chunk < 1:
        parser.error(f"--chunk must be >= 1, got {args.chunk}")
    if args.threshold is not None and not args.threshold > 0:
        parser.error(f"--threshold must be > 0, got {args.threshold}")
    try:
        labels, theta, out = run(args)
    except USER_ERRORS as e:
        print_error(PROG, e)
        return 1
    import numpy as np
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    print(f"{len(labels):,} faces in {len(sizes):,} clusters ({int((sizes >= 2).sum()):,} with 2 or more faces, "
          f"{int((sizes == 1).sum()):,} single); theta {theta:.4f}; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
