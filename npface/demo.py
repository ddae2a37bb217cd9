"""A one-minute tour of the kernels: Multibatch against random pairs, in miniature.

    python -m npface.demo [--steps 800] [--seed 0]

1. Pushes one batch of 112x112 faces-to-be (random images) through a warp and
   the first network-in-network block of Table 2, forward and backward, and
   prints the shapes and times.
2. Learns a metric on toy data (identities are clusters in a 64-d space seen
   through a random non-linear map) with a small MLP embedding, trained by SGD
   on the paper's hinge loss with a learned threshold (eq. 2), once with the
   Multibatch estimator (all k^2 - k pairs of each batch) and once with the
   classic estimator (k/2 disjoint pairs of the same batch, half same, half
   different), from the same initialisation and the same batches, at two
   learning rates. It prints held-out verification accuracy as training
   goes: the paper's Figure 4 in miniature.
"""
import argparse
import sys
import time

import numpy as np

from npface import ops
from npface.cli import run_main
from npface.threads import limit, max_threads

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)


# --------------------------------------------------------------------------
# Part 1: a batch through the warp and a NIN block
# --------------------------------------------------------------------------

def tour_nin_block(rng, N=16):
    img = rng.uniform(0, 1, (N, 3, 112, 112)).astype(np.float32)                 # (N, 3, 112, 112)
    theta = (IDENTITY + 0.05 * rng.standard_normal((N, 2, 3))).astype(np.float32)  # (N, 2, 3)
    w1 = (rng.standard_normal((32, 3, 5, 5)) * np.sqrt(2 / 75)).astype(np.float32)
    w2 = (rng.standard_normal((32, 32, 1, 1)) * np.sqrt(2 / 32)).astype(np.float32)
    b = np.zeros(32, np.float32)

    def step():
        aligned, c_warp = ops.warp_forward(img, theta, 112, 112)                 # (N, 3, 112, 112)
        h, c1 = ops.conv2d_forward(aligned, w1, b, stride=2, pad=2)             # (N, 32, 56, 56)
        h, r1 = ops.relu_forward(h)
        h, c2 = ops.conv2d_forward(h, w2, b)                                     # (N, 32, 56, 56) 1x1
        h, r2 = ops.relu_forward(h)
        out, cp = ops.maxpool2d_forward(h)                                       # (N, 32, 28, 28)
        d = ops.maxpool2d_backward(np.ones_like(out), cp)
        d, dw2, _ = ops.conv2d_backward(ops.relu_backward(d, r2), c2)
        d, dw1, _ = ops.conv2d_backward(ops.relu_backward(d, r1), c1)
        dimg, dtheta = ops.warp_backward(d, c_warp)
        return aligned, out, dtheta

    step()                                                   # compile (or load the cache)
    t = time.perf_counter()
    aligned, out, dtheta = step()
    dt = time.perf_counter() - t
    print(f"[1] {N} images {img.shape[1:]} -> warp {aligned.shape[1:]} -> NIN(32, 5x5/2) -> max-pool "
          f"{out.shape[1:]}; forward+backward in {1e3 * dt:.0f} ms; dL/dtheta has shape {dtheta.shape}")


# --------------------------------------------------------------------------
# Part 2: Multibatch against random pairs on toy identities
# --------------------------------------------------------------------------

class ToyIdentities:
    """Identity i is a centre c_i in R^64; an image of it is tanh(M (c_i + noise)), for one fixed random M."""

    def __init__(self, n_ids, rng, dim=64, noise=0.9):
        self.centres = rng.standard_normal((n_ids, dim))                         # (n_ids, 64)
        self.mix = rng.standard_normal((dim, dim)) / np.sqrt(dim)                # (64, 64)
        self.noise = noise

    def sample(self, ids, rng):
        z = self.centres[ids] + self.noise * rng.standard_normal((len(ids), self.centres.shape[1]))
        return np.tanh(z @ self.mix.T).astype(np.float32)                        # (len(ids), 64)


def init_mlp(rng, dims=(64, 128, 16)):
    params = {}
    for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        params[f"w{k}"] = (rng.standard_normal((b, a)) * np.sqrt(2 / a)).astype(np.float32)
        params[f"b{k}"] = np.zeros(b, np.float32)
    params["threshold"] = 2.0
    return params


def embed(params, x, keep=False):
    h, c0 = ops.linear_forward(x, params["w0"], params["b0"])
    h, r0 = ops.relu_forward(h)
    e, c1 = ops.linear_forward(h, params["w1"], params["b1"])
    return (e, (c0, r0, c1)) if keep else e


