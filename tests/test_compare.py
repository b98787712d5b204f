"""`ganji compare`: the report of tiny runs, and what it says when a model has no run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_kanji
from PIL import Image

from ganji.train.start import train

REPORT_FILES = ("comparison.md", "comparison.json", "samples.png", "progress.png", "training.png", "neighbours.png")


def ganji(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GANJI_HOME": str(home), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "ganji", *args], env=env, capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    make_kanji(home, name="kanji", size=16, limit=64)
    common = {"dataset": "kanji", "epochs": 2, "batch_size": 16, "sample_every": 1}
    train(home, "vae", {**common, "eval_every": 1, "eval_n": 16, "options": {"latent_dim": 16, "base_width": 16}}, run_name="r")
    train(home, "ddpm", {**common, "options": {"base_width": 8, "timesteps": 20}}, run_name="r")
    return home


def test_compare_writes_the_report_and_says_which_model_is_missing(two_models: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = ganji(two_models, "compare", "--n", "32", "-o", str(out), "--steps", "5")
    assert proc.returncode == 0, proc.stderr
    assert "no gan run yet" in proc.stderr and "ganji train gan" in proc.stderr
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in REPORT_FILES[2:]:
        assert Image.open(out / name).size[0] > 100
    data = json.loads((out / "comparison.json").read_text())
    assert [m["model"] for m in data["models"]] == ["vae", "ddpm"] and data["missing"] == ["gan", "flow"]
    for m in data["models"]:
        for key in ("parameters", "epochs", "train_seconds", "images_per_s", "sample_10k_seconds", "fid", "kid", "precision", "recall", "novelty_copies"):
            assert isinstance(m[key], (int, float)) and math.isfinite(m[key]), (m["model"], key)
        assert m["epochs"] == 2 and m["parameters"] > 0 and m["n"] == 32
    md = (out / "comparison.md").read_text()
    assert "| vae |" in md and "| ddpm |" in md and "ganji train gan" in md
    assert "| *real, held out* |" in md and "| *real, another font* | Noto Sans CJK JP |" in md and "x font" in md
    assert [r["model"] for r in data["references"]] == ["real, held out", "real, another font"]
    # The terminal table names every compared model.
    assert "vae" in proc.stdout and "ddpm" in proc.stdout and "FID" in proc.stdout


def test_compare_json_and_named_runs(two_models: Path, tmp_path: Path) -> None:
    proc = ganji(two_models, "compare", "--json", "-q", "--n", "16", "--runs", "vae=r", "-o", str(tmp_path / "r2"), "--steps", "3")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {r["model"] for r in rows} == {"vae", "ddpm"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--train", "fast"), "--train must be quick or paper"),
        (("--runs", "gan"), "--runs takes MODEL=RUN"),
        (("--runs", "vae=nope"), "nope"),
        (("--n", "3"), "--n must be at least 10"),
    ],
)
def test_compare_errors_are_one_line(two_models: Path, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    proc = ganji(two_models, "compare", "-o", str(tmp_path / "r"), *args)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_compare_with_no_runs_says_how_to_start(home: Path, tmp_path: Path) -> None:
    proc = ganji(home, "compare", "-o", str(tmp_path / "r"))
    assert proc.returncode == 1 and "ganji compare --train quick" in proc.stderr


def test_ctrl_c_while_training_stops_the_whole_study(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: an interrupted model kept its checkpoint and the study went on to train the next model."""
    import ganji.train.start
    from ganji.errors import GanjiError
    from ganji.report.study import train_missing
    from ganji.runs import Run
    from ganji.train.loop import StopReason, TrainResult

    trained = []

    def interrupted(home_: Path, model: str, given: dict, run_name: str | None = None, **_: object) -> TrainResult:
        trained.append(model)
        return TrainResult(run=Run(model, run_name or "r", home_ / model), step=7, total_steps=100, epoch=0.1,
                           reason=StopReason.INTERRUPTED, train_seconds=1.0, images_per_second=1.0, losses={})

    monkeypatch.setattr(ganji.train.start, "train", interrupted)
    make_kanji(home, name="kanji32", size=32, limit=16)
    with pytest.raises(GanjiError, match=r"interrupted while training vae: run vae/quick keeps its checkpoint at step 7"):
        train_missing(home, ["vae", "gan"], "quick")
    assert trained == ["vae"]
