"""python -m npface.flops: per-layer accounting beside Table 2."""
import json

import numpy as np

from npface import flops
from npface.model import TABLE2, parameter_shapes


def test_json_totals_agree_with_the_model(tmp_path):
    out = tmp_path / "flops.json"
    assert flops.main(["--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert {"layers", "total_macs", "total_params"} <= set(doc)
    assert doc["total_params"] == sum(int(np.prod(s)) for s in parameter_shapes(TABLE2).values())
    assert doc["total_macs"] == sum(layer["macs"] for layer in doc["layers"])
    names = [layer["name"] for layer in doc["layers"]]
    assert names[0] == "resize" and names.index("warp") < names.index("nin1.conv") and names[-1] == "signature"


def test_hand_computed_rows():
    rows = {r["name"]: r for r in flops.layer_rows()}
    assert rows["align.conv1"]["macs"] == 50 * 50 * 4 * 5 * 5 * 3          # Table 2: 760K with the bias adds
    assert rows["align.conv1"]["macs"] + rows["align.conv1"]["bias_adds"] == 760_000
    assert rows["nin1.conv"]["output"] == (32, 56, 56) and rows["nin1.conv"]["macs"] == 56 * 56 * 32 * 75
    assert rows["conv6"]["output"] == (128, 4, 4)
    assert rows["warp"]["macs"] == 4 * 3 * 112 * 112
    assert rows["fc1"]["params"] == 2048 * 256 + 256


def test_resize_cost_counts_nonzero_taps():
    # halving: every output averages exactly 2 inputs per axis
    assert flops.resize_macs(4, 2, channels=1) == 4 * (2 * 2) + 2 * (2 * 2)


def test_notes_mark_rows_that_disagree(capsys):
    rows = {r["name"]: r for r in flops.compare_with_paper(flops.layer_rows())}
    assert rows["align.conv1"]["note"] == ""                 # matches Table 2 exactly
    assert "params 3.49K vs 30K" in rows["nin1.conv"]["note"]
    flops.main([])
    assert "whole network" in capsys.readouterr().out
