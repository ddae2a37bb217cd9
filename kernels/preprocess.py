"""Input normalisation: pixels (H, W, 3), channels last, to the network's x (3, H, W) in [-1, 1].

    x[c, h, w] = (img[h, w, c] * scale - 0.5) / 0.5

with scale = 1/255 for uint8 pixels 0..255 and 1 for float pixels already in
[0, 1]. The transpose to channel-major (NCHW) happens in the same pass.
"""
from kernels.jit import kernel


@kernel
def normalise_sample(img, scale, x):
    """img (H, W, C) uint8 or float -> x (C, H, W) in x's dtype; ``scale`` in x's dtype."""
    H, W, C = img.shape
    for c in range(C):
        for h in range(H):
            for w in range(W):
                x[c, h, w] = (img[h, w, c] * scale - 0.5) / 0.5


@kernel
def normalise(images, scale, x):
    """images (N, H, W, C) -> x (N, C, H, W), sample by sample."""
    for n in range(images.shape[0]):
        normalise_sample(images[n], scale, x[n])
