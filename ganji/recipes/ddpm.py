"""Training and sampling the DDPM (Ho et al. 2020) as in the GANji study, with modern options.

Training (Algorithm 1): t ~ U{0..T-1}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε, loss ‖ε - ε_θ(x_t, t)‖².
Options (paper defaults: `eps`, `none`): the network may predict v or x_0 instead (`--prediction`,
ganji.diffusion.prediction_target), and the per-timestep loss may be weighted by min-SNR-γ
(`--loss-weighting min-snr`, ganji.diffusion.min_snr_weight).
Sampling: `ancestral` over all T steps (Algorithm 2; the old name `ddpm` is an alias), `ddim`
(Song et al. 2021) or `dpm` (DPM-Solver++(2M), Lu et al. 2022) with fewer steps; every sampler gets
ε̂ from the network's prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganji.diffusion import (
    DEFAULT_DDIM_STEPS,
    NoiseSchedule,
    ddim_sample,
    ddpm_sample,
    dpm_solver_sample,
    eps_from_prediction,
    min_snr_weight,
    prediction_target,
    q_sample,
    sampling_steps,
)
from ganji.recipes.base import OnStep
from ganji.recipes.registry import DDPMOptions, SamplerChoice
from ganji.recipes.unet_recipe import UNetRecipe


class DDPMRecipe(UNetRecipe):
    model_name = "ddpm"
    output_options = ("timesteps", "schedule", "prediction")

    def build(self) -> None:
        super().build()
        o: DDPMOptions = self.cfg.options
        self.schedule = NoiseSchedule.make(o.schedule, o.timesteps).to(self.device)

    def train_step(self, x: torch.Tensor, labels: torch.Tensor | None = None, made_up: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        # t and ε for the global batch, this rank's slice (in one process: randint and randn_like(x)).
        t = self.world.draw(x.shape[0], lambda m: torch.randint(0, self.schedule.timesteps, (m,), device=self.device))
        noise = self.draw_noise(x)
        x_t = q_sample(self.schedule, x, t, noise)
        cond = self.training_condition(labels, made_up)
        with self.precision.autocast():
            pred = self._forward(x_t, t) if cond is None else self._forward(x_t, t, cond)
        o: DDPMOptions = self.cfg.options
        target = prediction_target(o.prediction, self.schedule, x, noise, t)
        if o.loss_weighting == "none":
            loss = F.mse_loss(pred.float(), target)
        else:  # min-SNR-γ: a weight per image on its mean squared error
            per_image = (pred.float() - target).square().flatten(1).mean(1)
            loss = (min_snr_weight(o.prediction, self.schedule, t, o.min_snr_gamma) * per_image).mean()
        self.optimise("unet", loss)
        return {"loss": loss.detach()}

    def sample(self, net: nn.Module, noise: torch.Tensor, sampler: SamplerChoice | None, generator: torch.Generator | None,
               on_step: OnStep | None, condition: torch.Tensor | None = None, guidance: float = 0.0,
               guide: nn.Module | None = None) -> torch.Tensor:
        sampler = sampler or SamplerChoice("ancestral")
        out, prediction = self.network_fn(net, condition=condition, guidance=guidance, guide=guide), self.cfg.options.prediction

        def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return eps_from_prediction(prediction, self.schedule, out(x_t, t), x_t, t)

        if sampler.name == "dpm":
            return dpm_solver_sample(eps, self.schedule, noise, steps=sampler.steps or DEFAULT_DDIM_STEPS, on_step=on_step)
        if sampler.name == "ddim":
            return ddim_sample(eps, self.schedule, noise, steps=sampler.steps or DEFAULT_DDIM_STEPS, eta=sampler.eta,
                               generator=generator, on_step=on_step)
        if sampler.name == "ancestral":
            return ddpm_sample(eps, self.schedule, noise, generator=generator, on_step=on_step)
        raise ValueError(f"unknown DDPM sampler {sampler.name!r}")

    def model_calls(self, sampler: SamplerChoice | None) -> int:
        sampler = sampler or SamplerChoice("ancestral")
        return sampling_steps(sampler.name, sampler.steps, self.schedule)

    def max_steps(self, sampler: str) -> int:
        return self.schedule.timesteps  # DDIM walks a subsequence of the T steps

    def plain_eager_step(self, x: torch.Tensor) -> Callable[[], torch.Tensor]:
        x = x.float().contiguous()
        alpha_bar = self.schedule.alphas_cumprod.float().to(x.device)  # ᾱ_t

        def loss(unet: nn.Module) -> torch.Tensor:
            # Ho et al. 2020, Algorithm 1: ‖ε - ε_θ(√ᾱ_t x₀ + √(1-ᾱ_t) ε, t)‖².
            t = torch.randint(0, len(alpha_bar), (len(x),), device=x.device)
            noise = torch.randn_like(x)
            a = alpha_bar[t].view(-1, 1, 1, 1)
            return F.mse_loss(unet(a.sqrt() * x + (1 - a).sqrt() * noise, t), noise)

        return self.plain_adam_step("unet", loss)

    @staticmethod
    def describe(o: DDPMOptions) -> str:
        modern = (f", {o.prediction}-prediction" if o.prediction != "eps" else "") + (
            f", min-SNR-{o.min_snr_gamma:g}" if o.loss_weighting == "min-snr" else "")
        return f"U-Net width {o.base_width}{' + attention' if o.attention else ''}, T={o.timesteps} {o.schedule}{modern}{o.describe_condition()}"
