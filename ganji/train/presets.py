"""Training presets for `ganji compare --train quick|paper`.

`paper`: the GANji study's final settings, 100 epochs on the 64 px set (the defaults of `ganji train`).
`quick`: the whole study (data, three models, metrics, report) in about 15 minutes on 2 CPU cores,
still giving kanji-like samples. Choices, measured on a 2-core CPU (see CHANGELOG / issue notes):
32 px images (kanji stay legible; 4x fewer pixels), narrower networks, and a wall-clock budget per
model so that a slower machine still finishes (the learning-rate schedules are planned for the
epochs; the budget is a safety net, not the plan).
"""

from __future__ import annotations

from typing import Any

QUICK_DATASET = "kanji32"
QUICK_SIZE = 32

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"vae": {}, "gan": {}, "ddpm": {}},
    "quick": {
        "vae": {"dataset": QUICK_DATASET, "epochs": 4, "time_budget": 2.0, "sample_every": 1,
                "options": {"latent_dim": 64, "base_width": 16}},
        "gan": {"dataset": QUICK_DATASET, "epochs": 4, "time_budget": 4.0, "sample_every": 1,
                "options": {"layers": (128, 64, 32), "latent_dim": 64}},
        "ddpm": {"dataset": QUICK_DATASET, "epochs": 4, "time_budget": 5.0, "sample_every": 1, "batch_size": 64,
                 "lr": 4e-4, "options": {"base_width": 16, "timesteps": 256}},
    },
}
# What `ganji compare` measures with after training with a preset: samples per model, DDIM steps.
PRESET_EVAL_N = {"paper": 10_000, "quick": 1_000}
PRESET_DDIM_STEPS = {"paper": 50, "quick": 20}


def preset_dataset(preset: str) -> tuple[str, int]:
    """The dataset name and size a preset trains on."""
    return (QUICK_DATASET, QUICK_SIZE) if preset == "quick" else ("kanji", 64)
