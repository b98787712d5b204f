"""Importing a folder or a zip of images (e.g. the Kaggle kanji set the original study used).

Each image becomes grayscale (or RGB with 3 channels), square (padded with its border colour), then
`size` x `size` with Lanczos, which keeps thin strokes sharper than bilinear when shrinking. Ink is
made bright: an image whose one-pixel border is mostly bright (paper) is inverted.

Only the formats of IMAGE_SUFFIXES are decoded (whatever a file's suffix, Pillow is never asked to
try its other decoders), and the work per image is bounded by what the output needs: an image
larger than `shrink_limit(size)` on its long side is box-reduced (in strips, alpha premultiplied)
before anything else touches its pixels, so the padded square never exceeds that limit squared:
a 177-byte 1 x 50,000 PNG or a 9,000 x 9,000 transparent PNG costs megabytes, not gigabytes.

Anything that is not a readable image is skipped and counted, never fatal. Zip members are read in
memory, never extracted; members that would escape a folder (absolute paths, `..`) and zip bombs are
refused outright. Pillow's decompression-bomb guard stays on: such images are skipped and listed.

Zip bombs are caught twice. Before anything is read, from the sizes the archive declares: one entry
over MAX_MEMBER_BYTES, or inflating over MAX_RATIO times its compressed size, or all the image
entries together over MAX_RATIO times the zip's own size (overlapping entries share their compressed
bytes), or over MAX_TOTAL_BYTES. Then while reading, since declared sizes can lie: entries are
inflated in chunks, never in one call, and the bytes actually produced are capped per entry and in
total. Only stored and deflated image entries are read: bzip2 and LZMA cannot be inflated with a
bound on their output. An entry that fails its CRC check (such as a bomb that understates its size)
makes the whole archive refused: it is damaged or forged.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps

from ganji.errors import GanjiError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
OPEN_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "GIF", "WEBP")  # the decoders those suffixes need, and no other
SHRINK_FLOOR = 1024  # images up to this long side (or 4x the output size) are used as they are
STRIP_PIXELS = 4 * 2**20  # large images are reduced this many pixels at a time
MAX_MEMBER_BYTES = 64 * 2**20  # one image larger than this, uncompressed, is no glyph picture
MAX_RATIO = 100  # deflate ratios beyond this are a zip bomb's signature, not an image's...
RATIO_FLOOR = 2**20  # ...once the member is big enough to matter (a blank 100 KB BMP compresses 300x)
TOTAL_RATIO_FLOOR = 64 * 2**20  # the same ratio for all the images of a zip together, past this size
MAX_TOTAL_BYTES = 16 * 2**30  # bytes inflated from one zip, all images together, declared or real
READ_CHUNK = 2**20  # zip entries are inflated this much at a time
COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}

Reader = Callable[[], bytes]


@dataclass
class ImportResult:
    images: np.ndarray  # N x C x H x W uint8, ink bright
    files: list[str]  # relative posix paths of the images kept, in order
    skipped_non_images: int = 0
    skipped_unreadable: list[str] = field(default_factory=list)  # corrupt, truncated, empty
    skipped_too_large: list[str] = field(default_factory=list)  # Pillow's decompression-bomb guard, huge files
    inverted: int = 0


def _is_image_name(name: str) -> bool:
    path = PurePosixPath(name)
    # macOS zips carry "__MACOSX/._x.png" resource forks: not images despite the suffix.
    if "__MACOSX" in path.parts or path.name.startswith("._"):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES


def safe_member(name: str) -> bool:
    """Would extracting this zip member stay inside the target folder?"""
    posix = name.replace("\\", "/")
    path = PurePosixPath(posix)
    drive = path.parts[0] if path.parts else ""
    return not (posix.startswith("/") or ".." in path.parts or ":" in drive)


class TooLarge(Exception):
    """A file too large to be a glyph picture: skipped and listed, like Pillow's decompression bombs."""


def _read_file(path: Path) -> bytes:
    # Only regular files (a symlink in the folder may point at a FIFO or a device), read with a cap.
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"{path} is not a regular file")
    if st.st_size > MAX_MEMBER_BYTES:
        raise TooLarge(path.name)
    with open(path, "rb") as f:
        data = f.read(MAX_MEMBER_BYTES + 1)
    if len(data) > MAX_MEMBER_BYTES:
        raise TooLarge(path.name)
    return data


