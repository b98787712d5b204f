"""`ganji sample MODEL`: a grid PNG (and/or one PNG per image) from a trained run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ganji.cli import app
from ganji.cli.options import BEST_OF_HELP, CLASSIFIER_GUIDANCE_HELP, DEFAULT_SAMPLERS, GUIDE_RUN_HELP, SAMPLERS_HELP, HomeOption, Model, complete_run
from ganji.cli.output import writable_target
from ganji.console import console, err_console
from ganji.errors import GanjiError
from ganji.home import resolve_home
from ganji.recipes.registry import DEFAULT_AUTOGUIDANCE, DEFAULT_GUIDANCE, DEFAULT_SAMPLE_BATCH, DEFAULT_SAMPLER_STEPS


@app.command("sample")
def sample_command(
    model: Annotated[Model, typer.Argument(help="Which model to sample from.", show_default=False)],
    n: Annotated[int, typer.Option("--n", help="How many images.")] = 64,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Grid PNG to write \\[default: samples.png, unless --out-dir is given].", show_default=False)] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Also (or only) write one PNG per image here.", show_default=False)] = None,
    run: Annotated[str | None, typer.Option(help="Run name \\[default: the latest run of the model].", show_default=False, autocompletion=complete_run)] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Sample from this checkpoint file instead of a run.", show_default=False)] = None,
    best: Annotated[bool, typer.Option("--best", help="The run's lowest-FID checkpoint (best.safetensors, kept by `ganji train --eval-every N`) instead of its latest.")] = False,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same images.")] = 0,
    sampler: Annotated[str | None, typer.Option(help=f"Iterative models: {SAMPLERS_HELP} \\[default: {DEFAULT_SAMPLERS}].", show_default=False)] = None,
    steps: Annotated[int | None, typer.Option(help=f"Steps of a step-choosing sampler \\[default: {DEFAULT_SAMPLER_STEPS}, at most the model's].", show_default=False)] = None,
    eta: Annotated[float | None, typer.Option(help="DDIM noise (0 = deterministic) \\[default: 0].", show_default=False)] = None,
    with_keys: Annotated[list[str] | None, typer.Option("--with", metavar="COMPONENT[:POSITION]", help="A run trained with --condition components: ask for this component (repeatable), e.g. --with 魚:left --with 山:right; 木 alone means anywhere.", show_default=False)] = None,
    guidance: Annotated[float | None, typer.Option(help=f"Classifier-free guidance with --with (Ho & Salimans 2022): 0 ignores the request, 1 the conditional model alone, more pushes harder \\[default: {DEFAULT_GUIDANCE:g}]; with --guide-run, autoguidance's weight instead \\[default: {DEFAULT_AUTOGUIDANCE:g}].", show_default=False)] = None,
    guide_run: Annotated[str | None, typer.Option(help=GUIDE_RUN_HELP, show_default=False, autocompletion=complete_run)] = None,
    classifier_guidance: Annotated[float | None, typer.Option(help=CLASSIFIER_GUIDANCE_HELP + " \\[default: 0].", show_default=False)] = None,
    best_of: Annotated[int, typer.Option(help=BEST_OF_HELP)] = 1,
    batch_size: Annotated[int, typer.Option(help="Images generated at once (memory).")] = DEFAULT_SAMPLE_BATCH,
    interpolate: Annotated[int, typer.Option(help="Rows of K images walking between random points (0 = off).")] = 0,
    ema: Annotated[bool, typer.Option("--ema/--no-ema", help="Use the EMA weights when the run has them.")] = True,
    invert: Annotated[bool, typer.Option("--invert", help="White ink on black, as in the dataset (default: black on white).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    home: HomeOption = None,
) -> None:
    """Generate fake kanji from a trained model."""
    from ganji.images import make_grid, save_image, to_pil
    from ganji.sampling import SampleRequest, check_best_of, check_classifier_scale, generate, load_model

    SampleRequest.check_numbers(n, seed, batch_size, interpolate)  # before any file is touched
    if output is None and out_dir is None:
        output = Path("samples.png")
    if output is not None:
        writable_target(output, "file")
    if out_dir is not None:
        writable_target(out_dir, "folder")
    if best and checkpoint is not None:
        raise GanjiError("--best picks a run's checkpoint: leave out --checkpoint")
    # Before the classifier is looked for:
    ranked = check_best_of(best_of, bool(with_keys), interpolate) > 1
    check_classifier_scale(classifier_guidance, bool(with_keys))
    loaded = load_model(resolve_home(home), model.value, run, checkpoint, device, best=best, guide_run=guide_run,
                        classifier=bool(classifier_guidance) or ranked)
    request = SampleRequest.resolve(loaded.spec, loaded.recipe, n, seed=seed, batch_size=batch_size, sampler=sampler, steps=steps,
                                    eta=eta, interpolate=interpolate, use_ema=ema, with_keys=with_keys, guidance=guidance,
                                    guided=loaded.guide is not None, classifier_scale=classifier_guidance,
                                    best_of=best_of)
    calls = loaded.recipe.model_calls(request.sampler)
    total = request.drawn * calls
    label = f"sampling {model.value}" + (f" ({request.sampler.label})" if request.sampler else "") + (
        f" with {' + '.join(request.condition)}" if request.condition else "") + (
        f", guided by {loaded.guide.run_name}" if loaded.guide is not None else "") + (
        f", guidance {request.guidance:g}" if request.condition or loaded.guide is not None else "") + (
        f", classifier guidance {request.classifier_scale:g}" if request.classifier_scale else "") + (
        f", best of {request.best_of}" if request.best_of > 1 else "")
    progress = Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("model calls x image"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, disable=quiet,
    )
    start = time.perf_counter()
    with progress:
        task = progress.add_task("sample", total=total)
        batch = min(batch_size, request.drawn)
        images = generate(
            loaded, request,
            on_batch=(lambda size: progress.advance(task, size)) if calls == 1 else None,
            on_step=(lambda _i: progress.advance(task, batch)) if calls > 1 else None,
        )
        progress.update(task, completed=total)
    seconds = time.perf_counter() - start
    paper = not invert
    if output is not None:
        save_image(output, make_grid(images, columns=interpolate if interpolate > 1 else None, ink_on_paper=paper))
        console.print(f"wrote {output} ({len(images)} images from {model.value} run {loaded.run_name}, step {loaded.step}) in {seconds:.1f} s")
    if out_dir is not None:
        arr = images.numpy()
        for i in range(len(arr)):
            save_image(out_dir / f"{i:05d}.png", to_pil(255 - arr[i] if paper else arr[i]))
        console.print(f"wrote {len(arr)} PNGs to {out_dir}")
