"""Measuring component-conditioned generation (issue 19): does a request for components get them?

A request is a set of (component, position) keys, e.g. ("魚:left", "山:right"). Three kinds, chosen
from the dataset's labels by fixed rules (`request_suite`), so every model is asked the same:
- "existing": the keys of a real kanji built from exactly two components that the recogniser knows
  (the model has seen this combination, unless it was trained with `--hold-out-requests`: then no
  kanji with both keys, real or made up, was in its training, `held_out_pairs`);
- "new": a left and a right component that each occur in many kanji but never together;
- "single": one common key alone; enough real kanji have it for an FID against them.

For each request the model draws `per_request` samples and ComponentNet (ganji.features.component_net)
checks them:
- hit rate: the share of samples in which every requested key is found, and each key's own share
  (for a pair: how often its first part, left or top, and its second part are found: which part fails);
- chance: the same share among the model's unconditional samples (guidance 0), the hit rate of not
  asking: what a request adds is its hit rate above this;
- nearest: the share of samples whose nearest real kanji (KanjiNet features) has every requested key,
  and its chance the same way: a looser reading than the recogniser's, that says whether a request
  moves the samples towards real kanji built that way even where it draws a component too roughly
  for ComponentNet to name it;
- novelty: the share of samples that are not copies of a dataset kanji (KanjiNet features, the
  threshold of ganji.metrics.manifold.novelty);
- real parts: the hit rate of the dataset itself for the same keys, the most a model drawing as
  well as the font could score by ComponentNet's reading: for a single key, the real kanji that have
  it (those the FID compares against); for a pair, made-up kanji of real parts (its first part cut
  from a real two-part kanji, its second from another, as ganji.features.component_mix cuts them),
  so that "new" pairs have a reference too;
- real kanji (pairs): the hit rate of the dataset's own kanji that have every requested key, as the
  font draws them (for an "existing" pair, the kanji it was taken from and any others built so; a
  "new" pair has none): the judge's ceiling on the real thing, beside real parts' ceiling on a
  made-up one;
- FID (single-key requests pooled): the conditioned samples against as many real kanji with the same
  keys, and, as the baseline that says whether conditioning moved anything, the same model's
  unconditional samples (guidance 0) against the same real kanji.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganji.data.components import join_pair, split_key
from ganji.features.component_mix import FIRST_POSITION, label_structure
from ganji.features.component_net import ComponentRecogniser
from ganji.metrics.frechet import fid_from_features
from ganji.metrics.manifold import copy_threshold, nearest_neighbours

KINDS = ("existing", "new", "single")
MIN_PAIR_COUNT = 20  # a "new" pair's two keys each occur in at least this many kanji
MIN_SINGLE_COUNT = 100  # a "single" request's key occurs in at least this many kanji
PER_KIND = 6  # requests of each kind in the suite

Generate = Callable[[tuple[str, ...], int, int], torch.Tensor]  # (keys, n, seed) -> uint8 images N x C x H x W


@dataclass(frozen=True)
class Request:
    keys: tuple[str, ...]
    kind: str
    example: str = ""  # a real kanji with these keys ("existing"), else ""

    @property
    def label(self) -> str:
        return " + ".join(self.keys)


def request_suite(
    vocabulary: list[str], components: torch.Tensor, codepoints: list[int], known: set[str], per_kind: int = PER_KIND
) -> list[Request]:
    """`per_kind` requests of each kind from a dataset's labels (N x V multi-hot over `vocabulary`,
    rows in the order of `codepoints`), using only keys the recogniser knows (`known`). Deterministic:
    the same labels give the same requests, spread over the frequency range."""
    labels = components.bool().numpy()
    counts = labels.sum(axis=0)
    column = {key: i for i, key in enumerate(vocabulary)}
    positional = [k for k in vocabulary if not k.endswith(":any") and k in known]

    def spread(items: list[Any]) -> list[Any]:
        if len(items) <= per_kind:
            return items
        return [items[int(i)] for i in np.linspace(0, len(items) - 1, per_kind).round()]

    # Existing: kanji with exactly two positional keys, left + right or top + bottom.
    existing: list[Request] = []
    seen: set[tuple[str, ...]] = set()
    for row in np.flatnonzero(label_structure(labels, vocabulary)):
        keys = tuple(vocabulary[i] for i in np.flatnonzero(labels[row]) if not vocabulary[i].endswith(":any"))
        if all(k in known for k in keys) and keys not in seen:
            seen.add(keys)
            existing.append(Request(tuple(sorted(keys, key=lambda k: split_key(k)[1] not in FIRST_POSITION.values())), "existing", chr(codepoints[row])))
    existing.sort(key=lambda r: (-min(counts[column[k]] for k in r.keys), r.keys))

    # New: frequent left and right keys never seen together.
    lefts = sorted((k for k in positional if k.endswith(":left") and counts[column[k]] >= MIN_PAIR_COUNT), key=lambda k: (-counts[column[k]], k))
    rights = sorted((k for k in positional if k.endswith(":right") and counts[column[k]] >= MIN_PAIR_COUNT), key=lambda k: (-counts[column[k]], k))
    new: list[Request] = []
    for i, left in enumerate(lefts):
        right = rights[(3 * i) % len(rights)] if rights else None
        if right is None or split_key(left)[0] == split_key(right)[0]:
            continue
        if not (labels[:, column[left]] & labels[:, column[right]]).any():
            new.append(Request((left, right), "new"))

    single = [Request((k,), "single") for k in sorted(positional, key=lambda k: (-counts[column[k]], k)) if counts[column[k]] >= MIN_SINGLE_COUNT]
    return spread(existing) + spread(new) + spread(single)


def held_out_pairs(vocabulary: list[str], components: torch.Tensor, codepoints: list[int], known: set[str]) -> tuple[list[str], np.ndarray]:
    """What `ganji train --hold-out-requests` leaves out: the suite's existing pairs ("艹:top+心:bottom",
    `join_pair`) and the rows of every dataset kanji that has both keys of one, so that those requests
    ask for combinations the run never saw, as new pairs do, with real kanji to compare against (the
    issue's "held-out kanji"). The same labels and recogniser give the same pairs (`request_suite`)."""
    labels = components.bool().numpy()
    column = {key: i for i, key in enumerate(vocabulary)}
    pairs = [r.keys for r in request_suite(vocabulary, components, codepoints, known) if r.kind == "existing"]
    return [join_pair(keys) for keys in pairs], rows_with_pairs(labels, column, pairs)


def rows_with_pairs(labels: np.ndarray, column: dict[str, int], pairs: list[tuple[str, ...]]) -> np.ndarray:
    """The rows of `labels` (N x V bools) that have both keys of any of `pairs`."""
    rows = np.zeros(len(labels), bool)
    for keys in pairs:
        rows |= labels[:, [column[k] for k in keys]].all(axis=1)
    return np.flatnonzero(rows)


@dataclass
class RequestScore:
    request: Request
    hit_rate: float
    novelty: float
    samples: int
    nearest: list[int] = field(default_factory=list)  # dataset row of each sample's nearest real kanji
    chance: float = 0.0  # the hit rate of the model's unconditional samples for the same keys
    nearest_has: float = 0.0  # share of samples whose nearest real kanji has every requested key
    nearest_chance: float = 0.0  # the same for the model's unconditional samples
    found_each: list[float] = field(default_factory=list)  # per requested key: the share of samples it is found in
    real_hit_rate: float | None = None  # the hit rate of real parts with the same keys (module docstring); None: none to cut
    real_found_each: list[float] = field(default_factory=list)  # per requested key: the share of real parts it is found in
    real_kanji_hit_rate: float | None = None  # a pair's: the hit rate of the dataset's kanji with every requested key; None: there are none
    real_kanji: int = 0  # how many such kanji were read

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.request), "hit_rate": self.hit_rate, "real_hit_rate": self.real_hit_rate,
                "real_kanji_hit_rate": self.real_kanji_hit_rate, "real_kanji": self.real_kanji,
                "real_found_each": dict(zip(self.request.keys, self.real_found_each)), "chance": self.chance, "nearest_has": self.nearest_has,
                "nearest_chance": self.nearest_chance, "novelty": self.novelty, "samples": self.samples,
                "found_each": dict(zip(self.request.keys, self.found_each))}


