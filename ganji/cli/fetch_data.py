"""`ganji fetch-data [kanji|mnist|cifar10] [--from PATH]`: prepare a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ganji.cli import app
from ganji.cli.options import HomeOption
from ganji.errors import GanjiError
from ganji.home import resolve_home

SOURCE_HELP = "kanji renders offline from a font; mnist and cifar10 download through torchvision. \\[default: kanji]"


@app.command("fetch-data")
def fetch_data_command(
    # A plain string, validated here, so that a typo gets ganji's one-line error rather than a usage box.
    source: Annotated[str | None, typer.Argument(metavar="SOURCE", help=SOURCE_HELP, show_default=False)] = None,
    from_path: Annotated[Path | None, typer.Option("--from", help="Import a folder or .zip of images (png/jpg/jpeg/bmp/gif/webp) instead. \\[default: none]", show_default=False)] = None,
    name: Annotated[str | None, typer.Option(help="Dataset name. \\[default: the source's name; with --from, the folder or zip name]", show_default=False)] = None,
    size: Annotated[int, typer.Option(help="Side of the square images, in pixels (at least 8).")] = 64,
    limit: Annotated[int | None, typer.Option(help="Keep only the first N images (quick runs, tests). \\[default: all]", show_default=False)] = None,
    charset: Annotated[str, typer.Option(metavar="jis0213|jis0208", help="kanji: JIS X 0213 (10,020 with the bundled font) or JIS X 0208 (6,355).")] = "jis0213",
    font: Annotated[Path | None, typer.Option(help="kanji: a TTF/OTF/TTC font (face 0 of a TTC). \\[default: the bundled IPAex Gothic]", show_default=False)] = None,
    channels: Annotated[int, typer.Option(metavar="1|3", help="--from: 1 (grayscale) or 3 (colour).")] = 1,
    invert: Annotated[bool | None, typer.Option("--invert/--no-invert", help="--from: invert every image (or none). \\[default: per image, invert when the border is bright]", show_default=False)] = None,
    component_depth: Annotated[int, typer.Option(help="kanji: label each kanji's components (KanjiVG) this many levels deep, 1 to 4, for `train --condition components`.")] = 1,
    component_min_count: Annotated[int, typer.Option(help="kanji: keep the (component, position) keys that at least this many kanji have.")] = 5,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the dataset is already prepared. \\[default: off]", show_default=False)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar. \\[default: off]", show_default=False)] = False,
    home: HomeOption = None,
) -> None:
    """Prepare a dataset under the home folder (kanji: offline and deterministic, same bytes every time)."""
    from ganji.data import prepare

    root = resolve_home(home)
    if source is not None and source not in prepare.SOURCES:
        raise GanjiError(f"unknown source {source!r}: use one of {', '.join(prepare.SOURCES)}, or --from PATH")
    if from_path is not None and source is not None:
        raise GanjiError(f"give either a source ({source}) or --from PATH, not both")
    kind = "folder" if from_path is not None else (source or "kanji")
    if font is not None and kind != "kanji":
        raise GanjiError("--font only applies to the kanji source")
    if kind != "kanji" and (component_depth != 1 or component_min_count != 5):
        raise GanjiError("--component-depth and --component-min-count only apply to the kanji source")
    if kind != "folder" and (channels != 1 or invert is not None):
        raise GanjiError("--channels and --invert/--no-invert only apply to --from imports")
    progress = not quiet
    if kind == "folder":
        result = prepare.build_folder(root, from_path, name, size, channels, invert, limit, force, progress)
    elif kind == "kanji":
        result = prepare.build_kanji(root, name or "kanji", size, limit, charset, font, force, progress,
                                     component_depth=component_depth, component_min_count=component_min_count)
    else:
        result = prepare.build_torchvision(root, kind, name, size, limit, force, progress)
    prepare.report(result)
