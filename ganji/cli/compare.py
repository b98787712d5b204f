"""`ganji compare`: every model's run side by side, as a table and a report folder with pictures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ganji.cli import app
from ganji.cli.options import SAMPLERS_HELP, HomeOption
from ganji.cli.output import stage_progress
from ganji.console import console, err_console
from ganji.errors import GanjiError
from ganji.home import resolve_home
from ganji.recipes import MODELS, model_names
from ganji.report.presets import PRESET_EVAL_N, PRESET_STEPS, PRESETS

FAST_SAMPLERS = ", ".join(f"{m.name} {m.sampling.fast}" for m in MODELS if m.sampling.iterative)


def parse_runs(text: str | None) -> dict[str, str | None]:
    """'gan=r1,ddpm=r2' -> {vae: None, gan: r1, ddpm: r2, ...} (None: the latest run)."""
    runs: dict[str, str | None] = dict.fromkeys(model_names())
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        model, sep, name = part.partition("=")
        if not sep or model not in runs or not name:
            raise GanjiError(f"--runs takes MODEL=RUN pairs separated by commas, e.g. gan=r1,ddpm=r2 (got {part!r})")
        runs[model] = name
    return runs


def result_table(rows: list, references: list | None = None) -> Table:
    """Models, then the reference rows of real kanji; "x font": FID in multiples of the another-font row's."""
    from ganji.report.study import font_fid

    references = references or []
    table = Table(title="ganji compare")
    quiz = any(r.fooled is not None for r in rows)  # a "fooled" column only where `ganji quiz` answers exist
    cols = ("model", "configuration", "params", "epochs", "train min", "img/s", "device", "sample 10k s", "FID", "x font", "KID x1000",
            "prec.", "recall", "copies") + (("fooled",) if quiz else ())
    for c in cols:
        table.add_column(c, justify="left" if c in ("model", "configuration", "device") else "right", overflow="fold")

    def ratio(s) -> str:
        unit = font_fid(references, s.dataset)
        return f"{s.fid / unit:.1f}" if unit else "-"

    for i, r in enumerate(rows):
        s = r.score
        table.add_row(
            r.model, r.config, f"{r.parameters:,}", f"{r.epochs:.3g}", f"{r.train_seconds / 60:.1f}", f"{r.images_per_s:,.1f}", r.device,
            f"{r.sample_10k_seconds:,.1f}", f"{s.fid:.3f}", ratio(s), f"{s.kid:.2f}", f"{s.precision:.3f}", f"{s.recall:.3f}",
            f"{100 * s.novelty_copies:.1f}%", *([r.fooled.text() if r.fooled else "-"] if quiz else []),
            end_section=bool(references) and i + 1 == len(rows),
        )
    for s in references:
        table.add_row(s.model, s.details.get("font", f"{s.n:,} other kanji"), "", "", "", "", "", "", f"{s.fid:.3f}", ratio(s), f"{s.kid:.2f}",
                      f"{s.precision:.3f}", f"{s.recall:.3f}", f"{100 * s.novelty_copies:.1f}%", *([""] if quiz else []), style="dim")
    return table


@app.command("compare")
def compare_command(
    train: Annotated[str | None, typer.Option("--train", help="First train every model that has no run: quick (under 20 min on 2 CPU cores, 32 px) or paper (100 epochs).", show_default=False)] = None,
    runs: Annotated[str | None, typer.Option(help="Runs to compare, e.g. gan=r1,ddpm=r2 \\[default: each model's latest].", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("report"),
    n: Annotated[int | None, typer.Option("--n", help=f"Samples per model for the metrics \\[default: {PRESET_EVAL_N['paper']}; {PRESET_EVAL_N['quick']} with --train quick].", show_default=False)] = None,
    features: Annotated[str, typer.Option(help="Feature network: kanji (offline) or inception.")] = "kanji",
    sampler: Annotated[str | None, typer.Option(help=f"Sampler of the iterative models that have it ({SAMPLERS_HELP}) \\[default: each model's fast one: {FAST_SAMPLERS}].", show_default=False)] = None,
    steps: Annotated[int | None, typer.Option(help=f"Network calls per sample for each model's own fast sampler (steps of a first-order one, half for Heun), or the steps of --sampler \\[default: {PRESET_STEPS['paper']}; {PRESET_STEPS['quick']} with --train quick].", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed (the same for every model).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    reference_font: Annotated[Path | None, typer.Option(help="Font for the 'real, another font' row \\[default: Noto Sans CJK JP, if `noto-cjk-sans-jp-regular` is installed].", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one object per model) instead of the table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    home: HomeOption = None,
) -> None:
    """The study: train (optionally), measure and picture every model side by side."""
    from ganji.features import EXTRACTORS

    if train is not None and train not in PRESETS:
        raise GanjiError(f"--train must be quick or paper (got {train!r})")
    if features not in EXTRACTORS:
        raise GanjiError(f"--features must be one of {', '.join(EXTRACTORS)} (got {features!r})")
    known = sorted({s.name for m in MODELS for s in m.sampling.samplers} | {a for m in MODELS for a in m.sampling.aliases})
    if sampler is not None and sampler not in known:
        raise GanjiError(f"--sampler must be one of {', '.join(known)} (got {sampler!r})")
    n = n if n is not None else PRESET_EVAL_N[train or "paper"]
    steps = steps if steps is not None else PRESET_STEPS[train or "paper"]
    if n < 10:
        raise GanjiError(f"--n must be at least 10 (got {n})")
    # The heavy imports (torch) after the checks, so that a mistyped option fails at once.
    from ganji.cli.train_display import ProgressBar, summary_table
    from ganji.features.extractors import load_extractor
    from ganji.home import cache_dir
    from ganji.report.study import add_quiz_scores, measure, measure_references, missing_models, train_missing, write_report
    from ganji.runtime.device import resolve_device

    root = resolve_home(home)
    wanted = parse_runs(runs)
    extractor = load_extractor(features, resolve_device(device), cache_dir(root))  # fail early: before any training
    missing = missing_models(root, wanted)
    if missing and train is not None:
        train_missing(root, missing, train, observer=None if quiet else ProgressBar,
                      on_result=None if quiet else lambda result: console.print(summary_table(result)))
        missing = missing_models(root, wanted)
    for m in missing:
        err_console.print(f"no {m} run yet, left out of the comparison: train one with `ganji train {m}` (or `ganji compare --train quick`)")
    present = {m: r for m, r in wanted.items() if m not in missing}
    if not present:
        raise GanjiError("no trained runs to compare: run `ganji compare --train quick` (or `ganji train MODEL`) first")

    progress, track = stage_progress(quiet)

    with progress:
        rows, pictures = measure(root, present, extractor, n, sampler=sampler, steps=steps, seed=seed, device=device, track=track)
        references, notes = measure_references(root, rows, extractor, n, reference_font, track)
    notes += add_quiz_scores(root, rows)
    for note in notes:
        err_console.print(note)
    files = write_report(out, rows, pictures, train, missing, references)
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in rows], indent=2))
        return
    console.print(result_table(rows, references))
    console.print(f"report: {files[0]} (+ {', '.join(f.name for f in files[1:])})")
