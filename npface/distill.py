"""Teachers for distance distillation: an ensemble's geometry, as one embedding per training image.

    python -m npface.train --lfw ../shared/lfw --people peopleDevTrain.txt ... \\
        --distill-from a/model.npz b/model.npz c/model.npz --distill-weight 1.0

Several trained models, averaged (the mean of their distances, each in units
of its own threshold), tend to verify better than any one of them, but cost
as many networks at test time. Distillation trains one Table 2 network towards
their geometry instead: beside the hinge loss, the trainer adds
``--distill-weight`` times the mean, over all k^2 - k pairs of the batch, of
huber(d_ij / theta - t_ij) (``npface.ops.pair_distill_forward``; Huber's
loss, quadratic within one threshold unit, linear beyond), where t_ij is the
ensemble's distance of the two faces (docs/ops/pair_distill.md).

The teacher embedding of image i concatenates the M teachers' signatures of
its *clean* training crop, each averaged with its mirror image's and scaled
by 1 / sqrt(M theta_m)::

    t_i = [s_1(x_i) / sqrt(M theta_1), ..., s_M(x_i) / sqrt(M theta_M)]      (M D,)

so that ||t_i - t_j||^2 = (1/M) sum_m ||s_m(x_i) - s_m(x_j)||^2 / theta_m: the
ensemble's mean distance in threshold units (1 = at the threshold). The
student sees the augmented crop (flipped, jittered) and the teacher's
distance of the clean ones, so the term also asks the student to keep a
face's place however the crop was moved.

The embeddings are computed once, when training starts (and again on
resume: the same models give the same rows), for every image of the data.
"""
from pathlib import Path

import numpy as np

from npface.faces import embed_faces, file_sha256


def teacher_embeddings(model_paths, images, threads=1, log=print) -> np.ndarray:
    """(N, M D) float32 teacher embeddings of images (N, S, S, 3) uint8 under the M model files."""
    from npface.model import load
    if not model_paths:
        raise ValueError("--distill-from needs at least one model file")
    parts = []
    for path in model_paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--distill-from: model file not found: {path}")
        model = load(path)
        model.tiles = False                 # npface.train's inference calls keep the BLAS (FaceModel.tiles)
        log(f"Teacher {path}: embedding {len(images)} images with flip (theta {model.threshold:.4f})")
        sig = embed_faces(model, images, flip=True, threads=threads).astype(np.float64)     # (N, D)
        parts.append(sig / np.sqrt(len(model_paths) * model.threshold))
    out = np.concatenate(parts, axis=1).astype(np.float32)                                   # (N, M D)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"--distill-from: the teachers' signatures are not all finite ({', '.join(model_paths)})")
    return out


def teacher_record(model_paths) -> list:
    """[{"path", "sha256"}] of the teacher files, for the student's provenance: a path may later hold
    another model (the shipped file is replaced when a new model ships), the digest names the one used."""
    return [{"path": str(p), "sha256": file_sha256(p)} for p in model_paths]
