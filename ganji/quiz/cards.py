"""The one path every card takes to the reader, real or generated: nothing but the glyph may differ.

HYPE (Zhou et al. 2019) holds that a human evaluation is only as good as its presentation: if real
and generated images differ in size, format, compression or metadata, people (or their browser)
can tell them apart without judging the picture. So every card, whatever its source, goes through
`encode_card` and nothing else: the same size (the dataset's), black ink on white paper (the
datasets store ink bright on dark, so grayscale cards are inverted, all of them the same way),
the same PNG encoder with the same settings, no metadata chunk, and a file name that says only
the card's place in the deck (`card_file`).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

# Fixed encoder settings: zlib at a fixed level is deterministic, so equal pixels give equal bytes.
_PNG_OPTIONS = {"format": "PNG", "compress_level": 9, "optimize": False}


def card_id(index: int) -> str:
    """The name of the deck's `index`-th card ("card-007"): its place in the deck, nothing about its source."""
    return f"card-{index:03d}"


def card_file(index: int) -> str:
    return f"{card_id(index)}.png"


def to_paper(image: Any) -> np.ndarray:
    """A C x H x W uint8 picture stored ink bright (datasets, samples, imported folders) as the reader
    sees it: H x W (grayscale, inverted to black ink on white) or H x W x 3 (colour, kept as it is:
    a photograph has no ink to invert)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"a card is a uint8 C x H x W picture with 1 or 3 channels (got {arr.dtype} {arr.shape})")
    if arr.shape[0] == 1:
        return np.ascontiguousarray(255 - arr[0])
    return np.ascontiguousarray(arr.transpose(1, 2, 0))


def encode_card(image: Any) -> bytes:
    """PNG bytes of a card: `to_paper`, then Pillow's PNG encoder with fixed settings. The image is
    built fresh from the pixels, so it carries no metadata (no text, time, gamma or dpi chunks):
    IHDR, IDAT and IEND only."""
    buffer = io.BytesIO()
    Image.fromarray(to_paper(image)).save(buffer, **_PNG_OPTIONS)
    return buffer.getvalue()


def decode_card(data: bytes) -> np.ndarray:
    """A card's pixels (H x W grayscale, or H x W x 3), as the terminal draws them."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return np.asarray(img.convert("L") if img.mode not in ("L", "RGB") else img)
