"""Figure 4, measured over seeds: held-out accuracy against steps and wall time for Multibatch and random pairs.

    python -m benchmarks.convergence --lfw ../shared/lfw            # 10 runs x 1000 steps, about 5 hours here
    python -m benchmarks.convergence --lfw ../shared/lfw --quick    # 7 runs x 60 small steps, some minutes

Every run trains the same model (the pretrained alignment net of
``runs/align_pretrained.npz`` with a fresh signature net, the alignment net
frozen) on the same people (peopleDevTrain.txt minus the 10% held out for
validation), for the same number of steps with the same schedule (the
learning rate x0.1 at 85% of the run), validated on the same held-out pairs.
The seed fixes the batches (and their augmentation) and theta's starting
value. The runs, in order:

1. the learning-rate search for ``pairs`` (the paper's baseline: k/2
   independent random pairs of the training people), one run per rate of
   the grid, seed 0, as the paper tuned SGD for its baseline; ``multibatch``
   keeps the shipped model's 0.01;
2. the two arms over seeds: ``multibatch`` and ``pairs`` at its best rate
   (the highest held-out accuracy reached), seeds 0 .. ``--seeds`` - 1;
3. the same pair of runs with momentum 0 (the paper's plain SGD), seed 0,
   to see whether the comparison depends on the momentum (0.9 elsewhere).

An arm's curve is the mean over its seeds at each validated step, with the
min-max band; "steps to reach" an accuracy is given for the mean curve and as
the range over the seeds.

Each run is an ordinary ``python -m npface.train`` run in its own folder under
``--runs``, named ``<estimator>-lr<lr>-m<momentum>-seed<seed>``: a finished
run (model.npz present) is not run again, an interrupted one resumes from its
checkpoint. The result is read back from each run's metrics.jsonl: held-out
10-fold accuracy every 50 steps, and the training time at that step (the sum
of the steps' own durations: validation, checkpoints and start-up left out).
"""
import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from benchmarks.common import write_json
from npface.cli import HelpFormatter, check_output, output_file, run_main
from npface.data.cache import atomic_write_text

PAIRS_LRS = (0.01, 0.03, 0.003)          # the pairs learning-rate grid
QUICK_PAIRS_LRS = (0.01, 0.03)
MULTIBATCH_LR = 0.01
MOMENTUM = 0.9
SEEDS, QUICK_SEEDS = 3, 2
FORMAT = 2                               # convergence.json layout: arms over seeds (1: one run per setting)


class Run(NamedTuple):
    estimator: str
    lr: float
    momentum: float = MOMENTUM
    seed: int = 0

    @property
    def name(self):
        return f"{self.estimator}-lr{self.lr:g}-m{self.momentum:g}-seed{self.seed}"


def train_command(run: Run, out, lfw, steps, init=None, quick=False, threads=2):
    """The ``python -m npface.train`` command line of one run."""
    cmd = [sys.executable, "-m", "npface.train", "--lfw", str(lfw), "--people", "peopleDevTrain.txt",
           "--estimator", run.estimator, "--lr", f"{run.lr:g}", "--momentum", f"{run.momentum:g}",
           "--lr-drops", "0.85", "--steps", str(steps), "--seed", str(run.seed), "--threads", str(threads),
           "--out", str(out)]
    if init:
        cmd += ["--init", str(init), "--align-lr-scale", "0"]
    if quick:
        cmd += ["--batch-identities", "8", "--images-per-identity", "8", "--val-pairs", "400",
                "--validate-every", "15", "--checkpoint-every", "15"]
    else:
        cmd += ["--validate-every", "50", "--checkpoint-every", "50"]
    return cmd


DIVERGED = "diverged.txt"      # written into a run's folder when its training diverged


def train_all(runs, root, lfw, steps, init=None, quick=False, threads=2, log=print):
    """Run (or resume, or skip when finished or diverged) every run; returns {name: folder}.

    A run that diverges (a learning rate too high for its estimator) is an outcome, not a failure:
    it is marked with diverged.txt and its metrics up to that point are kept.
    """
    folders = {}
    for run in runs:
        out = Path(root) / run.name
        folders[run.name] = out
        train_or_resume(out, lambda: train_command(run, out, lfw, steps, init, quick, threads),
                        lambda: check_reused(out, run, steps, init), log)
    return folders


