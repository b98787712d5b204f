"""The on-disk dataset format shared by every source.

A prepared dataset is a folder `datasets/NAME/` holding
- `images.safetensors`: `images` (uint8, N x C x H x W, ink bright on dark) and optionally `labels`
  (int64, N);
- `manifest.json`: where the images came from, their count and size, and the sha256 of the image
  tensor's bytes, so that a damaged or edited file is caught at load time;
- `preview.png`: a grid of the first images, for people.

The manifest is written last: a folder without one is not a prepared dataset.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ganji.atomic import write_atomic, write_json_atomic
from ganji.errors import GanjiError
from ganji.home import datasets_dir

IMAGES_FILE = "images.safetensors"
MANIFEST_FILE = "manifest.json"
PREVIEW_FILE = "preview.png"
FORMAT_VERSION = 1


@dataclass
class Dataset:
    """A prepared dataset in memory."""

    name: str
    path: Path
    images: torch.Tensor  # uint8, N x C x H x W, ink bright
    labels: torch.Tensor | None
    manifest: dict[str, Any]

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])


def dataset_path(home: Path, name: str) -> Path:
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise GanjiError(f"invalid dataset name {name!r}: use letters, digits, '-', '_' or '.'")
    return datasets_dir(home) / name


def is_prepared(home: Path, name: str) -> bool:
    return (dataset_path(home, name) / MANIFEST_FILE).is_file()


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of a tensor's raw bytes in C order (what determinism tests compare)."""
    return hashlib.sha256(t.contiguous().cpu().numpy().tobytes()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_dataset(
    folder: Path,
    images: torch.Tensor,
    manifest: dict[str, Any],
    labels: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Write images (+ labels) and the manifest atomically; returns the manifest as written.

    Adds the fields every dataset has: format, count, channels, size, sha256 of the image tensor.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError("images must be a uint8 tensor of shape N x C x H x W")
    if len(images) == 0:
        raise GanjiError("no usable images: nothing to save")
    images = images.contiguous()
    tensors = {"images": images}
    if labels is not None:
        tensors["labels"] = labels.to(torch.int64).contiguous()
    full = {
        "format": FORMAT_VERSION,
        **manifest,
        "count": int(images.shape[0]),
        "channels": int(images.shape[1]),
        "size": int(images.shape[-1]),
        "images_sha256": tensor_sha256(images),
    }
    folder.mkdir(parents=True, exist_ok=True)
    # Remove a stale manifest first, so that a crash between the two writes never leaves a manifest
    # that describes other images.
    (folder / MANIFEST_FILE).unlink(missing_ok=True)
    write_atomic(folder / IMAGES_FILE, lambda tmp: save_file(tensors, str(tmp)))
    write_json_atomic(folder / MANIFEST_FILE, full)
    return full


def load_manifest(home: Path, name: str) -> dict[str, Any]:
    path = dataset_path(home, name) / MANIFEST_FILE
    if not path.is_file():
        raise GanjiError(f"dataset {name!r} is not prepared in {datasets_dir(home)}: run `ganji fetch-data`")
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GanjiError(
            f"dataset {name!r}: manifest {path} is not valid JSON ({exc.__class__.__name__}); "
            "rebuild it with `ganji fetch-data --force`"
        ) from None
    if not isinstance(manifest, dict):
        raise GanjiError(f"dataset {name!r}: manifest {path} is not a JSON object; rebuild it with `ganji fetch-data --force`")
    return manifest


def load_dataset(home: Path, name: str, verify: bool = True) -> Dataset:
    """Load a prepared dataset; with `verify`, check the tensor against the manifest's sha256."""
    manifest = load_manifest(home, name)
    folder = dataset_path(home, name)
    try:
        tensors = load_file(str(folder / IMAGES_FILE))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GanjiError(
            f"dataset {name!r}: cannot read {folder / IMAGES_FILE} ({exc}); rebuild it with `ganji fetch-data --force`"
        ) from None
    images = tensors.get("images")
    if images is None or images.dtype != torch.uint8 or images.ndim != 4:
        raise GanjiError(f"dataset {name!r}: {IMAGES_FILE} holds no uint8 N x C x H x W 'images' tensor")
    if verify and tensor_sha256(images) != manifest.get("images_sha256"):
        raise GanjiError(
            f"dataset {name!r}: images do not match the sha256 in its manifest (damaged or edited); "
            "rebuild it with `ganji fetch-data --force`"
        )
    return Dataset(name=name, path=folder, images=images, labels=tensors.get("labels"), manifest=manifest)