@dataclass
class ConditioningScore:
    guidance: float
    per_request: int
    requests: list[RequestScore]
    fid_conditioned: float | None  # single-key requests pooled, against real kanji with those keys
    fid_unconditioned: float | None  # guidance 0 samples against the same real kanji
    real_n: int

    def by_kind(self) -> dict[str, dict[str, float]]:
        """Mean hit rate, chance, nearest-has (and its chance) and novelty per kind of request; for
        pairs also how often their first part (left/top) and their second part are found."""
        out: dict[str, dict[str, float]] = {}
        for kind in KINDS:
            scores = [s for s in self.requests if s.request.kind == kind]
            if scores:
                out[kind] = {name: float(np.mean([getattr(s, name) for s in scores]))
                             for name in ("hit_rate", "chance", "nearest_has", "nearest_chance", "novelty")}
                if all(len(s.found_each) == 2 for s in scores):
                    out[kind]["first_found"] = float(np.mean([s.found_each[0] for s in scores]))
                    out[kind]["second_found"] = float(np.mean([s.found_each[1] for s in scores]))
                out[kind]["requests"] = len(scores)
                referenced = [s for s in scores if s.real_hit_rate is not None]
                if referenced:  # over the requests that have real parts; the model's hit rate on those alone beside it
                    out[kind]["real_hit_rate"] = float(np.mean([s.real_hit_rate for s in referenced]))
                    out[kind]["hit_rate_where_real"] = float(np.mean([s.hit_rate for s in referenced]))
                    out[kind]["real_requests"] = len(referenced)
                    if all(len(s.real_found_each) == 2 for s in referenced):
                        out[kind]["real_first_found"] = float(np.mean([s.real_found_each[0] for s in referenced]))
                        out[kind]["real_second_found"] = float(np.mean([s.real_found_each[1] for s in referenced]))
                in_font = [s for s in scores if s.real_kanji_hit_rate is not None]
                if in_font:  # the same over the requests whose keys real kanji have together
                    out[kind]["real_kanji_hit_rate"] = float(np.mean([s.real_kanji_hit_rate for s in in_font]))
                    out[kind]["hit_rate_where_real_kanji"] = float(np.mean([s.hit_rate for s in in_font]))
                    out[kind]["real_kanji_requests"] = len(in_font)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"guidance": self.guidance, "per_request": self.per_request, "by_kind": self.by_kind(),
                "fid_conditioned": self.fid_conditioned, "fid_unconditioned": self.fid_unconditioned, "real_n": self.real_n,
                "requests": [s.to_json() for s in self.requests]}


