"""The variational autoencoder (Kingma & Welling 2014) of the GANji study.

`resnet` (the paper's final model): conv3x3 + BN + ReLU, seven residual blocks 64(s2), 128,
128(s2), 256, 256(s2), 512, 512(s2) down to size/16, two linear heads for μ and log σ²; the
decoder mirrors it with transposed blocks and ends with conv3x3 + BN + ReLU and a conv3x3 to logits.
`conv`: the study's plain variant, three stride-2 stages (32, 64, 128 filters at base width 64)
and no residuals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ganji.models.blocks import ResidualBlock, check_image_size

# (width, stride) of the encoder's residual blocks; the decoder runs them backwards.
RESNET_STAGES = ((64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2))
CONV_FILTERS = (32, 64, 128)


@dataclass
class VAEConfig:
    latent_dim: int = 256
    arch: str = "resnet"  # resnet | conv
    image_size: int = 64
    channels: int = 1
    base_width: int = 64  # the paper's; every width scales with it (a quick preset shrinks it)

    def __post_init__(self) -> None:
        check_image_size(self.image_size, self.channels)
        if self.arch not in ("resnet", "conv"):
            raise ValueError(f"VAE arch must be resnet or conv (got {self.arch!r})")
        if self.latent_dim < 1:
            raise ValueError("latent_dim must be at least 1")
        if self.base_width < 1:
            raise ValueError("base_width must be at least 1")

    def width(self, paper_width: int) -> int:
        """A paper width (given for base 64) scaled to this config's base width."""
        return max(1, paper_width * self.base_width // 64)


def _resnet_encoder(c: VAEConfig) -> tuple[nn.Module, int]:
    w0 = c.width(64)
    layers: list[nn.Module] = [nn.Conv2d(c.channels, w0, 3, padding=1, bias=False), nn.BatchNorm2d(w0), nn.ReLU()]
    cin = w0
    for width, stride in RESNET_STAGES:
        layers.append(ResidualBlock(cin, c.width(width), stride))
        cin = c.width(width)
    return nn.Sequential(*layers, nn.Flatten()), cin * (c.image_size // 16) ** 2


def _resnet_decoder(c: VAEConfig) -> tuple[nn.Module, int, int]:
    # Mirror of the encoder: 512(s2), 256, 256(s2), 128, 128(s2), 64, 64(s2).
    widths = [c.width(w) for w, _ in RESNET_STAGES][::-1]
    strides = [s for _, s in RESNET_STAGES][::-1]
    w0 = c.width(64)
    outs = widths[1:] + [w0]
    blocks = [ResidualBlock(cin, cout, s, transpose=True) for cin, cout, s in zip(widths, outs, strides)]
    head = [nn.Conv2d(w0, w0, 3, padding=1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(), nn.Conv2d(w0, c.channels, 3, padding=1)]
    return nn.Sequential(*blocks, *head), widths[0], c.image_size // 16


def _conv_encoder(c: VAEConfig) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    cin = c.channels
    for f in (c.width(f) for f in CONV_FILTERS):
        layers += [nn.Conv2d(cin, f, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(f, f, 3, padding=1), nn.ReLU()]
        cin = f
    return nn.Sequential(*layers, nn.Flatten()), cin * (c.image_size // 8) ** 2


def _conv_decoder(c: VAEConfig) -> tuple[nn.Module, int, int]:
    rev = [c.width(f) for f in CONV_FILTERS[::-1]]
    layers: list[nn.Module] = []
    for a, b in zip(rev[:-1], rev[1:]):
        layers += [nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1), nn.ReLU()]
    f = rev[-1]
    layers += [nn.Conv2d(f, f, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(f, c.channels, 3, stride=2, padding=1, output_padding=1)]
    return nn.Sequential(*layers), rev[0], c.image_size // 8


class VAE(nn.Module):
    """Gaussian encoder q(z|x) = N(μ, σ²) and Bernoulli decoder p(x|z) given as logits
    (Kingma & Welling 2014, section 2.4 and appendix C); the study trains it on images in [0, 1]."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.arch == "resnet":
            self.encoder, flat = _resnet_encoder(cfg)
            self.decoder, self._width, self._side = _resnet_decoder(cfg)
        else:
            self.encoder, flat = _conv_encoder(cfg)
            self.decoder, self._width, self._side = _conv_decoder(cfg)
        self.mu = nn.Linear(flat, cfg.latent_dim)
        self.logvar = nn.Linear(flat, cfg.latent_dim)
        self.fc = nn.Linear(cfg.latent_dim, self._width * self._side**2)
        # The plain variant applies ReLU after its first linear layer; the ResNet one does not.
        self.fc_act = nn.ReLU() if cfg.arch == "conv" else nn.Identity()

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        h = self.fc_act(self.fc(z)).reshape(-1, self._width, self._side, self._side)
        return self.decoder(h)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Logits of the reconstruction, μ and log σ²; z = μ + σ ε (the reparameterisation trick)."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decode(z), mu, logvar
