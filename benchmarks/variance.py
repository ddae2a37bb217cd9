"""Theorem 1, measured: how the error of the Multibatch and the random-pairs gradient estimates falls with k.

    python -m benchmarks.variance --lfw ../shared/lfw            # the full measurement (minutes)
    python -m benchmarks.variance --lfw ../shared/lfw --quick    # a smaller pool and fewer draws

What is measured
----------------
A fixed model and a fixed pool of m faces: the images of the trainer's
training people (LFW's peopleDevTrain.txt minus the people it holds out).
For an estimate g of the gradient made from one mini-batch of k faces we
estimate the mean squared error

    E || g - grad L ||^2          (the expectation over independent batches)

from R batches for every k in 8 ... 256, where grad L is the gradient of the
loss over *every* ordered pair of the pool (m^2 - m pairs, exact, float64).

Which gradient. The parameters are the final ``signature`` layer's W (D, F)
and b (D,), and the threshold theta. The layers below are fixed, so each face
has fixed features h_i (F,) and signature s_i = W h_i + b, and the gradient
of any batch is exact and cheap with no backward pass::

    dL/dW = sum_i dL/ds_i h_i^T,   dL/db = sum_i dL/ds_i (= 0: the loss sees only differences s_i - s_j)

Theorem 1 bounds the error coordinate by coordinate (its bound is a sum over
coordinates r), so it holds for any subset of the parameters; this is the
subset whose gradient needs no backward pass, which is what makes thousands of
batches of up to 256 faces affordable.

Two settings
------------
- ``theorem``: the theorem's own. k faces drawn uniformly without replacement
  from the pool. Multibatch: the plain mean of the hinge loss over all k^2 - k
  ordered pairs (eq. 3). Pairs: the k faces paired off in their random order,
  k/2 disjoint pairs, plain mean. Both are unbiased for grad L of the plain
  mean over all pairs of the pool.
- ``pk``: training's batches and the trainer's own estimators
  (``estimators.signature_gradients``), with the balanced loss (half same,
  half not-same). Multibatch: P people x K images (``PKSampler``; (P, K) from
  (2, 4) at k = 8 to (16, 16) at k = 256), all pairs. Pairs: the paper's
  baseline as the trainer draws it, k/2 independent random pairs of the same
  people (``RandomPairSampler``: k/4 same, k/4 different), k images too.
  grad L is the balanced loss over all pairs of the pool's people with >= 2
  images. The pool's images are not augmented, so a person with fewer than K
  images brings exact copies (distance 0) into a batch, where training's flips
  and jitter would make them differ. P x K sampling weighs people, not pairs, uniformly, so these
  estimates are biased: their error has a floor ||E g - grad L||^2 that no k
  removes. We report the mean squared error and, beside it, the spread
  E ||g - E g||^2 about the estimator's own mean.

The bound (theorem setting). Per pair, l_ij = max(0, u_ij) with
u_ij = 1 - y_ij (theta - d_ij), d_ij = ||s_i - s_j||^2. Where the hinge is
active (u_ij > 0)::

    dl_ij/dW = 2 y_ij (s_i - s_j)(h_i - h_j)^T,   dl_ij/dtheta = -y_ij,
    ||grad l_ij||^2 = 4 ||s_i - s_j||^2 ||h_i - h_j||^2 + 1

and 0 elsewhere. With A_ij = grad l_ij - grad L (zero mean over the pool's
pairs), Theorem 1 states

    E ||g_MB - grad L||^2 <= term1 + term2,
    term1 = nu^2 / (k^2 - k),                nu^2 = E_{i != j} ||A_ij||^2
    term2 = 2 (k - 2) / (k (k - 1)) * abar2,  abar2 = E_i ||Abar_i||^2,  Abar_i = E_{j != i} A_ij

term2's factor is the proof's own count (2 k (k-1) (k-2) index quadruples in
its I_3, each at most E_i (Abar_i^(r))^2, over (k^2 - k)^2).

The exact value. Expanding E ||g_MB - grad L||^2 over the quadruples (i, j, s, t)
of batch positions also needs the ones the proof's partition leaves out:
(s, t) = (j, i), and one index shared across the pairs (i = t or j = s).
For a symmetric loss (l_ij = l_ji, as eq. 2) they add as much again as I_1 and
I_3, and for k faces drawn without replacement from m the expectation is
exactly::

    E ||g_MB - grad L||^2 = [2 n1 nu^2 + 4 n3 R + n2 Q] / n1^2,
    n1 = k (k-1),  n3 = k (k-1) (k-2),  n2 = k (k-1) (k-2) (k-3),
    R = ((m-1) abar2 - nu^2) / (m - 2)             (pairs sharing one face)
    Q = (2 nu^2 - 4 (m-1) abar2) / ((m-2) (m-3))   (disjoint pairs: the finite-pool term)

which for m >> k is 2 term1 + 2 term2: the stated bound's first term is half
the true one (k^2 - k ordered pairs of a symmetric loss are only (k^2 - k)/2
different pairs), the proof's count for the second term is half too, and the
O(1/k^2) versus O(1/k) conclusion is unchanged. (Q, the proof's I_2, is
O(1/m) and not always <= 0 as the proof says: it is positive when
abar2 < nu^2 / (2 (m - 1)).)
``tests/test_variance.py`` checks this identity by enumerating every batch of
a small pool. nu^2 and abar2 are computed exactly, over every pair (``--rows``
averages abar2 over a random subset of rows instead and reports its standard
error). For reference
the k/2-pairs estimate's error is about nu^2 / (k / 2).
"""
import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np

