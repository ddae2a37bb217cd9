"""Stochastic gradient descent, as the paper trains (section 4), and its learning-rate schedule.

One interface, in the spirit of every SGD variant::

    opt = SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    opt.step(grads, lr)          # params updated in place

- Momentum (heavy ball): v <- momentum * v - lr * g; w <- w + v. With
  momentum 0 this is the paper's plain SGD, w <- w - lr * g.
- Weight decay is the L2 penalty (weight_decay / 2) ||w||^2 added to the
  loss, i.e. g <- g + weight_decay * w, on weights only: biases and the
  threshold theta are not decayed (decaying theta would bias the decision
  rule towards 0, which is not a regulariser of the embedding).
- ``lr_scale`` multiplies the learning rate of every parameter whose name
  starts with a given prefix, e.g. {"align.": 0.1}: the alignment net
  predicts the warp of every pixel behind it, so full-size steps easily
  push it into a constant output (all its ReLUs dead); a smaller rate (or 0,
  frozen) keeps a pretrained alignment net alive.
- ``state()`` / ``load_state()`` carry the velocities through checkpoints, so
  a resumed run continues exactly.

The schedule is piecewise constant: the base rate, multiplied by ``factor``
at each fraction of the run in ``drops`` (the paper: 0.01, then 0.001 for the
last part, i.e. drops=(0.9,), factor=0.1 for the last tenth).
"""
import numpy as np


def decays(name):
    """Whether parameter ``name`` gets weight decay: weights yes; biases and the threshold no."""
    return name.endswith(".weight")


class SGD:
    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0, lr_scale=None):
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not weight_decay >= 0:
            raise ValueError(f"weight decay must be >= 0, got {weight_decay}")
        lr_scale = dict(lr_scale or {})
        if any(not v >= 0 for v in lr_scale.values()):
            raise ValueError(f"learning-rate scales must be >= 0, got {lr_scale}")
        self.params = params
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        # per parameter: the product of the scales of every prefix it starts with
        self.scale = {k: float(np.prod([v for p, v in lr_scale.items() if k.startswith(p)])) for k in params}
        self.velocity = {k: np.zeros_like(v) for k, v in params.items()} if momentum else {}

    def step(self, grads, lr=None):
        """Update every parameter in place from ``grads`` (same names and shapes)."""
        base = self.lr if lr is None else lr
        for name, w in self.params.items():
            lr = base * self.scale[name]
            if lr == 0:
                continue
            g = grads[name]
            if self.weight_decay and decays(name):
                g = g + self.weight_decay * w
            if self.momentum:
                v = self.velocity[name]
                v *= self.momentum
                v -= lr * g
                w += v
            else:
                w -= (lr * g).astype(w.dtype)

    def state(self):
        """Arrays to save in a checkpoint (the momentum velocities), named ``velocity/<param>``."""
        return {f"velocity/{k}": v for k, v in self.velocity.items()}

    def load_state(self, arrays):
        for k in self.velocity:
            self.velocity[k][...] = arrays[f"velocity/{k}"]


class StepSchedule:
    """lr(step) = base * factor ** (number of drop points passed); drops are fractions of ``total`` steps."""

    def __init__(self, base, total, drops=(0.9,), factor=0.1):
        if not base > 0:
            raise ValueError(f"learning rate must be > 0, got {base}")
        if any(not 0 < d < 1 for d in drops):
            raise ValueError(f"learning-rate drops are fractions of the run, strictly between 0 and 1; got {drops}")
        if not 0 < factor <= 1:
            raise ValueError(f"learning-rate factor must be in (0, 1], got {factor}")
        self.base, self.total, self.factor = base, total, factor
        self.drop_steps = sorted(int(round(d * total)) for d in drops)

    def __call__(self, step):
        return self.base * self.factor ** sum(step >= s for s in self.drop_steps)
