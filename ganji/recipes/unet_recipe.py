"""What the two U-Net models (DDPM and flow) share: the network, its optimiser, their noise, and the
network call their samplers make."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ganji.models.unet import UNet, UNetConfig
from ganji.recipes.base import Recipe


class UNetRecipe(Recipe):
    """A model whose network is ganji.models.unet.UNet(x, time), trained with Adam and cosine annealing.

    Its options have `base_width` and `attention`; images come from Gaussian noise of their shape.
    """

    ema_nets = ("unet",)
    sampling_network = "unet"

    def build(self) -> None:
        o = self.cfg.options
        self.nets["unet"] = UNet(
            UNetConfig(image_size=self.image_size, channels=self.channels, base_width=o.base_width, attention=o.attention)
        )

    def wire(self) -> None:
        self._forward = self.parallel(self.nets["unet"])

    def make_optimizers(self) -> None:
        opt = self.adam(self.nets["unet"].parameters(), self.cfg.lr)
        self.optimizers["unet"] = opt
        # The paper anneals per epoch over 100 epochs; per step over the whole run is the same curve.
        self.schedulers["unet"] = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.total_steps)

    def make_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.channels, self.image_size, self.image_size, generator=generator, device=generator.device)

    def draw_noise(self, like: torch.Tensor) -> torch.Tensor:
        """ε ~ N(0, I) shaped like the batch `like`, for the global batch and sliced to this rank
        (in one process: `randn_like`), in the run's memory format."""
        n, shape, fmt = like.shape[0], like.shape[1:], self.precision.memory_format()
        return self.world.draw(n, lambda m: torch.empty((m, *shape), dtype=like.dtype, device=like.device, memory_format=fmt).normal_())

    def network_fn(self, net: nn.Module, time_scale: float = 1.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """net(x, time_scale · t) as the samplers call it: under the run's autocast, in its memory
        format, the output in float32."""

        def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with self.precision.autocast():
                return net(x.contiguous(memory_format=self.precision.memory_format()), t * time_scale if time_scale != 1.0 else t).float()

        return call
