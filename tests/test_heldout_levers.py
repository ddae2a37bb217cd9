"""The selection/report protocol (benchmarks.heldout) and the lever runner (benchmarks.levers)."""
import json
import os
from pathlib import Path

import pytest

from benchmarks import heldout, levers
from benchmarks.accuracy import trainer_split

LFW = Path(os.environ.get("NPFACE_LFW", Path(__file__).resolve().parents[1] / ".." / "shared" / "lfw"))


def names(n):
    return [f"Person_{i:04d}" for i in range(n)]


def test_selection_and_report_people_are_disjoint_cover_the_held_out_and_ignore_the_list():
    held_out = trainer_split(names(2000))[1]
    sel, rep = heldout.people_of("selection", held_out), heldout.people_of("report", held_out)
    assert not set(sel) & set(rep) and sorted(sel + rep) == sorted(held_out)
    assert 0.4 < len(sel) / len(held_out) < 0.6
    # a person's side depends on their name alone, not on who else is in the list
    assert heldout.people_of("report", list(held_out[:50])) == [n for n in rep if n in held_out[:50]]
    with pytest.raises(ValueError, match="--people must be one of"):
        heldout.people_of("test", held_out)


@pytest.mark.lfw
def test_protocol_people_of_lfw_are_never_training_people():
    people = LFW / "peopleDevTrain.txt"
    if not people.is_file():
        pytest.skip(f"LFW not found at {LFW} (set NPFACE_LFW)")
    listed = [line.split("\t")[0] for line in people.read_text().splitlines()[1:] if line.strip()]
    trained, held_out = trainer_split(listed)
    for part in heldout.PARTS:
        assert heldout.people_of(part, held_out) and not set(heldout.people_of(part, held_out)) & set(trained)


