"""Diffusion math: noise schedules, the forward process, and the DDPM and DDIM samplers.

Notation follows Ho et al. 2020 ("Denoising Diffusion Probabilistic Models"):
  β_t  noise added at step t              α_t = 1 - β_t            ᾱ_t = Π_{s≤t} α_s
  x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε            (eq. 4, the forward process in closed form)
Timesteps are 0-based here: t = 0 is the first noising step, t = T-1 the last.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor

ModelFn = Callable[[Tensor, Tensor], Tensor]  # (x_t, t) -> predicted noise ε_θ(x_t, t)


@dataclass(frozen=True)
class NoiseSchedule:
    """The schedule's named tensors (length T), computed in float64 and stored in float32."""

    betas: Tensor  # β_t
    alphas: Tensor  # α_t = 1 - β_t
    alphas_cumprod: Tensor  # ᾱ_t
    alphas_cumprod_prev: Tensor  # ᾱ_{t-1}, with ᾱ_{-1} = 1
    sqrt_alphas_cumprod: Tensor  # √ᾱ_t
    sqrt_one_minus_alphas_cumprod: Tensor  # √(1-ᾱ_t)
    posterior_variance: Tensor  # β̃_t = (1-ᾱ_{t-1}) / (1-ᾱ_t) · β_t   (eq. 7)

    @property
    def timesteps(self) -> int:
        return int(self.betas.shape[0])

    @classmethod
    def make(cls, name: str = "cosine", timesteps: int = 1024) -> NoiseSchedule:
        """`cosine` (Nichol & Dhariwal 2021, eq. 17: s = 0.008, β clamped at 0.999) or `linear`
        (Ho et al. 2020: β from 1e-4 to 0.02), over `timesteps` steps."""
        if timesteps < 2:
            raise ValueError(f"timesteps must be at least 2 (got {timesteps})")
        if name == "linear":
            betas = torch.linspace(1e-4, 0.02, timesteps, dtype=torch.float64)
        elif name == "cosine":
            s = 0.008
            steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2  # ᾱ(t) = f(t) / f(0)
            abar = f / f[0]
            betas = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
        else:
            raise ValueError(f"unknown schedule {name!r}: use cosine or linear")
        alphas = 1 - betas
        abar = torch.cumprod(alphas, dim=0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        posterior = betas * (1 - abar_prev) / (1 - abar)
        tensors = dict(
            betas=betas,
            alphas=alphas,
            alphas_cumprod=abar,
            alphas_cumprod_prev=abar_prev,
            sqrt_alphas_cumprod=abar.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1 - abar).sqrt(),
            posterior_variance=posterior,
        )
        return cls(**{k: v.float() for k, v in tensors.items()})

    def to(self, device: torch.device | str) -> NoiseSchedule:
        return NoiseSchedule(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _at(values: Tensor, t: Tensor) -> Tensor:
    """values[t] shaped (N, 1, 1, 1) to broadcast over images (a gather: no host sync)."""
    return values.gather(0, t).reshape(-1, 1, 1, 1)


def q_sample(schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε   (Ho et al. 2020, eq. 4)."""
    return _at(schedule.sqrt_alphas_cumprod, t) * x0 + _at(schedule.sqrt_one_minus_alphas_cumprod, t) * noise


def _predict_x0(schedule: NoiseSchedule, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """x̂_0 = (x_t - √(1-ᾱ_t) ε̂) / √ᾱ_t, clipped to the data range [-1, 1].

    Clipping x̂_0 keeps both samplers inside the data range at every step (as improved-diffusion's
    `clip_denoised` does); the final images are clamped again when quantised.
    """
    x0 = (x_t - _at(schedule.sqrt_one_minus_alphas_cumprod, t) * eps) / _at(schedule.sqrt_alphas_cumprod, t)
    return x0.clamp(-1.0, 1.0)


@torch.no_grad()
def ddpm_sample(
    model: ModelFn,
    schedule: NoiseSchedule,
    x_T: Tensor,
    generator: torch.Generator | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Tensor:
    """Ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2).

    Each step draws x_{t-1} ~ N(μ̃_t(x_t, x̂_0), β̃_t I), the true posterior q(x_{t-1} | x_t, x_0) with
    x̂_0 from the predicted noise (eqs. 6-7); σ_t² = β̃_t is the choice of Ho et al. for x_0 fixed
    to one point and gives cleaner samples at the last steps than σ_t² = β_t.
    """
    x = x_T.float()
    n = x.shape[0]
    s = schedule
    for i, step in enumerate(range(s.timesteps - 1, -1, -1)):
        t = torch.full((n,), step, device=x.device, dtype=torch.long)
        eps = model(x, t).float()
        x0 = _predict_x0(s, x, t, eps)
        # μ̃_t = √ᾱ_{t-1} β_t / (1-ᾱ_t) · x_0 + √α_t (1-ᾱ_{t-1}) / (1-ᾱ_t) · x_t   (eq. 7)
        abar, abar_prev = s.alphas_cumprod[step], s.alphas_cumprod_prev[step]
        coef0 = abar_prev.sqrt() * s.betas[step] / (1 - abar)
        coeft = s.alphas[step].sqrt() * (1 - abar_prev) / (1 - abar)
        mean = coef0 * x0 + coeft * x
        if step > 0:
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = mean + s.posterior_variance[step].sqrt() * z
        else:
            x = mean
        if on_step is not None:
            on_step(i)
    return x


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """`steps` evenly spaced timesteps from T-1 down to 0 (both included when steps ≥ 2)."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"DDIM steps must be between 1 and {timesteps} (got {steps})")
    if steps == 1:
        return [timesteps - 1]
    return [round((timesteps - 1) * (steps - 1 - i) / (steps - 1)) for i in range(steps)]


@torch.no_grad()
def ddim_sample(
    model: ModelFn,
    schedule: NoiseSchedule,
    x_T: Tensor,
    steps: int = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12) on `steps` evenly spaced timesteps; deterministic when eta = 0.

    x_{t'} = √ᾱ_{t'} x̂_0 + √(1-ᾱ_{t'} - σ²) ε̂ + σ z,  σ = η √((1-ᾱ_{t'})/(1-ᾱ_t)) √(1-ᾱ_t/ᾱ_{t'})
    where t' is the next (smaller) timestep of the subsequence, and ᾱ_{t'} = 1 after the last one.
    """
    x = x_T.float()
    n = x.shape[0]
    s = schedule
    seq = ddim_timesteps(s.timesteps, steps)
    for i, step in enumerate(seq):
        t = torch.full((n,), step, device=x.device, dtype=torch.long)
        eps = model(x, t).float()
        x0 = _predict_x0(s, x, t, eps)
        abar = s.alphas_cumprod[step]
        abar_next = s.alphas_cumprod[seq[i + 1]] if i + 1 < len(seq) else torch.ones((), device=x.device)
        # ε re-derived from the clipped x̂_0 keeps the update consistent with it.
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
        sigma = eta * ((1 - abar_next) / (1 - abar) * (1 - abar / abar_next)).clamp(min=0).sqrt()
        x = abar_next.sqrt() * x0 + (1 - abar_next - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0 and i + 1 < len(seq):
            x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if on_step is not None:
            on_step(i)
    return x


def sampling_steps(sampler: str, steps: int | None, schedule: NoiseSchedule) -> int:
    """Network evaluations a sampler makes per image."""
    if sampler == "ddpm":
        return schedule.timesteps
    if sampler == "ddim":
        return steps or 50
    raise ValueError(f"unknown sampler {sampler!r}")