def sgd_step(params, x, labels, pairs, lr):
    """One step: images -> signatures -> loss and signature gradients -> parameter gradients -> update."""
    e, (c0, r0, c1) = embed(params, x, keep=True)
    loss, cache = ops.pair_hinge_forward(e, labels, params["threshold"], pairs)
    de, dthreshold = ops.pair_hinge_backward(cache)
    dh, dw1, db1 = ops.linear_backward(de, c1)
    _, dw0, db0 = ops.linear_backward(ops.relu_backward(dh, r0), c0)
    for name, g in (("w0", dw0), ("b0", db0), ("w1", dw1), ("b1", db1)):
        params[name] -= lr * g
    params["threshold"] -= lr * dthreshold
    return loss


def random_pairs(labels, rng):
    """k/2 disjoint pairs of the batch, half same and half different (the classic estimator)."""
    k = len(labels)
    by_id = {}
    for i in rng.permutation(k):
        by_id.setdefault(labels[i], []).append(i)
    same = [(v[0], v[1]) for v in by_id.values() if len(v) >= 2][: k // 4]
    used = {i for p in same for i in p}
    free = [i for i in rng.permutation(k) if i not in used]
    diff = []
    while len(diff) < k // 2 - len(same) and len(free) >= 2:
        i = free.pop()
        j = next((m for m in free if labels[m] != labels[i]), None)
        if j is None:
            break
        free.remove(j)
        diff.append((i, j))
    return np.array(same + diff, dtype=np.int64)


def verification_accuracy(params, x_a, x_b, same):
    d = ((embed(params, x_a) - embed(params, x_b)) ** 2).sum(1)
    return float(np.mean((d < params["threshold"]) == same))


RUNS = (("multibatch", 0.2), ("pairs", 0.2), ("pairs", 0.05))   # (estimator, learning rate)


def figure4_in_miniature(steps, seed, ids_per_batch=8, per_id=8, tag="[2]"):
    """Train the three RUNS side by side for ``steps`` steps; print accuracy as they go.

    Returns the final held-out accuracy of each run, keyed "estimator lr=..." in RUNS order.
    """
    rng = np.random.default_rng(seed)
    world = ToyIdentities(400, rng)
    train_ids, test_ids = np.arange(300), np.arange(300, 400)
    # held-out pairs: 1000 same, 1000 different, among identities never trained on
    a = rng.choice(test_ids, 2000)
    b = np.where(np.arange(2000) < 1000, a, (a - 300 + rng.integers(1, 100, 2000)) % 100 + 300)
    x_a, x_b, same = world.sample(a, rng), world.sample(b, rng), a == b

    start = init_mlp(rng)
    runs = [{k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in start.items()} for _ in RUNS]
    k = ids_per_batch * per_id
    print(f"{tag} toy metric learning, {ids_per_batch} identities x {per_id} images = {k} per batch: multibatch "
          f"uses all {k * k - k} ordered pairs, pairs uses {k // 2} disjoint pairs of the same batch.")
    print("    held-out verification accuracy (same initialisation, same batches):")
    print("    " + f"{'step':>5s}" + "".join(f"  {f'{e} lr={lr}':>18s}" for e, lr in RUNS))

    def report(step):
        accs = [verification_accuracy(p, x_a, x_b, same) for p in runs]
        print(f"    {step:5d}" + "".join(f"  {a:18.3f}" for a in accs), flush=True)
        return accs

    accs = report(0)
    for step in range(1, steps + 1):
        ids = np.repeat(rng.choice(train_ids, ids_per_batch, replace=False), per_id)
        x = world.sample(ids, rng)
        pairs = random_pairs(ids, rng)
        for params, (estimator, lr) in zip(runs, RUNS):
            sgd_step(params, x, ids, None if estimator == "multibatch" else pairs, lr)
        if step % max(1, steps // 8) == 0 or step == steps:
            accs = report(step)
    print("    Multibatch's lower-variance gradient tolerates the large step that makes the pairs "
          "estimator erratic;\n    with a smaller step, pairs is steadier but slower (Theorem 1, Figure 4).")
    return {f"{estimator} lr={lr}": a for (estimator, lr), a in zip(RUNS, accs)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m npface.demo",
                                     description="A one-minute tour of npface's kernels: a NIN block, then "
                                                 "Multibatch vs random pairs on toy identities.")
    parser.add_argument("--steps", type=int, default=800, help="SGD steps of the toy comparison (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    with limit(max_threads()):
        tour_nin_block(np.random.default_rng(args.seed))
        figure4_in_miniature(args.steps, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m npface.demo"))
