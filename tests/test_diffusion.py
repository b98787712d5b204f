"""Diffusion math: schedules, the forward process, and samplers checked against an exact denoiser."""

from __future__ import annotations

import pytest
import torch

from ganji.diffusion import NoiseSchedule, ddim_sample, ddim_timesteps, ddpm_sample, q_sample


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_schedule_properties(name: str) -> None:
    s = NoiseSchedule.make(name)
    assert s.timesteps == 1024
    abar = s.alphas_cumprod
    assert torch.all(abar[1:] < abar[:-1]) and abar.min() >= 0 and abar.max() < 1
    assert torch.all((s.betas > 0) & (s.betas <= 0.999))
    assert abar[0] > 0.99 and abar[-1] < 1e-3
    assert torch.all(s.posterior_variance <= s.betas + 1e-7)


def test_linear_endpoints_and_cosine_clamp() -> None:
    lin = NoiseSchedule.make("linear", 1024)
    assert lin.betas[0].item() == pytest.approx(1e-4) and lin.betas[-1].item() == pytest.approx(0.02)
    assert NoiseSchedule.make("cosine", 1024).betas.max().item() == pytest.approx(0.999)


def test_bad_schedules() -> None:
    with pytest.raises(ValueError):
        NoiseSchedule.make("quadratic")
    with pytest.raises(ValueError):
        NoiseSchedule.make("cosine", 1)


def test_q_sample_moments() -> None:
    s = NoiseSchedule.make("cosine", 1000)
    x0 = torch.full((4000, 1, 2, 2), 0.7)
    noise = torch.randn_like(x0)
    early = q_sample(s, x0, torch.zeros(4000, dtype=torch.long), noise)
    assert (early - x0).abs().mean() < 0.05
    late = q_sample(s, x0, torch.full((4000,), 999, dtype=torch.long), noise)
    assert abs(late.mean().item()) < 0.05 and abs(late.std().item() - 1) < 0.05


def exact_denoiser(schedule: NoiseSchedule, c: float):
    """The optimal ε-predictor when all data is the point x_0 = c: ε = (x_t - √ᾱ_t c) / √(1-ᾱ_t)."""

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = schedule.sqrt_alphas_cumprod[t].reshape(-1, 1, 1, 1)
        b = schedule.sqrt_one_minus_alphas_cumprod[t].reshape(-1, 1, 1, 1)
        return (x - a * c) / b

    return eps


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "ddim-eta"])
def test_samplers_recover_a_point_mass(sampler: str) -> None:
    s = NoiseSchedule.make("cosine", 100)
    model = exact_denoiser(s, 0.3)
    x_T = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    if sampler == "ddpm":
        out = ddpm_sample(model, s, x_T, generator=g)
    else:
        out = ddim_sample(model, s, x_T, steps=10, eta=1.0 if sampler == "ddim-eta" else 0.0, generator=g)
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-3), out.flatten()[:4]


def tiny_model():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    return lambda x, t: conv(x) * (1 + t.float().reshape(-1, 1, 1, 1) / 100)


def test_ddim_eta0_is_deterministic_and_differs_from_ddpm() -> None:
    s = NoiseSchedule.make("linear", 50)
    model = tiny_model()
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a = ddim_sample(model, s, x_T, steps=10, generator=torch.Generator().manual_seed(1))
    b = ddim_sample(model, s, x_T, steps=10, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = ddpm_sample(model, s, x_T, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, c)


def test_ddpm_seeds() -> None:
    s = NoiseSchedule.make("linear", 30)
    model = tiny_model()
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    run = lambda seed: ddpm_sample(model, s, x_T, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_ddim_steps_and_callbacks() -> None:
    assert ddim_timesteps(1024, 1) == [1023]
    seq = ddim_timesteps(1024, 50)
    assert len(seq) == 50 and seq[0] == 1023 and seq[-1] == 0 and seq == sorted(seq, reverse=True)
    for bad in (0, 1025):
        with pytest.raises(ValueError):
            ddim_timesteps(1024, bad)
    s = NoiseSchedule.make("cosine", 40)
    calls: list[int] = []
    ddim_sample(tiny_model(), s, torch.randn(1, 1, 4, 4), steps=7, on_step=calls.append)
    assert calls == list(range(7))
    calls.clear()
    ddpm_sample(tiny_model(), s, torch.randn(1, 1, 4, 4), on_step=calls.append)
    assert len(calls) == 40
