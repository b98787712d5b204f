"""`ganji bench trace`: which tracing settings keep glyphs as they were, and what each costs.

Real kanji of a prepared dataset (or any folder of glyph images) are traced with every combination
of settings, built into a font, rendered back through FreeType at their own size (ganji.font.render),
and compared with the images they came from: mean ink IoU (pixels >= half ink), mean absolute grey
difference, outline segments per glyph (the font's size and smoothness), and milliseconds per glyph.
TraceSettings' defaults were chosen from this table on the 32 px kanji set (its docstring says how).
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganji.font.build import FontNames, build_font
from ganji.font.render import ink_iou, render_glyphs
from ganji.font.settings import TraceSettings
from ganji.font.trace import trace_glyph


@dataclass(frozen=True)
class TraceRow:
    threshold: float
    upscale: int
    alphamax: float
    iou: float  # mean ink IoU, font render against source image
    grey_error: float  # mean |render - source| / 255
    segments: float  # outline segments per glyph
    ms_per_glyph: float  # tracing and building, per glyph
    glyphs: int


def bench_trace(images: np.ndarray, thresholds: Sequence[float], upscales: Sequence[int], alphamaxes: Sequence[float],
                on_row: Callable[[TraceRow], None] | None = None) -> list[TraceRow]:
    """One row per combination of settings, over N x 1 x S x S uint8 glyphs (ink bright)."""
    pixels = images.shape[-1]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ganji-trace-") as tmp:
        path = Path(tmp) / "bench.otf"
        for threshold, upscale, alphamax in itertools.product(thresholds, upscales, alphamaxes):
            settings = TraceSettings(threshold=threshold, upscale=upscale, alphamax=alphamax)
            settings.check()
            start = time.perf_counter()
            glyphs = [trace_glyph(img[0], settings) for img in images]
            kept = [i for i, g in enumerate(glyphs) if g]
            codepoints = build_font(path, [glyphs[i] for i in kept], pixels, FontNames("Ganji Trace Bench", "bench"))
            seconds = time.perf_counter() - start
            renders = render_glyphs(path, codepoints, pixels)
            source = images[kept]
            grey = np.abs(renders.astype(np.float32) - source.astype(np.float32)).mean() / 255.0
            row = TraceRow(threshold, upscale, alphamax, float(ink_iou(renders, source).mean()), float(grey),
                           float(np.mean([sum(len(c.segments) for c in glyphs[i]) for i in kept])), 1000 * seconds / len(images), len(kept))
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows
