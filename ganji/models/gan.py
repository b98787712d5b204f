"""The GAN's generator and discriminator (GANji study; Goodfellow et al. 2014).

`resnet` (the paper's final model): the generator maps z through Linear(latent -> layers[0] x s x s),
s = size / 2^len(layers), then residual up-blocks layers[0] -> ... -> layers[-1], one more up-block
at layers[-1], a stride-1 block to the image channels, and Tanh. The discriminator uses residual
down-blocks without normalisation, widths layers[-2::-1] (128, 256, 512 by default): a stride-1
block from the image, a stride-2 block at the first width, stride-2 blocks through the rest, and
Linear(width x size/8 x size/8 -> 1). Xavier-uniform init on Conv2d and Linear, as the original.
`dcgan`: the standard DCGAN (Radford et al. 2016) with 4x4 kernels, BatchNorm, ReLU/Tanh in G and
LeakyReLU 0.2 in D, widths `layers` in G and reversed in D, N(0, 0.02) initialisation.
`spectral_norm` wraps the discriminator's Conv2d and Linear layers (Miyato et al. 2018).

`output_norm=False` (resnet) drops BatchNorm from the generator's last block, the one that makes the
single output channel. With batch statistics there, the output before tanh is a per-batch
standardised map (mean β, std γ): by Cantelli's inequality at most γ²/(γ² + 1.47²) of the pixels can
lie below tanh⁻¹(-0.9) ≈ -1.47 (about 32% at γ = 1), while every real kanji is at least half dark
background. Fakes start out bright, the discriminator separates them by brightness alone, and the
generator needs thousands of steps of β and γ to lift the cap: the paper-size GAN's collapse (see
the quality notes in the README).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ganji.models.blocks import ResidualBlock, check_image_size, dcgan_init, spectral_normalise, xavier_init


@dataclass
class GANConfig:
    latent_dim: int = 128
    layers: tuple[int, ...] = (512, 256, 128, 64)
    arch: str = "resnet"  # resnet | dcgan
    spectral_norm: bool = False
    output_norm: bool = True  # resnet: BatchNorm in G's last block (the paper's); see Generator
    image_size: int = 64
    channels: int = 1

    def __post_init__(self) -> None:
        check_image_size(self.image_size, self.channels)
        self.layers = tuple(int(w) for w in self.layers)
        if self.arch not in ("resnet", "dcgan"):
            raise ValueError(f"GAN arch must be resnet or dcgan (got {self.arch!r})")
        if len(self.layers) < 2 or any(w < 1 for w in self.layers):
            raise ValueError(f"layers must hold at least two positive widths (got {self.layers})")
        if self.image_size % 2 ** len(self.layers) != 0:
            raise ValueError(f"image size {self.image_size} is not a multiple of 2^{len(self.layers)} (one doubling per layer)")
        if self.latent_dim < 1:
            raise ValueError("latent_dim must be at least 1")


def _gen_block(cin: int, cout: int, stride: int = 2, norm: bool = True) -> ResidualBlock:
    # Without BatchNorm, the convolutions get biases (nothing re-centres them).
    return ResidualBlock(cin, cout, stride, transpose=True, norm=norm, act="relu", act_after_sum=False, bias=not norm)


def _disc_block(cin: int, cout: int, stride: int = 2) -> ResidualBlock:
    return ResidualBlock(cin, cout, stride, transpose=False, norm=False, act="lrelu", act_after_sum=False, bias=True)


class Generator(nn.Module):
    """z (N, latent_dim) -> images in [-1, 1] (N, C, H, W): the study's ResNet generator or DCGAN's."""

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        L = cfg.layers
        if cfg.arch == "resnet":
            self.side = cfg.image_size // 2 ** len(L)
            self.input = nn.Linear(cfg.latent_dim, L[0] * self.side**2, bias=False)
            blocks = [_gen_block(a, b) for a, b in zip(L[:-1], L[1:])]
            blocks += [_gen_block(L[-1], L[-1]), _gen_block(L[-1], cfg.channels, stride=1, norm=cfg.output_norm), nn.Tanh()]
            self.body = nn.Sequential(*blocks)
            xavier_init(self)
        else:
            # z as a 1x1 image; the first transposed conv grows it to size/16, then four doublings.
            self.side = 1
            self.input = nn.Identity()
            k = cfg.image_size // 2 ** len(L)
            layers: list[nn.Module] = [nn.ConvTranspose2d(cfg.latent_dim, L[0], k, 1, 0, bias=False), nn.BatchNorm2d(L[0]), nn.ReLU()]
            for a, b in zip(L[:-1], L[1:]):
                layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
            layers += [nn.ConvTranspose2d(L[-1], cfg.channels, 4, 2, 1, bias=False), nn.Tanh()]
            self.body = nn.Sequential(*layers)
            dcgan_init(self)
        self._width = L[0] if cfg.arch == "resnet" else cfg.latent_dim

    def forward(self, z: Tensor) -> Tensor:
        """Images in [-1, 1] from latents z of shape (N, latent_dim)."""
        return self.body(self.input(z).reshape(z.shape[0], self._width, self.side, self.side))


class Discriminator(nn.Module):
    """Images (N, C, H, W) -> one real/fake logit each, shape (N,); no sigmoid, the loss applies it."""

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.arch == "resnet":
            D = cfg.layers[-2::-1]
            blocks = [_disc_block(cfg.channels, D[0], stride=1), _disc_block(D[0], D[0])]
            blocks += [_disc_block(a, b) for a, b in zip(D[:-1], D[1:])]
            side = cfg.image_size // 2 ** len(D)
            self.body = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(D[-1] * side**2, 1))
            xavier_init(self)
        else:
            D = cfg.layers[::-1]
            layers: list[nn.Module] = [nn.Conv2d(cfg.channels, D[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
            for a, b in zip(D[:-1], D[1:]):
                layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2)]
            k = cfg.image_size // 2 ** len(D)
            layers += [nn.Conv2d(D[-1], 1, k, 1, 0, bias=False), nn.Flatten()]
            self.body = nn.Sequential(*layers)
            dcgan_init(self)
        if cfg.spectral_norm:  # after initialisation: the power iteration starts from these weights
            spectral_normalise(self)

    def forward(self, x: Tensor) -> Tensor:
        """One logit per image, shape (N,)."""
        return self.body(x).reshape(-1)
