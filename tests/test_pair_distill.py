"""Distance distillation (kernels/pair_distill.py, npface.distill, npface.train --distill-from)."""
import json

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kernels.pair_distill import pair_distill_reference
from npface import ops, training
from npface.distill import teacher_embeddings
from npface.estimators import signature_gradients
from npface.model import TABLE2, FaceModel
from npface.train import main as train_main
from npface.training import TrainConfig
from tests.gradcheck import assert_gradient, assert_unchanged, numerical_gradient, snapshot


@st.composite
def batch(draw):
    k, D, E = draw(st.integers(2, 8)), draw(st.integers(1, 4)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.3, 1.0, 3.0]))          # small and large mismatches: both sides of Huber's kink
    return rng.standard_normal((k, D)) * scale, rng.standard_normal((k, E)) * 0.5, float(rng.uniform(0.5, 6.0)), rng


def mismatches(emb, teacher, threshold):
    """r_ij for every ordered pair i != j."""
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1) / threshold
    t = ((teacher[:, None] - teacher[None]) ** 2).sum(-1)
    return (d - t)[~np.eye(len(emb), dtype=bool)]


@given(batch(), st.sampled_from([np.float32, np.float64]))
def test_matches_reference(case, dtype):
    emb, teacher, threshold, _ = case
    emb, teacher = emb.astype(dtype), teacher.astype(dtype)
    before = snapshot(emb, teacher)
    loss, cache = ops.pair_distill_forward(emb, teacher, threshold)
    demb = ops.pair_distill_backward(cache)
    rloss, rdemb = pair_distill_reference(emb, teacher, threshold)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    assert isinstance(loss, float) and demb.dtype == dtype
    np.testing.assert_allclose(loss, rloss, **tol)
    np.testing.assert_allclose(demb, rdemb, **tol)
    assert_unchanged(before, [emb, teacher])


@given(batch())
def test_gradient_matches_central_differences(case):
    emb, teacher, threshold, rng = case
    assume(np.abs(np.abs(mismatches(emb, teacher, threshold)) - 1).min() > 1e-3)    # away from Huber's kink
    dloss = float(rng.uniform(0.5, 2.0))
    demb = ops.pair_distill_backward(ops.pair_distill_forward(emb, teacher, threshold)[1], dloss)
    f = lambda: np.array(ops.pair_distill_forward(emb, teacher, threshold)[0])     # noqa: E731
    assert_gradient(demb, numerical_gradient(f, emb, dloss), "emb")


def test_loss_is_the_mean_huber_loss_of_the_mismatch():
    emb = np.array([[0.0], [1.0], [3.0]])
    teacher = np.array([[0.0], [0.5], [0.5]])
    # theta 2: d / theta = 0.5, 4.5, 2 for pairs (0,1), (0,2), (1,2); t = 0.25, 0.25, 0: r = 0.25, 4.25, 2
    loss, _ = ops.pair_distill_forward(emb, teacher, 2.0)
    assert loss == pytest.approx((0.5 * 0.25 ** 2 + (4.25 - 0.5) + (2 - 0.5)) / 3)
    # a student that already has the teacher's geometry (in threshold units) has no loss and no gradient
    loss, cache = ops.pair_distill_forward(teacher * np.sqrt(2.0), teacher, 2.0)
    assert loss == pytest.approx(0, abs=1e-15) and np.abs(ops.pair_distill_backward(cache)).max() < 1e-15


def test_too_far_pairs_are_pulled_together_and_too_close_pushed_apart():
    emb, teacher = np.array([[0.0, 0.0], [3.0, 0.0]]), np.array([[0.0], [1.0]])      # d / theta = 9 / 2 > t = 1
    demb = ops.pair_distill_backward(ops.pair_distill_forward(emb, teacher, 2.0)[1])
    assert demb[0, 0] < 0 < demb[1, 0]                  # descending moves them towards each other
    demb = ops.pair_distill_backward(ops.pair_distill_forward(emb * 0.1, teacher, 2.0)[1])
    assert demb[0, 0] > 0 > demb[1, 0]


@pytest.mark.parametrize("args, match", [
    ((np.zeros((1, 3)), np.zeros((1, 2)), 1.0), "at least 2 signatures"),
    ((np.zeros((3, 3)), np.zeros((2, 2)), 1.0), r"teacher must have one row per signature, shape \(3, E\)"),
    ((np.zeros((3, 3)), np.zeros((3, 2), np.float32), 1.0), "all float inputs of one op must share a dtype"),
    ((np.zeros((3, 3)), np.full((3, 2), np.nan), 1.0), "teacher holds non-finite values"),
    ((np.zeros((3, 3)), np.zeros((3, 2)), 0.0), "threshold must be positive"),
    ((np.zeros((3, 3)), np.zeros((3, 2)), np.inf), "threshold must be a finite real scalar"),
    ((np.zeros(3), np.zeros((3, 2)), 1.0), r"emb must have shape \(k, D\)"),
    ((np.zeros((3, 3), int), np.zeros((3, 2)), 1.0), "emb must be float32 or float64"),
])
def test_bad_input_is_a_clear_error(args, match):
    with pytest.raises(ValueError, match=match):
        ops.pair_distill_forward(*args)


