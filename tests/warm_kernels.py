"""Compile the model's kernels into Numba's on-disk cache, in a second process while the suite runs.

    python -m tests.warm_kernels

``tests/conftest.py`` starts this at the beginning of a test session (unless
``NPFACE_TEST_WARMUP=0``) and stops it at the end. On a fresh checkout most
of the suite's time is Numba compiling, one function at a time on one core,
while the second core idles. This process compiles, on that core, what the
tests reach after their first seconds (Table 2's forward, its float64 and
float32 training step, the per-op reference path), so those tests load
machine code from the cache instead of compiling it. It changes nothing a test computes: a test that
gets to a kernel first compiles it itself, exactly as without this process,
and the cache's files are replaced whole (Numba writes each one aside, then
renames it into place). With a warm cache it loads everything in a few
seconds and exits.
"""
import os

import numpy as np


def main():
    os.nice(10)                                    # the tests' own work comes first
    from npface.model import TABLE2, FaceModel
    from tests.distributed_worker import one_step
    from tests.test_model import TINY

    # The compiled plan is specialised on the parameters' dtype, the images' dtype and the model's
    # depth (its weights pass as a tuple padded to 8, 16, 32 ... arrays), so each combination the tests
    # use compiles once. In the order the tests first need them: Table 2's forward in float32 on uint8
    # images (the shipped model's embed: test_cli_eval), then its training step with the alignment net
    # trained (test_distributed, float64, then float32's backward).
    rng = np.random.default_rng(0)
    FaceModel(TABLE2, seed=0).embed(rng.integers(0, 256, (1, 112, 112, 3), dtype=np.uint8))
    for dtype in (np.float64, np.float32):
        one_step(np.dtype(dtype))
    # TINY, forward and backward through the plan and through the per-op reference path (test_model,
    # test_plan, test_training): float64 on float images, float32 on uint8 images.
    for dtype, images in ((np.float64, rng.uniform(0, 1, (3, 12, 12, 3))),
                          (np.float32, rng.integers(0, 256, (3, 12, 12, 3), dtype=np.uint8))):
        model = FaceModel(TINY, seed=0, threshold=3.0).astype(dtype)
        for per_op in (False, True):
            sig, cache = model.forward(images, train=True, per_op=per_op)
            model.backward(np.ones_like(sig), 0.0, cache)
    # Table 2 on the per-op path (test_model's whole-model checks).
    for dtype in (np.float64, np.float32):
        model = FaceModel(TABLE2, seed=0, threshold=3.0).astype(dtype)
        images = rng.integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
        sig, cache = model.forward(images, train=True, per_op=True)
        model.backward(np.ones_like(sig), 0.0, cache)


if __name__ == "__main__":
    main()
