"""The Table 2 model: gradients of the whole network, learning, inference API."""
import numpy as np
import pytest

from npface import ops
from npface.architecture import Conv, Linear, MaxPool
from npface.model import TABLE2, FaceModel, ModelConfig, dtheta_to_dpose, parameter_shapes, pose_to_theta

# A miniature of Table 2 with every kind of layer: same-padded and strided convolutions,
# a 1x1 NIN layer, both max-pools, affine layers, the warp, in a few thousand multiply-adds.
TINY = ModelConfig(
    input_size=12, align_input_size=6,
    alignment=(Conv("a.conv", 2, 3), MaxPool("a.pool", 2, 1), Linear("a.fc", 5), Linear("a.out", 4, relu=False)),
    signature=(Conv("s.conv", 4, 3, stride=2), Conv("s.mlp", 4, 1), MaxPool("s.pool", 2, 2),
               Linear("s.fc", 8), Linear("s.sig", 5, relu=False)),
)


def loss_of(model, images, labels):
    sig, cache = model.forward(images, train=True)
    loss, lc = ops.pair_hinge_forward(sig, labels, model.threshold)
    return loss, lc, cache


def test_table2_parameter_count():
    total = sum(int(np.prod(s)) for s in parameter_shapes(TABLE2).values())
    assert total == 95_400 + 1_266_784 + 1          # alignment + signature + threshold


