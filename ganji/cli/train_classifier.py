"""`ganji train-classifier flow --run NAME`: the noise-aware component classifier of a conditional
flow run, for classifier guidance (`--classifier-guidance` on `ganji sample` and `ganji fid`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ganji.cli import app
from ganji.cli.options import HomeOption, Model, complete_run
from ganji.console import console, err_console
from ganji.home import resolve_home


@app.command("train-classifier")
def train_classifier_command(
    model: Annotated[Model, typer.Argument(help="The model of the run (flow).", show_default=False)],
    run: Annotated[str | None, typer.Option(help="The run trained with --condition components \\[default: the latest run of the model].", show_default=False, autocompletion=complete_run)] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the run's training kanji.")] = 60,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, one-cycle).")] = 2e-3,
    width: Annotated[int, typer.Option(help="Channels of the first stage (a multiple of 8).")] = 32,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same classifier (on a CPU, the same bytes).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    home: HomeOption = None,
) -> None:
    """Train the classifier that classifier guidance steers a conditional flow run's requests with.

    It learns what the run learnt from (its dataset without the kanji it held out, made-up kanji at its --component-mix) at every noise level of the flow's path, and is stored in the run's folder as classifier.safetensors (replaced only once the new one is complete). It is not ComponentNet, the recogniser that `ganji fid --condition components` judges with."""
    from ganji.train.classifier import train_classifier

    progress = Progress(TextColumn(f"[bold]classifier for {model.value}/{run or 'latest'}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("steps"), TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, disable=quiet)
    task = progress.add_task("train", total=None)
    with progress:
        meta = train_classifier(resolve_home(home), model.value, run, epochs=epochs, batch_size=batch_size, lr=lr, width=width,
                                seed=seed, device=device, on_start=lambda total: progress.update(task, total=total),
                                on_step=lambda: progress.advance(task))
    recall = meta.get("held_out_recall")
    found = (", held-out kanji's keys found " + ", ".join(f"{v * 100:.1f}% at {k}" for k, v in recall.items())) if recall else ""
    console.print(f"classifier of {model.value}/{meta['run']}: {meta['epochs']} epoch{'s' if meta['epochs'] != 1 else ''} on {meta['kanji']:,} kanji in "
                  f"{meta['seconds']:.0f} s, last epoch's loss {meta['final_loss']:.4f}{found}")
