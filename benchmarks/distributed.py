"""Data-parallel training on MPI ranks: measured on this machine, then modelled for a cluster.

    python -m benchmarks.distributed            # k = 256, R = 1 and R = 2: writes benchmarks/results/distributed.json
    python -m benchmarks.distributed --quick    # k = 16, two steps: proves it runs; writes runs/distributed-quick.json

Measured (one thread per rank, synthetic faces, the Table 2 network, a multibatch step as
``npface.training.train_step`` runs it): images/s of a whole step with R = 1 (one process, no MPI) and
with R = 2 (``mpiexec -n 2``, the mpiexec beside this Python); per step, the time each rank spends in
the collectives (waiting for the slower rank included) and the bytes it hands to them; and, in one
process, the parts of a step that do not shrink with R because every rank does them for the whole
global batch: drawing the batch, the estimator over all k^2 - k pairs, and the SGD update.

Modelled (a bandwidth/latency model of ring collectives, nothing measured on a network): with beta the
link bandwidth (bytes/s) and alpha the per-message latency,

    Allreduce of B bytes on R ranks:  2 (R - 1) alpha + 2 (R - 1) / R * B / beta    (reduce-scatter + all-gather)
    Allgather of G bytes in all:      (R - 1) alpha + (R - 1) / R * G / beta
    step(R) = parallel / R + serial + Allgather(k (4 D + 8)) + Allreduce(4 n_params)

where parallel = the measured R = 1 step minus its serial parts (the forward and backward of the
images, which each rank does for k / R of them), and the serial parts scale with k as measured (the
estimator like k^2, the batch like k, the update not at all). Communication does not overlap compute
in npface's step, so it adds. From the model: images/s and efficiency (images/s over R times the
R = 1 rate) for R = 1 ... 64 at 10, 25 and 100 Gbit/s, and for each R the global batch k at which
the step's compute equals its communication: below it, the step is mostly waiting on the network.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_line, median_time, write_json
from npface import distributed
from npface.cli import HelpFormatter, check_output, output_file, run_main
from npface.data.synthetic import SyntheticFaces
from npface.estimators import signature_gradients
from npface.model import TABLE2, FaceModel
from npface.optim import SGD
from npface.threads import limit
from npface.training import TrainConfig, train_step

RANKS = (1, 2, 4, 8, 16, 32, 64)
GBITS = (10, 25, 100)
DEFAULT_LATENCY = 20e-6       # seconds per message: an assumed TCP figure over Ethernet, not measured


def measure_steps(comm, P, K, steps, warmup):
    """Per-step medians on this rank: seconds of the step, of drawing the batch, in each collective; bytes sent."""
    faces = SyntheticFaces(seed=0, n_identities=1000)
    model = FaceModel(TABLE2, seed=0, threshold=8.0)
    optimiser = SGD(model.params, lr=1e-4, momentum=0.9)
    cfg = TrainConfig(batch_identities=P, images_per_identity=K)
    stats = getattr(comm, "seconds", {})
    rows = {"step": [], "batch": [], "allgather": [], "allreduce": []}
    sent = {}
    with limit(1):
        for s in range(warmup + steps):
            before = dict(stats)
            sent_before = dict(getattr(comm, "bytes_sent", {}))
            t0 = time.perf_counter()
            images, labels = faces.sample_batch(P, K, np.random.default_rng([0, s]))
            t1 = time.perf_counter()
            train_step(model, optimiser, images, labels, 1e-4, cfg, None, comm)
            t2 = time.perf_counter()
            if s >= warmup:                   # the first steps compile and warm the caches
                rows["step"].append(t2 - t0)
                rows["batch"].append(t1 - t0)
                for op in stats:
                    rows[op].append(stats[op] - before[op])
                sent = {op: v - sent_before[op] for op, v in getattr(comm, "bytes_sent", {}).items()}
    return {"seconds": {k: float(np.median(v)) if v else 0.0 for k, v in rows.items()}, "bytes_sent": sent,
            "n_params": int(sum(v.size for v in model.params.values()))}


def serial_parts(P, K):
    """Seconds of the parts of a step every rank does for the whole global batch (one process, one thread)."""
    k = P * K
    rng = np.random.default_rng(0)
    sig = rng.standard_normal((k, TABLE2.signature_dim)).astype(np.float32)
    labels = np.repeat(np.arange(P), K)
    model = FaceModel(TABLE2, seed=0)
    grads = {n: np.zeros_like(v) for n, v in model.params.items()}
    optimiser = SGD(model.params, lr=1e-4, momentum=0.9)
    with limit(1):
        return {"estimator": median_time(lambda: signature_gradients(sig, labels, 8.0)),
                "update": median_time(lambda: optimiser.step(grads, 1e-4))}


def ring(R, nbytes, bandwidth, latency, rounds):
    """Seconds of a ring collective moving ``rounds`` (R - 1) / R * nbytes per rank in ``rounds`` (R - 1) messages."""
    return rounds * (R - 1) * latency + rounds * (R - 1) / R * nbytes / bandwidth


def model_step(R, k, m, bandwidth, latency):
    """Modelled seconds of one step: (compute, communication) for R ranks, global batch k, measurement m."""
    k0 = m["k"]
    serial = (m["estimator"] * (k / k0) ** 2 + m["batch"] * (k / k0) + m["update"])
    compute = m["parallel"] * (k / k0) / R + serial
    gathered = k * (4 * TABLE2.signature_dim + 8)                   # float32 signatures and int64 labels
    comm = 0.0 if R == 1 else (ring(R, gathered, bandwidth, latency, 1) + ring(R, 4 * m["n_params"], bandwidth,
                                                                              latency, 2))
    return compute, comm


def crossover_batch(R, m, bandwidth, latency):
    """The smallest global batch k = n R (n images per rank) at which the modelled compute reaches the
    communication; R itself when even one image per rank keeps the network the smaller part."""
    n = 1
    while n < 1 << 20:
        compute, comm = model_step(R, n * R, m, bandwidth, latency)
        if compute >= comm:
            return n * R
        n = max(n + 1, int(n * 1.05))
    return None


def project(m, latency):
    """Images/s and efficiency for every R and bandwidth, and the crossover batch, at the measured k."""
    rate1 = m["k"] / sum(model_step(1, m["k"], m, 1.0, latency))
    table = []
    for gbit in GBITS:
        bandwidth = gbit * 1e9 / 8
        for R in RANKS:
            if R > m["k"]:
                continue
            t = sum(model_step(R, m["k"], m, bandwidth, latency))
            wire = (R - 1) / R * (m["k"] * (4 * TABLE2.signature_dim + 8) + 2 * 4 * m["n_params"])
            table.append({"gbit_per_s": gbit, "ranks": R, "images_per_s": m["k"] / t, "bytes_per_rank": wire,
                          "efficiency": m["k"] / t / (R * rate1), "crossover_batch":
                          crossover_batch(R, m, bandwidth, latency) if R > 1 else None})
    return table


def run_ranks(args, n):
    """The R = n measurement under mpiexec; rank 0's view plus every rank's collective seconds."""
    mpiexec = Path(sys.executable).with_name("mpiexec")
    if not mpiexec.exists():
        raise SystemExit(f"benchmarks.distributed: error: no mpiexec beside {sys.executable}: "
                         f"{distributed.INSTALL_HINT}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ranks.json"
        cmd = [str(mpiexec), "-n", str(n), sys.executable, "-m", "benchmarks.distributed", "--worker", str(out),
               "--batch-identities", str(args.batch_identities), "--images-per-identity",
               str(args.images_per_identity), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        subprocess.run(cmd, check=True, timeout=3600)
        return json.loads(out.read_text())


def worker(args):
    comm = distributed.connect(force=True)
    mine = measure_steps(comm, args.batch_identities, args.images_per_identity, args.steps, args.warmup)
    everyone = comm.world.gather(mine, root=0)
    if comm.is_root:
        write_json(args.worker, {"ranks": comm.size, "per_rank": everyone})
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--quick", action="store_true", help="k = 4 x 4, 2 timed steps: proves the script runs")
    p.add_argument("--batch-identities", type=int, default=16, help="P")
    p.add_argument("--images-per-identity", type=int, default=16, help="K")
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation, caches)")
    p.add_argument("--latency", type=float, default=DEFAULT_LATENCY, help="modelled seconds per message")
    p.add_argument("--json", type=output_file, metavar="PATH",
                   help="results file (default: benchmarks/results/distributed.json, "
                        "with --quick runs/distributed-quick.json)")
    p.add_argument("--worker", metavar="PATH", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch_identities, args.images_per_identity, args.steps = 4, 4, 2
    if args.worker:
        return worker(args)
    out = args.json or ("runs/distributed-quick.json" if args.quick else "benchmarks/results/distributed.json")
    check_output(p, "--json", out)
    P, K = args.batch_identities, args.images_per_identity
    k = P * K
    print(machine_line())
    print(f"Measured on this machine: a multibatch step of k = {P} x {K} = {k} synthetic faces, one thread per rank, "
          f"median of {args.steps} steps after {args.warmup} warm-up")

    one = measure_steps(distributed.SINGLE, P, K, args.steps, args.warmup)
    serial = serial_parts(P, K)
    two = run_ranks(args, 2)
    root = two["per_rank"][0]
    rate1, rate2 = k / one["seconds"]["step"], k / root["seconds"]["step"]
    comm2 = [r["seconds"]["allgather"] + r["seconds"]["allreduce"] for r in two["per_rank"]]
    print(f"  R = 1: {one['seconds']['step']:.3f} s per step, {rate1:.1f} images/s (drawing the batch "
          f"{one['seconds']['batch']:.3f} s, estimator {serial['estimator']:.4f} s, "
          f"SGD update {serial['update']:.4f} s)")
    print(f"  R = 2: {root['seconds']['step']:.3f} s per step, {rate2:.1f} images/s, speed-up {rate2 / rate1:.2f}; "
          f"in collectives per step " + ", ".join(f"rank {r} {c * 1e3:.1f} ms" for r, c in enumerate(comm2)))
    for r, row in enumerate(two["per_rank"]):
        print(f"         rank {r} hands the collectives {row['bytes_sent']['allgather']:,} bytes (all-gather) + "
              f"{row['bytes_sent']['allreduce']:,} bytes (all-reduce) per step")

    m = {"k": k, "parallel": one["seconds"]["step"] - one["seconds"]["batch"] - serial["estimator"]
         - serial["update"], "batch": one["seconds"]["batch"], "n_params": one["n_params"], **serial}
    m["parallel"] = max(m["parallel"], 0.0)
    table = project(m, args.latency)
    print(f"\nModelled (ring collectives, latency {args.latency * 1e6:.0f} us per message, compute from the R = 1 "
          f"measurement; no network was measured): global batch k = {k}")
    print(f"{'Gbit/s':>7} {'R':>4} {'images/s':>10} {'efficiency':>11} "
          f"{'smallest k with compute >= communication':>42}")
    for row in table:
        cross = "-" if row["crossover_batch"] is None else f"{row['crossover_batch']:,}"
        print(f"{row['gbit_per_s']:>7} {row['ranks']:>4} {row['images_per_s']:>10.1f} {row['efficiency']:>10.1%} "
              f"{cross:>42}")
    print("(a crossover k equal to R: one image per rank already takes longer to compute than the collectives)")

    write_json(out, {
        "machine": machine_line(), "quick": args.quick, "batch": {"P": P, "K": K, "k": k}, "steps": args.steps,
        "measured": {"one_process": {**one, "serial_seconds": serial, "images_per_s": rate1},
                     "two_ranks": {**two, "images_per_s": rate2, "collective_seconds_per_rank": comm2}},
        "model": {"latency_s": args.latency, "inputs": m, "note": "ring Allreduce 2(R-1)a + 2(R-1)/R B/bw, ring "
                  "Allgather (R-1)a + (R-1)/R G/bw; compute = parallel/R + serial; no overlap"},
        "projected": table})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.distributed"))
