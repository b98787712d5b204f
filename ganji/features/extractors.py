"""Feature extractors for the metrics: `kanji` (KanjiNet, shipped, offline) and `inception` (FID's).

Each turns uint8 images (N x C x H x W, ink bright, as datasets and `ganji.sampling.generate` give
them) into float32 feature rows, through one preparation function for real and generated images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from ganji.errors import GanjiError
from ganji.features import EXTRACTORS
from ganji.features.kanji_net import KanjiNet, prepare_input
from ganji.features.resize import pil_bicubic_resize

KANJI_NET_PATH = Path(__file__).resolve().parent.parent / "assets" / "features" / "kanji_net.safetensors"
# Pinned: the file made by `python -m ganji.features.train_kanji_net --epochs 12 --seed 0`.
KANJI_NET_SHA256 = "9e4a82217721539a7dfe52d6d0ce4218a28fd5afb2cdb8cdee4262bae1fc3ad7"


@dataclass
class Extractor:
    name: str
    sha256: str  # of the weights file: part of every cache key
    dim: int
    net: nn.Module
    prepare: Callable[[Tensor], Tensor]  # uint8 images -> the network's float input
    device: torch.device

    @torch.no_grad()
    def features(self, images: Tensor, batch_size: int = 250, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """N x dim float32 features of uint8 images, in batches (order kept)."""
        out = np.empty((len(images), self.dim), np.float32)
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            x = self.prepare(chunk).to(self.device)
            out[start : start + len(chunk)] = self.net(x).float().cpu().numpy()
            if on_batch is not None:
                on_batch(len(chunk))
        return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _KanjiFeatures(nn.Module):
    def __init__(self, net: KanjiNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.features(x)


def load_kanji_net(path: Path = KANJI_NET_PATH, expected_sha256: str | None = KANJI_NET_SHA256) -> KanjiNet:
    """The shipped KanjiNet feature layers, after checking the file's sha256."""
    if not path.is_file():
        raise GanjiError(f"the KanjiNet weights are missing from the package ({path}): reinstall ganji")
    sha = _sha256(path)
    if expected_sha256 is not None and sha != expected_sha256:
        raise GanjiError(f"{path} has sha256 {sha[:12]}..., not the pinned {expected_sha256[:12]}...: reinstall ganji")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise GanjiError(f"{path} is not a readable safetensors file ({exc})") from None
    net = KanjiNet(num_classes=0)
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return net.eval()


def _inception_prepare(images: Tensor) -> Tensor:
    """uint8 -> [0, 1] floats at 299 px by PIL bicubic per channel, gray repeated to 3 channels."""
    from ganji.features.inception import INPUT_SIZE

    x = pil_bicubic_resize(images.float() / 255.0, INPUT_SIZE)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def load_extractor(name: str, device: torch.device, cache: Path, inception_weights: Path | None = None) -> Extractor:
    """The named extractor on `device`; `cache` is where Inception weights are downloaded to."""
    if name == "kanji":
        net = load_kanji_net()
        return Extractor("kanji", _sha256(KANJI_NET_PATH), net.body[-1].num_features, _KanjiFeatures(net).to(device), prepare_input, device)
    if name == "inception":
        # Imported here: torchvision.models costs seconds to import, and most runs use the kanji features.
        from ganji.features import inception as fid_inception

        if inception_weights is not None:
            if not inception_weights.is_file():
                raise GanjiError(f"--inception-weights: {inception_weights} is not a file")
            path = inception_weights
        else:
            path = fid_inception.fetch_weights(cache)
        model = fid_inception.load_fid_inception(path)
        return Extractor("inception", _sha256(path), fid_inception.FEATURE_DIM, model.to(device), _inception_prepare, device)
    raise GanjiError(f"--features must be one of {', '.join(EXTRACTORS)} (got {name!r})")
