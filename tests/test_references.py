"""Reference rows (ganji.metrics.references): real kanji held out, and drawn in another font, scored like samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_kanji
from PIL import Image

from ganji.data.store import load_dataset
from ganji.errors import GanjiError
from ganji.features.extractors import load_extractor
from ganji.home import cache_dir
from ganji.metrics.protocol import evaluate_images, reference_rows
from ganji.metrics.references import HELD_OUT, OTHER_FONT, default_reference_font, held_out_score, other_font_score, render_in_font

N = 100


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    make_kanji(home, name="kanji", size=32, limit=300)
    return home


def _extractor(home: Path):
    return load_extractor("kanji", torch.device("cpu"), cache_dir(home))


def test_the_held_out_row_uses_other_kanji_than_the_compared_ones(data: Path) -> None:
    dataset = load_dataset(data, "kanji")
    score = held_out_score(data, dataset, _extractor(data), N)
    assert score.model == HELD_OUT and score.n == N and score.reference_n == N
    assert np.isfinite(score.fid) and score.precision > 0.5 and score.recall > 0.5
    assert score.novelty_copies < 0.2  # real kanji are not copies of the other real kanji


def test_another_font_draws_the_datasets_kanji_like_the_dataset(data: Path) -> None:
    font = default_reference_font()
    assert font is not None, "the test extra installs noto-cjk-sans-jp-regular"
    dataset = load_dataset(data, "kanji")
    images, name = render_in_font(dataset, font, N)
    assert name == "Noto Sans CJK JP" and images.shape == (N, 1, 32, 32) and images.dtype == torch.uint8
    # Ink bright on black and about as much ink as the dataset's kanji (the same scale rule).
    ink = images.float().mean() / dataset.images.float().mean()
    assert 0.5 < float(ink) < 2.0


def test_the_reference_rows_are_the_scale_degraded_images_fall_off(data: Path) -> None:
    """Real kanji in another font score near the held-out floor; the same kanji blurred and noised, far worse."""
    dataset, extractor = load_dataset(data, "kanji"), _extractor(data)
    held = held_out_score(data, dataset, extractor, N)
    font = other_font_score(data, dataset, extractor, N, default_reference_font())
    assert font.model == OTHER_FONT and font.details["font"] == "Noto Sans CJK JP"
    rest = np.setdiff1d(np.arange(len(dataset)), reference_rows(len(dataset), N).numpy())[:N]
    real = dataset.images[rest].float()
    blurred = torch.nn.functional.avg_pool2d(real, 5, 1, 2)
    noisy = (blurred + 80 * torch.randn(blurred.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 255).to(torch.uint8)
    degraded = evaluate_images(data, noisy, dataset, extractor, N)
    assert held.fid < 2 * font.fid and font.fid < degraded["fid"] / 2, (held.fid, font.fid, degraded["fid"])


def test_a_dataset_without_kanji_or_a_missing_font_is_a_clear_error(data: Path, tmp_path: Path) -> None:
    from ganji.data.prepare import build_folder

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((32, 32), 20 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    build_folder(data, folder, name="pictures", size=32, progress=False)
    with pytest.raises(GanjiError, match="not rendered from a font"):
        render_in_font(load_dataset(data, "pictures"), default_reference_font(), 10)
    with pytest.raises(GanjiError, match="not a font file"):
        render_in_font(load_dataset(data, "kanji"), tmp_path / "nope.otf", 10)


def ganji(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GANJI_HOME": str(home), "COLUMNS": "220"}
    return subprocess.run([sys.executable, "-m", "ganji", *args], env=env, capture_output=True, text=True, timeout=300)


def test_fid_shows_the_reference_rows_unless_told_not_to(data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    dataset = load_dataset(data, "kanji")
    for i in range(60):
        Image.fromarray(255 - dataset.images[i, 0].numpy()).save(folder / f"{i}.png")
    proc = ganji(data, "fid", "--images", str(folder), "--n", "50", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    assert [r["model"] for r in json.loads(proc.stdout)] == ["images", HELD_OUT, OTHER_FONT]
    table = ganji(data, "fid", "--images", str(folder), "--n", "50", "-q").stdout
    assert HELD_OUT in table and OTHER_FONT in table and "x font" in table
    bare = ganji(data, "fid", "--images", str(folder), "--n", "50", "--no-references", "--json", "-q")
    assert [r["model"] for r in json.loads(bare.stdout)] == ["images"]
