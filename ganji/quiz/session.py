"""A quiz on disk: `HOME/quiz/SESSION/` with `deck.json`, `cards/card-NNN.png` and `answers.jsonl`.

Nothing is lost (HYPE-∞, Zhou et al. 2019, shows cards without a time limit, so a sitting may be
long and interrupted): the deck (cards, their sources, the seed) is saved when the session is
created, before the first card is shown, and every answer is saved the moment it is given, before
the reader sees the next card. A Ctrl-C, a closed tab or a killed process loses at most the card on
screen; `ganji quiz --resume` continues at the first unanswered card.

`answers.jsonl` is rewritten whole through `write_atomic` (temporary file, fsync, rename) at each
answer rather than appended to: a reader never meets a torn last line, even after a power cut in
the middle of a write (an append can leave half a line on disk), and with at most 1,000 short lines
the rewrite costs a fraction of the fsync that either way needs.

`deck.json` is written last when a session is created: a folder without one is an interrupted
creation, ignored. While a quiz runs, it holds the session's OS lock (`.lock`), so that two
processes never answer one session.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ganji.atomic import ExclusiveLock, file_kind, write_bytes_atomic, write_json_atomic, write_text_atomic
from ganji.errors import GanjiError
from ganji.quiz.cards import card_id, encode_card
from ganji.quiz.deck import ANSWERS, MAX_CARDS, REAL, Card, Source

QUIZ_DIR = "quiz"
DECK_FILE = "deck.json"
ANSWERS_FILE = "answers.jsonl"
CARDS_DIR = "cards"
LOCK_FILE = ".lock"
FORMAT = 1
MAX_MS = 86_400_000  # a response time over a day is not one
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # session and reader names, as run names


def quiz_dir(home: Path) -> Path:
    return Path(home) / QUIZ_DIR


def check_reader(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise GanjiError(f"invalid reader name {name!r}: use letters, digits, '.', '_' or '-' (up to 100), starting with a letter or digit")
    return name


class AnswerRefused(ValueError):
    """A bad or repeated answer: refused, nothing written (the server's 400)."""


@dataclass(frozen=True)
class Answer:
    """One line of answers.jsonl: what the reader said of a card, and how long they took."""

    card: int
    source: Source
    answer: str
    ms: int
    time: str
    reader: str | None = None

    @property
    def id(self) -> str:
        return card_id(self.card)

    @property
    def called_real(self) -> bool:
        return self.answer == REAL

    @property
    def correct(self) -> bool:
        return self.called_real == self.source.real

    def to_json(self) -> dict[str, Any]:
        return {"card": self.card, "id": self.id, "source": self.source.to_json(), "answer": self.answer, "ms": self.ms,
                "time": self.time, "reader": self.reader}


@dataclass(frozen=True)
class Deck:
    """A session's deck.json: its cards in order, their sources, the seed and how it was drawn."""

    seed: int
    dataset: str
    size: int
    created: float
    reader: str | None
    cards: tuple[Card, ...]
    generators: tuple[dict[str, Any], ...] = ()

    @property
    def sources(self) -> list[Source]:
        """The generators' sources, in the deck's own order of generators."""
        return [Source.from_json(g) for g in self.generators]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "created": self.created, "seed": self.seed, "n": len(self.cards), "dataset": self.dataset,
                "size": self.size, "reader": self.reader, "generators": list(self.generators),
                "cards": [c.to_json() for c in self.cards]}

    @classmethod
    def from_json(cls, data: Any) -> Deck:
        """ValueError (or TypeError/KeyError) for anything `to_json` would not have written."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a quiz deck of a known format")
        raw = data["cards"]
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_CARDS:
            raise ValueError("no list of cards")
        cards = []
        for i, c in enumerate(raw):
            if not isinstance(c, dict) or c.get("index") != i or c.get("id") != card_id(i):
                raise ValueError(f"card {i} is out of place")
            origin = c.get("origin", {})
            cards.append(Card(i, Source.from_json(c.get("source")), origin if isinstance(origin, dict) else {}))
        reader = data.get("reader")
        generators = data.get("generators", [])
        if not isinstance(generators, list) or not all(isinstance(g, dict) for g in generators):
            raise ValueError("generators is not a list of objects")
        for g in generators:
            Source.from_json(g)
        seed, size, created = data["seed"], data["size"], data["created"]
        if type(seed) is not int or type(size) is not int or not isinstance(created, (int, float)) or not math.isfinite(created):
            raise ValueError("seed, size or created is not a number")
        if reader is not None and (not isinstance(reader, str) or not _NAME.fullmatch(reader)):
            raise ValueError("reader is not a name")
        return cls(seed=seed, dataset=str(data["dataset"]), size=size, created=float(created), reader=reader,
                   cards=tuple(cards), generators=tuple(generators))


class Session:
    """A quiz session folder, its deck and the answers given so far. `record` is safe to call from
    several threads (the server's): one answer is checked and written at a time."""

    def __init__(self, path: Path, deck: Deck, answers: list[Answer], lines: list[str]) -> None:
        self.path = Path(path)
        self.deck = deck
        self.answers = answers
        self._lines = lines  # answers.jsonl as it is on disk, one line per answer
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def answers_path(self) -> Path:
        return self.path / ANSWERS_FILE

    @property
    def total(self) -> int:
        return len(self.deck.cards)

    @property
    def next_card(self) -> int | None:
        """The card to show: the first unanswered one (answers come in deck order), None when finished."""
        return len(self.answers) if len(self.answers) < self.total else None

    @property
    def finished(self) -> bool:
        return self.next_card is None

    def card_path(self, index: int) -> Path:
        return self.path / CARDS_DIR / self.deck.cards[index].file

    def card_png(self, index: int) -> bytes:
        """The PNG of the deck's `index`-th card: only ever a file the deck names."""
        return self.card_path(index).read_bytes()

    def record(self, card: Any, answer: Any, ms: Any) -> Answer:
        """Check an answer to the card on screen and save it before returning (AnswerRefused: nothing
        is written). Answers come in deck order: the card must be the next unanswered one."""
        with self._lock:
            if type(card) is not int or not 0 <= card < self.total:
                raise AnswerRefused(f"unknown card {card!r}: the deck has cards 0 to {self.total - 1}")
            if card < len(self.answers):
                raise AnswerRefused(f"{card_id(card)} is already answered")
            if card != self.next_card:
                raise AnswerRefused(f"{card_id(card)} is not the card on screen ({card_id(len(self.answers))} is)")
            if answer not in ANSWERS:
                raise AnswerRefused(f"an answer is 'real' or 'fake' (got {str(answer)[:40]!r})")
            if type(ms) is not int or not 0 <= ms <= MAX_MS:
                raise AnswerRefused(f"ms is the response time in whole milliseconds, 0 to {MAX_MS:,} (got {str(ms)[:40]!r})")
            stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            given = Answer(card, self.deck.cards[card].source, answer, ms, stamp, self.deck.reader)
            line = json.dumps(given.to_json())
            write_text_atomic(self.answers_path, "".join(f"{x}\n" for x in [*self._lines, line]))
            self._lines.append(line)
            self.answers.append(given)
            return given

    def lock(self) -> ExclusiveLock:
        """Take the session's one-quiz-at-a-time OS lock (released by the kernel if the process dies)."""

        def busy(pid: int | None) -> str:
            who = f"process {pid}" if pid is not None else "another process"
            return f"quiz session {self.name} is open in {who}: finish it there, or stop that one first"

        return ExclusiveLock(self.path / LOCK_FILE, busy, report_as=self.path).acquire()


def new_session_name() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def create_session(home: Path, cards: Sequence[tuple[Card, np.ndarray]], *, seed: int, dataset: str, size: int,
                   reader: str | None, generators: Sequence[dict[str, Any]]) -> Session:
    """Write a new session: every card's PNG (through `encode_card`, the one path), then deck.json.
    A creation interrupted before deck.json leaves no session: the folder is removed."""
    parent = quiz_dir(home)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = new_session_name()
    for i in range(1, 10_000):  # claimed by an exclusive mkdir: two quizzes started in one second get two names
        path = parent / (stamp if i == 1 else f"{stamp}-{i}")
        try:
            os.mkdir(path)
            break
        except FileExistsError:
            continue
    else:
        raise GanjiError(f"cannot find a free session name for {stamp} in {parent}")
    deck = Deck(seed=seed, dataset=dataset, size=size, created=time.time(), reader=reader,
                cards=tuple(card for card, _ in cards), generators=tuple(generators))
    try:
        for card, image in cards:
            write_bytes_atomic(path / CARDS_DIR / card.file, encode_card(image))
        write_json_atomic(path / DECK_FILE, deck.to_json())
    except BaseException:
        _remove_unfinished(path)
        raise
    return Session(path, deck, [], [])


def _remove_unfinished(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _read_text(path: Path, what: str) -> str:
    kind = file_kind(path)
    if kind is not None:  # never open a FIFO or a device
        raise GanjiError(f"{path} is {kind}, not a quiz {what}")
    try:
        return path.read_text("utf-8")
    except UnicodeDecodeError:
        raise GanjiError(f"{path} is not a valid quiz {what} (not UTF-8 text)") from None


def load_session(path: Path) -> Session:
    """A session folder with its deck and answers, checked: a damaged or badly edited file is a GanjiError."""
    deck_path = path / DECK_FILE
    try:
        deck = Deck.from_json(json.loads(_read_text(deck_path, "deck")))
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise GanjiError(f"{deck_path} is not a valid quiz deck ({str(exc)[:120] or type(exc).__name__})") from None
    answers: list[Answer] = []
    lines: list[str] = []
    answers_path = path / ANSWERS_FILE
    text = _read_text(answers_path, "answers file") if os.path.lexists(answers_path) else ""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            answers.append(_parse_answer(line, deck, len(answers)))
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise GanjiError(f"{answers_path} line {number} is not a valid answer ({str(exc)[:120] or type(exc).__name__})") from None
        lines.append(line)
    return Session(path, deck, answers, lines)


def _parse_answer(line: str, deck: Deck, expected: int) -> Answer:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    card = data["card"]
    if card != expected or type(card) is not int or card >= len(deck.cards):
        raise ValueError(f"card {str(card)[:20]} where card {expected} was due")
    source = Source.from_json(data["source"])
    if source != deck.cards[card].source:
        raise ValueError(f"its source differs from the deck's for {card_id(card)}")
    if data["answer"] not in ANSWERS or type(data["ms"]) is not int or not isinstance(data.get("time"), str):
        raise ValueError("no answer, ms or time")
    reader = data.get("reader")
    return Answer(card, source, data["answer"], data["ms"], data["time"], reader if isinstance(reader, str) else None)


def session_folders(home: Path) -> list[Path]:
    """Session folders that hold a deck (a folder without one is an interrupted creation), by name."""
    parent = quiz_dir(home)
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and _NAME.fullmatch(p.name) and (p / DECK_FILE).is_file())


def load_sessions(home: Path) -> tuple[list[Session], list[str]]:
    """Every session of the home, oldest first, and a note for each damaged one (left out)."""
    sessions, notes = [], []
    for path in session_folders(home):
        try:
            sessions.append(load_session(path))
        except (GanjiError, OSError) as exc:
            notes.append(f"left out quiz session {path.name}: {exc}")
    sessions.sort(key=lambda s: (s.deck.created, s.name))
    return sessions, notes


def find_session(home: Path, name: str | None = None) -> Session:
    """The session to resume: the one named, or the latest unfinished one; its card files checked."""
    if name is not None:
        if not _NAME.fullmatch(name):
            raise GanjiError(f"invalid quiz session name {name!r}")
        path = quiz_dir(home) / name
        if not (path / DECK_FILE).is_file():
            known = ", ".join(p.name for p in session_folders(home)) or "none"
            raise GanjiError(f"no quiz session named {name!r} in {quiz_dir(home)} (sessions: {known})")
        session = load_session(path)
        if session.finished:
            raise GanjiError(f"quiz session {name} is finished ({session.total} of {session.total} answered): "
                             "see the scores with `ganji quiz --report`")
    else:
        sessions, _ = load_sessions(home)
        unfinished = [s for s in sessions if not s.finished]
        if not unfinished:
            raise GanjiError(f"no unfinished quiz in {quiz_dir(home)}: start one with `ganji quiz`")
        session = unfinished[-1]
    for card in session.deck.cards:
        kind = file_kind(session.card_path(card.index))
        if kind is not None or not session.card_path(card.index).is_file():
            raise GanjiError(f"quiz session {session.name}: its card {session.card_path(card.index)} is {kind or 'missing'}")
    return session
