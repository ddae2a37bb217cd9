"""ONNX export (npface.onnx_export, python -m npface.export) and the ONNX Runtime backend (--onnx).

The exported graph is checked against ``FaceModel`` itself: ONNX Runtime on
one thread against ``model.forward`` / ``model.embed``, on random images and
on LFW faces, for the shipped model and for one with random weights.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npface
from benchmarks.onnx_equality import compare, pair_faces
from npface import embed as npembed
from npface import export as npexport
from npface import verify as npverify
from npface.model import TABLE2, FaceModel, pose_to_theta
from npface.extras import MissingExtra
from tests.test_cli_eval import LFW
from tests.test_cli_verify_embed import images, one_line_error  # noqa: F401 (images is a fixture)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from npface.onnx_backend import TOLERANCE, load_onnx, max_differences  # noqa: E402
from npface.onnx_export import build_onnx, pose_matrix, resize_matrix  # noqa: E402

PAIRS = LFW / "pairsDevTrain.txt"
needs_lfw = pytest.mark.skipif(not PAIRS.is_file(), reason=f"LFW not found at {LFW}")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NPFACE_CACHE", str(tmp_path / "cache"))


def random_model():
    """Untrained weights, with a non-zero last alignment layer so that the warp really moves the image."""
    model = FaceModel(TABLE2, seed=3, threshold=1.5, provenance={"purpose": "test"})
    rng = np.random.default_rng(3)
    model.params["align.fc7.weight"] = (0.01 * rng.standard_normal((4, 64))).astype(np.float32)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{"shipped" | "random": (FaceModel, OnnxModel, path)}."""
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, model in (("shipped", npface.load()), ("random", random_model())):
        path = npface.export_onnx(model, folder / f"{name}.onnx")
        out[name] = (model, load_onnx(path), path)
    return out


def random_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


# --------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------

def test_resize_and_pose_matrices_are_the_projects_own_maps():
    from kernels.resize import area_weights
    R = resize_matrix(112, 50)                                          # (50, 112)
    np.testing.assert_allclose(R, area_weights(112, 50), rtol=0, atol=1e-7)
    x = np.random.default_rng(0).standard_normal((2, 3, 112, 112)).astype(np.float32)
    np.testing.assert_allclose(R @ x @ R.T, npface.ops.resize_area(x, 50, 50), rtol=0, atol=1e-6)
    pose = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal((pose @ pose_matrix()).reshape(5, 2, 3), pose_to_theta(pose))


def test_file_passes_the_full_checker_and_carries_its_metadata(exported):
    model, _, path = exported["random"]
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 20
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["format"] == "npface-onnx" and meta["format_version"] == "1"
    assert meta["npface_version"] == npface.__version__
    assert float(meta["threshold"]) == model.threshold == np.float32(1.5)
    assert json.loads(meta["config"]) == model.config.to_json()
    assert json.loads(meta["provenance"]) == {"purpose": "test"}
    assert json.loads(meta["input"])["dtype"] == "uint8"
    assert set(json.loads(meta["outputs"])) == {"signatures", "theta"}
    nodes = {n.op_type: n for n in proto.graph.node}
    attrs = lambda n: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}  # noqa: E731
    assert attrs(nodes["AffineGrid"]) == {"align_corners": 0}
    assert attrs(nodes["GridSample"]) == {"mode": b"linear", "padding_mode": b"zeros", "align_corners": 0}
    assert [n.op_type for n in proto.graph.node].count("MatMul") == 3    # the resize's two, pose -> theta
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(proto.graph.input) + list(proto.graph.output)}
    assert shapes == {"images": ["N", 112, 112, 3], "signatures": ["N", 128], "theta": ["N", 2, 3]}


def test_a_later_opset_works_and_an_earlier_one_is_refused(tmp_path):
    model = random_model()
    top = 21                                   # the GridSample/AffineGrid schemas of 20 hold through 21
    loaded = load_onnx(npface.export_onnx(model, tmp_path / "m.onnx", opset=top))
    sig, theta = max_differences(model, loaded, random_images(3))
    assert sig <= TOLERANCE and theta <= TOLERANCE
    with pytest.raises(ValueError, match="opset must be an integer from 20"):
        build_onnx(model, opset=19)


