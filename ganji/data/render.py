"""Rendering glyphs to images: white ink on black, anti-aliased, one scale for every character.

Each character's em box (the square every CJK ideograph is designed in) is centred on the canvas, and
one scale is chosen for the whole character set so that the union of all glyph outlines fits with a
one-pixel margin: relative sizes are kept and nothing is clipped. Glyphs are drawn 4x larger and
averaged down with a box filter, which anti-aliases the same way on every run.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ganji.errors import GanjiError

SUPERSAMPLE = 4
MARGIN_PX = 1  # final pixels kept free around the farthest-reaching outline

_FONT_ERRORS = (OSError, ValueError, AssertionError, KeyError, IndexError, struct.error)


@dataclass(frozen=True)
class FontInfo:
    """What rendering needs to know about a font, read once with fontTools."""

    path: Path
    name: str  # family name from the font's name table
    sha256: str
    units_per_em: int
    em_centre_y: float  # font units above the baseline of the em box's centre
    # How far the set's outlines reach from the em box's centre, in em units (0.5 = the em box).
    reach: float


def font_family(font) -> str:
    """The typographic family (name ID 16), else the family (ID 1), else the full name (ID 4)."""
    table = font["name"]
    for name_id in (16, 1, 4):
        name = table.getDebugName(name_id)
        if name:
            return str(name)
    return "unknown"


def _em_centre_y(font) -> float:
    """The em box's vertical centre above the baseline, in font units.

    CJK fonts set ascender - descender = units per em (IPAex: 1802 and -246 at 2048), so the em box
    is the span between them. Fonts whose hhea metrics include line gap use OS/2's typo metrics when
    those describe the em box; failing both, the em box is centred on the ascender/descender span.
    """
    upem = font["head"].unitsPerEm
    hhea = font["hhea"]
    candidates = [(hhea.ascent, hhea.descent)]
    if "OS/2" in font:
        os2 = font["OS/2"]
        candidates.insert(1, (os2.sTypoAscender, os2.sTypoDescender))
    for ascent, descent in candidates:
        if ascent - descent == upem:
            return (ascent + descent) / 2
    return (hhea.ascent + hhea.descent) / 2


def _truetype_bounds(font, names: Iterable[str]) -> Iterable[tuple[int, int, int, int]]:
    # Each glyf entry starts with its bounding box (int16 xMin, yMin, xMax, yMax after the contour
    # count): reading those 10 bytes is ~50x faster than letting fontTools decompile 10,000 glyphs.
    # FreeType places a TrueType outline so that its left edge sits at the hmtx left side bearing,
    # whatever the outline's own xMin says, so shift by the difference (zero in consistent fonts).
    raw = font.reader["glyf"]
    loca = font["loca"]
    hmtx = font["hmtx"]
    for name in names:
        gid = font.getGlyphID(name)
        start, end = loca[gid], loca[gid + 1]
        if end - start >= 10:  # an empty glyph (a space) has no data at all
            x0, y0, x1, y1 = struct.unpack(">4h", raw[start + 2 : start + 10])
            shift = hmtx[name][1] - x0
            yield x0 + shift, y0, x1 + shift, y1


def _outline_bounds(font, names: Iterable[str]) -> Iterable[tuple[float, float, float, float]]:
    from fontTools.pens.boundsPen import BoundsPen

    glyphs = font.getGlyphSet()
    for name in names:
        pen = BoundsPen(glyphs)
        glyphs[name].draw(pen)
        if pen.bounds is not None:
            yield pen.bounds


def inspect_font(path: Path, codepoints: Sequence[int]) -> FontInfo:
    """The font's em box and how far the given characters' outlines reach from its centre.

    Pass the whole character set (not a --limit prefix) so that the scale, and with it every image,
    is the same whatever the limit.
    """
    from fontTools.ttLib import TTFont, TTLibError

    try:
        font = TTFont(str(path), fontNumber=0, lazy=True)
        upem = int(font["head"].unitsPerEm)
        centre_y = _em_centre_y(font)
        cmap = font.getBestCmap() or {}
        names = [cmap[cp] for cp in codepoints if cp in cmap]
        bounds = _truetype_bounds(font, names) if "glyf" in font else _outline_bounds(font, names)
        reach = 0.5
        cx = upem / 2
        for x0, y0, x1, y1 in bounds:
            reach = max(reach, (cx - x0) / upem, (x1 - cx) / upem, (centre_y - y0) / upem, (y1 - centre_y) / upem)
        family = font_family(font)
    except (TTLibError, *_FONT_ERRORS) as exc:
        raise GanjiError(f"{path} is not a usable TTF/OTF/TTC font ({exc.__class__.__name__})") from None
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return FontInfo(Path(path), family, sha, upem, centre_y, reach)


class GlyphRenderer:
    """Draws single characters as `size` x `size` uint8 images (ink 255 on 0)."""

    def __init__(self, info: FontInfo, size: int) -> None:
        self.size = size
        self.canvas = size * SUPERSAMPLE
        # One scale for all: the farthest outline of the set stays MARGIN_PX final pixels inside the
        # edge, plus one supersampled pixel of slack for hinting and anti-aliasing spill. Rounding
        # down to whole pixels per em keeps that promise (FreeType takes integer sizes).
        usable = self.canvas / 2 - MARGIN_PX * SUPERSAMPLE - 1
        self.em = max(1, math.floor(usable / info.reach))
        try:
            self.font = ImageFont.truetype(str(info.path), size=self.em, index=0)
        except OSError as exc:
            raise GanjiError(f"{info.path} cannot be rendered ({exc})") from None
        scale = self.em / info.units_per_em
        # The em box's centre goes to the canvas centre; the pen starts at its left edge, on the baseline.
        half = self.canvas / 2
        self.origin = (half - self.em / 2, half + info.em_centre_y * scale)

    def render_large(self, codepoint: int) -> np.ndarray:
        """The supersampled rendering (canvas x canvas)."""
        img = Image.new("L", (self.canvas, self.canvas), 0)
        ImageDraw.Draw(img).text(self.origin, chr(codepoint), fill=255, font=self.font, anchor="ls")
        return np.asarray(img)

    def render(self, codepoint: int) -> np.ndarray:
        return downsample(self.render_large(codepoint), self.size)


def downsample(large: np.ndarray, size: int) -> np.ndarray:
    """Average SUPERSAMPLE x SUPERSAMPLE blocks (a box filter), rounding to nearest."""
    return np.asarray(Image.fromarray(large).resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def touches_edge(large: np.ndarray) -> bool:
    """Ink on the outermost row or column of the canvas: the glyph may have been clipped."""
    return bool(large[0].any() or large[-1].any() or large[:, 0].any() or large[:, -1].any())


@dataclass
class RenderResult:
    images: np.ndarray  # N x 1 x H x W uint8, ink bright
    codepoints: list[int]  # the ones kept, in order
    blank: list[int]  # skipped: the glyph drew nothing
    clipped: list[int]  # kept, but ink reached the canvas edge (never expected: the scale forbids it)


def render_all(
    renderer: GlyphRenderer, codepoints: Sequence[int], on_glyph: Callable[[], None] | None = None
) -> RenderResult:
    """Render every code point, skipping (and listing) those that draw nothing."""
    out = np.zeros((len(codepoints), 1, renderer.size, renderer.size), dtype=np.uint8)
    kept: list[int] = []
    blank: list[int] = []
    clipped: list[int] = []
    for cp in codepoints:
        large = renderer.render_large(cp)
        small = downsample(large, renderer.size)
        if not small.any():
            blank.append(cp)
        else:
            if touches_edge(large):
                clipped.append(cp)
            out[len(kept), 0] = small
            kept.append(cp)
        if on_glyph is not None:
            on_glyph()
    return RenderResult(out[: len(kept)], kept, blank, clipped)
