"""Shared material of the quiz tests (tests/test_quiz_*.py): a tiny trained home made once per test
process, synthetic sessions that need no model at all, and the command line in a subprocess."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ganji.quiz.deck import FAKE, REAL_SOURCE, Drawn, Source, shuffle
from ganji.quiz.session import Session, create_session

TINY_VAE = {"batch_size": 8, "epochs": 1, "sample_every": 0, "log_every": 1, "device": "cpu", "max_steps": 2,
            "dataset": "k16", "options": {"latent_dim": 8, "base_width": 8}}
TINY_GAN = {"batch_size": 8, "epochs": 1, "sample_every": 0, "log_every": 1, "device": "cpu", "max_steps": 2,
            "dataset": "k16", "options": {"layers": (16, 8, 8, 8), "latent_dim": 8, "disc_ratio": 1}}
VAE, GAN = Source(FAKE, "vae", "r"), Source(FAKE, "gan", "r")
_WORLD: list[Path] = []


def tiny_world(root: Path) -> Path:
    """A home with dataset k16 (64 kanji, 16 px) and runs vae/r and gan/r (two steps each): made
    once per test process (under `root` the first time), then shared; copy it before changing it."""
    if not _WORLD:
        from conftest import make_kanji

        from ganji.train.start import train

        home = root / "quiz-world"
        make_kanji(home, name="k16", size=16, limit=64)
        train(home, "vae", dict(TINY_VAE), run_name="r")
        train(home, "gan", dict(TINY_GAN), run_name="r")
        _WORLD.append(home)
    return _WORLD[0]


def copy_world(root: Path, dest: Path) -> Path:
    shutil.copytree(tiny_world(root), dest, ignore=shutil.ignore_patterns("quiz"))
    return dest


def glyph(seed: int, size: int = 16) -> np.ndarray:
    """A random 1 x size x size picture, ink bright (the datasets' convention)."""
    return (np.random.default_rng(seed).random((1, size, size)) > 0.7).astype(np.uint8) * 255


def synthetic_session(home: Path, n: int = 6, seed: int = 0, reader: str | None = None,
                      generators: tuple[Source, ...] = (VAE, GAN)) -> Session:
    """A saved session of `n` cards (half real, the rest split over `generators`) from random
    pictures: the whole session machinery without a dataset or a model."""
    half = n // 2
    drawn = [Drawn(REAL_SOURCE, glyph(i), {"row": i}) for i in range(half)]
    drawn += [Drawn(generators[i % len(generators)], glyph(100 + i), {"sample": i}) for i in range(n - half)]
    gens = [{**g.to_json(), "cards": sum(1 for d in drawn if d.source == g)} for g in generators]
    return create_session(home, shuffle(drawn, seed), seed=seed, dataset="k16", size=16, reader=reader, generators=gens)


def ganji_env(home: Path) -> dict[str, str]:
    return {**os.environ, "GANJI_HOME": str(home), "COLUMNS": "200", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start_server(home: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`ganji quiz ARGS --no-open` in a subprocess, and the address it prints (token included)."""
    # Ctrl-C reaches the server as it would from a terminal, even where these tests run in a background
    # job (whose shell ignores SIGINT, a disposition every child inherits and Python then keeps).
    proc = subprocess.Popen([sys.executable, "-m", "ganji", "quiz", *args, "--no-open"], env=ganji_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = re.search(r"http://\S+", line)
        if found:
            return proc, found.group(0)
    proc.kill()
    raise AssertionError(f"no address printed: {proc.communicate()}")
