"""One measuring protocol for every model and for any folder of images.

1. Generated side: `n` images from the same code as `ganji sample` (EMA weights, clamped, quantised
   to uint8 exactly like the dataset), or a folder read by the same importer as `fetch-data --from`
   (polarity detected, resized to the dataset's size).
2. Real side: the dataset the run was trained on (min(n, dataset size) images, a fixed random
   subset when smaller), already uint8: both sides are the same kind of tensor before extraction.
3. Both go through the same extractor preparation; the dataset's features are cached under
   `<home>/cache/metrics/`, keyed by dataset sha256 and extractor sha256, and the real side is a
   fixed subset of n of them (seeded), so n never reuses another n's statistics.
4. FID, KID, precision/recall and novelty are computed from the two feature sets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ganji.atomic import write_atomic, write_json_atomic
from ganji.data.store import Dataset, load_dataset
from ganji.errors import GanjiError
from ganji.features.extractors import Extractor
from ganji.home import cache_dir
from ganji.metrics.frechet import fid_from_features
from ganji.metrics.kid import kernel_distance
from ganji.metrics.manifold import novelty, precision_recall

RESULTS_FILE = "fid.json"  # in a run folder: every evaluation of that run, newest last
REFERENCE_SEED = 0

Advance = Callable[[int], None]
Track = Callable[[str, int], Advance]  # (description, total) -> advance(k)


def _no_track(_: str, __: int) -> Advance:
    return lambda _k: None


@dataclass
class Score:
    """One evaluation; the JSON fields of `ganji fid --json`."""

    model: str
    run: str | None
    n: int
    extractor: str
    fid: float
    kid: float  # x1000
    kid_std: float  # x1000
    precision: float
    recall: float
    novelty_copies: float  # share of samples that are copies of training images
    nn_distance: float  # mean feature distance from a sample to its nearest training image
    seconds: float
    reference_n: int = 0
    dataset: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # step, sampler, ...

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def score_features(real: np.ndarray, fake: np.ndarray, training: np.ndarray | None = None, seed: int = 0) -> dict[str, float]:
    """Every metric from the two feature sets (rows are images). Novelty looks for copies among
    `training` (default: `real`), which should be the whole training set."""
    kid, kid_std = kernel_distance(real, fake, seed=seed)
    precision, recall = precision_recall(real, fake)
    nov = novelty(real if training is None else training, fake)
    return {
        "fid": fid_from_features(real, fake),
        "kid": kid * 1000,
        "kid_std": kid_std * 1000,
        "precision": precision,
        "recall": recall,
        "novelty_copies": nov.copies,
        "nn_distance": nov.mean_distance,
    }


def reference_rows(count: int, n: int) -> torch.Tensor:
    """Which dataset rows the real side uses: all of them, or a fixed random n (seed REFERENCE_SEED)."""
    if n >= count:
        return torch.arange(count)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(REFERENCE_SEED))
    return order[:n].sort().values


def dataset_features(home: Path, dataset: Dataset, extractor: Extractor, track: Track = _no_track) -> np.ndarray:
    """Features of every dataset image, cached under a key of the dataset's and the extractor's sha256.

    The real side of FID/KID/precision/recall is a fixed subset of these rows (`reference_rows`),
    novelty searches all of them: a copy of any training kanji counts.
    """
    sha = str(dataset.manifest.get("images_sha256", ""))
    key = f"{dataset.name}-{sha[:16]}-{extractor.name}-{extractor.sha256[:16]}"
    path = cache_dir(home) / "metrics" / f"{key}.safetensors"
    if path.is_file():
        try:
            cached = load_file(str(path))["features"].numpy()
            if cached.shape == (len(dataset), extractor.dim):
                return cached
        except (SafetensorError, OSError, KeyError):
            pass  # a damaged cache entry is recomputed and replaced
    feats = extractor.features(dataset.images, on_batch=track(f"features of {dataset.name}", len(dataset)))
    write_atomic(path, lambda tmp: save_file({"features": torch.from_numpy(feats)}, str(tmp), metadata={"key": key}))
    return feats


def _check_n(n: int) -> None:
    if n < 10:
        raise GanjiError(f"--n must be at least 10 for the metrics to mean anything (got {n})")


def evaluate_images(
    home: Path, images: torch.Tensor, dataset: Dataset, extractor: Extractor, n: int, track: Track = _no_track,
    extras: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of uint8 images (already generated or imported) against `dataset`.

    `extras`, when given, receives the images and both feature sets (for reports: nearest neighbours)."""
    if images.shape[1:] != dataset.images.shape[1:]:
        raise GanjiError(f"images are {tuple(images.shape[1:])} but dataset {dataset.name!r} holds {tuple(dataset.images.shape[1:])}")
    training = dataset_features(home, dataset, extractor, track)
    real = training[reference_rows(len(training), n).numpy()]
    fake = extractor.features(images, on_batch=track("features of samples", len(images)))
    scores = score_features(real, fake, training)
    if extras is not None:
        extras.update(images=images, features=fake, training_features=training, dataset=dataset)
    bad = [k for k, v in scores.items() if not math.isfinite(v)]
    if bad:
        raise GanjiError(f"the metrics {', '.join(bad)} are not finite: the images may be constant or broken")
    return {**scores, "reference_n": len(real)}


