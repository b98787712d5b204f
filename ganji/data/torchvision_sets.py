"""MNIST and CIFAR-10, downloaded with torchvision's helpers, converted to ganji's dataset format.

The study debugged its GAN on both (resized to 64x64). MNIST keeps one channel (white digits on
black, already ink-bright), CIFAR-10 three; the training split is used and class labels are kept.
Downloads go into `<home>/cache/torchvision`, checked against their md5 sums. MNIST comes through
torchvision's MNIST class (idx files). CIFAR-10 does not: torchvision reads its "python version",
pickled batches, and ganji never unpickles anything. ganji reads the authors' *binary* version
instead (fixed-length records, parsed here with NumPy) straight from the tar archive, taking only
the members it expects.
"""

from __future__ import annotations

import contextlib
import sys
import tarfile
from dataclasses import dataclass
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
    "cifar10": {"channels": 3, "files": "cifar-10-binary.tar.gz"},
}
CHUNK = 2048  # images resized at a time: 60,000 MNIST digits at 64 px would be 1 GB as one float tensor


# The CIFAR-10 binary version, as published at https://www.cs.toronto.edu/~kriz/cifar.html.
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR_TRAIN = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
CIFAR_CLASSES = "cifar-10-batches-bin/batches.meta.txt"
CIFAR_RECORD = 1 + 3 * 32 * 32  # a label byte, then the red, green and blue 32 x 32 planes


@dataclass
class CifarBinary:
    """CIFAR-10's training split read from the binary archive, shaped as torchvision's CIFAR10 is."""

    data: np.ndarray  # N x 32 x 32 x 3 uint8
    targets: list[int]
    classes: list[str]

    @classmethod
    def read(cls, archive: Path) -> CifarBinary:
        """The five training batches and the class names; a clear error for anything unexpected."""
        try:
            with tarfile.open(archive, "r:gz") as tar:
                blobs = [_member_bytes(tar, name) for name in CIFAR_TRAIN]
                classes = [c.strip() for c in _member_bytes(tar, CIFAR_CLASSES).decode("ascii").splitlines() if c.strip()]
        except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as exc:
            raise GanjiError(f"{archive} is not a readable CIFAR-10 binary archive ({exc}); delete it to download it again") from None
        raw = b"".join(blobs)
        if not blobs[0] or len(raw) % CIFAR_RECORD or len(classes) != 10:
            raise GanjiError(f"{archive} does not hold CIFAR-10 binary batches; delete it to download it again")
        records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
        labels = records[:, 0]
        if labels.max() >= 10:
            raise GanjiError(f"{archive} holds labels outside 0-9: not CIFAR-10; delete it to download it again")
        images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return cls(data=np.ascontiguousarray(images), targets=labels.astype(np.int64).tolist(), classes=classes)


def _member_bytes(tar: tarfile.TarFile, name: str) -> bytes:
    """One regular file of the archive, by its exact name (nothing is extracted to disk)."""
    member = tar.getmember(name)  # KeyError when missing
    if not member.isfile():
        raise tarfile.TarError(f"{name} is not a regular file")
    handle = tar.extractfile(member)
    assert handle is not None
    return handle.read()


def load_cifar10(root: Path, download: bool = True) -> CifarBinary:
    """CIFAR-10's training split from `root`/cifar-10-binary.tar.gz, downloaded (md5-checked) if missing."""
    from torchvision.datasets.utils import calculate_md5, download_url

    archive = root / CIFAR_ARCHIVE
    if archive.is_file() and calculate_md5(archive) != CIFAR_MD5:
        raise GanjiError(f"{archive} does not match CIFAR-10's published md5 (a partial or altered download): delete it and run again")
    if not archive.is_file():
        if not download:
            raise GanjiError(f"{archive} is missing")
        # Into a side file, checked against the md5, then renamed: an interrupted download is never taken for the archive.
        part = archive.with_name(CIFAR_ARCHIVE + ".part")
        download_url(CIFAR_URL, str(root), part.name, CIFAR_MD5)
        part.replace(archive)
    try:
        return CifarBinary.read(archive)
    except KeyError as exc:
        raise GanjiError(f"{archive} lacks {exc}: not the CIFAR-10 binary archive; delete it to download it again") from None


def load_torchvision(name: str, root: Path, download: bool = True) -> Any:
    """The training split (`.data`, `.targets`, `.classes`), downloading into `root` when missing."""
    import torchvision

    try:
        # torchvision reports its downloads on stdout; keep stdout for results.
        with contextlib.redirect_stdout(sys.stderr):
            if name == "cifar10":
                return load_cifar10(root, download)
            return torchvision.datasets.MNIST(str(root), train=True, download=download)
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
