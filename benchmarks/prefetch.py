"""What drawing the next batch in the background buys the trainer: whole training steps, data included.

    python -m benchmarks.prefetch --lfw ../shared/lfw [--steps 30] [--repeats 2] [--json PATH]
    python -m benchmarks.prefetch                      # synthetic faces instead of LFW

``npface.train`` draws step s + 1's batch (sampling, flip and similarity
jitter) on a background thread while step s computes (``npface.training._Prefetch``).
This runs the real training loop (``npface.training.run``, 16 x 16 batches by default,
the alignment net frozen as in the reported runs, flip and jitter on) for
``--warmup + --steps`` steps with the prefetcher off and on, alternately
``--repeats`` times each (which goes first alternates), and reports the median wall time of a whole step
(data, forward, loss, backward, update: the differences of the trainer's own
``metrics.jsonl`` clock, warm-up steps left out) for each, and their ratio.
Both runs of a repeat must end with bit-identical parameters: that is checked
before any time is reported.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_line, write_json
from npface.cli import HelpFormatter, output_file, run_main
from npface.threads import max_threads
from npface.training import TrainConfig, TrainingStopped, load_checkpoint, run


def step_seconds(out_dir, warmup):
    """Wall seconds of each step after the first ``warmup`` ones, from the run's metrics.jsonl clock."""
    rows = [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]
    clock = [r["time"] for r in rows if "loss" in r]    # (n,) seconds from the loop's start to the end of each step
    return list(np.diff(clock)[warmup - 1:])            # durations of steps warmup + 1 .. n


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.prefetch", formatter_class=HelpFormatter,
        description="Median wall time of a whole training step (data included) with the next batch drawn in the "
                    "background and without.")
    parser.add_argument("--lfw", metavar="DIR", help="LFW's root (holding lfw/ and peopleDevTrain.txt); "
                        "default: synthetic faces")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (JIT compile, caches)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each kind, alternating")
    parser.add_argument("--threads", type=int, default=max_threads(), help="training threads")
    parser.add_argument("--batch-identities", type=int, default=16, metavar="P", help="people per batch")
    parser.add_argument("--images-per-identity", type=int, default=16, metavar="K", help="images per person")
    parser.add_argument("--json", type=output_file, metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.repeats < 1 or not 1 <= args.threads <= max_threads():
        parser.error(f"--steps, --warmup and --repeats must be >= 1, --threads 1..{max_threads()}")
    if args.batch_identities < 2 or args.images_per_identity < 2:
        parser.error("--batch-identities and --images-per-identity must be >= 2")
    if args.lfw and not Path(args.lfw).is_dir():
        parser.error(f"--lfw: folder not found: {args.lfw}")
    n = args.warmup + args.steps
    data = dict(data="folder", lfw=args.lfw, people="peopleDevTrain.txt") if args.lfw else {}
    P, K = args.batch_identities, args.images_per_identity
    cfg = TrainConfig(**data, steps=n, batch_identities=P, images_per_identity=K, align_lr_scale=0.0,
                      flip=True, jitter=True, threads=args.threads, validate_every=n, checkpoint_every=n,
                      val_pairs=20)
    print(machine_line())
    print(f"{n} steps of {P} x {K} ({'LFW ' + args.lfw if args.lfw else 'synthetic faces'}), "
          f"{args.threads} threads, the first {args.warmup} untimed")
    times = {"inline": [], "prefetch": []}
    with tempfile.TemporaryDirectory(prefix="npface-prefetch-") as tmp:
        for r in range(args.repeats):
            ends = {}
            for kind in ("inline", "prefetch") if r % 2 == 0 else ("prefetch", "inline"):   # alternate the order
                out = Path(tmp) / f"{kind}-{r}"
                try:
                    run(cfg, out, log=lambda *a: None, progress=False, prefetch=kind == "prefetch")
                except (OSError, ValueError) as e:
                    print(f"python -m benchmarks.prefetch: error: {' '.join(str(e).split())}", file=sys.stderr)
                    return 2
                except TrainingStopped as e:     # its run folder is temporary: there is nothing to resume
                    interrupt = KeyboardInterrupt()
                    interrupt.status = e.status
                    raise interrupt from None
                times[kind] += step_seconds(out, args.warmup)
                ends[kind] = load_checkpoint(out / "checkpoint.npz")[0]
                print(f"  repeat {r + 1} {kind:8s}: median step {statistics.median(times[kind][-args.steps:]):.3f} s")
            for name, value in ends["inline"].items():
                if not np.array_equal(value, ends["prefetch"][name]):
                    print(f"error: the two runs' {name} differ: the prefetcher changed the training",
                          file=sys.stderr)
                    return 1
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "machine": machine_line(), "date": time.strftime("%Y-%m-%d"),
        "data": "LFW peopleDevTrain" if args.lfw else "synthetic faces",
        "batch": f"{P} x {K}", "threads": args.threads, "timed_steps_per_run": args.steps, "repeats": args.repeats,
        "median_step_seconds": med, "images_per_s": {k: P * K / v for k, v in med.items()},
        "speedup": med["inline"] / med["prefetch"], "identical_parameters": True,
    }
    print(f"whole step, median: inline {med['inline']:.3f} s, prefetch {med['prefetch']:.3f} s "
          f"({result['speedup']:.2f}x; {result['images_per_s']['prefetch']:.0f} against "
          f"{result['images_per_s']['inline']:.0f} images/s); parameters identical")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.prefetch"))
