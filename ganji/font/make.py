"""`ganji font`: samples (or any folder of glyph images) -> chosen glyphs -> traced outlines -> an
installable font, its map (FONT.json), and how faithful the tracing was.

Stages:
  1. candidates   a run's samples (`--n` x 2 by default, so the filter has some to drop) or a folder
  2. choose       new and sane ones (ganji.font.select), or every inked one without the filter
  3. trace        potrace's algorithm on each (ganji.font.trace)
  4. build        the font at U+E000... (ganji.font.build), checked before it replaces anything:
                  fontTools' reading of it (ganji.font.build.check_font), and FreeType's rendering
  5. measure      render every glyph back through FreeType at the samples' size: ink IoU per glyph,
                  and FID of the renders against FID of the raster samples (same features, same n,
                  same real side), so tracing is shown not to make the glyphs less real
  6. write        FONT.json; with --also-png the traced glyphs, the samples and a specimen sheet
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganji.atomic import check_replaceable, write_atomic, write_text_atomic
from ganji.data.store import Dataset
from ganji.errors import GanjiError
from ganji.features.extractors import Extractor
from ganji.font.build import FIRST_CODEPOINT, MAX_GLYPHS, FontNames, build_font, check_font, font_format, glyph_name
from ganji.font.render import INK, ink_iou, render_glyphs, specimen
from ganji.font.select import GlyphStats, SanityRange, choose
from ganji.font.settings import TraceSettings
from ganji.font.trace import ink_area, trace_glyph
from ganji.metrics.protocol import Track, _no_track, dataset_features, reference_rows

REAL_SAMPLE = 2000  # real kanji the sanity range is measured on
GLYPH_PNG_PIXELS = 128  # --also-png: traced glyphs drawn this large (they are outlines: any size is sharp)
MIN_MEASURE = 10  # FID needs at least this many glyphs on each side


@dataclass(frozen=True)
class GlyphSource:
    """Candidate glyphs, in order, with what the font's name table and map say about them."""

    images: np.ndarray  # N x 1 x S x S uint8, ink bright
    labels: list[str]  # per image: "sample 17", or a file name
    description: str  # e.g. "flow run quick (step 5000), seed 0"
    meta: dict[str, Any]  # model, run, step, seed, sampler... or folder


@dataclass(frozen=True)
class FontPlan:
    output: Path
    n: int = 256
    name: str = "Ganji Fake Kanji"
    filtered: bool = True
    settings: TraceSettings = TraceSettings()
    also_png: bool = False
    measure: bool = True

    def check(self) -> None:
        """Every cheap check, before any sampling."""
        if not 1 <= self.n <= MAX_GLYPHS:
            raise GanjiError(f"--n must be 1 to {MAX_GLYPHS:,}, the glyphs the Private Use Area holds (got {self.n})")
        font_format(self.output)
        FontNames(self.name, "").check()
        self.settings.check()
        for path in self.outputs():
            check_replaceable(path)
        for folder in (self.glyph_dir, self.sample_dir) if self.also_png else ():
            if folder.exists() and not folder.is_dir() or folder.is_symlink() and not folder.exists():
                raise GanjiError(f"{folder} exists and is not a folder: --also-png writes the glyphs' PNGs there")

    def outputs(self) -> list[Path]:
        files = [self.output, self.map_path]
        return files + ([self.specimen_path] if self.also_png else [])

    @property
    def map_path(self) -> Path:
        return self.output.with_name(self.output.name + ".json")

    @property
    def specimen_path(self) -> Path:
        return self.output.with_name(f"{self.output.stem}-specimen.png")

    @property
    def glyph_dir(self) -> Path:
        return self.output.with_name(f"{self.output.stem}-glyphs")

    @property
    def sample_dir(self) -> Path:
        return self.output.with_name(f"{self.output.stem}-samples")


@dataclass
class FontReport:
    codepoints: list[int]
    candidates: int
    rejected: dict[str, int]  # why candidates were left out: blank, copies, odd, spare (not needed), untraceable
    iou: float  # mean ink IoU of the font's renders against their samples
    raster: dict[str, float] | None = None  # the samples' FID, KID, precision, recall (with --measure)
    traced: dict[str, float] | None = None  # the same of the font's renders
    files: list[Path] = field(default_factory=list)


def candidates_needed(n: int, filtered: bool, candidates: int | None) -> int:
    """How many samples to draw: 2n by default with the filter (it drops some), n without."""
    wanted = candidates if candidates is not None else (2 * n if filtered else n)
    if wanted < n:
        raise GanjiError(f"--candidates must be at least --n ({n}); got {wanted}")
    return wanted


