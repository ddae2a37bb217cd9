"""Pictures made from LFW frames: a frame pasted at a random position and scale into a larger picture.

The background is smooth random colour (low-resolution noise enlarged
bicubically, plus fine noise), so it holds no face. The paste is a
similarity of the frame (scale k, integer offset), so the frame's 68-point
landmarks map exactly into the picture::

    p_picture = (p_frame + 0.5) k + offset - 0.5           (dlib pixel-centre convention)

Used by ``benchmarks.framing`` (calibration and framing error),
``benchmarks.photos`` (verify agreement) and the tests.
"""
from dataclasses import dataclass

import numpy as np
from PIL import Image

SCALES = (0.5, 3.0)          # frame side / 250, drawn log-uniformly
MARGINS = (1.2, 2.5)         # picture side / frame side, per axis, drawn uniformly


@dataclass(frozen=True)
class Pasted:
    """A picture (H, W, 3) uint8 and where the frame went: scale k and offset (x, y), pixels."""
    picture: np.ndarray
    k: float
    offset: tuple

    def to_picture(self, points: np.ndarray) -> np.ndarray:
        """Frame points (..., 2) (dlib centre convention) -> picture points (..., 2)."""
        return (np.asarray(points, dtype=np.float64) + 0.5) * self.k + np.asarray(self.offset) - 0.5

    def square(self, crop) -> np.ndarray:
        """A frame's ``CropBox`` (e.g. ``LFW_CROP``) as (x0, y0, x1, y1) in picture edge coordinates."""
        corners = np.array([[crop.left, crop.top], [crop.left + crop.size, crop.top + crop.size]], dtype=np.float64)
        return (corners * self.k + np.asarray(self.offset)).reshape(4)


def background(rng, width: int, height: int) -> Image.Image:
    """Smooth random colour: 4x4 to 8x8 random pixels enlarged bicubically, with fine noise."""
    cells = rng.integers(4, 9)
    small = Image.fromarray(rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8))
    big = np.asarray(small.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    big = big + rng.normal(0, 4, big.shape)
    return Image.fromarray(np.clip(big, 0, 255).astype(np.uint8))


def paste(frame: np.ndarray, rng, scales=SCALES, margins=MARGINS) -> Pasted:
    """Paste ``frame`` (S, S, 3) uint8 at a random scale and position into a random background."""
    s = frame.shape[0]
    side = max(8, int(round(s * np.exp(rng.uniform(np.log(scales[0]), np.log(scales[1]))))))
    k = side / s
    width, height = (max(side + 2, int(side * rng.uniform(*margins))) for _ in range(2))
    canvas = background(rng, width, height)
    ox, oy = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    canvas.paste(Image.fromarray(frame).resize((side, side), Image.Resampling.BILINEAR), (ox, oy))
    return Pasted(np.asarray(canvas, dtype=np.uint8), k, (ox, oy))
