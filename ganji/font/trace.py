"""Raster glyph -> outlines, by potrace's algorithm (Selinger 2003, "Potrace: a polygon-based tracing
algorithm"): the ink's boundary paths, the optimal polygon through them, then corners kept or smoothed
into cubic Béziers (`alphamax`) and runs of curves joined (`opttolerance`).

A 32 px sample traced as it is gives blocky outlines: its grey edge pixels carry where the stroke
edge really lies. So the glyph is first upscaled (bicubic, `upscale` x) and thresholded there, which
puts the outline between the pixels. `ganji bench trace` measures the settings; the defaults come from
it (see ganji.font.settings.TraceSettings).

Coordinates are the source image's: x to the right, y down, one unit per source pixel, (0, 0) the
image's top-left corner. Ink is bright (255 on 0), as in every ganji dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ganji.errors import GanjiError
from ganji.font.settings import TraceSettings

Point = tuple[float, float]
# A segment ends at its last point: one point is a straight line, three a cubic Bézier (c1, c2, end).
Segment = tuple[Point, ...]


@dataclass(frozen=True)
class Contour:
    """One closed outline: from `start` through each segment, the last ending at `start` again."""

    start: Point
    segments: tuple[Segment, ...]

    def reversed(self) -> Contour:
        """The same outline walked the other way (a cubic's control points swap)."""
        points = [self.start] + [seg[-1] for seg in self.segments]  # points[i] starts segment i
        segments = []
        for i in range(len(self.segments) - 1, -1, -1):
            seg, begin = self.segments[i], points[i]
            segments.append((begin,) if len(seg) == 1 else (seg[1], seg[0], begin))
        return Contour(self.segments[-1][-1], tuple(segments))

    def map(self, f) -> Contour:  # noqa: ANN001 - any point -> point function
        return Contour(f(self.start), tuple(tuple(f(p) for p in seg) for seg in self.segments))


def require_potrace():  # noqa: ANN201 - the optional module
    """potracer's module, or a one-line error saying how to install it."""
    try:
        import potrace
    except ImportError:
        raise GanjiError('tracing glyphs needs potracer (GPL-2.0+, kept optional): pip install "ganji[font]"') from None
    if not hasattr(potrace, "Bitmap"):
        raise GanjiError("the installed `potrace` module is not potracer's: pip install \"ganji[font]\"")
    return potrace


def ink_mask(image: np.ndarray, settings: TraceSettings) -> np.ndarray:
    """The upscaled bitmap that gets traced: True where there is ink."""
    grey = np.asarray(image, dtype=np.uint8)
    if grey.ndim != 2:
        raise ValueError(f"a glyph is one H x W image (got shape {grey.shape})")
    if settings.upscale > 1:
        h, w = grey.shape
        grey = np.asarray(Image.fromarray(grey).resize((w * settings.upscale, h * settings.upscale), Image.Resampling.BICUBIC))
    return grey >= settings.threshold * 255.0


def trace_glyph(image: np.ndarray, settings: TraceSettings = TraceSettings()) -> list[Contour]:
    """Outlines of the ink of one H x W uint8 image (ink bright), in source-pixel coordinates.

    Outer outlines and holes wind opposite ways (potrace orients them so), which is what the
    non-zero fill rule of fonts needs; `orient` picks which way is outer."""
    potrace = require_potrace()
    mask = ink_mask(image, settings)
    if not mask.any():
        return []
    # potracer traces the False pixels of the array it is given (it inverts first).
    turdsize = int(settings.speck * settings.upscale**2)  # potrace counts upscaled pixels
    paths = potrace.Bitmap(~mask).trace(turdsize=turdsize, alphamax=settings.alphamax, opttolerance=settings.opttolerance)
    scale = 1.0 / settings.upscale
    contours = []
    for curve in paths:
        segments: list[Segment] = []
        for seg in curve.segments:
            if seg.is_corner:  # a corner: straight to the vertex, then straight on
                segments += [((seg.c.x, seg.c.y),), ((seg.end_point.x, seg.end_point.y),)]
            else:
                segments.append(((seg.c1.x, seg.c1.y), (seg.c2.x, seg.c2.y), (seg.end_point.x, seg.end_point.y)))
        if segments:
            start = segments[-1][-1]
            contours.append(Contour(start, tuple(segments)).map(lambda p: (p[0] * scale, p[1] * scale)))
    return contours


def flatten(contour: Contour, steps: int = 16) -> np.ndarray:
    """The outline as a closed polygon (K x 2): each cubic sampled at `steps` points."""
    points = [contour.start]
    t = np.linspace(0.0, 1.0, steps + 1)[1:, None]
    for seg in contour.segments:
        if len(seg) == 1:
            points.append(seg[0])
            continue
        p0, (p1, p2, p3) = np.array(points[-1]), (np.array(p) for p in seg)
        curve = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
        points.extend(map(tuple, curve))
    return np.array(points, dtype=np.float64)


def signed_area(contour: Contour) -> float:
    """Shoelace area of the flattened outline; its sign says which way it winds."""
    p = flatten(contour)
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def ink_area(contours: list[Contour]) -> float:
    """Area covered by ink (source pixels squared): outer outlines minus their holes, since the two
    wind opposite ways."""
    return abs(sum(signed_area(c) for c in contours))


def orient(contours: list[Contour], outer_positive: bool) -> list[Contour]:
    """All outlines reversed if needed so that outer ones have a positive (or negative) signed area.

    The largest outline is always an outer one (a hole lies inside the outline around it), and
    potrace winds every outer outline alike, so its sign decides for all."""
    if not contours:
        return []
    areas = [signed_area(c) for c in contours]
    largest = max(range(len(areas)), key=lambda i: abs(areas[i]))
    if (areas[largest] > 0) == outer_positive:
        return list(contours)
    return [c.reversed() for c in contours]
