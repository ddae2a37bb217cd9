"""Shipping a run as the default model (benchmarks.ship): candidate, report-people measurement, provenance, history."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks import ship

LFW = Path(os.environ.get("NPFACE_LFW", Path(__file__).resolve().parents[1] / ".." / "shared" / "lfw"))


def test_ship_refuses_what_is_not_a_finished_lfw_run(tmp_path, capsys):
    assert ship.main(["--lfw", "x", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json not found" in err
    for name in ("config.json", "metrics.jsonl", "model.npz"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "config.json").write_text(json.dumps({"data": "synthetic"}))
    assert ship.main(["--lfw", "x", "--run", str(tmp_path)]) == 2
    assert "trained on synthetic faces" in capsys.readouterr().err
    with pytest.raises(ValueError, match="keeps 0 checkpoints"):
        ship.kept_checkpoints(tmp_path, 3)


def tiny_lfw_run(run, steps, *extra):
    """A finished npface.train run of ``steps`` steps of 2 x 2 LFW faces in ``run`` (skips without LFW)."""
    if not (LFW / "peopleDevTrain.txt").is_file():
        pytest.skip(f"LFW not found at {LFW} (set NPFACE_LFW)")
    from npface.train import main as train_main
    assert train_main(["--lfw", str(LFW), "--people", "peopleDevTrain.txt", "--steps", str(steps),
                       "--batch-identities", "2", "--images-per-identity", "2", "--val-pairs", "20",
                       "--validate-every", str(steps), "--threads", "1", *extra, "--out", str(run)]) == 0
    return run


@pytest.mark.lfw
def test_ship_a_tiny_lfw_run_end_to_end(tmp_path):
    from npface import load
    run = tiny_lfw_run(tmp_path / "run", 4, "--checkpoint-every", "1", "--keep-checkpoints", "2")
    to, results = tmp_path / "pretrained" / "m.npz", tmp_path / "results"
    record = ship.ship(LFW, run, average_n=2, to=to, results=results, n_pairs=10, threads=1,
                       log=lambda *a: None, work=tmp_path / "work")
    shipped = load(to)
    assert shipped.provenance["shipped"] == json.loads((results / "shipped.json").read_text()) == record
    assert record["steps"] == 4 and [a["step"] for a in record["averaged"]] == [3, 4]
    assert shipped.provenance["train_people"]                          # npface.eval's warning still works
    assert Path(record["history"]) == to.parent / "m.metrics.jsonl"
    assert (to.parent / "m.metrics.jsonl").read_text() == (run / "metrics.jsonl").read_text()
    assert "validation_metrics" not in shipped.provenance                 # measured on the final model, not this mean
    assert record["report_measurements"] == 1
    assert [v["step"] for v in record["validation"]] == [4] and 0 <= record["validation"][0]["accuracy"] <= 1
    assert record["command"].startswith("python -m npface.train --lfw") and "--keep-checkpoints 2" in record["command"]
    report = json.loads((results / "heldout-report.json").read_text())
    assert report["model_sha256"] == record["model_sha256"] and report["people"] == "report"
    from benchmarks.common import params_digest
    assert record["model_sha256"] == params_digest(shipped)
    a = ship.candidate(run, 2)[0]
    for name, v in shipped.params.items():
        np.testing.assert_array_equal(v, a.params[name])
    # the same candidate again: the report people are not measured a second time
    seen = []
    ship.ship(LFW, run, average_n=2, to=to, results=results, n_pairs=10, threads=1, log=seen.append,
              work=tmp_path / "work")
    assert any("reused, not measured again" in line for line in seen)
    # a report file from before the list of measurements existed counts as one earlier measurement ...
    legacy = {k: v for k, v in report.items() if k not in ("measurements", "model_sha256")}
    (results / "heldout-report.json").write_text(json.dumps(dict(legacy, model="an older model")))
    record = ship.ship(LFW, run, average_n=2, to=to, results=results, n_pairs=10, threads=1,
                       log=lambda *a: None, work=tmp_path / "work")
    assert record["report_measurements"] == 2
    measured = json.loads((results / "heldout-report.json").read_text())["measurements"]
    assert [m["model"] for m in measured][0] == "an older model" and measured[0]["model_sha256"] is None
    # ... and when it measured "shipped", the model then at the shipped path (same steps and configuration)
    # is the one it measured: shipping that same model again reuses it instead of measuring the people twice
    legacy.update(model="shipped", model_trained_steps=shipped.provenance["trained_steps"],
                  model_config=shipped.provenance["config"])
    (results / "heldout-report.json").write_text(json.dumps(legacy))
    seen = []
    record = ship.ship(LFW, run, average_n=2, to=to, results=results, n_pairs=10, threads=1, log=seen.append,
                       work=tmp_path / "work")
    assert any("reused, not measured again" in line for line in seen) and record["report_measurements"] == 1
    assert json.loads((results / "heldout-report.json").read_text())["model_sha256"] == record["model_sha256"]


@pytest.mark.lfw
def test_ship_the_shipped_model_again_with_two_alignment_rounds(tmp_path):
    """--align-rounds: the same weights as another network, measured once more on the report people."""
    from benchmarks.common import params_digest
    from npface import load
    run = tiny_lfw_run(tmp_path / "run", 2)
    to, results, work = tmp_path / "pretrained" / "m.npz", tmp_path / "results", tmp_path / "work"
    first = ship.ship(LFW, run, to=to, results=results, n_pairs=10, threads=1, log=lambda *a: None, work=work)
    record = ship.ship_align_rounds(LFW, 2, to=to, results=results, n_pairs=10, threads=1, log=lambda *a: None,
                                    work=work)
    shipped = load(to)
    assert shipped.config.align_rounds == 2 and record["align_rounds"] == 2
    assert shipped.provenance["shipped"] == json.loads((results / "shipped.json").read_text()) == record
    assert record["model_sha256"] == params_digest(shipped) != first["model_sha256"]
    assert record["report_measurements"] == 2 and record["command"] == first["command"]
    assert record["validation"] == first["validation"] and record["steps"] == first["steps"]
    measured = json.loads((results / "heldout-report.json").read_text())["measurements"]
    assert measured[-1]["model"].endswith("run with 2 alignment rounds")
    for name, v in load(run / "model.npz").params.items():            # the weights are the run's own
        np.testing.assert_array_equal(shipped.params[name], v)
    with pytest.raises(ValueError, match="already runs 2 alignment round"):
        ship.ship_align_rounds(LFW, 2, to=to, results=results, n_pairs=10, threads=1, log=lambda *a: None,
                               work=work)


def test_align_rounds_flag_errors(tmp_path, capsys):
    for argv, message in ((["--align-rounds", "0"], "--align-rounds must be >= 1"),
                          (["--align-rounds", "2", "--run", "r"], "not allowed with argument"),
                          (["--align-rounds", "2", "--average", "3"], "takes no --average")):
        with pytest.raises(SystemExit):
            ship.main(["--lfw", "x"] + argv)
        assert message in capsys.readouterr().err
    from npface.model import FaceModel
    from tests.test_model import TINY
    FaceModel(TINY).save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="has no shipped record"):
        ship.ship_align_rounds("x", 2, to=tmp_path / "m.npz", results=tmp_path, log=lambda *a: None)


def test_model_card_is_written_from_the_shipped_record():
    from benchmarks import report
    fig = {"accuracy": 0.9, "accuracy_95": [0.87, 0.925], "auc": 0.961, "eer": 0.1,
           "learned_threshold_accuracy": 0.89}
    record = {"data": "LFW: 3634 training people", "train_people": 3634, "people_list": "peopleDevTrain.txt",
              "init": "runs/a.npz", "init_kind": "alignment pretraining (npface.pretrain_alignment)",
              "command": "python -m npface.train --lfw L --steps 5000", "steps": 5000, "machine": "x86_64, 2 cores",
              "train_hours": 1.25, "threads": 2, "averaged": [{"step": 4900}, {"step": 4950}, {"step": 5000}],
              "report_people": {"plain": fig, "flip": dict(fig, accuracy=0.91)},
              "report_protocol": {"test": {"people": 100, "pairs": 600}}, "history": "npface/pretrained/npface-lfw.metrics.jsonl",
              "date": "2026-12-03", "model_sha256": "abc", "report_measurements": 1}
    card = "\n".join(report.model_card(record))
    assert "| training | 5,000 steps, 1.25 h of steps on 2 threads (x86_64, 2 cores)" in card
    assert "starting from `runs/a.npz` (alignment pretraining (npface.pretrain_alignment))" in card
    settings = {"steps": 8000, "batch_size": 64, "lr": 0.0003}
    assert ("starting from `runs/a.npz` (alignment pretraining (npface.pretrain_alignment), 8,000 steps of 64 "
            "images)") in "\n".join(report.model_card(dict(record, init_settings=settings)))
    assert "measured once" in card and "2 candidates measured" in "\n".join(
        report.model_card(dict(record, report_measurements=2)))
    assert "the mean of the last 3 checkpoints (steps 4900, 4950, 5000" in card
    assert "accuracy 90.0% (95% interval 87.0%–92.5%), AUC 0.961" in card and "with test-time flip accuracy 91.0%" in card
    assert "distilled from" not in card                                  # no teachers: no row
    teachers = [{"path": "npface/pretrained/npface-lfw.npz", "sha256": "0" * 64},
                {"path": "runs/t/model.npz", "sha256": "ab" * 32}]
    card = "\n".join(report.model_card(dict(record, distill_teachers=teachers)))
    assert ("`npface/pretrained/npface-lfw.npz` (then: the model shipped before this one), SHA-256 "
            "0000000000000000…; `runs/t/model.npz`, SHA-256 abababababababab… |") in card
    assert card == "\n".join(report.model_card(record, teachers=teachers))   # from the model file when not recorded
    assert "`npface/pretrained/npface-lfw.metrics.jsonl`" in card
    # accuracy.json of another model is not shown under the new model's card
    region = "\n".join(report.shipped_model_region({"shipped": record, "accuracy": {"model_sha256": "def"}}))
    assert "measured another model than the shipped one" in region


def test_ship_to_another_file_needs_other_results(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ship.main(["--lfw", "x", "--run", str(tmp_path), "--to", str(tmp_path / "m.npz")])
    assert "needs --results elsewhere" in capsys.readouterr().err


def test_the_committed_shipped_record_describes_the_shipped_model():
    from benchmarks.common import params_digest
    from npface import load
    record = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "shipped.json"
    if not record.is_file():
        pytest.skip("the shipped model predates benchmarks.ship (no shipped.json)")
    assert json.loads(record.read_text())["model_sha256"] == params_digest(load())
