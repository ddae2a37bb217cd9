"""The reproduction scripts: reading training runs, summarising them, writing the report, refusing bad input."""
import importlib.util
import json

import numpy as np
import pytest

from benchmarks import convergence, report, reproduce


def write_run(folder, accuracies, every=50, step_seconds=1.5, diverged=False, estimator="multibatch", lr=0.01,
              momentum=0.9, seed=0):
    """A run folder as npface.train leaves it: config.json, metrics.jsonl with step and validation records."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"batch_identities": 16, "images_per_identity": 16,
                                                    "estimator": estimator, "lr": lr, "steps": 200,
                                                    "momentum": momentum, "seed": seed, "init": "init.npz"}))
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


Run = convergence.Run
MB = [Run("multibatch", 0.01, seed=s) for s in range(3)]
PAIRS = [Run("pairs", 0.01, seed=s) for s in range(3)]


def write_arms(root):
    """Three seeds of each arm, a diverged learning rate, and the momentum-0 pair; returns the runs read back."""
    for run, acc in zip(MB, ([0.60, 0.70, 0.75, 0.80], [0.62, 0.68, 0.77, 0.78], [0.58, 0.72, 0.74, 0.82])):
        write_run(root / run.name, acc, seed=run.seed)
    for run, acc in zip(PAIRS, ([0.55, 0.62, 0.66, 0.70], [0.52, 0.66, 0.69, 0.72], [0.50, 0.60, 0.64, 0.65])):
        write_run(root / run.name, acc, estimator="pairs", seed=run.seed)
    write_run(root / Run("pairs", 0.03).name, [0.50, 0.75], diverged=True, estimator="pairs", lr=0.03)
    write_run(root / Run("multibatch", 0.01, 0.0).name, [0.5, 0.6, 0.65, 0.7], momentum=0.0)
    write_run(root / Run("pairs", 0.01, 0.0).name, [0.5, 0.55, 0.6, 0.6], estimator="pairs", momentum=0.0)
    return {p.name: convergence.read_run(p) for p in sorted(root.iterdir())}


def test_read_run_and_arms_over_seeds(tmp_path):
    runs = write_arms(tmp_path)
    mb = runs[MB[0].name]
    assert mb["val_step"] == [50, 100, 150, 200] and mb["steps"] == 200 and not mb["diverged"]
    np.testing.assert_allclose(mb["val_seconds"], [75.0, 150.0, 225.0, 300.0])      # validation time left out
    assert mb["median_step_seconds"] == pytest.approx(1.5) and mb["train_seconds"] == pytest.approx(300.0)
    assert runs[Run("pairs", 0.03).name]["diverged"]
    # the diverged rate reached the highest accuracy, but is nobody's best
    assert convergence.best_rate(runs, [PAIRS[0].name, Run("pairs", 0.03).name]) == PAIRS[0].name
    arms = {"multibatch": convergence.arm(runs, [r.name for r in MB]),
            "pairs": convergence.arm(runs, [r.name for r in PAIRS]),
            "multibatch-momentum0": convergence.arm(runs, [Run("multibatch", 0.01, 0.0).name]),
            "pairs-momentum0": convergence.arm(runs, [Run("pairs", 0.01, 0.0).name])}
    a = arms["multibatch"]
    np.testing.assert_allclose(a["mean"], [0.60, 0.70, (0.75 + 0.77 + 0.74) / 3, 0.80])
    assert a["min"][-1] == 0.78 and a["max"][-1] == 0.82 and a["final"]["mean"] == pytest.approx(0.80)
    s = convergence.summarise(runs, arms)
    reach = s["multibatch_steps_to_pairs_best"]                   # pairs' best mean: 0.69 at step 200
    assert reach["target"] == pytest.approx(0.69) and reach["mean_curve"] == 100
    assert reach["seeds"] == [100, 150, 100] and (reach["min"], reach["max"]) == (100, 150)
    back = s["pairs_steps_to_multibatch_final"]                   # 0.80: no pairs seed gets there
    assert back["mean_curve"] is None and back["seeds"] == [None, None, None] and back["min"] is None
    assert s["momentum0"]["multibatch_final"]["mean"] == 0.7
    assert s["momentum0"]["multibatch_steps_to_pairs_best"]["mean_curve"] == 100


def test_typical_time_ignores_a_few_slow_steps(tmp_path):
    """Other work on the machine during a few steps inflates the summed time, not the plotted typical time."""
    write_run(tmp_path / "run", [0.6, 0.7, 0.75, 0.8])
    metrics = tmp_path / "run" / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    for rec in records:
        if rec.get("step") in (10, 11, 12) and "loss" in rec:
            rec["images_per_s"] /= 10                              # three steps take 10x as long
    metrics.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    run = convergence.read_run(tmp_path / "run")
    np.testing.assert_allclose(run["val_seconds_typical"], [75.0, 150.0, 225.0, 300.0])
    np.testing.assert_allclose(run["val_seconds"], [75.0 + 3 * 13.5, 150.0 + 40.5, 225.0 + 40.5, 300.0 + 40.5])


def test_a_finished_run_made_with_other_settings_is_not_reused(tmp_path):
    write_run(tmp_path / MB[0].name, [0.6])
    (tmp_path / MB[0].name / "model.npz").write_bytes(b"")
    logged = []
    folders = convergence.train_all([MB[0]], tmp_path, "LFW", 200, init="init.npz", log=logged.append)
    assert folders == {MB[0].name: tmp_path / MB[0].name} and "finished earlier" in logged[0]
    with pytest.raises(ValueError, match="holds a run made with"):
        convergence.train_all([MB[0]], tmp_path, "LFW", 1000, init="init.npz", log=logged.append)


def test_summary_of_runs_without_validation_is_empty_not_a_crash(tmp_path):
    write_run(tmp_path / MB[0].name, [])
    write_run(tmp_path / PAIRS[0].name, [], estimator="pairs")
    runs = {p.name: convergence.read_run(p) for p in sorted(tmp_path.iterdir())}
    arms = {"multibatch": convergence.arm(runs, [MB[0].name]), "pairs": convergence.arm(runs, [PAIRS[0].name])}
    assert convergence.summarise(runs, arms)["multibatch_final"] is None
    assert convergence.best_rate(runs, [PAIRS[0].name]) is None


def test_train_command_is_the_documented_recipe(tmp_path):
    cmd = convergence.train_command(Run("pairs", 0.003, 0.0, 2), tmp_path / "r", "LFW", 1000, init="init.npz")
    text = " ".join(cmd[1:])
    assert "-m npface.train --lfw LFW --people peopleDevTrain.txt --estimator pairs --lr 0.003 --momentum 0" in text
    assert "--steps 1000" in text and "--init init.npz --align-lr-scale 0" in text and "--seed 2" in text
    assert Run("pairs", 0.003, 0.0, 2).name == "pairs-lr0.003-m0-seed2"


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
    runs = write_arms(tmp_path / "runs")
    for r in MB + PAIRS + [Run("pairs", 0.03), Run("multibatch", 0.01, 0.0), Run("pairs", 0.01, 0.0)]:
        runs[r.name].update(estimator=r.estimator, lr=r.lr, momentum=r.momentum, seed=r.seed)
    arms = {"multibatch": convergence.arm(runs, [r.name for r in MB]),
            "pairs": convergence.arm(runs, [r.name for r in PAIRS]),
            "multibatch-momentum0": convergence.arm(runs, [Run("multibatch", 0.01, 0.0).name]),
            "pairs-momentum0": convergence.arm(runs, [Run("pairs", 0.01, 0.0).name])}
    (folder / "convergence.json").write_text(json.dumps({
        "format": 2, "runs": runs, "arms": arms, "summary": convergence.summarise(runs, arms), "seeds": 3,
        "lr_search": {"runs": [PAIRS[0].name, Run("pairs", 0.03).name], "best_pairs_lr": 0.01,
                      "best_pairs_run": PAIRS[0].name},
        "steps": 200, "batch": "16 x 16", "batch_size": 256, "init": "x.npz", "seconds": 1,
        "commands": {n: "python -m npface.train ..." for n in runs}}))


def legacy_convergence(folder, tmp_path):
    """convergence.json as the one-run-per-setting layout wrote it (no "format" key)."""
    runs = {"multibatch-lr0.01": convergence.read_run(tmp_path / "runs" / MB[0].name),
            "pairs-lr0.01": convergence.read_run(tmp_path / "runs" / PAIRS[0].name)}
    runs["multibatch-lr0.01"].update(estimator="multibatch", lr=0.01)
    runs["pairs-lr0.01"].update(estimator="pairs", lr=0.01)
    summary = {"best_pairs_run": "pairs-lr0.01", "multibatch_final": 0.8, "multibatch_best": 0.8,
               "pairs_final": 0.7, "pairs_best": 0.7, "pairs_steps_to_multibatch_final": None,
               "multibatch_steps_to_pairs_best": 100, "multibatch_steps_to_pairs_final": 100}
    (folder / "convergence.json").write_text(json.dumps({
        "runs": runs, "summary": summary, "steps": 200, "batch": "16 x 16", "batch_size": 256, "init": "x.npz",
        "seconds": 1, "commands": {n: "python -m npface.train ..." for n in runs}}))


def test_report_is_written_from_the_results_alone(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    fake_results(results, tmp_path)
    assert report.main(["--results", str(results), "--docs", str(docs), "--no-plots"]) == 0
    text = (docs / "RESULTS.md").read_text()
    assert "## 1. Theorem 1" in text and "## 2. Figure 4" in text
    assert "-1.80 [-1.90, -1.70]" in text                                  # a slope and its interval
    assert "| multibatch | 3 | 80.0% [78.0%–82.0%] |" in text              # an arm's final accuracy over seeds
    assert "at step 100 (seeds 100–150)" in text                          # steps to reach, with its range
    assert "exceeds term 1 + term 2 by up to 6.0×" in text                # k = 16: 0.3 / (0.04 + 0.01)
    assert "## Deviations from the paper" in text and "| momentum | plain SGD" in text
    assert "momentum 0, one seed each: Multibatch 70.0%, pairs 60.0%" in text


def test_figure4_time_axis_uses_the_quiet_machine_step_times_when_measured(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    fake_results(results, tmp_path)
    assert report.main(["--results", str(results), "--docs", str(docs), "--no-plots"]) == 0
    assert "step times its run's median step time" in (docs / "RESULTS.md").read_text()
    for name, step, data in (("multibatch", 0.8, 0.1), ("pairs", 0.85, 0.12)):
        (results / f"train_step_{name}.json").write_text(json.dumps({
            "median_seconds": {"step": step, "data": data, "loss": 0.002}, "steps": 10, "threads": 2,
            "images_per_s": 256 / step, "step_ratio": 0.3}))
    assert report.main(["--results", str(results), "--docs", str(docs), "--no-plots"]) == 0
    text = (docs / "RESULTS.md").read_text()
    assert "by `benchmarks.train_step`: 0.80 s for Multibatch, 0.85 s for pairs" in text
    if importlib.util.find_spec("matplotlib"):                             # the plot's time axis too
        assert report.main(["--results", str(results), "--docs", str(docs)]) == 0
        assert (docs / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.step_seconds(None, {}) is None


def test_an_arm_that_never_reaches_the_target_is_said_so():
    def reach(mean_curve, seeds):
        done = [x for x in seeds if x is not None]
        return {"target": 0.8, "mean_curve": mean_curve, "seeds": seeds, "min": min(done) if done else None,
                "max": None if None in seeds or not done else max(done)}
    said = lambda r: report._reaches("pairs", "Multibatch's final mean accuracy", r)
    assert said(reach(None, [None, None])) == \
        "pairs does not reach Multibatch's final mean accuracy (80.0%) within the run"
    assert said(reach(300, [300])) == "pairs reaches Multibatch's final mean accuracy (80.0%) at step 300"
    assert said(reach(None, [300, None, 500])) == \
        "pairs does not reach Multibatch's final mean accuracy (80.0%) on the mean curve (2 of 3 seeds within the run)"
    assert said(reach(400, [300, 500])).endswith("at step 400 (seeds 300–500)")
    assert said(reach(400, [400, 400])).endswith("at step 400 (every seed at 400)")


def test_report_reads_the_earlier_one_seed_layout_and_says_so(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    fake_results(results, tmp_path)
    legacy_convergence(results, tmp_path)
    assert report.main(["--results", str(results), "--docs", str(docs), "--no-plots"]) == 0
    text = (docs / "RESULTS.md").read_text()
    assert "These runs predate the seeds and the paper's baseline." in text
    assert "one seed each, with the earlier in-batch pairs baseline" in text    # in the headline too
    assert "| multibatch-lr0.01 | 0.01 | 80.0% | 80.0% |" in text


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
    assert "| Theorem 1, its own setting" in text and "| Theorem 1 in training's batches" in text
    assert "-1.80 [-1.90, -1.70]" in text and "at k = 32 pairs' error is 12.5× Multibatch's" in text
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
    legacy_convergence(results, tmp_path)
    assert report.main(["--results", str(results), "--docs", str(docs)]) == 0
    assert (docs / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


def test_stage_blocks_table_adds_stages_by_block_beside_onnx_runtime():
    def row(stage, block, ms, macs):
        return dict(stage=stage, block=block, ms=ms, macs=macs)
    inf = {"gemm_peak_1thread": 100.0, "batch1_ms": 0.5,
           "stages": [row("warp", "warp", 0.1, 0), row("nin1.conv", "nin1", 0.2, 1_000_000),
                      row("nin1.mlp", "nin1", 0.05, 250_000)],
           "onnxruntime": {"version": "9.9", "stages_ms": {"warp": 0.3, "nin1.conv": 0.1, "nin1.mlp": 0.025,
                                                            "other (ONNX Runtime's layout reorders)": 0.01}}}
    table = report.stage_blocks_table(inf)
    lines = [line for line in table if line.startswith("| ")]
    assert lines[0].startswith("| block |")
    assert lines[1] == "| warp | 0.100 |  | 0.300 | 0.33 |"
    # 1.25M multiply-adds in 0.25 ms = 10 GFLOP/s = 10% of a 100 GFLOP/s peak; 0.125 ms in ONNX Runtime
    assert lines[2] == "| nin1 | 0.250 | 10% | 0.125 | 2.00 |"
    assert lines[3] == "| other (ONNX Runtime's layout reorders) |  |  | 0.010 |  |"
    assert "ONNX Runtime 9.9" in table[0]
    assert "add up to 0.350 ms, against 0.500 ms" in " ".join(table)
    # without ONNX Runtime's profile, npface's blocks alone; a file from before the blocks: no table
    del inf["onnxruntime"]
    assert [line for line in report.stage_blocks_table(inf) if line.startswith("| nin1")] == [
        "| nin1 | 0.250 | 10% |  |  |"]
    assert report.stage_blocks_table({"stages": [dict(stage="warp", ms=0.1, macs=0)]}) == []
