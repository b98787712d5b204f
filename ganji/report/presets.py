"""Training presets for `ganji compare --train quick|paper`; each model's quick settings are its
registry entry's `quick` (ganji.recipes.registry), planned as follows.

`paper`: the GANji study's final settings, 100 epochs on the 64 px set (the defaults of `ganji train`).
`quick`: the whole study (data, three models, metrics, report) in about 15 minutes on 2 CPU cores,
still giving kanji-like samples. Chosen from short runs on a 2-core CPU (issue 6's note has the figures):
- 32 px images: kanji stay legible and every network does 4x less work per image.
- VAE: latent 64, base width 16, batch 32, 4 epochs (about 320 img/s, 1,250 steps in ~2 minutes) and
  β = 0.1: at β = 1 this short run is still in posterior collapse (KL 2.3 nats, every sample the mean
  kanji); at β = 0.1 the latent carries 75 nats and samples differ (blurry, as the paper's VAE).
- GAN: the DCGAN-style networks (128, 64, 32), non-saturating BCE loss, one D step per G step, no
  gradient penalty: about 750 img/s, so 20 epochs (3,000 G steps) fit in 5 minutes. The paper's
  ResNet + hinge + GP at 5 D steps manages 40 img/s here: 2 epochs in that time, and still noise. Hinge
  with spectral norm at this budget gave denser, less varied strokes than BCE (same seed and time).
- DDPM: U-Net base width 16, T = 256 (sampled with DDIM-20), batch 32 and lr 1e-3 (more, larger
  steps: about 230 img/s, 6 epochs = 1,900 steps in under 5 minutes, cosine-annealed to 0).
The learning-rate schedules are planned for the epochs; each model's wall-clock budget is a safety
net for slower machines, not the plan.
"""

from __future__ import annotations

from typing import Any

from ganji.recipes import MODELS

QUICK_DATASET = "kanji32"
QUICK_SIZE = 32

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {m.name: {} for m in MODELS},
    "quick": {m.name: {"dataset": QUICK_DATASET, **m.quick} for m in MODELS},
}
# What `ganji compare` measures with after training with a preset: samples per model, and the steps
# of each iterative model's fast sampler (DDIM for the DDPM).
PRESET_EVAL_N = {"paper": 10_000, "quick": 1_000}
PRESET_STEPS = {"paper": 50, "quick": 20}


def preset_dataset(preset: str) -> tuple[str, int]:
    """The dataset name and size a preset trains on."""
    return (QUICK_DATASET, QUICK_SIZE) if preset == "quick" else ("kanji", 64)
