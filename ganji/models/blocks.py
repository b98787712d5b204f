"""Building blocks shared by the VAE and the GAN (GANji study, "ResNet" variants of both).

Every residual block of the study has the same shape: two 3x3 convolutions on the main path and a
1x1 convolution on the shortcut when the shape changes (He et al. 2016). They differ in whether the
convolutions are transposed (decoders, generators), in normalisation (BatchNorm or none), in the
activation (ReLU or LeakyReLU 0.2), and in where the last activation sits (after the sum in the
VAE's blocks, inside the main path in the GAN's).
"""

from __future__ import annotations

from torch import Tensor, nn


def check_image_size(size: int, channels: int, multiple: int = 16) -> None:
    """Every model takes square images whose side is a multiple of 16, with 1 or 3 channels."""
    if size < multiple or size % multiple != 0:
        raise ValueError(f"image size must be a positive multiple of {multiple} (got {size})")
    if channels not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels (got {channels})")


def _conv(cin: int, cout: int, kernel: int, stride: int, transpose: bool, bias: bool) -> nn.Module:
    pad = kernel // 2
    if transpose:
        # output_padding 1 makes a stride-2 transposed conv exactly double the size.
        return nn.ConvTranspose2d(cin, cout, kernel, stride, padding=pad, output_padding=stride - 1, bias=bias)
    return nn.Conv2d(cin, cout, kernel, stride, padding=pad, bias=bias)


def _activation(kind: str) -> nn.Module:
    return nn.LeakyReLU(0.2) if kind == "lrelu" else nn.ReLU()


class ResidualBlock(nn.Module):
    """out = post(main(x) + shortcut(x)) with main = conv3x3(stride) [BN] act, conv3x3 [BN] (act).

    - `transpose`: transposed convolutions (stride 2 doubles the size instead of halving it);
    - `norm`: BatchNorm after each convolution, shortcut included (Ioffe & Szegedy 2015);
    - `act_after_sum`: the last activation follows the sum (VAE) or ends the main path (GAN);
    - `bias`: convolution biases (only where no BatchNorm follows).
    The shortcut is the identity when stride 1 keeps the width, else a strided 1x1 convolution.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int = 1,
        *,
        transpose: bool = False,
        norm: bool = True,
        act: str = "relu",
        act_after_sum: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(cin, cout, 3, stride, transpose, bias)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        layers += [_activation(act), _conv(cout, cout, 3, 1, transpose, bias)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        if not act_after_sum:
            layers.append(_activation(act))
        self.main = nn.Sequential(*layers)
        if stride == 1 and cin == cout:
            self.shortcut: nn.Module = nn.Identity()
        else:
            short = [_conv(cin, cout, 1, stride, transpose, bias)]
            if norm:
                short.append(nn.BatchNorm2d(cout))
            self.shortcut = nn.Sequential(*short)
        self.post = _activation(act) if act_after_sum else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.post(self.main(x) + self.shortcut(x))


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights on Conv2d and Linear layers (Glorot & Bengio 2010), as the study's GAN.

    Transposed convolutions keep PyTorch's default initialisation, as in the original code.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, 1.0)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2016, section 4): convolution weights from N(0, 0.02);
    BatchNorm scales from N(1, 0.02) and shifts zero, as in the reference PyTorch DCGAN example."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def spectral_normalise(module: nn.Module) -> None:
    """Wrap every Conv2d and Linear weight in spectral normalisation (Miyato et al. 2018)."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            spectral_normalise(child)
