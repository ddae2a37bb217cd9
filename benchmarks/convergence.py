"""Figure 4, measured: held-out accuracy against steps and wall time for Multibatch and for random pairs.

    python -m benchmarks.convergence --lfw ../shared/lfw            # 4 runs x 1000 steps, about 1.5 hours here
    python -m benchmarks.convergence --lfw ../shared/lfw --quick    # 3 runs x 60 small steps, a few minutes

Every run trains the same model (the pretrained alignment net of
``runs/align_pretrained.npz`` with a fresh signature net, the alignment net
frozen) on the same people (peopleDevTrain.txt minus the 10% held out for
validation), with the same seed, so the same P x K batches in the same order,
the same number of steps and the same schedule (the learning rate x0.1 at 85%
of the run). Only the estimator differs, and the learning rate of ``pairs``,
which is tried over a small grid (as the paper tuned SGD for its baseline);
``multibatch`` keeps the shipped model's 0.01.

Each run is an ordinary ``python -m npface.train`` run in its own folder under
``--runs``: a finished run (model.npz present) is not run again, an
interrupted one resumes from its checkpoint. The result is read back from each
run's metrics.jsonl: held-out 10-fold accuracy every 50 steps, and the
training time at that step (the sum of the steps' own durations: validation,
checkpoints and start-up left out).
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import write_json

RUNS = (("multibatch", 0.01), ("pairs", 0.01), ("pairs", 0.03), ("pairs", 0.003))
QUICK_RUNS = (("multibatch", 0.01), ("pairs", 0.01), ("pairs", 0.03))


def run_name(estimator, lr):
    return f"{estimator}-lr{lr:g}"


def train_command(estimator, lr, out, lfw, steps, init=None, quick=False, threads=2):
    """The ``python -m npface.train`` command line of one run."""
    cmd = [sys.executable, "-m", "npface.train", "--lfw", str(lfw), "--people", "peopleDevTrain.txt",
           "--estimator", estimator, "--lr", f"{lr:g}", "--lr-drops", "0.85", "--steps", str(steps),
           "--seed", "0", "--threads", str(threads), "--out", str(out)]
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
    its folder gets ``diverged.txt`` and its metrics up to that point are kept.
    """
    from npface.train import EXIT_DIVERGED
    folders = {}
    for estimator, lr in runs:
        out = Path(root) / run_name(estimator, lr)
        folders[run_name(estimator, lr)] = out
        if (out / "model.npz").is_file() or (out / DIVERGED).is_file():
            check_reused(out, estimator, lr, steps, init)
            log(f"{out}: {'diverged' if (out / DIVERGED).is_file() else 'finished'} earlier, reading its metrics")
            continue
        if (out / "checkpoint.npz").is_file():
            cmd = [sys.executable, "-m", "npface.train", "--resume", str(out)]
        else:
            cmd = train_command(estimator, lr, out, lfw, steps, init, quick, threads)
        log("$ python " + " ".join(cmd[1:]))
        proc = subprocess.run(cmd)
        if proc.returncode == EXIT_DIVERGED:
            atomic_write_text(out / DIVERGED, f"{' '.join(cmd[1:])}\nexited with status {EXIT_DIVERGED}: diverged\n")
            log(f"{out}: diverged; keeping its metrics up to that point")
        elif proc.returncode != 0:
            raise RuntimeError(f"training run {out} failed (exit status {proc.returncode}): {' '.join(cmd[1:])}")
    return folders


def read_run(folder) -> dict:
    """Steps, training time and held-out accuracy of one run, from its config.json and metrics.jsonl.

    Training time is the sum of the steps' own durations (k / images_per_s of every step record), so
    it leaves out validations, checkpoints and start-up, and survives a resume.
    """
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    k = config["batch_identities"] * config["images_per_identity"]
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
    return {"folder": str(folder),
            "val_step": [r["step"] for r in val],
            "val_accuracy": [r["val_accuracy"] for r in val],
            "val_accuracy_std": [r["val_accuracy_std"] for r in val],
            "val_auc": [r["val_auc"] for r in val],
            "val_seconds": [elapsed.get(r["step"], float("nan")) for r in val],
            "steps": int(steps[-1]) if len(steps) else 0,
            "diverged": (folder / DIVERGED).is_file(),
            "train_seconds": float(durations.sum()),
            "median_step_seconds": float(np.median(durations)) if len(durations) else float("nan")}


def check_reused(folder, estimator, lr, steps, init):
    """Refuse to reuse a run folder made with other settings than the ones asked for."""
    config = json.loads((Path(folder) / "config.json").read_text())
    want = {"estimator": estimator, "lr": lr, "steps": steps, "init": str(init) if init else None}
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