def train_or_resume(out, command, check, log=print) -> str:
    """Bring the ``python -m npface.train`` run in folder ``out`` to its end; returns 'done' or 'diverged'.

    A finished run (model.npz) or a diverged one (diverged.txt) is left as it is and an interrupted one
    (checkpoint.npz) is resumed, each after ``check()`` has accepted its settings (it raises otherwise);
    else ``command()`` (the full command line) starts it. Divergence (exit status 3) is marked with
    diverged.txt; any other failure raises RuntimeError.
    """
    from npface.train import EXIT_DIVERGED
    out = Path(out)
    if (out / "model.npz").is_file() or (out / DIVERGED).is_file():
        check()
        status = "diverged" if (out / DIVERGED).is_file() else "done"
        log(f"{out}: {'diverged' if status == 'diverged' else 'finished'} earlier, reading its metrics")
        return status
    if (out / "checkpoint.npz").is_file():
        check()
        cmd = [sys.executable, "-m", "npface.train", "--resume", str(out)]
    else:
        cmd = command()
    log("$ python " + " ".join(cmd[1:]))
    # The run has a process group of its own, and a Ctrl-C here is passed on to it once per press: the first
    # lets it finish its step and checkpoint, a second stops it at once. (A Ctrl-C typed at a terminal would
    # reach both anyway; one sent to this process alone would not reach the run without this.)
    proc = subprocess.Popen(cmd, start_new_session=True)
    interrupted = False
    while proc.returncode is None:
        try:
            proc.wait()
        except KeyboardInterrupt:
            interrupted = True
            proc.send_signal(signal.SIGINT)
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    stopped = proc.returncode in [128 + s for s in stops] + [-s for s in stops]   # checkpointed, resumable
    if proc.returncode == EXIT_DIVERGED:
        atomic_write_text(out / DIVERGED, f"{' '.join(cmd[1:])}\nexited with status {EXIT_DIVERGED}: diverged\n")
        log(f"{out}: diverged; keeping its metrics up to that point")
    elif proc.returncode != 0 and not stopped:
        raise RuntimeError(f"training run {out} failed (exit status {proc.returncode}): {' '.join(cmd[1:])}")
    if interrupted:                       # whatever the run's own outcome, this command was asked to stop
        raise KeyboardInterrupt(f"training run {out} " + ("stopped; run the same command again to resume it"
                                                          if stopped else "had ended; the runs after it were not "
                                                          "started")) from None
    if stopped:                           # stopped by a signal sent to the run alone
        raise RuntimeError(f"training run {out} stopped before its end; run the same command again to resume it")
    return "diverged" if proc.returncode == EXIT_DIVERGED else "done"


def read_run(folder) -> dict:
    """Steps, training time and held-out accuracy of one run, from its config.json and metrics.jsonl.

    Training time is the sum of the steps' own durations (k / images_per_s of every step record), so
    it leaves out validations, checkpoints and start-up, and survives a resume. The "typical" time at a
    step is the step times the run's median step duration: a share of the machine taken by other work
    during part of a run inflates the sum but hardly the median, so the figures plot the typical time.
    """
    folder = Path(folder)
    from npface.training import TrainConfig
    k = TrainConfig.from_json(json.loads((folder / "config.json").read_text())).batch_size   # images per step
    step_seconds, val = {}, []
    with open(folder / "metrics.jsonl") as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            if "val_accuracy" in rec:
                val.append(rec)
            elif "loss" in rec:
                step_seconds[rec["step"]] = k / rec["images_per_s"]
    steps = np.array(sorted(step_seconds), dtype=np.int64)                 # (S,)
    durations = np.array([step_seconds[s] for s in steps])                 # (S,) seconds per step
    elapsed = dict(zip(steps.tolist(), np.cumsum(durations).tolist()))     # training time at the end of a step
    median = float(np.median(durations)) if len(durations) else float("nan")
    return {"folder": str(folder),
            "val_step": [r["step"] for r in val],
            "val_accuracy": [r["val_accuracy"] for r in val],
            "val_accuracy_std": [r["val_accuracy_std"] for r in val],
            "val_auc": [r["val_auc"] for r in val],
            "val_learned_threshold_accuracy": [r.get("val_learned_threshold_accuracy") for r in val],
            "val_seconds": [elapsed.get(r["step"], float("nan")) for r in val],
            # the same, robust to other load on the machine during part of a run: step x median step duration
            "val_seconds_typical": [r["step"] * median for r in val],
            "steps": int(steps[-1]) if len(steps) else 0,
            "diverged": (folder / DIVERGED).is_file(),
            "train_seconds": float(durations.sum()),
            "median_step_seconds": median}


def check_reused(folder, run: Run, steps, init):
    """Refuse to reuse a run folder made with other settings than the ones asked for."""
    config = json.loads((Path(folder) / "config.json").read_text())
    want = {"estimator": run.estimator, "lr": run.lr, "momentum": run.momentum, "seed": run.seed, "steps": steps,
            "init": str(init) if init else None}
    got = {key: config.get(key) for key in want}
    if got != want:
        raise ValueError(f"{folder} holds a run made with {got}, not the {want} asked for; remove it or pass "
                         "another --runs folder")


