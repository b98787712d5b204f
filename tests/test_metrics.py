"""The metrics are validated on real kanji: they must move the right way on degraded data.

Real side and degraded side are both uint8 tensors of the same shape going through the same
extractor, as in `ganji fid`. Small n (400 per side, 32 px) keeps this quick on 2 CPU cores; the
full-size check is `ganji bench fid-validate` (its output is quoted in the issue note).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_kanji

from ganji.data.store import load_dataset
from ganji.features.extractors import load_extractor
from ganji.metrics.frechet import fid_from_features, frechet_distance, gaussian_stats
from ganji.metrics.kid import kernel_distance
from ganji.metrics.manifold import novelty, precision_recall
from ganji.metrics.protocol import score_features
from ganji.metrics.validate import add_noise, blur

HALF = 400


@pytest.fixture(scope="module")
def halves(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.Tensor, torch.Tensor]:
    home = tmp_path_factory.mktemp("home")
    make_kanji(home, name="k32", size=32, limit=2 * HALF)
    images = load_dataset(home, "k32").images
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return images[order[:HALF]], images[order[HALF:]]


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory):
    ex = load_extractor("kanji", torch.device("cpu"), tmp_path_factory.mktemp("cache"))
    return ex.features


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric(halves, extract) -> None:
    a, b = extract(halves[0]), extract(halves[1])
    assert fid_from_features(a, a) == pytest.approx(0, abs=1e-6 * np.trace(np.cov(a, rowvar=False)))
    assert fid_from_features(a, b) == pytest.approx(fid_from_features(b, a), rel=1e-6)


def test_frechet_distance_survives_singular_covariances() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 64))  # fewer rows than dimensions: rank-deficient covariances
    b = rng.normal(size=(20, 64)) + 0.5
    d = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    assert np.isfinite(d) and d > 0
    same = frechet_distance(*gaussian_stats(a), *gaussian_stats(a))
    assert isinstance(same, float) and abs(same) < 1e-6


def test_fid_grows_with_blur_and_with_noise(halves, extract) -> None:
    a = extract(halves[0])
    clean = fid_from_features(a, extract(halves[1]))
    blurred = [fid_from_features(a, extract(blur(halves[1], s))) for s in (0.5, 1.0, 2.0)]
    noisy = [fid_from_features(a, extract(add_noise(halves[1], s))) for s in (0.05, 0.15, 0.4)]
    assert clean < blurred[0] < blurred[1] < blurred[2], (clean, blurred)
    assert clean < noisy[0] < noisy[1] < noisy[2], (clean, noisy)


def test_kid_grows_with_blur_and_is_near_zero_between_halves(halves, extract) -> None:
    a, b = extract(halves[0]), extract(halves[1])
    kid_clean, std = kernel_distance(a, b, subsets=20, subset_size=200)
    kids = [kernel_distance(a, extract(blur(halves[1], s)), subsets=20, subset_size=200)[0] for s in (0.5, 1.0, 2.0)]
    assert abs(kid_clean) < 3 * std + 1e-3 * kids[-1]
    assert kid_clean < kids[0] < kids[1] < kids[2], (kid_clean, kids)


def test_kid_std_is_informative_when_n_is_below_the_subset_size(halves, extract) -> None:
    a, b = extract(halves[0][:100]), extract(halves[1][:100])
    mean, std = kernel_distance(a, b, subsets=20, subset_size=1000)  # subsets of 50: they differ
    assert std > 0 and abs(mean) < 10 * std


def test_precision_falls_with_blur_and_a_collapsed_set_has_low_recall(halves, extract) -> None:
    a, b = extract(halves[0]), extract(halves[1])
    p_clean, r_clean = precision_recall(a, b)
    p_blur = [precision_recall(a, extract(blur(halves[1], s)))[0] for s in (1.0, 2.0)]
    assert p_clean > 0.5 and r_clean > 0.5, (p_clean, r_clean)
    assert p_clean > p_blur[0] > p_blur[1], (p_clean, p_blur)
    collapsed = halves[1][:4].repeat(HALF // 4, 1, 1, 1)  # four kanji, over and over
    c = extract(collapsed)
    _, r_collapsed = precision_recall(a, c)
    assert r_collapsed < 0.1 < r_clean
    assert fid_from_features(a, c) > 2 * fid_from_features(a, b)


def test_novelty_flags_copies_of_training_images_but_not_new_or_noisy_ones(halves, extract) -> None:
    train, other = extract(halves[0]), extract(halves[1])
    copies = novelty(train, extract(halves[0][:100]))
    assert copies.copies == 1.0 and copies.mean_distance < copies.threshold
    # Unseen kanji are about as far from the training set as real kanji are from each other.
    assert novelty(train, other).copies < 0.1
    noise = torch.randint(0, 256, (100, 1, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    assert novelty(train, extract(noise)).copies == 0.0


def test_score_features_gives_every_metric_finite(halves, extract) -> None:
    scores = score_features(extract(halves[0]), extract(halves[1]))
    assert set(scores) == {"fid", "kid", "kid_std", "precision", "recall", "novelty_copies", "nn_distance"}
    assert all(np.isfinite(v) for v in scores.values())


def test_kanji_features_know_a_kanji_through_blur_and_weight_changes(halves, extract) -> None:
    """The shipped KanjiNet maps a degraded rendering nearest to its own clean rendering."""
    clean = halves[0]
    thick = torch.nn.functional.max_pool2d(clean.float(), 3, 1, 1).to(torch.uint8)
    for degraded in (blur(clean, 0.7), thick):
        d = torch.cdist(torch.from_numpy(extract(degraded)), torch.from_numpy(extract(clean)))
        hits = (d.argmin(1) == torch.arange(len(clean))).float().mean().item()
        assert hits > 0.9, hits


def test_shipped_weights_are_checked(tmp_path: Path) -> None:
    from ganji.errors import GanjiError
    from ganji.features.extractors import KANJI_NET_PATH, load_kanji_net

    fake = tmp_path / "kanji_net.safetensors"
    fake.write_bytes(KANJI_NET_PATH.read_bytes()[:-1] + b"\0")
    with pytest.raises(GanjiError, match="sha256"):
        load_kanji_net(fake)
    with pytest.raises(GanjiError, match="missing"):
        load_kanji_net(tmp_path / "absent.safetensors")
