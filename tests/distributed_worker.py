"""What tests/test_distributed.py runs on every rank of ``mpiexec -n R python -m tests.distributed_worker MODE ...``.

    step DTYPE OUT      one training step of a fixed model on a fixed global batch; rank 0 writes the
                        parameters before and after it to OUT (.npz). ``one_step`` is the same step in one
                        process, the test's reference.
    run OUT             ``npface.train`` with RUN_FLAGS in float64 (``float64_training``)
    fail OUT            a short npface.train run in which rank 1 raises at its second step
    diverge OUT         a short npface.train run in which rank 1 alone nudges theta after its first step
    nan OUT             a short npface.train run whose loss is NaN at the second step on every rank
"""
import sys

import numpy as np

from npface import distributed, training
from npface.data.cache import atomic_write
from npface.data.synthetic import SyntheticFaces
from npface.model import TABLE2, FaceModel
from npface.optim import SGD
from npface.threads import limit

# 3 x 3 images, so two ranks get 4 and 5 rows. The alignment net stays frozen: at the identity warp of a
# fresh model every sampling point sits exactly on a kink of the bilinear interpolation, so the alignment
# net's gradient jumps with any rounding difference, and two runs that differ by rounding (even one process
# against itself with its parameters perturbed by 1e-15) part ways within a few steps.
RUN_FLAGS = ["--steps", "20", "--batch-identities", "3", "--images-per-identity", "3", "--synthetic-identities",
             "50", "--val-pairs", "20", "--validate-every", "10", "--checkpoint-every", "5", "--threads", "1",
             "--align-lr-scale", "0"]
SHORT_FLAGS = ["--steps", "4", "--batch-identities", "3", "--images-per-identity", "3", "--synthetic-identities",
               "50", "--val-pairs", "20", "--validate-every", "4", "--checkpoint-every", "2", "--threads", "1"]


def one_step(dtype, comm=distributed.SINGLE):
    """Parameters (name -> array) before and after one step on 3 x 3 synthetic faces, with momentum and decay."""
    cfg = training.TrainConfig(batch_identities=3, images_per_identity=3)
    images, labels = SyntheticFaces(seed=0, n_identities=50).sample_batch(3, 3, np.random.default_rng(0))
    model = FaceModel(TABLE2, seed=0, threshold=3.0).astype(dtype)
    before = {k: v.copy() for k, v in model.params.items()}
    optimiser = SGD(model.params, lr=0.05, momentum=0.9, weight_decay=1e-3, lr_scale={"align.": 1.0})
    with limit(1):
        training.train_step(model, optimiser, images, labels, 0.05, cfg, np.random.default_rng(1), comm)
    return before, model.params


def float64_training(module=training):
    """Make ``npface.training`` start its runs from a float64 model (a resumed run keeps its checkpoint's dtype).

    The trainer works in the model's dtype; float64 keeps rounding far below what the tests compare.
    Returns the original initialiser.
    """
    real = module._initial_model
    module._initial_model = lambda cfg, source: real(cfg, source).astype(np.float64)
    return real


def main(argv):
    comm = distributed.connect(force=True)
    mode, out = argv[0], argv[-1]
    if mode == "step":
        before, after = one_step(np.dtype(argv[1]), comm)
        if comm.is_root:
            arrays = {**{f"before/{k}": v for k, v in before.items()}, **{f"after/{k}": v for k, v in after.items()}}

            def write(tmp):
                with open(tmp, "wb") as fh:
                    np.savez(fh, **arrays)
            atomic_write(out, write)
        return 0
    if mode == "run":
        float64_training()
    if mode == "fail" and comm.rank == 1:
        real, calls = training.signature_gradients, []

        def failing(*args, **kw):
            calls.append(1)
            if len(calls) == 2:
                raise ValueError("rank one cannot go on")
            return real(*args, **kw)
        training.signature_gradients = failing
    if mode == "diverge" and comm.rank == 1:
        real_step = training.train_step

        def nudging(model, *args, **kw):
            est = real_step(model, *args, **kw)
            model.params["threshold"] += np.float32(1e-3)
            training.train_step = real_step
            return est
        training.train_step = nudging
    if mode == "nan":
        real_gradients, calls = training.signature_gradients, []

        def nan_loss(*args, **kw):
            calls.append(1)
            est = real_gradients(*args, **kw)
            return est._replace(loss=float("nan")) if len(calls) == 2 else est
        training.signature_gradients = nan_loss
    from npface.train import main as train_main
    return train_main((RUN_FLAGS if mode == "run" else SHORT_FLAGS) + ["--distributed", "--out", out])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