def first_step_reaching(run, accuracy):
    """The first validated step at which ``run`` reaches ``accuracy`` (None if it never does)."""
    for step, acc in zip(run["val_step"], run["val_accuracy"]):
        if acc >= accuracy - 1e-12:
            return step
    return None


def arm(runs: dict, names) -> dict:
    """Mean, min and max held-out accuracy over the seeds ``names`` of one setting, at the steps all validated."""
    members = [runs[n] for n in names]
    steps = sorted(set.intersection(*(set(r["val_step"]) for r in members))) if members else []
    acc = np.array([[dict(zip(r["val_step"], r["val_accuracy"]))[s] for s in steps] for r in members])  # (S, T)
    secs = np.array([[dict(zip(r["val_step"], r["val_seconds_typical"]))[s] for s in steps] for r in members])  # (S, T)
    out = {"runs": list(names), "seeds": len(members), "val_step": steps,
           "mean": acc.mean(0).tolist() if steps else [], "min": acc.min(0).tolist() if steps else [],
           "max": acc.max(0).tolist() if steps else [], "mean_seconds": secs.mean(0).tolist() if steps else [],
           "diverged": any(r["diverged"] for r in members)}
    for what, values in (("final", acc[:, -1] if steps else None), ("best", acc.max(1) if steps else None)):
        out[what] = None if values is None else {"mean": float(values.mean()), "min": float(values.min()),
                                                  "max": float(values.max())}
    return out


def steps_to_reach(curves: dict, names, target) -> dict:
    """First validated step at which the arm's mean curve, and each seed, reaches ``target`` (None: never)."""
    mean = {"val_step": curves["arm"]["val_step"], "val_accuracy": curves["arm"]["mean"]}
    per_seed = [first_step_reaching(curves["runs"][n], target) for n in names]
    reached = [s for s in per_seed if s is not None]
    return {"target": target, "mean_curve": first_step_reaching(mean, target), "seeds": per_seed,
            "min": min(reached) if reached else None, "max": max(reached) if len(reached) == len(per_seed) else None}


def best_rate(runs: dict, names) -> str:
    """The name of the run with the highest held-out accuracy reached, among those that did not diverge."""
    candidates = [n for n in names if runs[n]["val_accuracy"]]
    if any(not runs[n]["diverged"] for n in candidates):                   # a diverged run is nobody's best
        candidates = [n for n in candidates if not runs[n]["diverged"]]
    if not candidates:
        return None
    return max(candidates, key=lambda n: (max(runs[n]["val_accuracy"]), -len(n)))


