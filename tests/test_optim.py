"""SGD and the learning-rate schedule."""
import numpy as np
import pytest

from npface.optim import SGD, StepSchedule


def test_plain_sgd_step():
    p = {"a.weight": np.array([1.0, 2.0], np.float32)}
    SGD(p, lr=0.5).step({"a.weight": np.array([2.0, -2.0], np.float32)})
    np.testing.assert_array_equal(p["a.weight"], [0.0, 3.0])


def test_momentum_accumulates_and_decay_skips_biases_and_threshold():
    p = {"a.weight": np.array([1.0]), "a.bias": np.array([1.0]), "threshold": np.array(1.0)}
    opt = SGD(p, lr=0.1, momentum=0.5, weight_decay=1.0)
    zero = {k: np.zeros_like(v) for k, v in p.items()}
    opt.step(zero)                         # only the weight decays: v = -0.1 * 1.0
    np.testing.assert_allclose(p["a.weight"], [0.9])
    np.testing.assert_allclose(p["a.bias"], [1.0])
    np.testing.assert_allclose(p["threshold"], 1.0)
    opt.step(zero)                         # v = 0.5 * -0.1 - 0.1 * 0.9 = -0.14
    np.testing.assert_allclose(p["a.weight"], [0.76])


def test_state_round_trip_continues_exactly():
    rng = np.random.default_rng(0)
    grads = [{"w.weight": rng.standard_normal(3)} for _ in range(4)]
    p1 = {"w.weight": np.ones(3)}
    o1 = SGD(p1, lr=0.1, momentum=0.9)
    for g in grads:
        o1.step(g)
    p2 = {"w.weight": np.ones(3)}
    o2 = SGD(p2, lr=0.1, momentum=0.9)
    for g in grads[:2]:
        o2.step(g)
    saved = {k: v.copy() for k, v in o2.state().items()}
    p3 = {"w.weight": p2["w.weight"].copy()}
    o3 = SGD(p3, lr=0.1, momentum=0.9)
    o3.load_state(saved)
    for g in grads[2:]:
        o3.step(g)
    np.testing.assert_array_equal(p3["w.weight"], p1["w.weight"])


def test_schedule():
    s = StepSchedule(0.01, 100, drops=(0.5, 0.9), factor=0.1)
    assert [s(0), s(49), s(50), s(89), s(90), s(99)] == pytest.approx([0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4])


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0), "learning rate must be > 0"), (dict(momentum=1.0), "momentum must be in"),
    (dict(weight_decay=-1), "weight decay must be >= 0")])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD({"w.weight": np.ones(1)}, **kwargs)


def test_bad_schedule():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        StepSchedule(0.01, 10, drops=(1.5,))


def test_lr_scale_by_prefix():
    p = {"align.fc.weight": np.ones(1), "fc.weight": np.ones(1), "align.conv.bias": np.ones(1)}
    SGD(p, lr=0.5, lr_scale={"align.": 0.0}).step({k: np.ones(1) for k in p})
    assert p["align.fc.weight"][0] == 1.0 and p["align.conv.bias"][0] == 1.0 and p["fc.weight"][0] == 0.5
    p = {"align.fc.weight": np.ones(1)}
    SGD(p, lr=1.0, lr_scale={"align.": 0.1}).step({"align.fc.weight": np.ones(1)})
    np.testing.assert_allclose(p["align.fc.weight"], [0.9])
    with pytest.raises(ValueError, match="scales must be >= 0"):
        SGD(p, lr=1.0, lr_scale={"align.": -1})
