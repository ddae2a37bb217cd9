"""How every kernel is compiled: the one place that sets the Numba policy.

Change a flag here and every kernel in ``kernels/`` follows.

- ``CACHE``: compiled machine code is written next to the sources
  (``__pycache__``) so that later processes skip the compile. Numba checks
  only the file of the function it loads: a kernel in ``kernels/plan.py``
  would keep the code it inlined from ``kernels/conv.py`` when only
  ``conv.py`` changed. So at import, ``drop_stale_cache`` empties the
  kernels' cache whenever any kernel source differs from what it was built
  from (an empty marker file named after the sources' digest says which).
- ``FASTMATH``: LLVM may reassociate and contract floating-point arithmetic
  (which lets it vectorise reductions), but NOT assume that values are finite:
  ``nnan`` and ``ninf`` are left out on purpose, so a NaN or an infinity in a
  batch propagates through the arithmetic to the signatures, where the
  trainer checks for it and stops. (Comparisons do not propagate it: the
  pairwise hinge's "u > 0" is false for a NaN u, so the loss of NaN
  signatures reads 0, which is why the trainer checks the signatures.)
- ``kernel`` compiles a serial loop that releases the GIL (``nogil``), so
  Python threads can run kernels side by side (the compiled plan does);
  ``parallel_kernel`` also lets ``prange`` split a loop across Numba's
  threads. Parallel kernels only ``prange`` over
  axes whose writes are disjoint (samples, channel planes), and reduce
  per-group partial sums in a fixed order, so a result depends on the thread
  count but never on timing.
"""
import hashlib
from pathlib import Path

import numba

CACHE = True
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


def kernel(fn):
    """Compile ``fn`` as a serial, cached, no-Python kernel that releases the GIL."""
    return numba.njit(cache=CACHE, fastmath=set(FASTMATH), nogil=True)(fn)


def parallel_kernel(fn):
    """Compile ``fn`` as a kernel whose ``prange`` loops run on Numba's threads."""
    return numba.njit(cache=CACHE, fastmath=set(FASTMATH), parallel=True)(fn)


def drop_stale_cache(sources, cache) -> bool:
    """Delete Numba's cache files (*.nbi, *.nbc) in the folder ``cache`` unless it was built from exactly
    these ``sources`` (paths; their names and bytes are hashed). Returns True if it was emptied.

    The marker is an empty file ``sources-<digest>.stamp`` beside the cache: nothing is written into
    it, so there is nothing to half-write. A folder that cannot be changed (a read-only install) is
    left as it is.
    """
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in sources):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    cache = Path(cache)
    marker = cache / f"sources-{h.hexdigest()[:16]}.stamp"
    if marker.exists():
        return False
    try:
        for stale in [*cache.glob("*.nbi"), *cache.glob("*.nbc"), *cache.glob("sources-*.stamp")]:
            stale.unlink(missing_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        return False
    return True


if CACHE:
    _HERE = Path(__file__).resolve().parent
    drop_stale_cache(_HERE.glob("*.py"), _HERE / "__pycache__")