from benchmarks.common import write_json
from npface import ops
from npface.cli import HelpFormatter, output_file, run_main
from npface.estimators import signature_gradients
from npface.threads import limit

KS = (8, 16, 32, 64, 128, 256)
PK_SHAPES = {8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)}   # k -> (P, K)


@dataclass
class Pool:
    """A fixed population of faces as the final signature layer sees them (float64)."""
    h: np.ndarray          # (m, F) inputs of the signature layer
    s: np.ndarray          # (m, D) signatures, s = h W^T + b
    labels: np.ndarray     # (m,) int64 person labels
    threshold: float       # the model's theta

    def subset(self, rows):
        return Pool(self.h[rows], self.s[rows], self.labels[rows], self.threshold)


def parameter_gradient(pool: Pool, rows, dsig, dthreshold) -> np.ndarray:
    """The gradient (vec W (D*F,), b (D,), theta (1,)) of a loss with signature gradients dsig (k, D) of ``rows``."""
    dW = dsig.T @ pool.h[rows]                                           # (D, F)
    return np.concatenate([dW.ravel(), dsig.sum(0), [dthreshold]])


def batch_gradient(pool: Pool, rows, pairs=None, balance=False) -> np.ndarray:
    """Gradient of the hinge loss over the pairs of pool ``rows`` (k,): all ordered pairs, or ``pairs`` (P, 2)."""
    _, cache = ops.pair_hinge_forward(pool.s[rows], pool.labels[rows], pool.threshold, pairs, balance)
    dsig, dthreshold = ops.pair_hinge_backward(cache)                    # (k, D), scalar
    return parameter_gradient(pool, rows, dsig, dthreshold)


# --------------------------------------------------------------------------
# The two settings: one batch, both estimators
# --------------------------------------------------------------------------

def theorem_draw(pool: Pool, k: int, rng) -> Dict[str, np.ndarray]:
    """k faces uniformly without replacement; Multibatch (all pairs) and k/2 disjoint pairs, plain means."""
    rows = rng.choice(len(pool.labels), size=k, replace=False)           # (k,) in random order
    consecutive = np.arange(k - k % 2).reshape(-1, 2)                    # (k/2, 2): faces 0-1, 2-3, ...
    return {"multibatch": batch_gradient(pool, rows, None, balance=False),
            "pairs": batch_gradient(pool, rows, consecutive, balance=False)}


