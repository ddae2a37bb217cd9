"""Each training lever alone, from the same start, measured on the selection people against one baseline run.

    python -m benchmarks.levers --lfw ../shared/lfw --steps 1000             # every lever, hours
    python -m benchmarks.levers --lfw ../shared/lfw --steps 1000 --only baseline --only singletons
    python -m benchmarks.levers --lfw ../shared/lfw --quick                  # 3 tiny steps each, to try the tool

The baseline is the ``recipe2500`` recipe, the model shipped from 2026-12-02
to 2026-12-05 (``npface.train --init runs/align_pretrained.npz
--align-lr-scale 0 --lr-drops 0.85``, 16 x 16 batches, seed 0), for
``--steps`` steps. Every other lever is that same
command with one change (``LEVERS``; ``python -m benchmarks.levers --list``
prints them):

- a training flag (single-image people, appearance augmentation, stronger
  similarity jitter, the jitter drawing on the picture around the crop, weight decay, the alignment net fine-tuned at a small
  rate with the landmark loss as a regulariser, other batch shapes, a
  longer schedule, a lower or higher base learning rate);
- ``synthetic-pretrain``: a first run on synthetic faces (``--synthetic-steps``)
  from the same start, whose model the LFW run then starts from (``--init``);
- ``average``: no run; the mean of the baseline's last kept checkpoints
  (``python -m npface.average``);
- ``flip``: no run; the baseline with test-time flip.

Each trained model is measured by ``benchmarks.heldout`` on the *selection*
people (never the report people: they are kept for the final model), all on
the same pairs, so a lever's delta against the baseline is a paired
difference. With the ``detect`` extra, each is also measured for how well
its decisions survive real framing: ``benchmarks.photos``' verify agreement
(``--frame detect`` on the selection people's images pasted into larger
pictures, against the decisions on their original frames; ``framing``).
The model measured is the run's final ``model.npz``, never its
``best.npz``: that one was picked on the trainer's validation pairs, which
are drawn from all the held-out people, report people included. Runs live in ``--runs`` (one folder per lever) and are managed
as ``benchmarks.convergence`` manages its own: a finished run is reused (its
settings checked against the command), an interrupted one resumed, so the
command can be stopped and started again at will; a finished measurement
(``selection.json`` in the run's folder) is reused too.
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple, Tuple

from benchmarks.common import write_json
from benchmarks.convergence import read_run, train_or_resume
from benchmarks.heldout import N_PAIRS, measure
from npface.cli import HelpFormatter, check_output, output_file, run_main

BASELINE = "baseline"
QUICK_STEPS = 3
QUICK_BASE = ("--batch-identities", "4", "--images-per-identity", "4", "--val-pairs", "40", "--validate-every", "3",
              "--checkpoint-every", "1")
QUICK_PAIRS = 20
KEEP = 3                                  # checkpoints every run keeps (the average lever uses the baseline's)
FRAMING_PAIRS = 400                       # pasted-picture pairs of selection people for the framing agreement


class Lever(NamedTuple):
    name: str
    what: str
    flags: Tuple[str, ...] = ()           # npface.train flags added to the baseline command
    quick_flags: Tuple[str, ...] = None   # the same for --quick (default: flags)
    steps: float = 1.0                    # the run's steps, as a multiple of --steps
    kind: str = "train"                   # train | synthetic (pretrain on synthetic faces first) | average | flip


LEVERS = (
    Lever(BASELINE, "the `recipe2500` recipe (the model shipped from 2026-12-02 to 2026-12-05)"),
    Lever("singletons", "64 single-image people in each batch, as extra not-same partners",
          ("--singletons", "64"), ("--singletons", "4")),
    Lever("appearance", "colour jitter 0.3, blur 0.2, grayscale 0.1, random erasing 0.25",
          ("--color-jitter", "0.3", "--blur", "0.2", "--grayscale", "0.1", "--erase", "0.25")),
    Lever("strong-jitter", "similarity jitter of +-15 degrees, +-15% scale, +-0.1 shift (from 8, 8%, 0.06)",
          ("--jitter-rotation", "15", "--jitter-scale", "0.15", "--jitter-shift", "0.1")),
    Lever("context-jitter", "the jitter draws on the picture around the training crop instead of black borders",
          ("--jitter-context",)),
    Lever("weight-decay", "L2 weight decay 5e-4 on the weights", ("--weight-decay", "5e-4")),
    Lever("align-finetune", "the alignment net trained jointly at 0.1 of the learning rate, with 0.02 x the "
          "landmark loss as a regulariser", ("--align-lr-scale", "0.1", "--landmark-weight", "0.02")),
    Lever("batch-32x8", "32 people x 8 images (the same 256 images a step)",
          ("--batch-identities", "32", "--images-per-identity", "8"),
          ("--batch-identities", "8", "--images-per-identity", "2")),
    Lever("batch-64x4", "64 people x 4 images (the same 256 images a step; fewer repeats of a person's few images)",
          ("--batch-identities", "64", "--images-per-identity", "4"),
          ("--batch-identities", "8", "--images-per-identity", "2")),
    Lever("batch-128x2", "128 people x 2 images (the same 256 images a step; never the same photo twice in a person)",
          ("--batch-identities", "128", "--images-per-identity", "2"),
          ("--batch-identities", "8", "--images-per-identity", "2")),
    Lever("distinct-photos", "the 16 x 16 batch, with the same pairs that are one photo twice left out of the loss",
          ("--distinct-photos",)),
    Lever("seed-1", "the baseline with another seed (1): how far the screen moves by chance alone",
          ("--seed", "1")),
    Lever("lr-low", "base learning rate 0.003 (from 0.01; still x0.1 at 85% of the run)", ("--lr", "0.003")),
    Lever("lr-high", "base learning rate 0.03 (from 0.01; still x0.1 at 85% of the run)", ("--lr", "0.03")),
    Lever("batch-32x16", "32 people x 16 images for half the steps (the same images in all)",
          ("--batch-identities", "32", "--images-per-identity", "16"),
          ("--batch-identities", "8", "--images-per-identity", "4"), steps=0.5),
    Lever("long", "twice the steps", steps=2.0),
    Lever("synthetic-pretrain", "the signature net first trained on synthetic faces, then on LFW from there",
          kind="synthetic"),
    Lever("average", f"the mean of the baseline's last {KEEP} checkpoints (npface.average)", kind="average"),
    Lever("flip", "the baseline measured with test-time flip", kind="flip"),
)
NAMES = tuple(lv.name for lv in LEVERS)
EARLIER_BASELINE = "baseline-earlier"      # an earlier invocation's baseline, kept when a re-run differs


def run_steps(lever: Lever, steps: int) -> int:
    return max(1, int(round(lever.steps * steps)))


def base_command(lfw, out, steps, init, threads, quick):
    """The baseline's ``python -m npface.train`` command line, training into ``out``."""
    cmd = [sys.executable, "-m", "npface.train", "--lfw", str(lfw), "--people", "peopleDevTrain.txt",
           "--lr-drops", "0.85", "--steps", str(steps), "--seed", "0", "--threads", str(threads),
           "--keep-checkpoints", str(KEEP), "--out", str(out)]
    if init:
        cmd += ["--init", str(init), "--align-lr-scale", "0"]
    # validations only show progress (the lever is judged on the selection people): every 100 steps;
    # checkpoints every 50, so the kept ones fall after the learning-rate drop of a run of 400 steps or more
    cmd += list(QUICK_BASE) if quick else ["--validate-every", "100", "--checkpoint-every", "50"]
    return cmd


