"""GAN stabilisers: DiffAugment's translation and cutout (never flips) and the R1 penalty."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_kanji

from ganji.errors import GanjiError
from ganji.recipes import spec
from ganji.recipes.gan import diff_augment, r1_penalty
from ganji.train.start import train


def test_no_shift_and_a_cutout_outside_the_image_change_nothing() -> None:
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    out = diff_augment(x, torch.zeros(3, 2, dtype=torch.long), torch.full((3, 2), -100))
    assert torch.equal(out, x)


def test_translation_moves_the_glyph_and_fills_with_background() -> None:
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    out = diff_augment(x, torch.tensor([[2, -1]]), torch.full((1, 2), -100))
    assert torch.equal(out[0, 0, 2:, :15], x[0, 0, :14, 1:])  # down 2 rows, left 1 column
    assert (out[0, 0, :2] == -1).all() and (out[0, 0, :, 15] == -1).all()


def test_cutout_blanks_a_square_of_half_the_side() -> None:
    x = torch.ones(1, 1, 16, 16)
    out = diff_augment(x, torch.zeros(1, 2, dtype=torch.long), torch.tensor([[8, 8]]))
    assert (out[0, 0, 5:12, 5:12] == -1).all() and int((out == -1).sum()) == 7 * 7
    assert (out[0, 0, :4] == 1).all()


def test_augmentation_is_differentiable() -> None:
    x = torch.rand(2, 1, 16, 16, requires_grad=True)
    diff_augment(x, torch.tensor([[1, 1], [0, -2]]), torch.tensor([[3, 3], [12, 4]])).sum().backward()
    assert x.grad is not None and 0 < int((x.grad != 0).sum()) < x.numel()


def test_r1_is_the_squared_gradient_norm_on_real_images() -> None:
    w = torch.randn(1, 1, 4, 4)

    def linear_d(x: torch.Tensor) -> torch.Tensor:  # ∇_x D = w for every image
        return (x * w).flatten(1).sum(1)

    assert torch.allclose(r1_penalty(linear_d, torch.randn(5, 1, 4, 4)), w.square().sum())


def test_a_gan_trains_with_r1_and_diffaugment(home: Path) -> None:
    make_kanji(home, name="k", size=16, limit=32)
    opts = {"layers": (32, 16, 16), "latent_dim": 16, "disc_ratio": 1, "r1": 10.0, "diffaugment": True, "output_norm": False}
    result = train(home, "gan", {"dataset": "k", "epochs": 2, "batch_size": 16, "log_every": 1, "sample_every": 0, "options": opts}, run_name="r")
    records = [json.loads(line) for line in result.run.metrics_path.read_text().splitlines()]
    assert len(records) == 4 and all(abs(r["loss_d"]) < 1e4 and abs(r["loss_g"]) < 1e4 for r in records)
    assert "R1 10, DiffAugment" in spec("gan").recipe_class().describe(spec("gan").options(**opts))


def test_r1_must_be_finite() -> None:
    with pytest.raises(GanjiError, match="--r1"):
        spec("gan").config(options={"r1": float("nan")})
