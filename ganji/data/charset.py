"""Which kanji: JIS X 0213 (or JIS X 0208) ideographs that a font really has glyphs for.

JIS X 0213 is enumerated with Python's `euc_jis_2004` codec: every two-byte EUC sequence (plane 1)
and every three-byte sequence behind 0x8F (plane 2; the codec also decodes the JIS X 0212 rows
there), keeping single characters named "CJK UNIFIED IDEOGRAPH". That gives 13,027 code points, of
which IPAex Gothic covers 10,020, about the size of the original study's Kaggle set (10,314).
JIS X 0208 is rows 16-84 of `euc_jp` (6,355 kanji; row 1's 仝 counts as a symbol there).
"""

from __future__ import annotations

import functools
import struct
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from ganji.errors import GanjiError

CHARSETS = ("jis0213", "jis0208")
_EUC = range(0xA1, 0xFF)


def _is_ideograph(text: str) -> bool:
    return len(text) == 1 and unicodedata.name(text, "").startswith("CJK UNIFIED IDEOGRAPH")


@functools.cache
def kanji_codepoints(charset: str = "jis0213") -> tuple[int, ...]:
    """The charset's CJK unified ideographs, sorted by code point."""
    found: set[int] = set()
    if charset == "jis0213":
        prefixes, rows, codec = (b"", b"\x8f"), _EUC, "euc_jis_2004"
    elif charset == "jis0208":
        prefixes, rows, codec = (b"",), range(0xB0, 0xF5), "euc_jp"
    else:
        raise GanjiError(f"unknown charset {charset!r}: use {' or '.join(CHARSETS)}")
    for prefix in prefixes:
        for b1 in rows:
            for b2 in _EUC:
                try:
                    text = (prefix + bytes((b1, b2))).decode(codec)
                except UnicodeDecodeError:
                    continue
                if _is_ideograph(text):
                    found.add(ord(text))
    return tuple(sorted(found))


def font_codepoints(font_path: Path) -> set[int]:
    """Code points the font maps to a glyph (its cmap); a clear error if it is not a font."""
    from fontTools.ttLib import TTFont, TTLibError

    try:
        font = TTFont(str(font_path), fontNumber=0, lazy=True)
        cmap = font.getBestCmap()
    except (TTLibError, OSError, ValueError, AssertionError, KeyError, IndexError, struct.error) as exc:
        raise GanjiError(f"{font_path} is not a usable TTF/OTF/TTC font ({exc.__class__.__name__})") from None
    if not cmap:
        raise GanjiError(f"{font_path} has no character map: not a usable font")
    return set(cmap)


def covered(codepoints: Sequence[int], available: set[int]) -> list[int]:
    """The code points the font has glyphs for, in the charset's order."""
    return [cp for cp in codepoints if cp in available]
