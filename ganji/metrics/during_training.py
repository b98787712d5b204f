"""FID during training (`ganji train --eval-every N`): the same protocol as `ganji fid`, on fewer samples.

GANs in particular can get worse late in training (mode collapse); comparable tools measure as they
go and keep the best checkpoint as well as the latest. An iterative model (DDPM, flow) is sampled with
its fast sampler and EVAL_STEPS steps here (DDIM-50 for the DDPM), so an evaluation costs a fraction
of the 1024-step sampler; its scores are comparable with each other, not with a full-sampler `ganji fid`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganji.data.store import Dataset
from ganji.features.extractors import Extractor, load_extractor
from ganji.home import cache_dir
from ganji.metrics.protocol import dataset_features, reference_rows, score_features
from ganji.recipes import ModelSpec
from ganji.recipes.base import Recipe

EVAL_STEPS = 50
EVAL_SEED = 12_345  # fixed: every evaluation of a run sees the same noise


class TrainingEvaluator:
    """Scores a recipe's current (EMA) generator against the dataset it trains on."""

    def __init__(self, home: Path, dataset: Dataset, model: ModelSpec, n: int, features: str, device: torch.device) -> None:
        self.model = model
        self.n = n
        self.extractor: Extractor = load_extractor(features, device, cache_dir(home))
        self.training = dataset_features(home, dataset, self.extractor)
        self.real = self.training[reference_rows(len(self.training), n).numpy()]

    def sampler_fields(self, recipe: Recipe) -> dict[str, Any]:
        """The sampler of the evaluations, for the metrics log ({} for a one-pass model)."""
        choice = recipe.fast_sampler(EVAL_STEPS)
        return choice.fields if choice else {}

    def score(self, recipe: Recipe, step: int, batch_size: int = 250) -> dict[str, float]:
        from ganji.sampling import LoadedModel, SampleRequest, generate

        loaded = LoadedModel(recipe, self.model.name, "training", Path(), step, {})
        request = SampleRequest(self.n, seed=EVAL_SEED, batch_size=batch_size, sampler=recipe.fast_sampler(EVAL_STEPS))
        images = generate(loaded, request)
        fake = self.extractor.features(images)
        scores = score_features(self.real, fake, self.training)
        return {k: float(np.round(v, 6)) for k, v in scores.items()}
