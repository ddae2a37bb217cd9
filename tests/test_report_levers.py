"""The report's lever table, deviations and shipped-model history come from the results files alone."""
import copy
import json

from benchmarks import report

FIG = {"accuracy": 0.8, "accuracy_95": [0.77, 0.83], "auc": 0.9, "eer": 0.18, "learned_threshold_accuracy": 0.79}
LEVERS = {
    "steps": 1000, "quick": False, "init": "runs/a.npz", "pairs": {"fit": 300, "test": 300},
    "levers": {
        "baseline": {"what": "the recipe", "selection": FIG, "delta": {"accuracy": 0.0, "auc": 0.0}},
        "singletons": {"what": "single-image people", "steps": 1000,
                       "selection": dict(FIG, accuracy=0.812), "framing": {"agreement": 0.9},
                       "delta": {"accuracy": 0.012, "auc": 0.002}},
        "long": {"what": "twice the steps", "status": "stopped"},
    },
}


def test_levers_section_gives_each_lever_its_paired_difference():
    text = "\n".join(report.levers_section({"levers": LEVERS}))
    assert ("| singletons | single-image people | 81.2% (77.0%–83.0%) | baseline | +1.2 | 0.900 | +0.002 | 79.0% "
            "| — | — | 90.0%† |") in text                                  # no flip figures; before the framing net
    assert "† marks those measured before `--frame detect` had the framing net" in text
    # the baseline is named by the code (the file's "the shipped model's recipe" names a model since replaced)
    assert ("| baseline | the `recipe2500` recipe (the model shipped from 2026-12-02 to 2026-12-05) | 80.0% "
            "(77.0%–83.0%) | — | — |") in text
    assert "| long | twice the steps | stopped |" in text
    assert "run again with a later build" not in text
    assert report.levers_section({"levers": dict(LEVERS, quick=True)}) == []      # a quick sweep is not reported


def test_levers_compared_with_an_earlier_baseline_say_so():
    lev = copy.deepcopy(LEVERS)
    lev["levers"]["baseline"]["selection"] = dict(FIG, accuracy=0.83)
    lev["levers"] = {"baseline": lev["levers"]["baseline"],
                     "baseline-earlier": {"what": "the same command, earlier", "selection": FIG,
                                          "compared_with": "baseline-earlier", "delta": {"accuracy": 0.0, "auc": 0.0}},
                     "singletons": dict(lev["levers"]["singletons"], compared_with="baseline-earlier")}
    text = "\n".join(report.levers_section({"levers": lev}))
    assert "| baseline-earlier | the same command, earlier | 80.0% (77.0%–83.0%) | — | — |" in text
    assert "| singletons | single-image people | 81.2% (77.0%–83.0%) | baseline-earlier | +1.2 |" in text
    assert "the baseline was run by 2 builds, and the same command and seed scored 83.0% (`baseline`), 80.0% " \
           "(`baseline-earlier`)" in text


def test_levers_with_flip_are_compared_with_their_own_baselines_flip():
    lev = copy.deepcopy(LEVERS)
    lev["levers"]["baseline"].update(selection_flip=dict(FIG, accuracy=0.835, auc=0.921),
                                     framing={"agreement": 0.895, "detect_calibrated_agreement": 0.8775})
    lev["levers"]["singletons"].update(selection_flip=dict(FIG, accuracy=0.85, auc=0.930),
                                       framing={"agreement": 0.905, "detect_calibrated_agreement": 0.88})
    text = "\n".join(report.levers_section({"levers": lev}))
    assert "| 79.0% | 85.0% (+1.5) | 0.930 (+0.009) | 90.5% |" in text         # measured with the framing net: no †
    assert "| 83.5% | 0.921 | 89.5% |" in text                               # the baseline itself: no change
    assert "† marks" not in text


