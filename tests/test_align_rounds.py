"""Alignment rounds (ModelConfig.align_rounds): the composition of warps, and every path of a 2-round model."""
import dataclasses
import json

import numpy as np
import pytest

from kernels.warp import compose_theta_reference
from npface import ops
from npface.model import TABLE2, FaceModel, ModelConfig, load, reference_forward
from npface.threads import limit
from tests.test_model import TINY
from tests.test_plan import images_for, perturbed


def random_thetas(n, dtype, seed=0):
    """Similarities near the identity (scale 0.7-0.9, small rotation and shift): (n, 2, 3)."""
    rng = np.random.default_rng(seed)
    scale, angle = rng.uniform(0.7, 0.9, n), rng.uniform(-0.2, 0.2, n)
    a, b = scale * np.cos(angle), scale * np.sin(angle)
    t = rng.uniform(-0.05, 0.05, (n, 2))
    return np.stack([np.stack([a, -b, t[:, 0]], 1), np.stack([b, a, t[:, 1]], 1)], 1).astype(dtype)


def rounds(config, r):
    return dataclasses.replace(config, align_rounds=r)


# --------------------------------------------------------------------------
# compose_theta
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compose_matches_reference_and_leaves_inputs_unchanged(dtype):
    t1, t2 = random_thetas(5, dtype, 1), random_thetas(5, dtype, 2)
    before1, before2 = t1.copy(), t2.copy()
    got = ops.compose_theta(t1, t2)
    assert got.dtype == dtype and got.shape == (5, 2, 3)
    np.testing.assert_allclose(got, compose_theta_reference(t1, t2), rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_array_equal(t1, before1)
    np.testing.assert_array_equal(t2, before2)


def test_composed_warp_samples_where_the_two_warps_do():
    """On an image linear in its coordinates, bilinear interpolation is exact, so warping by theta1 and
    then by theta2 equals one warp by theta1 o theta2 wherever every sample stays inside the image."""
    S = 16
    yy, xx = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    img = np.stack([0.3 * xx + 0.1 * yy, -0.2 * xx + 0.5 * yy + 1.0])[None].astype(np.float64)   # (1, 2, S, S)
    t1, t2 = random_thetas(1, np.float64, 3), random_thetas(1, np.float64, 4)
    twice, _ = ops.warp_forward(ops.warp_forward(img, t1, S, S)[0], t2, S, S)
    once, _ = ops.warp_forward(img, ops.compose_theta(t1, t2), S, S)
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))      # away from the zero padding
    np.testing.assert_allclose(twice[inner], once[inner], rtol=1e-12, atol=1e-12)


def test_compose_with_the_identity_changes_nothing():
    t = random_thetas(3, np.float64, 5)
    identity = np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (3, 1, 1))
    np.testing.assert_array_equal(ops.compose_theta(t, identity), t)
    np.testing.assert_array_equal(ops.compose_theta(identity, t), t)


@pytest.mark.parametrize("t1, t2, match", [
    (np.zeros((2, 2, 3)), np.zeros((3, 2, 3)), "both have shape"),
    (np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), "both have shape"),
    (np.zeros((2, 2, 3)), np.zeros((2, 2, 3), np.float32), "dtype"),
    (np.zeros((2, 2, 3), np.int64), np.zeros((2, 2, 3), np.int64), "float32 or float64"),
    (np.zeros((2, 6)), np.zeros((2, 6)), "shape"),
])
def test_compose_refuses_bad_input_with_one_line(t1, t2, match):
    with pytest.raises(ValueError, match=match):
        ops.compose_theta(t1, t2)


# --------------------------------------------------------------------------
# A 2-round model: the reference network, the per-op path and the plan agree
# --------------------------------------------------------------------------

def test_configuration_round_trips_and_the_default_writes_nothing_new():
    assert "align_rounds" not in TABLE2.to_json()                        # files of one round read as before
    two = rounds(TABLE2, 2)
    assert two.to_json()["align_rounds"] == 2
    assert ModelConfig.from_json(json.loads(json.dumps(two.to_json()))) == two
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="align_rounds must be an integer >= 1"):
            ModelConfig.from_json({**TABLE2.to_json(), "align_rounds": bad}).check()


def test_save_and_load_keep_the_rounds(tmp_path):
    model = perturbed(rounds(TINY, 2), np.float32)
    model.save(tmp_path / "m.npz")
    again = load(tmp_path / "m.npz")
    assert again.config.align_rounds == 2
    images = images_for(TINY, 3)
    np.testing.assert_array_equal(again.embed(images), model.embed(images))


