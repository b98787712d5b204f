"""Reference rows: real kanji scored exactly like a model's samples, the scale every quality number is read on.

FID and its kin have no absolute meaning: they depend on the number of samples n, the features and
the data. So `ganji fid` and `ganji compare` put two rows of real kanji beside the models, at the
same n, with the same features, against the same real rows:
- "real, held out": n dataset kanji disjoint from the n the metrics compare against (all that are
  left when the dataset has fewer than 2n). The floor at this n: what a perfect model would score.
- "real, another font": n of the dataset's kanji drawn in another real font (Noto Sans CJK JP from
  the optional `noto-cjk-sans-jp-regular` package, or any font file), rendered by the dataset's own
  renderer at its size with its scale rule. What "looks like real kanji" scores.
Novelty ("copies") of the held-out row is measured against the training kanji other than itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ganji.data.store import Dataset
from ganji.errors import GanjiError
from ganji.features.extractors import Extractor
from ganji.metrics.protocol import REFERENCE_SEED, Score, Track, _no_track, dataset_features, reference_rows, score_features

HELD_OUT = "real, held out"
OTHER_FONT = "real, another font"


def default_reference_font() -> Path | None:
    """Noto Sans CJK JP Regular from the optional `noto-cjk-sans-jp-regular` package (`pip install
    ganji[fonts]`), or None if it is not installed."""
    try:
        import noto_cjk_sans_jp_regular
    except ImportError:
        return None
    return Path(str(noto_cjk_sans_jp_regular.FONT_PATH))


def _pick(candidates: np.ndarray, n: int) -> np.ndarray:
    """n of the candidate rows (all if fewer), a fixed random choice, in order."""
    if len(candidates) <= n:
        return candidates
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(REFERENCE_SEED + 1)).numpy()
    return np.sort(candidates[order[:n]])


def _score(label: str, real: np.ndarray, fake: np.ndarray, training: np.ndarray, dataset: Dataset, extractor: Extractor,
           start: float, details: dict) -> Score:
    scores = score_features(real, fake, training)
    return Score(model=label, run=None, n=len(fake), extractor=extractor.name, seconds=round(time.perf_counter() - start, 3),
                 dataset=dataset.name, reference_n=len(real), details=details, **scores)


def held_out_score(home: Path, dataset: Dataset, extractor: Extractor, n: int, track: Track = _no_track) -> Score:
    """The "real, held out" row: dataset kanji that are not among the metrics' real rows."""
    start = time.perf_counter()
    training = dataset_features(home, dataset, extractor, track)
    real_rows = reference_rows(len(training), n).numpy()
    rest = np.setdiff1d(np.arange(len(training)), real_rows)
    if len(rest) < 10:
        raise GanjiError(f"dataset {dataset.name!r} has {len(training)} images: too few to hold out 10 beside the {len(real_rows)} compared against")
    held = _pick(rest, n)
    others = np.setdiff1d(np.arange(len(training)), held)
    return _score(HELD_OUT, training[real_rows], training[held], training[others], dataset, extractor, start, {"rows": len(held)})


def render_in_font(dataset: Dataset, font: Path, n: int) -> tuple[torch.Tensor, str]:
    """n of the dataset's kanji (a fixed random choice of those the font covers) drawn in `font` the
    way ganji.data.prepare.build_kanji drew the dataset; and the font's name."""
    from ganji.data.charset import covered, font_codepoints
    from ganji.data.render import GlyphRenderer, inspect_font, render_all

    codepoints = dataset.manifest.get("codepoints")
    if dataset.manifest.get("source") != "kanji" or not isinstance(codepoints, list) or dataset.channels != 1:
        raise GanjiError(f"dataset {dataset.name!r} was not rendered from a font (`ganji fetch-data kanji`): it has no kanji to draw in another font")
    font = Path(font).expanduser()
    if not font.is_file():
        raise GanjiError(f"--reference-font {font} is not a font file")
    covers = covered([int(c) for c in codepoints], font_codepoints(font))
    if not covers:
        raise GanjiError(f"font {font} has none of the dataset's kanji")
    info = inspect_font(font, covers)  # the scale from the whole covered set, as the dataset's
    chosen = [covers[i] for i in _pick(np.arange(len(covers)), n)]
    result = render_all(GlyphRenderer(info, dataset.size), chosen)
    return torch.from_numpy(result.images), info.name


def other_font_score(home: Path, dataset: Dataset, extractor: Extractor, n: int, font: Path, track: Track = _no_track) -> Score:
    """The "real, another font" row."""
    start = time.perf_counter()
    training = dataset_features(home, dataset, extractor, track)
    images, name = render_in_font(dataset, font, n)
    if len(images) < 10:
        raise GanjiError(f"font {font} drew only {len(images)} of the dataset's kanji: at least 10 are needed")
    fake = extractor.features(images, on_batch=track(f"features of {name}", len(images)))
    real = training[reference_rows(len(training), n).numpy()]
    return _score(OTHER_FONT, real, fake, training, dataset, extractor, start, {"font": name})


def reference_scores(home: Path, dataset: Dataset, extractor: Extractor, n: int, font: Path | None = None,
                     track: Track = _no_track) -> tuple[list[Score], str | None]:
    """Both rows, or the held-out one and why the other is missing (no reference font installed)."""
    rows = [held_out_score(home, dataset, extractor, n, track)]
    font = font or default_reference_font()
    if font is None:
        return rows, "no reference font: `pip install noto-cjk-sans-jp-regular` (or ganji[fonts]) or pass --reference-font FILE for the 'real, another font' row"
    rows.append(other_font_score(home, dataset, extractor, n, font, track))
    return rows, None
