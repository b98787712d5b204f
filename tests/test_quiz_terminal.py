"""`ganji quiz --terminal` driven through a pseudo-terminal with scripted keystrokes: a 4-card quiz,
quit half-way with q, resumed, finished; the same files and scores as in the browser."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from quiz_support import copy_world, ganji_env

from ganji.quiz.session import load_session, session_folders

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


class Terminal:
    """`ganji quiz ARGS` on a 100 x 40 pseudo-terminal: read what it draws, type keys."""

    def __init__(self, home: Path, *args: str) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        env = {**ganji_env(home), "TERM": "xterm-256color", "COLORTERM": "truecolor"}
        env.pop("COLUMNS")
        self.proc = subprocess.Popen([sys.executable, "-m", "ganji", "quiz", *args], stdin=slave, stdout=slave, stderr=slave,
                                     env=env, start_new_session=True)
        os.close(slave)
        self.raw = b""

    @property
    def text(self) -> str:
        return _ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the command has ended and closed the terminal
            return False
        self.raw += data
        return bool(data)

    def card(self, k: int, of: int = 4) -> None:
        """Wait until card k is drawn whole (its header, the glyph, then the line of keys)."""
        self.expect(f"card {k} of {of}", then="saved as you go")

    def expect(self, needle: str, then: str = "", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text or then not in self.text[self.text.index(needle):]:
            if time.monotonic() > deadline or not self._read(0.1) and self.proc.poll() is not None:
                raise AssertionError(f"{needle!r} never appeared; the terminal shows:\n{self.text[-3000:]}")

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def finish(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0.05):
            pass
        os.close(self.master)
        if self.proc.poll() is None:
            self.proc.kill()
            raise AssertionError(f"the command did not end:\n{self.text[-3000:]}")
        return self.proc.returncode


@pytest.fixture
def world(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return copy_world(tmp_path_factory.getbasetemp(), tmp_path / "home")


def test_a_four_card_quiz_with_keystrokes_quit_and_resumed(world: Path, tmp_path: Path) -> None:
    folder = tmp_path / "samples"
    folder.mkdir()
    for i in range(3):  # dark ink on white, as `ganji sample` writes them
        ink = np.random.default_rng(i).random((16, 16)) > 0.7
        Image.fromarray(np.where(ink, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")

    term = Terminal(world, "--terminal", "--images", str(folder), "--dataset", "k16", "--n", "4", "--reader", "ann")
    term.card(1)
    assert "▀" in term.text and "r real" in term.text
    term.press("x")  # not an answer: ignored
    term.press("r")
    term.card(2)
    term.press("f")
    term.card(3)
    term.press("q")
    assert term.finish() == 0
    assert "ganji quiz --resume" in term.text and "2 answers saved" in term.text
    (path,) = session_folders(world)
    assert len(load_session(path).answers) == 2

    term = Terminal(world, "--terminal", "--resume")
    term.card(3)
    term.press("r")
    term.card(4)
    term.press("f")
    assert term.finish() == 0, term.text
    assert "fool rate" in term.text and "what each card was" in term.text and "Traceback" not in term.text
    session = load_session(path)
    assert session.finished and [a.answer for a in session.answers] == ["real", "fake", "real", "fake"]
    assert {a.reader for a in session.answers} == {"ann"} and all(a.ms >= 0 for a in session.answers)
    kinds = sorted(a.source.model or "real" for a in session.answers)
    assert kinds == ["images", "images", "real", "real"]
