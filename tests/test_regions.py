"""Region maps of positioned components (ganji.models.regions, `--component-regions`)."""

from __future__ import annotations

import torch

from ganji.models.regions import REGIONS, RegionMap, region_masks


def test_masks_cover_their_part_of_the_image() -> None:
    names = sorted(REGIONS)
    masks = dict(zip(names, region_masks(names, 32)))
    assert all(m.shape == (32, 32) and m.min() >= 0 and m.max() <= 1 for m in masks.values())
    left, right, top, bottom = (masks[p] for p in ("left", "right", "top", "bottom"))
    assert (left[:, :12] > 0.99).all() and (left[:, 20:] < 0.01).all()
    assert torch.allclose(left + right, torch.ones(32, 32), atol=1e-6)  # the two halves split the image
    assert torch.equal(top, left.T) and torch.equal(bottom, right.T)
    assert torch.allclose(masks["kamae"] + masks["kamaec"], torch.ones(32, 32))  # the frame and what it holds
    assert masks["kamae"][0, 16] > 0.99 and masks["kamaec"][16, 16] > 0.99
    assert masks["tare"][2, 28] > 0.99 and masks["tare"][28, 28] < 0.01  # over the top, not the bottom right
    assert masks["nyo"][30, 28] > 0.99 and masks["nyo"][2, 28] < 0.01  # along the bottom, not the top right


def test_a_key_paints_its_vector_into_its_region_only() -> None:
    torch.manual_seed(0)
    regions = RegionMap(("left", "any", "right"), 16, dim=3, levels=2)
    cond = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]])
    maps = regions.paint(regions.coefficients(cond), 16)
    assert maps.shape == (4, 3, 16, 16)
    e = regions.embed.weight  # dim x keys: column k is key k's vector
    assert torch.allclose(maps[0, :, 5, 1], e[:, 0]) and maps[0, :, :, 10:].abs().max() < 1e-3
    assert torch.equal(maps[1], torch.zeros(3, 16, 16))  # a key without a place paints nothing
    assert torch.equal(maps[2], torch.zeros(3, 16, 16))  # nor does the null label
    assert torch.allclose(maps[3], maps[0] + regions.paint(regions.coefficients(torch.tensor([[0.0, 0, 1]])), 16)[0])
    # Each U-Net level gets the map at its size: the same picture, average-pooled.
    small = regions.paint(regions.coefficients(cond), 4)
    assert small.shape == (4, 3, 4, 4)
    assert torch.allclose(small, torch.nn.functional.avg_pool2d(maps, 4), atol=1e-6)
