"""How clustering and search scale: time and memory for 10K and 100K faces, search speed up to 1M.

    python -m benchmarks.cluster_search            # benchmarks/results/cluster_search.json, docs/PHOTOS.md
    python -m benchmarks.cluster_search --quick    # 2K and 5K faces; into runs/cluster-search-quick/

Signatures are synthetic (D = 128): identities of 5 faces each, drawn so
that same-person distances fall mostly below the shipped model's theta and
different-person distances far above it, as for real faces; the work of
the all-pairs pass does not depend on the values, only the number of close
pairs does (few here, as in a real gallery).

- cluster: ``close_pairs`` (all pairs in row blocks, one float32 BLAS
  product per block) then ``cluster`` with each method, on one BLAS thread;
  wall time of each; peak memory of the Python heap during the run
  (``tracemalloc``, which NumPy reports its arrays to), beyond the
  signatures themselves;
- search: ``nearest`` for 100 queries, k = 10, against galleries of 10K,
  100K and 1M faces; milliseconds per query.

Every figure from a size that was not run is modelled from the largest
size that was, as O(N^2) for the all-pairs pass and O(N) for search, and
marked "modelled". ``--quick`` runs small sizes only, so its large rows are
all modelled.
"""
import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.common import machine_line, write_json
from npface.cli import run_main

RESULTS = Path("benchmarks/results/cluster_search.json")
FACES_PER_PERSON = 5
QUERIES, K = 100, 10


def synthetic(n, theta, seed=0, d=128):
    """(n, d) float32 signatures: n / 5 identities; same-person squared distances about theta / 2."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, np.sqrt(4 * theta / d), (-(-n // FACES_PER_PERSON), d))     # different: ~8 theta
    noise = rng.normal(0, np.sqrt(theta / 4 / d), (n, d))                               # same: ~theta / 2
    return (centres[np.arange(n) // FACES_PER_PERSON] + noise).astype(np.float32)


def timed(fn):
    """(result, seconds, peak MB of the Python heap above the start)."""
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, peak / 1e6


def run(cluster_sizes, search_sizes, all_cluster_sizes=(10_000, 100_000), all_search_sizes=(10_000, 100_000, 1_000_000),
        log=print):
    from npface.gallery import CHUNK, METHODS, close_pairs, cluster, nearest
    from npface.model import load
    theta = load().threshold
    rows = []
    warm = synthetic(50, theta)
    for m in METHODS:                       # compile the kernels outside the timings
        cluster(50, *close_pairs(warm, theta), theta, m)
    with threadpool_limits(limits=1, user_api="blas"):
        for n in cluster_sizes:
            sig = synthetic(n, theta)
            (i, j, d), t_pairs, mem = timed(lambda: close_pairs(sig, theta))
            rows.append({"task": "close pairs (all pairs under theta)", "faces": n, "seconds": t_pairs,
                         "memory_mb": mem, "how": "measured", "pairs": int(len(i))})
            for m in METHODS:
                _, t_m, mem_m = timed(lambda: cluster(n, i, j, d, theta, m))
                rows.append({"task": f"cluster ({m}) after the pairs", "faces": n, "seconds": t_m, "memory_mb": mem_m,
                             "how": "measured"})
            log(f"  cluster {n}: pairs {t_pairs:.2f} s, {mem:.0f} MB")
        for n in search_sizes:
            gallery = synthetic(n, theta, seed=1)
            queries = synthetic(QUERIES, theta, seed=2)
            _, t_s, mem_s = timed(lambda: nearest(gallery, queries, K))
            rows.append({"task": f"search, {QUERIES} queries, k = {K}", "faces": n, "seconds": t_s, "memory_mb": mem_s,
                         "how": "measured", "ms_per_query": 1000 * t_s / QUERIES})
            log(f"  search {n}: {1000 * t_s / QUERIES:.2f} ms per query")
    # Modelled rows for the sizes not run: all pairs scale as N^2, search as N (memory: blocks of CHUNK rows).
    big = max(cluster_sizes)
    base = next(r for r in rows if r["task"].startswith("close pairs") and r["faces"] == big)
    for n in all_cluster_sizes:
        if n not in cluster_sizes:
            f = (n / big) ** 2
            rows.append({"task": "close pairs (all pairs under theta)", "faces": n, "seconds": base["seconds"] * f,
                         "memory_mb": base["memory_mb"],
                         "how": f"modelled: {big:,} faces measured, time x (N / {big:,})^2, memory as measured "
                                "(bounded blocks; plus the pairs found)"})
    sbig = max(search_sizes)
    sbase = next(r for r in rows if r["task"].startswith("search") and r["faces"] == sbig)
    for n in all_search_sizes:
        if n not in search_sizes:
            f = n / sbig
            rows.append({"task": sbase["task"], "faces": n, "seconds": sbase["seconds"] * f,
                         "memory_mb": sbase["memory_mb"],
                         "how": f"modelled: {sbig:,} faces measured, time x N / {sbig:,}",
                         "ms_per_query": sbase["ms_per_query"] * f})
    return {"command": "python -m benchmarks.cluster_search", "machine": machine_line(), "threads": 1,
            "threshold": theta, "block_rows": CHUNK,
            "note": "One BLAS thread. 'measured' rows ran on the machine named in the file; 'modelled' rows are "
                    "extrapolated as stated in their 'how'. Memory is the peak of the Python heap (NumPy arrays) "
                    "during the step.",
            "rows": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster_search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2K and 5K faces only; into runs/cluster-search-quick/")
    args = parser.parse_args(argv)
    from benchmarks.photos import write_report
    if args.quick:
        out = run((2_000, 5_000), (10_000,))
        path, report = Path("runs/cluster-search-quick/cluster_search.json"), Path("runs/cluster-search-quick/PHOTOS.md")
        write_json(path, out)
        write_report(report, cluster_search=path)
    else:
        out = run((10_000, 100_000), (10_000, 100_000, 1_000_000))
        path, report = RESULTS, None
        write_json(path, out)
        report = write_report()
    print(f"wrote {path} and {report}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.cluster_search"))