# --------------------------------------------------------------------------
# Equal to npface under ONNX Runtime (1 thread)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["shipped", "random"])
@pytest.mark.parametrize("n", [1, 7])
def test_random_images_agree(exported, which, n):
    model, onnx_model, _ = exported[which]
    images = random_images(n, seed=n)
    before = images.copy()
    sig, theta = max_differences(model, onnx_model, images)
    assert sig <= TOLERANCE and theta <= TOLERANCE, (sig, theta)
    np.testing.assert_array_equal(images, before)
    ref = model.embed(images)
    got = onnx_model.embed(images, batch_size=3)                        # batches of 3, 3, 1 for n = 7
    assert np.abs(ref - got).max() <= TOLERANCE


@pytest.fixture(scope="module")
def lfw_pairs():
    """(faces (M, 112, 112, 3) uint8 of every image of pairsDevTrain.txt, index_a (P,), index_b (P,), is_same (P,))."""
    if not PAIRS.is_file():
        pytest.skip(f"LFW not found at {LFW}")
    return pair_faces(LFW, PAIRS)


@needs_lfw
@pytest.mark.parametrize("which", ["shipped", "random"])
@pytest.mark.parametrize("n", [1, 7])
def test_lfw_faces_agree(exported, lfw_pairs, which, n):
    model, onnx_model, _ = exported[which]
    faces = lfw_pairs[0][100:100 + n]
    sig, theta = max_differences(model, onnx_model, faces)
    assert sig <= TOLERANCE and theta <= TOLERANCE, (sig, theta)


def check_decisions(exported, lfw_pairs, every):
    """The shipped model, 1 thread each, on the faces of every ``every``-th pair of pairsDevTrain.txt."""
    model, onnx_model, _ = exported["shipped"]
    faces, a, b, is_same = lfw_pairs
    result = compare(model, onnx_model, faces, a, b, every)
    assert result["pairs"] == len(is_same[::every])
    assert result["max_abs_diff_signatures"] <= TOLERANCE and result["max_abs_diff_theta"] <= TOLERANCE, result
    assert 0 < result["same_decisions"] < result["pairs"]                 # both verdicts occur
    assert result["decisions_agree"] == result["pairs"], result


def test_nan_from_onnx_runtime_is_recorded_as_disagreement(monkeypatch):
    """The comparison must report broken ONNX output as unequal, not stop at distance()'s refusal of NaN."""
    from npface import onnx_backend
    model = FaceModel(TABLE2, seed=0)
    faces = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)

    def broken(model, onnx_model, images):
        sig, cache = model.forward(images, train=True)
        bad = sig.copy()
        bad[1] = np.nan                                                      # ONNX Runtime's face 1 is broken
        return (sig, cache.theta), (bad, cache.theta)

    monkeypatch.setattr(onnx_backend, "outputs", broken)
    a, b = np.array([0, 1, 0]), np.array([0, 1, 2])           # faces 0 and 1 each twice (same), then 0 with 2
    result = compare(model, model, faces, a, b)
    assert result["onnx_nonfinite_faces"] == 1 and result["pairs"] == 3
    assert np.isnan(result["max_abs_diff_signatures"])
    assert result["same_decisions"] >= 2 and result["decisions_agree"] == 2        # (1, 1): same, but not for ONNX


@needs_lfw
def test_same_decision_on_a_quarter_of_pairs_dev_train(exported, lfw_pairs):
    """Every 4th pair (550 of 2,200, same and different alike; about 900 faces), to keep the suite fast."""
    check_decisions(exported, lfw_pairs, every=4)


@needs_lfw
@pytest.mark.slow
def test_same_decision_on_every_pair_of_pairs_dev_train(exported, lfw_pairs):
    """All 2,200 pairs (about 3,400 faces); benchmarks/onnx_equality.py records the same check."""
    check_decisions(exported, lfw_pairs, every=1)


# --------------------------------------------------------------------------
# The loader's checks
# --------------------------------------------------------------------------

def damaged_files(good: Path, folder: Path):
    """{description: path} of broken copies of a good export."""
    data = good.read_bytes()
    mid = len(data) // 2
    flipped = bytearray(data)
    flipped[mid] ^= 0xFF                                               # inside the weights
    variants = {"empty": b"", "text": b"not a model\n", "garbage": random_images(1).tobytes()[:5000],
                "flipped byte": bytes(flipped)}
    for cut in (100, mid, len(data) - 1000, len(data) - 300, len(data) - 1):
        variants[f"truncated at {cut}"] = data[:cut]
    paths = {}
    for i, (name, content) in enumerate(variants.items()):
        paths[name] = folder / f"bad{i}.onnx"
        paths[name].write_bytes(content)
    return paths