def test_a_second_round_moves_the_warp():
    """The perturbed alignment net outputs a transform away from the identity, so a second look at the
    warped face composes it again: the theta and the signatures differ from one round's."""
    one, two = perturbed(TINY, np.float64), perturbed(rounds(TINY, 2), np.float64)
    images = images_for(TINY, 3)
    sig1, c1 = one.forward(images, train=True, per_op=True)
    sig2, c2 = two.forward(images, train=True, per_op=True)
    assert np.abs(c2.theta - c1.theta).max() > 1e-3
    assert np.abs(sig2 - sig1).max() > 1e-6


@pytest.mark.parametrize("r", [2, 3])
def test_per_op_path_equals_the_reference_network(r):
    model = perturbed(rounds(TINY, r), np.float64)
    images = images_for(TINY, 4)
    before = images.copy()
    got, _ = model.forward(images, per_op=True)
    np.testing.assert_allclose(got, reference_forward(model, images), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(images, before)


@pytest.mark.parametrize("config, n", [(TINY, 3), (TABLE2, 1), (TABLE2, 3)])
def test_plan_equals_the_per_op_path(config, n):
    config = rounds(config, 2)
    model64 = perturbed(config, np.float64)
    images = images_for(config, n)
    want, cache = model64.forward(images, train=True, per_op=True)
    for threads in (1, 2):
        with limit(threads):
            got, plan_cache = model64.forward(images, train=True)
            inference, _ = model64.forward(images)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(inference, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(plan_cache.theta, cache.theta, rtol=1e-12, atol=1e-12)
    got32 = perturbed(config, np.float32).embed(images)
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5)


def test_plan_gradients_equal_the_per_op_path_with_the_alignment_net_frozen():
    config = rounds(TINY, 2)
    model = perturbed(config, np.float64)
    model.frozen = ("a.",)
    images = images_for(config, 5)
    dsig = np.random.default_rng(2).standard_normal((5, config.signature_dim))
    want = model.backward(dsig, 0.5, model.forward(images, train=True, per_op=True)[1])
    with limit(2):
        got = model.backward(dsig, 0.5, model.forward(images, train=True)[1])
    assert sorted(got) == sorted(want) and not any(n.startswith("a.") for n in got)
    for name in want:
        scale = max(np.abs(want[name]).max(), 1e-300)
        assert np.abs(got[name] - want[name]).max() <= 1e-9 * scale, name


@pytest.mark.parametrize("per_op", [False, True])
def test_training_the_alignment_net_with_two_rounds_is_refused(per_op):
    model = perturbed(rounds(TINY, 2), np.float64)
    images = images_for(TINY, 2)
    sig, cache = model.forward(images, train=True, per_op=per_op)
    with pytest.raises(ValueError, match="cannot be trained with align_rounds = 2"):
        model.backward(np.ones_like(sig), 0.0, cache)


def test_onnx_export_of_two_rounds_agrees(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import npface
    from npface.onnx_backend import TOLERANCE, load_onnx, max_differences
    from tests.test_export import random_images, random_model
    model = random_model()
    model = FaceModel(rounds(TABLE2, 2), params=model.params, provenance=model.provenance)
    loaded = load_onnx(npface.export_onnx(model, tmp_path / "m.onnx"))
    assert loaded.config.align_rounds == 2
    sig, theta = max_differences(model, loaded, random_images(3))
    assert sig <= TOLERANCE and theta <= TOLERANCE, (sig, theta)


def test_warp_thetas_and_predict_thetas_give_the_warp_the_model_applies():
    from npface.model import warp_thetas
    from npface.pretrain_alignment import predict_thetas
    model = perturbed(rounds(TINY, 2), np.float64)
    images = images_for(TINY, 4)
    _, cache = model.forward(images, train=True)
    np.testing.assert_allclose(warp_thetas(model, images), cache.theta, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(predict_thetas(model, images, batch_size=3), cache.theta, rtol=1e-12, atol=1e-12)
    one = model.with_align_rounds(1)
    assert one.params is model.params and one.config.align_rounds == 1
    np.testing.assert_allclose(predict_thetas(one, images), one.forward(images, train=True)[1].theta,
                               rtol=1e-12, atol=1e-12)
