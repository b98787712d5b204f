"""GAN `--bn-freeze-epoch`: the generator's BatchNorm statistics freeze after N epochs, as in the study."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import make_kanji

from ganji.runtime.checkpoint import load_checkpoint
from ganji.train.start import train

GAN = {"layers": (32, 16, 16, 8), "latent_dim": 16, "disc_ratio": 1}


def _running_means(path: Path) -> dict[str, torch.Tensor]:
    nets = load_checkpoint(path).nets["generator"]
    return {k: v for k, v in nets.items() if k.endswith("running_mean")}


def test_running_statistics_stop_changing_after_the_freeze_epoch(home: Path) -> None:
    make_kanji(home, name="kanji", size=16, limit=32)
    common = {"epochs": 3, "batch_size": 16, "sample_every": 0}
    # Frozen after epoch 1: epochs 2 and 3 leave the statistics where epoch 1 left them.
    train(home, "gan", {**common, "max_steps": 2, "options": {**GAN, "bn_freeze_epoch": 1}}, run_name="f")
    after_one = _running_means(home / "runs/gan/f/checkpoint.safetensors")
    train(home, "gan", {"max_steps": 6}, run_name="f", resume=True)
    after_three = _running_means(home / "runs/gan/f/checkpoint.safetensors")
    assert after_one and all(torch.equal(after_one[k], after_three[k]) for k in after_one)
    # Never frozen: they keep moving.
    train(home, "gan", {**common, "max_steps": 6, "options": {**GAN, "bn_freeze_epoch": 0}}, run_name="n")
    moving = _running_means(home / "runs/gan/n/checkpoint.safetensors")
    assert any(not torch.equal(after_one[k], moving[k]) for k in after_one)
