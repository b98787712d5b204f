"""Preparing datasets: the offline kanji renders, imported image folders, MNIST and CIFAR-10.

A dataset is built in a hidden temporary folder beside its final place and renamed into place only
once complete, so a failure (bad font, no images, Ctrl-C, full disk) never leaves a half-written
dataset behind, and a `--force` rebuild that fails leaves the previous dataset as it was.
"""

from __future__ import annotations

import importlib.resources
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ganji.console import console, err_console
from ganji.data.store import PREVIEW_FILE, dataset_path, is_prepared, load_manifest, save_dataset
from ganji.errors import GanjiError
from ganji.home import cache_dir
from ganji.images import make_grid, save_png

DEFAULT_NAME = "kanji"


def bundled_font() -> Path:
    """IPAex Gothic as shipped in the `matplotlib-fontja` package."""
    path = Path(str(importlib.resources.files("matplotlib_fontja") / "fonts" / "ipaexg.ttf"))
    if not path.is_file():
        raise GanjiError("the bundled IPAex Gothic font is missing: reinstall matplotlib-fontja, or pass --font PATH")
    return path


def check_size(size: int) -> None:
    if size < 8:
        raise GanjiError(f"--size must be at least 8 pixels (got {size})")


@contextmanager
def _building(home: Path, name: str) -> Iterator[Path]:
    """A temporary folder to build dataset `name` in, moved into place when the block succeeds."""
    final = dataset_path(home, name)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".building", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.with_name(f".{name}.{time.time_ns()}.old")
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _progress(show: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err_console, disable=not show)


def _already(home: Path, name: str, force: bool) -> bool:
    if is_prepared(home, name) and not force:
        m = load_manifest(home, name)
        err_console.print(f"dataset [bold]{name}[/] is already prepared ({m.get('count')} images, {m.get('size')} px) "
                          f"in {dataset_path(home, name)}; use --force to rebuild it")
        return True
    return False


def _finish(folder: Path, images: torch.Tensor, manifest: dict[str, Any], labels: torch.Tensor | None = None) -> dict[str, Any]:
    written = save_dataset(folder, images, manifest, labels)
    # The preview samples the whole set evenly (the first code points are rare Extension A kanji).
    idx = np.linspace(0, len(images) - 1, num=min(64, len(images))).round().astype(int)
    save_png(folder / PREVIEW_FILE, make_grid(images[torch.as_tensor(idx)], ink_on_paper=False))
    return written


