"""Average the weights of several checkpoints (or model files) of one run into one model.

    python -m npface.train ... --keep-checkpoints 5 --out runs/x
    python -m npface.average runs/x/ckpt-*.npz --out runs/x/avg.npz

Every parameter, theta included, is the plain mean of its values in the
inputs: the averaged model is the centre of the last points of the SGD
path, which at a small, constant learning rate lies in a flatter region of
the loss than any single point (stochastic weight averaging, Izmailov et
al. 2018). The inputs must share one architecture; averaging checkpoints
of different runs is allowed but rarely meaningful. The output's provenance
is the last input's (by step), with the list of averaged files and steps.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from npface.cli import output_file, run_main
from npface.faces import print_error
from npface.model import FaceModel, ModelConfig, load

PROG = "python -m npface.average"


def read_weights(path):
    """(params {name: array}, ModelConfig, provenance, step or None) of a checkpoint or a model file."""
    from npface.training import load_checkpoint
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        params, _, state = load_checkpoint(path)
    except ValueError:                                  # not a checkpoint: a model file, or an error naming it
        model = load(path)
        return model.params, model.config, model.provenance, model.provenance.get("trained_steps")
    config = ModelConfig.from_json(state["model_config"]).check()
    provenance = dict(state.get("provenance") or {})
    provenance.update({"trained_steps": state["step"], "config": state["config"]})
    return params, config, provenance, int(state["step"])


def average(paths) -> FaceModel:
    """The model whose every parameter is the mean over ``paths`` (checkpoints or model files, >= 1)."""
    if not paths:
        raise ValueError("no input files")
    inputs = [(Path(p),) + read_weights(p) for p in paths]
    inputs.sort(key=lambda x: (x[4] is None, x[4] or 0))                 # by step; files without one last
    _, params0, config0, _, _ = inputs[0]
    for path, params, config, _, _ in inputs[1:]:
        if config.to_json() != config0.to_json():
            raise ValueError(f"{path}: another architecture than {inputs[0][0]}")
    mean = {name: np.mean([x[1][name].astype(np.float64) for x in inputs], axis=0).astype(np.float32)
            for name in params0}
    provenance = dict(inputs[-1][3])
    provenance["averaged"] = [{"file": str(p), "step": s} for p, _, _, _, s in inputs]
    return FaceModel(config0, params=mean, provenance=provenance)


def main(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description="Average the parameters of checkpoints (ckpt-*.npz, "
                                "checkpoint.npz) or model files of one run into one model file.")
    p.add_argument("inputs", nargs="+", metavar="FILE", help="checkpoints or model files (the same architecture)")
    p.add_argument("--out", type=output_file, required=True, metavar="MODEL",
                   help="the averaged model file to write (.npz)")
    a = p.parse_args(argv)
    try:
        model = average(a.inputs)
        model.save(a.out)
    except (ValueError, OSError) as e:
        print_error(PROG, e)
        return 2
    steps = [r["step"] for r in model.provenance["averaged"]]
    print(f"wrote {a.out}: the mean of {len(a.inputs)} files (steps {steps})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