def pk_draw_factory(pool: Pool) -> Callable:
    """Training's batches with the trainer's balanced estimators: P x K for Multibatch, k/2 random pairs for pairs."""
    from npface.data.sampler import PKSampler, RandomPairSampler
    samplers = {}

    def draw(k, rng):
        if k not in samplers:
            P, K = PK_SHAPES[k]
            samplers[k] = {"multibatch": PKSampler(pool.labels, P, K), "pairs": RandomPairSampler(pool.labels, k)}
        out = {}
        for name, sampler in samplers[k].items():
            rows, labels = sampler.sample(rng)                           # (k,), (k,)
            est = signature_gradients(pool.s[rows], labels, pool.threshold, name, rng=rng, balance=True)
            out[name] = parameter_gradient(pool, rows, est.dsig, est.dthreshold)
        return out

    return draw


def measure(draw: Callable, g_full: np.ndarray, ks, n_draws: int, seed: int = 0, progress=None) -> dict:
    """Squared errors ||g - g_full||^2 of every draw (len(ks), R) per estimator, and the spread about the mean.

    spread = R / (R - 1) * (mean ||e_r||^2 - ||mean e_r||^2) with e_r = g_r - g_full, the unbiased
    estimate of E ||g - E g||^2.
    """
    errors = {"multibatch": np.empty((len(ks), n_draws)), "pairs": np.empty((len(ks), n_draws))}
    spread = {"multibatch": np.empty(len(ks)), "pairs": np.empty(len(ks))}
    for a, k in enumerate(ks):
        rng = np.random.default_rng([seed, k])
        total = {name: np.zeros_like(g_full) for name in errors}
        for r in range(n_draws):
            for name, g in draw(k, rng).items():
                e = g - g_full
                errors[name][a, r] = e @ e
                total[name] += e
        for name in errors:
            mean_e = total[name] / n_draws
            spread[name][a] = n_draws / (n_draws - 1) * (errors[name][a].mean() - mean_e @ mean_e)
        if progress:
            progress(f"k = {k}: {n_draws} batches")
    return {"errors": errors, "spread": spread}


def fit_slope(ks, errors: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple:
    """Least-squares slope of log(mean error) on log k, and its 95% bootstrap interval over the draws.

    errors (len(ks), R): squared errors of R independent draws per k. Returns (slope, (lo, hi)).
    """
    x = np.log(np.asarray(ks, dtype=np.float64))
    slope = float(np.polyfit(x, np.log(errors.mean(1)), 1)[0])
    rng = np.random.default_rng(seed)
    n_k, R = errors.shape
    boots = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, R, size=(n_k, R))
        boots[b] = np.polyfit(x, np.log(np.take_along_axis(errors, pick, 1).mean(1)), 1)[0]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return slope, (float(lo), float(hi))


# --------------------------------------------------------------------------
# The bound's two terms (theorem setting)
# --------------------------------------------------------------------------

def _active_coefficients(pool: Pool, rows, sq) -> tuple:
    """For pool rows ``rows`` (n,) against every face: y * [u > 0] (n, m), squared distances (n, m).

    sq (m,) holds every signature's squared norm. The diagonal (a face with itself) is set to 0.
    """
    s, labels = pool.s, pool.labels
    d = np.maximum(sq[rows, None] + sq[None, :] - 2.0 * (s[rows] @ s.T), 0.0)   # (n, m)
    y = np.where(labels[rows, None] == labels[None, :], 1.0, -1.0)        # (n, m)
    c = y * ((1.0 - y * (pool.threshold - d)) > 0.0)
    c[np.arange(len(rows)), rows] = 0.0
    return c, d


