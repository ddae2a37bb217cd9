"""The exported ONNX file against npface itself, on LFW: same signatures, same decisions.

    python -m benchmarks.onnx_equality --lfw ../shared/lfw            # writes benchmarks/results/onnx_equality.json
    python -m benchmarks.onnx_equality --lfw ../shared/lfw --quick    # every 10th pair, to runs/

The shipped model (or ``--model``) is exported with ``npface.export_onnx``,
opened with the ``--onnx`` loader (``npface.onnx_backend``) and run by ONNX
Runtime on one thread, against ``FaceModel.forward`` on one thread, on every
distinct face of every pair of an LFW pairs file (pairsDevTrain.txt):

- the largest absolute difference in the signatures and in the alignment
  warp theta, against the tolerance the tests use;
- the same / different decision at the model's learned threshold on every
  pair (squared distance < theta), and how close the closest pair comes to the
  threshold, beside the largest change of a distance between the two.

No timing: ``benchmarks.inference`` times ONNX Runtime.
"""
import argparse
import sys
import time

import numpy as np

from benchmarks.common import machine_line, write_json
from npface.cli import check_output, output_file, run_main


def pair_faces(lfw, pairs_file, people="peopleDevTrain.txt"):
    """The faces of an LFW pairs file, each once, from npface's decoded-image cache.

    Returns (faces (M, S, S, 3) uint8, index_a (P,), index_b (P,), is_same (P,)):
    pair p compares faces[index_a[p]] with faces[index_b[p]]. Every person of
    the file must be listed in ``people`` (pairsDevTrain's are in peopleDevTrain).
    """
    from npface.data.folders import load_lfw
    from npface.verification import read_pairs, resolve_pairs
    pairs = resolve_pairs(read_pairs(pairs_file), lfw)
    paths, index_a, index_b = pairs.unique_images()
    data = load_lfw(lfw, people, progress=False)
    row = {f: i for i, f in enumerate(data.files)}
    rows = [row[p.relative_to(data.root).as_posix()] for p in paths]         # (M,)
    return np.asarray(data.images[rows]), index_a, index_b, pairs.is_same


def compare(model, onnx_model, faces, index_a, index_b, every=1):
    """npface against ONNX Runtime on the faces of every ``every``-th pair; a JSON-able dict."""
    from npface.onnx_backend import TOLERANCE, outputs
    index_a, index_b = index_a[::every], index_b[::every]                    # (P,) each
    used, inverse = np.unique(np.concatenate([index_a, index_b]), return_inverse=True)   # (M,), (2P,)
    a, b = np.split(inverse, 2)
    (sig, theta), (onnx_sig, onnx_theta) = outputs(model, onnx_model, faces[used])
    d = model.distance(sig[a], sig[b])                                       # (P,)
    finite = np.isfinite(onnx_sig).all(axis=1)                               # (M,) distance() refuses NaN rows
    both = finite[a] & finite[b]                                             # (P,)
    onnx_d = np.full(len(a), np.nan)                                         # (P,) NaN: decided "not the same"
    onnx_d[both] = onnx_model.distance(onnx_sig[a[both]], onnx_sig[b[both]])
    same, onnx_same = d < model.threshold, onnx_d < onnx_model.threshold
    return {"faces": int(len(used)), "pairs": int(len(a)), "tolerance": TOLERANCE,
            "onnx_nonfinite_faces": int((~finite).sum()),
            "max_abs_diff_signatures": float(np.abs(sig - onnx_sig).max()),
            "max_abs_diff_theta": float(np.abs(theta - onnx_theta).max()),
            "threshold": model.threshold, "onnx_threshold": onnx_model.threshold,
            "decisions_agree": int((same == onnx_same).sum()), "same_decisions": int(same.sum()),
            "max_abs_diff_distance": float(np.abs(d - onnx_d).max()),
            "min_distance_to_threshold": float(np.abs(d - model.threshold).min())}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.onnx_equality",
        description="Export a model to ONNX and compare ONNX Runtime (1 thread) with npface (1 thread) on every "
                    "face and pair of an LFW pairs file: signature and theta differences, decisions at the "
                    "learned threshold.")
    parser.add_argument("--lfw", required=True, metavar="DIR", help="LFW's root (holding lfw/ and the list files)")
    parser.add_argument("--pairs", default="pairsDevTrain.txt", metavar="FILE",
                        help="pairs file inside --lfw (default pairsDevTrain.txt)")
    parser.add_argument("--model", metavar="PATH", help="model file (.npz); default: the shipped model")
    parser.add_argument("--quick", action="store_true", help="every 10th pair only; results to runs/ by default")
    parser.add_argument("--json", type=output_file, metavar="OUT",
                        help="result file (default benchmarks/results/onnx_equality.json, or "
                             "runs/onnx_equality-quick.json with --quick)")
    args = parser.parse_args(argv)
    out = args.json or ("runs/onnx_equality-quick.json" if args.quick else "benchmarks/results/onnx_equality.json")
    check_output(parser, "--json", out)
    import tempfile
    from pathlib import Path

    import npface
    from npface.onnx_backend import load_onnx
    from npface.extras import MissingExtra
    from npface.onnx_export import DEFAULT_OPSET
    t = time.perf_counter()
    try:
        model = npface.load(args.model)
        faces, index_a, index_b, _ = pair_faces(args.lfw, Path(args.lfw) / args.pairs)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_model = load_onnx(npface.export_onnx(model, Path(tmp) / "model.onnx", DEFAULT_OPSET))
    except (OSError, ValueError, MissingExtra) as e:
        print(f"python -m benchmarks.onnx_equality: error: {e}", file=sys.stderr)
        return 2
    print(f"npface and ONNX Runtime on {'every 10th of ' if args.quick else ''}the {len(index_a)} pairs of "
          f"{args.pairs} ({len(faces)} faces in all), 1 thread each")
    result = compare(model, onnx_model, faces, index_a, index_b, every=10 if args.quick else 1)
    for k, v in result.items():
        print(f"  {k}: {v}")
    ok = (max(result["max_abs_diff_signatures"], result["max_abs_diff_theta"]) <= result["tolerance"]
          and result["decisions_agree"] == result["pairs"])
    import onnx
    import onnxruntime
    write_json(out, {"model": args.model or "shipped", "pairs_file": args.pairs, "opset": DEFAULT_OPSET,
                     "onnx_version": onnx.__version__, "onnxruntime_version": onnxruntime.__version__,
                     "onnxruntime_threads": 1, "npface_threads": 1, "equal": ok, **result,
                     "machine": machine_line(), "seconds": time.perf_counter() - t, "date": time.strftime("%Y-%m-%d")})
    print(f"{'EQUAL' if ok else 'NOT EQUAL'}; wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.onnx_equality"))
