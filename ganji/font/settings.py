"""How `ganji font` traces: the settings, apart from the tracing itself so that the command line
can show their defaults without importing NumPy or Pillow."""

from __future__ import annotations

from dataclasses import dataclass

from ganji.errors import GanjiError


@dataclass(frozen=True)
class TraceSettings:
    """How a raster glyph becomes outlines. Defaults from `ganji bench trace` on 100 real 32 px kanji
    (font renders against their source images), at upscale 8 and alphamax 1: threshold 0.5 gives ink
    IoU 0.936, 0.4 gives 0.927 and 0.6 0.863; upscaling 8x beats 4x (0.924) and 1x (0.867); alphamax
    0.5 gains 0.002 over potrace's 1.0 with 85% more segments (corners where strokes curve), so 1.0."""

    threshold: float = 0.5  # ink where the upscaled grey level >= threshold (0..1 of full ink)
    upscale: int = 8  # bicubic upscaling before thresholding: outlines between the source pixels
    alphamax: float = 1.0  # potrace's corner threshold: 0 keeps every corner, 4/3 smooths them all
    speck: float = 1.0  # ink specks of at most this area (source pixels) are dropped
    opttolerance: float = 0.2  # how far joined curves may stray, in upscaled pixels

    def check(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise GanjiError(f"--threshold must be between 0 and 1 (got {self.threshold:g})")
        if not 1 <= self.upscale <= 16:
            raise GanjiError(f"--upscale must be 1 to 16 (got {self.upscale})")
        if not 0.0 <= self.alphamax <= 4.0 / 3.0:
            raise GanjiError(f"--alphamax must be between 0 and 4/3 (got {self.alphamax:g})")
