"""The quiz in the terminal: each card drawn with Unicode half blocks through rich; keys r / f / q.

The same deck, card files and answers as in the browser: the glyph is the card's own PNG, decoded.
A terminal cell holds two pixels, one above the other: "▀" drawn in the top pixel's colour on the
bottom pixel's. Without colours (NO_COLOR, a dumb terminal) the ink is drawn as block characters.
On a terminal, keys are read one at a time (cbreak mode: no Enter needed, Ctrl-C still interrupts);
from a pipe or a file, one answer per line.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO

import numpy as np
from rich.align import Align
from rich.color import Color
from rich.console import Console, Group
from rich.style import Style
from rich.text import Text

from ganji.quiz.cards import decode_card
from ganji.quiz.session import Session

KEYS = {"r": "real", "f": "fake"}
QUIT = "q"


class KeyReader:
    """Single keys from a terminal (cbreak mode, restored on exit), or lines from anything else.
    `read()` returns "r", "f" or "q" (the end of the input counts as "q"), ignoring other keys."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdin
        self.tty = _isatty(self.stream)
        self._saved: list | None = None

    def __enter__(self) -> KeyReader:
        if self.tty:
            import termios
            import tty

            fd = self.stream.fileno()
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd, termios.TCSADRAIN)  # TCSADRAIN, not the default TCSAFLUSH: keep what was typed
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    def flush(self) -> None:
        """Drop keys typed before the card was drawn: they were not answers to it."""
        if self.tty:
            import termios

            termios.tcflush(self.stream.fileno(), termios.TCIFLUSH)

    def read(self) -> str:
        while True:
            if self.tty:
                data = os.read(self.stream.fileno(), 1)
                key = data.decode("latin-1").lower() if data else QUIT
                if key == "\x04":  # Ctrl-D
                    key = QUIT
            else:
                line = self.stream.readline()
                key = line.strip()[:1].lower() if line else QUIT
            if key in KEYS or key == QUIT:
                return key


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def glyph(pixels: np.ndarray, scale: int = 1, color: bool = True) -> Text:
    """A card's pixels (H x W gray or H x W x 3) as half-block text, each pixel `scale` cells wide."""
    px = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    if px.ndim == 2:
        px = np.stack([px] * 3, axis=-1)
    if px.shape[0] % 2:
        px = np.concatenate([px, np.full_like(px[:1], 255)])  # paper below an odd last row
    text = Text(no_wrap=True, overflow="crop")
    for y in range(0, px.shape[0], 2):
        for top, bottom in zip(px[y], px[y + 1]):
            if color:
                text.append("▀", Style(color=Color.from_rgb(*map(int, top)), bgcolor=Color.from_rgb(*map(int, bottom))))
            else:
                ink = (top.mean() < 128, bottom.mean() < 128)
                text.append({(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}[ink])
        if y + 2 < px.shape[0]:
            text.append("\n")
    return text


def fit_scale(size: int, console: Console) -> int:
    """How many cells wide each pixel is: the glyph about 48-64 columns wide, within the terminal."""
    width, height = console.size
    return max(1, min(64 // size, (width - 4) // size, (height - 6) * 2 // size))


def draw(console: Console, session: Session, index: int) -> None:
    pixels = decode_card(session.card_png(index))
    if console.is_terminal:
        console.clear()
    header = Text.assemble(("ganji quiz", "bold"), f"  card {index + 1} of {session.total}", style="")
    keys = Text.assemble(("r", "bold"), " real    ", ("f", "bold"), " fake    ", ("q", "bold"), " quit    ",
                         ("answers are saved as you go", "dim"))
    art = glyph(pixels, fit_scale(session.deck.size, console), color=console.color_system is not None)
    console.print(Group(Align.center(header), Text(""), Align.center(art), Text(""), Align.center(keys)))


def play(session: Session, console: Console, keys: KeyReader, clock: Callable[[], float] = time.monotonic) -> bool:
    """Show the session's unanswered cards one at a time, saving each answer as it is given; True
    when every card is answered, False when the reader quit (q, or the end of the input)."""
    while (index := session.next_card) is not None:
        keys.flush()
        draw(console, session, index)
        if not keys.tty:
            console.print("answer r (real), f (fake) or q (quit): ", end="")
        shown = clock()
        key = keys.read()
        if key == QUIT:
            return False
        session.record(index, KEYS[key], int(round((clock() - shown) * 1000)))
    return True
