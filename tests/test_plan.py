"""The compiled plan (npface.plan) against the per-op reference path, and its workspace."""
import tracemalloc

import numpy as np
import pytest

from npface.model import TABLE2, FaceModel
from npface.threads import limit
from tests.test_model import TINY


def perturbed(config, dtype, seed=0):
    """A model with random biases and a non-trivial alignment output, so every layer and the warp matter."""
    rng = np.random.default_rng(seed)
    model = FaceModel(config, seed=seed, threshold=3.0).astype(dtype)
    for name, p in model.params.items():
        if name.endswith(".bias"):
            p[...] = 0.05 * rng.standard_normal(p.shape)
    last = config.alignment[-1].name
    model.params[last + ".weight"][...] = 0.01 * rng.standard_normal(model.params[last + ".weight"].shape)
    model.params[last + ".bias"][...] = [1.02, 0.03, 0.011, -0.017]
    return model


def images_for(config, n, seed=1):
    S = config.input_size
    return np.random.default_rng(seed).integers(0, 256, (n, S, S, 3), dtype=np.uint8)


@pytest.mark.parametrize("n", [1, 3, 17])
def test_plan_signatures_equal_the_per_op_path(n):
    """float32: the plan and the per-op path are both within float32 rounding of the float64 network.

    The two float32 paths add in different orders (the plan multiplies a chunk of samples at once, and
    BLAS picks its kernels by shape), so each carries its own float32 rounding, about 1e-5 in these
    signatures; two such results can differ by slightly more than 1e-5 from each other while both are
    1e-5 from the exact value. So each is compared with the float64 per-op signatures (the same maths,
    shown equal to 1e-9 in float64 below): within 1e-5 (plus 1e-5 relative).
    """
    model = perturbed(TABLE2, np.float32)
    images = images_for(TABLE2, n)
    before = images.copy()
    want, _ = model.forward(images, per_op=True)
    exact, _ = perturbed(TABLE2, np.float64).forward(images, per_op=True)
    np.testing.assert_allclose(want, exact, rtol=1e-5, atol=1e-5)
    for threads in (1, 2):
        with limit(min(threads, 2)):
            got, _ = model.forward(images)
        np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5)
    embedded = model.embed(images)
    np.testing.assert_allclose(embedded, exact, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(images, before)


@pytest.mark.parametrize("config, n", [(TINY, 3), (TABLE2, 1), (TABLE2, 3), (TABLE2, 17)])
def test_plan_gradients_equal_the_per_op_path_in_float64(config, n):
    model = perturbed(config, np.float64)
    images = images_for(config, n)
    dsig = np.random.default_rng(2).standard_normal((n, config.signature_dim))
    with limit(2):
        sig_ref, cache_ref = model.forward(images, train=True, per_op=True)
        want = model.backward(dsig, 0.25, cache_ref)
        sig, cache = model.forward(images, train=True)
        got = model.backward(dsig, 0.25, cache)
    np.testing.assert_allclose(sig, sig_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cache.theta, cache_ref.theta, rtol=1e-12, atol=1e-12)
    assert sorted(got) == sorted(want) == sorted(model.params)
    for name in want:
        scale = np.abs(want[name]).max()
        assert np.abs(got[name] - want[name]).max() <= 1e-9 * scale, name


def test_frozen_alignment_skips_its_gradients_and_keeps_the_rest():
    model = perturbed(TINY, np.float64)
    images = images_for(TINY, 5)
    dsig = np.random.default_rng(3).standard_normal((5, TINY.signature_dim))
    full = model.backward(dsig, 1.0, model.forward(images, train=True)[1])
    model.frozen = ("a.",)
    for per_op in (False, True):
        part = model.backward(dsig, 1.0, model.forward(images, train=True, per_op=per_op)[1])
        assert sorted(part) == sorted(k for k in full if not k.startswith("a."))
        for name in part:
            np.testing.assert_allclose(part[name], full[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_workspace_is_reused_and_calls_allocate_nothing_new():
    model = perturbed(TABLE2, np.float32)
    images = images_for(TABLE2, 3)
    with limit(1):
        model.embed(images)                                     # compile, allocate the workspace
        ws = model.plan.workspace(3, train=False)
        arrays = {k: v for k, v in vars(ws).items() if isinstance(v, np.ndarray)}
        tracemalloc.start()
        model.embed(images)
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            model.embed(images)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert model.plan.workspace(3, train=False) is ws
    assert all(getattr(ws, k) is v for k, v in arrays.items())
    # beyond the returned signatures (3 x 128 float32) and small Python objects, nothing is allocated
    assert current - base < 4096 and peak - base < 64 * 1024, (current - base, peak - base)
    assert ws.nbytes < 4 * 1024 * 1024


def test_stale_cache_and_bad_dsig_are_one_line_errors():
    model = perturbed(TINY, np.float32)
    images = images_for(TINY, 4)
    _, first = model.forward(images, train=True)
    model.forward(images, train=True)
    dsig = np.zeros((4, TINY.signature_dim), np.float32)
    with pytest.raises(ValueError, match="overwritten by a later forward"):
        model.backward(dsig, 0.0, first)
    _, cache = model.forward(images, train=True)
    with pytest.raises(ValueError, match=r"dsig must be a float array of shape \(N, D\) = \(4, 5\)"):
        model.backward(dsig[:3], 0.0, cache)
    with pytest.raises(ValueError, match=r"shape \(N, 12, 12, 3\)"):
        model.forward(images[:, :6])


def test_training_steps_reuse_one_workspace_and_do_not_grow():
    model = perturbed(TINY, np.float32)
    images = images_for(TINY, 6)
    dsig = np.ones((6, TINY.signature_dim), np.float32)
    with limit(2):
        model.backward(dsig, 0.0, model.forward(images, train=True)[1])
        ws = model.plan.workspace(6, train=True)
        tracemalloc.start()
        model.backward(dsig, 0.0, model.forward(images, train=True)[1])
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            model.backward(dsig, 0.0, model.forward(images, train=True)[1])
        current = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert model.plan.workspace(6, train=True) is ws
    assert current - base < 4096, current - base


def test_threads_embedding_with_one_model_get_their_own_results():
    # The plan's kernels release the GIL and its workspaces are shared: without the plan's lock, two
    # threads' batches would overwrite each other's activations, which changes signatures by O(1).
    # Not bit for bit: OpenBLAS may ignore a thread limit set from a worker thread (0.3.30 does, once the
    # main thread has restored its own), so a worker's products can run split over two BLAS threads and
    # round differently (by about 4e-6 here).
    from concurrent.futures import ThreadPoolExecutor
    model = perturbed(TABLE2, np.float32)
    batches = [images_for(TABLE2, 3, seed=s) for s in range(8)]
    want = [model.embed(b) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(model.embed, batches))
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=0, atol=1e-4)


def test_a_model_pickles_without_its_plan():
    import pickle
    model = perturbed(TINY, np.float32)
    images = images_for(TINY, 3)
    want = model.embed(images)                                    # builds the plan (workspaces, a lock)
    copy = pickle.loads(pickle.dumps(model))
    assert copy._plan is None and model._plan is not None
    np.testing.assert_array_equal(copy.embed(images), want)