def test_the_seed_lever_is_read_as_the_screens_noise():
    lev = copy.deepcopy(LEVERS)
    lev["levers"]["baseline"]["selection_flip"] = dict(FIG, accuracy=0.835, auc=0.921)
    text = "\n".join(report.levers_section({"levers": lev}))
    assert "seed 1 instead of 0" not in text                                  # not run: nothing said
    lev["levers"]["seed-1"] = {"what": "another seed", "selection": dict(FIG, accuracy=0.79),
                               "delta": {"accuracy": -0.01, "auc": -0.004},
                               "selection_flip": dict(FIG, accuracy=0.825, auc=0.915)}
    text = "\n".join(report.levers_section({"levers": lev}))
    assert ("by chance alone it moved -1.0 points (AUC -0.004) on one view and -1.0 (AUC -0.006) with flip. "
            "That is one draw of the screen's noise, not its spread.") in text
    summary = {"plain": dict(FIG, accuracy=0.86, auc=0.936), "flip": dict(FIG, accuracy=0.872, auc=0.950)}
    seed1 = {"plain": dict(FIG, accuracy=0.842, auc=0.930), "flip": dict(FIG, accuracy=0.862, auc=0.944)}
    text = report._screen_noise_sentence(lev["levers"], {"summary": summary}, {"summary": seed1})
    assert ("not its spread; the same two seeds of the full-length recipe differ by -1.8 points (AUC -0.006) on "
            "one view and -1.0 (AUC -0.006) with flip (below).") in text


def test_an_older_start_file_is_named_with_the_evidence_that_it_held_the_same_net():
    lev = copy.deepcopy(LEVERS)
    cmd = "python -m npface.train --lfw L --steps 1000 --init {} --align-lr-scale 0"
    lev["levers"]["baseline"]["commands"] = [cmd.format("runs/a.npz")]
    earlier = {"what": "earlier", "selection": FIG, "compared_with": "baseline-earlier",
               "commands": [cmd.format("runs/old.npz")]}
    lev["levers"] = {"baseline": lev["levers"]["baseline"], "baseline-earlier": earlier}
    text = "\n".join(report.levers_section({"levers": lev}))
    assert ("Older rows' commands name `runs/old.npz` as the start: it then held the same net (`baseline-earlier`, "
            "run from it, scores exactly what `baseline` scores from `runs/a.npz`") in text
    earlier["selection"] = dict(FIG, accuracy=0.81)                         # scores differ: no evidence, no claim
    assert "Older rows" not in "\n".join(report.levers_section({"levers": lev}))


def test_deviations_take_lever_effects_and_the_shipped_recipe_from_the_files():
    res = {"levers": LEVERS, "shipped": {"config": {"singletons": 64, "jitter_rotation": 15.0, "jitter_scale": 0.15,
                                                    "jitter_shift": 0.1}}}
    rows = {r[0]: r for r in report.deviations(res)}
    assert "singletons +1.2 points, AUC +0.002" in rows["batch"][4] and "M = 64" in rows["batch"][2]
    assert "±15°, ±15% scale, ±0.1 shift" in rows["augmentation"][2]
    assert rows["augmentation"][4] == report.NOT_MEASURED                # no augmentation lever in these files
    assert report.deviations({})[2][4] == report.NOT_MEASURED


def test_accuracy_section_shows_the_history_only_of_the_model_it_measured():
    d = {"images": 8100, "people": 3634, "people_with_2_or_more": 1061, "images_of_people_with_2_or_more": 5527}
    res = {"fit-and-test": dict(FIG, threshold=3.0, n_pairs=600), "fit-and-test flip": dict(FIG, threshold=3.0)}
    acc = {"results": res, "protocol": {"training_data": d, "fit": {"pairs": 600, "people": 50},
                                        "test": {"pairs": 600, "people": 50}},
           "model_trained_steps": 100, "model_config": {"singletons": 64}, "model_sha256": "a"}
    shipped = {"model_sha256": "a", "history": "h.jsonl",
               "validation": [{"step": 50, "accuracy": 0.7, "accuracy_std": 0.04, "auc": 0.8,
                               "learned_threshold_accuracy": 0.69}]}
    text = "\n".join(report.accuracy_section(acc, shipped))
    assert "100 steps of 320 faces (4 passes over the images it can draw)" in text
    assert "| 50 | 70.0% ± 4.0 | 0.800 | 69.0% |" in text
    other = "\n".join(report.accuracy_section(acc, dict(copy.deepcopy(shipped), model_sha256="b")))
    assert "| 50 |" not in other and "was not kept" in other


