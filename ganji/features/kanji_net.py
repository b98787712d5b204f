"""KanjiNet: a compact CNN that recognises which of the 10,020 kanji an image shows.

Its penultimate layer (256 numbers per image) is ganji's offline feature space for FID, KID,
precision/recall and novelty (`ganji fid --features kanji`). Inception-v3 (the usual FID network)
was trained on photographs; a network that knows kanji across fonts tells a well-formed character
from a smudge with the right texture, and needs no download.

Input: images as the datasets store them (uint8, ink bright on black, any square size, 1 or 3
channels), turned to gray and resized to INPUT_SIZE by `prepare_input`, the same function for real
and generated images. The weights ship inside the package (`ganji/assets/features/`) and are made
by `python -m ganji.features.train_kanji_net` (its docstring gives the command, fonts and seed).
"""

from __future__ import annotations

from torch import Tensor, nn

from ganji.features.resize import gray_float, resize_to

INPUT_SIZE = 32  # kanji stay legible at 32 px, and 4x fewer pixels than 64 keep CPU training feasible
FEATURE_DIM = 256
BASE_WIDTH = 24


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class KanjiNet(nn.Module):
    """Seven 3x3 conv-BN-ReLU layers (VGG-style, Simonyan & Zisserman 2015), halving 32 -> 4 px three
    times while doubling the width, then a linear layer to the 256-d feature (with BatchNorm, before
    its ReLU: nearer to Gaussian, as FID assumes) and, for training only, a linear classifier."""

    def __init__(self, num_classes: int = 0, width: int = BASE_WIDTH) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            *_conv_bn_relu(1, w, 1),
            *_conv_bn_relu(w, 2 * w, 2),  # 16 px
            *_conv_bn_relu(2 * w, 2 * w, 1),
            *_conv_bn_relu(2 * w, 4 * w, 2),  # 8 px
            *_conv_bn_relu(4 * w, 4 * w, 1),
            *_conv_bn_relu(4 * w, 8 * w, 2),  # 4 px
            *_conv_bn_relu(8 * w, 8 * w, 1),
            nn.Flatten(),
            nn.Linear(8 * w * (INPUT_SIZE // 8) ** 2, FEATURE_DIM, bias=False),
            nn.BatchNorm1d(FEATURE_DIM),
        )
        # Not shipped: only the features are needed to measure images.
        self.classifier = nn.Sequential(nn.ReLU(), nn.Dropout(0.2), nn.Linear(FEATURE_DIM, num_classes)) if num_classes else None

    def features(self, x: Tensor) -> Tensor:
        """N x 1 x 32 x 32 floats in [0, 1] -> N x 256 features."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.classifier is None:
            raise RuntimeError("this KanjiNet was built without a classifier")
        return self.classifier(self.body(x))


def prepare_input(images: Tensor) -> Tensor:
    """uint8 N x C x H x W (ink bright) -> float N x 1 x 32 x 32 in [0, 1], as the network was trained."""
    return resize_to(gray_float(images), INPUT_SIZE)
