"""Training and sampling the DDPM (Ho et al. 2020) as in the GANji study.

Training (Algorithm 1): t ~ U{0..T-1}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε, loss ‖ε - ε_θ(x_t, t)‖².
Sampling: `ancestral` over all T steps (Algorithm 2; the old name `ddpm` is an alias) or `ddim`
(Song et al. 2021) with fewer steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganji.diffusion import DEFAULT_DDIM_STEPS, NoiseSchedule, ddim_sample, ddpm_sample, q_sample, sampling_steps
from ganji.recipes.base import OnStep
from ganji.recipes.registry import DDPMOptions, SamplerChoice
from ganji.recipes.unet_recipe import UNetRecipe


class DDPMRecipe(UNetRecipe):
    model_name = "ddpm"

    def build(self) -> None:
        super().build()
        o: DDPMOptions = self.cfg.options
        self.schedule = NoiseSchedule.make(o.schedule, o.timesteps).to(self.device)

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # t and ε for the global batch, this rank's slice (in one process: randint and randn_like(x)).
        t = self.world.draw(x.shape[0], lambda m: torch.randint(0, self.schedule.timesteps, (m,), device=self.device))
        noise = self.draw_noise(x)
        x_t = q_sample(self.schedule, x, t, noise)
        with self.precision.autocast():
            pred = self._forward(x_t, t)
        loss = F.mse_loss(pred.float(), noise)
        self.optimise("unet", loss)
        return {"loss": loss.detach()}

    def sample(self, net: nn.Module, noise: torch.Tensor, sampler: SamplerChoice | None, generator: torch.Generator | None,
               on_step: OnStep | None) -> torch.Tensor:
        sampler = sampler or SamplerChoice("ancestral")
        eps = self.network_fn(net)
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
        return f"U-Net width {o.base_width}{' + attention' if o.attention else ''}, T={o.timesteps} {o.schedule}"
