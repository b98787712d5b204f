"""Importing a folder or a zip of images (e.g. the Kaggle kanji set the original study used).

Each image becomes grayscale (or RGB with 3 channels), square (padded with its border colour),
`size` x `size` (Lanczos), with bright ink: an image whose border is mostly bright is inverted.
Anything that is not a readable image is skipped and counted; zip entries that would escape the
folder (absolute paths, `..`) and zip bombs are refused; Pillow's decompression-bomb guard stays on.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps

from ganji.errors import GanjiError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MAX_MEMBER_BYTES = 64 * 2**20  # one image larger than this, uncompressed, is not a glyph picture
MAX_RATIO = 200  # compression ratios beyond this are a zip bomb's signature, not an image's


@dataclass
class ImportResult:
    images: np.ndarray  # N x C x H x W uint8, ink bright
    files: list[str]
    skipped_non_images: int = 0
    skipped_unreadable: list[str] = field(default_factory=list)
    inverted: int = 0


def _safe_member(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return not (path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]))


def iter_sources(source: Path) -> Iterator[tuple[str, Callable[[], bytes] | None]]:
    """(name, reader) per file, sorted by name; reader is None for files that are not images."""
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            rel = path.relative_to(source).as_posix()
            yield rel, (path.read_bytes if path.suffix.lower() in IMAGE_SUFFIXES else None)
        return
    if not source.is_file():
        raise GanjiError(f"{source} does not exist")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError):
        raise GanjiError(f"{source} is neither a folder nor a readable zip file") from None
    with archive:
        infos = sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename)
        for info in infos:
            if not _safe_member(info.filename):
                raise GanjiError(f"refusing {source}: entry {info.filename!r} would escape the target folder")
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > MAX_MEMBER_BYTES or (ratio > MAX_RATIO and info.file_size > 2**20):
                raise GanjiError(f"refusing {source}: entry {info.filename!r} expands to {info.file_size:,} bytes (a zip bomb?)")
            is_image = PurePosixPath(info.filename).suffix.lower() in IMAGE_SUFFIXES
            yield info.filename, ((lambda i=info: archive.read(i)) if is_image else None)


def decode(data: bytes, channels: int) -> Image.Image:
    """Decode one image to 8-bit L or RGB (first frame of animations; 16-bit, CMYK, palette handled)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))
        img.seek(0)
        img.load()
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode in ("P", "PA", "LA", "RGBA") or "transparency" in img.info:
        # Transparent backgrounds become white paper; polarity detection sorts out the rest.
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, rgba)
    return img.convert("L" if channels == 1 else "RGB")


def to_square(img: Image.Image, size: int) -> np.ndarray:
    """Pad to a square with the border's median colour, resize with Lanczos, as C x H x W uint8."""
    w, h = img.size
    if w != h:
        arr = np.asarray(img)
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]]).reshape(-1, len(img.getbands()))
        fill = tuple(int(v) for v in np.median(border, axis=0))
        img = ImageOps.pad(img, (max(w, h), max(w, h)), color=fill[0] if len(fill) == 1 else fill)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def ink_is_dark(chw: np.ndarray) -> bool:
    """Is the one-pixel border mostly bright (paper), so the ink is dark?"""
    gray = chw.mean(axis=0)
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    return float(border.mean()) > 127.5


def import_images(source: Path, size: int, channels: int = 1, invert: bool | None = None,
                  on_file: Callable[[], None] | None = None) -> ImportResult:
    """Read every image under `source` (folder or zip); `invert` None detects polarity per image."""
    arrays: list[np.ndarray] = []
    result = ImportResult(images=np.zeros((0, channels, size, size), np.uint8), files=[])
    for name, read in iter_sources(Path(source)):
        if on_file is not None:
            on_file()
        if read is None:
            result.skipped_non_images += 1
            continue
        try:
            chw = to_square(decode(read(), channels), size)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning,
                zipfile.BadZipFile, EOFError):
            result.skipped_unreadable.append(name)
            continue
        if invert is True or (invert is None and ink_is_dark(chw)):
            chw = 255 - chw
            result.inverted += 1
        arrays.append(chw)
        result.files.append(name)
    if not arrays:
        raise GanjiError(
            f"no usable images in {source} ({result.skipped_non_images} non-image files, "
            f"{len(result.skipped_unreadable)} unreadable images): nothing to import"
        )
    result.images = np.stack(arrays)
    return result


def count_files(source: Path) -> int | None:
    """How many files an import will look at (for the progress bar), if cheap to know."""
    source = Path(source)
    if source.is_dir():
        return sum(1 for p in source.rglob("*") if p.is_file())
    try:
        with zipfile.ZipFile(source) as z:
            return sum(1 for i in z.infolist() if not i.is_dir())
    except (zipfile.BadZipFile, OSError):
        return None
