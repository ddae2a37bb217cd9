"""The trainer: estimators, reproducible steps, exact resume, divergence handling, clear errors."""
import json
import os
import shlex
import signal

import numpy as np
import pytest

from npface import estimators, ops, training
from npface.estimators import pair_rows, random_pairs, signature_gradients
from npface.training import TrainConfig, TrainingDiverged, TrainingStopped, load_checkpoint, run
from npface.train import main as train_main


def tiny(**kw):
    """A configuration that runs the real Table 2 network on 4-image batches, in about a second."""
    base = dict(steps=6, batch_identities=2, images_per_identity=2, synthetic_identities=50, val_pairs=20,
                validate_every=3, checkpoint_every=2, threads=1, lr=0.01, lr_drops=(0.5,))
    base.update(kw)
    return TrainConfig(**base)


def quiet(*args):
    pass


def params_of(path):
    return load_checkpoint(path)[0]


# ------------------------------------------------------------------ estimators

def test_random_pairs_are_disjoint_and_half_same():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(16), 16)
    pairs = random_pairs(labels, rng)
    assert pairs.shape == (128, 2)
    assert len(np.unique(pairs)) == 256                          # every image in exactly one pair
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    assert same.sum() == 64                                     # k/4 same pairs, k/4 different


def test_random_pairs_with_few_identities_still_pairs_everyone():
    labels = np.array([0, 0, 0, 0, 0, 1])
    pairs = random_pairs(labels, np.random.default_rng(1))
    assert len(pairs) == 3 and len(np.unique(pairs)) == 6


def test_estimators_share_the_seam():
    rng = np.random.default_rng(2)
    sig, labels = rng.standard_normal((8, 4)), np.repeat(np.arange(4), 2)
    mb = signature_gradients(sig, labels, 3.0, "multibatch")
    pr = signature_gradients(sig, labels, 3.0, "pairs")
    ib = signature_gradients(sig, labels, 3.0, "pairs-in-batch", np.random.default_rng(0))
    assert mb.n_pairs == 56 and pr.n_pairs == 4 and ib.n_pairs == 4
    assert mb.dsig.shape == pr.dsig.shape == ib.dsig.shape == (8, 4)
    # "pairs" reads the batch as pairs (0, 1), (2, 3), ...: here all four are same pairs
    np.testing.assert_allclose(pr.loss, ops.pair_hinge_forward(sig, labels, 3.0, pair_rows(8))[0])
    with pytest.raises(ValueError, match="estimator must be one of"):
        signature_gradients(sig, labels, 3.0, "triplets")


def test_distinct_photos_leave_out_exactly_the_pairs_of_one_photo_twice():
    from kernels.pair_hinge import all_ordered_pairs, pair_hinge_reference
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 4)                                  # 3 people x 4 slots
    photos = np.array([0, 1, 0, 0, 5, 6, 7, 8, 9, 9, 10, 9])             # person 0 and 2 repeat photos
    sig = rng.standard_normal((12, 5))
    before = (sig.copy(), labels.copy(), photos.copy())
    pairs = estimators.distinct_photo_pairs(photos)
    want = [(i, j) for i, j in all_ordered_pairs(12) if photos[i] != photos[j]]
    np.testing.assert_array_equal(pairs, want)                           # row-major, every distinct-photo pair
    assert len(pairs) == 132 - 2 * (3 + 3)                               # {0, 2, 3} and {8, 9, 11}: 3 pairs each
    est = signature_gradients(sig, labels, 3.0, "multibatch", photos=photos)
    loss, dsig, dtheta = pair_hinge_reference(sig, labels, 3.0, np.array(want), True)
    np.testing.assert_allclose(est.loss, loss, rtol=1e-12)
    np.testing.assert_allclose(est.dsig, dsig, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(est.dthreshold, dtheta, rtol=1e-12)
    assert est.n_pairs == len(want)
    for a, b in zip(before, (sig, labels, photos)):
        np.testing.assert_array_equal(a, b)                              # inputs unchanged
    # all photos distinct: the Multibatch estimate itself
    every = signature_gradients(sig, labels, 3.0, "multibatch", photos=np.arange(12))
    plain = signature_gradients(sig, labels, 3.0, "multibatch")
    np.testing.assert_allclose(every.loss, plain.loss, rtol=1e-12)
    np.testing.assert_allclose(every.dsig, plain.dsig, rtol=1e-12, atol=1e-14)
    assert every.n_pairs == plain.n_pairs == 132


@pytest.mark.parametrize("kw, match", [
    (dict(photos=np.arange(5)), r"photos must hold one id per signature \(4\)"),
    (dict(photos=np.zeros(4, np.int64)), "every image of the batch is one photo"),
    (dict(photos=np.arange(4.0)), "photos must be an integer array"),
    (dict(photos=np.arange(4), estimator="pairs"), "needs the multibatch estimator"),
])
def test_distinct_photos_bad_input(kw, match):
    sig, labels = np.ones((4, 3)), np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match=match):
        signature_gradients(sig, labels, 1.0, **kw)


