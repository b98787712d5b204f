"""Exponential moving average of weights, used for sampling.

θ_ema ← θ_ema + (1 - d)(θ - θ_ema), with a warm-up d_t = min(d, (1 + t) / (10 + t)) so that short runs
get useful averages (the schedule used by TensorFlow's ExponentialMovingAverage with num_updates).
Buffers (BatchNorm running statistics) are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._src_params = [p for p in model.parameters()]
        self._ema_params = [p for p in self.model.parameters()]
        self._src_buffers = [b for b in model.buffers()]
        self._ema_buffers = [b for b in self.model.buffers()]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """One EMA step after optimiser step number `step` (0-based); a single fused foreach lerp."""
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self._ema_params, [p.detach() for p in self._src_params], 1.0 - d)
        for e, b in zip(self._ema_buffers, self._src_buffers):
            e.copy_(b)
