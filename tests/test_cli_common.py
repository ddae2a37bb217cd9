"""What every command-line entry point shares: --help that reads well, and output files checked before the
work that fills them (npface.cli, npface.data.cache.check_writable)."""
import importlib
import os

import pytest

from npface.cli import output_file, output_file_or_stdout, run_main
from npface.data.cache import check_writable

ENTRY_POINTS = [
    "npface.average", "npface.cluster", "npface.demo", "npface.embed", "npface.eval", "npface.export",
    "npface.flops", "npface.pictures", "npface.pretrain_alignment", "npface.pretrain_framing", "npface.search",
    "npface.tour", "npface.train", "npface.verify",
    "benchmarks.accuracy", "benchmarks.cluster_search", "benchmarks.convergence", "benchmarks.distributed",
    "benchmarks.framing", "benchmarks.heldout", "benchmarks.inference", "benchmarks.layers", "benchmarks.layout",
    "benchmarks.levers", "benchmarks.onnx_equality", "benchmarks.photos", "benchmarks.prefetch",
    "benchmarks.report", "benchmarks.reproduce", "benchmarks.ship", "benchmarks.tiles", "benchmarks.train_step",
    "benchmarks.variance",
]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_names_the_command_and_prints_no_empty_defaults(module, capsys):
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(module).main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python -m {module} "), text.splitlines()[0]
    assert "(default: None)" not in text and "%%" not in text and "(default: False)" not in text


def test_check_writable_tries_for_real_and_leaves_nothing_behind(tmp_path):
    assert check_writable(tmp_path / "new" / "deeper" / "out.json") == tmp_path / "new" / "deeper" / "out.json"
    assert os.listdir(tmp_path) == []                                  # no folder made, no probe left
    with pytest.raises(ValueError, match=f"^cannot write {tmp_path}: it is a folder$"):
        check_writable(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=f"^cannot write {tmp_path}/file/out.json: {tmp_path}/file is not a folder$"):
        check_writable(tmp_path / "file" / "out.json")
    assert sorted(os.listdir(tmp_path)) == ["file"]
    with pytest.raises(ValueError, match="cannot create files in .*File name too long"):
        check_writable(tmp_path / ("n" * 250 + ".json"))               # atomic_write's temporary name would be longer
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=f"{tmp_path}/dangling is not a folder$"):
        check_writable(tmp_path / "dangling" / "out.json")
    assert sorted(os.listdir(tmp_path)) == ["dangling", "file"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_check_writable_refuses_a_folder_no_file_can_be_made_in():
    with pytest.raises(ValueError, match="^cannot write /proc/npface/x.json: cannot create files in /proc"):
        check_writable("/proc/npface/x.json")                          # refused even to root


def test_output_file_is_an_argparse_type(tmp_path):
    import argparse
    assert output_file(str(tmp_path / "a.json")) == str(tmp_path / "a.json")
    assert output_file_or_stdout("-") == "-"
    with pytest.raises(argparse.ArgumentTypeError, match="not standard output"):
        output_file("-")
    with pytest.raises(argparse.ArgumentTypeError, match="it is a folder"):
        output_file(str(tmp_path))


@pytest.mark.parametrize("module, argv", [
    ("npface.pretrain_alignment", ["--lfw", "L", "--out", "{dir}"]),
    ("npface.pretrain_framing", ["--lfw", "L", "--json", "{dir}"]),
    ("npface.flops", ["--json", "{dir}"]),
    ("npface.embed", ["--out", "{dir}", "x.jpg"]),
    ("benchmarks.heldout", ["--lfw", "L", "--people", "selection", "--json", "{dir}"]),
    ("benchmarks.train_step", ["--json", "{dir}"]),
    ("benchmarks.inference", ["--json", "{dir}"]),
])
def test_an_unwritable_output_stops_the_command_before_it_starts(module, argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(module).main([a.format(dir=tmp_path) for a in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"python -m {module}: error: argument --") and err.endswith(f"{tmp_path}: it is a folder")


def test_benchmark_flags_checked_with_their_own_command_name(capsys):
    from benchmarks import heldout, photos
    with pytest.raises(SystemExit):
        heldout.main(["--lfw", "L", "--people", "selection", "--threads", "0"])
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "python -m benchmarks.heldout: error: --threads: threads must be an integer")
    with pytest.raises(SystemExit):
        photos.main(["--lfw", "L", "--pairs", "3", "--model", "m.npz", "--json", "out.json"])
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "python -m benchmarks.photos: error: --pairs must be an even number, at least 2 (half same, half not), got 3")


def test_photos_checks_its_lfw_folder_before_it_starts(tmp_path, capsys):
    from benchmarks import photos
    (tmp_path / "lfw").mkdir()
    with pytest.raises(SystemExit) as exc:
        photos.main(["--lfw", str(tmp_path), "--people", "selection", "--json", str(tmp_path / "p.json")])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"python -m benchmarks.photos: error: --lfw {tmp_path}: no peopleDevTrain.txt and no landmarks68.tsv "
        f"there (LFW's root, as in ../shared/lfw)")


