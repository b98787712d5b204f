"""Turning tensors into pictures: quantisation, grids, image files (written atomically)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganji.atomic import write_atomic
from ganji.errors import GanjiError

# What a file name's suffix may ask for (the format Pillow writes under that name); no suffix is PNG.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
                 ".webp": "WEBP", ".gif": "GIF"}
_SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}


def to_uint8(x: torch.Tensor, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """Map [low, high] to 0..255, clamping first.

    Clamping before the cast is what removes the original study's "noise" artifacts: values outside
    the range wrapped around when cast to uint8.
    """
    x = (x.detach().float() - low) / (high - low)
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def to_data_range(images_u8: torch.Tensor, data_range: tuple[float, float]) -> torch.Tensor:
    """uint8 0..255 -> float32 in `data_range` (to_uint8's inverse; done where the images are)."""
    low, high = data_range
    return images_u8.float().mul_((high - low) / 255.0).add_(low)


def grid_columns(n: int) -> int:
    """A square-ish grid: ceil(sqrt(n)) columns."""
    return max(1, math.ceil(math.sqrt(n)))


def make_grid(images: torch.Tensor, columns: int | None = None, pad: int = 2, ink_on_paper: bool = True) -> Image.Image:
    """A grid picture of uint8 N x C x H x W images (ink bright, as stored).

    `ink_on_paper` draws black ink on white paper (inverted), which is how people read kanji; the
    padding is paper-coloured either way.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError("make_grid takes uint8 N x C x H x W")
    n, c, h, w = images.shape
    cols = columns or grid_columns(n)
    rows = max(1, math.ceil(n / cols))
    arr = images.cpu().numpy()
    if ink_on_paper:
        arr = 255 - arr
    paper = 255 if ink_on_paper else 0
    canvas = np.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), paper, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, y : y + h, x : x + w] = arr[i]
    return to_pil(canvas)


def to_pil(chw: np.ndarray) -> Image.Image:
    """A C x H x W uint8 array as a grayscale (C=1) or RGB (C=3) image."""
    if chw.shape[0] == 1:
        return Image.fromarray(chw[0])
    return Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0)))


def image_format(path: Path) -> str:
    """The format a file name asks for by its suffix (PNG without one); a GanjiError for a suffix that
    names no image format ganji writes, rather than PNG bytes under a misleading name."""
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "PNG"
    if suffix not in IMAGE_FORMATS:
        known = ", ".join(IMAGE_FORMATS)
        raise GanjiError(f"{path}: cannot write an image as {suffix!r}; name the file with one of {known}")
    return IMAGE_FORMATS[suffix]


def save_image(path: Path, image: Image.Image) -> None:
    """Save an image atomically (temp file + rename), in the format its suffix names (see image_format)."""
    fmt = image_format(path)
    write_atomic(Path(path), lambda tmp: image.save(tmp, format=fmt, **_SAVE_OPTIONS.get(fmt, {})))
