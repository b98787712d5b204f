"""`ganji fid`: FID, KID, precision/recall and novelty of trained runs or of any folder of images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ganji.cli import app
from ganji.cli.options import BEST_OF_HELP, CLASSIFIER_GUIDANCE_HELP, DEFAULT_SAMPLERS, GUIDE_RUN_HELP, SAMPLERS_HELP, HomeOption, Model, complete_dataset, complete_run
from ganji.cli.output import stage_progress
from ganji.console import console, err_console
from ganji.errors import GanjiError
from ganji.home import resolve_home
from ganji.recipes import model_names
from ganji.recipes.registry import DEFAULT_AUTOGUIDANCE, DEFAULT_GUIDANCE, DEFAULT_SAMPLER_STEPS

_PANEL_WHAT = "What to measure"
_PANEL_HOW = "How"


def score_table(scores: list) -> Table:
    """Models first, then the reference rows of real kanji; "x font": FID over the another-font row's."""
    from ganji.metrics.references import HELD_OUT, OTHER_FONT

    font_fid = {s.dataset: s.fid for s in scores if s.model == OTHER_FONT}
    table = Table(title="Sample quality (lower FID/KID is better; higher precision/recall; copies should be ~0%)")
    cols = ("model", "run", "n", "features", "FID", "x font", "KID x1000", "precision", "recall", "copies", "seconds")
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "run", "features") else "right")
    for i, s in enumerate(scores):
        real = s.model in (HELD_OUT, OTHER_FONT)
        where = s.run or str(s.details.get("folder", "") or s.details.get("font", ""))
        if s.details.get("guide_run"):
            where += f" (guided by {s.details['guide_run']}, w {s.details['guidance']:g})"
        ratio = f"{s.fid / font_fid[s.dataset]:.1f}" if font_fid.get(s.dataset) else "-"
        table.add_row(
            s.model, where, f"{s.n:,}", s.extractor, f"{s.fid:.3f}", ratio,
            f"{s.kid:.3f} ± {s.kid_std:.3f}", f"{s.precision:.3f}", f"{s.recall:.3f}",
            f"{100 * s.novelty_copies:.1f}%", f"{s.seconds:.1f}",
            style="dim" if real else None, end_section=not real and i + 1 < len(scores) and scores[i + 1].model in (HELD_OUT, OTHER_FONT),
        )
    return table


