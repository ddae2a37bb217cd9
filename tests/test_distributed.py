"""Data-parallel training on MPI ranks equals training in one process; failures end the whole job.

The MPI jobs run as ``mpiexec -n 2`` subprocesses (the mpiexec beside this Python, from the ``mpich``
wheel) in their own process group, killed whole if they outlive ``TIMEOUT``: a hang fails the test
instead of stalling the suite.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from npface import distributed, training
from npface.train import config_from_args, main as train_main, parser
from tests.distributed_worker import RUN_FLAGS, float64_training, one_step

ROOT = Path(__file__).resolve().parents[1]
MPIEXEC = Path(sys.executable).with_name("mpiexec")
TIMEOUT = 600          # a guard against hangs, not a speed limit: a fresh checkout compiles the float64 kernels first


def launcher_free_env():
    env = {k: v for k, v in os.environ.items()
           if k not in distributed.SIZE_VARIABLES + distributed.RANK_VARIABLES}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture(scope="module")
def mpiexec():
    """Start ``python ARGS`` on n ranks; returns a function giving the Popen of the job."""
    pytest.importorskip("mpi4py")
    if not MPIEXEC.exists():
        pytest.skip(f"no mpiexec beside {sys.executable}")

    def start(args, n=2):
        return subprocess.Popen([str(MPIEXEC), "-n", str(n), sys.executable] + args, cwd=ROOT, env=launcher_free_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return start


def finish(proc, timeout=TIMEOUT):
    """(return code, stdout, stderr) of a job; kill its whole process group and fail if it hangs."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the MPI job hung for {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err


def assert_params_close(got, want, rtol):
    """Every parameter within rtol of want, relative to the tensor's largest entry.

    signature.bias is measured against signature.weight instead: the loss depends on the signatures only
    through their differences, so its exact gradient, sum_i dL/ds_i, is 0 and what is left of it is
    rounding, which no two summation orders share.
    """
    for name, w in want.items():
        scale = np.abs(want["signature.weight" if name == "signature.bias" else name]).max()
        err = np.abs(np.asarray(got[name], np.float64) - w).max()
        assert err <= rtol * scale, f"{name}: max difference {err:.3g}, {rtol:g} x scale {scale:.3g}"


def steps_logged(folder):
    return [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


# ------------------------------------------------------------------ without MPI

def test_share_splits_rows_contiguously():
    for n in (1, 5, 9, 256):
        for size in range(1, min(n, 7) + 1):
            parts = [distributed.share(n, r, size) for r in range(size)]
            assert parts[0].start == 0 and parts[-1].stop == n
            assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
            lengths = [p.stop - p.start for p in parts]
            assert max(lengths) - min(lengths) <= 1 and min(lengths) >= 1


def test_single_process_never_imports_mpi(monkeypatch):
    def no_import():
        raise AssertionError("mpi4py imported without an MPI launcher")
    monkeypatch.setattr(distributed, "import_mpi", no_import)
    assert distributed.connect(environ={}) is distributed.SINGLE
    assert distributed.connect(environ={"PMI_SIZE": "1", "PMI_RANK": "0"}) is distributed.SINGLE
    assert distributed.launched_size({"OMPI_COMM_WORLD_SIZE": "4"}) == (True, 4)
    assert distributed.launched_size({"PMIX_RANK": "0"}) == (True, None)


def test_missing_mpi4py_is_a_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)          # import mpi4py now raises ImportError
    with pytest.raises(ValueError, match=r"pip install 'npface\[mpi\]'"):
        distributed.connect(force=True, environ={})
    with pytest.raises(ValueError, match=r"pip install 'npface\[mpi\]'"):
        distributed.connect(environ={"PMI_SIZE": "2", "PMI_RANK": "0"})


def test_distributed_flag_without_an_mpi_launcher_is_a_one_line_error(tmp_path):
    pytest.importorskip("mpi4py")
    proc = subprocess.run([sys.executable, "-m", "npface.train", "--distributed", "--steps", "1", "--out",
                           str(tmp_path / "r")], cwd=ROOT, env=launcher_free_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "\n" not in err, err
    assert err.startswith("npface.train: error: --distributed: not started by an MPI launcher")
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ one step

@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 1e-5)])
def test_one_step_on_two_ranks_equals_one_process(mpiexec, tmp_path, dtype, rtol):
    code, out, err = finish(mpiexec(["-m", "tests.distributed_worker", "step", dtype, str(tmp_path / "s.npz")]))
    assert code == 0, err
    with np.load(tmp_path / "s.npz") as z:
        before2 = {k[len("before/"):]: z[k] for k in z.files if k.startswith("before/")}
        after2 = {k[len("after/"):]: z[k] for k in z.files if k.startswith("after/")}
    before, after = one_step(np.dtype(dtype))
    for k in before:
        np.testing.assert_array_equal(before2[k], before[k])
    assert_params_close(after2, after, rtol)
    # the step itself, not only where it lands: each update within rtol of its own size, theta's too
    # (counted R times it would be twice as large)
    update2 = {k: after2[k] - before2[k] for k in after}
    update = {k: after[k] - before[k] for k in after}
    assert abs(update["threshold"]) > 0
    assert_params_close(update2, update, rtol)


