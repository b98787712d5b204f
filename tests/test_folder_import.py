"""`ganji fetch-data --from PATH`: folders and zips of images, odd formats, polarity, refusals."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganji.data.folder_import import decode, import_images, safe_member
from ganji.data.prepare import build_folder
from ganji.data.store import dataset_path, load_dataset
from ganji.errors import GanjiError


def glyph(ink_dark: bool = False, size: int = 48, seed: int = 0) -> np.ndarray:
    """A cross-like glyph, bright ink on black (or dark ink on white)."""
    rng = np.random.default_rng(seed)
    arr = np.zeros((size, size), np.uint8)
    arr[size // 4 : 3 * size // 4, size // 2 - 4 : size // 2 + 4] = 255
    arr[size // 2 - 4 : size // 2 + 4, int(rng.integers(6, 14)) : size - 8] = 255
    return 255 - arr if ink_dark else arr


def encode(img: Image.Image | np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def write_mixed_folder(src: Path) -> None:
    (src / "sub").mkdir(parents=True)
    (src / "a.png").write_bytes(encode(glyph(seed=1)))
    (src / "sub" / "b.jpg").write_bytes(encode(glyph(ink_dark=True, seed=2), "JPEG", quality=95))  # black on white
    (src / "c.bmp").write_bytes(encode(glyph(seed=3), "BMP"))
    (src / "notes.txt").write_text("not an image")
    (src / "empty.png").write_bytes(b"")
    (src / "garbage.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPgarbage")
    (src / "truncated.png").write_bytes(encode(glyph(seed=4))[:60])


def test_import_a_folder(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "imgs"
    write_mixed_folder(src)
    build_folder(home, src, "imp", size=32, progress=False)
    ds = load_dataset(home, "imp")
    m = ds.manifest
    assert ds.images.shape == (3, 1, 32, 32)
    assert m["files"] == ["a.png", "c.bmp", "sub/b.jpg"]  # sorted by path
    assert m["skipped_non_images"] == 1
    assert sorted(m["skipped_unreadable"]) == ["empty.png", "garbage.webp", "truncated.png"]
    assert m["inverted"] == 1 and m["from"] == str(src.resolve()) and m["source"] == "folder"
    # All three now have bright ink on a dark border.
    border = torch.cat([ds.images[:, 0, 0, :], ds.images[:, 0, -1, :]], dim=-1).float()
    assert border.mean() < 10 and ds.images.float().mean(dim=(1, 2, 3)).min() > 20
    assert (dataset_path(home, "imp") / "preview.png").is_file()


def test_a_zip_imports_like_its_folder_and_the_name_comes_from_the_stem(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "imgs"
    write_mixed_folder(src)
    archive = tmp_path / "kaggle-set.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path in sorted(src.rglob("*"), reverse=True):  # stored out of order on purpose
            if path.is_file():
                z.write(path, f"kanji/{path.relative_to(src).as_posix()}")
        z.writestr("__MACOSX/kanji/._a.png", b"\x00\x05\x16\x07 resource fork")
    build_folder(home, src, "from-folder", size=16, progress=False)
    build_folder(home, archive, size=16, progress=False)
    a, b = load_dataset(home, "from-folder"), load_dataset(home, "kaggle-set")
    assert torch.equal(a.images, b.images)
    assert b.manifest["files"] == [f"kanji/{f}" for f in a.manifest["files"]]
    assert b.manifest["skipped_non_images"] == 2  # notes.txt and the macOS resource fork


@pytest.mark.parametrize("member", ["../escape.png", "/etc/abs.png", "a/../../up.png", "C:/windows.png", "..\\win.png"])
def test_a_zip_entry_escaping_the_folder_is_refused(home: Path, tmp_path: Path, member: str) -> None:
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("ok.png", encode(glyph()))
        z.writestr(zipfile.ZipInfo(member), encode(glyph()))
    with pytest.raises(GanjiError, match="escape"):
        build_folder(home, evil, "evil", size=16, progress=False)
    assert not dataset_path(home, "evil").exists()
    assert not (tmp_path / "escape.png").exists() and not (home / "escape.png").exists()


def test_safe_member_names() -> None:
    assert safe_member("kanji/sub/a.png") and safe_member("a..b.png")
    assert not safe_member("../a.png") and not safe_member("/a.png") and not safe_member("x/../../a.png")


@pytest.mark.parametrize("megabytes", [2, 65])
def test_a_zip_bomb_is_refused(home: Path, tmp_path: Path, megabytes: int) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("ok.png", encode(glyph()))
        z.writestr("huge.bmp", b"\0" * (megabytes * 2**20))
    with pytest.raises(GanjiError, match="zip bomb"):
        build_folder(home, bomb, "bomb", size=16, progress=False)
    assert not dataset_path(home, "bomb").exists()


def test_nothing_usable_is_a_clear_error(home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GanjiError, match="no usable images"):
        build_folder(home, empty, "e", progress=False)
    (empty / "a.txt").write_text("x")
    (empty / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(GanjiError, match=r"no usable images .*1 non-image files, 1 unreadable"):
        build_folder(home, empty, "e", progress=False)
    empty_zip = tmp_path / "none.zip"
    zipfile.ZipFile(empty_zip, "w").close()
    with pytest.raises(GanjiError, match="no usable images"):
        build_folder(home, empty_zip, progress=False)
    not_zip = tmp_path / "photo.png"
    not_zip.write_bytes(encode(glyph()))
    with pytest.raises(GanjiError, match="neither a folder nor a readable zip"):
        build_folder(home, not_zip, progress=False)
    with pytest.raises(GanjiError, match="does not exist"):
        build_folder(home, tmp_path / "missing", progress=False)
    assert list(home.glob("datasets/*")) == []  # no dataset, no leftover build folder


def test_invert_flags(tmp_path: Path) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    (src / "bright.png").write_bytes(encode(glyph(seed=1)))
    (src / "dark.png").write_bytes(encode(glyph(ink_dark=True, seed=2)))
    auto = import_images(src, 16)
    forced = import_images(src, 16, invert=True)
    never = import_images(src, 16, invert=False)
    assert auto.inverted == 1 and forced.inverted == 2 and never.inverted == 0
    assert np.array_equal(forced.images[0], 255 - never.images[0])
    assert np.array_equal(auto.images[1], forced.images[1])  # "dark.png" sorts second


def test_colour_is_kept_with_three_channels(tmp_path: Path) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[10:30, 10:30] = (250, 20, 20)  # a red square on black
    (src / "red.png").write_bytes(encode(rgb))
    colour = import_images(src, 20, channels=3)
    assert colour.images.shape == (1, 3, 20, 20)
    centre = colour.images[0, :, 10, 10]
    assert centre[0] > 200 and centre[1] < 60 and centre[2] < 60
    assert import_images(src, 20, channels=1).images.shape == (1, 1, 20, 20)


def test_odd_formats_convert_correctly() -> None:
    # 16-bit grayscale: scaled down to 8 bits, not clipped at 255.
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    gray16 = np.asarray(decode(encode(ramp), 1))
    assert gray16.min() == 0 and gray16.max() == 255 and 100 < gray16.mean() < 155
    # CMYK JPEG: full black ink is dark.
    cmyk = Image.new("CMYK", (16, 16), (0, 0, 0, 255))
    assert np.asarray(decode(encode(cmyk, "JPEG"), 1)).max() < 30
    # Palette with a transparent background: the dark glyph stays visible.
    pal = Image.fromarray(glyph(ink_dark=True)).convert("P")
    bg_index = pal.getpixel((0, 0))
    seen = np.asarray(decode(encode(pal, transparency=bg_index), 1))
    assert seen[0, 0] > 200 and seen.min() < 50
    # Bright ink on a transparent background is put on dark paper, not erased by white.
    la = np.zeros((48, 48, 2), np.uint8)
    la[..., 0] = 255
    la[..., 1] = glyph()
    seen = np.asarray(decode(encode(Image.fromarray(la, "LA")), 1))
    assert seen[0, 0] < 50 and seen.max() > 200


def test_animated_gif_takes_the_first_frame(tmp_path: Path) -> None:
    first = Image.fromarray(glyph(seed=1))
    second = Image.fromarray(np.full((48, 48), 255, np.uint8))
    src = tmp_path / "anim"
    src.mkdir()
    buf = io.BytesIO()
    first.save(buf, format="GIF", save_all=True, append_images=[second], duration=100, loop=0)
    (src / "anim.gif").write_bytes(buf.getvalue())
    (src / "still.png").write_bytes(encode(first))
    result = import_images(src, 24, invert=False)
    assert np.array_equal(result.images[0], result.images[1])


def test_decompression_bombs_are_skipped_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    (src / "a_small.png").write_bytes(encode(glyph(size=24)))  # 576 pixels
    (src / "b_warns.png").write_bytes(encode(glyph(size=40)))  # 1,600: past the limit, Pillow warns
    (src / "c_errors.png").write_bytes(encode(glyph(size=64)))  # 4,096: past twice the limit, Pillow errors
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    result = import_images(src, 16)
    assert result.files == ["a_small.png"]
    assert result.skipped_too_large == ["b_warns.png", "c_errors.png"]


def test_limit_stops_early(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(5):
        (src / f"{i}.png").write_bytes(encode(glyph(seed=i)))
    build_folder(home, src, "three", size=16, limit=3, progress=False)
    assert load_dataset(home, "three").manifest["files"] == ["0.png", "1.png", "2.png"]