@app.command("fid")
def fid_command(
    model: Annotated[Model | None, typer.Argument(help="Model whose latest (or --run) run to measure.", show_default=False)] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model that has a run.", rich_help_panel=_PANEL_WHAT)] = False,
    images: Annotated[Path | None, typer.Option("--images", help="Score a folder (or zip) of images from anywhere instead.", show_default=False, rich_help_panel=_PANEL_WHAT)] = None,
    run: Annotated[str | None, typer.Option(help="Run name \\[default: the latest run of the model].", show_default=False, rich_help_panel=_PANEL_WHAT, autocompletion=complete_run)] = None,
    dataset: Annotated[str, typer.Option(help="With --images: the dataset to compare against.", rich_help_panel=_PANEL_WHAT, autocompletion=complete_dataset)] = "kanji",
    invert: Annotated[bool | None, typer.Option("--invert/--no-invert", help="With --images: invert every image / none \\[default: detect dark ink per image].", show_default=False, rich_help_panel=_PANEL_WHAT)] = None,
    n: Annotated[int, typer.Option("--n", help="Samples to generate (and real images to compare with, at most the dataset's size).", rich_help_panel=_PANEL_HOW)] = 10_000,
    features: Annotated[str, typer.Option(help="Feature network: kanji (shipped, offline) or inception (FID's standard; downloads once).", rich_help_panel=_PANEL_HOW)] = "kanji",
    inception_weights: Annotated[Path | None, typer.Option(help="pytorch-fid's pt_inception-2015-12-05 .pth (or .safetensors) file.", show_default=False, rich_help_panel=_PANEL_HOW)] = None,
    sampler: Annotated[str | None, typer.Option(help=f"Iterative models: {SAMPLERS_HELP} \\[default: {DEFAULT_SAMPLERS}]; with --all, it applies to the models that have it.", show_default=False, rich_help_panel=_PANEL_HOW)] = None,
    steps: Annotated[int | None, typer.Option(help=f"Steps of a step-choosing sampler \\[default: {DEFAULT_SAMPLER_STEPS}].", show_default=False, rich_help_panel=_PANEL_HOW)] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.", rich_help_panel=_PANEL_HOW)] = 0,
    batch_size: Annotated[int, typer.Option(help="Images generated at once.", rich_help_panel=_PANEL_HOW)] = 250,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.", rich_help_panel=_PANEL_HOW)] = "auto",
    references: Annotated[bool, typer.Option("--references/--no-references", help="Also score real kanji at the same n: held out of the comparison, and drawn in another font (the scale to read the models' numbers on).", rich_help_panel=_PANEL_HOW)] = True,
    reference_font: Annotated[Path | None, typer.Option(help="Font for the 'real, another font' row \\[default: Noto Sans CJK JP, if `noto-cjk-sans-jp-regular` is installed].", show_default=False, rich_help_panel=_PANEL_HOW)] = None,
    condition: Annotated[str | None, typer.Option("--condition", metavar="components", help="Measure a run trained with --condition components instead: the request suite's hit rate (ComponentNet finds every asked-for component), novelty, and FID against real kanji with the asked-for component.", show_default=False, rich_help_panel=_PANEL_WHAT)] = None,
    per_request: Annotated[int, typer.Option(help="With --condition: samples per request.", rich_help_panel=_PANEL_HOW)] = 32,
    guidance: Annotated[float | None, typer.Option(help=f"With --condition: classifier-free guidance \\[default: {DEFAULT_GUIDANCE:g}]; with --guide-run: autoguidance's weight \\[default: {DEFAULT_AUTOGUIDANCE:g}].", show_default=False, rich_help_panel=_PANEL_HOW)] = None,
    guide_run: Annotated[str | None, typer.Option(help=GUIDE_RUN_HELP + " One model's run only.", show_default=False, rich_help_panel=_PANEL_HOW, autocompletion=complete_run)] = None,
    classifier_guidance: Annotated[float | None, typer.Option(help="With --condition: " + CLASSIFIER_GUIDANCE_HELP + " \\[default: 0].", show_default=False, rich_help_panel=_PANEL_HOW)] = None,
    best_of: Annotated[int | None, typer.Option(help="With --condition: " + BEST_OF_HELP + " \\[default: 1].", show_default=False, rich_help_panel=_PANEL_HOW)] = None,
    picture: Annotated[Path | None, typer.Option(help="With --condition: draw each request's samples above their nearest real kanji into this PNG.", show_default=False, rich_help_panel=_PANEL_HOW)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one object per model, then the reference rows) instead of a table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    home: HomeOption = None,
) -> None:
    """Measure how real (and how novel) generated kanji are, with one protocol for every model."""
    from ganji.features import EXTRACTORS

    if condition is not None:
        if condition != "components":
            raise GanjiError(f"--condition must be components (got {condition!r})")
        if model is None or all_models or images is not None:
            raise GanjiError("--condition measures one conditional run: give its model (ganji fid flow --condition components)")
        from ganji.cli.fid_conditioning import measure_conditioning

        measure_conditioning(resolve_home(home), model.value, run, per_request, guidance, seed, sampler, steps, batch_size, device,
                             picture, as_json, quiet, guide_run, classifier_guidance, best_of)
        return
    if classifier_guidance is not None:
        raise GanjiError("--classifier-guidance applies with --condition components (it guides requests for components)")
    if best_of is not None:
        raise GanjiError("--best-of applies with --condition components (it picks among samples of a request for components)")
    chosen = sum([model is not None, all_models, images is not None])
    if chosen != 1:
        raise GanjiError(f"say what to measure: a model ({', '.join(model_names())}), --all, or --images DIR (one of them)")
    if run is not None and model is None:
        raise GanjiError("--run names one model's run: give the model too (e.g. `ganji fid ddpm --run NAME`)")
    if guide_run is not None and model is None:
        raise GanjiError("--guide-run guides one model's run: give the model too (e.g. `ganji fid flow --run NAME --guide-run WEAKER`)")
    if guidance is not None and guide_run is None:
        raise GanjiError("--guidance applies with --condition components or --guide-run")
    if features not in EXTRACTORS:
        raise GanjiError(f"--features must be one of {', '.join(EXTRACTORS)} (got {features!r})")
    if n < 10:
        raise GanjiError(f"--n must be at least 10 for the metrics to mean anything (got {n})")
    # The heavy imports (torch) after the checks, so that a mistyped option fails at once.
    from ganji.features.extractors import load_extractor
    from ganji.home import cache_dir
    from ganji.metrics.protocol import evaluate_folder, evaluate_run
    from ganji.runs import list_runs
    from ganji.runtime.device import resolve_device

    root = resolve_home(home)
    if all_models:
        models = [m.value for m in Model if list_runs(root, m.value)]
        missing = [m.value for m in Model if m.value not in models]
        if not models:
            raise GanjiError(f"no trained runs yet: train one with `ganji train {'|'.join(model_names())}`")
        for m in missing:
            err_console.print(f"no {m} run yet, skipped (train one with `ganji train {m}`)")
    else:
        models = [model.value] if model is not None else []
    extractor = load_extractor(features, resolve_device(device), cache_dir(root), inception_weights)

    progress, track = stage_progress(quiet)

    scores = []
    with progress:
        if images is not None:
            scores.append(evaluate_folder(root, images, dataset, extractor, n, invert, track))
        for m in models:
            scores.append(
                evaluate_run(root, m, run, extractor, n, seed=seed, sampler=sampler, steps=steps, batch_size=batch_size, device=device,
                             track=track, strict=not all_models, guide_run=guide_run, guidance=guidance)
            )
        if references:
            from ganji.data.store import load_dataset
            from ganji.metrics.references import reference_scores

            for name in dict.fromkeys(s.dataset for s in scores):
                rows, missing = reference_scores(root, load_dataset(root, name), extractor, n, reference_font, track)
                scores += rows
                if missing:
                    err_console.print(missing)
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in scores], indent=2))
    else:
        console.print(score_table(scores))
