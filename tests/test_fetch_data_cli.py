"""The `ganji fetch-data` command: help, no-op re-runs, --force, one-line errors, nothing half-written."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from cli_support import cli
from conftest import make_kanji
from PIL import Image

from ganji.data import prepare
from ganji.data.store import dataset_path, load_dataset
from ganji.errors import GanjiError


def ganji(home: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m ganji ...` in a subprocess: the real entry point, tracebacks and all."""
    env = {**os.environ, "GANJI_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ganji", *args], env=env, capture_output=True, text=True, timeout=120)


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_help_shows_every_option_with_its_default(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERMINAL_WIDTH", "220")
    monkeypatch.setenv("COLUMNS", "220")
    code, out, _ = cli(capsys, "fetch-data", "--help")
    assert code == 0
    options = ("--from", "--name", "--size", "--limit", "--charset", "--font", "--channels", "--invert", "--no-invert",
               "--component-depth", "--component-min-count", "--force", "--quiet", "--home")
    for option in options:
        line = next(line for line in out.splitlines() if f" {option} " in line)
        assert "default" in line, line
    for default in ("[default: 64]", "[default: jis0213]", "[default: 1]", "[default: 5]", "[default: kanji]", "[default: all]",
                    "[default: the bundled IPAex Gothic]", "[default: $GANJI_HOME"):
        assert default in out


def test_prepare_rerun_and_force(home: Path, capsys: pytest.CaptureFixture) -> None:
    proc = ganji(home, "fetch-data", "--name", "k", "--size", "16", "--limit", "20")  # the real entry point
    assert proc.returncode == 0, proc.stderr
    for word in ("name", "k", "source", "kanji", "count", "20", "16 x 16", "IPAexGothic", str(dataset_path(home, "k")), "seconds"):
        assert word in proc.stdout
    manifest = dataset_path(home, "k") / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    code, _, err = cli(capsys, "fetch-data", "--name", "k", "--size", "16", "--limit", "20")
    assert code == 0 and "already prepared" in err and "--force" in err
    assert manifest.stat().st_mtime_ns == stamp
    code, _, err = cli(capsys, "fetch-data", "--name", "k", "--size", "16", "--limit", "30", "--force", "-q")
    assert code == 0, err
    assert len(load_dataset(home, "k")) == 30
    assert sorted(p.name for p in dataset_path(home, "k").parent.iterdir()) == ["k"]  # no leftovers


def test_a_missing_font_fails_cleanly_end_to_end(home: Path, tmp_path: Path) -> None:
    proc = ganji(home, "fetch-data", "--font", str(tmp_path / "nope.ttf"), "--limit", "5")
    assert proc.returncode != 0
    assert "does not exist" in one_line_error(proc.stderr) and "nope.ttf" in proc.stderr
    assert not dataset_path(home, "kanji").exists()


@pytest.mark.parametrize("bad", ["not-a-font", "folder", "empty", "truncated"])
def test_a_bad_font_leaves_nothing_half_written(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, bad: str) -> None:
    make_kanji(home, "good", limit=10)
    good = (dataset_path(home, "good") / "images.safetensors").read_bytes()
    font = tmp_path / "font.ttf"
    if bad == "not-a-font":
        font.write_bytes(b"this is not a font" * 100)
    elif bad == "folder":
        font.mkdir()
    elif bad == "empty":
        font.write_bytes(b"")
    else:
        font.write_bytes(prepare.bundled_font().read_bytes()[:5000])
    for name, extra in (("new", []), ("good", ["--force"])):
        code, _, err = cli(capsys, "fetch-data", "--name", name, "--font", str(font), "--size", "16", "-q", *extra)
        assert code == 1
        assert "font" in one_line_error(err)
    assert not dataset_path(home, "new").exists()
    assert (dataset_path(home, "good") / "images.safetensors").read_bytes() == good
    assert sorted(p.name for p in dataset_path(home, "good").parent.iterdir()) == ["good"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "0"], "--size must be a positive"),
        (["--size", "-3"], "--size must be a positive"),
        (["--size", "4"], "at least 8"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["kanjii"], "unknown source 'kanjii'"),
        (["--charset", "jis0212"], "unknown charset"),
        (["mnist", "--from", "."], "not both"),
        (["mnist", "--font", "x.ttf"], "--font only applies"),
        (["--channels", "3"], "only apply to --from"),
        (["--from", ".", "--channels", "2"], "--channels must be 1 or 3"),
        (["--name", "a/b"], "invalid dataset name"),
        (["--component-depth", "0"], "--component-depth must be from 1 to 4 (got 0)"),
        (["--component-depth", "5"], "--component-depth must be from 1 to 4 (got 5)"),
        (["--component-min-count", "0"], "--component-min-count must be at least 1 (got 0)"),
        (["--component-min-count", "-2"], "--component-min-count must be at least 1 (got -2)"),
        (["mnist", "--component-min-count", "3"], "--component-depth and --component-min-count only apply to the kanji source"),
        (["--from", ".", "--component-depth", "2"], "only apply to the kanji source"),
    ],
)
def test_bad_input_is_a_one_line_error(home: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    code, _, err = cli(capsys, "fetch-data", *args, "-q")
    assert code == 1
    assert message in one_line_error(err)
    assert list(home.glob("datasets/*")) == []


def test_import_a_zip_through_the_cli(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    archive = tmp_path / "my-glyphs.zip"
    arr = np.full((40, 40), 255, np.uint8)
    arr[10:30, 18:22] = 0  # a dark stroke on white paper
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x/1.png", buf.getvalue())
        z.writestr("x/info.txt", "hi")
    code, out, err = cli(capsys, "fetch-data", "--from", str(archive), "--size", "20", "-q")
    assert code == 0, err
    ds = load_dataset(home, "my-glyphs")
    assert ds.images.shape == (1, 1, 20, 20) and ds.images[0, 0, 0, 0] == 0 and ds.images[0, 0, 10, 10] > 200
    assert "my-glyphs" in out and "1 non-images" in out
    code, _, err = cli(capsys, "fetch-data", "--from", str(archive), "--size", "20")
    assert code == 0 and "already prepared" in err


def test_ensure_dataset(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    make_kanji(home, "small", limit=5)
    prepare.ensure_dataset(home, "small")  # prepared: nothing to do
    with pytest.raises(GanjiError, match=r"ganji fetch-data \.\.\. --name other"):
        prepare.ensure_dataset(home, "other")
    calls: list[tuple] = []
    monkeypatch.setattr(prepare, "build_kanji", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(prepare, "report", lambda p: None)
    prepare.ensure_dataset(home, "kanji")  # missing default: prepared first, with a message
    assert calls == [((home, "kanji"), {})]
    assert "preparing it first" in capsys.readouterr().err
