"""Training and sampling the GAN as in the GANji study.

Losses (D: discriminator logits on real x and fake G(z)):
- hinge (Lim & Ye 2017): L_D = E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))], L_G = -E[D(G(z))]
- wasserstein (Arjovsky et al. 2017): L_D = E[D(G(z))] - E[D(x)], L_G = -E[D(G(z))]
- bce (Goodfellow et al. 2014, non-saturating G): L_D = BCE(D(x), 1) + BCE(D(G(z)), 0), L_G = BCE(D(G(z)), 1)
- lsgan (Mao et al. 2017): L_D = ½E[(D(x) - 1)²] + ½E[D(G(z))²], L_G = ½E[(D(G(z)) - 1)²]
plus, for every loss but bce, the gradient penalty λ E[(‖∇D(x̂)‖₂ - 1)²] on random interpolates x̂
(Gulrajani et al. 2017); optionally R1, γ/2 E[‖∇D(x)‖²] on real images (`--r1 γ`, Mescheder et al.
2018), and DiffAugment (`--diffaugment`: translation and cutout of every image D sees, Zhao et al. 2020). Up to `disc_ratio` D steps per G step, stopping early once D's accuracy on
the batch exceeds `disc_acc_stop` (the original's rule). One training step = one batch of real images.

With several processes (ganji.runtime.distributed) G and D are each wrapped in DDP; latents and the
penalty's mixing weights are drawn for the global batch and sliced; D's accuracy is averaged over
ranks before the early-stop decision, so that every rank takes the same number of D steps; the G
step runs D under `no_sync` (D's gradients from it are discarded, so they are not all-reduced).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganji.errors import GanjiError
from ganji.models.gan import Discriminator, GANConfig, Generator
from ganji.recipes.base import OnStep, Recipe
from ganji.recipes.registry import GANOptions, SamplerChoice


def discriminator_loss(kind: str, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    if kind == "wasserstein":
        return d_fake.mean() - d_real.mean()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + F.binary_cross_entropy_with_logits(
            d_fake, torch.zeros_like(d_fake)
        )
    if kind == "lsgan":
        return 0.5 * ((d_real - 1).square().mean() + d_fake.square().mean())
    raise ValueError(kind)


def generator_loss(kind: str, d_fake: torch.Tensor) -> torch.Tensor:
    if kind in ("hinge", "wasserstein"):
        return -d_fake.mean()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    if kind == "lsgan":
        return 0.5 * (d_fake - 1).square().mean()
    raise ValueError(kind)


def discriminator_accuracy(kind: str, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Share of real called real and fake called fake (decision threshold 0, or 0.5 for lsgan)."""
    threshold = 0.5 if kind == "lsgan" else 0.0
    return 0.5 * ((d_real > threshold).float().mean() + (d_fake <= threshold).float().mean())


