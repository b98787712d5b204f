"""`ganji font MODEL -o fake.otf`: a model's fake kanji as a font anyone can install and type."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ganji.cli import app
from ganji.cli.options import DEFAULT_SAMPLERS, SAMPLERS_HELP, HomeOption, Model, complete_dataset, complete_run
from ganji.cli.output import stage_progress, writable_target
from ganji.console import console, err_console
from ganji.errors import GanjiError
from ganji.font.settings import TraceSettings
from ganji.home import resolve_home
from ganji.recipes import spec
from ganji.recipes.registry import DEFAULT_SAMPLER_STEPS

_PANEL_TRACE = "Tracing"
_TRACE = TraceSettings()


@app.command("font")
def font_command(
    model: Annotated[Model | None, typer.Argument(help="Model whose latest (or --run) run draws the glyphs.", show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Font file: .otf (CFF outlines) or .ttf (TrueType). FONT.json beside it maps each code point to its sample and nearest real kanji.")] = Path("fake.otf"),
    n: Annotated[int, typer.Option("--n", help="Glyphs in the font, at U+E000 on (the Private Use Area).")] = 256,
    run: Annotated[str | None, typer.Option(help="Run name \\[default: the latest run of the model].", show_default=False, autocompletion=complete_run)] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed: the same seed gives the same font.")] = 0,
    name: Annotated[str | None, typer.Option(help="Font family name \\[default: Ganji Fake MODEL].", show_default=False)] = None,
    filtered: Annotated[bool, typer.Option("--filter/--no-filter", help="Keep only new glyphs (not a copy of a training kanji) whose ink and stroke pieces are in real kanji's range, the most typical first.")] = True,
    candidates: Annotated[int | None, typer.Option(help="Samples to draw and choose from \\[default: 2 x --n with the filter, --n without].", show_default=False)] = None,
    from_images: Annotated[Path | None, typer.Option("--from-images", help="Build from a folder (or zip) of glyph images instead of a model, e.g. `ganji sample --out-dir`.", show_default=False)] = None,
    dataset: Annotated[str | None, typer.Option(help="The real kanji to check novelty and measure against \\[default: the run's; kanji with --from-images].", show_default=False, autocompletion=complete_dataset)] = None,
    also_png: Annotated[bool, typer.Option("--also-png", help="Also write the traced glyphs (FONT-glyphs/), their samples (FONT-samples/) and a specimen sheet set in the font (FONT-specimen.png).")] = False,
    measure: Annotated[bool, typer.Option("--measure/--no-measure", help="Score the font's renders and the raster samples with the same FID (kanji features, same n): tracing must not make glyphs less real.")] = True,
    threshold: Annotated[float, typer.Option(help="Ink from this grey level (0-1) of the upscaled glyph.", rich_help_panel=_PANEL_TRACE)] = _TRACE.threshold,
    upscale: Annotated[int, typer.Option(help="Bicubic upscaling before tracing (outlines between pixels).", rich_help_panel=_PANEL_TRACE)] = _TRACE.upscale,
    alphamax: Annotated[float, typer.Option(help="potrace's corner threshold: 0 = all corners, 1.33 = all curves.", rich_help_panel=_PANEL_TRACE)] = _TRACE.alphamax,
    sampler: Annotated[str | None, typer.Option(help=f"Iterative models: {SAMPLERS_HELP} \\[default: {DEFAULT_SAMPLERS}].", show_default=False)] = None,
    steps: Annotated[int | None, typer.Option(help=f"Steps of a step-choosing sampler \\[default: {DEFAULT_SAMPLER_STEPS}].", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(help="Images generated at once.")] = 250,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    home: HomeOption = None,
) -> None:
    """Make an installable font of fake kanji: sample, keep the new and sane ones, trace them to outlines
    (potrace's algorithm), build an OpenType font, and check that tracing kept them as real."""
    from ganji.data.store import load_dataset
    from ganji.features.extractors import load_extractor
    from ganji.font.make import FontPlan, candidates_needed, folder_source, make_font, sample_source
    from ganji.font.trace import require_potrace
    from ganji.home import cache_dir
    from ganji.runtime.device import resolve_device

    if (model is None) == (from_images is None):
        raise GanjiError("give a MODEL to sample from, or --from-images DIR (not both)")
    title = spec(model.value).title if model is not None else "kanji"
    default_name = f"Ganji Fake {title[0].upper()}{title[1:]}"
    plan = FontPlan(output, n, name or default_name, filtered, TraceSettings(threshold, upscale, alphamax), also_png, measure)
    writable_target(output, "file", image=False)
    plan.check()
    count = candidates_needed(n, filtered, candidates)
    require_potrace()  # installed? say so before minutes of sampling
    root = resolve_home(home)
    torch_device = resolve_device(device)
    progress, track = stage_progress(quiet)
    with progress:
        if from_images is not None:
            data = load_dataset(root, dataset or "kanji")
            source = folder_source(from_images, data, limit=count)
        else:
            source, run_dataset = sample_source(root, model.value, run, count, seed=seed, sampler=sampler, steps=steps,
                                                batch_size=batch_size, device=device, track=track)
            data = load_dataset(root, dataset or run_dataset)
        extractor = load_extractor("kanji", torch_device, cache_dir(root))
        report = make_font(root, source, data, extractor, plan, track)
    kept = len(report.codepoints)
    left_out = ", ".join(f"{v} {k}" for k, v in report.rejected.items() if v)
    console.print(f"wrote {output}: {kept} glyphs, U+{report.codepoints[0]:04X}-U+{report.codepoints[-1]:04X}, "
                  f"from {report.candidates} candidates" + (f" (left out: {left_out})" if left_out else ""))
    if kept < n:
        err_console.print(f"only {kept} of the {n} glyphs asked for passed: draw more with --candidates, or use --no-filter")
    line = f"tracing fidelity: ink IoU {report.iou:.3f}"
    if report.raster is not None and report.traced is not None:
        before, after = report.raster["fid"], report.traced["fid"]
        line += f"; FID (kanji features, n = {kept}) samples {before:.2f}, font renders {after:.2f} ({100 * (after - before) / before:+.1f}%)"
    console.print(line)
    console.print("also wrote " + ", ".join(str(f) for f in report.files[1:]))
