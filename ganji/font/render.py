"""Fonts back to pixels: each glyph drawn by Pillow's FreeType exactly where its sample sat, the
tracing's fidelity against those samples, and a specimen sheet set in the font itself."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ganji.data.render import SUPERSAMPLE, downsample
from ganji.font.build import ASCENT, UNITS_PER_EM

INK = 128  # a pixel is ink from half of full ink on, for IoU


def render_glyphs(font_path: Path, codepoints: Sequence[int], pixels: int) -> np.ndarray:
    """N x 1 x pixels x pixels uint8 (ink bright): each code point with the em box on the square,
    drawn SUPERSAMPLE x larger and box-filtered down, as ganji renders its datasets."""
    canvas = pixels * SUPERSAMPLE
    font = ImageFont.truetype(str(font_path), size=canvas)  # one em = the whole canvas
    baseline = canvas * ASCENT / UNITS_PER_EM
    out = np.zeros((len(codepoints), 1, pixels, pixels), np.uint8)
    for i, cp in enumerate(codepoints):
        large = Image.new("L", (canvas, canvas), 0)
        ImageDraw.Draw(large).text((0, baseline), chr(cp), fill=255, font=font, anchor="ls")
        out[i, 0] = downsample(np.asarray(large), pixels)
    return out


def ink_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image: intersection over union of the ink (pixels >= INK) of two N x ... uint8 stacks.
    Two blank images agree perfectly (1.0)."""
    ia, ib = a.reshape(len(a), -1) >= INK, b.reshape(len(b), -1) >= INK
    union = (ia | ib).sum(1)
    return np.where(union > 0, (ia & ib).sum(1) / np.maximum(union, 1), 1.0)


def specimen(font_path: Path, codepoints: Sequence[int], title: str, columns: int = 16, cell: int = 64) -> Image.Image:
    """The glyphs typeset with the font (black on white), each code point printed under it."""
    glyph_font = ImageFont.truetype(str(font_path), size=cell)
    label_font = ImageFont.load_default(size=max(9, cell // 6))
    title_font = ImageFont.load_default(size=max(12, cell // 4))
    pad, label_h, title_h = cell // 8, cell // 4, cell // 2
    cols = max(1, min(columns, len(codepoints)))
    rows = -(-len(codepoints) // cols)
    width = pad + cols * (cell + pad)
    sheet = Image.new("L", (width, title_h + pad + rows * (cell + label_h + pad)), 255)
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, title_h // 2), title, fill=0, font=title_font, anchor="lm")
    for i, cp in enumerate(codepoints):
        r, c = divmod(i, cols)
        x, y = pad + c * (cell + pad), title_h + pad + r * (cell + label_h + pad)
        draw.text((x, y + cell * ASCENT / UNITS_PER_EM), chr(cp), fill=0, font=glyph_font, anchor="ls")
        draw.text((x + cell / 2, y + cell + label_h / 2), f"U+{cp:04X}", fill=110, font=label_font, anchor="mm")
    return sheet
