"""`ganji compare`: the GANji study's comparison, reproduced by one command.

Stages: (1) find each model's run (latest, or the one named), training the missing ones first with a
preset when asked; (2) measure each run with the same protocol as `ganji fid`; (3) write the report:
`comparison.md`, `comparison.json`, `samples.png`, `progress.png`, `training.png`, `neighbours.png`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ganji.atomic import write_json_atomic, write_text_atomic
from ganji.errors import GanjiError
from ganji.metrics.manifold import nearest_neighbours
from ganji.metrics.protocol import Score, Track, _no_track, evaluate_run
from ganji.report.figures import ModelPictures, neighbours_figure, progress_figure, samples_figure, training_figure
from ganji.recipes import config_from_json, spec
from ganji.runs import Run, find_run, list_runs, read_run_config
from ganji.runtime.checkpoint import load_checkpoint
from ganji.runtime.config import TrainConfig
from ganji.runtime.metrics_log import MetricsLog

if TYPE_CHECKING:
    from ganji.quiz.scoring import Rate
    from ganji.train.loop import TrainResult
    from ganji.train.observer import TrainingObserver

SAMPLE_COUNT = 36  # images per model in samples.png
NEIGHBOURS = 6


@dataclass
class RunSummary:
    """One row of the comparison."""

    model: str
    run: str
    config: str
    parameters: int
    epochs: float
    train_seconds: float
    images_per_s: float
    device: str
    sample_10k_seconds: float
    score: Score
    extra: dict[str, Any] = field(default_factory=dict)
    fooled: Rate | None = None  # `ganji quiz` answers on this run's kanji, pooled (add_quiz_scores)

    def to_json(self) -> dict[str, Any]:
        s = self.score
        quiz = {} if self.fooled is None else {"fooled": self.fooled.value, "fooled_low": self.fooled.low,
                                               "fooled_high": self.fooled.high, "fooled_answers": self.fooled.total}
        return {
            "model": self.model, "run": self.run, "config": self.config, "parameters": self.parameters,
            "epochs": round(self.epochs, 3), "train_seconds": round(self.train_seconds, 1), "images_per_s": round(self.images_per_s, 2),
            "device": self.device, "sample_10k_seconds": round(self.sample_10k_seconds, 2), "n": s.n, "extractor": s.extractor,
            "fid": s.fid, "kid": s.kid, "kid_std": s.kid_std, "precision": s.precision, "recall": s.recall,
            "novelty_copies": s.novelty_copies, "nn_distance": s.nn_distance, "sampler": s.details.get("sampler"),
            "sampler_steps": s.details.get("steps"), **quiz,
        }


def describe_config(cfg: TrainConfig, size: int) -> str:
    what = spec(cfg.model).recipe_class().describe(cfg.options)
    return f"{what}; {size} px, batch {cfg.batch_size}, {cfg.epochs} epochs"


def train_missing(
    home: Path, missing: list[str], preset: str, observer: Callable[[], TrainingObserver] | None = None,
    on_result: Callable[[TrainResult], None] | None = None,
) -> None:
    """Stage 1: train each missing model with the preset (its dataset prepared first).

    `observer` makes each training's progress display (None: quiet); `on_result` gets each result."""
    from ganji.console import err_console
    from ganji.data.prepare import build_kanji, report
    from ganji.data.store import is_prepared
    from ganji.report.presets import PRESETS, preset_dataset
    from ganji.train.loop import StopReason
    from ganji.train.start import train

    name, size = preset_dataset(preset)
    if not is_prepared(home, name):
        err_console.print(f"preparing dataset [bold]{name}[/] ({size} px) for the {preset} preset")
        report(build_kanji(home, name=name, size=size, progress=observer is not None))
    for model in missing:
        err_console.print(f"training [bold]{model}[/] with the {preset} preset")
        result = train(home, model, dict(PRESETS[preset][model]), run_name=preset, observer=observer() if observer else None)
        if on_result is not None:
            on_result(result)
        if result.reason is StopReason.INTERRUPTED:  # Ctrl-C (or SIGTERM) stops the whole study, not one model
            raise GanjiError(
                f"interrupted while training {model}: run {model}/{result.run.name} keeps its checkpoint at step {result.step} "
                f"(`ganji train {model} --run {result.run.name} --resume` finishes it); nothing else was trained or measured"
            )