def test_the_report_people_list_names_each_model_and_the_shipped_one():
    rep = {"measurements": [{"model_sha256": "a", "run": None, "model": "shipped", "accuracy": 0.82, "date": "d1"},
                            {"model_sha256": "b", "run": "runs/r", "model": "the run's final model.npz",
                             "accuracy": 0.85, "date": "d2"}]}
    sel = {"summary": {"plain": FIG}}
    text = "\n".join(report.levers_section({"levers": LEVERS, "heldout-report": rep, "heldout-selection": sel,
                                            "shipped": {"model_sha256": "b"}}))
    assert "| the model shipped before `benchmarks.ship` (measured by `benchmarks.heldout`) | 82.0% | d1 |" in text
    assert "| `runs/r` (the run's final model.npz) — shipped now | 85.0% | d2 |" in text


def test_full_run_sentences_name_the_starting_model_and_the_detect_agreement():
    from benchmarks import report
    run = {"model_init": {"settings": {"steps": 8000},
                          "heldout_landmark_error_px": {"plain": {"net": 3.53, "fitted": 3.23, "identity": 4.21}}}}
    acc = {"model_alignment": {"heldout_landmark_error_px": {"plain": {"net": 3.71}}}}
    text = report._init_sentence(run, acc)
    assert "pretrained for 8,000 steps" in text and "is 3.53 px (3.23 px" in text and "alignment net: 3.71 px" in text
    assert report._init_sentence({}) == "" and "shipped model" not in report._init_sentence(run)
    flip = {"pairs": 400, "agreement": 0.875}
    res = {"photos-selection": {"verify": {"flip": flip}},
           "photos-selection-align8000": {"verify": {"flip": dict(flip, agreement=0.9025)}}}
    assert "for 90.25%, against 87.50% for the earlier shipped model (`recipe2500`)" in report._agreement_sentence(res)
    assert report._agreement_sentence({"photos-selection": res["photos-selection"]}) == ""
    # measured since the framing net: the run (framed without it) is compared with the shipped model framed alike
    res["photos-selection"]["verify"]["flip"] = dict(flip, agreement=0.9075, detect_calibrated_agreement=0.875)
    sentence = report._agreement_sentence(res)
    assert ("for 90.25%, against 87.50% for the earlier shipped model (`recipe2500`) framed the same way (the "
            "calibrated square") in sentence


def test_a_second_run_of_the_shipped_recipe_is_stated_as_its_spread():
    summary = {"plain": dict(FIG, accuracy=0.86, auc=0.936), "flip": dict(FIG, accuracy=0.872, auc=0.950)}
    run = {"summary": {"plain": dict(FIG, accuracy=0.845), "flip": dict(FIG, accuracy=0.851, auc=0.941)}}
    text = report._spread_sentence(run, {"summary": summary})
    assert "-1.5 points, -2.1 with flip, AUC -0.009 with flip" in text
    assert report._spread_sentence(run, None) == ""                     # no shipped measurement: nothing to compare
    assert text.endswith("the yardstick for the differences above.")
    other = report._spread_sentence(run, {"summary": summary}, "to be read against the seeds")
    assert "-1.5 points" in other and other.endswith("to be read against the seeds.")


