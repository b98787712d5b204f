"""Training presets for `ganji compare --train quick|paper`; each model's quick settings are its
registry entry's `quick` (ganji.recipes.registry), planned as follows.

`paper`: the GANji study's final settings, 100 epochs on the 64 px set (the defaults of `ganji train`).
`quick`: the whole study (data, four models, metrics at n = 2,000, report) in at most 20 minutes on 2
CPU cores, with the time given to the model that turns it into quality. Planned on a 2-core CPU that
trains the VAE at ~180-300 img/s, the GAN at ~700 and the U-Nets at ~210 (the README's "What we tried"
has the measurements; each model's time budget is a cap that keeps the whole under 20 minutes):
- 32 px images: kanji stay legible and every network does 4x less work per image.
- VAE: latent 64, base width 16, batch 32, 4 epochs (~2.5 minutes; 3 epochs scored far worse) and β = 0.1: at β = 1 a run this
  short is still in posterior collapse (every sample the mean kanji); at β = 0.1 the latent carries
  ~75 nats and samples differ (blurry, as the paper's VAE).
- GAN: the DCGAN-style networks (128, 64, 32), non-saturating BCE loss, one D step per G step, no
  gradient penalty, 20 epochs (~4.5 minutes; 12 epochs scored twice its FID). The paper's
  ResNet + hinge + GP at 5 D steps manages 40 img/s here: 2 epochs in that time, and still noise.
- DDPM: U-Net base width 16, T = 256, batch 32 and lr 1e-3 (more, larger steps), v prediction with
  min-SNR-5 weighting, sampled with DPM-Solver++; 3 epochs (~2.5 minutes: it gains less per minute
  than the flow, 149 at 4 epochs and 114 at 8 against the flow's 35 at 9).
- flow: the same U-Net, batch and lr as the DDPM; the best model per minute, so it gets the most
  time: 8 epochs (~6.5 minutes).
Iterative models are scored at the same 14 network calls per sample (DPM-Solver++-14, Heun-7): on
the quick models both scored better than at 20 calls, and sample faster (README "What we tried").
The learning-rate schedules are planned for the epochs.
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
# What `ganji compare` measures with after training with a preset: samples per model, and the network
# calls per sample of each iterative model's fast sampler (DPM-Solver++ for the DDPM, Heun for the flow).
PRESET_EVAL_N = {"paper": 10_000, "quick": 2_000}
PRESET_STEPS = {"paper": 50, "quick": 14}


def preset_dataset(preset: str) -> tuple[str, int]:
    """The dataset name and size a preset trains on."""
    return (QUICK_DATASET, QUICK_SIZE) if preset == "quick" else ("kanji", 64)
