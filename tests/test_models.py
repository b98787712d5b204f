"""The paper's networks: exact parameter counts at 64x64x1, shapes at every size and channel count."""

from __future__ import annotations

import pytest
import torch

from ganji.models.gan import Discriminator, GANConfig, Generator
from ganji.models.unet import UNet, UNetConfig, timestep_embedding
from ganji.models.vae import VAE, VAEConfig


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("latent", "params"), [(256, 26_899_457), (64, 22_180_481), (128, 23_753_473)])
def test_vae_parameter_counts(latent: int, params: int) -> None:
    assert count(VAE(VAEConfig(latent_dim=latent))) == params


def test_gan_parameter_counts() -> None:
    cfg = GANConfig()
    assert count(Generator(cfg)) == 3_624_591
    assert count(Discriminator(cfg)) == 5_083_393


@pytest.mark.parametrize(("attention", "params"), [(False, 23_821_377), (True, 25_206_593)])
def test_unet_parameter_counts(attention: bool, params: int) -> None:
    assert count(UNet(UNetConfig(attention=attention))) == params


SHAPES = [(16, 1), (32, 3), (64, 1)]


@pytest.mark.parametrize(("size", "channels"), SHAPES)
@pytest.mark.parametrize("arch", ["resnet", "conv"])
def test_vae_shapes(size: int, channels: int, arch: str) -> None:
    vae = VAE(VAEConfig(latent_dim=8, arch=arch, image_size=size, channels=channels, base_width=8))
    logits, mu, logvar = vae(torch.rand(2, channels, size, size))
    assert logits.shape == (2, channels, size, size)
    assert mu.shape == logvar.shape == (2, 8)
    assert vae.decode(torch.randn(3, 8)).shape == (3, channels, size, size)


@pytest.mark.parametrize(("size", "channels"), SHAPES)
@pytest.mark.parametrize("arch", ["resnet", "dcgan"])
@pytest.mark.parametrize("sn", [False, True])
def test_gan_shapes(size: int, channels: int, arch: str, sn: bool) -> None:
    cfg = GANConfig(latent_dim=8, layers=(32, 16, 16, 8), arch=arch, spectral_norm=sn, image_size=size, channels=channels)
    g, d = Generator(cfg), Discriminator(cfg)
    x = g(torch.randn(3, 8))
    assert x.shape == (3, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (3,)


@pytest.mark.parametrize(("size", "channels"), SHAPES)
@pytest.mark.parametrize("attention", [False, True])
def test_unet_shapes_and_time_dependence(size: int, channels: int, attention: bool) -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=size, channels=channels, base_width=8, attention=attention))
    x = torch.randn(2, channels, size, size)
    a = net(x, torch.tensor([0, 0]))
    b = net(x, torch.tensor([500, 500]))
    assert a.shape == x.shape
    assert not torch.allclose(a, b)


def test_timestep_embedding_is_sinusoidal() -> None:
    emb = timestep_embedding(torch.tensor([0, 3]), 8)
    assert emb.shape == (2, 8)
    assert torch.allclose(emb[0], torch.tensor([0.0, 1.0] * 4))  # sin 0 = 0, cos 0 = 1
    assert torch.allclose(emb[1, :2], torch.tensor([torch.sin(torch.tensor(3.0)), torch.cos(torch.tensor(3.0))]))


@pytest.mark.parametrize("make", [lambda: VAEConfig(image_size=40), lambda: GANConfig(image_size=24), lambda: UNetConfig(image_size=8),
                                  lambda: UNetConfig(channels=2), lambda: GANConfig(arch="transformer")])
def test_bad_configs_are_value_errors(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_models_work_channels_last() -> None:
    net = UNet(UNetConfig(image_size=16, base_width=8)).to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 16, 16).contiguous(memory_format=torch.channels_last)
    assert net(x, torch.tensor([1, 2])).shape == x.shape
    vae = VAE(VAEConfig(image_size=16, base_width=8, latent_dim=4)).to(memory_format=torch.channels_last)
    assert vae(x)[0].shape == x.shape
