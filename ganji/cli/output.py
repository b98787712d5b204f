"""What several commands do around their work: check where output goes before any work starts, and
show one progress bar per stage."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ganji.console import err_console
from ganji.errors import GanjiError


def writable_target(path: Path, what: str, image: bool = True) -> Path:
    """Create the missing folder; a clear error if it cannot be written, or if a file's name asks for
    no image format (`image`) or names something that is not a regular file (a device, a FIFO): all
    before any sampling, and before anything is created."""
    from ganji.atomic import check_replaceable
    from ganji.images import image_format

    folder = path if what == "folder" else path.parent
    for above in (folder, *folder.parents):  # a file where a folder should be: say which
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                raise GanjiError(f"{above} is not a folder")
            break
    if what == "file":
        if image:
            image_format(path)
        if not path.is_dir():  # a folder gets its own hint below
            check_replaceable(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GanjiError(f"cannot create {folder}: {exc.strerror}") from None
    if not folder.is_dir():
        raise GanjiError(f"{folder} is not a folder")
    if what == "file" and path.is_dir():
        example = folder / path.name / ("samples.png" if image else "fake.otf")
        raise GanjiError(f"{path} is a folder: give the file a name, such as {example}")
    if not os.access(folder, os.W_OK):
        raise GanjiError(f"{folder} is not writable")
    return path


def stage_progress(quiet: bool = False, remaining: bool = True) -> tuple[Progress, Callable[[str, int], Callable[[int], None]]]:
    """A rich progress display on stderr and its `track(description, total) -> advance(k)` (the
    metrics' Track): each stage of a long command adds its own bar."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    progress = Progress(*columns, *([TimeRemainingColumn()] if remaining else []), console=err_console, disable=quiet)

    def track(description: str, total: int) -> Callable[[int], None]:
        task = progress.add_task(description, total=total)
        return lambda k: progress.advance(task, k)

    return progress, track
