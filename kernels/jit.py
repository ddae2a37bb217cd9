"""How every kernel is compiled: the one place that sets the Numba policy.

Change a flag here and every kernel in ``kernels/`` follows.

- ``CACHE``: compiled machine code is written next to the sources
  (``__pycache__``) so that later processes skip the compile. Numba checks
  only the file of the function it loads: a kernel in ``kernels/plan.py``
  keeps the code it inlined from ``kernels/conv.py`` when only ``conv.py``
  changed. After editing a kernel, delete ``kernels/__pycache__/*.nbi`` and
  ``*.nbc`` before timing or testing it through its callers.
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
import numba

CACHE = True
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


def kernel(fn):
    """Compile ``fn`` as a serial, cached, no-Python kernel that releases the GIL."""
    return numba.njit(cache=CACHE, fastmath=set(FASTMATH), nogil=True)(fn)


def parallel_kernel(fn):
    """Compile ``fn`` as a kernel whose ``prange`` loops run on Numba's threads."""
    return numba.njit(cache=CACHE, fastmath=set(FASTMATH), parallel=True)(fn)