def bound_terms(pool: Pool, g_full: np.ndarray, n_rows: Optional[int] = None, seed: int = 0, chunk: int = 256) -> dict:
    """nu^2 (exact, all ordered pairs) and E_i ||Abar_i||^2: exact over every row (``n_rows`` None), else the
    mean over ``n_rows`` random rows with its standard error."""
    m, D = pool.s.shape
    F = pool.h.shape[1]
    ssq = (pool.s * pool.s).sum(1)                                       # (m,)
    hsq = (pool.h * pool.h).sum(1)                                       # (m,)
    mean_sq = 0.0                                                        # sum over i != j of ||grad l_ij||^2
    for start in range(0, m, chunk):
        rows = np.arange(start, min(m, start + chunk))
        c, d = _active_coefficients(pool, rows, ssq)
        dh = np.maximum(hsq[rows, None] + hsq[None, :] - 2.0 * (pool.h[rows] @ pool.h.T), 0.0)   # (n, m)
        mean_sq += float(((c != 0) * (4.0 * d * dh + 1.0)).sum())
    mean_sq /= m * (m - 1)
    nu2 = mean_sq - float(g_full @ g_full)

    gW = g_full[:D * F].reshape(D, F)
    gb, gtheta = g_full[D * F:D * F + D], g_full[-1]
    rng = np.random.default_rng(seed)
    every_row = n_rows is None or n_rows >= m
    picked = np.arange(m) if every_row else rng.choice(m, size=n_rows, replace=False)
    abar2 = np.empty(len(picked))
    for a, i in enumerate(picked):
        c, _ = _active_coefficients(pool, np.array([i]), ssq)
        nz = np.flatnonzero(c[0])
        cz = c[0, nz]                                                    # (n,)
        ds = pool.s[i] - pool.s[nz]                                      # (n, D)
        dh = pool.h[i] - pool.h[nz]                                      # (n, F)
        row_W = 2.0 * (ds * cz[:, None]).T @ dh / (m - 1)                # (D, F) E_{j != i} dl_ij/dW
        row_theta = -cz.sum() / (m - 1)
        abar2[a] = ((row_W - gW) ** 2).sum() + (gb ** 2).sum() + (row_theta - gtheta) ** 2
    return {"nu2": nu2, "mean_pair_grad_sq": mean_sq, "abar2": float(abar2.mean()),
            "abar2_se": 0.0 if every_row else float(abar2.std(ddof=1) / np.sqrt(len(abar2))),
            "abar2_rows": int(len(picked))}


def bound(k, nu2: float, abar2: float) -> tuple:
    """(term1, term2) of Theorem 1's bound as stated, at batch size(s) k."""
    k = np.asarray(k, dtype=np.float64)
    return nu2 / (k * k - k), 2.0 * (k - 2.0) / (k * (k - 1.0)) * abar2


def exact_multibatch_error(k, m: int, nu2: float, abar2: float):
    """E ||g_MB - grad L||^2 for k faces drawn without replacement from m (symmetric loss; see the module doc)."""
    k = np.asarray(k, dtype=np.float64)
    n1, n3, n2 = k * (k - 1), k * (k - 1) * (k - 2), k * (k - 1) * (k - 2) * (k - 3)
    R = ((m - 1) * abar2 - nu2) / (m - 2)
    Q = (2 * nu2 - 4 * (m - 1) * abar2) / ((m - 2) * (m - 3))
    return (2 * n1 * nu2 + 4 * n3 * R + n2 * Q) / (n1 * n1)


# --------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------

def pool_of(model, images, labels, threads=2) -> Pool:
    """Features and signatures of ``images`` under ``model``, in float64; checks s = W h + b."""
    sig, feats = model.embed_with_features(images, threads=threads)
    W = model.params["signature.weight"].astype(np.float64)
    b = model.params["signature.bias"].astype(np.float64)
    h = feats.astype(np.float64)
    s = h @ W.T + b
    if not np.allclose(s, sig, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(sig).max()))):
        raise AssertionError("signatures recomputed from the features do not match the network's output")
    return Pool(h, s, np.asarray(labels, dtype=np.int64), float(model.params["threshold"]))


def calibrate_threshold(pool: Pool, seed: int = 0) -> float:
    """The trainer's rule for a fresh signature net: theta = max(2, median squared distance in a 16 x 16 batch)."""
    from npface.data.sampler import PKSampler
    from npface.training import initial_threshold
    rows, _ = PKSampler(pool.labels, 16, 16).sample(np.random.default_rng(seed))
    return initial_threshold(pool.s[rows])