def lever_command(lever: Lever, lfw, root, steps, init, threads, quick, synthetic_steps):
    """The training command lines of one lever, in order (none for average and flip)."""
    if lever.kind in ("average", "flip"):
        return []
    out = Path(root) / lever.name
    flags = list(lever.flags if not quick or lever.quick_flags is None else lever.quick_flags)
    if lever.kind == "synthetic":
        stage = Path(root) / "synthetic-stage1"
        first = base_command(lfw, stage, synthetic_steps, init, threads, quick)
        i = first.index("--lfw")
        del first[i:i + 4]                                    # --lfw DIR --people FILE: synthetic faces instead
        second = base_command(lfw, out, run_steps(lever, steps), init, threads, quick)
        if init:                                              # start from the synthetic run's model instead
            j = second.index("--init")
            second[j + 1] = str(stage / "model.npz")
        else:
            second += ["--init", str(stage / "model.npz")]
        return [first, second]
    return [base_command(lfw, out, run_steps(lever, steps), init, threads, quick) + flags]


def expected_config(cmd) -> dict:
    """The config.json a run of ``cmd`` (a ``python -m npface.train`` command line) writes, world size aside."""
    from npface.train import config_from_args, parser
    config = config_from_args(parser().parse_args(cmd[3:])).to_json()
    config.pop("world_size")
    return json.loads(json.dumps(config))                      # tuples as lists, as read back from the file