def sample_source(home: Path, model: str, run: str | None, count: int, *, seed: int = 0, sampler: str | None = None,
                  steps: int | None = None, batch_size: int = 250, device: str = "auto", track: Track = _no_track) -> tuple[GlyphSource, str]:
    """`count` samples of a run (as `ganji sample` draws them), and the name of the run's dataset."""
    from ganji.sampling import SampleRequest, generate_tracked, load_model

    loaded = load_model(home, model, run, None, device)
    request = SampleRequest.resolve(loaded.spec, loaded.recipe, count, seed=seed, batch_size=batch_size, sampler=sampler, steps=steps)
    images = generate_tracked(loaded, request, track, f"sampling {model}")
    sampler_name = request.sampler.label if request.sampler else None
    description = f"{model} run {loaded.run_name} (step {loaded.step}), seed {seed}" + (f", {sampler_name}" if sampler_name else "")
    meta = {"model": model, "run": loaded.run_name, "step": loaded.step, "seed": seed, "sampler": sampler_name}
    dataset = str(loaded.meta.get("config", {}).get("dataset", "kanji"))
    return GlyphSource(images.numpy(), [f"sample {i}" for i in range(len(images))], description, meta), dataset


def folder_source(folder: Path, dataset: Dataset, limit: int | None = None) -> GlyphSource:
    """The images of a folder (or zip), squared and resized to the dataset's size, dark ink detected
    per image (as `ganji fid --images` reads folders)."""
    from ganji.data.folder_import import check_image_source, import_images

    check_image_source(Path(folder), "--from-images")
    if Path(folder).is_file() and Path(folder).suffix.lower() != ".zip":
        raise GanjiError(f"--from-images: {folder} is a file: give a folder of images or a .zip file")
    imported = import_images(Path(folder), dataset.size, 1, invert=None, limit=limit)
    return GlyphSource(imported.images, list(imported.files), f"images from {Path(folder).name}", {"folder": str(folder)})


def _nearest(home: Path, dataset: Dataset, extractor: Extractor, images: np.ndarray, track: Track) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each image: distance to its nearest training kanji, that kanji's row, and whether it is a copy."""
    from ganji.metrics.manifold import copy_threshold, nearest_neighbours

    training = dataset_features(home, dataset, extractor, track)
    feats = extractor.features(torch.from_numpy(images), on_batch=track("features of candidates", len(images)))
    distance, row = nearest_neighbours(feats, training)
    return distance, row, distance < copy_threshold(training)


def _scores(home: Path, images: np.ndarray, dataset: Dataset, extractor: Extractor, track: Track) -> dict[str, float]:
    """FID, KID (x1000), precision and recall of `images` by the metrics' one protocol."""
    from ganji.metrics.protocol import evaluate_images

    scores = evaluate_images(home, torch.from_numpy(images), dataset, extractor, len(images), track)
    return {k: float(scores[k]) for k in ("fid", "kid", "precision", "recall")}


