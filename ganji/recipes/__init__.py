"""How each model is trained and sampled: its networks, optimisers, loss and one training step.

The engine (ganji.train.loop) owns everything else: data, devices, EMA, checkpoints, logging.
"""

from __future__ import annotations

from ganji.recipes.base import Recipe


def recipe_class(model: str) -> type[Recipe]:
    """The recipe for `model` (imported lazily so that `ganji --help` stays fast)."""
    if model == "vae":
        from ganji.recipes.vae import VAERecipe

        return VAERecipe
    if model == "gan":
        from ganji.recipes.gan import GANRecipe

        return GANRecipe
    if model == "ddpm":
        from ganji.recipes.ddpm import DDPMRecipe

        return DDPMRecipe
    raise ValueError(f"unknown model {model!r}")
