"""Turning stored images into a feature network's input, one way for real and generated images alike.

The original study compared resized, inverted samples against raw training images; every path into
a feature extractor in ganji goes through these functions instead, so both sides of a comparison are
prepared the same way.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor


def gray_float(images: Tensor) -> Tensor:
    """uint8 N x C x H x W -> float32 N x 1 x H x W in [0, 1] (colour averaged to gray)."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images N x C x H x W, got {images.dtype} {tuple(images.shape)}")
    x = images.float() / 255.0
    return x.mean(dim=1, keepdim=True) if x.shape[1] != 1 else x


def resize_to(x: Tensor, size: int) -> Tensor:
    """Bilinear resize with antialiasing (a proper low-pass filter when shrinking), identity at `size`."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


def pil_bicubic_resize(images: Tensor, size: int) -> Tensor:
    """float N x C x H x W in [0, 1] -> N x C x size x size, each channel resized by PIL's bicubic
    filter in float mode, as clean-fid does (Parmar et al. 2022, "On Aliased Resizing and Surprising
    Subtleties in GAN Evaluation"): torch's bicubic uses a different kernel (a = -0.75, not -0.5)."""
    out = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.float32)
    arr = images.detach().cpu().float().numpy()
    for i in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            img = Image.fromarray(arr[i, c], mode="F").resize((size, size), Image.Resampling.BICUBIC)
            out[i, c] = torch.from_numpy(np.array(img, dtype=np.float32))
    return out.clamp_(0, 1)
