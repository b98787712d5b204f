"""`ganji train --eval-every N`: FID logged during training and the best checkpoint kept."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import make_kanji, sample_images

from ganji.sampling import load_model
from ganji.runtime.checkpoint import load_checkpoint
from ganji.train.start import train


def test_eval_every_logs_fid_and_keeps_the_best_checkpoint(home: Path) -> None:
    make_kanji(home, name="kanji", size=16, limit=64)
    given = {"epochs": 3, "batch_size": 16, "sample_every": 0, "eval_every": 1, "eval_n": 32,
             "options": {"latent_dim": 8, "base_width": 8}}
    result = train(home, "vae", given, run_name="r")
    run = home / "runs" / "vae" / "r"
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval" in r]
    assert [r["step"] for r in evals] == [4, 8, 12]  # 64 images / 16 per step = 4 steps per epoch
    assert all(math.isfinite(r["eval"]["fid"]) and r["eval"]["n"] == 32 for r in evals)
    best = min(evals, key=lambda r: r["eval"]["fid"])
    meta = load_checkpoint(run / "best.safetensors").meta
    assert meta["step"] == best["step"] == result.best["step"]
    assert load_checkpoint(run / "checkpoint.safetensors").meta["best"]["fid"] == best["eval"]["fid"]
    # The best checkpoint samples like any other.
    images = sample_images(load_model(home, "vae", checkpoint=run / "best.safetensors"), 4)
    assert images.shape == (4, 1, 16, 16)
    # `ganji sample --best` picks it by the run's name.
    best_loaded = load_model(home, "vae", "r", best=True)
    assert best_loaded.step == best["step"] and best_loaded.checkpoint.name == "best.safetensors"


def test_best_without_evaluations_is_a_clear_error(home: Path) -> None:
    from ganji.errors import GanjiError

    make_kanji(home, name="kanji", size=16, limit=32)
    train(home, "vae", {"epochs": 1, "batch_size": 16, "sample_every": 0, "options": {"latent_dim": 8, "base_width": 8}}, run_name="r")
    with pytest.raises(GanjiError, match="--eval-every"):
        load_model(home, "vae", "r", best=True)


def test_resume_keeps_the_best_so_far(home: Path) -> None:
    make_kanji(home, name="kanji", size=16, limit=64)
    given = {"epochs": 2, "batch_size": 16, "sample_every": 0, "eval_every": 1, "eval_n": 16,
             "options": {"latent_dim": 8, "base_width": 8}}
    first = train(home, "vae", {**given, "max_steps": 4}, run_name="r")
    resumed = train(home, "vae", {"max_steps": 8}, run_name="r", resume=True)
    assert first.best and resumed.best["fid"] <= first.best["fid"]