def run_setting(pool: Pool, setting: str, ks, n_draws: int, n_rows: Optional[int], seed: int, log=print) -> dict:
    """Measure one (model, setting): errors, spreads, slopes and (theorem setting) the bound's terms."""
    t0 = time.perf_counter()
    if setting == "theorem":
        g_full = batch_gradient(pool, np.arange(len(pool.labels)), None, balance=False)
        draw = lambda k, rng: theorem_draw(pool, k, rng)                 # noqa: E731
    else:
        keep = np.flatnonzero(np.bincount(pool.labels)[pool.labels] >= 2)    # people with >= 2 images
        pool = pool.subset(keep)
        g_full = batch_gradient(pool, np.arange(len(pool.labels)), None, balance=True)
        draw = pk_draw_factory(pool)
    with limit(1):   # thousands of tiny kernels: a thread pool only adds overhead (and contention on a busy machine)
        res = measure(draw, g_full, ks, n_draws, seed, progress=lambda msg: log(f"  {setting}: {msg}"))
    out = {"setting": setting, "pool_images": int(len(pool.labels)),
           "pool_people": int(len(np.unique(pool.labels))), "draws": n_draws, "k": list(ks),
           "grad_norm2": float(g_full @ g_full)}
    for name in ("multibatch", "pairs"):
        err = res["errors"][name]
        slope, ci = fit_slope(ks, err, seed=seed)
        out[name] = err.mean(1).tolist()
        out[name + "_se"] = (err.std(1, ddof=1) / np.sqrt(n_draws)).tolist()
        out[name + "_spread"] = res["spread"][name].tolist()
        out["slope_" + name] = slope
        out["slope_" + name + "_ci95"] = list(ci)
    if setting == "pk":
        out["pk_shapes"] = [list(PK_SHAPES[k]) for k in ks]
    if setting == "theorem":
        terms = bound_terms(pool, g_full, n_rows, seed)
        t1, t2 = bound(ks, terms["nu2"], terms["abar2"])
        exact = exact_multibatch_error(ks, len(pool.labels), terms["nu2"], terms["abar2"])
        # the exact value is linear in abar2, so abar2's standard error carries over directly
        exact_se = exact_multibatch_error(ks, len(pool.labels), terms["nu2"], terms["abar2"] + terms["abar2_se"]) - exact
        out.update(terms, bound_term1=t1.tolist(), bound_term2=t2.tolist(), multibatch_exact=exact.tolist(),
                   multibatch_exact_se=np.abs(exact_se).tolist(),
                   pairs_predicted=(terms["nu2"] / (np.asarray(ks) / 2.0)).tolist())
    out["seconds"] = time.perf_counter() - t0
    return out


def load_pool_images(lfw, people="peopleDevTrain.txt", max_images=None, seed=0):
    """The trainer's training people (its held-out split removed): images (m, 112, 112, 3) uint8, labels (m,)."""
    from npface.training import FolderSource, TrainConfig
    source = FolderSource(TrainConfig(data="folder", lfw=str(lfw), people=people), progress=False)
    rows = source.train_idx
    if max_images is not None and len(rows) > max_images:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_images, replace=False))
    return np.asarray(source.ds.images[rows]), source.ds.labels[rows]


def run(models: Dict[str, object], images, labels, ks=KS, n_draws=1000, n_rows=None, seed=0, threads=2,
        calibrate=("initial",), log=print) -> dict:
    """The whole measurement for every named model; returns the JSON-ready result.

    Models named in ``calibrate`` get theta by the trainer's rule for a fresh signature net.
    """
    settings = []
    for model_name, model in models.items():
        t = time.perf_counter()
        pool = pool_of(model, images, labels, threads)
        if model_name in calibrate:
            pool.threshold = calibrate_threshold(pool, seed)
        log(f"{model_name}: features of {len(labels)} faces in {time.perf_counter() - t:.0f} s")
        for setting in ("theorem", "pk"):
            r = run_setting(pool, setting, ks, n_draws, n_rows, seed, log)
            r["model"] = model_name
            r["threshold"] = pool.threshold
            settings.append(r)
            log(f"{model_name}/{setting}: slope multibatch {r['slope_multibatch']:.2f} "
                f"[{r['slope_multibatch_ci95'][0]:.2f}, {r['slope_multibatch_ci95'][1]:.2f}], pairs "
                f"{r['slope_pairs']:.2f} [{r['slope_pairs_ci95'][0]:.2f}, {r['slope_pairs_ci95'][1]:.2f}] "
                f"({r['seconds']:.0f} s)")
    return {"what": "E||g - grad L||^2 of the signature layer's (W, b, theta) gradient; see benchmarks/variance.py",
            "parameters": ["signature.weight", "signature.bias", "threshold"],
            "ks": list(ks), "draws": n_draws, "seed": seed, "settings": settings,
            "pk_pairs_baseline": "independent random pairs (npface.data.sampler.RandomPairSampler)",
            "date": time.strftime("%Y-%m-%d")}