def test_a_default_output_worked_out_after_the_flags_is_checked_too(tmp_path, capsys, monkeypatch):
    from benchmarks import heldout
    (tmp_path / "benchmarks").write_text("")                   # benchmarks/results/... cannot be made here
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        heldout.main(["--lfw", "L", "--people", "selection"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "python -m benchmarks.heldout: error: --json: cannot write benchmarks/results/heldout-selection.json: "
        "benchmarks is not a folder")


def test_only_a_command_that_prints_json_takes_dash(tmp_path, capsys, monkeypatch):
    from npface import flops
    assert flops.main(["--json", "-"]) == 0 and capsys.readouterr().out.lstrip().startswith("{")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        importlib.import_module("npface.export").main(["--out", "-"])
    assert exc.value.code == 2 and os.listdir(tmp_path) == []             # no file named "-"
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "python -m npface.export: error: argument --out: this command writes files only, not standard output "
        "('-'): give a file name")


def test_run_main_ends_a_ctrl_c_with_one_line_and_the_signal_status(capsys):
    def interrupted(message="", status=None):
        def main():
            e = KeyboardInterrupt(message)
            if status is not None:
                e.status = status
            raise e
        return main
    assert run_main(lambda: 0, "python -m x") == 0 and run_main(lambda: 3, "python -m x") == 3
    assert run_main(interrupted(), "python -m x") == 130
    assert capsys.readouterr().err == "python -m x: interrupted\n"
    assert run_main(interrupted("12 of 40 kept", 143), "python -m x") == 143
    assert capsys.readouterr().err == "python -m x: interrupted: 12 of 40 kept\n"


def test_an_interrupted_embedding_keeps_what_it_computed(tmp_path, monkeypatch):
    from PIL import Image
    import numpy as np
    from npface import faces
    from npface.model import TABLE2, FaceModel
    monkeypatch.setenv("NPFACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(faces, "CHUNK", 2)
    files = []
    for i in range(5):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(files[-1])
    FaceModel(TABLE2, seed=0).save(tmp_path / "m.npz")
    loaded = faces.open_model(tmp_path / "m.npz")
    real, calls = faces.embed_faces, []

    def interrupted_second_time(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(faces, "embed_faces", interrupted_second_time)
    with pytest.raises(KeyboardInterrupt, match="^the 2 of 5 faces embedded so far are cached; run the same "
                                                "command again to go on from them$"):
        faces.compute_signatures(loaded, files, frame="crop", progress=False)
    monkeypatch.setattr(faces, "embed_faces", real)
    again = faces.compute_signatures(loaded, files, frame="crop", progress=False)
    assert (again.n_cached, again.n_embedded) == (2, 3) and again.ok.all()
    assert not list((tmp_path / "cache").rglob("*.tmp-*"))