def test_damaged_files_are_refused_with_one_line(exported, tmp_path):
    for name, path in damaged_files(exported["random"][2], tmp_path).items():
        with pytest.raises(ValueError) as e:
            load_onnx(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value), (name, str(e.value))


def test_an_onnx_file_that_is_not_an_npface_export_is_refused(tmp_path):
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(ValueError, match="not an npface ONNX export"):
        load_onnx(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_onnx(tmp_path / "missing.onnx")


def test_backend_threads_and_open_model(exported):
    from npface.faces import CommandError, open_model
    from npface.threads import max_threads
    _, onnx_model, path = exported["random"]
    images = random_images(5)
    if max_threads() >= 2:
        assert np.abs(onnx_model.embed(images, threads=2) - onnx_model.embed(images)).max() <= TOLERANCE
    with pytest.raises(ValueError, match="threads"):
        onnx_model.embed(images, threads=0)
    loaded = open_model(onnx=path)
    assert loaded.path == path and loaded.model.threshold == onnx_model.threshold
    with pytest.raises(CommandError, match="not both"):
        open_model("m.npz", onnx=path)


def test_backend_refuses_bad_images(exported):
    _, onnx_model, _ = exported["random"]
    with pytest.raises(ValueError, match="uint8"):
        onnx_model.embed(random_images(2).astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"\(N, 112, 112, 3\)"):
        onnx_model.embed(random_images(2)[:, :100])
    with pytest.raises(ValueError, match="batch_size"):
        onnx_model.embed(random_images(2), batch_size=0)


# --------------------------------------------------------------------------
# Command lines
# --------------------------------------------------------------------------

def run_cli(main, capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_export_cli_writes_and_checks(tmp_path, capsys):
    model_path = tmp_path / "m.npz"
    random_model().save(model_path)
    status, out, err = run_cli(npexport.main, capsys, "--model", model_path, "--out", tmp_path / "m.onnx")
    assert status == 0 and err == ""
    assert "max |diff|" in out and "within 0.0001" in out
    assert load_onnx(tmp_path / "m.onnx").threshold == np.float32(1.5)


def test_export_cli_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        npexport.main(["--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--model", "--out", "--opset", "--no-check"):
        assert flag in help_text
    cases = [(["--out", tmp_path / "m.onnx", "--opset", "19"], "opset must be an integer from 20"),
             (["--out", tmp_path / "m.onnx", "--model", tmp_path / "none.npz"], "model file not found")]
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    cases.append((["--out", tmp_path / "m.onnx", "--model", bad], "not a readable npface model file"))
    for argv, fragment in cases:
        status, out, err = run_cli(npexport.main, capsys, *argv)
        assert status == 2 and out == ""
        one_line_error(err, "export", fragment)
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(SystemExit) as e:
        npexport.main([])                                                # --out is required
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        npexport.main(["--out", str(tmp_path)])                          # a folder: refused as the flags are read
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"python -m npface.export: error: argument --out: cannot write {tmp_path}: it is a folder")


def test_verify_and_embed_with_onnx_agree_with_npface(exported, images, tmp_path, capsys):  # noqa: F811
    _, _, onnx_path = exported["shipped"]
    a, b = images["lfw"], images["wide"]
    status, out_onnx, _ = run_cli(npverify.main, capsys, a, b, "--onnx", onnx_path, "--json")
    assert status == 0
    status, out_npz, _ = run_cli(npverify.main, capsys, a, b, "--json")
    assert status == 0
    r_onnx, r_npz = json.loads(out_onnx), json.loads(out_npz)
    assert abs(r_onnx.pop("distance") - r_npz.pop("distance")) < 1e-3 and r_onnx == r_npz

    status, _, _ = run_cli(npembed.main, capsys, *images.values(), "--onnx", onnx_path, "--out",
                           tmp_path / "o.npz", "--quiet")
    assert status == 0
    status, _, _ = run_cli(npembed.main, capsys, *images.values(), "--out", tmp_path / "n.npz", "--quiet")
    assert status == 0
    with np.load(tmp_path / "o.npz") as o, np.load(tmp_path / "n.npz") as n:
        assert np.abs(o["signatures"] - n["signatures"]).max() <= TOLERANCE
        assert json.loads(str(o["metadata.json"]))["model"]["path"] == str(onnx_path)

    with pytest.raises(SystemExit) as e:
        npverify.main([str(a), str(b), "--onnx", str(onnx_path), "--model", "m.npz"])
    assert e.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_verify_and_embed_refuse_damaged_onnx_files_with_one_line(exported, images, tmp_path, capsys):  # noqa: F811
    bad = damaged_files(exported["random"][2], tmp_path)
    for path in (bad["truncated at 100"], bad["flipped byte"], tmp_path / "missing.onnx"):
        status, out, err = run_cli(npverify.main, capsys, images["lfw"], images["wide"], "--onnx", path)
        assert status == 1 and out == ""
        one_line_error(err, "verify", str(path))
        status, out, err = run_cli(npembed.main, capsys, images["lfw"], "--onnx", path, "--out", tmp_path / "o.npz")
        assert status == 1 and out == ""
        one_line_error(err, "embed", str(path))


# --------------------------------------------------------------------------
# The extra stays optional
# --------------------------------------------------------------------------

def test_core_and_commands_import_without_onnx():
    code = ("import sys; import npface, npface.model, npface.faces, npface.verify, npface.embed, npface.eval, "
            "npface.export, npface.onnx_export, npface.onnx_backend; "
            "bad = [m for m in ('onnx', 'onnxruntime') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_missing_extra_is_one_line_naming_the_install(monkeypatch, exported, images, tmp_path, capsys):  # noqa: F811
    onnx_path = exported["random"][2]
    monkeypatch.setitem(sys.modules, "onnx", None)                   # import onnx now fails
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtra, match=r"pip install 'npface\[onnx\]'"):
        npface.export_onnx(random_model(), tmp_path / "m.onnx")
    status, out, err = run_cli(npexport.main, capsys, "--out", tmp_path / "m.onnx")
    assert status == 2 and out == ""
    one_line_error(err, "export", "pip install 'npface[onnx]'")
    status, out, err = run_cli(npverify.main, capsys, images["lfw"], images["wide"], "--onnx", onnx_path)
    assert status == 1 and out == ""
    one_line_error(err, "verify", "pip install 'npface[onnx]'")
    assert not (tmp_path / "m.onnx").exists()


def test_inference_benchmark_times_onnx_runtime_after_checking_it(capsys):
    """benchmarks.inference's ONNX Runtime comparison runs end to end (validation first), here on few calls."""
    from benchmarks.inference import ORT_OTHER, onnx_runtime
    model = npface.load()
    one = np.random.default_rng(0).integers(0, 256, (1, 112, 112, 3), dtype=np.uint8)
    out = onnx_runtime(model, one, calls=3, quick=True)
    assert out["max_abs_diff_signatures"] <= TOLERANCE and out["batch1_ms"] > 0 and out["npface_batch1_ms"] > 0
    assert out["batch256_images_per_s"] > 0 and out["npface_batch256_images_per_s"] > 0
    assert "matches npface" in capsys.readouterr().out
    # its profiler's nodes land in the plan's stages: every Table 2 layer and both fixed stages have a time
    names = model.plan.stage_names()
    assert set(out["stages_ms"]) <= set(names) | {ORT_OTHER}
    assert {"preprocess+resize", "warp", "align.conv1", "align.fc7", "nin1.conv", "pool1", "conv6",
            "signature"} <= set(out["stages_ms"])
    assert all(ms >= 0 for ms in out["stages_ms"].values())


def test_onnx_runtime_nodes_map_to_the_plan_stages():
    """The names ONNX Runtime's optimisations give the exported nodes go back to the stage they came from."""
    from benchmarks.inference import ORT_OTHER, ort_stage_of
    names = ["preprocess+resize", "align.conv1", "align.pool1", "align.fc1", "warp", "nin1.conv", "nin1.mlp",
             "pool1", "conv6", "fc1", "signature"]
    cases = {"pixels": "preprocess+resize", "small": "preprocess+resize", "warp.grid": "warp", "aligned": "warp",
             "theta_flat": "warp", "align.conv1.relu_nchwc": "align.conv1", "fused align.fc1": "align.fc1",
             "align.pool1": "align.pool1", "nin1.conv.relu_nchwc": "nin1.conv", "nin1.mlp.relu": "nin1.mlp",
             "pool1_nchwc": "pool1", "fc1.flatten": "fc1", "fused fc1": "fc1", "signature": "signature",
             "ReorderOutput_token_38": ORT_OTHER, "conv6x": ORT_OTHER}
    assert {node: ort_stage_of(node, names) for node in cases} == cases
