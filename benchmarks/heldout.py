"""Held-out accuracy on *selection* or *report* people: the protocol for choosing settings and reporting a model.

    python -m benchmarks.heldout --lfw ../shared/lfw --model runs/x/model.npz --people selection
    python -m benchmarks.heldout --lfw ../shared/lfw --model final.npz --people report      # once per final model

The people ``npface.train`` holds out of peopleDevTrain.txt (10%, split seed
0, never trained on; ``benchmarks.accuracy.trainer_split``) are split for
good into two groups by a fixed rule on their names (``protocol_part``):

- *selection* people: every choice of settings (a lever kept or not, a
  learning rate, a step count) is made on them, as often as needed;
- *report* people: a final model is measured on them once, and nothing is
  chosen on that figure, so it is an honest estimate for new people.

The rule: a person is a report person when the first byte of the SHA-256 of
their name (UTF-8) is odd. It depends on the name only, not on the list or
a seed, so it is the same on any machine and for any list of people.
(On peopleDevTrain: 205 selection and 199 report people; 64 and 59 of them
with at least two images.)

Within the chosen group, ``benchmarks.accuracy``'s fit-and-test protocol
runs: the group's people are halved (seed 0) into fit and test people,
balanced same/different pairs are drawn among each (``--n-fit``,
``--n-test``; no grouping of people, which would cap the same pairs at
about 100 a file), a threshold is fitted on the fit pairs and tested on the
test pairs (``npface.eval --fit-pairs``), without and with test-time flip.
Reported: the accuracy with its 95% Wilson interval over the test pairs,
the AUC, the EER, and the accuracy at the model's learned theta.

Few held-out people have two images or more, so the interval is wide (and
counts pairs as independent although they share people: the spread over
people is wider still). Two models measured on the same pairs differ by
much less noise than either interval suggests: compare runs by the
difference on the same pairs, as ``benchmarks.levers`` does.
"""
import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

from benchmarks.accuracy import evaluate, write_protocol
from benchmarks.common import params_digest, write_json
from npface.cli import HelpFormatter, check_output, output_file, run_main
from npface.faces import check_common_args

PARTS = ("selection", "report")
Z95 = 1.959963984540054                       # the standard normal's 97.5% quantile
N_PAIRS = 300                                 # same pairs (and as many different) per file, by default
# (the report people's fit half has 364 distinct same pairs in all)


def protocol_part(name: str) -> str:
    """'report' when the first byte of sha256(name) is odd, else 'selection'."""
    return PARTS[hashlib.sha256(name.encode("utf-8")).digest()[0] % 2]


def people_of(part: str, held_out) -> list:
    """The held-out people (names) of ``part`` ('selection' or 'report'), sorted."""
    if part not in PARTS:
        raise ValueError(f"--people must be one of {', '.join(PARTS)}, got {part!r}")
    return sorted(n for n in held_out if protocol_part(n) == part)