# ------------------------------------------------------------------ runs

def test_synthetic_source_applies_flip_and_jitter_when_asked():
    plain = training.SyntheticSource(tiny()).batch(np.random.default_rng([0, 1]))
    again = training.SyntheticSource(tiny()).batch(np.random.default_rng([0, 1]))
    flipped = training.SyntheticSource(tiny(flip=True, jitter=True)).batch(np.random.default_rng([0, 1]))
    np.testing.assert_array_equal(plain[0], again[0])
    np.testing.assert_array_equal(plain[1], flipped[1])
    assert flipped[0].shape == plain[0].shape and not np.array_equal(flipped[0], plain[0])


def test_run_writes_its_folder_and_learns_something(tmp_path):
    last = run(tiny(), tmp_path / "r", log=quiet, progress=False)
    files = set(os.listdir(tmp_path / "r"))
    assert {"config.json", "checkpoint.npz", "metrics.jsonl", "best.npz", "model.npz"} <= files
    lines = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    steps = [l for l in lines if "loss" in l]
    assert [l["step"] for l in steps] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "threshold", "lr", "images_per_s"} <= set(steps[0])
    assert steps[-1]["lr"] == pytest.approx(0.001)              # dropped at half the run
    assert [l["step"] for l in lines if "val_accuracy" in l] == [3, 6]
    assert 0 <= last["val_accuracy"] <= 1
    from npface import load
    model = load(tmp_path / "r" / "model.npz")
    assert model.provenance["trained_steps"] == 6


@pytest.mark.parametrize("estimator", ["multibatch", "pairs"])
def test_same_seed_same_result_and_resume_is_exact(tmp_path, monkeypatch, estimator):
    run(tiny(estimator=estimator), tmp_path / "a", log=quiet, progress=False)
    # interrupt a second run during step 3 (as Ctrl-C or SIGTERM would): it finishes the step,
    # checkpoints at step 3 and stops; then resume it to the end
    real = estimators.signature_gradients
    calls = []

    def interrupting(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kw)

    monkeypatch.setattr(training, "signature_gradients", interrupting)
    with pytest.raises(TrainingStopped, match=f"^stopped at step 3; checkpoint written. Continue with --resume "
                                              f"{tmp_path / 'b'}$") as stopped:
        run(tiny(estimator=estimator), tmp_path / "b", log=quiet, progress=False)
    assert stopped.value.status == 128 + signal.SIGINT
    assert load_checkpoint(tmp_path / "b" / "checkpoint.npz")[2]["step"] == 3
    assert not (tmp_path / "b" / "model.npz").exists()
    monkeypatch.setattr(training, "signature_gradients", real)
    run(None, tmp_path / "b", resume=True, log=quiet, progress=False)
    a, b = params_of(tmp_path / "a" / "checkpoint.npz"), params_of(tmp_path / "b" / "checkpoint.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    steps_b = [json.loads(l)["step"] for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
               if "loss" in json.loads(l)]
    assert steps_b == [1, 2, 3, 4, 5, 6]                          # no step lost or logged twice


