"""MNIST and CIFAR-10 through torchvision's downloaders, converted to ganji's dataset format.

The study debugged its GAN on both (resized to 64x64). MNIST keeps one channel (white digits on
black, already ink-bright), CIFAR-10 three; the training split is used and class labels are kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganji.errors import GanjiError

SETS = {
    "mnist": {"channels": 1, "url": "the MNIST files"},
    "cifar10": {"channels": 3, "url": "cifar-10-python.tar.gz"},
}


def load_torchvision(name: str, root: Path, download: bool = True):
    """The torchvision dataset object (downloading into `root` when missing)."""
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    try:
        return cls(str(root), train=True, download=download)
    except (OSError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0].rstrip(":") if str(exc).strip() else exc.__class__.__name__
        raise GanjiError(f"could not download {SETS[name]['url']} for {name} into {root} (no network?): {first[:160]}") from None


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """N x C x H x W uint8 resized with antialiased bilinear interpolation, rounded back to uint8."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images.contiguous()
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def convert(name: str, dataset, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images uint8 N x C x size x size, labels int64, class names) from a torchvision dataset."""
    if name == "mnist":
        images = torch.as_tensor(np.asarray(dataset.data), dtype=torch.uint8)[:, None]
    else:
        images = torch.as_tensor(np.asarray(dataset.data), dtype=torch.uint8).permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)
    return resize_uint8(images, size), labels, list(dataset.classes)