def rows_with(has: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Up to `n` of the rows where `has` (N bools) holds, drawn without replacement, in order."""
    have = np.flatnonzero(has)
    return np.sort(np.random.default_rng(seed).choice(have, size=min(n, len(have)), replace=False))


def real_parts(
    request: Request, images: torch.Tensor, labels: np.ndarray, structure: np.ndarray, column: dict[str, int], n: int, seed: int
) -> torch.Tensor | None:
    """Up to `n` real renderings with a request's keys (module docstring: "real parts"), or None when
    the dataset has none to cut. `images`: the dataset (uint8 N x 1 x S x S), `labels` its multi-hot
    keys (N x V bools, columns `column`), `structure` their `label_structure`: a pair's parts come
    from the real kanji that the labels make two-part, the suite's rule for existing pairs."""
    from ganji.features.component_mix import LEFT_RIGHT, TOP_BOTTOM, compose, cut_lines

    if len(request.keys) == 1:
        rows = rows_with(labels[:, column[request.keys[0]]], n, seed)
        return images[torch.from_numpy(rows)] if len(rows) else None
    rng = np.random.default_rng(seed)
    first, second = request.keys
    kind = LEFT_RIGHT if split_key(first)[1] == "left" else TOP_BOTTOM
    two_part = structure == kind
    firsts = np.flatnonzero(two_part & labels[:, column[first]])
    seconds = np.flatnonzero(two_part & labels[:, column[second]])
    if not len(firsts) or not len(seconds):
        return None
    a, b = rng.choice(firsts, size=n), rng.choice(seconds, size=n)
    cuts_a = cut_lines(images[torch.from_numpy(a), 0].numpy(), kind)
    cuts_b = cut_lines(images[torch.from_numpy(b), 0].numpy(), kind)
    made = [compose(images[i].float() / 255, images[j].float() / 255, int(cuts_a[0][m]), int(cuts_b[1][m]), kind)
            for m, (i, j) in enumerate(zip(a.tolist(), b.tolist()))]
    return torch.stack(made).mul(255).round().clamp(0, 255).to(torch.uint8)


def score_requests(
    requests: list[Request],
    generate: Generate,
    recogniser: ComponentRecogniser,
    features: Callable[[torch.Tensor], np.ndarray],
    dataset_features: np.ndarray,
    dataset_components: torch.Tensor,
    vocabulary: list[str],
    per_request: int,
    guidance: float,
    seed: int = 0,
    on_request: Callable[[Request], None] | None = None,
    dataset_images: torch.Tensor | None = None,
) -> ConditioningScore:
    """Hit rate, chance and novelty of every request, and the pooled FID of the single-key ones.

    `generate(keys, n, seed)` draws n samples for a request (keys = () for unconditional ones),
    `features` maps uint8 images to KanjiNet features, `dataset_features` are every dataset image's.
    The unconditional samples (as many as the single-key requests', at least 4 requests' worth) give
    every request's chance and the FID baseline. With `dataset_images` (uint8, row for row with
    `dataset_features`), every request's real parts are read too (`real_parts`), and every pair's
    real kanji (up to `per_request` of them).
    """
    threshold = copy_threshold(dataset_features)
    column = {key: i for i, key in enumerate(vocabulary)}
    labels = dataset_components.bool().numpy()
    structure = label_structure(labels, vocabulary)

    def shares(found: torch.Tensor, keys: tuple[str, ...]) -> list[float]:
        return [float(recogniser.hits(found, [key]).float().mean()) for key in keys]

    def nearest_have(rows: np.ndarray, keys: tuple[str, ...]) -> float:
        return float(labels[rows][:, [column[k] for k in keys]].all(axis=1).mean())

    scores: list[RequestScore] = []
    fake_single: list[np.ndarray] = []
    real_rows: list[np.ndarray] = []
    for k, request in enumerate(requests):
        images = generate(request.keys, per_request, seed + k)
        found = recogniser.found(images)
        hits = recogniser.hits(found, list(request.keys))
        feats = features(images)
        distances, rows = nearest_neighbours(feats, dataset_features)
        score = RequestScore(request, float(hits.float().mean()), float((distances >= threshold).mean()), len(images), rows.tolist(),
                             nearest_has=nearest_have(rows, request.keys), found_each=shares(found, request.keys))
        reference = None if dataset_images is None else real_parts(request, dataset_images, labels, structure, column, per_request, seed + k)
        if reference is not None:
            real_found = recogniser.found(reference)
            score.real_hit_rate = float(recogniser.hits(real_found, list(request.keys)).float().mean())
            score.real_found_each = shares(real_found, request.keys)
        together = labels[:, [column[k] for k in request.keys]].all(axis=1)
        if dataset_images is not None and len(request.keys) > 1 and together.any():
            rows_in_font = rows_with(together, per_request, seed + k)
            score.real_kanji_hit_rate = float(recogniser.finds_all(dataset_images[torch.from_numpy(rows_in_font)], list(request.keys)).float().mean())
            score.real_kanji = len(rows_in_font)
        scores.append(score)
        if request.kind == "single":
            fake_single.append(feats)
            real_rows.append(rows_with(labels[:, column[request.keys[0]]], per_request, seed + k))  # = its real parts
        if on_request is not None:
            on_request(request)
    plain = generate((), max(sum(len(f) for f in fake_single), 4 * per_request), seed + len(requests))
    plain_features = features(plain)
    plain_nearest = nearest_neighbours(plain_features, dataset_features)[1]
    plain_found = recogniser.found(plain)  # once for every request, not once per request
    for score in scores:
        score.chance = float(recogniser.hits(plain_found, list(score.request.keys)).float().mean())
        score.nearest_chance = nearest_have(plain_nearest, score.request.keys)
    fid_c = fid_u = None
    real_n = 0
    if fake_single:
        real = dataset_features[np.concatenate(real_rows)]
        real_n = len(real)
        fid_c = fid_from_features(real, np.concatenate(fake_single))
        fid_u = fid_from_features(real, plain_features)
    return ConditioningScore(guidance, per_request, scores, fid_c, fid_u, real_n)


def evaluate_conditioning(
    home: Path,
    model: str,
    run_name: str | None,
    *,
    per_request: int = 32,
    per_kind: int = PER_KIND,
    guidance: float | None = None,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    batch_size: int = 250,
    device: str = "auto",
    on_request: Callable[[Request], None] | None = None,
    guide_run: str | None = None,
    classifier_scale: float | None = None,
    best_of: int | None = None,
) -> tuple[ConditioningScore, dict[str, Any]]:
    """The request suite on a conditional run: its score, and what reporting it needs (the run, the
    checkpoint's step, the samples of every request, the dataset, the sampler they used: without
    `sampler`/`steps`, the model's default). With `guide_run`, requests are
    autoguided by that run (ganji.recipes.unet_recipe); the unconditional samples (chance, FID
    baseline) stay the run's own, unguided, so that every row is measured against the same baseline.
    With `classifier_scale`, requests are also classifier-guided by the run's noise-aware classifier
    (`ganji train-classifier`, ganji.recipes.flow), and with `best_of` K each request's image is the
    candidate of K that classifier reads the request in most surely (ganji.sampling.generate); the
    unconditional samples are neither."""
    from ganji.data.store import load_dataset
    from ganji.errors import GanjiError
    from ganji.features.component_net import load_component_net
    from ganji.features.extractors import load_extractor
    from ganji.home import cache_dir
    from ganji.metrics.protocol import dataset_features
    from ganji.runs import find_run
    from ganji.runtime.device import resolve_device
    from ganji.sampling import DEFAULT_AUTOGUIDANCE, DEFAULT_GUIDANCE, SampleRequest, check_best_of, generate, load_model

    if per_request < 4:
        raise GanjiError(f"--per-request must be at least 4 (got {per_request})")
    k = check_best_of(best_of, True)
    run = find_run(home, model, run_name)
    loaded = load_model(home, model, run.name, None, device, guide_run=guide_run, classifier=bool(classifier_scale) or k > 1)
    guided = loaded.guide is not None
    if not loaded.recipe.conditional:
        raise GanjiError(f"run {model}/{run.name} was trained without --condition components: there is nothing to ask it for")
    dataset = load_dataset(home, str(loaded.meta.get("config", {}).get("dataset", "kanji")))
    vocabulary = list(loaded.recipe.cfg.options.vocabulary)
    if dataset.components is None or dataset.component_vocabulary != vocabulary:
        raise GanjiError(f"dataset {dataset.name!r} no longer has the component labels run {model}/{run.name} was trained on")
    recogniser = load_component_net()
    torch_device = resolve_device(device)
    recogniser.net.to(torch_device)
    extractor = load_extractor("kanji", torch_device, cache_dir(home))
    requests = request_suite(vocabulary, dataset.components, list(dataset.manifest.get("codepoints", [])), set(recogniser.vocabulary), per_kind)
    if not requests:
        raise GanjiError(f"dataset {dataset.name!r} has too few labelled kanji for the request suite")
    w = (DEFAULT_AUTOGUIDANCE if guided else DEFAULT_GUIDANCE) if guidance is None else guidance
    # The sampler does not depend on the request: resolved once for the report (and a bad --steps fails before any sampling).
    used = SampleRequest.resolve(loaded.spec, loaded.recipe, per_request, sampler=sampler, steps=steps).sampler
    assert used is not None  # a conditional model is a U-Net, which samples in steps
    drawn: dict[tuple[str, ...], torch.Tensor] = {}

    def draw(keys: tuple[str, ...], n: int, s: int) -> torch.Tensor:
        request = SampleRequest.resolve(loaded.spec, loaded.recipe, n, seed=s, batch_size=batch_size, sampler=sampler, steps=steps,
                                        with_keys=list(keys) or None, guidance=w if keys else (0.0 if guided else None), guided=guided,
                                        classifier_scale=classifier_scale if keys else None, best_of=k if keys else None)
        images = generate(loaded, request)
        drawn[keys] = images
        return images

    score = score_requests(requests, draw, recogniser, extractor.features, dataset_features(home, dataset, extractor),
                           dataset.components, vocabulary, per_request, w, seed, on_request, dataset.images)
    return score, {"samples": drawn, "dataset": dataset, "run": run, "step": loaded.step,
                   "guide_run": loaded.guide.run_name if guided else None, "classifier_guidance": classifier_scale or 0.0, "best_of": k,
                   "held_out": list(getattr(loaded.recipe.cfg.options, "held_out", ())), "sampler": used}