def add_quiz_scores(home: Path, rows: list[RunSummary]) -> list[str]:
    """Each row's fool rate from the home's `ganji quiz` answers, where there are any (HYPE-∞: the
    share of the run's kanji that people called real); notes on damaged quiz sessions left out."""
    from ganji.quiz.scoring import run_fool_rates

    rates, notes = run_fool_rates(home)
    for r in rows:
        r.fooled = rates.get((r.model, r.run))
    return notes


def missing_models(home: Path, runs: dict[str, str | None]) -> list[str]:
    return [m for m in runs if runs[m] is None and not list_runs(home, m)]


def _training_facts(run: Run) -> dict[str, Any]:
    """Parameters, epochs, wall time, throughput and device of a run, from its own files."""
    saved = read_run_config(run)
    cfg = config_from_json(saved["config"])
    meta = load_checkpoint(run.checkpoint_path).meta if run.checkpoint_path.is_file() else {}
    step = int(meta.get("step", 0))
    seconds = float(meta.get("train_seconds", 0.0))
    size = int((saved.get("dataset") or {}).get("size", meta.get("image_size", 0)))
    return {
        "config": describe_config(cfg, size),
        "parameters": int(sum((saved.get("parameters") or {}).values())),
        "epochs": float(meta.get("epoch", 0.0)),
        "train_seconds": seconds,
        "images_per_s": step * cfg.batch_size / seconds if seconds > 0 else 0.0,
        "device": str(saved.get("device", "unknown")),
    }


def measure(
    home: Path,
    runs: dict[str, str | None],
    extractor: Any,
    n: int,
    *,
    sampler: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str = "auto",
    track: Track = _no_track,
) -> tuple[list[RunSummary], list[ModelPictures]]:
    """Stage 2: the metrics and the pictures' material for every model that has a run.

    Iterative models sample with `sampler` where they have it, else with their fast sampler; `steps` where it applies."""
    from ganji.sampling import SampleRequest, generate, load_model

    rows: list[RunSummary] = []
    pictures: list[ModelPictures] = []
    for model, name in runs.items():
        run = find_run(home, model, name)
        extras: dict[str, Any] = {}
        fast = spec(model).sampling.fast
        score = evaluate_run(
            home, model, run.name, extractor, n, seed=seed, sampler=sampler, steps=steps, device=device, track=track, extras=extras,
            strict=False, fallback=fast,
        )
        facts = _training_facts(run)
        sample_s = float(score.details.get("sample_seconds", 0.0)) / n * 10_000
        rows.append(RunSummary(model=model, run=run.name, sample_10k_seconds=sample_s, score=score, **facts))
        # The same seed for every model's grid; neighbours of the first few samples.
        loaded = load_model(home, model, run.name, None, device)
        request = SampleRequest.resolve(loaded.spec, loaded.recipe, SAMPLE_COUNT, seed=seed, sampler=sampler, steps=steps,
                                        strict=False, fallback=fast)
        samples = generate(loaded, request)
        _, nearest_rows = nearest_neighbours(extras["features"][:NEIGHBOURS], extras["training_features"])
        nearest = extras["dataset"].images[torch.from_numpy(nearest_rows)]
        grids = sorted(run.samples_dir.glob("step-*.png")) if run.samples_dir.is_dir() else []
        pictures.append(
            ModelPictures(
                model=model,
                label=f"{model} (run {run.name}, epoch {facts['epochs']:.3g})",
                samples=samples,
                grids=grids,
                records=MetricsLog(run.metrics_path).read(),
                # The evaluation's own samples, whose features were searched.
                neighbours=(extras["images"][:NEIGHBOURS], nearest),
            )
        )
    return rows, pictures


def measure_references(home: Path, rows: list[RunSummary], extractor: Any, n: int, font: Path | None = None,
                       track: Track = _no_track) -> tuple[list[Score], list[str]]:
    """Stage 2b: the reference rows of real kanji (ganji.metrics.references) for each compared dataset,
    at the models' n; and notes on rows that could not be made."""
    from ganji.data.store import load_dataset
    from ganji.metrics.references import reference_scores

    scores, notes = [], []
    for name in dict.fromkeys(r.score.dataset for r in rows):
        found, missing = reference_scores(home, load_dataset(home, name), extractor, n, font, track)
        scores += found
        notes += [missing] if missing else []
    return scores, notes


