"""The plain eager PyTorch training step that `ganji bench train` holds ganji's engine against.

What someone would write from the paper with nothing but PyTorch: the same networks (copied from the
recipe, so the same weights and batch), fp32, `torch.optim.Adam` with its defaults, no autocast, no
compile, no channels_last, no EMA, no logging. Issue 8's CPU target is that ganji's step (recipe
`train_step` + EMA update) is no slower than this one on the same model and batch.

The losses are written out again here, from the paper's equations, rather than imported from the
recipes: the baseline must not inherit the engine's choices.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganji.recipes.base import Recipe


def eager_step(recipe: Recipe, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A closure that runs one plain training step of `recipe`'s model on the batch `x` (fp32) and
    returns its loss (the generator's, for the GAN), detached."""
    x = x.float().contiguous()
    nets = {name: copy.deepcopy(net).float().to(memory_format=torch.contiguous_format).train() for name, net in recipe.nets.items()}
    lr = recipe.cfg.lr
    model = recipe.model_name
    if model == "vae":
        vae = nets["vae"]
        opt = torch.optim.Adam(vae.parameters(), lr=lr)
        beta = recipe.cfg.options.beta

        def step() -> torch.Tensor:
            # Negative ELBO: Σ BCE(x̂, x) + β KL(q(z|x) ‖ N(0, I)), per image (Kingma & Welling 2014).
            logits, mu, logvar = vae(x)
            recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
            kl = -0.5 * torch.sum(1 + logvar - mu.square() - logvar.exp()) / len(x)
            opt.zero_grad()
            loss = recon + beta * kl
            loss.backward()
            opt.step()
            return loss.detach()

        return step
    if model == "ddpm":
        unet = nets["unet"]
        opt = torch.optim.Adam(unet.parameters(), lr=lr)
        alpha_bar = recipe.schedule.alphas_cumprod.float().to(x.device)  # ᾱ_t

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
    if model == "gan":
        g, d = nets["generator"], nets["discriminator"]
        o = recipe.cfg.options
        opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=tuple(o.g_betas))
        opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=tuple(o.d_betas))

        def step() -> torch.Tensor:
            # Every D step (no early stop), hinge loss + WGAN-GP penalty, then one G step: the
            # paper's final GAN, as `ganji bench train` times it.
            for _ in range(o.disc_ratio):
                with torch.no_grad():
                    fake = g(torch.randn(len(x), o.latent_dim, device=x.device))
                loss_d = F.relu(1 - d(x)).mean() + F.relu(1 + d(fake)).mean()
                if o.gp > 0:
                    eps = torch.rand(len(x), 1, 1, 1, device=x.device)
                    x_hat = (eps * x + (1 - eps) * fake).requires_grad_(True)
                    (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
                    loss_d = loss_d + o.gp * (grad.flatten(1).norm(dim=1) - 1).square().mean()
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
            loss_g = -d(g(torch.randn(len(x), o.latent_dim, device=x.device))).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            return loss_g.detach()

        return step
    raise ValueError(f"no eager baseline for {model!r}")
