"""benchmarks.tiles: both ways compute the float64 product before anything is timed, and the README's
benchmarks table carries the comparison only when its results file exists."""
import json

import numpy as np
import pytest

from benchmarks import report, tiles


def test_both_ways_compute_the_product_before_timing():
    fns = tiles.product_case(6, 260, 50, np.random.default_rng(1))     # checks both against float64 first
    assert sorted(fns) == ["blas", "tiles"]
    for fn in fns.values():
        fn()


def test_a_wrong_product_is_caught_before_timing(monkeypatch):
    def off_by_one_row(a, lda, b, ldb, out, ldo, bias, has_bias, relu):
        out[...] = 0.0
        out[1:] = np.maximum(a[:-1] @ b + bias[:-1, None], 0)
    monkeypatch.setattr(tiles.tile, "tiled_matmul", off_by_one_row)
    with pytest.raises(AssertionError):
        tiles.product_case(5, 7, 9, np.random.default_rng(2))


def test_quick_run_writes_every_product(tmp_path, capsys):
    out = tmp_path / "tiles.json"
    assert tiles.main(["--quick", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    layers = [r["layer"] for r in data["products"]]
    assert layers[0] == "align.conv1" and layers[-1] == "conv6" and len(layers) == 16
    conv6 = data["products"][-1]
    assert (conv6["F"], conv6["R"], conv6["P"]) == (128, 1152, 16)
    assert all(r["tiles_ms"] > 0 and r["blas_ms"] > 0 for r in data["products"])
    assert "Both ways match the float64 product on all 16 products" in capsys.readouterr().out


def test_report_row_only_with_the_results_file():
    assert report._tiles_rows(None) == []
    products = [dict(layer="conv6", fits=True, tiles_ms=0.05, blas_ms=0.06),
                dict(layer="nin3.conv", fits=False, tiles_ms=0.2, blas_ms=0.1),
                dict(layer="align.conv3", fits=True, tiles_ms=0.04, blas_ms=0.06)]
    row, = report._tiles_rows(dict(products=products, date="2026-12-05"))
    assert "`conv6`, `align.conv3`" in row and "nin3" not in row
    assert "0.120 → 0.090 ms (0.75×)" in row and "`tiles.json` (2026-12-05)" in row
    assert report._tiles_rows(dict(products=products[1:2])) == []
