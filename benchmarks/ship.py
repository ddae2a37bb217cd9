"""Ship a finished training run as the default model (``npface.load()``), measured once on the report people.

    python -m benchmarks.ship --lfw ../shared/lfw --run runs/final [--average 3]
    python -m benchmarks.ship --lfw ../shared/lfw --align-rounds 2

The second form ships the shipped model again with another number of
alignment rounds (``npface.model.ModelConfig.align_rounds``, a test-time
choice made on the selection people): the same weights and the same
record, measured once more on the report people as the new model it is.

1. The candidate: the run's final ``model.npz``, or with ``--average N`` the
   mean of its last N kept checkpoints (``npface.average``; the run must
   have been trained with ``--keep-checkpoints N`` or more).
2. It is measured on the *report* people (``benchmarks.heldout``:
   fit-and-test, with and without flip), once: that figure is the model's
   honest estimate for new people, and nothing may be chosen on it.
   Written to ``benchmarks/results/heldout-report.json``, which also lists
   every candidate ever measured there; the model card shows their number.
3. Its provenance gains a ``shipped`` record: the exact training command
   (``npface.train.command_line``, which parses back to the run's
   configuration), the steps, the training hours (the sum of the steps' own
   durations), the training people (list file and count), the averaged
   checkpoints, and the report people's figures.
4. The model is written to ``npface/pretrained/npface-lfw.npz``, the run's
   per-step history beside it (``npface-lfw.metrics.jsonl``), and the
   record (with the run's validations) to ``benchmarks/results/shipped.json``,
   from which ``benchmarks.report`` writes the README's model card and the
   report's accuracy trajectory. Every write is
   atomic.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.common import machine_line, params_digest, write_json
from benchmarks.convergence import read_run
from benchmarks.heldout import N_PAIRS, measure
from npface.cli import HelpFormatter, run_main
from npface.data.cache import atomic_write_text

SHIPPED_MODEL = Path("npface/pretrained/npface-lfw.npz")
RESULTS = Path("benchmarks/results")


def kept_checkpoints(run_dir, n):
    """The last ``n`` ckpt-<step>.npz of a run, by step."""
    from npface.training import kept_checkpoints as all_kept
    kept = all_kept(run_dir)
    if len(kept) < n:
        raise ValueError(f"--average {n}: {run_dir} keeps {len(kept)} checkpoints (train with "
                         f"--keep-checkpoints {n} or more)")
    return kept[-n:]


def candidate(run_dir, average_n):
    """(model, description) of what would be shipped from ``run_dir``."""
    from npface.average import average
    from npface.model import load
    final = load(Path(run_dir) / "model.npz")
    if not average_n:
        return final, "the run's final model.npz"
    files = kept_checkpoints(run_dir, average_n)
    model = average(files)
    # a checkpoint records less than the final model file (the data, the training people for npface.eval's
    # warning, the last validation): the run's final provenance, with what the averaging adds
    provenance = dict(final.provenance, averaged=model.provenance["averaged"],
                      trained_steps=model.provenance.get("trained_steps"))
    # the run's last validation measured the final model, not this mean of checkpoints: kept, under its name
    provenance["final_model_validation_metrics"] = provenance.pop("validation_metrics", None)
    model.provenance = provenance
    return model, f"the mean of the last {average_n} checkpoints ({', '.join(p.name for p in files)})"


def shipped_digest(to, report):
    """The digest of the model a report file without one measured, when it says "shipped" and the file now at
    ``to`` has the steps and configuration it records (the shipped model of that time); else None."""
    from npface.model import load
    if report.get("model") != "shipped" or not Path(to).is_file():
        return None
    model = load(to)
    same = (model.provenance.get("trained_steps") == report.get("model_trained_steps")
            and model.provenance.get("config") == report.get("model_config"))
    return params_digest(model) if same else None


def ship(lfw, run_dir, average_n=0, to=SHIPPED_MODEL, results=RESULTS, n_pairs=N_PAIRS, threads=2, log=print,
         work="runs/heldout/report"):
    """Measure the candidate of ``run_dir`` on the report people and write it as the shipped model; the record."""
    from npface.train import command_line
    run_dir, to = Path(run_dir), Path(to)
    history_file = to.with_name(f"{to.stem}.metrics.jsonl")          # the run's metrics.jsonl, beside the model
    for name in ("config.json", "metrics.jsonl", "model.npz"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"--run: {run_dir / name} not found (a finished npface.train run folder holds "
                                    "config.json, metrics.jsonl and model.npz)")
    config = json.loads((run_dir / "config.json").read_text())
    if config.get("data") != "folder":
        raise ValueError(f"--run: {run_dir} trained on synthetic faces; only a run on LFW people can be shipped")
    model, what = candidate(run_dir, average_n)
    report = measure_once(lfw, model, what, run_dir, run_dir / "candidate.npz", config, to, results, n_pairs,
                          threads, log, work)

    history = read_run(run_dir)
    record = {
        "run": str(run_dir), "model": what, "model_sha256": report["model_sha256"],
        "command": command_line(config, out=run_dir), "config": config,
        "init": config.get("init"),
        "init_kind": (model.provenance.get("init_provenance") or {}).get("kind"),
        # how the starting model was made (e.g. the alignment pretraining's steps and batch), when it says
        "init_settings": (model.provenance.get("init_provenance") or {}).get("settings"),
        "data": model.provenance.get("data"),
        **({"distill_teachers": model.provenance["distill_teachers"]} if model.provenance.get("distill_teachers")
           else {}),
        "people_list": config.get("people"),
        "train_people": len(model.provenance.get("train_people") or ()),
        "steps": history["steps"], "train_hours": history["train_seconds"] / 3600,
        "threads": config.get("threads"), "world_size": config.get("world_size", 1),
        "machine": f"{machine_line()}, {os.cpu_count()} cores",
        "averaged": model.provenance.get("averaged"),
        **_report_fields(report),
        "history": str(history_file), "date": time.strftime("%Y-%m-%d"),
        # the run's validations on its held-out people, for the report's accuracy trajectory
        "validation": [dict(step=step, accuracy=acc, accuracy_std=std, auc=auc, learned_threshold_accuracy=theta)
                       for step, acc, std, auc, theta in zip(
                           history["val_step"], history["val_accuracy"], history["val_accuracy_std"],
                           history["val_auc"], history["val_learned_threshold_accuracy"])],
    }
    model.provenance["shipped"] = record
    model.save(to)
    atomic_write_text(history_file, (run_dir / "metrics.jsonl").read_text())
    write_json(Path(results) / "shipped.json", record)
    _log_shipped(log, to, report, f"history {history_file}; record {Path(results) / 'shipped.json'}")
    return record


def ship_align_rounds(lfw, rounds, to=SHIPPED_MODEL, results=RESULTS, n_pairs=N_PAIRS, threads=2, log=print,
                      work="runs/heldout/report"):
    """Ship the model at ``to`` again with ``rounds`` alignment rounds: measured once on the report people as
    the new model it is; its record is the shipped one with the new measurement and ``align_rounds``."""
    from npface.model import load
    to = Path(to)
    shipped = load(to)
    previous = shipped.provenance.get("shipped")
    if not previous:
        raise ValueError(f"{to} has no shipped record (ship a run with --run first)")
    if shipped.config.align_rounds == rounds:
        raise ValueError(f"{to} already runs {rounds} alignment round(s)")
    model = shipped.with_align_rounds(rounds)                 # ModelConfig.check refuses a bad number
    what = f"{previous['model']}, run with {rounds} alignment rounds"
    Path(work).mkdir(parents=True, exist_ok=True)
    report = measure_once(lfw, model, what, previous["run"], Path(work) / "candidate.npz", previous["config"], to,
                          results, n_pairs, threads, log, work)
    record = dict(previous, model_sha256=report["model_sha256"], align_rounds=rounds, **_report_fields(report),
                  date=time.strftime("%Y-%m-%d"))
    model.provenance = dict(model.provenance, shipped=record)
    model.save(to)
    write_json(Path(results) / "shipped.json", record)
    _log_shipped(log, to, report, f"record {Path(results) / 'shipped.json'}")
    return record


def _report_fields(report) -> dict:
    """The shipped record's fields from the report people's measurement."""
    return {"report_people": report["summary"],
            "report_protocol": {k: report["protocol"][k] for k in ("fit", "test") if k in report["protocol"]},
            "report_measurements": len(report.get("measurements", []))}


def _log_shipped(log, to, report, where):
    s = report["summary"]["plain"]
    log(f"shipped {to}: report people accuracy {s['accuracy']:.4f} (95% {s['accuracy_95'][0]:.4f}-"
        f"{s['accuracy_95'][1]:.4f}), AUC {s['auc']:.4f}, learned theta {s['learned_threshold_accuracy']:.4f}; "
        f"{where}")


def measure_once(lfw, model, what, run, staged, config, to, results, n_pairs, threads, log, work):
    """The report people's measurement of ``model`` (``benchmarks.heldout.measure`` on its file written to
    ``staged``), made once per model: heldout-report.json keeps every model ever measured there, and a model
    measured already is read back instead of measured again. Returns the report."""
    digest = params_digest(model)
    model.save(staged)
    report_file = Path(results) / "heldout-report.json"
    previous = json.loads(report_file.read_text()) if report_file.is_file() else {}
    # every candidate ever measured on the report people, kept in the file and counted on the model card:
    # trying several and shipping the best would choose on them, and the count shows it
    measured = list(previous.get("measurements", []))
    if previous.get("summary") and "measurements" not in previous:
        # a file benchmarks.heldout wrote before this list existed: that model was measured there too
        measured.append({"model_sha256": previous.get("model_sha256") or shipped_digest(to, previous), "run": None,
                         "model": previous.get("model"), "accuracy": previous["summary"]["plain"]["accuracy"],
                         "date": previous.get("date")})
    if measured and measured[-1]["model_sha256"] == digest and previous.get("summary"):
        log(f"{report_file} already measured this candidate: reused, not measured again")
        report = dict(previous, model_sha256=digest, measurements=measured)
        if report != previous:                            # a file from before the list: given its list and digest
            write_json(report_file, report)
    else:
        log(f"measuring {what} on the report people (once)")
        t = time.perf_counter()
        report = measure(lfw, str(staged), "report", Path(work), n_pairs, n_pairs, threads, log)
        measured.append({"model_sha256": digest, "run": str(run), "model": what,
                         "accuracy": report["summary"]["plain"]["accuracy"], "date": time.strftime("%Y-%m-%d")})
        report.update({"model": f"{to} (shipped from {run}: {what})", "model_sha256": digest,
                       "model_trained_steps": model.provenance.get("trained_steps"), "model_config": config,
                       "measurements": measured, "seconds": time.perf_counter() - t,
                       "date": time.strftime("%Y-%m-%d")})
        write_json(report_file, report)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ship", formatter_class=HelpFormatter,
        description="Measure a finished training run once on the report people and ship it as the default "
                    "npface.load() model, with its provenance, history and model-card record; or ship the "
                    "shipped model again with another number of alignment rounds.")
    parser.add_argument("--lfw", required=True, metavar="DIR", help="LFW's root (holding lfw/ and the list files)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="DIR", help="the finished npface.train run folder")
    which.add_argument("--align-rounds", type=int, metavar="R",
                       help="instead of a run: the model at --to, run with R alignment rounds (the alignment net "
                            "looks again at its own warp R - 1 times; npface.model.ModelConfig), measured on the "
                            "report people as a new model and shipped with the same record")
    parser.add_argument("--average", type=int, default=0, metavar="N",
                        help="ship the mean of the run's last N kept checkpoints instead of its final model (0: off)")
    parser.add_argument("--to", default=str(SHIPPED_MODEL), metavar="MODEL", help="where the shipped model goes")
    parser.add_argument("--results", default=str(RESULTS), metavar="DIR",
                        help="folder of heldout-report.json and shipped.json")
    parser.add_argument("--n-pairs", type=int, default=N_PAIRS,
                        help="same pairs (and as many different) to fit on and to test on")
    parser.add_argument("--threads", type=int, default=2, help="threads for the network")
    args = parser.parse_args(argv)
    if args.average < 0 or args.n_pairs < 1:
        parser.error("--average must be >= 0 and --n-pairs >= 1")
    if args.align_rounds is not None and (args.align_rounds < 1 or args.average):
        parser.error("--align-rounds must be >= 1, and takes no --average (it ships the model at --to again)")
    if Path(args.to).resolve() != SHIPPED_MODEL.resolve() and Path(args.results).resolve() == RESULTS.resolve():
        parser.error("--to another file than the shipped model needs --results elsewhere than benchmarks/results "
                     "(its shipped.json describes the shipped model)")
    try:
        if args.align_rounds is not None:
            ship_align_rounds(args.lfw, args.align_rounds, args.to, args.results, args.n_pairs, args.threads)
        else:
            ship(args.lfw, args.run, args.average, args.to, args.results, args.n_pairs, args.threads)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"python -m benchmarks.ship: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.ship"))
