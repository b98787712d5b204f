"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", eq. 4).

The unbiased estimate of MMD² with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged
over random subsets (as the paper and clean-fid do); reported x1000 with its standard deviation
over subsets. Unlike FID it is unbiased in the sample count, so small-n runs compare fairly.
"""

from __future__ import annotations

import numpy as np
import torch


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² of two equal-size samples: one Gram matrix of [x; y], kernel in place.

    The dot products are float32 (the features are; float64 would be 4x slower on a CPU), the
    kernel and the sums float64, where the differences of large sums need the precision."""
    m, d = x.shape
    z = torch.cat([x, y])
    k = (z @ z.T).double().div_(d).add_(1).pow_(3)
    kxx, kyy, kxy = k[:m, :m], k[m:, m:], k[:m, m:]
    sum_xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    sum_yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sum_xx + sum_yy - 2 * kxy.mean())


def kernel_distance(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(mean, std) of unbiased MMD² over `subsets` random subsets of min(subset_size, n // 2) rows each.

    Subsets of at most half the smaller side, so that they differ and the std says something even when
    n <= subset_size (with every subset the whole set, the std would be 0 by construction).
    """
    real_t = torch.from_numpy(np.asarray(real, np.float32))
    fake_t = torch.from_numpy(np.asarray(fake, np.float32))
    m = min(subset_size, len(real) // 2, len(fake) // 2)
    if m < 2:
        raise ValueError("KID needs at least 2 images on each side")
    rng = np.random.default_rng(seed)
    values = [
        _mmd2_unbiased(real_t[rng.choice(len(real), m, replace=False)], fake_t[rng.choice(len(fake), m, replace=False)])
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))
