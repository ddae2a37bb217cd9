"""Thread policy: Numba threads split the batch, BLAS runs on one thread.

The per-op kernels parallelise over samples with Numba's ``prange``, and the
compiled plan (``npface.plan``) runs as many groups of samples on Python
threads (its kernels release the GIL); both take the count from Numba's
thread setting and call BLAS (``kernels.blas.matmul``) inside, one product per
sample or chunk of samples. BLAS must therefore
run single-threaded, or two levels of threads would fight over the cores.
Inference uses one thread in all, mirroring the single ARM core the paper
targets (30 ms for 41M FLOPs); training opens the Numba threads up.

    with npface.threads.limit(1):      # batch-1 inference, one core
        ...
    with npface.threads.limit(2):      # a training step on two cores
        ...
"""
import threading
from contextlib import contextmanager

import numba

_controller = None
# BLAS's thread count is one setting for the whole process, while Numba's is per thread. Blocks that run
# at the same time on several Python threads (e.g. several threads embedding with one model) therefore
# share one BLAS limit: the first to enter sets it to 1, the last to leave restores what was there.
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


def max_threads():
    """The most threads Numba can use in this process (NUMBA_NUM_THREADS, the core count by default)."""
    return numba.config.NUMBA_NUM_THREADS


def _blas_controller():
    # Created on first use, after loading the BLAS that Numba's np.dot calls
    # (SciPy's), so that the controller sees it as well as NumPy's.
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
    return _controller


def check_threads(threads):
    """Return ``threads`` as an int in 1..max_threads(), or raise ValueError."""
    top = max_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= top:
        raise ValueError(f"threads must be an integer from 1 to {top} (this machine's Numba limit), got {threads!r}")
    return threads


def _enter_single_blas():
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = _blas_controller().limit(limits=1, user_api="blas")
        _blas_users += 1


def _leave_single_blas():
    global _blas_users, _blas_limiter
    with _blas_lock:
        _blas_users -= 1
        if _blas_users == 0:
            _blas_limiter.restore_original_limits()
            _blas_limiter = None


@contextmanager
def limit(threads=1):
    """Run the block with ``threads`` Numba threads and single-threaded BLAS; restore both after.

    Safe to use from several Python threads at once: BLAS stays single-threaded until the last of
    them leaves its block (see ``_blas_users``).
    """
    threads = check_threads(threads)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    _enter_single_blas()
    try:
        yield
    finally:
        _leave_single_blas()
        numba.set_num_threads(previous)
