"""The DDPM's noise-predicting U-Net (Ho et al. 2020, as built in the GANji study).

Widths for base width b (the paper's b = 64): conv3x3 C -> b at full size; down blocks after 2x2
max-pooling b -> 2b (size/2), 2b -> 4b (size/4), 4b -> 4b (size/8); bottleneck 4b -> 8b -> 8b -> 4b;
up blocks after bilinear x2 and concatenation with the skip: 8b -> 2b, 4b -> b, 2b -> b; conv3x3
b -> C. Each block is three conv3x3 (no bias) + GroupNorm(4) + ReLU, a 1x1 conv shortcut, and a
Linear(256 -> width) of the timestep embedding added to the output. `attention` adds multi-head
self-attention (4 heads) after every down and up block (Vaswani et al. 2017).

`condition_dim` V > 0 (not in the study) adds a conditioning input: a multi-hot vector y of V
(component, position) keys, embedded as W₂ SiLU(W₁ y) (one learned vector per key, summed, then a
small MLP) and added to the timestep embedding, the way class-conditional diffusion U-Nets take a
label (Dhariwal & Nichol 2021); the same embedding also scales and shifts every block's output
channels, h <- h (1 + s(y)) + b(y) (FiLM, Perez et al. 2018; the scale-shift of Dhariwal & Nichol's
AdaGN), because an added bias alone moved the quick model's output by about 1%. None of these layers
has a bias, so the null label y = 0 adds exactly zero and scales by exactly one: the unconditional
model is the time embedding alone, bit for bit (classifier-free guidance, Ho & Salimans 2022).

`condition_positions` (one KanjiVG position per key, `--component-regions`) adds a region map
(ganji.models.regions): each positioned key's vector painted into its part of the image, which
scales and shifts every block's channels per pixel (SPADE, Park et al. 2019), so a part is told
where it goes. It is linear in y without biases too: the null label still changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganji.models.blocks import check_image_size
from ganji.models.regions import RegionMap


@dataclass
class UNetConfig:
    image_size: int = 64
    channels: int = 1
    base_width: int = 64
    time_dim: int = 256
    attention: bool = False
    condition_dim: int = 0  # keys of a multi-hot conditioning input; 0: unconditional (the paper's)
    condition_positions: tuple[str, ...] = ()  # each key's position, for a region map; (): none

    def __post_init__(self) -> None:
        check_image_size(self.image_size, self.channels)
        # GroupNorm(4) everywhere; the attention's GroupNorm(8) and 4 heads need multiples of 8.
        step = 8 if self.attention else 4
        if self.base_width < step or self.base_width % step:
            raise ValueError(f"base_width must be a positive multiple of {step} (got {self.base_width})")
        if self.time_dim < 2 or self.time_dim % 2:
            raise ValueError(f"time_dim must be a positive even number: sin/cos pairs (got {self.time_dim})")
        if self.condition_positions and len(self.condition_positions) != self.condition_dim:
            raise ValueError(f"condition_positions needs one position per key ({self.condition_dim}, got {len(self.condition_positions)})")


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017, §3.5; Ho et al. 2020, App. B):
    PE(t, 2i) = sin(t / 10000^(2i/dim)), PE(t, 2i+1) = cos(t / 10000^(2i/dim))."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(t.shape[0], 2 * half)


class Block(nn.Module):
    """Three conv3x3 + GroupNorm(4) + ReLU, plus a 1x1 conv shortcut, plus the projected embedding;
    after `add_film`, a condition's per-channel scale and shift of the result (module docstring)."""

    def __init__(self, cin: int, cout: int, time_dim: int) -> None:
        super().__init__()

        def conv(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.GroupNorm(4, b), nn.ReLU()]

        self.main = nn.Sequential(*conv(cin, cin), *conv(cin, cout), *conv(cout, cout))
        self.shortcut = nn.Conv2d(cin, cout, 1)
        self.time = nn.Linear(time_dim, cout)
        self.film: nn.Linear | None = None
        self.region_film: nn.Conv2d | None = None

    def add_film(self, dim: int) -> None:
        """Condition this block: a scale and a shift per output channel from a `dim` embedding,
        starting at zero (the identity), like adaLN-Zero (Peebles & Xie 2023)."""
        cout = self.time.out_features
        self.film = nn.Linear(dim, 2 * cout, bias=False)
        nn.init.zeros_(self.film.weight)

    def add_region_film(self, dim: int) -> None:
        """Condition this block per pixel too: a scale and a shift per output channel and pixel from a
        `dim`-channel region map (1x1 convolution, no bias), starting at zero like `add_film`."""
        cout = self.time.out_features
        self.region_film = nn.Conv2d(dim, 2 * cout, 1, bias=False)
        nn.init.zeros_(self.region_film.weight)

    def forward(self, x: Tensor, emb: Tensor, cond: Tensor | None = None, region: Tensor | None = None) -> Tensor:
        h = self.main(x) + self.shortcut(x) + self.time(emb)[:, :, None, None]
        if cond is None or self.film is None:
            return h
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = h * (1 + scale) + shift
        if region is None or self.region_film is None:
            return h
        scale, shift = self.region_film(region).chunk(2, dim=1)
        return h * (1 + scale) + shift


