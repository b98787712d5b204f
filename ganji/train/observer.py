"""What the training loop tells whoever watches it: progress, side tasks (grids, evaluations) and notes.

The loop draws nothing itself: the command line passes an observer that renders a progress bar
(ganji.cli.train_display), a library caller or a test passes none and gets this quiet one, which
only prints notes (warnings a person must see) to standard error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


class TrainingObserver:
    """Quiet by default; override what you want to show."""

    def start(self, description: str, total_steps: int, done_steps: int) -> None:
        """Training begins (or resumes at `done_steps`)."""

    def advance(self, step: int) -> None:
        """`step` optimiser steps are done."""

    def report(self, description: str, losses: dict[str, float], images_per_s: float) -> None:
        """Fresh losses and throughput, read from the device every `log_every` steps."""

    @contextmanager
    def side_task(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        """A piece of work inside training (a sample grid, an evaluation); yields an advance(k) callable."""
        yield lambda _k: None

    def note(self, text: str) -> None:
        """Something a person should read (a stop request, a restarted run)."""
        from ganji.console import err_console

        err_console.print(text, highlight=False)

    def stop(self) -> None:
        """Training is over (finished, stopped or failed)."""
