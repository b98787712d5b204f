"""GAN `--no-output-norm`: without BatchNorm in G's output block, fakes are as dark as the data from
the start; with it (the paper's block, batch statistics), they stay far too bright (see ganji.models.gan)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_kanji

from ganji.recipes import spec
from ganji.train.start import train

# The paper's ResNet GAN (hinge + gradient penalty), small; BatchNorm on batch statistics throughout.
GAN = {"layers": (32, 16, 16), "latent_dim": 16, "disc_ratio": 1, "bn_freeze_epoch": 0}
STEPS = 40


def _brightness(home: Path, output_norm: bool) -> dict[str, float]:
    result = train(home, "gan", {"dataset": "k", "epochs": 100, "batch_size": 16, "max_steps": STEPS, "log_every": 10, "lr": 1e-3,
                                 "sample_every": 0, "options": {**GAN, "output_norm": output_norm}}, run_name=f"norm-{output_norm}")
    last = json.loads(result.run.metrics_path.read_text().splitlines()[-1])
    assert last["step"] == STEPS
    return last


def test_the_output_block_without_batchnorm_matches_the_datas_brightness(home: Path) -> None:
    make_kanji(home, name="k", size=16, limit=64)
    paper, no_bn = _brightness(home, True), _brightness(home, False)
    # Kanji are mostly dark background: the same real statistics for both runs.
    assert paper["real_mean"] < -0.3 and paper["real_dark"] > 0.5
    # Steps 31-40 (the last logged means). The paper's block: fakes still much brighter, with few dark
    # pixels (its cap, by Cantelli's inequality, holds whatever the learning rate).
    assert paper["fake_mean"] - paper["real_mean"] > 0.35 and paper["fake_dark"] < 0.15
    # Without BatchNorm there: the fakes' brightness within 0.25 of the data's, and many dark pixels.
    assert abs(no_bn["fake_mean"] - no_bn["real_mean"]) < 0.25 and no_bn["fake_dark"] > 0.3


def test_the_option_keeps_the_papers_network_by_default() -> None:
    from ganji.models.gan import GANConfig, Generator

    paper = Generator(GANConfig(layers=(32, 16, 16), latent_dim=16, image_size=16))
    no_bn = Generator(GANConfig(layers=(32, 16, 16), latent_dim=16, image_size=16, output_norm=False))
    assert spec("gan").options().output_norm is True
    bn_count = lambda g: sum(type(m).__name__ == "BatchNorm2d" for m in g.modules())  # noqa: E731
    assert bn_count(paper) - bn_count(no_bn) == 3  # main path twice, shortcut once


@pytest.mark.parametrize("arch", ["resnet", "dcgan"])
def test_brightness_is_logged_for_every_gan(home: Path, arch: str) -> None:
    make_kanji(home, name="k", size=16, limit=32)
    opts = {"layers": (32, 16, 16, 8), "latent_dim": 16, "disc_ratio": 1, "arch": arch}
    result = train(home, "gan", {"dataset": "k", "epochs": 1, "batch_size": 16, "sample_every": 0, "options": opts}, run_name=arch)
    record = json.loads(result.run.metrics_path.read_text().splitlines()[-1])
    assert all(-1 <= record[k] <= 1 for k in ("fake_mean", "real_mean")) and all(0 <= record[k] <= 1 for k in ("fake_dark", "real_dark"))
