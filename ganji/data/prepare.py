"""Preparing datasets: the offline kanji renders, imported image folders, MNIST and CIFAR-10.

A dataset is built in a hidden temporary folder beside its final place and renamed into place only
once complete, so a failure (bad font, no images, Ctrl-C, full disk) never leaves a half-written
dataset behind, and a `--force` rebuild that fails leaves the previous dataset as it was. Builds of
one name hold its lock; a build killed at any moment (kill -9 in the middle of the swap included) is
finished or undone by the next command that looks for the dataset, and its leftovers are removed.

The `build_*` functions do the work and return a `Prepared` record without printing results; the
`prepare_*` functions are the library's convenience layer that also prints the summary table.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ganji.console import console, err_console
from ganji.atomic import file_kind
from ganji.data.store import (
    PREVIEW_FILE,
    check_dataset_name,
    dataset_lock,
    dataset_name_from,
    dataset_path,
    is_prepared,
    load_manifest,
    recover_dataset,
    save_dataset,
)
from ganji.errors import GanjiError
from ganji.home import cache_dir
from ganji.images import make_grid, save_image

DEFAULT_NAME = "kanji"
SOURCES = ("kanji", "mnist", "cifar10")
PREVIEW_COUNT = 64
MAX_SIZE = 1024  # pixels: the paper trains at 64; past this a dataset no longer fits in memory
MODEL_MULTIPLE = 16  # the models halve the image four times


@dataclass
class Prepared:
    """The outcome of a build: where the dataset is, its manifest, and what happened."""

    name: str
    path: Path
    manifest: dict[str, Any]
    seconds: float = 0.0
    already: bool = False  # nothing was done: the dataset was prepared before
    details: dict[str, str] = field(default_factory=dict)  # source-specific summary rows


def bundled_font() -> Path:
    """IPAex Gothic as shipped in the `matplotlib-fontja` package."""
    path = Path(str(importlib.resources.files("matplotlib_fontja") / "fonts" / "ipaexg.ttf"))
    if not path.is_file():
        raise GanjiError("the bundled IPAex Gothic font is missing: reinstall matplotlib-fontja, or pass --font PATH")
    return path


def check_size(size: int) -> None:
    if size <= 0:
        raise GanjiError(f"--size must be a positive number of pixels (got {size})")
    if size < 8:
        raise GanjiError(f"--size must be at least 8 pixels (got {size})")
    if size > MAX_SIZE:
        raise GanjiError(f"--size must be at most {MAX_SIZE} pixels (got {size})")


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise GanjiError(f"--limit must be at least 1 (got {limit})")


@contextmanager
def _building(home: Path, name: str) -> Iterator[Path]:
    """A temporary folder to build dataset `name` in, moved into place when the block succeeds."""
    final = dataset_path(home, name)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(final)) from None
    with dataset_lock(home, name):
        recover_dataset(home, name)  # what a killed build left: finish or undo its swap, remove the rest
        yield from _build_and_swap(final, name)


def _build_and_swap(final: Path, name: str) -> Iterator[Path]:
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".building", dir=final.parent))
    except OSError as exc:  # a read-only or full home: name the dataset, not a temporary folder
        raise OSError(exc.errno, exc.strerror, str(final)) from None
    try:
        try:
            yield tmp
        except OSError as exc:  # name the dataset's file, not its temporary build folder
            if exc.errno is None or not exc.filename or not Path(exc.filename).is_relative_to(tmp):
                raise
            raise OSError(exc.errno, exc.strerror, str(final / Path(exc.filename).relative_to(tmp))) from None
        # mkdtemp makes the folder private (0700); a dataset should follow the user's umask instead.
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        # The swap, in steps that `recover_dataset` can finish or undo wherever a kill -9 stops it:
        # the complete build is marked ".new", the previous dataset moved aside as ".old", the new
        # one moved in, the old one removed.
        stamp = time.time_ns()
        new = final.with_name(f".{name}.{stamp}.new")
        tmp.rename(new)
        tmp = new
        old = None
        if os.path.lexists(final):
            old = final.with_name(f".{name}.{stamp}.old")
            final.rename(old)
        new.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not show,
    )


def _existing(home: Path, name: str, force: bool) -> Prepared | None:
    """The already-prepared dataset `name` (nothing to do), or None when it must be built."""
    if force or not is_prepared(home, name):
        return None
    return Prepared(name, dataset_path(home, name), load_manifest(home, name), already=True)


def already_message(p: Prepared) -> str:
    m = p.manifest
    return (
        f"dataset [bold]{p.name}[/] is already prepared ({m.get('count')} images, {m.get('size')} px, "
        f"source {m.get('source')}) in {p.path}; use --force to rebuild it"
    )


def _finish(folder: Path, images: torch.Tensor, manifest: dict[str, Any], labels: torch.Tensor | None = None,
            components: torch.Tensor | None = None) -> dict[str, Any]:
    written = save_dataset(folder, images, manifest, labels, components)
    # The preview samples the whole set evenly: sorted by code point, the first kanji are all rare
    # Extension A characters, which would make a poor picture of the set.
    idx = np.linspace(0, len(images) - 1, num=min(PREVIEW_COUNT, len(images))).round().astype(int)
    save_image(folder / PREVIEW_FILE, make_grid(images[torch.as_tensor(idx)], ink_on_paper=False))
    return written


def build_kanji(
    home: Path,
    name: str = DEFAULT_NAME,
    size: int = 64,
    limit: int | None = None,
    charset: str = "jis0213",
    font: Path | None = None,
    force: bool = False,
    progress: bool = True,
    component_depth: int = 1,
    component_min_count: int = 5,
) -> Prepared:
    """Render the charset's kanji that the font covers (deterministic: same bytes every time), with
    their component labels from KanjiVG (ganji.data.components)."""
    from ganji.data.charset import covered, font_codepoints, kanji_codepoints
    from ganji.data.components import check_depth, check_min_count, label_codepoints
    from ganji.data.render import GlyphRenderer, inspect_font, render_all

    check_size(size)
    check_limit(limit)
    check_depth(component_depth)
    check_min_count(component_min_count)
    wanted = kanji_codepoints(charset)  # validates the charset name before anything else
    if (done := _existing(home, name, force)) is not None:
        return done
    start = time.perf_counter()
    font_path = Path(font).expanduser() if font is not None else bundled_font()
    if not font_path.is_file() or file_kind(font_path) is not None:
        kind = file_kind(font_path)
        raise GanjiError(f"font file {font_path} " + (f"is {kind}, not a font file" if kind else "does not exist")
                         + (" (it is a folder)" if font_path.is_dir() else ""))
    covers = covered(wanted, font_codepoints(font_path))
    if not covers:
        raise GanjiError(f"font {font_path} has no glyph for any {charset} kanji")
    # The scale comes from the whole covered set, so `--limit N` gives exactly the first N images of
    # the full dataset.
    info = inspect_font(font_path, covers)
    renderer = GlyphRenderer(info, size)
    chosen = covers[:limit] if limit else covers
    with _building(home, name) as folder, _progress(progress) as bar:
        task = bar.add_task(f"rendering {name}", total=len(chosen))
        result = render_all(renderer, chosen, lambda: bar.advance(task))
        if not result.codepoints:
            raise GanjiError(f"font {font_path} rendered every character blank")
        labels = label_codepoints(result.codepoints, component_depth, component_min_count)
        manifest = _finish(folder, torch.from_numpy(result.images), {
            "source": "kanji",
            "font": {"name": info.name, "file": font_path.name, "sha256": info.sha256},
            "charset": charset,
            "charset_size": len(wanted),
            "font_covers": len(covers),
            "limit": limit,
            "blank_skipped": result.blank,
            "clipped": result.clipped,
            "render": {"em_px": renderer.em / 4, "supersample": 4, "filter": "box", "margin_px": 1},
            "codepoints": result.codepoints,
            "components": {"vocabulary": labels.vocabulary, **labels.provenance},
        }, components=labels.tensor)
    p = labels.provenance
    details = {"font": info.name, "charset": f"{charset} ({len(covers):,} of {len(wanted):,} in the font)",
               "blank skipped": str(len(result.blank)),
               "components": f"{p['with_label']:,} of {len(result.codepoints):,} kanji labelled ({p['labelled']:,} in KanjiVG), "
                             f"{len(labels.vocabulary):,} keys in at least {p['min_count']} kanji (KanjiVG {p['version']}, depth {p['depth']})"}
    if result.clipped:  # the scale is chosen to prevent this; a font with odd metrics can defeat it
        details["touching the edge"] = f"{len(result.clipped)} (font metrics disagree with outlines?)"
    return Prepared(name, dataset_path(home, name), manifest, time.perf_counter() - start, details=details)


def build_folder(
    home: Path,
    source: Path,
    name: str | None = None,
    size: int = 64,
    channels: int = 1,
    invert: bool | None = None,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> Prepared:
    """Import a folder or zip of images as a dataset (`invert` None detects the polarity per image)."""
    from ganji.data.folder_import import count_files, import_images

    check_size(size)
    check_limit(limit)
    if channels not in (1, 3):
        raise GanjiError(f"--channels must be 1 or 3 (got {channels})")
    source = Path(source).expanduser()
    check_source(source)
    if name is None:
        stem = source.resolve().name if source.is_dir() else source.stem
        name = dataset_name_from(stem)
        if name is None:
            raise GanjiError(f"cannot make a dataset name from {stem!r}: give one with --name")
    check_dataset_name(name)
    if (done := _existing(home, name, force)) is not None:
        return done
    start = time.perf_counter()
    with _building(home, name) as folder, _progress(progress) as bar:
        task = bar.add_task(f"importing {source.name}", total=count_files(source))
        result = import_images(source, size, channels, invert, limit, lambda: bar.advance(task))
        manifest = _finish(folder, torch.from_numpy(result.images), {
            "source": "folder",
            "from": str(source.resolve()),
            "files": result.files,
            "skipped_non_images": result.skipped_non_images,
            "skipped_unreadable": result.skipped_unreadable,
            "skipped_too_large": result.skipped_too_large,
            "inverted": result.inverted,
            "invert": invert,
            "resize": "pad to square with the border colour, then Lanczos",
        })
    details = {
        "from": str(source),
        "skipped": f"{result.skipped_non_images} non-images, {len(result.skipped_unreadable)} unreadable, "
                   f"{len(result.skipped_too_large)} too large",
        "inverted": f"{result.inverted} of {len(result.files)}",
    }
    # Name the files that were skipped, so a damaged file is never dropped silently.
    if result.skipped_unreadable:
        details["unreadable (skipped)"] = _some(result.skipped_unreadable)
    if result.skipped_too_large:
        details["too large (skipped)"] = _some(result.skipped_too_large)
    return Prepared(name, dataset_path(home, name), manifest, time.perf_counter() - start, details=details)


def check_source(source: Path) -> None:
    """An import source must be a folder or a regular file (a zip): never a device (/dev/zero would be
    read forever), a FIFO (opening it blocks), a socket, or a dangling symlink."""
    if not os.path.lexists(source):
        raise GanjiError(f"{source} does not exist")
    if source.is_dir():
        return
    kind = file_kind(source)
    if kind is not None:
        raise GanjiError(f"{source} is {kind}: give a folder of images or a .zip file")


def build_torchvision(
    home: Path,
    which: str,
    name: str | None = None,
    size: int = 64,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
    download: bool = True,
) -> Prepared:
    """MNIST or CIFAR-10 (training split) through torchvision, with labels."""
    from ganji.data.torchvision_sets import SETS, convert, load_torchvision

    if which not in SETS:
        raise GanjiError(f"unknown source {which!r}: use one of {', '.join(SOURCES)}")
    check_size(size)
    check_limit(limit)
    name = name or which
    if (done := _existing(home, name, force)) is not None:
        return done
    start = time.perf_counter()
    root = cache_dir(home) / "torchvision"
    with err_console.status(f"getting {which} into {root}...") if progress else _nothing():
        ds = load_torchvision(which, root, download)
    with _progress(progress) as bar:
        n = min(len(ds.data), limit) if limit else len(ds.data)
        task = bar.add_task(f"converting {which}", total=n)
        images, labels, classes = convert(which, ds, size, limit, lambda k: bar.advance(task, k))
    with _building(home, name) as folder:
        manifest = _finish(folder, images, {"source": which, "split": "train", "classes": classes,
                                            "limit": limit, "resize": "bilinear, antialiased"}, labels)
    details = {"classes": str(len(classes)), "cache": str(root)}
    return Prepared(name, dataset_path(home, name), manifest, time.perf_counter() - start, details=details)


def _some(names: list[str], shown: int = 5) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more (listed in manifest.json)" if more > 0 else "")


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def summary_table(p: Prepared) -> Table:
    """The table printed when a dataset is ready: name, source, count, size, font, folder, seconds."""
    m = p.manifest
    table = Table(title=f"dataset {p.name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("name", p.name)
    table.add_row("source", str(m.get("source")))
    table.add_row("count", f"{m['count']:,}")
    table.add_row("size", f"{m['size']} x {m['size']} px, {m['channels']} channel{'s' if m['channels'] > 1 else ''}")
    for key, value in p.details.items():
        table.add_row(key, value)
    table.add_row("sha256", m["images_sha256"][:16] + "…")
    table.add_row("folder", str(p.path))
    table.add_row("seconds", f"{p.seconds:.1f}")
    return table


def report(p: Prepared) -> None:
    """Tell the user what happened: the summary table, or that nothing needed doing."""
    if p.already:
        err_console.print(already_message(p), highlight=False, soft_wrap=True)
        return
    console.print(summary_table(p))
    size = p.manifest.get("size")
    if isinstance(size, int) and size % MODEL_MULTIPLE:
        err_console.print(
            f"note: {size} px is not a multiple of {MODEL_MULTIPLE}, so `ganji train` cannot use this dataset "
            "(the models need 16, 32, 48, 64, ... px)",
            highlight=False, soft_wrap=True,
        )


def ensure_dataset(home: Path, name: str) -> None:
    """Prepare the default kanji set if it is missing; any other missing name is an error."""
    if is_prepared(home, name):
        return
    if name == DEFAULT_NAME:
        err_console.print(f"dataset [bold]{name}[/] is not prepared yet: preparing it first (about 15 seconds)")
        report(build_kanji(home, name))
        return
    raise GanjiError(f"dataset {name!r} is not prepared: run `ganji fetch-data ... --name {name}` first")