def wilson(p: float, n: int, z: float = Z95) -> tuple:
    """The Wilson score interval (low, high) of a proportion p observed over n trials."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def measure(lfw, model, part, work, n_fit=N_PAIRS, n_test=N_PAIRS, threads=1, log=print, views=(1,)) -> dict:
    """Fit-and-test on ``part``'s people, without and with flip (and with each test-time view count of
    ``views`` after the first); the results dict of the results file (``summary``: the headline figures,
    keyed "plain", "flip", "views5", "views5 flip", ...)."""
    work = Path(work)
    protocol = write_protocol(lfw, work, n_fit, n_test, choose=lambda held_out: people_of(part, held_out),
                              groups=1)
    results = evaluate(lfw, model, protocol, work, threads, log, kinds=("fit-and-test",), views=views)
    summary = {}
    for key, r in results.items():
        low, high = wilson(r["accuracy"], r["n_pairs"])
        summary[key.replace("fit-and-test", "").strip() or "plain"] = {
            "accuracy": r["accuracy"], "accuracy_95": [low, high], "auc": r["auc"], "eer": r["eer"],
            "learned_threshold_accuracy": r["learned_threshold_accuracy"], "threshold": r["threshold"],
            "learned_threshold": r["learned_threshold"], "test_pairs": r["n_pairs"]}
    return {"people": part, "protocol": protocol, "results": results, "summary": summary}


def _init_record(provenance) -> dict:
    """What a model's training started from, as its provenance says: the kind of starting model, how it was
    made (e.g. the alignment pretraining's steps) and its held-out landmark error, where recorded."""
    init = provenance.get("init_provenance") or {}
    return {"path": provenance.get("init"), "kind": init.get("kind"), "settings": init.get("settings"),
            "heldout_landmark_error_px": init.get("heldout_landmark_error_px")}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.heldout", formatter_class=HelpFormatter,
        description="Fit-and-test verification accuracy (95% interval), AUC, EER and learned-theta accuracy, "
                    "without and with flip, on the selection or the report people held out of training.")
    parser.add_argument("--lfw", required=True, metavar="DIR", help="LFW's root (holding lfw/ and the list files)")
    parser.add_argument("--model", metavar="PATH", help="model file (default: the shipped model)")
    parser.add_argument("--people", required=True, choices=PARTS,
                        help="selection: for choosing settings; report: once per final model")
    parser.add_argument("--n-fit", type=int, default=N_PAIRS, help="same pairs (and as many different) to fit on")
    parser.add_argument("--n-test", type=int, default=N_PAIRS, help="same pairs (and as many different) to test on")
    parser.add_argument("--work", metavar="DIR", help="folder for the pairs files and eval reports (they name LFW "
                        "files: keep them out of the project; default: runs/heldout/<people>)")
    parser.add_argument("--threads", type=int, default=1, help="threads for the network")
    parser.add_argument("--views", action="store_true",
                        help="also measure with 5 test-time views (npface.eval --views 5), without and with flip")
    parser.add_argument("--align-rounds", type=int, metavar="R",
                        help="measure the model run with R alignment rounds (npface.model.ModelConfig.align_rounds; "
                             "its copy is written to --work) instead of the number its file holds")
    parser.add_argument("--json", type=output_file, metavar="OUT",
                        help="result file (default: benchmarks/results/heldout-<people>.json)")
    args = parser.parse_args(argv)
    if args.n_fit < 1 or args.n_test < 1:
        parser.error("--n-fit and --n-test must be at least 1")
    if args.align_rounds is not None and args.align_rounds < 1:
        parser.error("--align-rounds must be at least 1")
    check_common_args(parser, args)                       # --threads, as npface.eval checks it
    out_json = args.json or f"benchmarks/results/heldout-{args.people}.json"
    check_output(parser, "--json", out_json)
    t = time.perf_counter()
    from npface.model import load
    work = Path(args.work or f"runs/heldout/{args.people}")
    try:
        model = load(args.model)                          # a bad --model fails here, before the long part
        provenance = model.provenance
        path = args.model
        if args.align_rounds is not None:                 # the same weights, another network: a file of its own
            model = model.with_align_rounds(args.align_rounds)
            work.mkdir(parents=True, exist_ok=True)
            path = str(work / f"model-rounds{args.align_rounds}.npz")
            model.save(path)
        out = measure(args.lfw, path, args.people, work, args.n_fit, args.n_test, args.threads,
                      views=(1, 5) if args.views else (1,))
    except (OSError, ValueError, RuntimeError) as e:
        print(f"python -m benchmarks.heldout: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if args.align_rounds is not None:
        out["align_rounds"] = args.align_rounds
    out.update({"model": args.model or "shipped", "model_sha256": params_digest(model),
                "model_trained_steps": provenance.get("trained_steps"),
                "model_config": provenance.get("config"), "model_init": _init_record(provenance),
                "seconds": time.perf_counter() - t, "date": time.strftime("%Y-%m-%d")})
    write_json(out_json, out)
    for key, s in out["summary"].items():
        print(f"{args.people} people, {key}: accuracy {s['accuracy']:.4f} (95% {s['accuracy_95'][0]:.4f}-"
              f"{s['accuracy_95'][1]:.4f}), AUC {s['auc']:.4f}, EER {s['eer']:.4f}, learned theta "
              f"{s['learned_threshold_accuracy']:.4f}")
    print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.heldout"))