# ------------------------------------------------------------------ whole runs

@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
    """The 20-step float64 run of RUN_FLAGS in this process: the reference."""
    folder = tmp_path_factory.mktemp("one") / "r"
    real = float64_training()
    try:
        training.run(config_from_args(parser().parse_args(RUN_FLAGS)), folder, log=lambda *a: None, progress=False)
    finally:
        training._initial_model = real
    return folder


def test_twenty_steps_on_two_ranks_match_one_process(mpiexec, one_process_run, tmp_path):
    code, out, err = finish(mpiexec(["-m", "tests.distributed_worker", "run", str(tmp_path / "r")]))
    assert code == 0, err
    assert out.count("Data: ") == 1 and "on each of 2 MPI ranks" in out       # rank 0 alone prints
    want, _, _ = training.load_checkpoint(one_process_run / "checkpoint.npz")
    got, _, state = training.load_checkpoint(tmp_path / "r" / "checkpoint.npz")
    assert state["step"] == 20
    assert_params_close(got, want, 1e-8)
    assert steps_logged(tmp_path / "r") == list(range(1, 21))               # one writer: each step once
    assert json.loads((tmp_path / "r" / "config.json").read_text())["world_size"] == 2
    from npface import load
    assert load(tmp_path / "r" / "model.npz").provenance["world_size"] == 2
    assert load(one_process_run / "model.npz").provenance["world_size"] == 1


def test_kill_9_on_two_ranks_then_resume_on_one_ends_where_one_run_ends(mpiexec, one_process_run, tmp_path):
    folder = tmp_path / "r"
    proc = mpiexec(["-m", "tests.distributed_worker", "run", str(folder)])
    ckpt = folder / "checkpoint.npz"
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and training.load_checkpoint(ckpt)[2]["step"] >= 5:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)                 # the whole job: mpiexec and both ranks
    proc.communicate()
    killed_at = training.load_checkpoint(ckpt)[2]["step"]
    assert 5 <= killed_at < 20 and not (folder / "model.npz").exists()
    assert train_main(["--resume", str(folder)]) == 0     # one process
    want, _, _ = training.load_checkpoint(one_process_run / "checkpoint.npz")
    got, _, state = training.load_checkpoint(ckpt)
    assert state["step"] == 20 and state["config"]["world_size"] == 1
    assert_params_close(got, want, 1e-8)
    assert steps_logged(folder) == list(range(1, 21))


# ------------------------------------------------------------------ failures

def test_a_failing_rank_aborts_the_job_with_its_message(mpiexec, tmp_path):
    started = time.time()
    code, out, err = finish(mpiexec(["-m", "tests.distributed_worker", "fail", str(tmp_path / "r")]), timeout=120)
    assert code == 2, err
    assert "npface.train: error: rank 1 of 2: rank one cannot go on" in err
    assert time.time() - started < 120
    assert not (tmp_path / "r" / "model.npz").exists()


def test_ranks_whose_parameters_differ_stop_with_a_clear_error(mpiexec, tmp_path):
    code, out, err = finish(mpiexec(["-m", "tests.distributed_worker", "diverge", str(tmp_path / "r")]), timeout=120)
    assert code == 1, err
    assert "step 2: the ranks' parameters differ" in err
    assert err.count("npface.train: error:") == 1 and "rank 0 of 2" in err, err    # every rank knows: one line
    assert not (tmp_path / "r" / "checkpoint.npz").exists()                # never saved a state the ranks disagree on


def test_a_loss_that_is_not_finite_on_every_rank_ends_the_job_with_one_line(mpiexec, tmp_path):
    code, out, err = finish(mpiexec(["-m", "tests.distributed_worker", "nan", str(tmp_path / "r")]), timeout=120)
    assert code == 3, err                                                    # npface.train.EXIT_DIVERGED
    assert err.count("npface.train: error:") == 1, err
    assert "rank 0 of 2: step 2: the loss is nan; stopped." in err
