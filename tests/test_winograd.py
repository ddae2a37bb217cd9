"""kernels.winograd: Winograd's F(2x2, 3x3) against the direct convolution, and the plan's use of it."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels import plan as kplan
from kernels import winograd as wg
from kernels.conv import conv2d_forward_reference
from npface.model import TABLE2, FaceModel, read_only
from npface.plan import Workspace
from npface.threads import limit
from tests.test_plan import images_for, perturbed


def run_chunk(x, w, b, relu, step=2):
    """x (nb, C, H, W) through ``conv3x3_winograd_chunk``, each sample in its own row of a row buffer (every
    ``step``-th row, at an offset), as the plan lays them out -> (nb, F, H, W), and the buffer."""
    nb, C, H, W = x.shape
    F, dtype = w.shape[0], x.dtype
    U = np.empty((16, F * C), dtype)
    wg.winograd_weights(w.reshape(F, -1), wg.WINOGRAD_WEIGHTS.astype(dtype), U)
    x_off, out_off = 3, 3 + C * H * W
    rows = np.full((step * nb, out_off + F * H * W + 2), np.nan, dtype)   # NaN: any stray read shows
    for i in range(nb):
        rows[step * i, x_off:out_off] = x[i].ravel()
    scratch = np.full(wg.scratch_size(C, F, H, W, nb) + 4, np.nan, dtype)
    wg.conv3x3_winograd_chunk(rows, 0, step, nb, x_off, C, H, W, U, b, relu, scratch, out_off)
    assert np.isnan(scratch[-4:]).all()                        # nothing written past its scratch
    out = np.stack([rows[step * i, out_off:out_off + F * H * W].reshape(F, H, W) for i in range(nb)])
    return out, rows


shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9))


@given(shapes, st.booleans(), st.integers(0, 2 ** 16))
def test_winograd_equals_the_direct_convolution_in_float64(shape, relu, seed):
    """Odd and even sizes (a last tile half outside the image), 1x1 images, several samples per chunk."""
    nb, C, F, H, W = shape
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((nb, C, H, W)), rng.standard_normal((F, C, 3, 3)), rng.standard_normal(F)
    before = [a.copy() for a in (x, w, b)]
    want = conv2d_forward_reference(x, w, b, 1, 1)
    got, rows = run_chunk(x, w, b, relu)
    np.testing.assert_allclose(got, np.maximum(want, 0) if relu else want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(wg.conv3x3_winograd_reference(x, w, b), want, rtol=1e-12, atol=1e-12)
    for a, a0 in zip((x, w, b), before):
        np.testing.assert_array_equal(a, a0)
    # other rows, and the row's parts before the input and after the output, untouched
    assert np.isnan(rows[1::2]).all() and np.isnan(rows[:, :3]).all() and np.isnan(rows[:, -2:]).all()


def test_winograd_in_float32_stays_within_float32_rounding():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 128, 7, 7)).astype(np.float32)           # nin4's shape, two samples
    w = (rng.standard_normal((128, 128, 3, 3)) / 34).astype(np.float32)
    b = rng.standard_normal(128).astype(np.float32)
    want = conv2d_forward_reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, 1)
    got, _ = run_chunk(x, w, b, False)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_weight_transform_is_g_w_gt():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 3, 3))
    U = np.empty((16, 6))
    wg.winograd_weights(w.reshape(3, -1), wg.WINOGRAD_WEIGHTS, U)
    want = np.einsum("ij,fcjk,lk->ilfc", wg.G, w, wg.G).reshape(16, 6)     # position (i, l), filter (f, c)
    np.testing.assert_allclose(U, want, rtol=1e-14, atol=1e-14)


def test_count_differences():
    a = np.arange(10.0)
    b = a.copy()
    assert wg.count_differences(a, b) == 0
    b[[0, 9]] = -1.0
    assert wg.count_differences(a, b) == 2


def test_inference_in_chunks_runs_the_7x7_3x3_layers_by_winograd_and_nothing_else_does():
    t = FaceModel(TABLE2, seed=0).plan.tables
    split = int(t.layout[kplan.L_SPLIT])
    names = [layer.name for layer in TABLE2.signature][split:split + len(t.chunk)]
    wino = [n for n, kind in zip(names, t.chunk_winograd[:, kplan.KIND]) if kind == kplan.WINOGRAD]
    assert wino == ["nin4.conv", "nin5.conv"]                  # nin3.conv and conv6 have stride 2
    assert kplan.WINOGRAD not in t.sig[:, kplan.KIND] and kplan.WINOGRAD not in t.chunk[:, kplan.KIND]
    same = [i for i in range(len(kplan.PROGRAM_COLUMNS)) if i not in (kplan.KIND, kplan.AUX)]
    np.testing.assert_array_equal(t.chunk_winograd[:, same], t.chunk[:, same])   # only kind and aux differ
    rows = t.chunk_winograd[t.chunk_winograd[:, kplan.KIND] == kplan.WINOGRAD]
    after = len(t.param_order)                                 # the slots come after every layer's weights
    assert t.winograd_layers == ((rows[0, kplan.P_], after), (rows[1, kplan.P_], after + 1))
    np.testing.assert_array_equal(rows[:, kplan.AUX], [after, after + 1])
    assert [t.param_order[p] for p, _ in t.winograd_layers] == ["nin4.conv", "nin5.conv"]


@pytest.mark.parametrize("N", range(1, 19))
def test_the_workspace_holds_winograds_scratch_for_every_chunk(N):
    t = FaceModel(TABLE2, seed=0).plan.tables
    for G in (1, 2):
        ws = Workspace(t, N, np.float32, min(G, N), False)
        for row in t.chunk_winograd[t.chunk_winograd[:, kplan.KIND] == kplan.WINOGRAD]:
            need = wg.scratch_size(*(int(row[i]) for i in (kplan.C_, kplan.F_, kplan.H_, kplan.W_)), ws.nb)
            assert ws.cols.shape[1] >= need, (N, G, ws.nb)


def test_rows_of_v_and_m_are_never_a_multiple_of_4_kib_apart():
    for n in (0, 1, 1008, 1024 - wg.ROW_PAD, 2048, 4096 - wg.ROW_PAD, 5000):
        L = wg.row_length(n)
        assert L >= n + wg.ROW_PAD and L % 1024 != 0, (n, L)
    # scratch_size covers the longest rows, so it stays linear in nb: here V's rows get the extra pad at
    # 2 samples (C*T*2 + 16 = 1024) and not at 1, which a size taken from one sample would miss
    C, F, H, W = 63, 1, 4, 8                                   # 2 x 4 tiles: C*T = 504, F*T = 8
    for nb in range(1, 40):
        need = 16 * wg.row_length(C * nb * 8) + 16 * wg.row_length(F * nb * 8) + wg.plane_size(H, W)
        assert need <= wg.scratch_size(C, F, H, W, nb) == nb * wg.scratch_size(C, F, H, W, 1) - (nb - 1) * \
            wg.scratch_size(C, F, H, W, 0), nb


def test_inference_in_float64_equals_the_per_op_path():
    model = perturbed(TABLE2, np.float64)
    images = images_for(TABLE2, 3)
    want, _ = model.forward(images, per_op=True)
    with limit(1):
        assert model.plan.winograd_nbytes == 0
        got, _ = model.forward(images[:1])                     # one sample per chunk
        assert model.plan.winograd_nbytes > 0                  # Winograd's method ran at batch 1 too
        np.testing.assert_allclose(got, want[:1], rtol=1e-9, atol=1e-12)
        got, _ = model.forward(images)                         # a chunk of 3, in the model's float64
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_training_and_the_im2col_flag_run_the_direct_convolution():
    """A training forward, and an inference call with ``winograd=False``, run the direct convolution: they
    make no transformed weights, and their signatures equal the per-op path's in float64 as closely as the
    direct sum allows (closer than Winograd's rounding, which the test above allows for)."""
    model = perturbed(TABLE2, np.float64)
    images = images_for(TABLE2, 2)
    want, _ = model.forward(images, per_op=True)
    with limit(1):
        trained, _ = model.forward(images, train=True)
        direct = model.plan.forward(images, winograd=False)[0].copy()
    assert model.plan.winograd_nbytes == 0
    np.testing.assert_allclose(trained, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(direct, want, rtol=1e-12, atol=1e-14)


def test_a_call_that_stops_before_the_winograd_layers_makes_no_transformed_weights():
    """forward(stages=k) runs the first k stages: only a call that reaches nin4.conv compares and transforms
    its weights (so that a profile by stages counts that work as nin4.conv's)."""
    model = FaceModel(TABLE2, seed=0)
    images = images_for(TABLE2, 1)
    first = model.plan.stage_names().index("nin4.conv")
    with limit(1):
        model.plan.forward(images, stages=first)
        assert model.plan.winograd_nbytes == 0
        model.plan.forward(images, stages=first + 1)
        assert model.plan.winograd_nbytes > 0


@pytest.mark.parametrize("change", ["all", "one element"])
def test_inference_sees_weights_changed_in_place(change):
    """The transformed weights are remade when the layer's weights change in place, even in one element."""
    model = perturbed(TABLE2, np.float64)
    images = images_for(TABLE2, 2)
    with limit(1):
        before = model.forward(images)[0].copy()
        w = model.params["nin5.conv.weight"]
        if change == "all":
            w *= 1.5
        else:
            w[7, 3, 1, 2] += 3.0
        after = model.forward(images)[0]
    want, _ = model.forward(images, per_op=True)
    np.testing.assert_allclose(after, want, rtol=1e-9, atol=1e-12)
    assert np.abs(after - before).max() > 1e-6


def test_read_only_weights_are_transformed_once_and_never_compared(monkeypatch):
    """A loaded model's weights are read-only (npface.model.load): the plan keeps their transform without
    comparing them on later calls; a parameter replaced by another array is transformed again; writable
    weights are compared on every call."""
    compared = []
    count = wg.count_differences
    monkeypatch.setattr(wg, "count_differences", lambda a, b: compared.append(1) or count(a, b))
    writable = perturbed(TABLE2, np.float64)
    model = FaceModel(TABLE2, params={k: read_only(v) for k, v in writable.params.items()})
    images = images_for(TABLE2, 2)
    with limit(1):
        for _ in range(3):
            got = model.forward(images)[0].copy()
        assert compared == [] and model.plan.winograd_nbytes == 16 * 128 * 128 * 8 * 2   # U alone, no copies
        assert not model.plan.compares_winograd_weights and writable.plan.compares_winograd_weights
        np.testing.assert_allclose(got, writable.forward(images, per_op=True)[0], rtol=1e-9, atol=1e-12)
        changed = writable.params["nin5.conv.weight"] * 1.5
        model.params["nin5.conv.weight"] = read_only(changed)
        writable.params["nin5.conv.weight"][...] = changed
        got = model.forward(images)[0].copy()
        assert compared == []
        np.testing.assert_allclose(got, writable.forward(images, per_op=True)[0], rtol=1e-9, atol=1e-12)
        writable.forward(images)
        writable.forward(images)
    assert len(compared) == len(model.plan.tables.winograd_layers)     # the writable model's second call
