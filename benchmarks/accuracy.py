"""The shipped model's verification accuracy on held-out people, LFW development-test style.

    python -m benchmarks.accuracy --lfw ../shared/lfw

LFW's View 1 fits a threshold on pairsDevTrain and tests it on pairsDevTest,
whose people are disjoint. pairsDevTest is not available here, and
pairsDevTrain's people are the ones we train on, so the same protocol is
rebuilt from the people npface.train holds out of peopleDevTrain.txt (10%,
split seed 0, never trained on):

- the held-out people are split in two halves by person (seed 0): *fit*
  people and *test* people;
- ``--n-fit`` same and as many different pairs are drawn among the fit
  people, ``--n-test`` of each among the test people
  (``npface.data.sampler.validation_pairs``), and written as View 1 pairs files
  (into ``--work``, outside the project: they list LFW file names);
- ``python -m npface.eval --fit-pairs fit --pairs test`` (the fit-and-test
  protocol) gives the accuracy, without and with test-time flip, and a 10-fold
  cross-validation over the test pairs alone (people-disjoint folds,
  ``npface.verification.person_folds``) is reported beside it;
- for comparison, the test pairs at a threshold fitted on ``pairsDevTrain.txt``:
  the model's own training people, on whom it separates far better than on
  new people, so that threshold is biased.

These people also served as the trainer's validation set, which chose among
training settings, so the figure is slightly optimistic; LFW's own
pairsDevTest people would be untouched.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import params_digest, write_json
from npface.cli import HelpFormatter, output_file, run_main
from npface.data.cache import atomic_write_text


def pair_lines(ds, pairs, same):
    """LFW View 1 lines: same pairs 'name n1 n2' first, then different 'name1 n1 name2 n2'."""
    def name_number(i):
        stem = Path(ds.files[i]).name.rsplit(".", 1)[0]               # <Name>_NNNN
        name, number = stem.rsplit("_", 1)
        return name, int(number)
    same_lines, diff_lines = [], []
    for (i, j), s in zip(pairs, same):
        (na, a), (nb, b) = name_number(i), name_number(j)
        if s:
            same_lines.append(f"{na}\t{a}\t{b}")
        else:
            diff_lines.append(f"{na}\t{a}\t{nb}\t{b}")
    return [str(len(same_lines))] + same_lines + diff_lines


def trainer_split(identities):
    """(trained-on, held-out) people as ``npface.train`` splits them (its default --val-fraction, seed 0)."""
    from npface.data.folders import split_identities
    from npface.training import TrainConfig
    return split_identities(identities, TrainConfig().val_fraction, seed=0)


def write_protocol(lfw, work, n_fit, n_test, people="peopleDevTrain.txt", seed=0, choose=None, groups=10):
    """Write fit.txt and test.txt (View 1 format) for the held-out people; returns their paths and counts.

    choose: a function of the sorted held-out names returning the ones to use (default: all of them).
    groups: the pairs are drawn within that many groups of people (10: npface.eval can make 10
    people-disjoint folds of the test file; 1: no such constraint, so more distinct same pairs exist).
    """
    from npface.data.folders import load_lfw
    from npface.data.sampler import validation_pairs
    ds = load_lfw(lfw, people, progress=True)          # decoding takes seconds on a cold cache
    trained_on, held_out = trainer_split(ds.identities)
    if choose is not None:
        held_out = tuple(choose(held_out))
    perm = np.random.default_rng(seed).permutation(len(held_out))
    fit_people = sorted(held_out[i] for i in perm[: len(held_out) // 2])
    test_people = sorted(held_out[i] for i in perm[len(held_out) // 2:])
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, group, n in (("fit", fit_people, n_fit), ("test", test_people, n_test)):
        # drawn within 10 groups of people, so npface.eval's people-disjoint 10 folds exist for the test file
        pairs, same = validation_pairs(ds.labels, n, seed=seed, indices=ds.indices_of(group), n_groups=groups)
        path = work / f"{name}.txt"
        atomic_write_text(path, "\n".join(pair_lines(ds, pairs, same)) + "\n")
        out[name] = {"path": str(path), "people": len(group), "pairs": int(len(same))}
    position = {name: i for i, name in enumerate(ds.identities)}
    counts = ds.counts[[position[n] for n in trained_on]]                # (P,) images per training person
    out["training_data"] = {"people": int(len(counts)), "images": int(counts.sum()),
                            "people_with_2_or_more": int((counts >= 2).sum()),
                            "images_of_people_with_2_or_more": int(counts[counts >= 2].sum())}
    return out


KINDS = ("fit-and-test", "10-fold", "fit on training people")


def evaluate(lfw, model, protocol, work, threads=1, log=print, kinds=KINDS, views=(1,)):
    """Fit-and-test and test-only 10-fold, each without and with flip, through ``npface.eval``; and the test pairs
    at a threshold fitted on pairsDevTrain.txt, whose people are the model's training people (``kinds``: which
    of these three, in ``KINDS``). ``views``: the test-time view counts to measure (``npface.eval --views``);
    a count V > 1 adds the keys "<kind> viewsV" and "<kind> viewsV flip"."""
    from npface import eval as npeval
    results = {}
    for v, flip in [(v, flip) for v in views for flip in (False, True)]:
        for kind in kinds:
            if kind == "fit on training people" and (flip or v != 1):
                continue
            name = f"{kind}{f' views{v}' if v != 1 else ''}{' flip' if flip else ''}"
            out = Path(work) / f"{name.replace(' ', '-')}.json"
            argv = ["--lfw", str(lfw), "--pairs", protocol["test"]["path"], "--json", str(out), "--quiet",
                    "--threads", str(threads)]
            if kind == "fit-and-test":
                argv += ["--fit-pairs", protocol["fit"]["path"]]
            elif kind == "fit on training people":     # the bias of a threshold fitted on the model's own people
                argv += ["--fit-pairs", str(Path(lfw) / "pairsDevTrain.txt")]
            if model:
                argv += ["--model", str(model)]
            if flip:
                argv.append("--flip")
            if v != 1:
                argv += ["--views", str(v)]
            if npeval.main(argv) != 0:
                raise RuntimeError(f"python -m npface.eval {' '.join(argv)} failed")
            report = json.loads(out.read_text())
            keep = ("protocol", "n_pairs", "accuracy", "accuracy_std", "auc", "eer", "threshold",
                    "learned_threshold", "learned_threshold_accuracy", "trained_people_warning")
            results[name] = {k: report.get(k) for k in keep}
            log(f"{name}: accuracy {report['accuracy']:.4f}, AUC {report['auc']:.4f}")
    return results


def alignment_record(provenance) -> dict:
    """What the model's provenance records of its alignment net's pretraining (None when it records nothing)."""
    init = provenance.get("init_provenance") or {}
    if "heldout_landmark_error_px" not in init:
        return None
    return {"init": provenance.get("init"), "heldout_landmark_error_px": init["heldout_landmark_error_px"],
            "train_seconds": init.get("train_seconds"), "settings": init.get("settings")}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.accuracy",
        description="The shipped model's accuracy on held-out peopleDevTrain people with LFW's fit-and-test "
                    "protocol (threshold fitted on some people's pairs, tested on other people's).",
        formatter_class=HelpFormatter)
    parser.add_argument("--lfw", required=True, metavar="DIR", help="LFW's root (holding lfw/ and the list files)")
    parser.add_argument("--model", metavar="PATH", help="model file (default: the shipped model)")
    parser.add_argument("--n-fit", type=int, default=500, help="same pairs (and as many different) to fit on")
    parser.add_argument("--n-test", type=int, default=500, help="same pairs (and as many different) to test on")
    parser.add_argument("--work", default="runs/reproduce/accuracy", metavar="DIR",
                        help="folder for the pairs files and eval reports (they name LFW files: keep them out "
                             "of the project)")
    parser.add_argument("--threads", type=int, default=1, help="threads for the network")
    parser.add_argument("--json", type=output_file, default="benchmarks/results/accuracy.json", metavar="OUT",
                        help="result file")
    args = parser.parse_args(argv)
    t = time.perf_counter()
    from npface.model import load
    try:
        model = load(args.model)                            # a bad --model fails here, before the long part
        provenance = model.provenance
        protocol = write_protocol(args.lfw, args.work, args.n_fit, args.n_test)
        results = evaluate(args.lfw, args.model, protocol, args.work, args.threads)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"python -m benchmarks.accuracy: error: {e}", file=sys.stderr)
        return 2
    write_json(args.json, {"model": args.model or "shipped", "model_sha256": params_digest(model),
                           "protocol": protocol, "results": results,
                           "model_trained_steps": provenance.get("trained_steps"),
                           "model_validation_metrics": provenance.get("validation_metrics"),
                           "model_validation": provenance.get("validation"),
                           "model_config": provenance.get("config"),
                           "model_alignment": alignment_record(provenance),
                           "seconds": time.perf_counter() - t, "date": time.strftime("%Y-%m-%d")})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.accuracy"))