def test_a_runs_detect_agreement_is_stated_beside_the_shipped_models():
    shipped = {"verify": {"flip": {"pairs": 400, "agreement": 0.9275}}}
    run = {"verify": {"flip": {"pairs": 400, "agreement": 0.9425}}}
    text = report._detect_agreement_sentence(run, shipped, "photos-run", "photos-shipped")
    assert ("agree with the original frames' for 94.25%, against 92.75% for the earlier shipped model "
            "(`recipe2500`)") in text
    assert "`photos-run.json`" in text and "`photos-shipped.json`" in text
    assert report._detect_agreement_sentence(run, None, "a", "b") == ""
    other = {"verify": {"flip": {"pairs": 200, "agreement": 0.9}}}         # other pictures: not comparable
    assert report._detect_agreement_sentence(run, other, "a", "b") == ""


def test_a_full_run_says_whether_it_met_the_ship_rule():
    shipped = {"summary": {"flip": dict(FIG, accuracy=0.872, auc=0.950)}}
    below = {"summary": {"flip": dict(FIG, accuracy=0.870, auc=0.941)}}
    assert report._ship_rule_sentence(below, shipped).endswith("(87.2%, AUC 0.950): not met, so it is not shipped.")
    above = {"summary": {"flip": dict(FIG, accuracy=0.88, auc=0.951)}}
    assert report._ship_rule_sentence(above, shipped).endswith(": met.")
    assert report._ship_rule_sentence(above, None) == ""


def test_a_framing_run_says_which_part_of_the_agreement_rule_it_missed():
    shipped = {"summary": {"flip": dict(FIG, accuracy=0.872, auc=0.950)}}
    shipped_photos = {"verify": {"flip": {"pairs": 400, "agreement": 0.9275}}}
    photos = {"verify": {"flip": {"pairs": 400, "agreement": 0.955}}}
    lost = {"summary": {"flip": dict(FIG, accuracy=0.858, auc=0.943)}}
    text = report._agreement_rule_sentence(lost, shipped, photos, shipped_photos)
    assert "at least 1.5 points above that of the earlier shipped model (`recipe2500`) (92.75%)" in text
    assert text.endswith("not met (accuracy, AUC), so it is not shipped.")
    kept = {"summary": {"flip": dict(FIG, accuracy=0.862, auc=0.945)}}          # exactly at both limits
    assert report._agreement_rule_sentence(kept, shipped, photos, shipped_photos).endswith(": met.")
    short = {"verify": {"flip": {"pairs": 400, "agreement": 0.94}}}             # +1.25 points only
    assert report._agreement_rule_sentence(kept, shipped, short, shipped_photos).endswith(
        "not met (detect agreement), so it is not shipped.")
    at_limit = {"verify": {"flip": {"pairs": 400, "agreement": 0.9425}}}         # exactly +1.5 points
    assert report._agreement_rule_sentence(kept, shipped, at_limit, shipped_photos).endswith(": met.")
    other = {"verify": {"flip": {"pairs": 200, "agreement": 0.99}}}              # other pictures: not comparable
    assert report._agreement_rule_sentence(kept, shipped, other, shipped_photos) == ""
    assert report._agreement_rule_sentence(kept, shipped, None, shipped_photos) == ""   # not measured: nothing said
    assert report._agreement_rule_sentence(kept, None, photos, shipped_photos) == ""


def test_a_model_made_from_runs_is_named_by_the_command_that_made_it():
    summary = {k: {"accuracy": 0.85, "accuracy_95": [0.82, 0.88], "auc": 0.94, "learned_threshold_accuracy": 0.84}
               for k in ("plain", "flip")}
    run = {"summary": summary, "model": "/x/runs/soup-c1-c4.npz", "model_trained_steps": 5000,
           "model_config": {"steps": 5000}}
    text = report._full_run_sentence("heldout-selection-soup-c1-c4", "The mean", run)
    assert "made by `python -m npface.average --out runs/soup-c1-c4.npz" in text and "trained by" not in text
    assert "(`runs/soup-c1-c4.npz`," in text and "on the same selection people (`heldout-selection-soup-c1-c4.json`)" in text


