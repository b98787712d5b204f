"""`ganji sample vae|gan|ddpm`: a grid PNG (and/or one PNG per image) from a trained run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ganji.cli import app
from ganji.cli.options import HomeOption
from ganji.cli.train import Model
from ganji.console import console, err_console
from ganji.errors import GanjiError
from ganji.home import resolve_home


def _writable_target(path: Path, what: str) -> Path:
    """Create the missing folder; a clear error if it cannot be written."""
    folder = path if what == "folder" else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GanjiError(f"cannot create {folder}: {exc.strerror}") from None
    if not folder.is_dir():
        raise GanjiError(f"{folder} is not a folder")
    if what == "file" and path.is_dir():
        raise GanjiError(f"{path} is a folder: give the grid a file name, such as {path / 'samples.png'}")
    import os

    if not os.access(folder, os.W_OK):
        raise GanjiError(f"{folder} is not writable")
    return path


@app.command("sample")
def sample_command(
    model: Annotated[Model, typer.Argument(help="Which model to sample from.", show_default=False)],
    n: Annotated[int, typer.Option("--n", help="How many images.")] = 64,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Grid PNG to write \\[default: samples.png, unless --out-dir is given].", show_default=False)] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Also (or only) write one PNG per image here.", show_default=False)] = None,
    run: Annotated[str | None, typer.Option(help="Run name \\[default: the latest run of the model].", show_default=False)] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Sample from this checkpoint file instead of a run.", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same images.")] = 0,
    sampler: Annotated[str, typer.Option(help="DDPM only: ddpm (all T steps) or ddim.")] = "ddpm",
    steps: Annotated[int | None, typer.Option(help="DDPM with --sampler ddim: number of steps \\[default: 50].", show_default=False)] = None,
    eta: Annotated[float, typer.Option(help="DDIM noise (0 = deterministic).")] = 0.0,
    batch_size: Annotated[int, typer.Option(help="Images generated at once (memory).")] = 256,
    interpolate: Annotated[int, typer.Option(help="Rows of K images walking between random points (0 = off).")] = 0,
    ema: Annotated[bool, typer.Option("--ema/--no-ema", help="Use the EMA weights when the run has them.")] = True,
    invert: Annotated[bool, typer.Option("--invert", help="White ink on black, as in the dataset (default: black on white).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    home: HomeOption = None,
) -> None:
    """Generate fake kanji from a trained model."""
    from ganji.images import make_grid, save_png, to_pil
    from ganji.sampling import check_request, generate, load_model, model_calls_per_image

    if n < 1:
        raise GanjiError(f"--n must be at least 1 (got {n})")
    if interpolate < 0 or interpolate == 1:
        raise GanjiError(f"--interpolate must be 0 (off) or at least 2 (got {interpolate})")
    if output is None and out_dir is None:
        output = Path("samples.png")
    if output is not None:
        _writable_target(output, "file")
    if out_dir is not None:
        _writable_target(out_dir, "folder")
    loaded = load_model(resolve_home(home), model.value, run, checkpoint, device)
    steps = check_request(loaded, n, batch_size, sampler, steps, interpolate, eta)
    if model.value == "ddpm" and interpolate > 1:
        sampler = "ddim"  # interpolation walks the noise through the deterministic sampler
    calls = model_calls_per_image(loaded, sampler, steps)
    total = (interpolate * -(-n // interpolate) if interpolate > 1 else n) * calls
    progress = Progress(
        TextColumn(f"[bold]sampling {model.value}"), BarColumn(), MofNCompleteColumn(), TextColumn("model calls x image"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, disable=quiet,
    )
    start = time.perf_counter()
    with progress:
        task = progress.add_task("sample", total=total)
        batch_sizes: list[int] = []

        def on_batch(size: int) -> None:
            batch_sizes.append(size)
            if calls == 1:
                progress.advance(task, size)

        def on_step(_: int) -> None:
            progress.advance(task, min(batch_size, n))

        images = generate(
            loaded, n, seed=seed, batch_size=batch_size, sampler=sampler, steps=steps, eta=eta,
            use_ema=ema, interpolate=interpolate, on_batch=on_batch, on_step=on_step if calls > 1 else None,
        )
        progress.update(task, completed=total)
    seconds = time.perf_counter() - start
    paper = not invert
    if output is not None:
        save_png(output, make_grid(images, columns=interpolate if interpolate > 1 else None, ink_on_paper=paper))
        console.print(f"wrote {output} ({len(images)} images from {model.value} run {loaded.run_name}, step {loaded.step}) in {seconds:.1f} s")
    if out_dir is not None:
        arr = images.numpy()
        for i in range(len(arr)):
            save_png(out_dir / f"{i:05d}.png", to_pil(255 - arr[i] if paper else arr[i]))
        console.print(f"wrote {len(arr)} PNGs to {out_dir}")
