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
                                  lambda: UNetConfig(channels=2), lambda: GANConfig(arch="transformer"), lambda: UNetConfig(time_dim=255)])
def test_bad_configs_are_value_errors(make) -> None:
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("make", [lambda: VAEConfig(image_size=40), lambda: GANConfig(image_size=24), lambda: UNetConfig(image_size=72)])
def test_bad_sizes_say_why(make) -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        make()


def test_gan_layers_option_sets_the_starting_size() -> None:
    # As in the original, the generator starts at size / 2^len(layers): three widths start at 8px.
    cfg = GANConfig(latent_dim=8, layers=(32, 16, 8), image_size=32)
    g, d = Generator(cfg), Discriminator(cfg)
    assert g.input.out_features == 32 * 4 * 4
    assert d(g(torch.randn(2, 8))).shape == (2,)


def test_gan_initialisation_follows_the_original() -> None:
    # Xavier-uniform on Conv2d and Linear only: transposed convolutions keep PyTorch's default.
    g = Generator(GANConfig())
    bound = (6 / (128 + 512 * 16)) ** 0.5
    assert g.input.weight.abs().max() <= bound
    assert g.input.weight.abs().max() > 0.9 * bound
    dc = Generator(GANConfig(arch="dcgan"))
    weights = torch.cat([m.weight.flatten() for m in dc.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert abs(weights.std().item() - 0.02) < 0.002  # Radford et al. 2016: N(0, 0.02)


@pytest.mark.parametrize("arch", ["resnet", "dcgan"])
def test_spectral_norm_wraps_every_discriminator_weight(arch: str) -> None:
    plain = Discriminator(GANConfig(arch=arch, layers=(32, 16, 16, 8), image_size=16))
    sn = Discriminator(GANConfig(arch=arch, layers=(32, 16, 16, 8), image_size=16, spectral_norm=True))
    layers = [m for m in sn.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    assert count(sn) == count(plain)  # the power-iteration vectors are buffers, not parameters


def test_self_attention_matches_the_original_multihead_layout() -> None:
    # The study used nn.MultiheadAttention between a 1x1 qkv conv and a 1x1 output conv; ours calls
    # scaled_dot_product_attention on the same parameters and must give the same result.
    from ganji.models.unet import SelfAttention

    torch.manual_seed(0)
    attn = SelfAttention(16).eval()
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.in_proj.weight)
        mha.in_proj_bias.copy_(attn.in_proj.bias)
        mha.out_proj.weight.copy_(attn.out_proj.weight)
        mha.out_proj.bias.copy_(attn.out_proj.bias)
        x = torch.randn(2, 16, 4, 4)
        q, k, v = (a.flatten(2).transpose(1, 2) for a in attn.qkv(attn.norm(x)).chunk(3, dim=1))
        ref = x + attn.out(mha(q, k, v)[0].transpose(1, 2).reshape(2, 16, 4, 4))
        assert torch.allclose(attn(x), ref, atol=1e-5)


def test_timestep_embedding_matches_the_formula() -> None:
    t = torch.tensor([1, 17, 1023])
    dim = 16
    i = torch.arange(0, dim, 2).float()
    angles = t.float()[:, None] / 10000 ** (i / dim)
    expected = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # sin at even, cos at odd
    assert torch.allclose(timestep_embedding(t, dim), expected, atol=1e-4)


def test_models_work_channels_last() -> None:
    net = UNet(UNetConfig(image_size=16, base_width=8)).to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 16, 16).contiguous(memory_format=torch.channels_last)
    assert net(x, torch.tensor([1, 2])).shape == x.shape
    vae = VAE(VAEConfig(image_size=16, base_width=8, latent_dim=4)).to(memory_format=torch.channels_last)
    assert vae(x)[0].shape == x.shape
    cfg = GANConfig(latent_dim=8, layers=(32, 16, 16, 8), image_size=16)
    d = Discriminator(cfg).to(memory_format=torch.channels_last)
    assert d(x).shape == (2,)
    g = Generator(cfg).to(memory_format=torch.channels_last)
    assert g(torch.randn(2, 8)).shape == x.shape