def _folder_files(source: Path) -> list[tuple[str, Path]]:
    # os.walk does not follow symlinked folders, so a link loop cannot make the import run forever.
    found = []
    for folder, _dirs, names in os.walk(source):
        for name in names:
            path = Path(folder) / name
            if path.is_file():
                found.append((path.relative_to(source).as_posix(), path))
    return sorted(found)


def iter_sources(source: Path) -> Iterator[tuple[str, Reader | None]]:
    """(relative name, reader) per file, sorted by name; the reader is None for non-image files.

    Folders and zips sort the same way (by posix path string), so a folder and its zip import
    identically.
    """
    if source.is_dir():
        for rel, path in _folder_files(source):
            yield rel, ((lambda p=path: _read_file(p)) if _is_image_name(rel) else None)
        return
    if not source.is_file():
        raise GanjiError(f"{source} does not exist")
    if not stat.S_ISREG(source.stat().st_mode):  # pragma: no cover - is_file() says it is
        raise GanjiError(f"{source} is not a regular file")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError):
        raise GanjiError(f"{source} is neither a folder nor a readable zip file") from None
    with archive:
        infos = sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename)
        # Check every member before reading any, so a bad archive is refused as a whole.
        for info in infos:
            check_member(source, info)
        check_archive(source, infos)
        budget = [MAX_TOTAL_BYTES]
        for info in infos:
            reader = (lambda i=info: read_member(source, archive, i, budget)) if _is_image_name(info.filename) else None
            yield info.filename, reader


def check_member(source: Path, info: zipfile.ZipInfo) -> None:
    """Refuse members that would escape the folder or expand to absurd sizes."""
    if not safe_member(info.filename):
        raise GanjiError(f"refusing {source}: entry {info.filename!r} would escape the target folder")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > MAX_MEMBER_BYTES or (ratio > MAX_RATIO and info.file_size > RATIO_FLOOR):
        raise GanjiError(
            f"refusing {source}: entry {info.filename!r} expands to {info.file_size:,} bytes "
            f"({ratio:,.0f}x its compressed size): a zip bomb?"
        )
    if _is_image_name(info.filename) and info.compress_type not in COMPRESSIONS:
        raise GanjiError(
            f"refusing {source}: entry {info.filename!r} uses compression method {info.compress_type}, which "
            "cannot be inflated with a size limit; re-pack the zip with ordinary (deflate) compression"
        )