@pytest.mark.parametrize("estimator", ["multibatch", "pairs", "pairs-in-batch"])
def test_drawing_batches_in_the_background_changes_nothing(tmp_path, estimator):
    # pairs-in-batch also draws its pairs from the step's generator after the batch: the
    # prefetcher must hand over that generator exactly where the draw left it
    cfg = tiny(estimator=estimator, flip=True, jitter=True, steps=4, validate_every=4, batch_identities=4,
               images_per_identity=4)                            # 2 x 2 would leave pairs-in-batch no choice
    run(cfg, tmp_path / "ahead", log=quiet, progress=False, prefetch=True)
    run(cfg, tmp_path / "inline", log=quiet, progress=False, prefetch=False)
    a, b = params_of(tmp_path / "ahead" / "checkpoint.npz"), params_of(tmp_path / "inline" / "checkpoint.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_prefetch_hands_out_each_steps_batch_and_its_generator():
    source = training.SyntheticSource(tiny(flip=True, jitter=True))
    with training._Prefetch(source, seed=7, end=3) as batches:
        got = [batches.get(step) for step in range(3)]
        assert batches.pending is None                          # nothing is drawn past the last step
    with training._Prefetch(source, seed=7, end=5) as batches:
        batches.get(0)
        again = batches.get(0)                                  # not the step drawn ahead (1): drawn here
    np.testing.assert_array_equal(again[0], got[0][0])
    for step, (images, labels, align, photos, teacher, rng) in enumerate(got):
        want = np.random.default_rng([7, step])
        w_images, w_labels, _, _, _ = source.batch_with_targets(want)
        np.testing.assert_array_equal(images, w_images)
        np.testing.assert_array_equal(labels, w_labels)
        assert rng.random() == want.random()                  # the generator continues where the draw stopped


def test_an_error_while_drawing_ahead_reaches_the_training_loop():
    class FailsAfterTheFirst:
        calls = 0

        def batch_with_targets(self, rng):
            self.calls += 1
            if self.calls > 1:
                raise OSError("disk gone")
            return np.zeros(1), np.zeros(1), None

    with training._Prefetch(FailsAfterTheFirst(), seed=0, end=5) as batches:
        batches.get(0)                                          # drawn here; step 1's draw starts behind it
        with pytest.raises(OSError, match="disk gone"):
            batches.get(1)                                      # failed in the background, raised here


def test_kill_9_then_resume_reaches_the_uninterrupted_result(tmp_path):
    import subprocess
    import sys
    import time
    cfg = tiny(steps=8, checkpoint_every=1, validate_every=8)
    run(cfg, tmp_path / "a", log=quiet, progress=False)
    flags = ["--steps", "8", "--batch-identities", "2", "--images-per-identity", "2", "--synthetic-identities",
             "50", "--val-pairs", "20", "--validate-every", "8", "--checkpoint-every", "1", "--threads", "1",
             "--lr-drops", "0.5", "--out", str(tmp_path / "b")]
    proc = subprocess.Popen([sys.executable, "-m", "npface.train"] + flags, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "b" / "checkpoint.npz"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and load_checkpoint(ckpt)[2]["step"] >= 3:
            break
        time.sleep(0.05)
    proc.kill()                                                   # SIGKILL: no chance to clean up
    proc.wait()
    killed_at = load_checkpoint(ckpt)[2]["step"]
    assert killed_at >= 3
    assert train_main(["--resume", str(tmp_path / "b")]) == 0
    a, b = params_of(tmp_path / "a" / "checkpoint.npz"), params_of(ckpt)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_nan_loss_stops_with_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = estimators.signature_gradients
    calls = []

    def poisoned(*args, **kw):
        calls.append(1)
        r = real(*args, **kw)
        return r._replace(loss=float("nan")) if len(calls) == 3 else r

    monkeypatch.setattr(training, "signature_gradients", poisoned)
    with pytest.raises(TrainingDiverged, match="step 3: the loss is nan; stopped. The last good checkpoint is"):
        run(tiny(), tmp_path / "r", log=quiet, progress=False)
    params, _, state = load_checkpoint(tmp_path / "r" / "checkpoint.npz")
    assert state["step"] == 2 and all(np.all(np.isfinite(v)) for v in params.values())


def test_cli_exit_status_tells_divergence_from_bad_arguments(tmp_path, monkeypatch, capsys):
    from npface.train import EXIT_DIVERGED
    real = estimators.signature_gradients
    monkeypatch.setattr(training, "signature_gradients",
                        lambda *a, **kw: real(*a, **kw)._replace(loss=float("inf")))
    argv = ["--steps", "3", "--batch-identities", "2", "--images-per-identity", "2", "--synthetic-identities", "50",
            "--val-pairs", "20", "--threads", "1", "--out", str(tmp_path / "r")]
    assert train_main(argv) == EXIT_DIVERGED != 2
    assert "step 1: the loss is inf" in capsys.readouterr().err


def test_nan_signatures_stop_training_although_their_hinge_loss_is_zero(tmp_path, monkeypatch):
    """NaN distances fail the hinge's u > 0 test, so the loss alone would read 0 and training go on."""
    real_forward = training.FaceModel.forward
    calls = []

    def poisoned(self, images, train=False, timings=None):
        sig, cache = real_forward(self, images, train, timings)
        if train:
            calls.append(1)
            if len(calls) == 2:
                sig = np.full_like(sig, np.nan)
        return sig, cache

    monkeypatch.setattr(training.FaceModel, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match="step 2: the signatures are no longer finite; stopped. No checkpoint "
                                               "was written yet"):
        run(tiny(), tmp_path / "r", log=quiet, progress=False)
    nan_sig = np.full((4, 128), np.nan, np.float32)
    assert signature_gradients(nan_sig, np.array([0, 0, 1, 1]), 2.0).loss == 0.0   # why the check is needed


@pytest.mark.parametrize("argv, match", [
    (["--images-per-identity", "1"], "--images-per-identity must be at least 2"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--lfw", "/no/such/folder"], "--lfw: folder not found"),
    (["--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
    (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["--momentum", "1"], "--momentum must be a number in [0, 1), got 1.0"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0, got nan"),
    (["--threshold-init", "-1"], "--threshold-init must be a finite number > 0 (a squared distance), got -1.0"),
    (["--threshold-init", "nan"], "--threshold-init must be a finite number > 0"),
    (["--threads", "0"], "threads must be an integer"),
    (["--init", "/no/such/model.npz"], "--init: model file not found: /no/such/model.npz"),
    (["--init", "."], "--init: . is a folder, not a model file"),
    (["--val-pairs", "1"], "--val-pairs must be at least 2 (half same, half not), got 1"),
    (["--lfw", ".", "--distill-from", "/no/such/teacher.npz"], "--distill-from: model file not found"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, match):
    assert train_main(argv + ["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("npface.train: error:") and match in err and "\n" not in err
    assert not (tmp_path / "x").exists()                             # a failed start leaves no folder behind


def test_an_unwritable_out_fails_before_the_data_and_a_data_error_leaves_no_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert train_main(["--out", str(tmp_path / "file" / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"npface.train: error: --out {tmp_path / 'file' / 'run'}: cannot write "
                   f"{tmp_path / 'file' / 'run' / 'config.json'}: {tmp_path / 'file'} is not a folder")
    from PIL import Image
    for i in range(12):                              # 12 people: 1 held out, too few for 10 validation groups
        (tmp_path / "lfw" / f"p{i:02d}").mkdir(parents=True)
        for j in range(2):
            Image.new("RGB", (250, 250), (20 * i, 50 * j, 0)).save(tmp_path / "lfw" / f"p{i:02d}" / f"{j}.jpg")
    with pytest.raises(ValueError, match=r"^--val-fraction 0.1 and --val-pairs 20: the held-out people cannot make "
                                         r"the validation pairs \(n_groups: 1 people cannot make 10 groups"):
        run(tiny(data="folder", lfw=str(tmp_path)), tmp_path / "out", log=quiet, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_resumed_run_checks_its_teachers_before_the_data(tmp_path):
    cfg = tiny(steps=2)
    run(cfg, tmp_path / "r", log=quiet, progress=False)
    cfg.distill_from = (str(tmp_path / "gone.npz"),)
    with pytest.raises(ValueError, match="--distill-from: model file not found"):
        cfg.check_files(init=False)
    cfg.init = str(tmp_path / "none.npz")
    cfg.distill_from = ()
    assert cfg.check_files(init=False) is cfg                       # --init is not read on resuming
    with pytest.raises(ValueError, match="--init: model file not found"):
        cfg.check_files()


def test_an_interrupted_run_exits_as_interrupted_with_one_line(tmp_path, capsys, monkeypatch):
    real = estimators.signature_gradients
    calls = []

    def interrupting(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)                       # SIGTERM as a scheduler sends it
        return real(*args, **kw)

    monkeypatch.setattr(training, "signature_gradients", interrupting)
    argv = ["--steps", "6", "--batch-identities", "2", "--images-per-identity", "2", "--threads", "1",
            "--val-pairs", "20", "--out", str(tmp_path / "r")]
    assert train_main(argv) == 128 + signal.SIGTERM                   # not 0: a script sees it did not finish
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"npface.train: stopped at step 2; checkpoint written. Continue with --resume {tmp_path / 'r'}"]
    assert (tmp_path / "r" / "checkpoint.npz").is_file() and not (tmp_path / "r" / "model.npz").exists()


def test_a_second_interrupt_stops_at_once_and_says_what_is_lost(tmp_path):
    stop = training._StopRequest(lambda: training._resume_hint(tmp_path / "checkpoint.npz"))
    stop._handler(signal.SIGINT, None)
    assert stop.requested
    with pytest.raises(KeyboardInterrupt, match="^stopped at once, before the first checkpoint: nothing to resume$"):
        stop._handler(signal.SIGINT, None)
    (tmp_path / "checkpoint.npz").write_bytes(b"")
    with pytest.raises(KeyboardInterrupt, match=f"the steps since the last checkpoint are lost; continue from it "
                                                f"with --resume {tmp_path}$"):
        stop._handler(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt) as second_term:
        stop._handler(signal.SIGTERM, None)
    assert second_term.value.status == 128 + signal.SIGTERM


def test_a_fresh_start_replaces_what_an_unfinished_earlier_start_left(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')            # stopped before any checkpoint
    (out / "best.npz").write_bytes(b"stale")
    run(tiny(steps=2, validate_every=2), out, log=quiet, progress=False)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 2] and json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["loss"] != 9.0
    from npface import load
    assert load(out / "best.npz").provenance["trained_steps"] == 2


def test_cli_refuses_to_overwrite_a_run_and_resume_needs_a_checkpoint(tmp_path, capsys):
    assert train_main(["--resume", str(tmp_path)]) == 2
    assert "no checkpoint.npz" in capsys.readouterr().err
    run(tiny(steps=2), tmp_path / "r", log=quiet, progress=False)
    assert train_main(["--out", str(tmp_path / "r"), "--steps", "2"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_folder_data_errors(tmp_path):
    (tmp_path / "lfw" / "alice").mkdir(parents=True)
    from PIL import Image
    Image.new("RGB", (250, 250)).save(tmp_path / "lfw" / "alice" / "a.jpg")
    with pytest.raises(ValueError):
        run(tiny(data="folder", lfw=str(tmp_path)), tmp_path / "out", log=quiet, progress=False)


def test_prefetch_benchmark_times_both_ways_and_checks_they_agree(tmp_path, capsys):
    from benchmarks import prefetch
    out = tmp_path / "prefetch.json"
    assert prefetch.main(["--steps", "2", "--warmup", "1", "--repeats", "1", "--threads", "1",
                          "--batch-identities", "2", "--images-per-identity", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["median_step_seconds"]) == {"inline", "prefetch"} and result["identical_parameters"]
    assert result["speedup"] > 0 and "parameters identical" in capsys.readouterr().out


@pytest.mark.parametrize("flags", [
    [],
    ["--lfw", "L", "--people", "peopleDevTrain.txt", "--init", "runs/a.npz", "--steps", "2500", "--lr-drops", "0.85",
     "--align-lr-scale", "0", "--validate-every", "250"],
    ["--lfw", "L", "--jitter-context"],
    ["--lfw", "L", "--distinct-photos", "--batch-identities", "32"],
    ["--lfw", "L", "--no-flip", "--jitter-rotation", "15", "--color-jitter", "0.3", "--erase", "0.25",
     "--weight-decay", "0.0005", "--singletons", "64", "--keep-checkpoints", "3", "--no-balance",
     "--lr-drops", "0.6,0.9", "--threshold-init", "2.5", "--estimator", "pairs", "--lr", "0.123456789"],
    ["--jitter", "--seed", "3", "--synthetic-identities", "100", "--align-lr-scale", "0.1",
     "--landmark-weight", "0.02"],
    ["--lfw", "a folder/with spaces", "--people", "it's.txt", "--lr-drops", "0.3333333333333333,0.9"],
    ["--lr-drops", ""],                                                 # no drop at all
    ["--lfw", "L", "--distill-from", "a.npz", "b c.npz", "--distill-weight", "0.5", "--distill-warmup", "500"],
])
def test_command_line_gives_back_the_configuration(flags):
    from npface.train import command_line, config_from_args, parser
    config = config_from_args(parser().parse_args(flags)).to_json()
    command = command_line(config, out="runs/x")
    assert command.startswith("python -m npface.train") and command.endswith("--out runs/x")
    words = shlex.split(command)
    again = config_from_args(parser().parse_args(words[3:])).to_json()
    assert again == config
    assert len(words) <= 3 + len(flags) + 2                            # nothing beyond what differs


def test_prefetch_benchmark_names_missing_data_in_one_line(tmp_path, capsys):
    from benchmarks import prefetch
    (tmp_path / "lfw").mkdir()
    assert prefetch.main(["--lfw", str(tmp_path), "--steps", "1", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "peopleDevTrain.txt" in err
