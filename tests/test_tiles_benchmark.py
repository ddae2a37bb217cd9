"""benchmarks.tiles: both ways compute the float64 convolution before anything is timed, and the README's
benchmarks table carries the comparison only when its results file exists."""
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import report, tiles


def test_both_ways_compute_the_convolution_before_timing():
    fns = tiles.conv_case(30, 9, 9, 6, 3, 2, 1, np.random.default_rng(1))   # checks both against float64 first
    assert sorted(fns) == ["blas", "tiles"]
    assert (fns["tiles"] is None) == (not tiles.tile.AVAILABLE)             # None: the tiles decline the layer
    for fn in fns.values():
        if fn is not None:
            fn()


def test_a_wrong_convolution_is_caught_before_timing(monkeypatch):
    def all_zero(x_n, w2, b, K, stride, pad, relu, work, out_n):
        out_n[...] = 0.0
        return True
    monkeypatch.setattr(tiles, "conv2d_forward_tiled", all_zero)
    with pytest.raises(AssertionError):
        tiles.conv_case(3, 12, 12, 5, 3, 1, 1, np.random.default_rng(2))


def test_quick_run_writes_every_convolution(tmp_path, capsys):
    out = tmp_path / "tiles.json"
    assert tiles.main(["--quick", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    layers = {r["layer"]: r for r in data["layers"]}
    assert list(layers)[0] == "align.conv1" and list(layers)[-1] == "conv6" and len(layers) == 11
    assert (layers["conv6"]["F"], layers["conv6"]["R"], layers["conv6"]["P"]) == (128, 1152, 16)
    assert layers["nin4.conv"]["way"] == layers["nin5.conv"]["way"] == "Winograd"
    assert all(r["blas_ms"] > 0 for r in data["layers"])
    assert all(r["tiles_ms"] > 0 for r in data["layers"] if r["tiles_ms"] is not None)
    if tiles.tile.AVAILABLE:
        assert all(r["tiles_ms"] is not None for r in data["layers"])
    assert "Both ways match the float64 convolution on all 11 layers" in capsys.readouterr().out


def test_report_row_only_with_the_results_file():
    assert report._tiles_rows(None) == []
    layers = [dict(layer="conv6", way="im2col", tiles_ms=0.05, blas_ms=0.06),
              dict(layer="nin4.conv", way="Winograd", tiles_ms=0.2, blas_ms=0.1),
              dict(layer="nin1.conv", way="planes", tiles_ms=0.04, blas_ms=0.06)]
    row, = report._tiles_rows(dict(layers=layers, date="2026-12-05"))
    assert "`conv6`, `nin1.conv`" in row and "nin4" not in row
    assert "0.120 → 0.090 ms (0.75×)" in row and "`tiles.json` (2026-12-05)" in row
    assert report._tiles_rows(dict(layers=layers[1:2])) == []


def test_the_stage_table_says_how_each_convolution_runs():
    """benchmarks.inference's "limited by" column names the way the plan runs each convolution at batch 1."""
    from benchmarks.inference import stage_limits
    from npface.model import TABLE2, FaceModel
    from kernels import tile
    model = FaceModel(TABLE2, seed=0)
    limits = stage_limits(model)
    assert limits["nin4.conv"].startswith("Winograd") and limits["nin5.conv"].startswith("Winograd")
    if tile.AVAILABLE:
        assert limits["nin1.conv"] == "tiles from the input's planes, 32x75x3136"
        assert limits["conv6"] == "im2col + tiles 128x1152x16"
    model.tiles = False
    limits = stage_limits(model)
    assert limits["nin1.conv"] == "im2col + GEMM 32x75x3136" and limits["conv6"] == "im2col + GEMM 128x1152x16"
    assert limits["nin4.conv"].startswith("Winograd")


def test_the_winograd_sentence_names_the_other_way_at_batch_1():
    inf = dict(batch1_plan_call_ms=1.9, batch1_plan_call_direct_ms=2.0, winograd_weights_compared=False)
    text = report._winograd_batch1_sentence(inf)
    assert "1.900 ms with `nin4.conv` and `nin5.conv` by Winograd's method, 2.000 ms with them as direct " \
           "convolutions (on the tiles, from their input's planes) (5.0% less time" in text
    assert report._winograd_batch1_sentence(dict(batch1_plan_call_ms=1.9)) == ""
    committed = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "inference.json").read_text())
    assert "batch1_plan_call_direct_ms" in committed                        # so the README carries the sentence


@pytest.mark.parametrize("rotate", [False, True])
def test_interleaved_medians_rotates_the_order_when_asked(rotate):
    """With rotate, each callable follows each other one equally often; without, the order never changes."""
    from benchmarks.common import interleaved_medians
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    medians = interleaved_medians(fns, rounds=6, warmup=0, rotate=rotate)
    assert sorted(medians) == ["a", "b", "c"]
    rounds = ["".join(calls[i:i + 3]) for i in range(0, 18, 3)]
    assert rounds == (["abc", "bca", "cab"] * 2 if rotate else ["abc"] * 6)
