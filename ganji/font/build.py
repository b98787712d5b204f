"""Outlines -> an installable OpenType font (fontTools' FontBuilder), laid out like a CJK font.

The em box is the ideographic one of CJK fonts (Adobe-Japan1, Noto CJK): 1,000 units wide and high,
from 120 units below the Latin baseline to 880 above it, every glyph full width (advance 1,000).
A sample's whole square maps onto that box, so rendering a glyph with the em set to the sample's size
and the baseline 0.88 em below the top gives back the sample's own layout (ganji.font.render does).

Glyphs sit in the Unicode Private Use Area from U+E000: code points no real character uses. `.otf`
gets CFF outlines (cubic, as traced); `.ttf` gets TrueType outlines (quadratic: each cubic split by
cu2qu to within one unit).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ganji.errors import GanjiError
from ganji.font.trace import Contour, Point, orient

UNITS_PER_EM = 1000
ASCENT = 880  # top of the ideographic em box above the baseline
DESCENT = -120  # its bottom
FIRST_CODEPOINT = 0xE000  # the Private Use Area of the Basic Multilingual Plane...
MAX_GLYPHS = 0xF8FF - 0xE000 + 1  # ...has room for 6,400 glyphs
FORMATS = {".otf": "OpenType (CFF outlines)", ".ttf": "TrueType outlines"}
_PUA_BIT = 60  # OS/2 ulUnicodeRange bit: Private Use Area


@dataclass(frozen=True)
class FontNames:
    """What the name table says: the family users pick in menus, and where the glyphs came from."""

    family: str
    description: str  # e.g. "flow run quick (step 5000), seed 0"
    version: str = "1.000"

    @property
    def ps_name(self) -> str:
        """PostScript name: printable ASCII without spaces and []{}()<>/%, at most 63 characters."""
        name = re.sub(r"[^A-Za-z0-9-]", "", self.family.replace(" ", "-")) or "GanjiFake"
        return f"{name}-Regular"[:63]

    def check(self) -> None:
        if not self.family.strip():
            raise GanjiError("--name must not be empty")
        if len(self.family) > 63:
            raise GanjiError(f"--name must be at most 63 characters (got {len(self.family)})")


def font_format(path: Path) -> str:
    """'.otf' or '.ttf' from the file name; a one-line error for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise GanjiError(f"{path}: name the font .otf ({FORMATS['.otf']}) or .ttf ({FORMATS['.ttf']})")
    return suffix


def glyph_name(codepoint: int) -> str:
    return f"uni{codepoint:04X}"


def em_transform(pixels: int) -> Callable[[Point], Point]:
    """Source-pixel coordinates (y down) of a `pixels`-square sample -> font units (y up)."""
    scale = UNITS_PER_EM / pixels
    return lambda p: (p[0] * scale, ASCENT - p[1] * scale)


def draw(contours: Sequence[Contour], pen) -> None:  # noqa: ANN001 - any fontTools segment pen
    for c in contours:
        pen.moveTo(c.start)
        segments = list(c.segments)
        if len(segments[-1]) == 1 and segments[-1][0] == c.start and len(segments) > 1:
            segments.pop()  # a closing straight line is implied by closePath
        for seg in segments:
            if len(seg) == 1:
                pen.lineTo(seg[0])
            else:
                pen.curveTo(*seg)
        pen.closePath()


def _notdef(pen) -> None:  # noqa: ANN001
    """The missing-glyph box: a frame inside the em box."""
    outer = [(100, -40), (900, -40), (900, 800), (100, 800)]
    inner = [(160, 20), (160, 740), (840, 740), (840, 20)]
    for ring in (outer, inner):
        pen.moveTo(ring[0])
        for p in ring[1:]:
            pen.lineTo(p)
        pen.closePath()