def check_settings(cmd):
    """Refuse to reuse a run folder whose config.json differs from what ``cmd`` would write.

    A setting missing from the file did not exist when the run was made, so the run had its
    default (as ``TrainConfig.from_json`` reads it back when the run resumes).
    """
    from npface.training import TrainConfig
    out = Path(cmd[cmd.index("--out") + 1])
    defaults = json.loads(json.dumps(TrainConfig().to_json()))
    got = {**defaults, **json.loads((out / "config.json").read_text())}
    got.pop("world_size", None)
    want = expected_config(cmd)
    diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    if diff:
        raise ValueError(f"{out} holds a run made with other settings ({', '.join(diff)}) than "
                         f"'python {' '.join(cmd[1:])}'; remove it or pass another --runs folder")


def delta(summary, base) -> dict:
    """Differences (lever - baseline) of the headline figures."""
    keys = ("accuracy", "auc", "eer", "learned_threshold_accuracy")
    return {k: summary[k] - base[k] for k in keys}


def keep_earlier_baseline(results, earlier, ran):
    """``results`` (name -> entry) with the baseline of an earlier invocation kept beside this one's.

    A lever is compared with the baseline run by the same invocation of the same build (``compared_with``).
    When this invocation re-ran the baseline and it came out differently (a changed build rounds
    differently, so even the same command and seed drift), the earlier baseline stays, as
    ``baseline-earlier`` (or ``baseline-earlier-2``, ... if taken) placed after it, and the levers carried over from that invocation are compared
    with it; the two baselines' difference shows how far one recipe moves between two such runs.
    """
    new = results.get(BASELINE)
    if earlier is None or new is None or BASELINE not in ran or earlier.get("selection") == new.get("selection"):
        return results
    taken = set(results)
    name = next(n for n in (EARLIER_BASELINE, *(f"{EARLIER_BASELINE}-{i}" for i in range(2, len(taken) + 2)))
                if n not in taken)
    kept = {**earlier, "what": "the same command, run by an earlier build (the levers below it that were not "
                              "re-run are compared with this one)", "compared_with": name}
    out = {}
    for lever, entry in results.items():
        if lever not in ran and entry.get("compared_with", BASELINE) == BASELINE:
            entry = {**entry, "compared_with": name}
        out[lever] = entry
        if lever == BASELINE:
            out[name] = kept
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.levers", formatter_class=HelpFormatter,
        description="Train each accuracy lever alone from the same start and measure its held-out accuracy on "
                    "the selection people against the baseline run (benchmarks/results/levers.json).")
    parser.add_argument("--lfw", required=True, metavar="DIR", help="LFW's root (holding lfw/ and the list files)")
    parser.add_argument("--steps", type=int, default=1000, help="steps of the baseline run (levers scale it)")
    parser.add_argument("--synthetic-steps", type=int, default=None,
                        help="steps of synthetic-pretrain's first run (default: --steps)")
    parser.add_argument("--only", action="append", choices=NAMES, metavar="NAME",
                        help=f"run only this lever (repeatable; the baseline always runs): {', '.join(NAMES)}")
    parser.add_argument("--list", action="store_true", help="print the levers and their flags, and stop")
    parser.add_argument("--init", default="runs/align_pretrained.npz", metavar="MODEL",
                        help="the common start, a model with a pretrained alignment net (python -m "
                             "npface.pretrain_alignment; --quick starts from a fresh model without it)")
    parser.add_argument("--n-pairs", type=int, default=None,
                        help=f"same pairs (and as many different) to fit on and to test on (default {N_PAIRS}, "
                             f"--quick {QUICK_PAIRS})")
    parser.add_argument("--runs", metavar="DIR", help="folder of the run folders (default: runs/levers, "
                        "with --quick runs/levers-quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_STEPS} steps of 4 x 4 batches from a fresh model, {QUICK_PAIRS} pairs: "
                             "checks the tool end to end in a minute or two (overrides --steps)")
    parser.add_argument("--threads", type=int, default=2, help="training and evaluation threads")
    parser.add_argument("--json", type=output_file, metavar="OUT",
                        help="result file (default: benchmarks/results/levers.json, "
                             "with --quick runs/levers-quick/levers.json)")
    args = parser.parse_args(argv)
    if args.list:
        for lv in LEVERS:
            print(f"{lv.name:20s} {lv.what}" + (f"  [{' '.join(lv.flags)}]" if lv.flags else ""))
        return 0
    if args.steps < 1 or (args.synthetic_steps is not None and args.synthetic_steps < 1):
        parser.error("--steps and --synthetic-steps must be at least 1")
    check_output(parser, "--json", result_path(args))
    try:
        return run(args)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"python -m benchmarks.levers: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