def test_every_selection_measurement_in_the_folder_is_read(tmp_path):
    for name in ("heldout-selection", "heldout-selection-newrun", "photos-selection-newrun", "layers"):
        (tmp_path / f"{name}.json").write_text(json.dumps({"name": name}))
    (tmp_path / "photos-newrun.json").write_text("{}")           # not a selection measurement: not read
    res = report.load_results(tmp_path)
    assert sorted(res) == ["heldout-selection", "heldout-selection-newrun", "layers", "photos-selection-newrun"]
    assert res["photos-selection-newrun"] == {"name": "photos-selection-newrun"}


def test_more_alignment_rounds_are_a_stated_deviation_and_a_withdrawn_run_says_why():
    sel_one = {"summary": {"plain": FIG, "flip": dict(FIG, accuracy=0.872, auc=0.950)}, "model_sha256": "one"}
    sel_two = {"summary": {"plain": FIG, "flip": dict(FIG, accuracy=0.877, auc=0.947)}, "model_sha256": "two",
               "align_rounds": 2}
    photos_one = {"verify": {"flip": {"pairs": 400, "agreement": 0.9275}}}
    photos_two = {"verify": {"flip": {"pairs": 400, "agreement": 0.9425}}}
    measured = [{"model_sha256": "one", "run": "runs/r", "accuracy": 0.85},
                {"model_sha256": "two", "run": "runs/r", "accuracy": 0.837}]
    res = {"heldout-selection": sel_one, "heldout-selection-rounds2": sel_two, "photos-selection-detector": photos_one,
           "photos-selection-rounds2": photos_two, "heldout-report": {"measurements": measured}}
    shipped_two = {"model_sha256": "two", "run": "runs/r", "align_rounds": 2}
    rows = {r[0]: r for r in report.deviations(dict(res, shipped=shipped_two))}
    assert "agreement 92.75% → 94.25%, accuracy 87.2% → 87.7%, AUC 0.950 → 0.947" in rows["alignment rounds"][4]
    assert "report people, one view: accuracy 85.0% with one round, 83.7% with 2" in rows["alignment rounds"][4]
    assert "alignment rounds" not in {r[0] for r in report.deviations(dict(res, shipped={"model_sha256": "one"}))}
    # shipped now, or shipped, measured on the report people and taken back
    from benchmarks.candidates import CANDIDATES
    rounds2 = next(c for c in CANDIDATES if c.name == "rounds2")
    text = report._framing_run_sentences(dict(res, shipped=shipped_two), rounds2, sel_one)
    assert text.endswith("It is the model shipped now (`shipped.json`), measured once on the report people (the "
                         "table above).")
    text = report._framing_run_sentences(dict(res, shipped={"model_sha256": "one"}), rounds2, sel_one)
    assert "then withdrawn: with two rounds the network amplifies float32 rounding" in text
    assert "then withdrawn" not in report._framing_run_sentences(
        dict(res, shipped={"model_sha256": "one"}, **{"heldout-report": {"measurements": measured[:1]}}), rounds2,
        sel_one)


def test_model_card_states_alignment_rounds_and_counts_every_report_measurement():
    fig = dict(FIG, eer=0.1)
    record = {"data": "LFW", "train_people": 10, "people_list": "p.txt", "command": "python -m npface.train",
              "steps": 5, "train_hours": 0.1, "threads": 2, "machine": "m", "report_measurements": 2,
              "report_people": {"plain": fig, "flip": fig}, "report_protocol": {"test": {"people": 1, "pairs": 2}},
              "history": "h.jsonl", "date": "2026-12-05", "model_sha256": "x"}
    card = "\n".join(report.model_card(record))
    assert "alignment rounds" not in card and "2 candidates measured on them in all" in card
    card = "\n".join(report.model_card(dict(record, align_rounds=2), measured_since=3))
    assert "| alignment rounds | 2 at test time, one in training" in card
    assert "3 candidates measured on them in all" in card


