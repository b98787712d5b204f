"""Which samples deserve a place in the font: new (not a copy of a training kanji) and sane (ink
and strokes like real kanji have).

The sanity check is deliberately simple, three numbers any reader can check on a picture:
- ink: the share of the square covered by ink (pixels >= half ink);
- pieces: how many separate strokes or stroke groups (8-connected ink regions) the glyph has;
- specks: pieces of at most SPECK_PIXELS pixels, the salt-and-pepper a half-trained model leaves.
A sample passes when each lies within what real kanji show (their 1st to 99th percentile, measured on
the dataset); among those that pass, the ones nearest the real medians (in units of the real spread)
come first. Novelty uses the metrics' own rule (ganji.metrics.manifold.copy_threshold): a sample
nearer a training kanji, in KanjiNet features, than 99% of real kanji are to their nearest neighbour
is a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ganji.font.render import INK

SPECK_PIXELS = 2  # at 32 px a real dot (丶) is 3+ pixels
LOW_Q, HIGH_Q = 0.01, 0.99


def ink_pieces(images: np.ndarray) -> list[np.ndarray]:
    """For each N x 1 x H x W uint8 image: the pixel counts of its 8-connected ink regions.

    Labels spread by 3x3 max-pooling until nothing changes: every ink pixel ends with the largest
    index of its region, batched over all images at once."""
    ink = torch.from_numpy(np.asarray(images)[:, :1] >= INK)
    n, _, h, w = ink.shape
    index = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, 1, h, w).expand(n, 1, h, w)
    labels = torch.where(ink, index, torch.zeros(()))
    while True:
        spread = torch.where(ink, F.max_pool2d(labels, 3, stride=1, padding=1), labels)
        if torch.equal(spread, labels):
            break
        labels = spread
    flat = labels.view(n, -1).long().numpy()
    return [np.bincount(row[row > 0])[np.unique(row[row > 0])] if (row > 0).any() else np.zeros(0, np.int64) for row in flat]


@dataclass(frozen=True)
class GlyphStats:
    ink: np.ndarray  # share of ink pixels, per image
    pieces: np.ndarray  # separate ink regions
    specks: np.ndarray  # regions of at most SPECK_PIXELS pixels

    @classmethod
    def of(cls, images: np.ndarray) -> GlyphStats:
        images = np.asarray(images)
        ink = (images[:, 0] >= INK).reshape(len(images), -1).mean(1)
        sizes = ink_pieces(images)
        return cls(ink, np.array([len(s) for s in sizes]), np.array([int((s <= SPECK_PIXELS).sum()) for s in sizes]))

    def row(self, i: int) -> dict[str, float]:
        return {"ink": round(float(self.ink[i]), 4), "pieces": int(self.pieces[i]), "specks": int(self.specks[i])}


@dataclass(frozen=True)
class SanityRange:
    """What real kanji show: the 1st-99th percentile of each number, and its median and spread."""

    ink: tuple[float, float]
    pieces: tuple[float, float]
    specks_max: float
    median: tuple[float, float]
    spread: tuple[float, float]  # interquartile ranges (ink, pieces)

    @classmethod
    def of(cls, real: GlyphStats) -> SanityRange:
        def q(x: np.ndarray, p: float) -> float:
            return float(np.quantile(x, p))

        return cls(
            (q(real.ink, LOW_Q), q(real.ink, HIGH_Q)), (q(real.pieces, LOW_Q), q(real.pieces, HIGH_Q)), q(real.specks, HIGH_Q),
            (q(real.ink, 0.5), q(real.pieces, 0.5)),
            (max(q(real.ink, 0.75) - q(real.ink, 0.25), 1e-3), max(q(real.pieces, 0.75) - q(real.pieces, 0.25), 1.0)),
        )

    def passes(self, s: GlyphStats) -> np.ndarray:
        return ((s.ink >= self.ink[0]) & (s.ink <= self.ink[1]) & (s.pieces >= self.pieces[0]) & (s.pieces <= self.pieces[1])
                & (s.specks <= self.specks_max))

    def oddness(self, s: GlyphStats) -> np.ndarray:
        """Distance from the real medians in units of the real spread (0 = a typical kanji)."""
        return np.abs(s.ink - self.median[0]) / self.spread[0] + np.abs(s.pieces - self.median[1]) / self.spread[1]

    def to_json(self) -> dict[str, object]:
        return {"ink": [round(v, 4) for v in self.ink], "pieces": list(self.pieces), "specks_max": self.specks_max,
                "percentiles": [LOW_Q, HIGH_Q], "speck_pixels": SPECK_PIXELS}


def choose(n: int, candidates: GlyphStats, real: SanityRange, copies: np.ndarray, filtered: bool) -> list[int]:
    """Indices of the glyphs to keep, in generation order: every inked one without filtering; with it,
    the `n` least odd of those that are new and pass the sanity range."""
    inked = candidates.ink > 0
    if not filtered:
        return [int(i) for i in np.flatnonzero(inked)[:n]]
    ok = np.flatnonzero(inked & real.passes(candidates) & ~copies)
    best = ok[np.argsort(real.oddness(candidates)[ok], kind="stable")][:n]
    return sorted(int(i) for i in best)
