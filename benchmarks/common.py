"""Shared benchmark tools: medians of repeated timings, and this machine's GEMM peak.

Every ratio a benchmark prints is against a peak measured in the same run,
because the machine is shared and its speed drifts: a float32 1024x1024 @
1024x1024 NumPy product with BLAS on one thread (the single-core peak) and
on all of the threads given (the multi-core peak).
"""
import json
import platform
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from npface.data.cache import atomic_write_text


def median_time(fn, min_reps=5, min_seconds=0.2, warmup=1):
    """Median wall time of ``fn()`` in seconds over at least ``min_reps`` calls
    and at least ``min_seconds`` of calls, after ``warmup`` untimed calls
    (which also keep JIT compilation out of the figure)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def interleaved_medians(fns, rounds, warmup=1, occasional=None, every=10, rotate=False):
    """{name: median wall time in seconds} of the callables in the dict ``fns``, timed in ``rounds`` rounds
    that each call every one of them once, in turn, after ``warmup`` untimed rounds.

    ``rotate``: round r starts at the (r mod n)-th of the n callables instead of the first, so that each
    follows each other one equally often. Without it every callable always runs after the same one, on
    the caches that one leaves (kept where that order is the point, e.g. a call after another kind).

    On a shared machine whose speed drifts from one second to the next, calls timed side by side see
    the same machine, so ratios of these medians hold where separately timed medians mix the drift in.

    ``occasional``, a dict of more callables (e.g. a large matrix product for the machine's peak), are
    timed too, once every ``every`` rounds, each followed by one untimed round of ``fns``, so that the
    timed calls of ``fns`` never run on caches a large call has just flushed.
    """
    occasional = occasional or {}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in [*fns, *occasional]}
    for r in range(rounds):
        if occasional and r % every == 0:
            for name, fn in occasional.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
            for fn in fns.values():
                fn()
        order = list(fns.items())
        if rotate:
            order = order[r % len(order):] + order[:r % len(order)]
        for name, fn in order:
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def gemm_call(size=1024):
    """(fn, flops): fn() does one float32 size x size matrix product with NumPy's BLAS (on however many
    threads BLAS is allowed), flops = 2 size^3."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    out = np.empty_like(a)
    return (lambda: np.matmul(a, b, out=out)), 2 * size ** 3


def gemm_peak(threads, size=1024, reps=15):
    """GFLOP/s of a float32 size x size matrix product (``gemm_call``) with BLAS on ``threads`` threads."""
    gemm, flops = gemm_call(size)
    with threadpool_limits(limits=threads, user_api="blas"):
        t = median_time(gemm, min_reps=reps, warmup=3)
    return flops / t / 1e9


def write_json(path, obj):
    """Write a results file atomically (temp file + rename), creating its folder."""
    atomic_write_text(Path(path), json.dumps(obj, indent=1) + "\n")


def machine_line():
    import numba
    return (f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
            f"NumPy {np.__version__}, Numba {numba.__version__}")


def params_digest(model) -> str:
    """SHA-256 over a model's parameters (names, shapes, float32 bytes) and theta, and its alignment rounds when
    they are not 1: names one model, so that a results file can say which model it measured
    (``benchmarks.accuracy``, ``benchmarks.ship``). The same weights run with another number of alignment
    rounds (``ModelConfig.align_rounds``) are another model; with one round the digest is the weights' alone."""
    import hashlib
    h = hashlib.sha256()
    for name in sorted(model.params):
        a = np.ascontiguousarray(model.params[name], dtype=np.float32)
        h.update(name.encode() + str(a.shape).encode() + a.tobytes())
    h.update(np.float64(model.threshold).tobytes())
    rounds = getattr(getattr(model, "config", None), "align_rounds", 1)
    if rounds != 1:
        h.update(f"align_rounds={rounds}".encode())
    return h.hexdigest()