def result_path(args) -> str:
    """Where the results go: --json, else levers.json under the runs' folder with --quick, else
    benchmarks/results/levers.json."""
    root = Path(args.runs or ("runs/levers-quick" if args.quick else "runs/levers"))
    return args.json or (str(root / "levers.json") if args.quick else "benchmarks/results/levers.json")


def run(args, log=print):
    t = time.perf_counter()
    quick = args.quick
    steps = QUICK_STEPS if quick else args.steps
    synthetic_steps = QUICK_STEPS if quick else (args.synthetic_steps or steps)
    n_pairs = args.n_pairs or (QUICK_PAIRS if quick else N_PAIRS)
    framing_pairs = QUICK_PAIRS if quick else FRAMING_PAIRS
    root = Path(args.runs or ("runs/levers-quick" if quick else "runs/levers"))
    out_json = result_path(args)
    init = None if quick else args.init
    if init and not Path(init).is_file():
        raise FileNotFoundError(f"--init: {init} not found; make it with python -m npface.pretrain_alignment "
                                f"--lfw {args.lfw} --out {init}")
    chosen = [lv for lv in LEVERS if lv.name == BASELINE or not args.only or lv.name in args.only]
    previous = json.loads(Path(out_json).read_text()) if Path(out_json).is_file() else {}
    if previous.get("steps") != steps or previous.get("quick") != quick:
        previous = {}                                       # results of other settings are not merged
    results = dict(previous.get("levers", {}))

    def selection(name, model):
        cache = root / name / "selection.json"
        if cache.is_file():
            return json.loads(cache.read_text())
        log(f"measuring {name} on the selection people")
        out = measure(args.lfw, str(model), "selection", root / "eval" / name, n_pairs, n_pairs, args.threads, log)
        write_json(cache, out)
        return out

    pasted = []                                         # the pasted pictures, made once when a lever needs them

    def framing(name, model):
        """``benchmarks.photos``' verify agreement on pasted pictures of selection people (--frame detect against
        the original frames): how much a lever steadies the signatures against framing (issue: your own photos)."""
        cache = root / name / "framing.json"
        if cache.is_file():
            return json.loads(cache.read_text())
        from npface.extras import MissingExtra
        from npface.model import load
        from benchmarks.photos import agreement, pasted_pictures
        try:
            if not pasted:
                log(f"pasting {framing_pairs} pairs of selection people into pictures and detecting their faces")
                pasted.append(pasted_pictures(args.lfw, framing_pairs, people="selection", log=log))
        except MissingExtra as e:
            log(f"framing agreement not measured: {e}")
            return None
        out = agreement(pasted[0], load(model))
        write_json(cache, out)
        return out

    for lever in chosen:
        commands = lever_command(lever, args.lfw, root, steps, init, args.threads, quick, synthetic_steps)
        status = "done"
        for cmd in commands:
            out = Path(cmd[cmd.index("--out") + 1])
            status = train_or_resume(out, lambda cmd=cmd: cmd, lambda cmd=cmd: check_settings(cmd), log)
            if status != "done":
                break
        entry = {"what": lever.what, "kind": lever.kind, "flags": list(lever.flags), "status": status,
                 "commands": ["python " + " ".join(c[1:]) for c in commands]}
        if lever.kind == "average":
            from npface.average import average
            from npface.training import kept_checkpoints
            kept = kept_checkpoints(root / BASELINE)
            if not kept:
                raise FileNotFoundError(f"no ckpt-*.npz in {root / BASELINE} to average")
            model = root / "average" / "model.npz"
            if not model.is_file():
                average(kept).save(model)
            entry["commands"] = [f"python -m npface.average {' '.join(map(str, kept))} --out {model}"]
            entry["selection"] = selection(lever.name, model)["summary"]["plain"]
            entry["framing"] = framing(lever.name, model)
        elif lever.kind == "flip":
            entry["selection"] = selection(BASELINE, root / BASELINE / "model.npz")["summary"]["flip"]
        elif status == "done":
            run_info = read_run(root / lever.name)
            entry.update(steps=run_info["steps"], train_seconds=run_info["train_seconds"],
                         median_step_seconds=run_info["median_step_seconds"])
            measured = selection(lever.name, root / lever.name / "model.npz")
            entry["selection"] = measured["summary"]["plain"]
            entry["selection_flip"] = measured["summary"]["flip"]
            entry["framing"] = framing(lever.name, root / lever.name / "model.npz")
        entry["compared_with"] = BASELINE
        results[lever.name] = entry
    results = keep_earlier_baseline(results, previous.get("levers", {}).get(BASELINE), {lv.name for lv in chosen})
    for entry in results.values():
        base = results[entry.get("compared_with", BASELINE)].get("selection")
        entry["delta"] = delta(entry["selection"], base) if base and entry.get("selection") else None
    write_json(out_json, {"levers": results, "baseline": BASELINE, "steps": steps, "quick": quick,
                          "synthetic_steps": synthetic_steps, "init": init or "fresh seed-0 model",
                          "people": "selection", "pairs": {"fit": n_pairs, "test": n_pairs},
                          "seconds": time.perf_counter() - t, "date": time.strftime("%Y-%m-%d")})
    for name, entry in results.items():
        d = entry["delta"]
        if d is not None:
            f = entry.get("framing")
            log(f"{name:20s} accuracy {entry['selection']['accuracy']:.4f} ({d['accuracy']:+.4f}), AUC "
                f"{entry['selection']['auc']:.4f} ({d['auc']:+.4f})"
                + (f", detect agreement {f['agreement']:.4f}" if f else ""))
        else:
            log(f"{name:20s} {entry['status']}")
    log(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.levers"))
