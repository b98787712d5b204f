"""MNIST and CIFAR-10 through torchvision's downloaders, converted to ganji's dataset format.

The study debugged its GAN on both (resized to 64x64). MNIST keeps one channel (white digits on
black, already ink-bright), CIFAR-10 three; the training split is used and class labels are kept.
torchvision downloads into `<home>/cache/torchvision` and checks its files' md5 sums; CIFAR-10's
official format is a set of pickled batches, which torchvision reads only after that md5 check.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ganji.errors import GanjiError

# What each source needs: channels kept, and the files torchvision fetches (for error messages).
SETS: dict[str, dict[str, Any]] = {
    "mnist": {"channels": 1, "files": "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-*.gz"},
    "cifar10": {"channels": 3, "files": "cifar-10-python.tar.gz"},
}
CHUNK = 2048  # images resized at a time: 60,000 MNIST digits at 64 px would be 1 GB as one float tensor


def load_torchvision(name: str, root: Path, download: bool = True) -> Any:
    """The torchvision training-split dataset object, downloading into `root` when missing."""
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    try:
        # torchvision reports its downloads on stdout; keep stdout for results.
        with contextlib.redirect_stdout(sys.stderr):
            return cls(str(root), train=True, download=download)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        text = str(exc).strip()
        first = text.splitlines()[0].rstrip(":") if text else exc.__class__.__name__
        raise GanjiError(
            f"could not download {name} ({SETS[name]['files']}) into {root}: {first[:160]} (no network?)"
        ) from None


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """N x C x H x W uint8 resized with antialiased bilinear interpolation, rounded back to uint8."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images.contiguous()
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def convert(
    name: str,
    dataset: Any,
    size: int,
    limit: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images uint8 N x C x size x size, labels int64 N, class names) from a torchvision dataset."""
    data = np.asarray(dataset.data)[:limit]
    labels = torch.as_tensor(np.asarray(dataset.targets)[:limit], dtype=torch.int64)
    images = torch.as_tensor(data, dtype=torch.uint8)
    # MNIST's data is N x H x W; CIFAR-10's N x H x W x C.
    images = images[:, None] if name == "mnist" else images.permute(0, 3, 1, 2)
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(images), CHUNK):
        batch = images[i : i + CHUNK]
        out[i : i + len(batch)] = resize_uint8(batch, size)
        if on_chunk is not None:
            on_chunk(len(batch))
    return out, labels, [str(c) for c in dataset.classes]
