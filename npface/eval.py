"""Verification accuracy of a model on LFW pairs: ``python -m npface.eval``.

    python -m npface.eval --lfw ../shared/lfw --pairs ../shared/lfw/pairsDevTrain.txt --model m.npz
    python -m npface.eval --lfw LFW --pairs LFW/pairs.txt --model m.npz --flip --json out.json --roc roc.png
    python -m npface.eval --lfw LFW --pairs test.txt --fit-pairs LFW/pairsDevTrain.txt --model m.npz

Protocol (chosen from the arguments and the pairs file):

- ``--fit-pairs FILE``: fit-and-test. The threshold is fitted on the pairs
  of FILE and applied to the pairs of ``--pairs``.
- else, a pairs file with folds (View 2 header ``folds N``, e.g.
  ``pairs.txt``): k-fold over the file's folds (LFW's 10-fold protocol).
- else (View 1, one block of N same then N different pairs, e.g.
  ``pairsDevTrain.txt``): k-fold over ``--folds K`` (default 10) folds
  assigned by person (``npface.verification.person_folds``, the rule the
  trainer's validation and the synthetic set share): no person is in two
  folds, as in View 2, so a threshold is never fitted on pairs that share
  people with its test fold; the folds are as even in same and different
  pairs as the people allow.

A threshold fitted or tested on people the model trained on is biased: a
model separates its own training people better than new ones. ``eval``
warns, in one line on stderr, when the pairs (or the fit pairs) include
people of the model's training list, read from its provenance
(``train_people``; for older models, rebuilt from the recorded people list
file and the trainer's split).

Every protocol also reports the learned-threshold protocol: the accuracy at
the model's own theta, with nothing fitted, on the same test pairs
(``learned_threshold_accuracy``, and the full result under
``learned_threshold_protocol``).

Each distinct image is decoded and embedded once (``npface.faces``, the
training crop ``LFW_CROP``), and the signatures are cached per model file,
so a second run on the same model and images embeds nothing.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from npface import __version__, metrics
from npface import verification as ver
from npface.cli import output_file, run_main
from npface.faces import (FLIP_HELP, USER_ERRORS, VIEWS, VIEWS_HELP, CommandError, check_common_args,
                          compute_signatures, open_model, print_error, write_output)
from npface.threads import max_threads

PROG = "python -m npface.eval"
DEFAULT_FOLDS = 10



def training_people(provenance, lfw=None):
    """The names of the people a model trained on, from its provenance; None when it does not say.

    ``train_people`` when the trainer recorded it; else, for a model trained
    on a people list file (``config.people``), that file's names minus the
    trainer's held-out split (``split_identities(names, val_fraction, seed=0)``),
    the file looked up as given, then under the recorded LFW folder, then
    under ``lfw``.
    """
    if not isinstance(provenance, dict):
        return None
    if isinstance(provenance.get("train_people"), list):
        return set(provenance["train_people"])
    cfg = provenance.get("config")
    if not isinstance(cfg, dict) or cfg.get("data") != "folder" or not cfg.get("people"):
        return None
    from npface.data.folders import read_people_file, split_identities
    for base in (None, cfg.get("lfw"), lfw):
        path = Path(cfg["people"]) if base is None else Path(base) / cfg["people"]
        if path.is_file():
            names = [name for name, _ in read_people_file(path)]
            return set(split_identities(names, cfg.get("val_fraction", 0.1), seed=0)[0])
    return None


def trained_people_warning(provenance, pair_lists, lfw=None):
    """One line naming how many people of ``pair_lists`` (PairList) the model trained on; None when none."""
    trained = training_people(provenance, lfw)
    if not trained:
        return None
    seen = set()
    for pl in pair_lists:
        seen.update(pl.name_a, pl.name_b)
    overlap = seen & trained
    if not overlap:
        return None
    return (f"warning: {len(overlap)} of the {len(seen)} people in the pairs are in the model's training list "
            f"(e.g. {sorted(overlap)[0]}); accuracies on them, and thresholds fitted on them, do not carry over "
            f"to new people")


def _pairs(path, lfw, what):
    """(the file read, its pairs, the pairs resolved to image files): the pairs file ``path``, or, where no
    such file exists, the one of that name inside ``lfw`` (as ``npface.train --people`` reads its list)."""
    given = Path(path)
    path = given if given.is_file() or not (Path(lfw) / given).is_file() else Path(lfw) / given
    if not path.is_file():
        raise CommandError(f"{what} file not found: {given}" + ("" if given.is_absolute() else f" (nor in {lfw})"))
    pairs = ver.read_pairs(path)
    return path, pairs, ver.resolve_pairs(pairs, lfw)


def _operating_point(d, s, threshold):
    """(FAR, TAR) at a threshold: the fractions of different / same pairs with d < threshold."""
    accept = d < threshold                                                     # (P,)
    return float(accept[~s].mean()), float(accept[s].mean())


def check_matplotlib():
    """Raise CommandError (with the install command) unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CommandError("--roc needs matplotlib, which is not installed: pip install 'npface[plots]'") from None