def test_teacher_embedding_distances_are_the_ensembles_mean_distance_in_threshold_units(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 112, 112, 3), dtype=np.uint8)
    paths = []
    for seed, threshold in [(1, 2.0), (2, 5.0)]:
        model = FaceModel(TABLE2, seed=seed)
        model.params["threshold"] = np.array(threshold, np.float32)
        paths.append(str(tmp_path / f"m{seed}.npz"))
        model.save(paths[-1])
    before = snapshot(images)
    t = teacher_embeddings(paths, images, log=lambda *a: None).astype(np.float64)        # (5, 2 D)
    assert t.shape == (5, 2 * TABLE2.signature_dim) and t.dtype == np.float64
    expected = 0
    for seed, threshold in [(1, 2.0), (2, 5.0)]:
        s = FaceModel(TABLE2, seed=seed)
        sig = (s.embed(images).astype(np.float64) + s.embed(images[:, :, ::-1]).astype(np.float64)) / 2
        expected = expected + ((sig[:, None] - sig[None]) ** 2).sum(-1) / threshold / 2
    np.testing.assert_allclose(((t[:, None] - t[None]) ** 2).sum(-1), expected, rtol=1e-4, atol=1e-6)
    assert_unchanged(before, [images])
    with pytest.raises(FileNotFoundError, match="--distill-from: model file not found: nowhere.npz"):
        teacher_embeddings(["nowhere.npz"], images)


def test_train_step_adds_the_weighted_distillation_gradient_to_the_hinges():
    """One step with a teacher moves the parameters as one step whose signature gradient is the hinge's plus
    the weight times the distillation term's, and leaves theta's gradient to the hinge."""
    from npface.optim import SGD
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 112, 112, 3), dtype=np.uint8)
    labels = np.array([0, 0, 1, 1])
    teacher = rng.standard_normal((4, 6)).astype(np.float32)
    cfg = TrainConfig(data="folder", lfw="x", distill_from=("t.npz",), distill_weight=0.7, threads=1)
    stepped = {}
    for with_teacher in (True, False):
        model = FaceModel(TABLE2, seed=3)
        model.params["threshold"] = np.array(3.0, np.float32)
        optimiser = SGD(model.params, 0.01, 0.0)
        if with_teacher:
            est = training.train_step(model, optimiser, images, labels, 0.01, cfg, None, teacher=teacher,
                                      distill_weight=0.35)
            assert est.distill_loss > 0
        else:                                            # the same step, with the gradient assembled by hand
            sig, cache = model.forward(images, train=True)
            hinge = signature_gradients(sig, labels, model.threshold)
            distill = ops.pair_distill_backward(ops.pair_distill_forward(sig, teacher, model.threshold)[1], 0.35)
            optimiser.step(model.backward(hinge.dsig + distill, hinge.dthreshold, cache), 0.01)
        stepped[with_teacher] = model.params
    for name in stepped[True]:
        np.testing.assert_allclose(stepped[True][name], stepped[False][name], rtol=1e-6, atol=1e-8, err_msg=name)


def test_the_weight_ramps_up_over_the_warmup():
    cfg = TrainConfig(data="folder", lfw="x", distill_from=("t.npz",), distill_weight=2.0, distill_warmup=4)
    assert [cfg.distill_weight_at(s) for s in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert TrainConfig(distill_weight=2.0).distill_weight_at(0) == 2.0


@pytest.mark.parametrize("argv, match", [
    (["--distill-from", "a.npz"], "--distill-from needs folder data (--lfw)"),
    (["--lfw", "x", "--distill-from", "a.npz", "--distill-weight", "0"],
     "--distill-weight must be a finite number > 0"),
    (["--lfw", "x", "--distill-warmup", "10"], "--distill-warmup needs --distill-from"),
    (["--lfw", "x", "--distill-from", "a.npz", "--distill-warmup", "-1"], "--distill-warmup must be an integer >= 0"),
])
def test_bad_distillation_flags_are_one_line_errors(tmp_path, capsys, argv, match):
    assert train_main(argv + ["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_a_distilled_run_on_a_folder_records_its_teachers_and_the_term(tmp_path):
    from PIL import Image
    for i in range(48):                                  # 48 people of 3 pictures; half held out (10 folds)
        (tmp_path / "lfw" / f"p{i}").mkdir(parents=True)
        for j in range(3):
            Image.new("RGB", (250, 250), (40 * j, 10 * i, 7)).save(tmp_path / "lfw" / f"p{i}" / f"{j}.jpg")
    FaceModel(TABLE2, seed=5).save(tmp_path / "teacher.npz")
    cfg = TrainConfig(data="folder", lfw=str(tmp_path), steps=2, batch_identities=2, images_per_identity=2,
                      val_pairs=20, val_fraction=0.5, validate_every=2, checkpoint_every=1, threads=1,
                      distill_from=(str(tmp_path / "teacher.npz"),), distill_warmup=2)
    training.run(cfg, tmp_path / "r", log=lambda *a: None, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["distill_loss"] > 0 for r in rows if "loss" in r] == [True, True]
    written = json.loads((tmp_path / "r" / "config.json").read_text())
    assert written["distill_from"] == [str(tmp_path / "teacher.npz")] and written["distill_warmup"] == 2
    import hashlib
    from npface.model import load
    digest = hashlib.sha256((tmp_path / "teacher.npz").read_bytes()).hexdigest()
    assert load(tmp_path / "r" / "model.npz").provenance["distill_teachers"] == [
        {"path": str(tmp_path / "teacher.npz"), "sha256": digest}]
