"""Scores of a quiz: per generator, the fool rate with a 95% bootstrap interval; the reader's accuracy on real cards.

HYPE-∞ (Zhou et al. 2019) scores a generator by the share of its images that people call real: 50%
means they cannot tell them from real ones (they are guessing), 0% that every one is caught. The
uncertainty is a percentile bootstrap (Efron & Tibshirani 1993): resample the answers with
replacement, take the rate of each resample, and report the 2.5th and 97.5th percentiles. For
answers that are each "fooled" or not, the rate of a resample of k answers is exactly Binomial(k, p̂)/k,
so the resamples are drawn that way: the same distribution as resampling the answer list, in
constant memory however many answers are pooled. The draws are seeded: the same answers always give
the same interval.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganji.quiz.deck import Source
from ganji.quiz.session import Answer, load_sessions

RESAMPLES = 10_000
LEVEL = 0.95
SEED = 0


def bootstrap_interval(hits: int, total: int, *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """The `level` percentile bootstrap interval of the rate hits / total (see the module's docstring)."""
    if total <= 0:
        return (float("nan"), float("nan"))
    rates = np.random.default_rng(seed).binomial(total, hits / total, size=resamples) / total
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(rates, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Rate:
    """`hits` of `total` answers, with its bootstrap interval."""

    hits: int
    total: int
    low: float
    high: float

    @classmethod
    def of(cls, hits: int, total: int) -> Rate:
        return cls(hits, total, *bootstrap_interval(hits, total))

    @property
    def value(self) -> float:
        return self.hits / self.total if self.total else float("nan")

    def text(self) -> str:
        """"38% (24)": the rate and how many answers it rests on (the compare table's "fooled" cell)."""
        return f"{100 * self.value:.0f}% ({self.total})"

    def interval_text(self) -> str:
        return f"{100 * self.low:.0f}–{100 * self.high:.0f}%"

    def to_json(self) -> dict[str, Any]:
        return {"hits": self.hits, "answers": self.total, "rate": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class GeneratorScore:
    """A generator's fool rate: the share of its cards called real."""

    source: Source
    fooled: Rate

    def to_json(self) -> dict[str, Any]:
        return {"label": self.source.label, **self.source.to_json(), "fooled": self.fooled.to_json()}


@dataclass(frozen=True)
class Scores:
    """What a set of answers says: each generator's fool rate, and the reader's accuracy on real cards
    (the share called real: a reader who calls everything fake fools no model and gets 0% here)."""

    generators: list[GeneratorScore]
    real: Rate
    answers: int
    sessions: int = 1
    readers: tuple[str, ...] = ()
    mean_ms: float | None = None

    @property
    def accuracy(self) -> Rate:
        """The share of all answers that were right."""
        right = self.real.hits + sum(g.fooled.total - g.fooled.hits for g in self.generators)
        return Rate.of(right, self.answers)

    def to_json(self) -> dict[str, Any]:
        return {"answers": self.answers, "sessions": self.sessions, "readers": list(self.readers), "mean_ms": self.mean_ms,
                "real_accuracy": self.real.to_json(), "accuracy": self.accuracy.to_json(),
                "generators": [g.to_json() for g in self.generators]}


def score(answers: Iterable[Answer], order: Iterable[Source] = (), sessions: int = 1) -> Scores:
    """Scores of the answers; generators listed in `order` first (a deck's), then as they appear."""
    answers = list(answers)
    seen: dict[Source, list[int]] = {s: [0, 0] for s in order if not s.real}
    real = [0, 0]
    for a in answers:
        tally = real if a.source.real else seen.setdefault(a.source, [0, 0])
        tally[0] += a.called_real
        tally[1] += 1
    readers = tuple(sorted({a.reader for a in answers if a.reader}))
    mean_ms = float(np.mean([a.ms for a in answers])) if answers else None
    return Scores(generators=[GeneratorScore(s, Rate.of(*t)) for s, t in seen.items()], real=Rate.of(*real),
                  answers=len(answers), sessions=sessions, readers=readers, mean_ms=mean_ms)


def pooled(home: Path, reader: str | None = None) -> tuple[Scores, list[str]]:
    """Every session's answers pooled (only `reader`'s when given), and notes on damaged sessions."""
    sessions, notes = load_sessions(home)
    if reader is not None:
        sessions = [s for s in sessions if s.deck.reader == reader]
    answers = [a for s in sessions for a in s.answers]
    return score(answers, sessions=len([s for s in sessions if s.answers])), notes


def run_fool_rates(home: Path) -> tuple[dict[tuple[str, str], Rate], list[str]]:
    """The pooled fool rate of every (model, run) that quiz answers exist for (`ganji compare`'s "fooled")."""
    scores, notes = pooled(home)
    rates = {(str(g.source.model), str(g.source.run)): g.fooled for g in scores.generators if g.fooled.total}
    return rates, notes