def test_every_candidate_measured_on_the_selection_people_is_listed_once():
    """A run with both selection files is in benchmarks.candidates (the PHOTOS.md table and, with a ``what``,
    its RESULTS.md paragraph), but align8000, measured before the framing net and written up on its own."""
    from pathlib import Path
    from benchmarks.candidates import CANDIDATES
    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    both = {p.stem[len("photos-selection-"):] for p in results.glob("photos-selection-*.json")
            if (results / f"heldout-selection-{p.stem[len('photos-selection-'):]}.json").is_file()}
    names = [c.name for c in CANDIDATES]
    assert len(names) == len(set(names))
    assert both - set(names) == {"align8000"} and set(names) <= both


def test_two_selection_measurements_compare_only_on_the_same_pairs():
    a = {"summary": {"plain": dict(FIG, test_pairs=600), "flip": FIG}}
    assert report._summaries(a, a) == (a["summary"], a["summary"])
    assert report._summaries({"summary": {"plain": dict(FIG, test_pairs=400), "flip": FIG}}, a) is None
    assert report._summaries({"summary": {"plain": FIG, "flip": FIG}}, a) is not None      # an older file: no count
    assert report._summaries(None, a) is None


def test_a_distilled_shipped_model_states_its_term_batch_and_context_as_deviations():
    sel_before = {"summary": {"plain": FIG, "flip": dict(FIG, accuracy=0.872, auc=0.950)}, "model_sha256": "before"}
    sel_now = {"summary": {"plain": FIG, "flip": dict(FIG, accuracy=0.863, auc=0.957)}, "model_sha256": "now"}
    measured = [{"model_sha256": "before", "run": "runs/a", "accuracy": 0.85},
                {"model_sha256": "now", "run": "runs/b", "accuracy": 0.827}]
    config = {"batch_identities": 128, "images_per_identity": 2, "jitter_context": True, "distill_weight": 1.0,
              "distill_from": ["a.npz", "b.npz", "c.npz"], "distill_warmup": 500}
    res = {"heldout-selection": sel_before, "heldout-selection-distill-b128x2-context-w500": sel_now,
           "photos-selection-detector": {"verify": {"flip": {"pairs": 400, "agreement": 0.9275}}},
           "photos-selection-distill-b128x2-context-w500": {"verify": {"flip": {"pairs": 400, "agreement": 0.9575}}},
           "heldout-report": {"measurements": measured}, "shipped": {"model_sha256": "now", "config": config}}
    rows = {r[0]: r for r in report.deviations(res)}
    assert "the shipped model: 128 people × 2 images" in rows["batch"][2]
    assert "(`--jitter-context`)" in rows["augmentation"][2]
    assert "3 trained models" in rows["distillation"][2] and "first 500 steps" in rows["distillation"][2]
    assert ("accuracy 87.2% → 86.3%, AUC 0.950 → 0.957, `--frame detect` agreement 92.75% → 95.75%; report people, "
            "one view: accuracy 85.0% → 82.7%") in rows["distillation"][4]
    plain = {r[0]: r for r in report.deviations(dict(res, shipped={"model_sha256": "before", "config": {}}))}
    assert "distillation" not in plain and "128 people" not in plain["batch"][2]
    assert "--jitter-context" not in plain["augmentation"][2]


def _selection(accuracy, auc, test_pairs=600):
    """A heldout-selection file's summary with these figures with flip."""
    return {"summary": {"plain": dict(FIG, test_pairs=test_pairs), "flip": dict(FIG, accuracy=accuracy, auc=auc)}}


def _photos(agreement, pairs=400):
    return {"verify": {"flip": {"agreement": agreement, "pairs": pairs}}}