def check_archive(source: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse archives whose images together expand absurdly (e.g. many entries sharing one blob)."""
    total = sum(i.file_size for i in infos if _is_image_name(i.filename))
    ratio = total / max(source.stat().st_size, 1)
    if total > MAX_TOTAL_BYTES or (total > TOTAL_RATIO_FLOOR and ratio > MAX_RATIO):
        raise GanjiError(
            f"refusing {source}: its images expand to {total:,} bytes in all ({ratio:,.0f}x the zip's size): a zip bomb?"
        )


def read_member(source: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int]) -> bytes:
    """One entry's bytes, inflated a chunk at a time and capped, whatever its header claims.

    `budget` is what may still be inflated from this archive (all entries together); it shrinks.
    """
    limit = min(info.file_size, MAX_MEMBER_BYTES)
    out = bytearray()
    try:
        with archive.open(info) as f:
            while chunk := f.read(READ_CHUNK):
                out += chunk
                budget[0] -= len(chunk)
                if len(out) > limit:
                    raise GanjiError(
                        f"refusing {source}: entry {info.filename!r} inflates past its declared {info.file_size:,} bytes: a zip bomb?"
                    )
                if budget[0] < 0:
                    raise GanjiError(f"refusing {source}: its images inflate to more than {MAX_TOTAL_BYTES:,} bytes: a zip bomb?")
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise GanjiError(
            f"refusing {source}: entry {info.filename!r} is damaged or lies about its size ({exc}): "
            "a zip bomb, or a broken download?"
        ) from None
    return bytes(out)


def _open_formats() -> tuple[str, ...]:
    """OPEN_FORMATS that this Pillow has (all its plugins registered first: Image.open would otherwise
    stop at the first one not yet loaded)."""
    Image.init()
    return tuple(f for f in OPEN_FORMATS if f in Image.OPEN)


def shrink_limit(size: int) -> int:
    """The longest side an image keeps on its way to `size` px: larger ones are box-reduced first."""
    return max(SHRINK_FLOOR, 4 * size)


_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}


def decode(data: bytes, channels: int, max_side: int | None = None) -> Image.Image:
    """Decode one image to 8-bit L or RGB: first frame of animations; 16-bit, CMYK, palette handled.

    With `max_side`, an image longer than that is box-reduced by a whole factor first (see
    `shrink`), so no step after the decoder itself works on more than about max_side² pixels.
    """
    with warnings.catch_warnings():
        # Conversions below handle palette transparency properly, so Pillow's advice is noise; past
        # MAX_IMAGE_PIXELS Pillow only warns (it errors at twice that): make that an error too.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data), formats=_open_formats())
        img.seek(0)
        if max_side is not None and max(img.size) > max_side and img.format in ("JPEG", "MPO"):
            img.draft(None, (max_side, max_side))  # libjpeg decodes at 1/2, 1/4 or 1/8 scale: less to decode
        img.load()
        if max_side is not None and max(img.size) > max_side:
            orientation = img.getexif().get(0x0112, 1)  # read before the reduced copy loses the tag
            sixteen = img.mode.startswith("I;16")
            img = shrink(img, max_side)
            if orientation in _ORIENTATION:
                img = img.transpose(_ORIENTATION[orientation])
        else:
            sixteen = img.mode.startswith("I;16")
            img = ImageOps.exif_transpose(img)  # phone photos store their rotation as a tag
        if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            # Scale 16-bit (and 32-bit) samples to 8 bits rather than letting convert() clip them at 255.
            arr = np.asarray(img, dtype=np.float64)
            top = 65535.0 if sixteen or img.mode.startswith("I;16") else max(float(arr.max()), 255.0)
            img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
        if img.mode in ("P", "PA", "LA", "RGBA", "La", "RGBa") or "transparency" in img.info:
            img = _flatten_alpha(img.convert("RGBA"))
        return img.convert("L" if channels == 1 else "RGB")


def shrink(img: Image.Image, max_side: int) -> Image.Image:
    """Box-reduce `img` by the smallest whole factor that brings its long side to `max_side` or less.

    A strip of rows at a time, so that no full-size copy is ever made; transparency is premultiplied
    while averaging (a transparent pixel's colour must not bleed into the ink), palettes expanded.
    """
    factor = math.ceil(max(img.size) / max_side)
    if factor <= 1:
        return img
    w, h = img.size
    mode = img.mode
    if mode == "P" or mode == "PA" or "transparency" in img.info:
        work, back = "RGBa", "RGBA"
    elif mode in ("LA", "La"):
        work, back = "La", "LA"
    elif mode in ("RGBA", "RGBa"):
        work, back = "RGBa", "RGBA"
    elif mode.startswith("I;16") or mode == "I":
        work, back = "I", "I"
    elif mode == "1":
        work, back = "L", "L"
    else:
        work, back = mode, mode
    rows = max(factor, STRIP_PIXELS // max(w, 1) // factor * factor)
    out = Image.new(work, (math.ceil(w / factor), math.ceil(h / factor)))
    for top in range(0, h, rows):
        strip = img.crop((0, top, w, min(h, top + rows)))
        if strip.mode != work:
            if work in ("RGBa", "La") and strip.mode not in ("RGBA", "LA"):
                strip = strip.convert(back)
            strip = strip.convert(work)
        out.paste(strip.reduce(factor), (0, top // factor))
    return out.convert(back) if back != work else out


def _flatten_alpha(rgba: Image.Image) -> Image.Image:
    """Composite onto a background that contrasts with the opaque pixels.

    Glyphs drawn on a transparent background may be dark or bright ink; putting them on paper of the
    same colour would erase them.
    """
    arr = np.asarray(rgba)
    alpha = arr[..., 3].astype(np.float32) / 255.0
    gray = arr[..., :3].mean(axis=-1, dtype=np.float32)
    ink = float((gray * alpha).sum(dtype=np.float64)) / max(float(alpha.sum(dtype=np.float64)), 1e-9)
    paper = 0 if ink > 127.5 else 255
    background = Image.new("RGBA", rgba.size, (paper, paper, paper, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_square(img: Image.Image, size: int) -> np.ndarray:
    """Pad to a square with the border's median colour, resize with Lanczos, as C x H x W uint8.

    An image longer than `shrink_limit(size)` is box-reduced first: the padded square never exceeds
    that side (a 1 x 50,000 line would otherwise become 50,000² pixels)."""
    img = shrink(img, shrink_limit(size))
    w, h = img.size
    if w != h:
        arr = np.asarray(img)
        bands = len(img.getbands())
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]]).reshape(-1, bands)
        fill = tuple(int(v) for v in np.median(border, axis=0))
        side = max(w, h)
        img = ImageOps.pad(img, (side, side), color=fill[0] if bands == 1 else fill)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def ink_is_dark(chw: np.ndarray) -> bool:
    """Is the one-pixel border mostly bright (paper), so that the ink is dark?"""
    gray = chw.mean(axis=0)
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    return float(border.mean()) > 127.5


def check_image_source(source: Path, option: str) -> Path:
    """`source` if it is a folder (or a symlink to one) or a regular file such as a zip; a one-line
    error naming the command's `option` if it is missing or anything else (a device, a FIFO...)."""
    from ganji.atomic import file_kind

    if not source.exists():
        raise GanjiError(f"{option}: {source} does not exist")
    kind = file_kind(source)
    if kind is not None and kind != "a folder" and not kind.endswith(" to a folder"):
        raise GanjiError(f"{option}: {source} is {kind}: give a folder of images or a .zip file")
    return source


def import_images(
    source: Path,
    size: int,
    channels: int = 1,
    invert: bool | None = None,
    limit: int | None = None,
    on_file: Callable[[], None] | None = None,
) -> ImportResult:
    """Read the images under `source` (folder or zip), at most `limit` of them.

    `invert`: True inverts every image, False none, None detects dark ink per image.
    """
    arrays: list[np.ndarray] = []
    result = ImportResult(images=np.zeros((0, channels, size, size), np.uint8), files=[])
    for name, read in iter_sources(Path(source)):
        if on_file is not None:
            on_file()
        if read is None:
            result.skipped_non_images += 1
            continue
        try:
            data = read()  # a zip bomb or a damaged zip raises GanjiError: the whole import stops
        except TooLarge:
            result.skipped_too_large.append(name)
            continue
        except GanjiError:
            raise
        except Exception:  # noqa: BLE001 - unreadable (permissions, vanished, an encrypted zip entry)
            result.skipped_unreadable.append(name)
            continue
        try:
            chw = to_square(decode(data, channels, shrink_limit(size)), size)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            result.skipped_too_large.append(name)
            continue
        except Exception:  # noqa: BLE001 - a damaged file can make Pillow's decoders raise almost anything
            result.skipped_unreadable.append(name)
            continue
        if invert is True or (invert is None and ink_is_dark(chw)):
            chw = 255 - chw
            result.inverted += 1
        arrays.append(chw)
        result.files.append(name)
        if limit is not None and len(arrays) >= limit:
            break
    if not arrays:
        raise GanjiError(
            f"no usable images in {source} ({result.skipped_non_images} non-image files, "
            f"{len(result.skipped_unreadable)} unreadable, {len(result.skipped_too_large)} too large): nothing to import"
        )
    result.images = np.stack(arrays)
    return result


def count_files(source: Path) -> int | None:
    """How many files an import will look at (for the progress bar), if cheap to know."""
    source = Path(source)
    if source.is_dir():
        return len(_folder_files(source))
    try:
        with zipfile.ZipFile(source) as z:
            return sum(1 for i in z.infolist() if not i.is_dir())
    except (zipfile.BadZipFile, OSError):
        return None