def build_font(path: Path, glyphs: Sequence[Sequence[Contour]], pixels: int, names: FontNames, truetype: bool = False) -> list[int]:
    """Write a font whose glyph i (outlines in source pixels of a `pixels` square) is at U+E000 + i;
    returns the code points. CFF outlines, or TrueType ones with `truetype`; written to `path` as
    given (callers make it atomic, so the name may be a temporary one)."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.boundsPen import BoundsPen
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.t2CharStringPen import T2CharStringPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    if not 0 < len(glyphs) <= MAX_GLYPHS:
        raise GanjiError(f"a font holds 1 to {MAX_GLYPHS:,} glyphs here (got {len(glyphs)})")
    to_em = em_transform(pixels)
    codepoints = [FIRST_CODEPOINT + i for i in range(len(glyphs))]
    # CFF wants outer outlines counter-clockwise (positive area with y up); TrueType clockwise.
    outlines = {glyph_name(cp): orient([c.map(to_em) for c in g], outer_positive=not truetype) for cp, g in zip(codepoints, glyphs)}
    order = [".notdef", "space", "ideographicspace", *outlines]
    cmap = {0x20: "space", 0x3000: "ideographicspace", **{cp: glyph_name(cp) for cp in codepoints}}
    widths = {".notdef": UNITS_PER_EM, "space": UNITS_PER_EM // 4, "ideographicspace": UNITS_PER_EM, **dict.fromkeys(outlines, UNITS_PER_EM)}

    def paint(name: str, pen) -> None:  # noqa: ANN001
        if name == ".notdef":
            _notdef(pen)
        elif name in outlines:
            draw(outlines[name], pen)

    fb = FontBuilder(UNITS_PER_EM, isTTF=truetype)
    fb.setupGlyphOrder(order)
    fb.setupCharacterMap(cmap)
    bounds: dict[str, tuple[float, float, float, float] | None] = {}
    for name in order:
        pen = BoundsPen(None)
        paint(name, pen)
        bounds[name] = pen.bounds
    if truetype:
        tt = {}
        for name in order:
            pen = TTGlyphPen(None)
            paint(name, Cu2QuPen(pen, max_err=1.0, reverse_direction=False))
            tt[name] = pen.glyph()
        fb.setupGlyf(tt)
    else:
        charstrings = {}
        for name in order:
            pen = T2CharStringPen(widths[name], None)
            paint(name, pen)
            charstrings[name] = pen.getCharString()
        # The CFF's own names are Latin-1 only; the name table above carries the family in full.
        latin = names.family.encode("latin-1", "ignore").decode("latin-1").strip() or names.ps_name
        fb.setupCFF(names.ps_name, {"FullName": f"{latin} Regular", "FamilyName": latin, "Weight": "Regular",
                                    "version": names.version}, charstrings, {})
    fb.setupHorizontalMetrics({n: (widths[n], round(bounds[n][0]) if bounds[n] else 0) for n in order})
    fb.setupHorizontalHeader(ascent=ASCENT, descent=DESCENT, lineGap=0)
    # Vertical writing (tategaki): full-height advances, the em box's top as the glyphs' top.
    fb.setupVerticalHeader(ascent=UNITS_PER_EM // 2, descent=-UNITS_PER_EM // 2, lineGap=0)
    fb.setupVerticalMetrics({n: (UNITS_PER_EM, ASCENT - round(bounds[n][3]) if bounds[n] else 0) for n in order})
    fb.setupNameTable({
        "familyName": names.family,
        "styleName": "Regular",
        "uniqueFontIdentifier": f"ganji: {names.family}; {names.description}",
        "fullName": f"{names.family} Regular",
        "psName": names.ps_name,
        "version": f"Version {names.version}",
        "manufacturer": "ganji",
        "description": f"Fake kanji sampled by ganji: {names.description}. Not real characters.",
    })
    fb.setupOS2(
        sTypoAscender=ASCENT, sTypoDescender=DESCENT, sTypoLineGap=0, usWinAscent=ASCENT, usWinDescent=-DESCENT,
        achVendID="GNJI", fsType=0,  # installable: no embedding restrictions
        ulUnicodeRange2=1 << (_PUA_BIT - 32), fsSelection=0x40 | 0x80,  # REGULAR, USE_TYPO_METRICS
        sxHeight=0, sCapHeight=0, usDefaultChar=0, usBreakChar=0x20, version=4,
    )
    fb.setupPost(isFixedPitch=0)
    fb.save(str(path))
    return codepoints


def check_font(path: Path, codepoints: Sequence[int]) -> list[str]:
    """What is wrong with a built font, if anything: it reopens, every code point maps to its own
    glyph, whose outline lies inside the em box, and the vertical metrics (OS/2, hhea, head) agree
    and hold every glyph."""
    from fontTools.ttLib import TTFont

    problems: list[str] = []
    try:
        font = TTFont(str(path))
        cmap = font.getBestCmap() or {}
        glyph_set = font.getGlyphSet()
        head, hhea, os2, hmtx = font["head"], font["hhea"], font["OS/2"], font["hmtx"]
    except Exception as exc:  # noqa: BLE001 - any parse failure is the finding
        return [f"fontTools cannot reopen it: {exc}"]
    from fontTools.pens.boundsPen import BoundsPen

    if head.unitsPerEm != UNITS_PER_EM:
        problems.append(f"unitsPerEm is {head.unitsPerEm}, not {UNITS_PER_EM}")
    y_min, y_max = 0.0, 0.0
    for cp in codepoints:
        name = cmap.get(cp)
        if name != glyph_name(cp):
            problems.append(f"U+{cp:04X} maps to {name!r}, not {glyph_name(cp)!r}")
            continue
        pen = BoundsPen(glyph_set)
        glyph_set[name].draw(pen)
        if pen.bounds is None:
            problems.append(f"{name} has no outline")
            continue
        x0, y0, x1, y1 = pen.bounds
        y_min, y_max = min(y_min, y0), max(y_max, y1)
        if x0 < -1 or x1 > UNITS_PER_EM + 1 or y0 < DESCENT - 1 or y1 > ASCENT + 1:
            problems.append(f"{name} reaches outside the em box ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f})")
        if hmtx[name][0] != UNITS_PER_EM:
            problems.append(f"{name} advances {hmtx[name][0]}, not the full width {UNITS_PER_EM}")
    extra = sorted(set(cmap) - set(codepoints) - {0x20, 0x3000})
    if extra:
        problems.append(f"unexpected code points: {', '.join(f'U+{c:04X}' for c in extra[:5])}")
    if (hhea.ascent, hhea.descent) != (os2.sTypoAscender, os2.sTypoDescender):
        problems.append(f"hhea ascent/descent {hhea.ascent}/{hhea.descent} differ from OS/2 typo {os2.sTypoAscender}/{os2.sTypoDescender}")
    if os2.sTypoAscender - os2.sTypoDescender != UNITS_PER_EM:
        problems.append("OS/2 typo ascender - descender is not one em (the ideographic em box)")
    if os2.usWinAscent < y_max or -os2.usWinDescent > y_min:
        problems.append(f"glyphs reach {y_min:.0f}..{y_max:.0f}, beyond the win ascent/descent {os2.usWinAscent}/{os2.usWinDescent} (clipped on Windows)")
    if head.yMax < y_max - 1 or head.yMin > y_min + 1:
        problems.append(f"head's bounding box {head.yMin}..{head.yMax} does not hold the glyphs ({y_min:.0f}..{y_max:.0f})")
    return problems
