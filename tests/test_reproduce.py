"""The reproduction scripts: reading training runs, summarising them, writing the report, refusing bad input."""
import json

import numpy as np
import pytest

from benchmarks import convergence, report, reproduce


def write_run(folder, accuracies, every=50, step_seconds=1.5, diverged=False, estimator="multibatch", lr=0.01):
    """A run folder as npface.train leaves it: config.json, metrics.jsonl with step and validation records."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"batch_identities": 16, "images_per_identity": 16,
                                                    "estimator": estimator, "lr": lr, "steps": 200,
                                                    "init": "init.npz"}))
    lines = []
    for step in range(1, every * len(accuracies) + 1):
        # "time" counts validations too (here 10 s each); the step's own duration is 256 / images_per_s
        lines.append({"step": step, "loss": 0.5, "images_per_s": 256 / step_seconds,
                      "time": step * step_seconds + 10.0 * ((step - 1) // every)})
        if step % every == 0:
            lines.append({"step": step, "val_accuracy": accuracies[step // every - 1], "val_accuracy_std": 0.03,
                          "val_auc": 0.8})
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    if diverged:
        (folder / convergence.DIVERGED).write_text("diverged\n")


def test_read_run_and_summary(tmp_path):
    write_run(tmp_path / "multibatch-lr0.01", [0.60, 0.70, 0.75, 0.80])
    write_run(tmp_path / "pairs-lr0.01", [0.55, 0.62, 0.66, 0.70])
    write_run(tmp_path / "pairs-lr0.03", [0.50, 0.72], diverged=True)      # best accuracy, but diverged
    runs = {p.name: convergence.read_run(p) for p in sorted(tmp_path.iterdir())}
    mb = runs["multibatch-lr0.01"]
    assert mb["val_step"] == [50, 100, 150, 200] and mb["steps"] == 200 and not mb["diverged"]
    np.testing.assert_allclose(mb["val_seconds"], [75.0, 150.0, 225.0, 300.0])      # validation time left out
    assert mb["median_step_seconds"] == pytest.approx(1.5) and mb["train_seconds"] == pytest.approx(300.0)
    assert runs["pairs-lr0.03"]["diverged"]
    s = convergence.summarise(runs)
    assert s["best_pairs_run"] == "pairs-lr0.01"                          # the diverged run is nobody's best
    assert s["multibatch_final"] == 0.80 and s["pairs_final"] == 0.70
    assert s["pairs_steps_to_multibatch_final"] is None                    # pairs never gets there
    assert s["multibatch_steps_to_pairs_best"] == 100                      # 0.70 reached at step 100


def test_a_finished_run_made_with_other_settings_is_not_reused(tmp_path):
    write_run(tmp_path / "multibatch-lr0.01", [0.6], estimator="multibatch", lr=0.01)
    (tmp_path / "multibatch-lr0.01" / "model.npz").write_bytes(b"")
    logged = []
    folders = convergence.train_all([("multibatch", 0.01)], tmp_path, "LFW", 200, init="init.npz", log=logged.append)
    assert folders == {"multibatch-lr0.01": tmp_path / "multibatch-lr0.01"} and "finished earlier" in logged[0]
    with pytest.raises(ValueError, match="holds a run made with"):
        convergence.train_all([("multibatch", 0.01)], tmp_path, "LFW", 1000, init="init.npz", log=logged.append)


def test_summary_of_runs_without_validation_is_empty_not_a_crash(tmp_path):
    write_run(tmp_path / "multibatch-lr0.01", [])
    write_run(tmp_path / "pairs-lr0.01", [], estimator="pairs")
    runs = {p.name: convergence.read_run(p) for p in sorted(tmp_path.iterdir())}
    assert convergence.summarise(runs)["best_pairs_run"] is None


def test_train_command_is_the_documented_recipe(tmp_path):
    cmd = convergence.train_command("pairs", 0.003, tmp_path / "r", "LFW", 1000, init="init.npz")
    text = " ".join(cmd[1:])
    assert "-m npface.train --lfw LFW --people peopleDevTrain.txt --estimator pairs --lr 0.003" in text
    assert "--steps 1000" in text and "--init init.npz --align-lr-scale 0" in text and "--seed 0" in text


def fake_results(folder, tmp_path):
    """Small but complete results files, as the stages write them."""
    ks = [8, 16, 32]
    settings = []
    for model in ("initial", "trained"):
        for setting in ("theorem", "pk"):
            s = {"model": model, "setting": setting, "k": ks, "pool_images": 100, "pool_people": 40, "draws": 10,
                 "multibatch": [1.0, 0.3, 0.08], "pairs": [4.0, 2.0, 1.0], "multibatch_se": [0.1, 0.03, 0.01],
                 "pairs_se": [0.4, 0.2, 0.1], "multibatch_spread": [0.9, 0.3, 0.08], "pairs_spread": [4, 2, 1],
                 "slope_multibatch": -1.8, "slope_multibatch_ci95": [-1.9, -1.7], "slope_pairs": -1.0,
                 "slope_pairs_ci95": [-1.1, -0.9]}
            if setting == "theorem":
                s.update(nu2=10.0, abar2=0.1, abar2_se=0.01, bound_term1=[0.18, 0.04, 0.01],
                         bound_term2=[0.02, 0.01, 0.006], multibatch_exact=[0.9, 0.3, 0.08],
                         multibatch_exact_se=[0.01, 0.01, 0.001], pairs_predicted=[2.5, 1.2, 0.6])
            settings.append(s)
    (folder / "variance.json").write_text(json.dumps({"draws": 10, "settings": settings,
                                                      "initial_model": "x.npz", "seconds": 5}))
    write_run(tmp_path / "runs" / "multibatch-lr0.01", [0.6, 0.7])
    write_run(tmp_path / "runs" / "pairs-lr0.01", [0.55, 0.6], estimator="pairs")
    runs = {p.name: convergence.read_run(p) for p in sorted((tmp_path / "runs").iterdir())}
    for name, r in runs.items():
        r.update(estimator=name.split("-")[0], lr=0.01)
    (folder / "convergence.json").write_text(json.dumps({
        "runs": runs, "summary": convergence.summarise(runs), "steps": 100, "batch": "16 x 16", "batch_size": 256,
        "init": "x.npz", "seconds": 1, "commands": {n: "python -m npface.train ..." for n in runs}}))


def test_report_is_written_from_the_results_alone(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    fake_results(results, tmp_path)
    assert report.main(["--results", str(results), "--docs", str(docs), "--no-plots"]) == 0
    text = (docs / "RESULTS.md").read_text()
    assert "## 1. Theorem 1" in text and "## 2. Figure 4" in text
    assert "-1.80 [-1.90, -1.70]" in text                                  # a slope and its interval
    assert "| multibatch-lr0.01 | 0.01 | 70.0% | 70.0% |" in text          # a run's final and best accuracy
    assert "exceeds term 1 + term 2 by up to 6.0×" in text                # k = 16: 0.3 / (0.04 + 0.01)


def test_report_rewrites_only_the_readme_headline_block(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    fake_results(results, tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{report.README_START}\nold table\n{report.README_END}\nafter\n")
    assert report.main(["--results", str(results), "--docs", str(tmp_path / "d"), "--no-plots",
                        "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\n\nbefore\n") and text.endswith("after\n")
    assert "| Theorem 1: error of the gradient estimate" in text and "-1.80 [-1.90, -1.70]" in text
    readme.write_text("no markers\n")
    assert report.main(["--results", str(results), "--docs", str(tmp_path / "d"), "--no-plots",
                        "--readme", str(readme)]) == 2


def test_report_plots(tmp_path):
    pytest.importorskip("matplotlib")
    results, docs = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    fake_results(results, tmp_path)
    assert report.main(["--results", str(results), "--docs", str(docs)]) == 0
    for name in ("variance.png", "convergence.png"):
        assert (docs / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_results_is_an_error(tmp_path, capsys):
    assert report.main(["--results", str(tmp_path), "--docs", str(tmp_path / "d")]) == 2
    assert "no results in" in capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [
    (["--lfw", "/no/such/folder"], "--lfw: folder not found"),
    (["--lfw", ".", "--stages", "tables,nonsense"], "unknown stage(s) nonsense"),
])
def test_reproduce_refuses_bad_arguments(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        reproduce.main(argv)
    assert e.value.code == 2 and match in capsys.readouterr().err