def gradient_penalty(disc, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """E[(‖∇_x̂ D(x̂)‖₂ - 1)²], x̂ = εx + (1-ε)x̃, ε ~ U(0, 1) per image (WGAN-GP, Gulrajani et al. 2017)."""
    if eps is None:
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


DARK = -0.9  # in [-1, 1]: a pixel this dark or darker is background (0.05 of white in [0, 1])


def brightness(real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean brightness and share of dark pixels of real and fake images in [-1, 1], averaged over
    ranks by the loop like the losses. Fakes much brighter than the data (few dark pixels) mean
    the discriminator can tell them apart by brightness alone: the collapse `--no-output-norm`
    avoids. No host sync."""
    real, fake = real.float(), fake.float()
    return {"real_mean": real.mean(), "fake_mean": fake.mean(),
            "real_dark": (real <= DARK).float().mean(), "fake_dark": (fake <= DARK).float().mean()}


def r1_penalty(disc, real: torch.Tensor) -> torch.Tensor:
    """E[‖∇_x D(x)‖²] on real images (Mescheder et al. 2018, eq. 9, without its γ/2)."""
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(x).float().sum(), x, create_graph=True)
    return grad.flatten(1).square().sum(1).mean()


def diff_augment(x: torch.Tensor, shift: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """DiffAugment's translation and cutout (Zhao et al. 2020), differentiable, on images in [-1, 1].

    `shift` (N, 2): whole-pixel moves in [-size/8, size/8] (rows, columns); `centre` (N, 2): the
    centre of a size/2 square set to background. Uncovered and cut-out pixels are background (-1,
    no ink), not DiffAugment's grey: a kanji with a stroke missing is still ink on paper. No flips or
    rotations: a mirrored kanji is not a kanji.
    """
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :] - shift[:, :1]  # the source row of each output row
    cols = torch.arange(w, device=x.device)[None, :] - shift[:, 1:]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (N, H, W)
    index = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]
    moved = x.flatten(2).gather(2, index.flatten(1)[:, None, :].expand(-1, x.shape[1], -1)).reshape_as(x)
    half = h // 4  # half the side of the size/2 square
    cut = ((torch.arange(h, device=x.device)[None, :] - centre[:, :1]).abs() < half)[:, :, None] & (
        (torch.arange(w, device=x.device)[None, :] - centre[:, 1:]).abs() < half)[:, None, :]
    keep = (inside & ~cut)[:, None].to(x.dtype)
    return moved * keep - (1 - keep)


class GANRecipe(Recipe):
    model_name = "gan"
    ema_nets = ("generator",)
    sampling_network = "generator"
    compiles = False

    def build(self) -> None:
        o: GANOptions = self.cfg.options
        try:
            gcfg = GANConfig(
                latent_dim=o.latent_dim,
                layers=tuple(o.layers),
                arch=o.arch,
                spectral_norm=o.spectral_norm,
                output_norm=o.output_norm,
                image_size=self.image_size,
                channels=self.channels,
            )
        except ValueError as exc:  # e.g. more up-sampling layers than this image size allows
            raise GanjiError(f"--layers: {exc}") from None
        self.nets["generator"] = Generator(gcfg)
        self.nets["discriminator"] = Discriminator(gcfg)
        # The GAN runs eagerly: the gradient penalty's double backward is not supported by compiled
        # graphs, and a compiled generator feeding an eager discriminator failed inductor's stride
        # checks in backward (H100, torch 2.11). The GAN is also the smallest model (0.75 GFLOPs G).
        self._g = self.nets["generator"]
        self._d = self.nets["discriminator"]

    def wire(self) -> None:
        self._g_train = self.world.ddp(self._g, self.device)
        self._d_train = self.world.ddp(self._d, self.device)

    def set_epoch(self, epoch: int) -> None:
        """G's BatchNorm: batch statistics until `bn_freeze_epoch` epochs are done, then frozen."""
        freeze = self.cfg.options.bn_freeze_epoch
        self._g.train(not (freeze and epoch >= freeze))

    def make_optimizers(self) -> None:
        o: GANOptions = self.cfg.options
        self.optimizers["generator"] = self.adam(self.nets["generator"].parameters(), self.cfg.lr, o.g_betas)
        self.optimizers["discriminator"] = self.adam(self.nets["discriminator"].parameters(), self.cfg.lr, o.d_betas)

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """`--diffaugment`: every image D sees, real or fake, in D's steps and G's, gets a fresh random
        translation and cutout (drawn for the global batch: the same on any number of processes)."""
        if not self.cfg.options.diffaugment:
            return images
        n, size = images.shape[0], images.shape[-1]
        shift = self.world.draw(n, lambda m: torch.randint(-(size // 8), size // 8 + 1, (m, 2), device=images.device))
        centre = self.world.draw(n, lambda m: torch.randint(0, size, (m, 2), device=images.device))
        return diff_augment(images, shift, centre)

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        o: GANOptions = self.cfg.options
        n = x.shape[0]
        use_gp = o.gp > 0 and o.loss != "bce"
        d_steps = 0
        world, g, d = self.world, self._g_train, self._d_train
        for _ in range(o.disc_ratio):
            z = world.draw(n, lambda m: torch.randn(m, o.latent_dim, device=self.device))
            with torch.no_grad(), self.precision.autocast():
                fake = self._g(z)
            fake = fake.float().contiguous(memory_format=self.precision.memory_format())
            real_seen, fake_seen = self.augment(x), self.augment(fake)
            with self.precision.autocast():
                d_real = d(real_seen).float()
                d_fake = d(fake_seen).float()
                loss_d = discriminator_loss(o.loss, d_real, d_fake)
                if use_gp:
                    eps = world.draw(n, lambda m: torch.rand(m, 1, 1, 1, device=x.device, dtype=x.dtype))
                    loss_d = loss_d + o.gp * gradient_penalty(d, real_seen, fake_seen, eps).float()
                if o.r1 > 0:
                    loss_d = loss_d + 0.5 * o.r1 * r1_penalty(d, real_seen)
            self.optimise("discriminator", loss_d)
            d_steps += 1
            acc = discriminator_accuracy(o.loss, d_real.detach(), d_fake.detach())
            # The original's early stop of D steps: one host sync per D step, only when it can matter;
            # on the accuracy over the global batch, so that every rank stops at the same D step.
            if o.disc_ratio > 1:
                acc = world.mean(acc)
                if acc.item() > o.disc_acc_stop:
                    break
        z = world.draw(n, lambda m: torch.randn(m, o.latent_dim, device=self.device))
        with self.precision.autocast(), (d.no_sync() if world.distributed else contextlib.nullcontext()):
            d_gen = d(self.augment(g(z))).float()
            loss_g = generator_loss(o.loss, d_gen)
        self.optimise("generator", loss_g)
        return {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            "d_acc": acc,
            "d_steps": torch.tensor(float(d_steps), device=self.device),
            **brightness(x, fake.detach()),
        }

    def make_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.cfg.options.latent_dim, generator=generator, device=generator.device)

    def sample(self, net: nn.Module, noise: torch.Tensor, sampler: SamplerChoice | None, generator: torch.Generator | None,
               on_step: OnStep | None) -> torch.Tensor:
        with self.precision.autocast():
            return net(noise).float()

    def plain_eager_step(self, x: torch.Tensor) -> Callable[[], torch.Tensor]:
        x = x.float().contiguous()
        nets = self.plain_copies()
        g, d = nets["generator"], nets["discriminator"]
        o: GANOptions = self.cfg.options
        opt_g = torch.optim.Adam(g.parameters(), lr=self.cfg.lr, betas=tuple(o.g_betas))
        opt_d = torch.optim.Adam(d.parameters(), lr=self.cfg.lr, betas=tuple(o.d_betas))

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

    @staticmethod
    def describe(o: GANOptions) -> str:
        penalty = f" + gp {o.gp:g}" if o.gp > 0 and o.loss != "bce" else ""
        out = ", no output BN" if o.arch == "resnet" and not o.output_norm else ""
        out += (f", R1 {o.r1:g}" if o.r1 > 0 else "") + (", DiffAugment" if o.diffaugment else "")
        return f"{o.arch}, {o.loss}{penalty}, layers {'-'.join(map(str, o.layers))}, D ratio {o.disc_ratio}{out}"
