"""Training and sampling the VAE (Kingma & Welling 2014) as in the GANji study.

Loss (negative ELBO per image): sum over pixels of BCE-with-logits(x̂, x) + β · KL(q(z|x) ‖ N(0, I)),
KL = -½ Σ (1 + log σ² - μ² - σ²); data in [0, 1]; Adam with a one-cycle learning rate over the run.
A sample decodes z ~ N(0, I) to the Bernoulli decoder's mean σ(x̂) (the paper) or, with
`--decoder-output mode`, to its mode 1[x̂ > 0].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganji.models.vae import VAE, VAEConfig
from ganji.recipes.base import OnStep, Recipe
from ganji.recipes.registry import SamplerChoice, VAEOptions
from ganji.runtime.distributed import World


class TrainingForward(nn.Module):
    """VAE.forward with the reparameterisation's noise drawn through `world.draw`.

    ε is drawn for the whole global batch on every rank and sliced, so that each image gets the
    same ε whatever the number of processes (in one process: `torch.randn_like(μ)`, as VAE.forward).
    """

    def __init__(self, vae: VAE, world: World) -> None:
        super().__init__()
        self.vae = vae
        self.world = world

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.vae.encode(x)
        eps = self.world.draw(mu.shape[0], lambda n: torch.randn((n, *mu.shape[1:]), dtype=mu.dtype, device=mu.device))
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.vae.decode(z), mu, logvar


class VAERecipe(Recipe):
    model_name = "vae"
    data_range = (0.0, 1.0)
    ema_nets = ("vae",)
    sampling_network = "vae"

    def build(self) -> None:
        o: VAEOptions = self.cfg.options
        self.nets["vae"] = VAE(VAEConfig(latent_dim=o.latent_dim, arch=o.arch, image_size=self.image_size, channels=self.channels, base_width=o.base_width))

    def wire(self) -> None:
        self._forward = self.parallel(TrainingForward(self.nets["vae"], self.world))

    def make_optimizers(self) -> None:
        opt = self.adam(self.nets["vae"].parameters(), self.cfg.lr)
        self.optimizers["vae"] = opt
        # The paper's OneCycleLR, stepped per batch over the whole run.
        self.schedulers["vae"] = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.cfg.lr, total_steps=self.total_steps)

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        o: VAEOptions = self.cfg.options
        with self.precision.autocast():
            logits, mu, logvar = self._forward(x)
        n = x.shape[0]
        recon = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="sum") / n
        mu, logvar = mu.float(), logvar.float()
        kl = -0.5 * torch.sum(1 + logvar - mu.square() - logvar.exp()) / n
        loss = recon + o.beta * kl
        self.optimise("vae", loss)
        return {"loss": loss.detach(), "recon": recon.detach(), "kl": kl.detach()}

    def make_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.cfg.options.latent_dim, generator=generator, device=generator.device)

    def sample(self, net: nn.Module, noise: torch.Tensor, sampler: SamplerChoice | None, generator: torch.Generator | None,
               on_step: OnStep | None) -> torch.Tensor:
        with self.precision.autocast():
            logits = net.decode(noise).float()
        if self.cfg.options.decoder_output == "mode":
            # argmax of Bernoulli(σ(logit)) per pixel: 1 where the logit is positive.
            return (logits > 0).to(logits.dtype)
        return torch.sigmoid(logits)

    def plain_eager_step(self, x: torch.Tensor) -> Callable[[], torch.Tensor]:
        x, beta = x.float().contiguous(), self.cfg.options.beta

        def loss(vae: nn.Module) -> torch.Tensor:
            # Negative ELBO: Σ BCE(x̂, x) + β KL(q(z|x) ‖ N(0, I)), per image (Kingma & Welling 2014).
            logits, mu, logvar = vae(x)
            recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
            kl = -0.5 * torch.sum(1 + logvar - mu.square() - logvar.exp()) / len(x)
            return recon + beta * kl

        return self.plain_adam_step("vae", loss)

    @staticmethod
    def describe(o: VAEOptions) -> str:
        return (f"{o.arch}, latent {o.latent_dim}, width {o.base_width}" + (f", β {o.beta:g}" if o.beta != 1 else "")
                + (f", decoder {o.decoder_output}" if o.decoder_output != "mean" else ""))
