"""Where a positioned component sits: a conditioning map painted into its part of the image.

The global component embedding of ganji.models.unet tells every pixel the same thing ("氵 on the
left, 鳥 on the right"), and the convolutions must learn where each part goes. For parts that seldom
appear together that routing is what fails: the quick model drew a pair's first part and a grey
smudge for its second. A region map tells each pixel which part is asked for there, the way
semantic maps condition an image generator (SPADE, Park et al. 2019):

    M(y)[:, i, j] = Σ_k y_k · e_k · m_{p(k)}(i, j)

for the multi-hot label y over the keys k, a learned vector e_k per key and a fixed soft mask
m_p of the key's position p (left half, right half, top, bottom, the frame of an enclosure, its
inside, ...). Keys without a place (C:any, C:none) paint nothing. Each U-Net block then scales and
shifts its channels per pixel from M at its own resolution (`ganji.models.unet.Block`). The map is
linear in y with no bias: the null label paints exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EDGE = 0.06  # width of a mask's soft edge, as a share of the image side


def _step(z: Tensor) -> Tensor:
    """1 where z > 0, 0 where z < 0, a soft edge of width about EDGE between."""
    return torch.sigmoid(z / (EDGE / 4))


def _centre(u: Tensor, v: Tensor, half: float) -> Tensor:
    return _step(half - (u - 0.5).abs()) * _step(half - (v - 0.5).abs())


# KanjiVG's positions (ganji.data.components) as masks over (u, v) in [0, 1]^2: u left to right,
# v top to bottom. Tare (广) hangs over the top and left, nyō (辶) runs along the left and bottom;
# "...c" is what such a frame holds.
REGIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "left": lambda u, v: _step(0.5 - u),
    "right": lambda u, v: _step(u - 0.5),
    "top": lambda u, v: _step(0.5 - v),
    "bottom": lambda u, v: _step(v - 0.5),
    "middle": lambda u, v: _centre(u, v, 0.25),
    "kamae": lambda u, v: 1 - _centre(u, v, 0.3),
    "kamaec": lambda u, v: _centre(u, v, 0.3),
    "tare": lambda u, v: torch.maximum(_step(0.3 - u), _step(0.3 - v)),
    "tarec": lambda u, v: _step(u - 0.3) * _step(v - 0.3),
    "nyo": lambda u, v: torch.maximum(_step(0.3 - u), _step(v - 0.7)),
    "nyoc": lambda u, v: _step(u - 0.3) * _step(0.7 - v),
}


def region_masks(names: list[str], size: int) -> Tensor:
    """len(names) x size x size masks, sampled at pixel centres."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([REGIONS[name](u, v) for name in names]) if names else torch.zeros(0, size, size)


class RegionMap(nn.Module):
    """M(y) of the module docstring for keys at `positions` (one position name per key), with `dim`
    channels, at the image's size and every size a U-Net level halves it to (`levels` halvings)."""

    def __init__(self, positions: tuple[str, ...], image_size: int, dim: int, levels: int) -> None:
        super().__init__()
        names = sorted({p for p in positions if p in REGIONS})
        # Which region each key paints (V x R, a key without a place has a row of zeros).
        placement = torch.zeros(len(positions), len(names))
        for key, p in enumerate(positions):
            if p in REGIONS:
                placement[key, names.index(p)] = 1
        self.register_buffer("placement", placement, persistent=False)
        self.embed = nn.Linear(len(positions), dim, bias=False)  # e_k: its weight's column k
        full = region_masks(names, image_size)
        for level in range(levels + 1):
            pooled = F.avg_pool2d(full[None], 1 << level)[0] if names else full[:, ::1 << level, ::1 << level]
            self.register_buffer(f"masks_{image_size >> level}", pooled, persistent=False)

    def coefficients(self, cond: Tensor) -> Tensor:
        """N x R x dim: for each image and region, the sum of its keys' vectors painted there."""
        return torch.einsum("nv,vr,dv->nrd", cond, self.placement.to(cond.dtype), self.embed.weight.to(cond.dtype))

    def paint(self, coefficients: Tensor, size: int) -> Tensor:
        """The map M at `size` x `size` (N x dim x size x size) from `coefficients`."""
        masks = getattr(self, f"masks_{size}").to(coefficients.dtype)
        return torch.einsum("nrd,rhw->ndhw", coefficients, masks)
