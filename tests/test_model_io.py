"""Model files: .npz with JSON metadata, atomic writes, strict validation on load."""
import json
import os

import numpy as np
import pytest

import npface
from npface.model import METADATA_KEY, FaceModel, load, save_model
from tests.test_model import TINY


def saved(tmp_path, **provenance):
    model = FaceModel(TINY, seed=5, threshold=2.5, provenance=provenance)
    path = tmp_path / "model.npz"
    model.save(path)
    return model, path


def rewrite(path, change):
    """Load the raw arrays of a model file, let ``change(arrays, metadata)`` edit them, and write them back."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    metadata = json.loads(str(arrays[METADATA_KEY]))
    change(arrays, metadata)
    arrays[METADATA_KEY] = np.array(json.dumps(metadata))
    np.savez(path, **arrays)


def test_round_trip(tmp_path):
    model, path = saved(tmp_path, steps=10, data="synthetic")
    back = npface.load(path)
    assert back.config == model.config and back.threshold == 2.5
    assert back.provenance == {"steps": 10, "data": "synthetic"}
    assert set(back.params) == set(model.params)
    for k in model.params:
        np.testing.assert_array_equal(back.params[k], model.params[k])
    images = np.random.default_rng(0).integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    np.testing.assert_array_equal(back.embed(images), model.embed(images))
    with np.load(path, allow_pickle=False) as npz:              # opens without pickle, metadata is JSON
        meta = json.loads(str(npz[METADATA_KEY]))
    assert meta["format_version"] == 1 and meta["threshold"] == 2.5 and "normalisation" in meta["input"]


def test_a_loaded_model_is_read_only_and_its_copies_are_writable(tmp_path):
    model, path = saved(tmp_path)
    back = npface.load(path)
    for name, a in back.params.items():
        assert not a.flags.writeable, name
        with pytest.raises(ValueError, match="read-only"):
            a[...] = 0
        with pytest.raises(ValueError):                       # and it cannot be made writable again
            a.flags.writeable = True
    assert back.params["threshold"].shape == () and back.threshold == 2.5       # 0-d stays 0-d
    images = np.random.default_rng(0).integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
    for writable in (npface.load(path, writable=True), back.copy()):
        assert all(a.flags.writeable for a in writable.params.values())
        assert not any(np.shares_memory(a, back.params[k]) for k, a in writable.params.items())
        writable.params["threshold"] += 1.0                    # in place, as the optimiser updates
        np.testing.assert_array_equal(writable.embed(images), back.embed(images))
    assert back.threshold == 2.5


def test_the_per_op_path_hands_read_only_parameters_to_the_kernels_without_a_second_compile(tmp_path):
    """The kernels get views of a loaded model's read-only parameters that Numba types as writable
    (``FaceModel._kernel_params``): the per-op path compiles no kernel for read-only arrays."""
    from numba import types

    from kernels import conv as kconv
    from npface.plan import kernel_view
    model, path = saved(tmp_path)
    back = npface.load(path)
    images = np.random.default_rng(0).integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
    np.testing.assert_array_equal(back.forward(images, per_op=True)[0], model.forward(images, per_op=True)[0])
    assert all(t.mutable for sig in kconv.conv2d_forward.signatures for t in sig if isinstance(t, types.Array))
    views = back._kernel_params()
    assert back._kernel_params() is views                        # made once while the entries stay the same
    for k, v in views.items():
        assert v.flags.writeable and np.shares_memory(v, back.params[k]) and v.shape == back.params[k].shape
    w = back.params["threshold"]
    view = kernel_view(w)
    del back, views, w                                          # the view keeps the memory alive
    assert float(view) == 2.5
    a = np.ones(3, np.float32)
    assert kernel_view(a) is a                                  # a writable array is passed as it is


def test_save_is_atomic(tmp_path, monkeypatch):
    model, path = saved(tmp_path)
    before = path.read_bytes()

    def crash(fh, **arrays):
        fh.write(b"half a file")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_model(FaceModel(TINY, seed=6), path)
    assert path.read_bytes() == before                          # the old model is intact
    assert os.listdir(tmp_path) == ["model.npz"]               # and no temp file is left behind


def test_truncated_file(tmp_path):
    _, path = saved(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable npface model file"):
        load(path)


def test_not_an_npz(tmp_path):
    path = tmp_path / "model.npz"
    path.write_text("hello")
    with pytest.raises(ValueError, match="not a readable npface model file"):
        load(path)
    np.save(tmp_path / "array.npy", np.zeros(3))                     # np.load would read it, as no archive
    with pytest.raises(ValueError, match=r"not a readable npface model file \(.npz\): not a .npz \(zip\) archive"):
        load(tmp_path / "array.npy")


def test_a_folder_is_named_as_one(tmp_path):
    with pytest.raises(ValueError, match="is a folder, not an npface model file"):
        load(tmp_path)


def test_missing_file_and_missing_pretrained(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load(tmp_path / "nope.npz")


@pytest.mark.parametrize("change, match", [
    (lambda a, m: m.update(format_version=99), "format version 99 is not supported"),
    (lambda a, m: m.update(format="other"), "format is 'other'"),
    (lambda a, m: a.pop("s.fc.weight"), r"missing \['s.fc.weight'\]"),
    (lambda a, m: a.update(extra=np.zeros(3, np.float32)), r"unexpected \['extra'\]"),
    (lambda a, m: a["s.fc.bias"].__setitem__(2, np.nan), "'s.fc.bias' has 1 NaN or infinite values"),
    (lambda a, m: a.update({"s.fc.bias": a["s.fc.bias"].astype(np.float64)}), "'s.fc.bias' has dtype float64"),
    (lambda a, m: a.update({"s.fc.bias": np.zeros(9, np.float32)}), r"'s.fc.bias' has shape \(9,\), expected \(8,\)"),
    (lambda a, m: m["config"]["signature"][0].update(type="Pool3D"), "unknown layer type 'Pool3D'"),
])
def test_bad_contents_name_the_entry(tmp_path, change, match):
    _, path = saved(tmp_path)
    rewrite(path, change)
    with pytest.raises(ValueError, match=match):
        load(path)


def test_no_metadata(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ValueError, match="no 'metadata.json' entry"):
        load(path)


def test_the_shipped_model_loads_without_a_path():
    model = npface.load()
    assert model.config.input_size == 112 and model.threshold > 0
    assert model.provenance["trained_steps"] > 0 and "peopleDevTrain" in json.dumps(model.provenance["config"])
    sig = model.embed(np.zeros((1, 112, 112, 3), np.uint8))
    assert sig.shape == (1, 128) and np.all(np.isfinite(sig))
