"""Training presets for `ganji compare --train quick|paper`.

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

QUICK_DATASET = "kanji32"
QUICK_SIZE = 32

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"vae": {}, "gan": {}, "ddpm": {}},
    "quick": {
        "vae": {"dataset": QUICK_DATASET, "epochs": 4, "time_budget": 3.0, "sample_every": 1, "batch_size": 32,
                "options": {"latent_dim": 64, "base_width": 16, "beta": 0.1}},
        "gan": {"dataset": QUICK_DATASET, "epochs": 20, "time_budget": 6.0, "sample_every": 1, "batch_size": 64,
                "lr": 2e-4, "options": {"arch": "dcgan", "layers": (128, 64, 32), "latent_dim": 64, "loss": "bce",
                                        "disc_ratio": 1}},
        "ddpm": {"dataset": QUICK_DATASET, "epochs": 6, "time_budget": 6.0, "sample_every": 1, "batch_size": 32,
                 "lr": 1e-3, "options": {"base_width": 16, "timesteps": 256}},
    },
}
# What `ganji compare` measures with after training with a preset: samples per model, DDIM steps.
PRESET_EVAL_N = {"paper": 10_000, "quick": 1_000}
PRESET_DDIM_STEPS = {"paper": 50, "quick": 20}


def preset_dataset(preset: str) -> tuple[str, int]:
    """The dataset name and size a preset trains on."""
    return (QUICK_DATASET, QUICK_SIZE) if preset == "quick" else ("kanji", 64)
