"""How training looks in the terminal: a rich progress bar that follows the loop, and the summary table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ganji.console import err_console
from ganji.train.loop import TrainResult
from ganji.train.observer import TrainingObserver


class ProgressBar(TrainingObserver):
    """One bar for the steps (losses and images/s beside it), one more for each grid or evaluation."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err_console,
        )
        self.task: TaskID | None = None

    def start(self, description: str, total_steps: int, done_steps: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task(description, total=total_steps, completed=done_steps, stats="")

    def advance(self, step: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=step)

    def report(self, description: str, losses: dict[str, float], images_per_s: float) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=description, stats=stats_text(losses, images_per_s))

    @contextmanager
    def side_task(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        task = self.progress.add_task(description, total=total, stats="")
        try:
            yield lambda k: self.progress.advance(task, k)
        finally:
            self.progress.remove_task(task)

    def note(self, text: str) -> None:
        self.progress.console.print(text, highlight=False)

    def stop(self) -> None:
        self.progress.stop()


BRIGHTNESS = ("fake_mean", "real_mean", "fake_dark", "real_dark")  # a GAN's fakes against its data


def stats_text(losses: dict[str, float], images_per_s: float) -> str:
    parts = [f"{k} {v:.4g}" for k, v in losses.items() if k != "d_steps" and k not in BRIGHTNESS]
    if all(k in losses for k in BRIGHTNESS):
        parts.append(f"fake/real mean {losses['fake_mean']:+.2f}/{losses['real_mean']:+.2f} "
                     f"dark {100 * losses['fake_dark']:.0f}%/{100 * losses['real_dark']:.0f}%")
    return "  ".join(parts + [f"{images_per_s:,.1f} img/s"])


def summary_table(result: TrainResult) -> Table:
    table = Table(title=f"{result.run.model} run {result.run.name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("stopped", str(result.reason))
    table.add_row("steps", f"{result.step:,} / {result.total_steps:,} (epoch {result.epoch:.2f})")
    table.add_row("training time", f"{result.train_seconds:,.1f} s")
    table.add_row("throughput", f"{result.images_per_second:,.1f} img/s")
    for k, v in result.losses.items():
        table.add_row(k, f"{v:.5g}")
    table.add_row("folder", str(result.run.path))
    if result.grids:
        table.add_row("latest grid", str(result.grids[-1]))
    if result.best:
        table.add_row("best FID", f"{result.best['fid']:.4g} at step {int(result.best['step']):,} (best.safetensors)")
    return table