def write_report(out: Path, rows: list[RunSummary], pictures: list[ModelPictures], preset: str | None, missing: list[str],
                 references: list[Score] | None = None) -> list[Path]:
    """Stage 3: the report folder. Returns the files written."""
    references = references or []
    out.mkdir(parents=True, exist_ok=True)
    samples_figure(pictures, out / "samples.png")
    progress_figure(pictures, out / "progress.png")
    training_figure(pictures, out / "training.png")
    neighbours_figure(pictures, out / "neighbours.png", NEIGHBOURS)
    devices = sorted({r.device for r in rows})
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    write_json_atomic(out / "comparison.json", {"date": stamp, "preset": preset, "devices": devices, "missing": missing,
                                                "models": [r.to_json() for r in rows], "references": [s.to_json() for s in references]})
    write_text_atomic(out / "comparison.md", markdown(rows, preset, devices, stamp, missing, references))
    return [out / f for f in ("comparison.md", "comparison.json", "samples.png", "progress.png", "training.png", "neighbours.png")]


def font_fid(references: list[Score], dataset: str) -> float | None:
    """The "real, another font" row's FID for `dataset`, the unit of the reports' "x font" column."""
    from ganji.metrics.references import OTHER_FONT

    return next((s.fid for s in references if s.model == OTHER_FONT and s.dataset == dataset), None)


def markdown(rows: list[RunSummary], preset: str | None, devices: list[str], stamp: str, missing: list[str],
             references: list[Score] | None = None) -> str:
    references = references or []
    first = rows[0].score
    quiz = any(r.fooled is not None for r in rows)  # the column only where quiz answers exist
    lines = [
        "# ganji comparison",
        "",
        f"Generated by `ganji compare` on {stamp}; trained on {', '.join(devices)}"
        + (f" with the `{preset}` preset" if preset else "") + ".",
        f"Metrics: {first.n:,} samples per model against the {first.dataset!r} dataset, {first.extractor} features "
        "(FID/KID: lower is better; precision/recall: higher; copies: share of samples nearer a training kanji "
        "than real kanji are to each other). Sample 10k: the time to generate the samples, scaled to 10,000. "
        "The last rows score real kanji the same way: held out of the comparison (the floor at this n), and the dataset's "
        "kanji drawn in another font; x font: FID in multiples of the another-font row's (the same characters in another "
        "font count as copies: the features see the character, not the font).",
        "",
        "| model | configuration | parameters | epochs | training | img/s | sample 10k | FID | x font | KID x1000 | precision | recall | copies |"
        + (" fooled |" if quiz else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if quiz else ""),
    ]
    for r in rows:
        s = r.score
        sampler = f" ({s.details['sampler']}-{s.details['steps']})" if "sampler" in s.details else ""
        unit = font_fid(references, s.dataset)
        lines.append(
            f"| {r.model} | {r.config} | {r.parameters:,} | {r.epochs:.3g} | {r.train_seconds / 60:.1f} min | {r.images_per_s:,.1f} | "
            f"{r.sample_10k_seconds:,.1f} s{sampler} | {s.fid:.3f} | {f'{s.fid / unit:.1f}' if unit else '-'} | "
            f"{s.kid:.3f} ± {s.kid_std:.3f} | {s.precision:.3f} | {s.recall:.3f} | {100 * s.novelty_copies:.1f}% |"
            + (f" {r.fooled.text() if r.fooled else '-'} |" if quiz else "")
        )
    for s in references:
        unit = font_fid(references, s.dataset)
        what = s.details.get("font", f"{s.n:,} other kanji of {s.dataset!r}")
        lines.append(
            f"| *{s.model}* | {what} | | | | | | {s.fid:.3f} | {f'{s.fid / unit:.1f}' if unit else '-'} | "
            f"{s.kid:.3f} ± {s.kid_std:.3f} | {s.precision:.3f} | {s.recall:.3f} | {100 * s.novelty_copies:.1f}% |"
            + (" |" if quiz else "")
        )
    if quiz:
        lines += ["", "Fooled: the share of the run's kanji that people called real in `ganji quiz` (HYPE-∞: 50% = people "
                  "cannot tell them from real kanji), pooled over every quiz session, with the number of answers it rests on."]
    if missing:
        lines += ["", "Not compared (no run): " + ", ".join(f"{m} (train one with `ganji train {m}`)" for m in missing) + "."]
    lines += [
        "",
        "## Samples (same seed for every model)",
        "![samples](samples.png)",
        "",
        "## Over training",
        "![progress](progress.png)",
        "",
        "![training curves](training.png)",
        "",
        "## Nearest training kanji",
        "![neighbours](neighbours.png)",
        "",
    ]
    return "\n".join(lines)