def test_wilson_interval():
    low, high = heldout.wilson(0.5, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    low, high = heldout.wilson(1.0, 20)                     # stays inside [0, 1] at the edge
    assert 0.8 < low < 1.0 and high == pytest.approx(1.0)
    assert heldout.wilson(0.9, 1000)[1] - heldout.wilson(0.9, 1000)[0] < heldout.wilson(0.9, 100)[1] \
        - heldout.wilson(0.9, 100)[0]


def changed(cmd, base):
    want, got = levers.expected_config(base), levers.expected_config(cmd)
    return {k for k in want if want[k] != got[k]}


@pytest.mark.parametrize("quick", [False, True])
def test_each_lever_changes_only_its_own_settings(quick, tmp_path):
    args = ("LFW", tmp_path, 100, None if quick else "init.npz", 2, quick, 40)
    base = levers.lever_command(levers.LEVERS[0], *args)[0]
    expect = {"singletons": {"singletons"}, "appearance": {"color_jitter", "blur", "grayscale", "erase"},
              "strong-jitter": {"jitter_rotation", "jitter_scale", "jitter_shift"},
              "weight-decay": {"weight_decay"},
              # quick runs start from a fresh model whose alignment net trains at 0.1 already
              "align-finetune": {"landmark_weight"} | (set() if quick else {"align_lr_scale"}),
              "batch-32x8": {"batch_identities", "images_per_identity"},
              "batch-64x4": {"batch_identities", "images_per_identity"}, "context-jitter": {"jitter_context"},
              "batch-128x2": {"batch_identities", "images_per_identity"}, "distinct-photos": {"distinct_photos"},
              "seed-1": {"seed"}, "lr-low": {"lr"}, "lr-high": {"lr"},
              "batch-32x16": {"batch_identities", "steps"}, "long": {"steps"}}          # K stays 16 (quick: 4)
    for lever in levers.LEVERS[1:]:
        commands = levers.lever_command(lever, *args)
        if lever.kind in ("average", "flip"):
            assert commands == []
        elif lever.kind == "synthetic":
            first, second = commands
            assert levers.expected_config(first)["data"] == "synthetic"
            assert changed(second, base) == {"init"}
            assert levers.expected_config(second)["init"] == str(Path(first[first.index("--out") + 1]) / "model.npz")
        else:
            assert changed(commands[0], base) == expect[lever.name], lever.name
    b32 = levers.expected_config(levers.lever_command(dict(zip(levers.NAMES, levers.LEVERS))["batch-32x16"],
                                                      *args)[0])
    assert b32["steps"] == 50 or quick                         # half the steps for twice the images


def test_a_run_folder_with_other_settings_is_refused(tmp_path):
    cmd = levers.lever_command(levers.LEVERS[1], "LFW", tmp_path, 100, "init.npz", 2, False, 40)[0]
    out = Path(cmd[cmd.index("--out") + 1])
    out.mkdir(parents=True)
    config = levers.expected_config(cmd)
    (out / "config.json").write_text(json.dumps({**config, "world_size": 1}))
    levers.check_settings(cmd)                                  # the same settings: accepted
    (out / "config.json").write_text(json.dumps({**config, "singletons": 8, "world_size": 1}))
    with pytest.raises(ValueError, match=r"other settings \(singletons\)"):
        levers.check_settings(cmd)
    # a setting added after the run was made: absent from its file, so the run had the default
    older = {k: v for k, v in config.items() if k != "distinct_photos"}
    (out / "config.json").write_text(json.dumps({**older, "world_size": 1}))
    levers.check_settings(cmd)                                  # accepted: the default is what the command asks
    with_flag = [*cmd, "--distinct-photos"]
    with pytest.raises(ValueError, match=r"other settings \(distinct_photos\)"):
        levers.check_settings(with_flag)


def test_cli_errors(capsys, tmp_path):
    assert levers.main(["--lfw", "x", "--init", str(tmp_path / "none.npz"), "--runs", str(tmp_path)]) == 2
    assert "--init:" in capsys.readouterr().err
    assert heldout.main(["--lfw", "x", "--people", "report", "--model", str(tmp_path / "none.npz")]) == 2
    assert capsys.readouterr().err.startswith("python -m benchmarks.heldout: error: model file not found")


@pytest.mark.slow
@pytest.mark.lfw
def test_quick_lever_run_end_to_end(tmp_path):
    if not (LFW / "lfw").is_dir():
        pytest.skip(f"LFW not found at {LFW} (set NPFACE_LFW)")
    out = tmp_path / "levers.json"
    argv = ["--lfw", str(LFW), "--quick", "--threads", "1", "--runs", str(tmp_path / "runs"), "--json", str(out)]
    assert levers.main(argv + ["--only", "weight-decay", "--only", "average", "--only", "flip"]) == 0
    result = json.loads(out.read_text())["levers"]
    assert set(result) == {"baseline", "weight-decay", "average", "flip"}
    assert result["baseline"]["delta"]["accuracy"] == 0
    assert result["flip"]["selection"] == json.loads((tmp_path / "runs" / "baseline" / "selection.json").read_text()
                                                     )["summary"]["flip"]
    try:
        import cv2  # noqa: F401                                   # the framing agreement needs the detect extra
        framing = result["weight-decay"]["framing"]
        assert framing["people"] == "selection" and framing["pairs"] == levers.QUICK_PAIRS
        assert 0 <= framing["agreement"] <= 1 and result["average"]["framing"]["pictures"] == framing["pictures"]
    except ImportError:
        assert result["weight-decay"]["framing"] is None
    assert levers.main(argv + ["--only", "long"]) == 0          # merged into the same file, finished runs reused
    assert set(json.loads(out.read_text())["levers"]) == {"baseline", "weight-decay", "average", "flip", "long"}


@pytest.mark.lfw
def test_heldout_records_the_digest_of_the_model_it_measured(tmp_path):
    if not (LFW / "lfw").is_dir():
        pytest.skip(f"LFW not found at {LFW} (set NPFACE_LFW)")
    from benchmarks.common import params_digest
    from npface.model import TABLE2, FaceModel, load
    path = tmp_path / "m.npz"
    FaceModel(TABLE2, seed=3, threshold=1.5, provenance={"purpose": "test"}).save(path)
    out = tmp_path / "h.json"
    assert heldout.main(["--lfw", str(LFW), "--people", "selection", "--model", str(path), "--n-fit", "5",
                         "--n-test", "5", "--work", str(tmp_path / "work"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["model_sha256"] == params_digest(load(path))
    # --align-rounds: the same file measured as another network, with a digest of its own
    assert heldout.main(["--lfw", str(LFW), "--people", "selection", "--model", str(path), "--n-fit", "5",
                         "--n-test", "5", "--work", str(tmp_path / "work"), "--align-rounds", "2",
                         "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["align_rounds"] == 2
    assert record["model_sha256"] == params_digest(load(path).with_align_rounds(2)) != params_digest(load(path))
    assert load(tmp_path / "work" / "model-rounds2.npz").config.align_rounds == 2


def test_a_re_run_baseline_that_differs_keeps_the_earlier_one_for_the_levers_it_measured():
    from benchmarks.levers import keep_earlier_baseline
    sel = {"accuracy": 0.8}
    earlier = {"what": "recipe", "selection": sel, "compared_with": "baseline"}
    results = {"baseline": {"what": "recipe", "selection": {"accuracy": 0.83}, "compared_with": "baseline"},
               "singletons": {"what": "s", "selection": {"accuracy": 0.81}},
               "long": {"what": "l", "selection": {"accuracy": 0.85}, "compared_with": "baseline"}}
    out = keep_earlier_baseline(results, earlier, ran={"baseline", "long"})
    assert list(out) == ["baseline", "baseline-earlier", "singletons", "long"]
    assert out["baseline-earlier"]["selection"] == sel and out["baseline-earlier"]["compared_with"] == "baseline-earlier"
    assert out["singletons"]["compared_with"] == "baseline-earlier"          # carried over: the old baseline
    assert out["long"]["compared_with"] == "baseline"                        # run now: the new one
    # the same result again, or no re-run of the baseline: nothing is kept
    assert keep_earlier_baseline(results, results["baseline"], ran={"baseline"}) is results
    assert keep_earlier_baseline(results, earlier, ran={"long"}) is results
    # a second re-run keeps both earlier baselines, each with the levers it measured
    again = keep_earlier_baseline(dict(out, baseline={"what": "recipe", "selection": {"accuracy": 0.9}}),
                                  out["baseline"], ran={"baseline"})
    assert again["baseline-earlier-2"]["selection"] == {"accuracy": 0.83}
    assert again["long"]["compared_with"] == "baseline-earlier-2"
    assert again["singletons"]["compared_with"] == "baseline-earlier"


def test_heldout_records_what_the_model_started_from():
    provenance = {"init": "runs/a.npz", "init_provenance": {
        "kind": "alignment pretraining (npface.pretrain_alignment)", "settings": {"steps": 8000, "batch_size": 64},
        "heldout_landmark_error_px": {"plain": {"net": 3.5}}, "template_px": [[0.0, 0.0]]}}
    record = heldout._init_record(provenance)
    assert record == {"path": "runs/a.npz", "kind": "alignment pretraining (npface.pretrain_alignment)",
                      "settings": {"steps": 8000, "batch_size": 64},
                      "heldout_landmark_error_px": {"plain": {"net": 3.5}}}
    assert heldout._init_record({}) == {"path": None, "kind": None, "settings": None,
                                        "heldout_landmark_error_px": None}
