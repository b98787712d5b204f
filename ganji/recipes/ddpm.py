"""Training and sampling the DDPM (Ho et al. 2020) as in the GANji study.

Training (Algorithm 1): t ~ U{0..T-1}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε, loss ‖ε - ε_θ(x_t, t)‖².
Sampling: `ancestral` over all T steps (Algorithm 2; the old name `ddpm` is an alias) or `ddim`
(Song et al. 2021) with fewer steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganji.diffusion import DEFAULT_DDIM_STEPS, NoiseSchedule, ddim_sample, ddpm_sample, q_sample, sampling_steps
from ganji.models.unet import UNet, UNetConfig
from ganji.recipes.base import Recipe
from ganji.recipes.registry import DDPMOptions, SamplerChoice


class DDPMRecipe(Recipe):
    model_name = "ddpm"
    ema_nets = ("unet",)

    def build(self) -> None:
        o: DDPMOptions = self.cfg.options
        self.nets["unet"] = UNet(
            UNetConfig(image_size=self.image_size, channels=self.channels, base_width=o.base_width, attention=o.attention)
        )
        self.schedule = NoiseSchedule.make(o.schedule, o.timesteps).to(self.device)

    def wire(self) -> None:
        self._forward = self.parallel(self.nets["unet"])

    def make_optimizers(self) -> None:
        opt = self.adam(self.nets["unet"].parameters(), self.cfg.lr)
        self.optimizers["unet"] = opt
        # The paper anneals per epoch over 100 epochs; per step over the whole run is the same curve.
        self.schedulers["unet"] = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.total_steps)

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        opt = self.optimizers["unet"]
        n, shape, fmt = x.shape[0], x.shape[1:], self.precision.memory_format()
        # t and ε for the global batch, this rank's slice (in one process: randint and randn_like(x)).
        t = self.world.draw(n, lambda m: torch.randint(0, self.schedule.timesteps, (m,), device=self.device))
        noise = self.world.draw(n, lambda m: torch.empty((m, *shape), dtype=x.dtype, device=x.device, memory_format=fmt).normal_())
        x_t = q_sample(self.schedule, x, t, noise)
        with self.precision.autocast():
            pred = self._forward(x_t, t)
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    def make_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.channels, self.image_size, self.image_size, generator=generator, device=generator.device)

    @torch.no_grad()
    def generate(
        self,
        noise: torch.Tensor,
        use_ema: bool = True,
        sampler: SamplerChoice | None = None,
        generator: torch.Generator | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        sampler = sampler or SamplerChoice("ancestral")
        with self.sampling_net("unet", use_ema) as net:

            def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                with self.precision.autocast():
                    return net(x_t.contiguous(memory_format=self.precision.memory_format()), t).float()

            x_T = noise.to(self.device)
            if sampler.name == "ddim":
                return ddim_sample(eps, self.schedule, x_T, steps=sampler.steps or DEFAULT_DDIM_STEPS, eta=sampler.eta,
                                   generator=generator, on_step=on_step)
            if sampler.name == "ancestral":
                return ddpm_sample(eps, self.schedule, x_T, generator=generator, on_step=on_step)
        raise ValueError(f"unknown DDPM sampler {sampler.name!r}")

    def model_calls(self, sampler: SamplerChoice | None) -> int:
        sampler = sampler or SamplerChoice("ancestral")
        return sampling_steps(sampler.name, sampler.steps, self.schedule)

    def max_steps(self, sampler: str) -> int:
        return self.schedule.timesteps  # DDIM walks a subsequence of the T steps

    def plain_eager_step(self, x: torch.Tensor) -> Callable[[], torch.Tensor]:
        x = x.float().contiguous()
        unet = self.plain_copies()["unet"]
        opt = torch.optim.Adam(unet.parameters(), lr=self.cfg.lr)
        alpha_bar = self.schedule.alphas_cumprod.float().to(x.device)  # ᾱ_t

        def step() -> torch.Tensor:
            # Ho et al. 2020, Algorithm 1: ‖ε - ε_θ(√ᾱ_t x₀ + √(1-ᾱ_t) ε, t)‖².
            t = torch.randint(0, len(alpha_bar), (len(x),), device=x.device)
            noise = torch.randn_like(x)
            a = alpha_bar[t].view(-1, 1, 1, 1)
            loss = F.mse_loss(unet(a.sqrt() * x + (1 - a).sqrt() * noise, t), noise)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.detach()

        return step

    @staticmethod
    def describe(o: DDPMOptions) -> str:
        return f"U-Net width {o.base_width}{' + attention' if o.attention else ''}, T={o.timesteps} {o.schedule}"
