"""The teaching pages' pictures, made by one command.

    python -m npface.pictures --out docs/img                  # synthetic faces
    python -m npface.pictures --out docs/img --lfw ../shared/lfw

Writes three small PNGs (matplotlib, ``pip install 'npface[plots]'``):

- ``warp.png``: faces before and after the shipped model's alignment warp. On
  the input, the grid of the aligned image's coordinates mapped through theta
  (the points the warp samples); on the output, the same grid, now square.
- ``distances.png``: the k x k squared distances of one P x K batch under a
  fresh model (theta by the trainer's rule for a fresh model) and under the
  shipped model, coloured around each model's threshold theta: blue below
  theta ("same"), red above ("not same"); identity blocks outlined.
- ``conv-dataflow.png``: the convolution's forward and backward as a data
  flow diagram (im2col, two GEMMs, col2im).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from npface.cli import run_main
from npface.data.cache import atomic_write
from npface.faces import USER_ERRORS, CommandError, print_error

PROG = "python -m npface.pictures"
DPI = 90
COLOURS = 96           # the PNGs are palette images: a few dozen KB each


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    """Render ``fig`` and write it to ``path`` atomically as a palette PNG."""
    from PIL import Image
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]                 # (height, width, 3) uint8
    image = Image.fromarray(np.ascontiguousarray(rgb)).quantize(colors=COLOURS)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG", optimize=True))
    return Path(path)


def faces_batch(P, K, seed, lfw=None):
    """(images (P*K, 112, 112, 3) uint8, labels (P*K,)) from synthetic identities or an LFW root."""
    from npface.tour import lfw_batch, synthetic_batch
    return lfw_batch(lfw, P, K, seed) if lfw else synthetic_batch(P, K, seed)


def sample_grid(theta, size, lines=9):
    """Input pixel coordinates (ix, iy) of a lines x lines grid of output positions, for theta (2, 3).

    Rows of the result are grid lines of constant output y (then of constant x), 50 points each.
    """
    u = np.linspace(-1, 1, lines)
    t = np.linspace(-1, 1, 50)
    curves = [np.stack([t, np.full_like(t, v)]) for v in u] + [np.stack([np.full_like(t, v), t]) for v in u]
    out = []
    for xy in curves:                                                   # (2, 50) output coordinates
        xi, yi = theta @ np.vstack([xy, np.ones(xy.shape[1])])          # input normalised coordinates
        out.append((((xi + 1) * size - 1) / 2, ((yi + 1) * size - 1) / 2))
    return out


def warp_picture(model, images, path):
    """Faces before and after the alignment warp, with the sampling grid."""
    from npface import ops
    x = model.preprocess(images)                                        # (n, 3, S, S)
    _, cache = model.forward(images, train=True)
    S = model.config.input_size
    aligned, _ = ops.warp_forward(x, cache.theta.astype(x.dtype), S, S)  # (n, 3, S, S)
    n = len(images)
    fig = _figure(1.5 * n, 3.3)
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    for col in range(n):
        for row, (img, theta, title) in enumerate(((x[col], cache.theta[col], "input"),
                                                   (aligned[col], identity, "aligned"))):
            ax = fig.add_subplot(2, n, row * n + col + 1)
            ax.imshow(np.clip((img.transpose(1, 2, 0) + 1) / 2, 0, 1), extent=(-0.5, S - 0.5, S - 0.5, -0.5))
            for gx, gy in sample_grid(theta, S):
                ax.plot(gx, gy, color="yellow", lw=0.5, alpha=0.8)
            ax.set_xlim(-0.5, S - 0.5)
            ax.set_ylim(S - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(title, fontsize=8)
    fig.suptitle("the shipped model's alignment warp:\nthe aligned image's grid, drawn where it samples the input",
                 fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def distance_picture(models, images, labels, path):
    """Squared distances of a batch under each (name, model), coloured around the model's theta."""
    from matplotlib.colors import TwoSlopeNorm
    fig = _figure(3.3 * len(models), 3.1)
    k = len(labels)
    edges = np.flatnonzero(np.diff(labels)) + 0.5
    for a, (name, model) in enumerate(models):
        sig = model.embed(images)
        d = ((sig[:, None].astype(np.float64) - sig[None]) ** 2).sum(-1)   # (k, k)
        theta = model.threshold
        ax = fig.add_subplot(1, len(models), a + 1)
        norm = TwoSlopeNorm(vmin=0.0, vcenter=theta, vmax=max(float(d.max()), theta * 1.01))
        im = ax.imshow(d, cmap="RdBu_r", norm=norm)
        for e in edges:
            ax.axhline(e, color="k", lw=0.4)
            ax.axvline(e, color="k", lw=0.4)
        ax.set_title(f"{name}\nθ = {theta:.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        bar.ax.axhline(theta, color="k", lw=1.0)
        bar.ax.tick_params(labelsize=6)
    fig.suptitle(f"squared distances d_ij of a {k}-face batch (blocks: identities); blue: d < θ (same)",
                 fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def conv_dataflow_picture(path):
    """The convolution's forward and backward data flow (kernels/conv.py)."""
    fig = _figure(7.0, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4.0)
    ax.axis("off")
    forward, backward = "#dce9f5", "#f8e0d8"
    boxes = (                                                   # (x, y, text, colour)
        (0.7, 3.4, "x_n\n(C, H, W)", forward), (3.0, 3.4, "cols_n\n(C·K·K, Ho·Wo)", forward),
        (6.0, 3.4, "out_n = w2 @ cols_n + b\n(F, Ho·Wo)", forward), (9.1, 3.4, "ReLU\n(fused)", forward),
        (9.1, 1.9, "dout_n · [out > 0]\n(F, Ho·Wo)", backward), (6.0, 1.9, "dw2 += dout_n @ cols_n.T\n(F, C·K·K)", backward),
        (3.0, 0.5, "dcols_n = w2.T @ dout_n\n(C·K·K, Ho·Wo)", backward), (0.7, 0.5, "dx_n\n(C, H, W)", backward),
    )
    for x, y, text, colour in boxes:
        ax.text(x, y, text, ha="center", va="center", fontsize=7,
                bbox=dict(boxstyle="round,pad=0.35", fc=colour, ec="0.4", lw=0.6))
    arrows = (                                                  # (from, to, label): explicit ends, clear of the text
        ((1.35, 3.4), (2.05, 3.4), "im2col"), ((3.95, 3.4), (4.75, 3.4), "GEMM"), ((7.25, 3.4), (8.6, 3.4), ""),
        ((9.1, 3.05), (9.1, 2.25), "backward"), ((8.1, 1.9), (7.3, 1.9), "GEMM 1"),
        ((3.4, 3.05), (4.9, 2.15), "cols_n"), ((8.3, 1.55), (4.35, 0.65), "GEMM 2"),
        ((1.75, 0.5), (1.25, 0.5), ""),
    )
    for start, end, label in arrows:
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", lw=0.8, color="0.3"))
        if label:
            ax.text((start[0] + end[0]) / 2 + 0.05, (start[1] + end[1]) / 2 + 0.12, label, ha="left" if
                    start[0] == end[0] else "center", fontsize=6.5, color="0.2")
    ax.text(1.5, 0.95, "col2im (adjoint of im2col: +=)", ha="center", fontsize=6.5, color="0.2")
    ax.set_title("convolution, one sample n: forward (blue) and backward (red), kernels/conv.py", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Draw the teaching pages' pictures (docs/img): the alignment warp, a batch's "
                               "distance matrix before and after training, the convolution's data flow. "
                               "Needs matplotlib: pip install 'npface[plots]'.")
    parser.add_argument("--out", default="docs/img", metavar="DIR", help="folder for the PNGs (default: %(default)s)")
    parser.add_argument("--lfw", metavar="DIR", help="draw LFW faces from this root instead of synthetic ones")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the faces (default: %(default)s)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CommandError("the pictures need matplotlib, which is not installed: "
                               "pip install 'npface[plots]'") from None
        import npface
        from npface.model import TABLE2, FaceModel
        from npface.threads import limit
        from npface.training import initial_threshold
        out = Path(args.out)
        shipped = npface.load()
        fresh = FaceModel(TABLE2, seed=0)
        images, labels = faces_batch(6, 4, args.seed, args.lfw)                 # (24, 112, 112, 3)
        with limit(1):
            fresh.params["threshold"] = np.array(initial_threshold(fresh.embed(images)), np.float32)
            written = [
                warp_picture(shipped, images[::4][:3], out / "warp.png"),
                distance_picture((("fresh model (random init)", fresh), ("shipped model (trained)", shipped)),
                                 images, labels, out / "distances.png"),
                conv_dataflow_picture(out / "conv-dataflow.png"),
            ]
    except USER_ERRORS as e:
        print_error(PROG, e)
        return 2
    for path in written:
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