def prepare_kanji(
    home: Path,
    name: str = DEFAULT_NAME,
    size: int = 64,
    limit: int | None = None,
    charset: str = "jis0213",
    font: Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Render the charset's kanji that the font covers (deterministic: same bytes every time)."""
    from ganji.data.charset import covered, font_codepoints, kanji_codepoints
    from ganji.data.render import GlyphRenderer, inspect_font, render_all

    check_size(size)
    if limit is not None and limit < 1:
        raise GanjiError(f"--limit must be at least 1 (got {limit})")
    if _already(home, name, force):
        return dataset_path(home, name)
    start = time.perf_counter()
    font_path = Path(font) if font is not None else bundled_font()
    if not font_path.is_file():
        raise GanjiError(f"font file {font_path} does not exist")
    wanted = kanji_codepoints(charset)
    covers = covered(wanted, font_codepoints(font_path))
    if not covers:
        raise GanjiError(f"{font_path} has no glyph for any {charset} kanji")
    chosen = covers[:limit] if limit else covers
    info = inspect_font(font_path, chosen)
    renderer = GlyphRenderer(info, size)
    with _building(home, name) as folder, _progress(progress) as bar:
        task = bar.add_task(f"rendering {name}", total=len(chosen))
        images, kept, blank = render_all(renderer, chosen, lambda: bar.advance(task))
        if len(kept) == 0:
            raise GanjiError(f"{font_path} rendered every character blank")
        manifest = _finish(folder, torch.from_numpy(images), {
            "source": "kanji",
            "font": {"name": info.name, "file": font_path.name, "sha256": info.sha256},
            "charset": charset,
            "charset_size": len(wanted),
            "font_covers": len(covers),
            "limit": limit,
            "blank_skipped": blank,
            "render": {"em_px": round(renderer.em_px / 4, 3), "supersample": 4, "filter": "box"},
            "codepoints": kept,
        })
    _summary(home, name, manifest, time.perf_counter() - start, {"font": info.name, "charset": charset})
    return dataset_path(home, name)


def prepare_folder(
    home: Path,
    source: Path,
    name: str | None = None,
    size: int = 64,
    channels: int = 1,
    invert: bool | None = None,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Import a folder or zip of images as a dataset."""
    from ganji.data.folder_import import count_files, import_images

    check_size(size)
    if channels not in (1, 3):
        raise GanjiError(f"--channels must be 1 or 3 (got {channels})")
    source = Path(source)
    if not source.exists():
        raise GanjiError(f"{source} does not exist")
    name = name or source.stem
    if _already(home, name, force):
        return dataset_path(home, name)
    start = time.perf_counter()
    with _building(home, name) as folder, _progress(progress) as bar:
        task = bar.add_task(f"importing {source.name}", total=count_files(source))
        result = import_images(source, size, channels, invert, lambda: bar.advance(task))
        images = torch.from_numpy(result.images[:limit] if limit else result.images)
        manifest = _finish(folder, images, {
            "source": "folder",
            "from": str(source.resolve()),
            "files": result.files[: len(images)],
            "skipped_non_images": result.skipped_non_images,
            "skipped_unreadable": result.skipped_unreadable,
            "inverted": result.inverted,
            "invert": invert,
        })
    _summary(home, name, manifest, time.perf_counter() - start,
             {"from": str(source), "skipped": f"{result.skipped_non_images} non-images, {len(result.skipped_unreadable)} unreadable",
              "inverted": str(result.inverted)})
    return dataset_path(home, name)


def prepare_torchvision(home: Path, which: str, name: str | None = None, size: int = 64, limit: int | None = None,
                        force: bool = False, progress: bool = True, download: bool = True) -> Path:
    """MNIST or CIFAR-10 (training split) through torchvision, with labels."""
    from ganji.data.torchvision_sets import convert, load_torchvision

    check_size(size)
    name = name or which
    if _already(home, name, force):
        return dataset_path(home, name)
    start = time.perf_counter()
    root = cache_dir(home) / "torchvision"
    with err_console.status(f"getting {which}..."):
        ds = load_torchvision(which, root, download)
    images, labels, classes = convert(which, ds, size)
    if limit:
        images, labels = images[:limit], labels[:limit]
    with _building(home, name) as folder:
        manifest = _finish(folder, images, {"source": which, "split": "train", "classes": classes}, labels)
    _summary(home, name, manifest, time.perf_counter() - start, {"classes": str(len(classes))})
    return dataset_path(home, name)


def ensure_dataset(home: Path, name: str) -> None:
    """Prepare the default kanji set if it is missing; any other missing name is an error."""
    if is_prepared(home, name):
        return
    if name == DEFAULT_NAME:
        err_console.print(f"dataset [bold]{name}[/] is not prepared yet: preparing it first (a few seconds)")
        prepare_kanji(home, name)
        return
    raise GanjiError(f"dataset {name!r} is not prepared: run `ganji fetch-data ... --name {name}` first")


def _summary(home: Path, name: str, manifest: dict[str, Any], seconds: float, extra: dict[str, str]) -> None:
    table = Table(title=f"dataset {name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("source", str(manifest.get("source")))
    table.add_row("images", f"{manifest['count']:,} x {manifest['channels']} x {manifest['size']} x {manifest['size']}")
    for k, v in extra.items():
        table.add_row(k, v)
    table.add_row("sha256", manifest["images_sha256"][:16] + "…")
    table.add_row("folder", str(dataset_path(home, name)))
    table.add_row("time", f"{seconds:.1f} s")
    console.print(table)
