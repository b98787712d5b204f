"""Shared by the command-line tests (test_bad_input.py, test_font.py, ...): run `ganji` in-process
and check how it ended, give each test its own copy of a trained home, and fingerprint files to
show that a failure wrote nothing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from ganji.cli import main


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `ganji ARGS` in-process; an escaping exception fails the test."""
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(result: tuple[int, str, str], *needles: str) -> str:
    """The command failed (exit != 0) with exactly one line, `error: ...`, containing every needle."""
    code, out, err = result
    assert "Traceback" not in out + err, out + err
    assert code != 0, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def succeeded(result: tuple[int, str, str]) -> tuple[str, str]:
    code, out, err = result
    assert code == 0 and "Traceback" not in out + err, out + err
    return out, err


def tree(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the roots (a file root counts too), keyed by path."""
    found: dict[str, str] = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in paths:
            found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def own_home(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the module's trained home `world` for one test, set as $GANJI_HOME."""
    copy = tmp_path / "home"
    shutil.copytree(world, copy)
    monkeypatch.setenv("GANJI_HOME", str(copy))
    return copy
