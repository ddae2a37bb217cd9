"""Reproduce the paper's checkable claims and write docs/RESULTS.md: one command.

    python -m benchmarks.reproduce --lfw ../shared/lfw --quick    # every stage small: a few minutes
    python -m benchmarks.reproduce --lfw ../shared/lfw            # the full measurement: about 5 hours here

Stages, in order (``--stages`` picks some):

    tables       Table 2 (python -m npface.flops), Table 1's runtime (python -m benchmarks.inference) and
                 the cost of a training step with each estimator (python -m benchmarks.train_step);
                 first, while the machine is quiet
    variance     Theorem 1 (python -m benchmarks.variance)
    accuracy     the shipped model, fit-and-test on held-out people (python -m benchmarks.accuracy)
    convergence  Figure 4 over seeds (python -m benchmarks.convergence): the long one (10 training runs);
                 finished runs are reused and interrupted ones resume, so a stopped reproduction can be
                 started again
    report       docs/RESULTS.md and its plots (python -m benchmarks.report)

The full run writes benchmarks/results/*.json and docs/; ``--quick`` writes
runs/reproduce-quick/results and runs/reproduce-quick/docs instead, so it never
replaces the full results.
"""
import argparse
import sys
import time
from pathlib import Path

from npface.cli import HelpFormatter, run_main

STAGES = ("tables", "variance", "accuracy", "convergence", "report")


def stage_commands(args, results: Path, docs: Path) -> dict:
    """{stage: [(module, argv), ...]} for this run."""
    quick = ["--quick"] if args.quick else []
    lfw = ["--lfw", str(args.lfw)]
    runs = Path("runs/reproduce-quick" if args.quick else "runs/reproduce")
    return {
        "tables": [("npface.flops", ["--json", str(results / "flops.json")]),
                   ("benchmarks.inference", quick + ["--json", str(results / "inference.json")])]
                  + [("benchmarks.train_step", ["--estimator", e, "--steps", "3" if args.quick else "10",
                                                "--json", str(results / f"train_step_{e}.json")])
                     for e in ("multibatch", "pairs")],
        "variance": [("benchmarks.variance", lfw + quick + ["--json", str(results / "variance.json")])],
        "accuracy": [("benchmarks.accuracy", lfw + ["--json", str(results / "accuracy.json"),
                                                    "--work", str(runs / "accuracy")])],
        "convergence": [("benchmarks.convergence", lfw + quick + ["--json", str(results / "convergence.json"),
                                                                  "--runs", str(runs / "convergence")])],
        "report": [("benchmarks.report", ["--results", str(results), "--docs", str(docs)]
                    + ([] if args.quick else ["--readme", "README.md"]))],
    }


def run_module(module, argv) -> int:
    import importlib
    return importlib.import_module(module).main(argv)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reproduce",
        description="Measure the paper's claims on npface (Theorem 1's variance, Figure 4's convergence, Tables 1 "
                    "and 2, LFW accuracy) and write docs/RESULTS.md with its plots.",
        formatter_class=HelpFormatter)
    parser.add_argument("--lfw", required=True, metavar="DIR",
                        help="LFW's root (holding lfw/, peopleDevTrain.txt and landmarks68.tsv)")
    parser.add_argument("--quick", action="store_true",
                        help="every stage small (a few minutes), into runs/reproduce-quick/")
    parser.add_argument("--stages", default=",".join(STAGES), metavar="S[,S...]",
                        help=f"stages to run, of {', '.join(STAGES)}")
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        parser.error(f"--stages: unknown stage(s) {', '.join(unknown) or '(none given)'}; choose from "
                     f"{', '.join(STAGES)}")
    if not Path(args.lfw).is_dir():
        parser.error(f"--lfw: folder not found: {args.lfw}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if "report" in stages:
            parser.error("the report's plots need matplotlib: pip install 'npface[plots]'")

    root = Path("runs/reproduce-quick") if args.quick else Path(".")
    results = root / ("results" if args.quick else "benchmarks/results")
    docs = root / "docs"
    results.mkdir(parents=True, exist_ok=True)
    commands = stage_commands(args, results, docs)
    from benchmarks.common import write_json
    log_path = results / "reproduce.json"
    import json
    done = json.loads(log_path.read_text()).get("stages", []) if log_path.is_file() else []
    done = [s for s in done if s["stage"] not in stages]          # earlier runs of the stages not rerun now
    start = time.perf_counter()
    for stage in STAGES:
        if stage not in stages:
            continue
        for module, argv in commands[stage]:
            line = f"python -m {module} {' '.join(argv)}"
            print(f"\n=== {stage}: {line}", flush=True)
            if stage == "report":                                  # the report lists every stage, itself too
                write_json(log_path, {"quick": args.quick, "stages": done, "date": time.strftime("%Y-%m-%d")})
            t = time.perf_counter()
            rc = run_module(module, argv)
            if rc:
                print(f"python -m benchmarks.reproduce: stage {stage} failed ({line} returned {rc})", file=sys.stderr)
                return rc
            done.append({"stage": stage, "command": line, "seconds": time.perf_counter() - t})
            write_json(log_path, {"quick": args.quick, "stages": done, "date": time.strftime("%Y-%m-%d")})
    print(f"\nreproduce: {', '.join(stages)} in {(time.perf_counter() - start) / 60:.1f} min; "
          f"report: {docs / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.reproduce"))