def test_untrained_model_warps_nothing():
    model = FaceModel(TINY, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    sig, cache = model.forward(images, train=True)
    np.testing.assert_array_equal(cache.theta, np.tile([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], (3, 1, 1)))
    aligned, _ = ops.warp_forward(model.preprocess(images), cache.theta, 12, 12)
    np.testing.assert_array_equal(aligned, model.preprocess(images))


def test_pose_theta_chain_rule():
    rng = np.random.default_rng(1)
    pose, dtheta = rng.standard_normal((3, 4)), rng.standard_normal((3, 2, 3))
    v = rng.standard_normal((3, 4))
    h = 1e-6
    numeric = ((pose_to_theta(pose + h * v) - pose_to_theta(pose - h * v)) * dtheta).sum() / (2 * h)
    np.testing.assert_allclose((dtheta_to_dpose(dtheta) * v).sum(), numeric, rtol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_model_directional_gradient(seed):
    """d loss along random directions, per parameter and all at once, against central differences in float64."""
    rng = np.random.default_rng(seed)
    model = FaceModel(TINY, seed=seed, threshold=3.0).astype(np.float64)
    # Stay off kinks: with zero biases, a pixel whose inputs are all dead has pre-activation exactly 0
    # at the next ReLU; and the identity warp samples exactly at pixel centres, where the bilinear
    # surface has creases. Random biases and a perturbed alignment output avoid both.
    for name in model.params:
        if name.endswith(".bias"):
            model.params[name] = 0.1 * rng.standard_normal(model.params[name].shape)
    model.params["a.out.weight"] = 0.05 * rng.standard_normal((4, 5))
    model.params["a.out.bias"] = np.array([1.02, 0.03, 0.011, -0.017])
    images = rng.uniform(0, 1, (6, 12, 12, 3))
    labels = np.array([0, 0, 1, 1, 2, 2])
    loss, lc, cache = loss_of(model, images, labels)
    dsig, dthreshold = ops.pair_hinge_backward(lc)
    grads = model.backward(dsig, dthreshold, cache)
    assert set(grads) == set(model.params)

    def loss_at(direction, h):
        shifted = FaceModel(TINY, params={k: model.params[k] + h * direction.get(k, 0) for k in model.params})
        return loss_of(shifted, images, labels)[0]

    h = 1e-6
    directions = [{k: rng.standard_normal(np.shape(v))} for k, v in model.params.items()]
    directions.append({k: rng.standard_normal(np.shape(v)) for k, v in model.params.items()})
    for direction in directions:
        analytic = sum(float(np.sum(grads[k] * d)) for k, d in direction.items())
        numeric = (loss_at(direction, h) - loss_at(direction, -h)) / (2 * h)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8, err_msg=f"direction over {list(direction)}")


def test_overfits_one_small_batch():
    rng = np.random.default_rng(0)
    model = FaceModel(TINY, seed=0, threshold=2.0)
    images = rng.integers(0, 256, (8, 12, 12, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(4), 2)
    first = None
    for step in range(300):
        loss, lc, cache = loss_of(model, images, labels)
        first = loss if first is None else first
        dsig, dthreshold = ops.pair_hinge_backward(lc)
        for k, g in model.backward(dsig, dthreshold, cache).items():
            model.params[k] -= np.float32(0.01) * g
    assert first > 0.5 and loss < 0.02 * first, (first, loss)
    sig = model.embed(images)
    d = model.distance(sig[:, None], sig[None])
    same = labels[:, None] == labels[None]
    assert np.all(model.same(sig[:, None], sig[None])[same]) and not np.any(model.same(sig[:, None], sig[None])[~same])
    assert d.shape == (8, 8)


def test_embed_is_batch_independent_and_accepts_uint8_or_float():
    model = FaceModel(TINY, seed=3)
    images = np.random.default_rng(2).integers(0, 256, (7, 12, 12, 3), dtype=np.uint8)
    a = model.embed(images)
    assert a.dtype == np.float32 and a.shape == (7, 5)
    np.testing.assert_allclose(model.embed(images, batch_size=3), a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.embed(images.astype(np.float32) / 255), a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("images, match", [
    (np.zeros((12, 12, 3), np.uint8), r"must be a batch \(N, 12, 12, 3\); for one image use images\[None\]"),
    (np.zeros((2, 3, 12, 12), np.uint8), r"must have shape \(N, 12, 12, 3\) \(RGB, channels last\), got \(2, 3, 12, 12\)"),
    (np.zeros((2, 12, 12, 3), np.int32), r"uint8 \(0..255\) or float \(0..1\), got dtype int32"),
    (np.full((2, 12, 12, 3), 255.0, np.float32), r"float images must be finite and in \[0, 1\].*got values in \[255, 255\]"),
    (np.full((2, 12, 12, 3), np.nan, np.float32), r"got only NaN or infinite pixels"),
    (np.zeros((0, 12, 12, 3), np.uint8), r"images is an empty batch \(0, 12, 12, 3\)"),
    ([[0]], r"must be a numpy array"),
])
def test_bad_images(images, match):
    with pytest.raises(ValueError, match=match):
        FaceModel(TINY).embed(images)


def test_bad_signatures_and_threads():
    model = FaceModel(TINY)
    with pytest.raises(ValueError, match=r"signatures of shape \(D,\) or \(N, D\) with D = 5"):
        model.distance(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match=r"a and b do not broadcast: signatures of shapes \(2, 5\) and \(3, 5\)"):
        model.distance(np.zeros((2, 5)), np.zeros((3, 5)))
    assert model.distance(np.zeros((2, 5)), np.ones((1, 5))).tolist() == [5.0, 5.0]
    with pytest.raises(ValueError, match="b holds NaN or infinite values"):
        model.same(np.zeros(5), np.full(5, np.nan))
    with pytest.raises(ValueError, match="threads must be an integer"):
        model.embed(np.zeros((1, 12, 12, 3), np.uint8), threads=0)


@pytest.mark.parametrize("dtype", [np.int32, np.float16, "complex64", "nonsense", None])
def test_astype_takes_the_kernels_float_types_only(dtype):
    with pytest.raises(ValueError, match="astype: dtype must be float32 or float64"):
        FaceModel(TINY).astype(dtype)


def test_config_round_trips_through_json_and_checks_shapes():
    assert ModelConfig.from_json(TABLE2.to_json()) == TABLE2
    with pytest.raises(ValueError, match="must output 4 numbers"):
        ModelConfig(12, 6, TINY.alignment[:-1] + (Linear("a.out", 3, relu=False),), TINY.signature).check()
    with pytest.raises(ValueError, match="would output"):
        ModelConfig(2, 6, TINY.alignment, TINY.signature).check()


def test_forward_matches_the_reference_network():
    from npface.model import reference_forward
    rng = np.random.default_rng(7)
    model = FaceModel(TINY, seed=7)
    model.params["a.out.weight"] = 0.1 * rng.standard_normal((4, 5)).astype(np.float32)   # a real warp
    images = rng.integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    timings = {}
    sig, _ = model.forward(images, timings=timings)
    np.testing.assert_allclose(sig, reference_forward(model, images), rtol=1e-4, atol=1e-5)
    assert {"preprocess+resize", "warp", "a.conv", "s.sig"} <= set(timings)
