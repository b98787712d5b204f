"""What a quiz is: cards from sources, and how a deck is composed.

The protocol is HYPE-∞'s (Zhou et al. 2019, "HYPE: A Benchmark for Human eYe Perceptual
Evaluation of Generative Models"): half of the cards are real, half generated, shown one at a time.
Here the real half comes from the runs' own dataset, each picture at most once; the generated half
is split evenly over the generators (models, or a folder of images), the remainder going to
generators drawn by the seed; and the order of the cards is a shuffle fixed by the seed.

Nothing here draws a picture (see `sources.py`) or writes a file (see `session.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ganji.quiz.cards import card_file, card_id

REAL = "real"
FAKE = "fake"
ANSWERS = (REAL, FAKE)  # what a reader may say of a card
MIN_CARDS = 2
MAX_CARDS = 1000  # card names have three digits; far more than one sitting (HYPE-∞ shows 100 per evaluator)

# Independent random streams from one seed, by purpose, so that each choice is fixed by the seed alone.
_SPLIT, _REAL_ROWS, _ORDER, _FOLDER = range(4)


def rng_for(seed: int, purpose: int) -> np.random.Generator:
    """The seeded random stream for one purpose of a deck (numpy's SeedSequence of [seed, purpose])."""
    return np.random.default_rng([seed, purpose])


@dataclass(frozen=True)
class Source:
    """Where a card came from: the dataset (`kind` real), or a generator (`kind` fake): `model` and
    its `run`, or `model` "images" and the folder's path as `run` (`ganji quiz --images DIR`)."""

    kind: str
    model: str | None = None
    run: str | None = None

    @property
    def real(self) -> bool:
        return self.kind == REAL

    @property
    def label(self) -> str:
        if self.real:
            return REAL
        return f"{self.model} (run {self.run})" if self.model != "images" else f"images ({self.run})"

    def to_json(self) -> dict[str, Any]:
        return {"kind": REAL} if self.real else {"kind": FAKE, "model": self.model, "run": self.run}

    @classmethod
    def from_json(cls, data: Any) -> Source:
        """A source as `to_json` wrote it; ValueError for anything else."""
        if not isinstance(data, dict) or data.get("kind") not in ANSWERS:
            raise ValueError(f"not a card source: {str(data)[:80]}")
        if data["kind"] == REAL:
            return cls(REAL)
        model, run = data.get("model"), data.get("run")
        if not (isinstance(model, str) and model and isinstance(run, str) and run):
            raise ValueError(f"a generated card's source needs a model and a run: {str(data)[:80]}")
        return cls(FAKE, model, run)


REAL_SOURCE = Source(REAL)


@dataclass(frozen=True)
class Card:
    """One card of a deck: its place, its source, and where its picture came from (`origin`: the
    dataset row, or the sample's number), kept for the record and never shown before it is answered."""

    index: int
    source: Source
    origin: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return card_id(self.index)

    @property
    def file(self) -> str:
        return card_file(self.index)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "file": self.file, "source": self.source.to_json(), "origin": self.origin}


@dataclass
class Drawn:
    """One picture drawn for a deck, before the deck is shuffled (C x H x W uint8, ink bright)."""

    source: Source
    image: np.ndarray
    origin: dict[str, Any] = field(default_factory=dict)


def check_deck_size(n: int, generators: int) -> None:
    """An even number of cards, within bounds, with at least one generated card per generator."""
    from ganji.errors import GanjiError

    if not (MIN_CARDS <= n <= MAX_CARDS) or n % 2:
        raise GanjiError(f"--n must be an even number between {MIN_CARDS} and {MAX_CARDS}: half real, half generated (got {n})")
    if generators > n // 2:
        raise GanjiError(f"--n {n} has {n // 2} generated cards for {generators} generators: use --n {2 * generators} or more")


def split_evenly(total: int, sources: Sequence[Source], seed: int) -> dict[Source, int]:
    """`total` generated cards over `sources` as evenly as possible (counts differ by at most one);
    which sources get one more is drawn by the seed, not by their order."""
    base, extra = divmod(total, len(sources))
    lucky = set(rng_for(seed, _SPLIT).choice(len(sources), size=extra, replace=False).tolist())
    return {source: base + (i in lucky) for i, source in enumerate(sources)}


def choose_rows(available: int, k: int, seed: int, purpose: int = _REAL_ROWS) -> list[int]:
    """`k` distinct rows of `available` (never the same picture twice in one quiz), drawn by the seed."""
    if k > available:
        raise ValueError(f"cannot draw {k} distinct rows of {available}")
    return sorted(rng_for(seed, purpose).choice(available, size=k, replace=False).tolist())


def choose_folder_rows(available: int, k: int, seed: int) -> list[int]:
    return choose_rows(available, k, seed, _FOLDER)


def shuffle(drawn: Sequence[Drawn], seed: int) -> list[tuple[Card, np.ndarray]]:
    """The deck in its seeded order: each picture becomes the card of its new place."""
    order = rng_for(seed, _ORDER).permutation(len(drawn)).tolist()
    return [(Card(i, drawn[j].source, drawn[j].origin), drawn[j].image) for i, j in enumerate(order)]
