"""Diffusion math: schedules, the forward process, and both samplers checked against exact denoisers.

For data whose distribution is known, the optimal ε-predictor E[ε | x_t] has a closed form; a sampler
driven by it must give back that distribution. That checks the update equations themselves, not
just that they run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from ganji.diffusion import (
    DEFAULT_DDIM_STEPS,
    NoiseSchedule,
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    q_sample,
    sampling_steps,
)

Model = Callable[[Tensor, Tensor], Tensor]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=gen(seed))


def point_mass_denoiser(schedule: NoiseSchedule, c: float) -> Model:
    """All data is the point x_0 = c, so ε = (x_t - √ᾱ_t c) / √(1-ᾱ_t) exactly."""

    def eps(x: Tensor, t: Tensor) -> Tensor:
        a = schedule.sqrt_alphas_cumprod[t].reshape(-1, 1, 1, 1)
        b = schedule.sqrt_one_minus_alphas_cumprod[t].reshape(-1, 1, 1, 1)
        return (x - a * c) / b

    return eps


def gaussian_denoiser(schedule: NoiseSchedule, mu: float, sd: float) -> Model:
    """Pixels x_0 ~ N(mu, sd²) independently: E[ε | x_t] = √(1-ᾱ) (x_t - √ᾱ mu) / (ᾱ sd² + 1 - ᾱ)."""

    def eps(x: Tensor, t: Tensor) -> Tensor:
        abar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1).double()
        return ((1 - abar).sqrt() * (x.double() - abar.sqrt() * mu) / (abar * sd**2 + 1 - abar)).float()

    return eps


def tiny_model() -> Model:
    """A fixed, non-trivial ε-predictor with parameters (so grad tracking would show)."""
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(randn(1, 1, 3, 3, seed=123) * 0.3)
        conv.bias.fill_(0.05)
    return lambda x, t: conv(x) * (1 + t.float().reshape(-1, 1, 1, 1) / 100)


# --- schedules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_schedule_properties(name: str) -> None:
    s = NoiseSchedule.make(name)
    assert s.timesteps == 1024
    for value in (s.betas, s.alphas, s.alphas_cumprod, s.posterior_variance, s.posterior_mean_coef_x0):
        assert value.shape == (1024,) and value.dtype == torch.float32
    abar = s.alphas_cumprod
    assert torch.all(abar[1:] < abar[:-1]) and abar.min() > 0 and abar.max() < 1
    assert torch.all((s.betas > 0) & (s.betas <= 0.999))
    assert abar[0] > 0.999 and abar[-1] < 1e-4
    # the named tensors agree with their definitions
    assert torch.allclose(s.alphas, 1 - s.betas)
    assert torch.allclose(abar, torch.cumprod(s.alphas.double(), 0).float(), rtol=1e-5, atol=0)
    assert torch.allclose(s.alphas_cumprod_prev[1:], abar[:-1]) and s.alphas_cumprod_prev[0] == 1
    assert torch.allclose(s.sqrt_alphas_cumprod**2 + s.sqrt_one_minus_alphas_cumprod**2, torch.ones(1024))
    beta_tilde = s.betas * (1 - s.alphas_cumprod_prev) / (1 - abar)
    assert torch.allclose(s.posterior_variance, beta_tilde, rtol=1e-3, atol=1e-7)
    assert s.posterior_variance[0] == 0 and torch.all(s.posterior_variance <= s.betas)
    # μ̃_0 = x_0 exactly: the last reverse step returns the x_0 prediction
    assert s.posterior_mean_coef_x0[0] == 1 and s.posterior_mean_coef_xt[0] == 0


def test_linear_endpoints() -> None:
    betas = NoiseSchedule.make("linear", 1024).betas
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(betas[1:] - betas[:-1], torch.full((1023,), (0.02 - 1e-4) / 1023), atol=1e-7)


def test_cosine_follows_iddpm_eq17() -> None:
    T, s = 1000, 0.008
    sched = NoiseSchedule.make("cosine", T)

    def abar(t: int) -> float:  # ᾱ at the papers' 1-based step t = our index t-1
        f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        return f(t) / f(0)

    for index in (0, 10, 500, 900):
        assert sched.alphas_cumprod[index].item() == pytest.approx(abar(index + 1), rel=1e-5)
    assert sched.alphas_cumprod[0].item() == pytest.approx(1, abs=1e-4)
    assert sched.betas.max().item() == pytest.approx(0.999)  # clamped at the last step
    assert sched.betas[-1].item() == pytest.approx(0.999)


def test_bad_schedules() -> None:
    with pytest.raises(ValueError, match="quadratic"):
        NoiseSchedule.make("quadratic")
    for bad in (1, 0):
        with pytest.raises(ValueError):
            NoiseSchedule.make("cosine", bad)
    assert NoiseSchedule.make("linear", 2).timesteps == 2


def test_schedule_to_device() -> None:
    s = NoiseSchedule.make("cosine", 16)
    moved = s.to("meta")
    assert isinstance(moved, NoiseSchedule) and moved.timesteps == 16
    assert moved.betas.device.type == "meta" and moved.posterior_mean_coef_xt.device.type == "meta"
    assert s.betas.device.type == "cpu"  # frozen: the original is untouched
    assert torch.equal(s.to("cpu").alphas_cumprod, s.alphas_cumprod)


# --- forward process ------------------------------------------------------------------------------


def test_q_sample_moments() -> None:
    s = NoiseSchedule.make("cosine", 1000)
    n = 4000
    x0 = torch.full((n, 1, 2, 2), 0.7)
    noise = randn(n, 1, 2, 2)
    early = q_sample(s, x0, torch.zeros(n, dtype=torch.long), noise)
    assert (early - x0).abs().max() < 0.05
    late = q_sample(s, x0, torch.full((n,), 999, dtype=torch.long), noise)
    assert abs(late.mean().item()) < 0.03 and abs(late.std().item() - 1) < 0.03
    middle = q_sample(s, x0, torch.full((n,), 500, dtype=torch.long), noise)
    a = s.alphas_cumprod[500].item()
    assert middle.mean().item() == pytest.approx(math.sqrt(a) * 0.7, abs=0.03)
    assert middle.std().item() == pytest.approx(math.sqrt(1 - a), abs=0.03)


def test_q_sample_per_example_t_and_dtype() -> None:
    s = NoiseSchedule.make("linear", 100)
    x0, noise = randn(3, 1, 4, 4, seed=1), randn(3, 1, 4, 4, seed=2)
    t = torch.tensor([0, 42, 99])
    out = q_sample(s, x0, t, noise)
    for i in range(3):
        expected = s.sqrt_alphas_cumprod[t[i]] * x0[i] + s.sqrt_one_minus_alphas_cumprod[t[i]] * noise[i]
        assert torch.allclose(out[i], expected)
    assert torch.equal(q_sample(s, x0, t.int(), noise), out)  # int32 indices work too


def test_q_sample_compiles_without_graph_breaks() -> None:
    s = NoiseSchedule.make("cosine", 64)
    compiled = torch.compile(lambda x, t, e: q_sample(s, x, t, e), fullgraph=True, backend="eager")
    x0, noise = randn(4, 1, 8, 8), randn(4, 1, 8, 8, seed=1)
    t = torch.tensor([0, 5, 40, 63])
    assert torch.allclose(compiled(x0, t, noise), q_sample(s, x0, t, noise))


# --- samplers against exact denoisers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sampler"),
    [("cosine", "ddpm"), ("linear", "ddpm"), ("cosine", "ddim"), ("linear", "ddim"), ("cosine", "ddim-eta")],
)
def test_samplers_recover_a_point_mass(name: str, sampler: str) -> None:
    s = NoiseSchedule.make(name, 100)
    c = 0.3
    model = point_mass_denoiser(s, c)
    x_T = randn(8, 1, 4, 4)
    if sampler == "ddpm":
        out = ddpm_sample(model, s, x_T, generator=gen(1))
    else:
        out = ddim_sample(model, s, x_T, steps=10, eta=1.0 if sampler == "ddim-eta" else 0.0, generator=gen(1))
    assert out.shape == x_T.shape and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, c), atol=1e-4), out.flatten()[:4]


def test_ddpm_reproduces_a_gaussian_distribution() -> None:
    """Pixels ~ N(0.2, 0.2²): ancestral sampling with the exact E[ε|x_t] gives back its mean and spread
    (this checks the noise scale σ_t, which a point mass cannot)."""
    s = NoiseSchedule.make("cosine", 1000)
    out = ddpm_sample(gaussian_denoiser(s, 0.2, 0.2), s, randn(8, 1, 32, 32), generator=gen(1))
    assert out.mean().item() == pytest.approx(0.2, abs=0.01)
    assert out.std().item() == pytest.approx(0.2, abs=0.01)


def test_ddim_eta0_follows_the_gaussian_ode_map() -> None:
    """For Gaussian data the deterministic (probability-flow) map is x_0 = mu + sd · x_T."""
    s = NoiseSchedule.make("cosine", 500)
    x_T = randn(4, 1, 32, 32)
    model = gaussian_denoiser(s, 0.2, 0.2)
    out = ddim_sample(model, s, x_T, steps=500)
    assert (out - (0.2 + 0.2 * x_T)).abs().mean() < 0.005
    # fewer steps approximate the same map, more coarsely
    coarse = ddim_sample(model, s, x_T, steps=50)
    assert (coarse - (0.2 + 0.2 * x_T)).abs().mean() < 0.03


def test_ddpm_is_ddim_with_eta1_over_all_steps() -> None:
    """σ = β̃_t makes Algorithm 2 the η = 1, S = T case of DDIM: same noise, same result."""
    s = NoiseSchedule.make("cosine", 100)
    model = gaussian_denoiser(s, 0.1, 0.5)  # smooth, so float32 rounding is not amplified step to step
    x_T = randn(2, 1, 8, 8)
    a = ddpm_sample(model, s, x_T, generator=gen(7))
    b = ddim_sample(model, s, x_T, steps=100, eta=1.0, generator=gen(7))
    assert torch.allclose(a, b, atol=1e-4)


# --- sampler behaviour ----------------------------------------------------------------------------


def test_ddim_eta0_is_deterministic_and_differs_from_ddpm() -> None:
    s = NoiseSchedule.make("linear", 50)
    model = tiny_model()
    x_T = randn(2, 1, 8, 8)
    a = ddim_sample(model, s, x_T, steps=10, generator=gen(1))
    b = ddim_sample(model, s, x_T, steps=10, generator=gen(2))
    assert torch.equal(a, b)
    assert torch.equal(a, ddim_sample(model, s, x_T, steps=10))  # no generator needed
    assert not torch.allclose(a, ddpm_sample(model, s, x_T, generator=gen(1)))
    assert not torch.allclose(a, ddim_sample(model, s, x_T, steps=10, eta=1.0, generator=gen(1)))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim-eta"])
def test_stochastic_samplers_follow_the_generator(sampler: str) -> None:
    s = NoiseSchedule.make("linear", 30)
    model = tiny_model()
    x_T = randn(2, 1, 8, 8)

    def run(seed: int) -> Tensor:
        if sampler == "ddpm":
            return ddpm_sample(model, s, x_T, generator=gen(seed))
        return ddim_sample(model, s, x_T, steps=10, eta=0.5, generator=gen(seed))

    assert torch.equal(run(5), run(5))
    assert not torch.allclose(run(5), run(6))


def test_samplers_clip_x0_predictions_and_leave_inputs_alone() -> None:
    s = NoiseSchedule.make("cosine", 40)
    wild = lambda x, t: -50 * torch.ones_like(x)  # noqa: E731  x̂_0 far outside [-1, 1]
    x_T = randn(2, 1, 4, 4)
    before = x_T.clone()
    for out in (ddpm_sample(wild, s, x_T, generator=gen(0)), ddim_sample(wild, s, x_T, steps=8)):
        assert out.abs().max() <= 1 and torch.isfinite(out).all()
    assert torch.equal(x_T, before)


def test_samplers_run_without_grad_and_in_float32() -> None:
    s = NoiseSchedule.make("cosine", 20)
    inner = tiny_model()
    seen: list[bool] = []

    def bf16_model(x: Tensor, t: Tensor) -> Tensor:
        seen.append(torch.is_grad_enabled())
        assert x.dtype == torch.float32 and t.dtype == torch.long and t.shape == (x.shape[0],)
        return inner(x, t).bfloat16()  # as under bf16 autocast

    x_T = randn(2, 1, 8, 8).bfloat16()
    for out in (ddpm_sample(bf16_model, s, x_T, generator=gen(0)), ddim_sample(bf16_model, s, x_T, steps=5)):
        assert out.dtype == torch.float32 and not out.requires_grad
    assert seen and not any(seen)


def test_ddim_timesteps() -> None:
    assert ddim_timesteps(1024, 1) == [1023]
    assert ddim_timesteps(1024, 2) == [1023, 0]
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    assert ddim_timesteps(1024, 4) == [1023, 682, 341, 0]
    for steps in range(1, 101):
        seq = ddim_timesteps(100, steps)
        assert len(seq) == steps and seq[0] == 99
        assert all(a > b for a, b in zip(seq, seq[1:], strict=False))
        gaps = [a - b for a, b in zip(seq, seq[1:], strict=False)]
        assert not gaps or max(gaps) - min(gaps) <= 1  # evenly spaced
    for bad in (0, -1, 1025):
        with pytest.raises(ValueError):
            ddim_timesteps(1024, bad)


def test_ddim_validates_steps_and_eta() -> None:
    s = NoiseSchedule.make("cosine", 16)
    x_T = randn(1, 1, 4, 4)
    for bad in (0, 17):
        with pytest.raises(ValueError, match="steps"):
            ddim_sample(tiny_model(), s, x_T, steps=bad)
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(tiny_model(), s, x_T, steps=4, eta=-0.1)
    with pytest.raises(ValueError):  # the default 50 steps exceed T = 16
        ddim_sample(tiny_model(), s, x_T)


def test_on_step_and_model_calls() -> None:
    s = NoiseSchedule.make("cosine", 40)
    model_ts: list[int] = []

    def model(x: Tensor, t: Tensor) -> Tensor:
        model_ts.append(int(t[0]))
        return torch.zeros_like(x)

    steps: list[int] = []
    ddim_sample(model, s, randn(1, 1, 4, 4), steps=7, on_step=steps.append)
    assert steps == list(range(7)) and model_ts == ddim_timesteps(40, 7)
    assert len(model_ts) == sampling_steps("ddim", 7, s)
    steps.clear()
    model_ts.clear()
    ddpm_sample(model, s, randn(1, 1, 4, 4), on_step=steps.append)
    assert steps == list(range(40)) and model_ts == list(range(39, -1, -1))
    assert len(model_ts) == sampling_steps("ddpm", None, s)


def test_sampling_steps() -> None:
    s = NoiseSchedule.make("cosine", 1024)
    assert sampling_steps("ddpm", None, s) == 1024
    assert sampling_steps("ddpm", 10, s) == 1024  # steps only matter to DDIM
    assert sampling_steps("ddim", None, s) == DEFAULT_DDIM_STEPS == 50
    assert sampling_steps("ddim", 20, s) == 20
    with pytest.raises(ValueError):
        sampling_steps("euler", None, s)