def plot_roc(path, distances, is_same, points, title):
    """Write the ROC curve (TAR against FAR, log FAR axis) to ``path`` as a PNG, atomically.

    points: [(label, threshold), ...] operating points to mark on the curve.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    far, tar, _ = metrics.roc_curve(distances, is_same)                       # (U+1,), (U+1,)
    n_diff = int(np.count_nonzero(~np.asarray(is_same)))
    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    floor = 0.5 / n_diff                           # FAR 0 has no place on a log axis: draw it half a step down
    ax.plot(np.maximum(far, floor), tar, color="C0", lw=1.5, label="ROC")
    for (label, threshold), marker, colour in zip(points, "os^", ("C3", "C2", "C1")):
        f, t = _operating_point(np.asarray(distances), np.asarray(is_same), threshold)
        ax.plot([max(f, floor)], [t], marker, color=colour, ms=8,
                label=f"{label}: d < {threshold:.4g} (FAR {f:.3g}, TAR {t:.3g})")
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(0.0, 1.005)
    ax.set_xlabel("false accept rate (log scale)")
    ax.set_ylabel("true accept rate")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    write_output(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def _fmt(x, spec=".4f"):
    return "n/a" if x is None else format(x, spec)


def summary_lines(report):
    """The human-readable summary of an eval report (a list of lines)."""
    r = report
    lines = [f"pairs:      {r['pairs']}  ({r['n_pairs']} pairs: {r['n_same']} same, {r['n_different']} different)"]
    if r["fit_pairs"]:
        lines.append(f"fit pairs:  {r['fit_pairs']}  ({r['n_fit_pairs']} pairs)")
    flip = "on" if r["flip"] else "off"
    lines.append(f"model:      {r['model']['path']}  (theta {r['model']['threshold']:.4f}; flip {flip}; "
                 f"views {r.get('views', 1)})")
    t = r["timing"]
    sig = r["signatures"]
    rate = "" if t["ms_per_embedded_image"] is None else f", {t['ms_per_embedded_image']:.1f} ms/image"
    lines.append(f"signatures: {sig['n_images']} images, {sig['n_embedded']} embedded, {sig['n_cached']} from cache "
                 f"(decode {t['decode']:.1f} s, embed {t['embed']:.1f} s{rate}); {t['signatures']:.1f} s")
    if r["protocol"] == "fit-and-test":
        lines.append(f"protocol:   fit-and-test: threshold fitted on the fit pairs "
                     f"(train accuracy {r['train_accuracy']:.4f})")
        lines.append(f"  accuracy  {r['accuracy']:.4f} at threshold {r['threshold']:.4f}")
    else:
        how = "the file's folds" if r["fold_source"] == "file" else "folds assigned to the single block"
        lines.append(f"protocol:   {r['n_folds']}-fold over {how}")
        lines.append(f"  accuracy  {r['accuracy']:.4f} +- {r['accuracy_std']:.4f} (std over folds; "
                     f"s.e.m. {r['accuracy_sem']:.4f})")
    fars = "  ".join(f"TAR@FAR={k} {_fmt(v)}" for k, v in r["tar_at_far"].items())
    lines.append(f"  AUC {r['auc']:.4f}  EER {r['eer']:.4f}  {fars}")
    lines.append(f"learned theta {r['learned_threshold']:.4f}: accuracy {r['learned_threshold_accuracy']:.4f} "
                 f"(nothing fitted)")
    if r["tar_at_far_note"]:
        lines.append(f"note: {r['tar_at_far_note']}")
    lines.append(f"time:       {t['total']:.1f} s in all")
    return lines


def evaluate(args):
    """Run the evaluation of parsed ``args``.

    Returns ``(report, (distances, is_same, fitted))``: the JSON-able report, and
    for the ROC plot the test pairs' distances (P,) and labels (P,) with the
    fitted threshold (fit-and-test: the one applied; k-fold: fitted on all pairs).
    """
    t0 = time.perf_counter()
    if args.roc:
        check_matplotlib()                         # fail before the long part, not after it
    lfw = Path(args.lfw)
    if not lfw.is_dir():
        raise CommandError(f"LFW folder not found: {lfw}")
    pairs_path, pairs, test = _pairs(args.pairs, lfw, "pairs")
    fit_path, fit_list, fit = _pairs(args.fit_pairs, lfw, "fit pairs") if args.fit_pairs else (None, None, None)
    if args.folds is not None and (fit is not None or pairs.n_folds > 1):
        why = "--fit-pairs is given" if fit is not None else f"{args.pairs} has {pairs.n_folds} folds"
        raise CommandError(f"--folds applies only to a single-block (View 1) pairs file without --fit-pairs; {why}")
    fold, fold_source = None, None                 # decided before the long part, so a bad --folds fails fast
    if fit is None:
        if pairs.n_folds > 1:
            fold, fold_source = test.fold, "file"
        else:
            k = DEFAULT_FOLDS if args.folds is None else args.folds
            fold, fold_source = ver.person_folds(pairs.name_a, pairs.name_b, pairs.is_same, k), "assigned"
    loaded = open_model(args.model)
    warning = trained_people_warning(loaded.model.provenance, [pairs] + ([fit_list] if fit_list else []), lfw)
    if warning:
        print(warning, file=sys.stderr)
    theta = loaded.model.threshold
    t_loaded = time.perf_counter()

    # Every distinct image of both pair sets, embedded once.
    images_dir = ver.lfw_images_dir(lfw)
    paths = list(dict.fromkeys(test.paths_a + test.paths_b + ((fit.paths_a + fit.paths_b) if fit else ())))
    position = {p: i for i, p in enumerate(paths)}
    relative = [p.relative_to(images_dir).as_posix() for p in paths]
    run = compute_signatures(loaded, paths, relative, frame="lfw", flip=args.flip, batch_size=args.batch_size,
                             threads=args.threads, cache=not args.no_cache, progress=not args.quiet,
                             views=args.views)
    if run.skipped:
        i, rel, reason = run.skipped[0]
        raise CommandError(f"{paths[i]}: {reason} ({len(run.skipped)} unreadable image(s) in all; "
                           "no pair can be dropped without changing the protocol)")
    sig = run.signatures                                                       # (M, D)

    def distances(res):
        ia = np.array([position[p] for p in res.paths_a], dtype=np.int64)      # (P,)
        ib = np.array([position[p] for p in res.paths_b], dtype=np.int64)      # (P,)
        return metrics.squared_distances(sig[ia], sig[ib])                     # (P,)

    t = time.perf_counter()
    d, s = distances(test), test.is_same                                       # (P,), (P,)
    if fit is not None:
        result = ver.fit_and_test(distances(fit), fit.is_same, d, s, learned_threshold=theta)
        fitted = result.threshold
    else:
        result = ver.k_fold(d, s, fold, learned_threshold=theta)
        fitted = metrics.fit_threshold(d, s)
    learned = ver.with_learned_threshold(d, s, theta)
    t_protocol = time.perf_counter() - t

    report = result.to_json_dict()
    report.update({
        "fold_source": fold_source,
        "fold_assignment": (f"assigned by person (npface.verification.person_folds): no person in two folds, "
                            f"K = {result.n_folds}") if fold_source == "assigned" else None,
        "trained_people_warning": warning,
        "threshold_all_pairs": fitted if fit is None else None,
        "learned_threshold_protocol": learned.to_json_dict(),
        "pairs": str(pairs_path),
        "fit_pairs": None if fit is None else str(fit_path),
        "n_fit_pairs": None if fit is None else fit.n_pairs,
        "lfw": str(lfw),
        "crop": "lfw",
        "flip": bool(args.flip),
        "views": int(args.views),
        "model": loaded.describe(),
        "signatures": {"n_images": len(paths), "n_embedded": run.n_embedded, "n_cached": run.n_cached,
                       "cache_file": None if run.cache_file is None else str(run.cache_file)},
        "threads": args.threads,
        "npface_version": __version__,
    })
    timing = run.timing()
    timing.update({"load_model": round(t_loaded - t0, 4), "protocol": round(t_protocol, 4),
                   "total": round(time.perf_counter() - t0, 4)})
    report["timing"] = timing
    return report, (d, s, fitted)


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Verification accuracy of a face model on LFW pairs. The protocol follows from the arguments: "
                    "with --fit-pairs, the threshold is fitted on those pairs and tested on --pairs; else a pairs "
                    "file with folds (View 2, header 'folds N') gets k-fold cross-validation over its folds; else "
                    "(View 1, header 'N') k-fold over --folds folds assigned by person (no person in two folds). "
                    "A one-line warning goes to stderr when the pairs include people the model trained on (its "
                    "provenance's training list). The accuracy at the model's learned threshold "
                    "theta (nothing fitted) is always reported too. Signatures are cached per model file under "
                    "the npface cache folder ($NPFACE_CACHE, default ~/.cache/npface).")
    parser.add_argument("--lfw", required=True, metavar="DIR",
                        help="the LFW folder: the one holding lfw/<name>/<name>_NNNN.jpg, or that images folder "
                             "itself; images are cropped with the training crop (LFW_CROP of the 250x250 frame)")
    parser.add_argument("--pairs", required=True, metavar="FILE",
                        help="the pairs to test, in LFW's format (pairsDevTrain.txt, pairsDevTest.txt, pairs.txt): "
                             "a path, or a name inside --lfw")
    parser.add_argument("--fit-pairs", metavar="FILE",
                        help="fit the threshold on these pairs and test it on --pairs (fit-and-test protocol); a "
                             "path, or a name inside --lfw")
    parser.add_argument("--model", metavar="PATH",
                        help="model file (.npz) saved by npface; default: the pretrained model shipped with npface")
    parser.add_argument("--flip", action="store_true", help=FLIP_HELP)
    parser.add_argument("--views", type=int, choices=VIEWS, default=1, help=VIEWS_HELP)
    parser.add_argument("--folds", type=int, metavar="K",
                        help=f"for a View 1 file (one block of pairs): the number of folds to assign "
                             f"(default {DEFAULT_FOLDS}); not allowed with --fit-pairs or a file with folds")
    parser.add_argument("--json", type=output_file, metavar="OUT",
                        help="write the full report as JSON: protocol, n_pairs, accuracy, accuracy_std, auc, eer, "
                             "tar_at_far, threshold, learned_threshold_accuracy, per-fold figures, the model's path, "
                             "hash and provenance, flip, views, timing")
    parser.add_argument("--roc", metavar="OUT.png",
                        help="draw the ROC curve of the test pairs with the fitted threshold and the learned theta "
                             "marked (needs matplotlib: pip install 'npface[plots]')")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help=f"threads for the network, 1 to {max_threads()} "
                             "(default 1, as on the paper's single core)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="B", help="images per forward pass (default 64)")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor update the signature cache (embed every image)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.folds is not None and args.folds < 2:
        parser.error(f"--folds must be >= 2, got {args.folds}")
    check_common_args(parser, args)
    try:
        report, (d, s, fitted) = evaluate(args)
        if args.json:
            text = json.dumps(report, indent=1, allow_nan=False) + "\n"
            write_output(args.json, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        if args.roc:
            label = "fitted threshold" if report["protocol"] == "fit-and-test" else "threshold fitted on all pairs"
            plot_roc(args.roc, d, s, [(label, fitted), ("learned theta", report["learned_threshold"])],
                     f"{Path(args.pairs).name}: {report['protocol']}, accuracy {report['accuracy']:.4f}, "
                     f"AUC {report['auc']:.4f}")
    except USER_ERRORS as e:
        print_error(PROG, e)
        return 1
    print("\n".join(summary_lines(report)))
    if args.json:
        print(f"report written to {args.json}")
    if args.roc:
        print(f"ROC curve written to {args.roc}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
