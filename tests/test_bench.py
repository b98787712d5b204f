"""`ganji bench`: the figures exist, are positive, and FLOPs match torch's own counter."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ganji.bench import CountFlops, bench_sample, bench_train
from ganji.models.unet import UNet, UNetConfig


def test_flop_counter_agrees_with_torch() -> None:
    net = UNet(UNetConfig(image_size=16, base_width=8))
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([1, 2])
    with CountFlops() as ours:
        net(x, t)
    with FlopCounterMode(display=False) as theirs:
        net(x, t)
    assert ours.total == theirs.get_total_flops() > 0


@pytest.mark.parametrize("model", ["vae", "gan", "ddpm"])
def test_bench_train_reports_positive_figures(model: str) -> None:
    opts = {"vae": {"base_width": 8, "latent_dim": 8}, "gan": {"layers": (16, 8, 8, 8), "latent_dim": 8, "disc_ratio": 2},
            "ddpm": {"base_width": 8, "timesteps": 50}}[model]
    r = bench_train(model, "cpu", size=16, batch_size=4, warmup=1, min_steps=1, max_seconds=0, options=opts)
    assert r.images_per_s > 0 and r.gflops_per_image > 0 and r.parameters > 0 and r.mfu is None
    assert r.epoch_s == pytest.approx((10_020 // 4) * 4 / r.images_per_s)


def test_bench_sample_scales_only_what_it_did_not_run() -> None:
    opts = {"base_width": 8, "timesteps": 40}
    full = bench_sample("ddpm", "ddpm", None, "cpu", size=16, batch_size=2, options=opts, extrapolate_after=3)
    assert full.model_calls == 40 and full.extrapolated_from_steps == 3
    ddim = bench_sample("ddpm", "ddim", 5, "cpu", size=16, batch_size=2, options=opts, extrapolate_after=30)
    assert ddim.model_calls == 5 and ddim.extrapolated_from_steps is None  # the whole sampler ran
    # Speeds themselves are `ganji bench`'s to print, not a test's to compare: only their sanity here.
    assert full.seconds_per_1000 > 0 and ddim.seconds_per_1000 > 0