def evaluate_run(
    home: Path,
    model: str,
    run_name: str | None,
    extractor: Extractor,
    n: int,
    *,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    strict: bool = True,
    fallback: str | None = None,
    batch_size: int = 250,
    device: str = "auto",
    track: Track = _no_track,
    extras: dict[str, Any] | None = None,
    guide_run: str | None = None,
    guidance: float | None = None,
) -> Score:
    """Sample `n` images from a run (as `ganji sample` does) and score them; saved in the run folder.

    `sampler`/`steps` as `SampleRequest.resolve` takes them (`strict=False`: one choice for several models);
    `guide_run` and `guidance`: autoguidance by another run of the model (`ganji sample --guide-run`)."""
    from ganji.runs import find_run
    from ganji.sampling import SampleRequest, generate_tracked, load_model

    _check_n(n)
    start = time.perf_counter()
    run = find_run(home, model, run_name)
    loaded = load_model(home, model, run.name, None, device, guide_run=guide_run)
    request = SampleRequest.resolve(loaded.spec, loaded.recipe, n, seed=seed, batch_size=batch_size, sampler=sampler, steps=steps,
                                    strict=strict, fallback=fallback, guidance=guidance, guided=loaded.guide is not None)
    dataset_name = str(loaded.meta.get("config", {}).get("dataset", "kanji"))
    dataset = load_dataset(home, dataset_name)
    calls = loaded.recipe.model_calls(request.sampler)
    sample_start = time.perf_counter()
    images = generate_tracked(loaded, request, track, f"sampling {model}")
    sample_seconds = time.perf_counter() - sample_start  # generation only: loading is not sampling
    scores = evaluate_images(home, images, dataset, extractor, n, track, extras)
    details: dict[str, Any] = {"step": loaded.step, "seed": seed, "sample_seconds": round(sample_seconds, 3)}
    if request.sampler is not None:
        details.update(sampler=request.sampler.name, steps=request.sampler.steps or calls)
    if loaded.guide is not None:
        details.update(guide_run=loaded.guide.run_name, guidance=request.guidance)
    score = Score(
        model=model, run=run.name, n=n, extractor=extractor.name, seconds=round(time.perf_counter() - start, 3),
        dataset=dataset.name, details=details, **scores,
    )
    save_score(run.path, score)
    return score


def evaluate_folder(
    home: Path, folder: Path, dataset_name: str, extractor: Extractor, n: int, invert: bool | None = None, track: Track = _no_track
) -> Score:
    """Score the images of a folder (or zip) from anywhere against a prepared dataset."""
    from ganji.data.folder_import import check_image_source, import_images

    _check_n(n)
    start = time.perf_counter()
    check_image_source(Path(folder), "--images")
    dataset = load_dataset(home, dataset_name)
    check_reference(dataset)
    imported = import_images(Path(folder), dataset.size, dataset.channels, invert=invert, limit=n)
    images = torch.from_numpy(imported.images)
    if len(images) < 10:
        raise GanjiError(f"{folder} has only {len(images)} usable images: at least 10 are needed")
    scores = evaluate_images(home, images, dataset, extractor, n, track)
    details = {"folder": str(folder), "inverted": imported.inverted, "skipped": len(imported.skipped_unreadable)}
    return Score(
        model="images", run=None, n=len(images), extractor=extractor.name, seconds=round(time.perf_counter() - start, 3),
        dataset=dataset.name, details=details, **scores,
    )


MIN_REFERENCE = 4  # KID's subsets need 2 images a side and half of each set; precision/recall k = 3 neighbours + 1


def check_reference(dataset: Dataset) -> None:
    """A one-line GanjiError when `dataset` has too few images for the metrics (KID, precision/recall)."""
    if len(dataset) < MIN_REFERENCE:
        raise GanjiError(
            f"dataset {dataset.name!r} has only {len(dataset)} image{'s' if len(dataset) != 1 else ''}: "
            f"the metrics need at least {MIN_REFERENCE}"
        )


def save_score(run_path: Path, score: Score) -> None:
    """Append to the run's metrics.json (atomically: a crash keeps the previous list)."""
    import json

    path = run_path / RESULTS_FILE
    history: Any = []
    if path.is_file():
        try:
            history = json.loads(path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            history = None
        if not isinstance(history, list):
            # Damaged or edited: keep it beside the new list rather than overwrite it.
            path.replace(path.with_name(f"{RESULTS_FILE}.unreadable-{int(time.time())}"))
            history = []
    history.append({"time": time.time(), **score.to_json()})
    write_json_atomic(path, history)