def default_models(initial: Optional[str], trained: Optional[str]):
    """{"initial": ..., "trained": ...}: the Figure 4 runs' starting model and the shipped model.

    Without ``initial``, the starting model is rebuilt from the shipped one: its alignment net (trained with
    --align-lr-scale 0, so still exactly the pretrained one) in a fresh seed-0 model, which is what
    ``npface.pretrain_alignment`` (seed 0, alignment parameters only) produces.
    """
    from npface.model import TABLE2, FaceModel, load
    shipped = load(trained)
    if initial:
        init = load(initial)
    else:
        init = FaceModel(TABLE2, seed=0)
        for name, value in shipped.params.items():
            if name.startswith("align."):
                init.params[name] = value.copy()
    return {"initial": init, "trained": shipped}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.variance",
        description="Theorem 1 measured: E||g - grad L||^2 of the Multibatch and k/2-random-pairs gradient "
                    "estimates for k = 8..256, at a starting model and a trained one, in the theorem's setting "
                    "and with training's P x K batches; fitted log-log slopes with 95% bootstrap intervals and "
                    "the two terms of the theorem's bound.",
        formatter_class=HelpFormatter)
    parser.add_argument("--lfw", required=True, metavar="DIR", help="LFW's root (holding lfw/ and the list files)")
    parser.add_argument("--people", default="peopleDevTrain.txt", metavar="FILE",
                        help="list of the people to draw from (its held-out 10%% is left out, as in training)")
    parser.add_argument("--initial", metavar="MODEL",
                        help="the starting model (default: runs/align_pretrained.npz if present, else the shipped "
                             "model's frozen alignment net in a fresh seed-0 model); its theta is set by the "
                             "trainer's rule")
    parser.add_argument("--trained", metavar="MODEL", help="the trained model (default: the shipped model)")
    parser.add_argument("--quick", action="store_true",
                        help="1,500 faces, 200 batches per k, 64 rows for Abar (overrides --draws, --rows)")
    parser.add_argument("--draws", type=int, default=1000, help="independent batches per k")
    parser.add_argument("--rows", type=int, default=None,
                        help="average E_i||Abar_i||^2 over this many random rows i (default: every row, exact)")
    parser.add_argument("--max-images", type=int, default=None, help="use a random subset of the pool")
    parser.add_argument("--threads", type=int, default=2, help="threads for the network (features of the pool)")
    parser.add_argument("--json", type=output_file, default="benchmarks/results/variance.json", metavar="OUT",
                        help="result file")
    args = parser.parse_args(argv)
    if args.quick:
        args.draws, args.rows, args.max_images = 200, 64, args.max_images or 1500
    if args.draws < 2 or (args.rows is not None and args.rows < 2):
        parser.error("--draws and --rows must be at least 2")
    initial = args.initial or ("runs/align_pretrained.npz" if Path("runs/align_pretrained.npz").is_file() else None)
    try:
        images, labels = load_pool_images(args.lfw, args.people, args.max_images)
        models = default_models(initial, args.trained)
    except (OSError, ValueError) as e:
        print(f"python -m benchmarks.variance: error: {e}", file=sys.stderr)
        return 2
    t = time.perf_counter()
    result = run(models, images, labels, n_draws=args.draws, n_rows=args.rows, threads=args.threads,
                 log=lambda m: print(m, flush=True))
    result.update(initial_model=initial or "shipped model's alignment net + fresh seed-0 signature net",
                  trained_model=args.trained or "shipped",
                  quick=bool(args.quick), seconds=time.perf_counter() - t)
    write_json(args.json, result)
    print(f"wrote {args.json} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m benchmarks.variance"))
