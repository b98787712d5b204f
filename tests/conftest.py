"""Shared fixtures: a fresh home folder per test, and small kanji datasets made in a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganji.data.prepare import prepare_kanji


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("GANJI_HOME", str(folder))
    return folder


def make_kanji(home: Path, name: str = "kanji16", size: int = 16, limit: int = 256) -> Path:
    """A small prepared kanji dataset (the first `limit` characters at `size` px)."""
    return prepare_kanji(home, name=name, size=size, limit=limit, progress=False)
