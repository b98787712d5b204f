"""The DDPM's modern options: v and x_0 prediction, min-SNR-γ weighting, and DPM-Solver++(2M)."""

from __future__ import annotations

import pytest
import torch

from ganji.diffusion import (
    NoiseSchedule,
    ddim_sample,
    dpm_solver_sample,
    eps_from_prediction,
    min_snr_weight,
    prediction_target,
    q_sample,
)
from ganji.errors import GanjiError
from ganji.recipes import spec


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_every_prediction_gives_back_the_noise(prediction: str) -> None:
    s = NoiseSchedule.make("cosine", 100)
    x0, noise, t = torch.rand(6, 1, 4, 4) * 2 - 1, torch.randn(6, 1, 4, 4), torch.tensor([0, 5, 20, 50, 80, 99])
    x_t = q_sample(s, x0, t, noise)
    target = prediction_target(prediction, s, x0, noise, t)
    assert torch.allclose(eps_from_prediction(prediction, s, target, x_t, t), noise, atol=2e-3)


def test_v_is_the_rotation_of_noise_and_data() -> None:
    s = NoiseSchedule.make("linear", 50)
    x0, noise, t = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2), torch.tensor([1, 25, 49])
    a, b = s.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1), s.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(prediction_target("v", s, x0, noise, t), a * noise - b * x0)


def test_min_snr_weights() -> None:
    s = NoiseSchedule.make("cosine", 1000)
    t = torch.arange(1000)
    abar = s.alphas_cumprod
    snr = abar / (1 - abar)
    gamma = 5.0
    eps_w, v_w, x0_w = (min_snr_weight(p, s, t, gamma) for p in ("eps", "v", "x0"))
    assert torch.allclose(x0_w, snr.clamp(max=gamma))
    assert torch.allclose(eps_w * snr, x0_w) and torch.allclose(v_w * (snr + 1), x0_w)
    # Noisy steps (SNR < γ) keep weight 1 for ε; nearly clean ones are down-weighted.
    assert torch.allclose(eps_w[snr < gamma], torch.ones(int((snr < gamma).sum())))
    assert float(eps_w[0]) < 0.01


def test_dpm_solver_with_the_exact_denoiser_lands_on_the_data() -> None:
    """One data point x₀: the ideal ε̂(x_t) = (x_t - √ᾱ_t x₀) / √(1-ᾱ_t); every update stays on the path."""
    s = NoiseSchedule.make("cosine", 200)
    x0 = torch.rand(2, 1, 4, 4) * 1.6 - 0.8
    a, b = s.sqrt_alphas_cumprod, s.sqrt_one_minus_alphas_cumprod

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (x - a[t].view(-1, 1, 1, 1) * x0) / b[t].view(-1, 1, 1, 1)

    calls = []
    out = dpm_solver_sample(eps, s, torch.randn(2, 1, 4, 4), steps=7, on_step=calls.append)
    assert torch.allclose(out, x0, atol=1e-4) and calls == list(range(7))


def test_dpm_solver_is_closer_to_the_ode_solution_than_ddim_at_few_steps() -> None:
    """Gaussian data x₀ ~ N(μ, s²): ε̂ = E[ε | x_t] is exact, so the probability-flow ODE's end point
    is known (DDIM with all T steps); with 20 steps the second-order solver gets much closer."""
    sched = NoiseSchedule.make("cosine", 1000)
    mu, sd = 0.2, 0.3
    a, b = sched.sqrt_alphas_cumprod, sched.sqrt_one_minus_alphas_cumprod

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        at, bt = a[t].view(-1, 1, 1, 1), b[t].view(-1, 1, 1, 1)
        return bt * (x - at * mu) / (at**2 * sd**2 + bt**2)

    x_T = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    exact = ddim_sample(eps, sched, x_T, steps=1000)
    ddim_err = (ddim_sample(eps, sched, x_T, steps=20) - exact).abs().mean()
    dpm_err = (dpm_solver_sample(eps, sched, x_T, steps=20) - exact).abs().mean()
    assert dpm_err < ddim_err / 3, (float(dpm_err), float(ddim_err))


def test_options_check_themselves() -> None:
    for bad, flag in (({"prediction": "score"}, "--prediction"), ({"loss_weighting": "snr"}, "--loss-weighting"),
                      ({"min_snr_gamma": 0.0}, "--min-snr-gamma")):
        with pytest.raises(GanjiError, match=flag):
            spec("ddpm").config(options=bad)


@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_ddpm_learns_with_v_or_x0_prediction_and_min_snr(home, prediction: str) -> None:
    import json

    from conftest import make_kanji, sample_images

    from ganji.sampling import load_model
    from ganji.train.start import train

    make_kanji(home, name="k", size=16, limit=64)
    opts = {"base_width": 16, "timesteps": 100, "prediction": prediction, "loss_weighting": "min-snr"}
    result = train(home, "ddpm", {"dataset": "k", "epochs": 100, "batch_size": 16, "max_steps": 160, "log_every": 20, "lr": 2e-3,
                                  "sample_every": 0, "options": opts}, run_name="r")
    losses = [json.loads(line)["loss"] for line in result.run.metrics_path.read_text().splitlines()]
    assert losses[-1] < 0.6 * losses[0], losses
    loaded = load_model(home, "ddpm", "r")
    a = sample_images(loaded, 4, seed=0, sampler="dpm", steps=8)
    assert a.shape == (4, 1, 16, 16) and torch.equal(a, sample_images(loaded, 4, seed=0, sampler="dpm", steps=8))
    assert not torch.equal(a, sample_images(loaded, 4, seed=0, sampler="ddim", steps=8))
