"""How each model is trained and sampled, and the registry of the models (ganji.recipes.registry).

A recipe (ganji.recipes.base.Recipe) owns a model's networks, optimisers, loss, one training step and
its samplers; the engine (ganji.train.loop) owns everything else: data, devices, EMA, checkpoints,
logging. Importing this package does not import torch.
"""

from __future__ import annotations

from ganji.recipes.registry import (
    MODELS,
    ModelSpec,
    Sampler,
    SamplerChoice,
    SamplingSpec,
    config_from_json,
    model_names,
    spec,
)

__all__ = ["MODELS", "ModelSpec", "Sampler", "SamplerChoice", "SamplingSpec", "config_from_json", "model_names", "spec"]