def make_font(home: Path, source: GlyphSource, dataset: Dataset, extractor: Extractor, plan: FontPlan, track: Track = _no_track) -> FontReport:
    """Stages 2-6 (see the module's docstring); returns what was kept and measured."""
    plan.check()
    if source.images.shape[1:] != dataset.images.shape[1:]:
        raise GanjiError(f"glyphs are {tuple(source.images.shape[1:])} but dataset {dataset.name!r} holds {tuple(dataset.images.shape[1:])}")
    pixels = dataset.size
    # 2. choose
    distance, nearest_row, copies = _nearest(home, dataset, extractor, source.images, track)
    stats = GlyphStats.of(source.images)
    real = SanityRange.of(GlyphStats.of(dataset.images[reference_rows(len(dataset), REAL_SAMPLE)].numpy()))
    chosen = choose(plan.n, stats, real, copies, plan.filtered)
    blank = int((stats.ink == 0).sum())
    rejected = {"blank": blank}
    if plan.filtered:
        rejected.update(copies=int((copies & (stats.ink > 0)).sum()), odd=int((~real.passes(stats) & ~copies & (stats.ink > 0)).sum()))
        rejected["spare"] = len(stats.ink) - sum(rejected.values()) - len(chosen)  # passed, but --n were enough
    if not chosen:
        why = "every one is blank" if blank == len(stats.ink) else "none is both new and like a real kanji (try --no-filter)"
        raise GanjiError(f"no glyph to build a font from: of {len(stats.ink)} candidate images, {why}")
    # 3. trace
    advance = track("tracing glyphs", len(chosen))
    traced: list[tuple[int, list]] = []
    for i in chosen:
        contours = trace_glyph(source.images[i, 0], plan.settings)
        if contours and ink_area(contours) > 0:
            traced.append((i, contours))
        advance(1)
    rejected["untraceable"] = len(chosen) - len(traced)
    if not traced:
        raise GanjiError("no glyph had ink left to trace at this --threshold")
    kept = [i for i, _ in traced]
    # 4. build, checked before it replaces anything
    names = FontNames(plan.name, source.description)
    truetype = font_format(plan.output) == ".ttf"
    codepoints = [FIRST_CODEPOINT + k for k in range(len(traced))]

    drawn: list[np.ndarray] = []

    def write(tmp: Path) -> None:
        build_font(tmp, [c for _, c in traced], pixels, names, truetype=truetype)
        problems = check_font(tmp, codepoints)
        renders = render_glyphs(tmp, codepoints, pixels)  # FreeType draws every glyph with ink in the em box
        problems += [f"U+{cp:04X} renders without ink" for cp, r in zip(codepoints, renders) if r.max() < INK]
        if problems:
            raise GanjiError(f"the built font failed its checks: {'; '.join(problems[:3])}")
        drawn.append(renders)

    write_atomic(plan.output, write)
    # 5. measure
    renders = drawn[0]
    rasters = source.images[kept]
    iou = ink_iou(renders, rasters)
    report = FontReport(codepoints, len(source.images), rejected, float(iou.mean()), files=[plan.output, plan.map_path])
    if plan.measure and len(kept) >= MIN_MEASURE:
        report.raster = _scores(home, rasters, dataset, extractor, track)
        report.traced = _scores(home, renders, dataset, extractor, track)
    # 6. write
    known = list(dataset.manifest.get("codepoints", []))
    glyphs = []
    for k, (i, cp) in enumerate(zip(kept, codepoints)):
        row = int(nearest_row[i])
        near = {"row": row, "distance": round(float(distance[i]), 4)}
        if row < len(known):
            near.update(char=chr(known[row]), codepoint=f"U+{known[row]:04X}")
        glyphs.append({"codepoint": f"U+{cp:04X}", "char": chr(cp), "glyph": glyph_name(cp), "sample": source.labels[i],
                       "nearest": near, "copy": bool(copies[i]), **stats.row(i), "iou": round(float(iou[k]), 4)})
    document = {
        "font": plan.output.name, "name": plan.name, "format": plan.output.suffix.lower().lstrip("."), "source": source.meta,
        "dataset": dataset.name, "pixels": pixels, "candidates": len(source.images), "filtered": plan.filtered, "rejected": rejected,
        "sanity": real.to_json() if plan.filtered else None, "trace": vars(plan.settings),
        "fidelity": {"iou": round(report.iou, 4), "fid_raster": report.raster and report.raster["fid"],
                     "fid_traced": report.traced and report.traced["fid"], "raster": report.raster, "traced": report.traced,
                     "features": extractor.name, "n": len(kept)},
        "glyphs": glyphs,
    }
    # Characters as themselves (the nearest real kanji readable), not \u escapes.
    write_text_atomic(plan.map_path, json.dumps(document, ensure_ascii=False, indent=1) + "\n")
    if plan.also_png:
        report.files += _write_pngs(plan, codepoints, rasters, source.description)
    return report


def _write_pngs(plan: FontPlan, codepoints: list[int], rasters: np.ndarray, description: str) -> list[Path]:
    """The traced glyphs drawn from the font (large), the raster samples they came from, and the
    specimen sheet; black ink on white, files named after the code point."""
    from ganji.images import save_image, to_pil

    large = render_glyphs(plan.output, codepoints, GLYPH_PNG_PIXELS)
    names = {f"{glyph_name(cp)}.png" for cp in codepoints}
    for folder in (plan.glyph_dir, plan.sample_dir):  # an earlier, larger font's PNGs would mislead
        for stale in folder.glob("uni*.png") if folder.is_dir() else ():
            if stale.name not in names:
                stale.unlink()
    for cp, glyph, raster in zip(codepoints, large, rasters):
        save_image(plan.glyph_dir / f"{glyph_name(cp)}.png", to_pil(255 - glyph))
        save_image(plan.sample_dir / f"{glyph_name(cp)}.png", to_pil(255 - raster))
    save_image(plan.specimen_path, specimen(plan.output, codepoints, f"{plan.name}: {description}"))
    return [plan.glyph_dir, plan.sample_dir, plan.specimen_path]