def summarise(runs: dict) -> dict:
    """Best pairs learning rate, and how many steps each estimator needs to reach the other's accuracy."""
    mb = runs[run_name("multibatch", 0.01)]
    pairs = {n: r for n, r in runs.items() if n.startswith("pairs") and r["val_accuracy"]}
    if any(not r["diverged"] for r in pairs.values()):                   # a diverged run is nobody's best
        pairs = {n: r for n, r in pairs.items() if not r["diverged"]}
    if not mb["val_accuracy"] or not pairs:                              # nothing validated to compare
        return {"best_pairs_run": None, "multibatch_final": None, "multibatch_best": None, "pairs_final": None,
                "pairs_best": None, "pairs_steps_to_multibatch_final": None,
                "multibatch_steps_to_pairs_best": None, "multibatch_steps_to_pairs_final": None}
    best_name = max(pairs, key=lambda n: (max(pairs[n]["val_accuracy"]), -len(n)))
    best = pairs[best_name]
    mb_final, pairs_final = mb["val_accuracy"][-1], best["val_accuracy"][-1]
    mb_best, pairs_best = max(mb["val_accuracy"]), max(best["val_accuracy"])
    return {"best_pairs_run": best_name,
            "multibatch_final": mb_final, "multibatch_best": mb_best,
            "pairs_final": pairs_final, "pairs_best": pairs_best,
            "pairs_steps_to_multibatch_final": first_step_reaching(best, mb_final),
            "multibatch_steps_to_pairs_best": first_step_reaching(mb, pairs_best),
            "multibatch_steps_to_pairs_final": first_step_reaching(mb, pairs_final)}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.convergence",
        description="Figure 4: train with the multibatch estimator and with k/2 random pairs (over a small "
                    "learning-rate grid) on the same batches; held-out accuracy against steps and wall time.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--lfw", required=True, metavar="DIR", help="LFW's root (holding lfw/ and the list files)")
    parser.add_argument("--init", default="runs/align_pretrained.npz", metavar="MODEL",
                        help="starting model with a pretrained alignment net (made by python -m "
                             "npface.pretrain_alignment when missing; --quick starts from scratch without it)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per run")
    parser.add_argument("--runs", metavar="DIR",
                        help="folder of the run folders; finished runs are reused, interrupted ones resumed "
                             "(default: runs/reproduce/convergence, with --quick runs/reproduce-quick/convergence)")
    parser.add_argument("--quick", action="store_true",
                        help="3 runs x 60 steps of 8 x 8 batches, 400 validation pairs (overrides --steps)")
    parser.add_argument("--threads", type=int, default=2, help="training threads")
    parser.add_argument("--json", metavar="OUT", help="result file (default: benchmarks/results/convergence.json, "
                                                      "with --quick runs/reproduce-quick/results/convergence.json)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    root = Path("runs/reproduce-quick" if args.quick else "runs/reproduce")
    args.runs = args.runs or str(root / "convergence")
    args.json = args.json or ("runs/reproduce-quick/results/convergence.json" if args.quick
                              else "benchmarks/results/convergence.json")
    return run(args)


def run(args, log=print):
    t = time.perf_counter()
    runs = QUICK_RUNS if args.quick else RUNS
    steps = 60 if args.quick else args.steps
    init = args.init if Path(args.init).is_file() else None
    if init is None and not args.quick:
        log(f"{args.init} not found: pretraining the alignment net first")
        subprocess.run([sys.executable, "-m", "npface.pretrain_alignment", "--lfw", str(args.lfw),
                        "--out", str(args.init), "--threads", str(args.threads)], check=True)
        init = args.init
    folders = train_all(runs, args.runs, args.lfw, steps, init, args.quick, args.threads, log)
    results = {name: read_run(folder) for name, folder in folders.items()}
    for (estimator, lr), name in zip(runs, results):
        results[name].update(estimator=estimator, lr=lr)
    out = {"runs": results, "summary": summarise(results), "steps": steps, "quick": bool(args.quick),
           "init": init or "fresh seed-0 model",
           "batch": "8 x 8" if args.quick else "16 x 16", "batch_size": 64 if args.quick else 256,
           "val_pairs": 400 if args.quick else 1000, "seconds": time.perf_counter() - t,
           "commands": {name: "python " + " ".join(train_command(e, lr, folders[name], args.lfw, steps, init, args.quick,
                                                     args.threads)[1:])
                        for (e, lr), name in zip(runs, results)},
           "date": time.strftime("%Y-%m-%d")}
    write_json(args.json, out)
    s = out["summary"]
    log(f"multibatch: final {s['multibatch_final']:.4f}; best pairs ({s['best_pairs_run']}): final "
        f"{s['pairs_final']:.4f}; pairs reaches multibatch's final accuracy at step "
        f"{s['pairs_steps_to_multibatch_final']}; multibatch reaches pairs' best at step "
        f"{s['multibatch_steps_to_pairs_best']}")
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