def summarise(runs: dict, arms: dict) -> dict:
    """Both arms' final and best accuracy (mean, min, max over seeds) and the steps each needs to reach the other's."""
    mb, pairs = arms.get("multibatch"), arms.get("pairs")
    if not mb or not pairs or not mb["val_step"] or not pairs["val_step"]:  # nothing validated to compare
        return {"multibatch_final": None, "pairs_final": None, "multibatch_best": None, "pairs_best": None,
                "multibatch_steps_to_pairs_best": None, "pairs_steps_to_multibatch_final": None}
    out = {"multibatch_final": mb["final"], "pairs_final": pairs["final"],
           "multibatch_best": mb["best"], "pairs_best": pairs["best"],
           "multibatch_steps_to_pairs_best": steps_to_reach({"arm": mb, "runs": runs}, mb["runs"], max(pairs["mean"])),
           "pairs_steps_to_multibatch_final": steps_to_reach({"arm": pairs, "runs": runs}, pairs["runs"],
                                                             mb["mean"][-1])}
    m0, p0 = arms.get("multibatch-momentum0"), arms.get("pairs-momentum0")
    if m0 and p0 and m0["val_step"] and p0["val_step"]:
        out["momentum0"] = {"multibatch_final": m0["final"], "pairs_final": p0["final"],
                            "multibatch_steps_to_pairs_best": steps_to_reach({"arm": m0, "runs": runs}, m0["runs"],
                                                                             max(p0["mean"]))}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.convergence",
        description="Figure 4 over seeds: train with the multibatch estimator and with k/2 independent random pairs "
                    "(the pairs learning rate picked from a small grid), several seeds each, plus one momentum-0 "
                    "pair of runs; held-out accuracy against steps and wall time, mean and min-max band.",
        formatter_class=HelpFormatter)
    parser.add_argument("--lfw", required=True, metavar="DIR", help="LFW's root (holding lfw/ and the list files)")
    parser.add_argument("--init", default="runs/align_pretrained.npz", metavar="MODEL",
                        help="starting model with a pretrained alignment net (made by python -m "
                             "npface.pretrain_alignment when missing; --quick starts from scratch without it)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per run")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"seeds per arm (default {SEEDS}, with --quick {QUICK_SEEDS})")
    parser.add_argument("--runs", metavar="DIR",
                        help="folder of the run folders; finished runs are reused, interrupted ones resumed "
                             "(default: runs/reproduce/convergence, with --quick runs/reproduce-quick/convergence)")
    parser.add_argument("--quick", action="store_true",
                        help=f"60 steps of 8 x 8 batches, 400 validation pairs, pairs rates {QUICK_PAIRS_LRS} "
                             f"(overrides --steps)")
    parser.add_argument("--threads", type=int, default=2, help="training threads")
    parser.add_argument("--json", type=output_file, metavar="OUT",
                        help="result file (default: benchmarks/results/convergence.json, "
                             "with --quick runs/reproduce-quick/results/convergence.json)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    args.seeds = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else SEEDS)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    root = Path("runs/reproduce-quick" if args.quick else "runs/reproduce")
    args.runs = args.runs or str(root / "convergence")
    args.json = args.json or ("runs/reproduce-quick/results/convergence.json" if args.quick
                              else "benchmarks/results/convergence.json")
    check_output(parser, "--json", args.json)
    return run(args)


def run(args, log=print):
    t = time.perf_counter()
    steps = 60 if args.quick else args.steps
    init = args.init if Path(args.init).is_file() else None
    if init is None and not args.quick:
        log(f"{args.init} not found: pretraining the alignment net first")
        subprocess.run([sys.executable, "-m", "npface.pretrain_alignment", "--lfw", str(args.lfw),
                        "--out", str(args.init), "--threads", str(args.threads)], check=True)
        init = args.init
    seeds = range(args.seeds)
    train = lambda runs: train_all(runs, args.runs, args.lfw, steps, init, args.quick, args.threads, log)  # noqa: E731
    # 1. the pairs learning-rate search (seed 0), and Multibatch's seeds
    search = [Run("pairs", lr) for lr in (QUICK_PAIRS_LRS if args.quick else PAIRS_LRS)]
    plan = [Run("multibatch", MULTIBATCH_LR, seed=s) for s in seeds] + search
    folders = train(plan)
    runs = {name: read_run(folder) for name, folder in folders.items()}
    best = best_rate(runs, [r.name for r in search])
    best_lr = next(r.lr for r in search if r.name == best) if best else search[0].lr
    # 2. pairs at its best rate over the seeds; 3. the momentum-0 pair
    more = [Run("pairs", best_lr, seed=s) for s in seeds if s > 0]
    more += [Run("multibatch", MULTIBATCH_LR, momentum=0.0), Run("pairs", best_lr, momentum=0.0)]
    folders.update(train(more))
    plan += more
    runs.update({r.name: read_run(folders[r.name]) for r in more})
    for r in plan:
        runs[r.name].update(estimator=r.estimator, lr=r.lr, momentum=r.momentum, seed=r.seed)
    arms = {"multibatch": arm(runs, [Run("multibatch", MULTIBATCH_LR, seed=s).name for s in seeds]),
            "pairs": arm(runs, [Run("pairs", best_lr, seed=s).name for s in seeds]),
            "multibatch-momentum0": arm(runs, [Run("multibatch", MULTIBATCH_LR, momentum=0.0).name]),
            "pairs-momentum0": arm(runs, [Run("pairs", best_lr, momentum=0.0).name])}
    out = {"format": FORMAT, "runs": runs, "arms": arms, "summary": summarise(runs, arms),
           "lr_search": {"runs": [r.name for r in search], "best_pairs_lr": best_lr, "best_pairs_run": best},
           "seeds": args.seeds, "steps": steps, "quick": bool(args.quick),
           "pairs_baseline": "k/2 independent random pairs of the training people (npface.train --estimator pairs)",
           "init": init or "fresh seed-0 model",
           "batch": "8 x 8" if args.quick else "16 x 16", "batch_size": 64 if args.quick else 256,
           "val_pairs": 400 if args.quick else 1000, "seconds": time.perf_counter() - t,
           "commands": {r.name: "python " + " ".join(train_command(r, folders[r.name], args.lfw, steps, init,
                                                                   args.quick, args.threads)[1:]) for r in plan},
           "date": time.strftime("%Y-%m-%d")}
    write_json(args.json, out)
    s = out["summary"]
    if s["multibatch_final"]:
        reach = s["multibatch_steps_to_pairs_best"]
        log(f"multibatch: final {s['multibatch_final']['mean']:.4f} (over {args.seeds} seeds); pairs (lr "
            f"{best_lr:g}): final {s['pairs_final']['mean']:.4f}; multibatch reaches pairs' best mean accuracy at "
            f"step {reach['mean_curve']} (seeds: {reach['seeds']})")
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.convergence"))
