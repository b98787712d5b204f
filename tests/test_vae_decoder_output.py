"""The VAE's --decoder-output: the Bernoulli decoder's mean (the paper's samples) or its mode."""

from __future__ import annotations

import pytest
import torch

from ganji.errors import GanjiError
from ganji.recipes import spec
from ganji.runtime.device import choose_precision


def vae_recipe(decoder_output: str):
    model = spec("vae")
    cfg = model.config({"latent_dim": 4, "base_width": 4, "decoder_output": decoder_output})
    recipe = model.recipe_class()(cfg, 16, 1, 1, choose_precision(False, torch.device("cpu"), compile=False))
    recipe.build()
    return recipe


def test_the_paper_default_is_the_mean() -> None:
    assert spec("vae").options().decoder_output == "mean"


def test_the_mode_is_the_thresholded_mean_of_the_same_weights() -> None:
    mean, mode = vae_recipe("mean"), vae_recipe("mode")
    mode.nets["vae"].load_state_dict(mean.nets["vae"].state_dict())
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    p = mean.generate(z, use_ema=False)
    x = mode.generate(z, use_ema=False)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert 0 < float(p.min()) and float(p.max()) < 1  # the mean is grey: σ of finite logits
    assert torch.equal(x, (p > 0.5).float())  # the likeliest value of each pixel's Bernoulli


def test_an_unknown_decoder_output_is_refused() -> None:
    with pytest.raises(GanjiError, match="--decoder-output must be mean or mode"):
        spec("vae").config({"decoder_output": "median"})
    assert "decoder mode" in spec("vae").recipe_class().describe(spec("vae").options(decoder_output="mode"))