class SelfAttention(nn.Module):
    """x + out(MHA(qkv(GroupNorm(x)))): the study's layout (a 1x1 qkv conv, then multi-head
    attention with its own in/out projections, then a 1x1 output conv), computed with
    scaled_dot_product_attention so that flash/memory-efficient kernels apply on a GPU."""

    heads = 4

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.in_proj = nn.Linear(channels, 3 * channels)  # the attention's q, k, v projections
        self.out_proj = nn.Linear(channels, channels)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)  # each (N, HW, C)
        wq, wk, wv = self.in_proj.weight.chunk(3)
        bq, bk, bv = self.in_proj.bias.chunk(3)
        heads = [F.linear(a, wt, b).reshape(n, h * w, self.heads, c // self.heads).transpose(1, 2)
                 for a, wt, b in ((q, wq, bq), (k, wk, bk), (v, wv, bv))]
        attn = F.scaled_dot_product_attention(*heads).transpose(1, 2).reshape(n, h * w, c)
        out = self.out_proj(attn).transpose(1, 2).reshape(n, c, h, w)
        return x + self.out(out)


class UNet(nn.Module):
    """ε_θ(x_t, t) of Ho et al. 2020 (section 3.2, eq. 11) with the study's three-level layout."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        b, T = cfg.base_width, cfg.time_dim
        self.input = nn.Conv2d(cfg.channels, b, 3, padding=1)
        self.down = nn.ModuleList([Block(b, 2 * b, T), Block(2 * b, 4 * b, T), Block(4 * b, 4 * b, T)])
        self.bottleneck = nn.ModuleList([Block(4 * b, 8 * b, T), Block(8 * b, 8 * b, T), Block(8 * b, 4 * b, T)])
        self.up = nn.ModuleList([Block(8 * b, 2 * b, T), Block(4 * b, b, T), Block(2 * b, b, T)])

        def attn(c: int) -> nn.Module:
            return SelfAttention(c) if cfg.attention else nn.Identity()

        self.down_attn = nn.ModuleList([attn(2 * b), attn(4 * b), attn(4 * b)])
        self.up_attn = nn.ModuleList([attn(2 * b), attn(b), attn(b)])
        self.output = nn.Conv2d(b, cfg.channels, 3, padding=1)
        if cfg.condition_dim:
            # Made last, so that from one seed every other weight is the unconditional U-Net's.
            self.condition = nn.Sequential(nn.Linear(cfg.condition_dim, T, bias=False), nn.SiLU(), nn.Linear(T, T, bias=False))
            for block in [*self.down, *self.bottleneck, *self.up]:
                block.add_film(T)
        self.regions: RegionMap | None = None
        if cfg.condition_positions:
            self.regions = RegionMap(cfg.condition_positions, cfg.image_size, 2 * b, levels=3)
            for block in [*self.down, *self.bottleneck, *self.up]:
                block.add_region_film(2 * b)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Predicted noise ε_θ(x_t, t) (or y-conditioned ε_θ(x_t, t, y)), the same shape as x.

        `cond`: N x V floats, the multi-hot keys (rows of zeros: unconditional); None: unconditional."""
        emb = timestep_embedding(t, self.cfg.time_dim).to(x.dtype)
        y = painted = None
        if cond is not None:
            cond = cond.to(emb.dtype)
            y = self.condition(cond)
            emb = emb + y
            if self.regions is not None:
                painted = self.regions.coefficients(cond)

        maps: dict[int, Tensor] = {}

        def region(h: Tensor) -> Tensor | None:
            """The region map at h's size (None without one), painted once per size."""
            if painted is None or self.regions is None:
                return None
            size = h.shape[-1]
            if size not in maps:
                maps[size] = self.regions.paint(painted, size).to(h.dtype)
            return maps[size]

        h = self.input(x)
        skips = [h]
        for block, attn in zip(self.down, self.down_attn):
            h = F.max_pool2d(h, 2)
            h = attn(block(h, emb, y, region(h)))
            skips.append(h)
        skips.pop()  # the deepest output feeds the bottleneck, not a skip
        for block in self.bottleneck:
            h = block(h, emb, y, region(h))
        for block, attn in zip(self.up, self.up_attn):
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=True)
            h = attn(block(torch.cat([h, skips.pop()], dim=1), emb, y, region(h)))
        return self.output(h)
