"""`ganji fetch-data [kanji|mnist|cifar10]`: prepare a dataset."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ganji.cli import app
from ganji.cli.options import HomeOption
from ganji.home import resolve_home


class Source(str, Enum):
    kanji = "kanji"
    mnist = "mnist"
    cifar10 = "cifar10"


@app.command("fetch-data")
def fetch_data_command(
    source: Annotated[Source, typer.Argument(help="kanji: render offline from a font; mnist/cifar10: download via torchvision.")] = Source.kanji,
    from_path: Annotated[Path | None, typer.Option("--from", help="Import a folder or .zip of images instead (png/jpg/bmp/gif/webp).", show_default=False)] = None,
    name: Annotated[str | None, typer.Option(help="Dataset name [default: the source's name, or the folder/zip name with --from].", show_default=False)] = None,
    size: Annotated[int, typer.Option(help="Side of the square images, in pixels.")] = 64,
    limit: Annotated[int | None, typer.Option(help="Keep only the first N images (quick runs, tests) [default: all].", show_default=False)] = None,
    charset: Annotated[str, typer.Option(help="kanji: jis0213 (10,020 with the bundled font) or jis0208 (6,355).")] = "jis0213",
    font: Annotated[Path | None, typer.Option(help="kanji: a TTF/OTF/TTC font [default: the bundled IPAex Gothic].", show_default=False)] = None,
    channels: Annotated[int, typer.Option(help="--from: 1 (grayscale) or 3 (colour).")] = 1,
    invert: Annotated[bool | None, typer.Option("--invert/--no-invert", help="--from: force inverting (or not) [default: detect dark ink from the border].", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the dataset is already prepared.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    home: HomeOption = None,
) -> None:
    """Prepare a dataset under the home folder (offline and deterministic for kanji)."""
    from ganji.data import prepare

    root = resolve_home(home)
    if from_path is not None:
        prepare.prepare_folder(root, from_path, name, size, channels, invert, limit, force, progress=not quiet)
    elif source is Source.kanji:
        prepare.prepare_kanji(root, name or "kanji", size, limit, charset, font, force, progress=not quiet)
    else:
        prepare.prepare_torchvision(root, source.value, name, size, limit, force, progress=not quiet)
