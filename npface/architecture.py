"""The network of the paper's Table 2, as data: one readable list per sub-network.

    image 112x112x3 --resize--> 50x50x3 --ALIGNMENT_NET--> (a, b, tx, ty)
    image 112x112x3 --warp by [[a, -b, tx], [b, a, ty]]--> aligned 112x112x3
    aligned --SIGNATURE_NET--> 128-d signature

Reading Table 2. The table lists each layer's INPUT size; where it is silent
on padding, strides and pooling we chose the simplest layers that reproduce
every listed input size, and checked the choice against the table's FLOP
column (which counts multiply-adds: e.g. its first row, 760K, is
50*50*4 * 5*5*3 = 750K multiply-adds plus the bias adds):

- Alignment convolutions are "same" convolutions (stride 1, pad K//2) with a
  ReLU. Each drop in size comes from a max-pool after the layer: 50 -> 25,
  24 -> 12 and 12 -> 6 from 2x2 stride-2 pools. The one odd step, 25 -> 24,
  cannot come from a symmetric pad or a stride-2 layer; a 2x2 max-pool with
  stride 1 gives it exactly. The FLOP column agrees that the convolutions
  run at the resolution of their input (row 2: 25*25*12 * 5*5*4 = 750K, 758K listed).
- The alignment net's last affine layer (64 -> 4) is listed as "Affine+ReLU";
  we drop that ReLU, since a ReLU output could never express a negative
  rotation or shift. It outputs (a, b, tx, ty) of the similarity transform.
- "NIN with F kernels of KxK (stride s)": a KxK convolution with stride s and
  pad K//2, ReLU, then a 1x1 convolution of the same width, ReLU (the
  paper's section 4 describes this block). The pads give exactly the listed
  sizes: 112 -> 56 -> (pool) 28 -> 14 -> 7 -> 7 -> 7 -> 4.
- The last affine layer (256 -> 128) has no ReLU: it is the signature.

Several Table 2 rows disagree with their own input sizes (e.g. a NIN of 32
5x5 kernels on 3 channels has 3.5K parameters, not the 30K listed); the FLOP
accounting (``python -m npface.flops``) prints those rows beside ours with a
note rather than bending the network to match them.
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

INPUT_SIZE = 112          # the face crop the network takes, 112x112 RGB
ALIGN_INPUT_SIZE = 50     # the alignment net sees a 50x50 resize of it
SIGNATURE_DIM = 128


@dataclass(frozen=True)
class Conv:
    name: str
    out_channels: int
    kernel: int
    stride: int = 1
    relu: bool = True

    @property
    def pad(self):
        return self.kernel // 2


@dataclass(frozen=True)
class MaxPool:
    name: str
    size: int = 2
    stride: int = 2


@dataclass(frozen=True)
class Linear:
    name: str
    out_features: int
    relu: bool = True


Layer = Union[Conv, MaxPool, Linear]


@dataclass(frozen=True)
class PaperRow:
    """One row of Table 2 as printed: the input size, the type, FLOPs, parameters."""
    input: str
    type: str
    flops: float
    params: float
    layers: Tuple[str, ...]   # the names of our layers that make up this row


# --------------------------------------------------------------------------
# The layer lists (input 50x50x3 and 112x112x3 respectively)
# --------------------------------------------------------------------------

ALIGNMENT_NET: Tuple[Layer, ...] = (
    Conv("align.conv1", 4, 5), MaxPool("align.pool1", 2, 2),        # 50x50x3  -> 25x25x4
    Conv("align.conv2", 12, 5), MaxPool("align.pool2", 2, 1),       # 25x25x4  -> 24x24x12
    Conv("align.conv3", 12, 5), MaxPool("align.pool3", 2, 2),       # 24x24x12 -> 12x12x12
    Conv("align.conv4", 12, 3), MaxPool("align.pool4", 2, 2),       # 12x12x12 -> 6x6x12
    Conv("align.conv5", 4, 3),                                       # 6x6x12   -> 6x6x4
    Linear("align.fc1", 256), Linear("align.fc2", 64), Linear("align.fc3", 140),
    Linear("align.fc4", 64), Linear("align.fc5", 128), Linear("align.fc6", 64),
    Linear("align.fc7", 4, relu=False),                              # (a, b, tx, ty)
)

SIGNATURE_NET: Tuple[Layer, ...] = (
    Conv("nin1.conv", 32, 5, stride=2), Conv("nin1.mlp", 32, 1),      # 112x112x3 -> 56x56x32
    MaxPool("pool1", 2, 2),                                           # -> 28x28x32
    Conv("nin2.conv", 96, 3, stride=2), Conv("nin2.mlp", 96, 1),      # -> 14x14x96
    Conv("nin3.conv", 128, 3, stride=2), Conv("nin3.mlp", 128, 1),    # -> 7x7x128
    Conv("nin4.conv", 128, 3), Conv("nin4.mlp", 128, 1),              # -> 7x7x128
    Conv("nin5.conv", 128, 3), Conv("nin5.mlp", 128, 1),              # -> 7x7x128
    Conv("conv6", 128, 3, stride=2),                                  # -> 4x4x128
    Linear("fc1", 256), Linear("fc2", 256),
    Linear("signature", SIGNATURE_DIM, relu=False),
)

PAPER_TABLE2: Tuple[PaperRow, ...] = (
    PaperRow("50x50x3", "4 Convolutions, 5x5", 760e3, 304, ("align.conv1", "align.pool1")),
    PaperRow("25x25x4", "12 Convolutions, 5x5", 758e3, 2e3, ("align.conv2", "align.pool2")),
    PaperRow("24x24x12", "12 Convolutions, 5x5", 3e6, 4e3, ("align.conv3", "align.pool3")),
    PaperRow("12x12x12", "12 Convolutions, 3x3", 189e3, 2e3, ("align.conv4", "align.pool4")),
    PaperRow("6x6x12", "4 Convolutions, 3x3", 16e3, 436, ("align.conv5",)),
    PaperRow("6x6x4", "Affine+ReLU, 256", 38e3, 38e3, ("align.fc1",)),
    PaperRow("256", "Affine+ReLU, 64", 17e3, 17e3, ("align.fc2",)),
    PaperRow("64", "Affine+ReLU, 140", 10e3, 10e3, ("align.fc3",)),
    PaperRow("140", "Affine+ReLU, 64", 10e3, 10e3, ("align.fc4",)),
    PaperRow("64", "Affine+ReLU, 128", 9e3, 9e3, ("align.fc5",)),
    PaperRow("128", "Affine+ReLU, 64", 9e3, 9e3, ("align.fc6",)),
    PaperRow("64", "Affine+ReLU, 4", 260, 260, ("align.fc7",)),
    PaperRow("112x112x3", "Warp", 150e3, 0, ("warp",)),
    PaperRow("112x112x3", "NIN with 32 kernels of 5x5 (stride 2)", 8e6, 30e3, ("nin1.conv", "nin1.mlp")),
    PaperRow("56x56x32", "max-pool 2x2", 0, 0, ("pool1",)),
    PaperRow("28x28x32", "NIN with 96 kernels of 3x3 (stride 2)", 8e6, 121e3, ("nin2.conv", "nin2.mlp")),
    PaperRow("14x14x96", "NIN with 128 kernels of 3x3 (stride 2)", 9e6, 165e3, ("nin3.conv", "nin3.mlp")),
    PaperRow("7x7x128", "NIN with 128 kernels of 3x3", 9e6, 165e3, ("nin4.conv", "nin4.mlp")),
    PaperRow("7x7x128", "NIN with 128 kernels of 3x3", 4e6, 165e3, ("nin5.conv", "nin5.mlp")),
    PaperRow("7x7x128", "128 Convolutions, 3x3 (stride 2)", 8e6, 148e3, ("conv6",)),
    PaperRow("4x4x128", "Affine+ReLU 256", 525e3, 525e3, ("fc1",)),
    PaperRow("256", "Affine+ReLU 256", 66e3, 66e3, ("fc2",)),
    PaperRow("256", "Affine 128", 33e3, 33e3, ("signature",)),
)
PAPER_TOTALS = {"alignment_flops": 4.8e6, "alignment_params": 102e3, "flops": 41e6, "params": 1.3e6}


# --------------------------------------------------------------------------
# Shapes and costs
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerShape:
    layer: Layer
    input: Tuple[int, ...]     # (C, H, W) or (D,)
    output: Tuple[int, ...]
    macs: int                  # multiply-adds for one image
    params: int


def trace(layers, input_shape) -> Tuple[LayerShape, ...]:
    """Walk ``layers`` from ``input_shape`` (C, H, W): every layer's in/out shape, multiply-adds and parameters.

    A Linear after a convolution sees the (C, H, W) activation flattened in C order.
    """
    shapes = []
    shape = tuple(input_shape)
    for layer in layers:
        if isinstance(layer, Conv):
            C, H, W = shape
            Ho = (H + 2 * layer.pad - layer.kernel) // layer.stride + 1
            Wo = (W + 2 * layer.pad - layer.kernel) // layer.stride + 1
            out = (layer.out_channels, Ho, Wo)
            fan_in = C * layer.kernel ** 2
            macs, params = layer.out_channels * Ho * Wo * fan_in, layer.out_channels * (fan_in + 1)
        elif isinstance(layer, MaxPool):
            C, H, W = shape
            out = (C, (H - layer.size) // layer.stride + 1, (W - layer.size) // layer.stride + 1)
            macs, params = 0, 0
        elif isinstance(layer, Linear):
            D = 1
            for s in shape:
                D *= s
            out = (layer.out_features,)
            macs, params = D * layer.out_features, layer.out_features * (D + 1)
        else:
            raise TypeError(f"unknown layer {layer!r}")
        shapes.append(LayerShape(layer, shape, out, macs, params))
        shape = out
    return tuple(shapes)


def alignment_shapes():
    return trace(ALIGNMENT_NET, (3, ALIGN_INPUT_SIZE, ALIGN_INPUT_SIZE))


def signature_shapes():
    return trace(SIGNATURE_NET, (3, INPUT_SIZE, INPUT_SIZE))


def find(name) -> Optional[Layer]:
    """The layer called ``name`` in either network, or None."""
    for layer in ALIGNMENT_NET + SIGNATURE_NET:
        if layer.name == name:
            return layer
    return None
