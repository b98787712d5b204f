"""Rendering glyphs to images: white ink on black, anti-aliased, one scale for every character.

Each character's em box (the square that CJK fonts design every ideograph in) is centred on the
canvas, and one scale is chosen for the whole set so that the union of all glyph outlines fits with a
one-pixel margin: relative sizes are kept and nothing is clipped. Glyphs are drawn 4x larger and
averaged down (box filter), which anti-aliases the same way on every machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ganji.errors import GanjiError

SUPERSAMPLE = 4


@dataclass(frozen=True)
class FontInfo:
    path: Path
    name: str
    sha256: str
    units_per_em: int
    ascent: int  # font units above the baseline, top of the em box
    # The union of the chosen glyphs' outlines, relative to the em box's centre, in em units.
    reach: float


def _font_name(font) -> str:
    name = font["name"]
    return str(name.getDebugName(4) or name.getDebugName(1) or "unknown")


def inspect_font(path: Path, codepoints: Sequence[int]) -> FontInfo:
    """The font's em box and how far the given characters' outlines reach from its centre."""
    from fontTools.pens.boundsPen import BoundsPen
    from fontTools.ttLib import TTFont, TTLibError

    try:
        font = TTFont(str(path), fontNumber=0)
        upem = int(font["head"].unitsPerEm)
        hhea = font["hhea"]
        ascent, descent = int(hhea.ascent), int(hhea.descent)
        cmap = font.getBestCmap()
        glyphs = font.getGlyphSet()
    except (TTLibError, OSError, ValueError, AssertionError, KeyError) as exc:
        raise GanjiError(f"{path} is not a usable TTF/OTF/TTC font ({exc.__class__.__name__})") from None
    # CJK fonts put the em box from the descender up; centre it vertically on (ascent+descent)/2.
    cx, cy = upem / 2, (ascent + descent) / 2
    reach = 0.5
    glyf = font["glyf"] if "glyf" in font else None
    for cp in codepoints:
        gname = cmap.get(cp)
        if gname is None:
            continue
        if glyf is not None:
            g = glyf[gname]
            if not hasattr(g, "xMin"):
                continue  # an empty glyph
            box = (g.xMin, g.yMin, g.xMax, g.yMax)
        else:
            pen = BoundsPen(glyphs)
            glyphs[gname].draw(pen)
            if pen.bounds is None:
                continue
            box = pen.bounds
        x0, y0, x1, y1 = box
        reach = max(reach, (cx - x0) / upem, (x1 - cx) / upem, (cy - y0) / upem, (y1 - cy) / upem)
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return FontInfo(Path(path), _font_name(font), sha, upem, ascent, reach)


class GlyphRenderer:
    """Draws single characters as `size` x `size` uint8 images (ink 255 on 0)."""

    def __init__(self, info: FontInfo, size: int) -> None:
        self.size = size
        canvas = size * SUPERSAMPLE
        # One scale for all: the farthest outline lands one (final) pixel inside the edge.
        em_px = (canvas / 2 - SUPERSAMPLE) / info.reach
        self.em_px = em_px
        try:
            self.font = ImageFont.truetype(str(info.path), size=max(1, round(em_px)), index=0)
        except OSError as exc:
            raise GanjiError(f"{info.path} cannot be rendered ({exc})") from None
        em = round(em_px)
        # Put the em box's centre at the canvas centre: left edge x, baseline y.
        self.origin = (canvas / 2 - em / 2, canvas / 2 - em / 2 + info.ascent * em / info.units_per_em)
        self.canvas = canvas

    def render(self, codepoint: int) -> np.ndarray:
        img = Image.new("L", (self.canvas, self.canvas), 0)
        ImageDraw.Draw(img).text(self.origin, chr(codepoint), fill=255, font=self.font, anchor="ls")
        small = img.resize((self.size, self.size), Image.Resampling.BOX)
        return np.asarray(small, dtype=np.uint8)


def render_all(
    renderer: GlyphRenderer, codepoints: Sequence[int], on_glyph: Callable[[], None] | None = None
) -> tuple[np.ndarray, list[int], list[int]]:
    """Render every code point; (images N x 1 x H x W, kept code points, blank ones skipped)."""
    kept: list[int] = []
    blank: list[int] = []
    out = np.zeros((len(codepoints), 1, renderer.size, renderer.size), dtype=np.uint8)
    for cp in codepoints:
        arr = renderer.render(cp)
        if arr.max() == 0:
            blank.append(cp)
        else:
            out[len(kept), 0] = arr
            kept.append(cp)
        if on_glyph is not None:
            on_glyph()
    return out[: len(kept)], kept, blank
