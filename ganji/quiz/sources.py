"""Drawing a deck's pictures: real kanji from the runs' own dataset, generated ones from each run (as
`ganji sample` makes them) or from a folder of images (`--images DIR`).

Every picture leaves here as C x H x W uint8 with the ink bright, the datasets' convention, at the
dataset's size: the one path to the reader (`cards.encode_card`) starts from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganji.errors import GanjiError
from ganji.quiz.deck import FAKE, REAL_SOURCE, Drawn, Source, check_deck_size, choose_folder_rows, choose_rows, split_evenly
from ganji.recipes import model_names, spec
from ganji.runs import find_run, list_runs, read_run_config

IMAGES = "images"  # the model name of `--images DIR` cards
FOLDER_LIMIT = 5_000  # images read from an --images folder, of which the deck's are drawn
DEFAULT_DATASET = "kanji"

# track(description, total) -> advance(k): a progress bar, as ganji.metrics.protocol.Track.
Track = Callable[[str, int], Callable[[int], None]]


def _no_track(_: str, __: int) -> Callable[[int], None]:
    return lambda _k: None


@dataclass
class DrawnDeck:
    """The pictures of a deck, not yet shuffled; `generators` records how each generator's were made."""

    dataset: str
    size: int
    drawn: list[Drawn]
    generators: list[dict[str, Any]] = field(default_factory=list)


def resolve_sources(home: Path, models: list[str], runs: dict[str, str | None], images: Path | None) -> list[Source]:
    """The generators of a quiz: the models named (every model with a run when none is, and no
    --images), each with its run from `runs` (default: its latest), then the --images folder."""
    known = model_names()
    for name in models:
        if name not in known:
            raise GanjiError(f"unknown model {name!r}: choose from {', '.join(known)}")
    named = [m for m, r in runs.items() if r is not None]
    if models:
        stray = [m for m in named if m not in models]
        if stray:
            raise GanjiError(f"--runs names {', '.join(stray)}, which is not among the models to quiz ({', '.join(models)})")
        chosen = list(dict.fromkeys(models))
    elif images is None:
        chosen = [m for m in known if runs.get(m) is not None or list_runs(home, m)]
        if not chosen:
            raise GanjiError("no trained run to quiz: train one with `ganji train MODEL`, or quiz a folder of images with --images DIR")
    else:
        chosen = named
    sources = [Source(FAKE, m, find_run(home, m, runs.get(m)).name) for m in chosen]
    if images is not None:
        sources.append(Source(FAKE, IMAGES, str(Path(images).expanduser().resolve())))
    return sources


def quiz_dataset(home: Path, sources: list[Source], dataset: str | None) -> str:
    """The dataset of the real cards: the runs' own (one for all of them), else --dataset, else kanji."""
    trained_on: dict[str, str] = {}
    for s in sources:
        if s.model != IMAGES:
            saved = read_run_config(find_run(home, str(s.model), s.run))
            trained_on[f"{s.model}/{s.run}"] = str((saved.get("dataset") or {}).get("name") or saved["config"].get("dataset", DEFAULT_DATASET))
    names = set(trained_on.values())
    if len(names) > 1:
        listed = ", ".join(f"{run} on {name}" for run, name in trained_on.items())
        raise GanjiError(f"the runs were trained on different datasets ({listed}): quiz the runs of one dataset at a time")
    if names:
        (name,) = names
        if dataset is not None and dataset != name:
            raise GanjiError(f"the real cards come from the runs' own dataset, {name!r}: leave out --dataset {dataset}")
        return name
    return dataset or DEFAULT_DATASET


def draw_deck(
    home: Path,
    sources: list[Source],
    n: int,
    seed: int,
    *,
    dataset: str | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    device: str = "auto",
    track: Track = _no_track,
) -> DrawnDeck:
    """The `n` pictures of a deck: n/2 distinct real ones and n/2 generated, split over `sources`."""
    from ganji.data.store import load_dataset

    check_deck_size(n, len(sources))
    name = quiz_dataset(home, sources, dataset)
    data = load_dataset(home, name)
    half = n // 2
    if len(data) < half:
        raise GanjiError(f"dataset {name!r} has {len(data)} kanji: too few for {half} real cards without repeats (use a smaller --n)")
    rows = choose_rows(len(data), half, seed)
    drawn = [Drawn(REAL_SOURCE, data.images[r].numpy(), {"dataset": name, "row": r}) for r in rows]
    generators = []
    for source, k in split_evenly(half, sources, seed).items():
        if source.model == IMAGES:
            images, origins, made = _from_folder(Path(str(source.run)), k, seed, data.size, data.channels)
        else:
            images, origins, made = _from_run(home, source, k, seed, sampler, steps, device, track)
        if images.shape[1:] != tuple(data.images.shape[1:]):
            raise GanjiError(
                f"{source.label} makes {images.shape[-1]} px pictures with {images.shape[1]} channels, but its dataset "
                f"{name!r} holds {data.size} px ones with {data.channels}: the cards must all be alike"
            )
        drawn += [Drawn(source, images[i], origins[i]) for i in range(k)]
        generators.append({**source.to_json(), "cards": k, **made})
    return DrawnDeck(dataset=name, size=data.size, drawn=drawn, generators=generators)


def _from_run(home: Path, source: Source, k: int, seed: int, sampler: str | None, steps: int | None, device: str,
              track: Track) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """`k` samples of a run, exactly as `ganji sample` makes them (EMA weights, the quiz's seed); an
    iterative model with --sampler where it has it, else its fast sampler (as `ganji compare`)."""
    from ganji.sampling import SampleRequest, generate_tracked, load_model

    model = str(source.model)
    loaded = load_model(home, model, source.run, None, device)
    request = SampleRequest.resolve(loaded.spec, loaded.recipe, k, seed=seed, sampler=sampler, steps=steps, strict=False,
                                    fallback=spec(model).sampling.fast)
    calls = loaded.recipe.model_calls(request.sampler)
    images = generate_tracked(loaded, request, track, f"sampling {model}")
    made = {"step": loaded.step, "seed": seed}
    if request.sampler is not None:
        made.update(sampler=request.sampler.name, steps=request.sampler.steps or calls)
    return images.numpy(), [{"sample": i} for i in range(k)], made


def _from_folder(folder: Path, k: int, seed: int, size: int, channels: int) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """`k` distinct images of a folder (or zip), drawn by the seed among its first FOLDER_LIMIT, brought
    to the dataset's size and ink convention as `ganji fid --images` reads them."""
    from ganji.data.folder_import import check_image_source, import_images

    check_image_source(folder, "--images")
    imported = import_images(folder, size, channels, invert=None, limit=FOLDER_LIMIT)
    if len(imported.images) < k:
        raise GanjiError(f"--images: {folder} has {len(imported.images)} usable images, fewer than its {k} cards (use a smaller --n)")
    rows = choose_folder_rows(len(imported.images), k, seed)
    return imported.images[rows], [{"file": imported.files[r]} for r in rows], {"folder": str(folder)}