def test_the_accuracy_rule_asks_for_a_point_more_no_lower_auc_and_the_agreement_target():
    yard, label = _selection(0.8633, 0.9568), "the then-shipped model (`x`)"
    met = report._accuracy_rule_sentence(_selection(0.8733, 0.9568), yard, _photos(0.95), _photos(0.9575), label)
    assert met.endswith(": met.") and "at least 1.0 point above the 86.3% of the then-shipped model (`x`)" in met
    assert "at least 95.00%" in met
    for run, photos, failed in ((_selection(0.8717, 0.97), _photos(0.99), "accuracy"),
                                (_selection(0.90, 0.9567), _photos(0.99), "AUC"),
                                (_selection(0.90, 0.97), _photos(0.9475), "detect agreement")):
        assert report._accuracy_rule_sentence(run, yard, photos, _photos(0.9575), label).endswith(
            f"not met ({failed}), so it is not shipped.")
    # other pairs or other pictures: no paired comparison, no sentence
    assert report._accuracy_rule_sentence(_selection(0.9, 0.97, 500), yard, _photos(0.99), _photos(0.9575), label) == ""
    assert report._accuracy_rule_sentence(_selection(0.9, 0.97), yard, _photos(0.99, 300), _photos(0.9575), label) == ""


def test_the_agreement_rule_asks_for_more_agreement_at_a_small_cost_at_most():
    yard = _selection(0.872, 0.950)
    assert report._agreement_rule_sentence(_selection(0.863, 0.9568), yard, _photos(0.9575), _photos(0.9275)) \
        .endswith(": met.")
    assert report._agreement_rule_sentence(_selection(0.872, 0.950), yard, _photos(0.94), _photos(0.9275)) \
        .endswith("not met (detect agreement), so it is not shipped.")
    assert report._agreement_rule_sentence(_selection(0.861, 0.944), yard, _photos(0.96), _photos(0.9275)) \
        .endswith("not met (accuracy, AUC), so it is not shipped.")


def test_a_candidate_is_measured_against_its_own_yardstick():
    """A candidate naming a yardstick run is compared with that run's files, under its own rule."""
    from benchmarks.candidates import Candidate
    c = Candidate("next", "the next run", "The next run", yardstick="earlier", rule="accuracy")
    res = {f"heldout-selection-{c.yardstick}": _selection(0.8633, 0.9568),
           f"photos-selection-{c.yardstick}": _photos(0.9575),
           f"heldout-selection-{c.name}": _selection(0.88, 0.96), f"photos-selection-{c.name}": _photos(0.96),
           "heldout-selection": _selection(0.5, 0.5), "photos-selection-detector": _photos(0.5)}
    text = report._framing_run_sentences(res, c, res["heldout-selection"])
    assert f"Against `{c.yardstick}` on the same pairs:" in text and "+1.7 with flip" in text
    assert f"against 95.75% for the then-shipped model (`{c.yardstick}`)" in text
    assert "an accuracy at least 1.0 point above the 86.3%" in text and text.endswith(": met.")


def test_a_reseed_is_read_as_its_recipes_spread_not_as_a_change():
    """A candidate that is its yardstick's command with another seed says its distance from the yardstick is
    the recipe's spread; any other candidate is read against the seeds' difference."""
    from benchmarks.candidates import Candidate
    res = {"heldout-selection-earlier": _selection(0.8633, 0.9568), "photos-selection-earlier": _photos(0.9575),
           "heldout-selection-again": _selection(0.868, 0.944), "photos-selection-again": _photos(0.945),
           "heldout-selection": _selection(0.5, 0.5), "photos-selection-detector": _photos(0.5)}
    for reseed, meaning in ((True, report._RESEED_SPREAD), (False, report._AGAINST_SPREAD)):
        c = Candidate("again", "the recipe again", "The recipe again", yardstick="earlier", rule="accuracy",
                      reseed=reseed)
        text = report._framing_run_sentences(res, c, res["heldout-selection"])
        assert f"AUC -0.013 with flip: {meaning}." in text
