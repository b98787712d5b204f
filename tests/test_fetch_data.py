"""`ganji fetch-data`: the offline kanji set, folder/zip imports, torchvision conversions, errors."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_kanji
from PIL import Image

from ganji.data.charset import covered, font_codepoints, kanji_codepoints
from ganji.data.prepare import bundled_font, prepare_folder, prepare_kanji, prepare_torchvision
from ganji.data.store import dataset_path, load_dataset, tensor_sha256
from ganji.errors import GanjiError


def ganji(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GANJI_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "ganji", *args], env=env, capture_output=True, text=True, timeout=300)


def test_charset_counts() -> None:
    assert len(kanji_codepoints("jis0208")) == 6355
    assert len(kanji_codepoints("jis0213")) == 13027
    assert len(covered(kanji_codepoints("jis0213"), font_codepoints(bundled_font()))) == 10020
    assert ord("漢") in kanji_codepoints("jis0208") and ord("仝") not in kanji_codepoints("jis0208")


def test_a_glyph_the_font_lacks_is_excluded() -> None:
    available = font_codepoints(bundled_font())
    missing = next(cp for cp in kanji_codepoints("jis0213") if cp not in available)
    assert covered((ord("山"), missing, ord("川")), available) == [ord("山"), ord("川")]


def test_render_is_deterministic_centred_and_unclipped(tmp_path: Path) -> None:
    path_a = prepare_kanji(tmp_path / "a", "k", size=32, limit=300, progress=False)
    path_b = prepare_kanji(tmp_path / "b", "k", size=32, limit=300, progress=False)
    da, db = load_dataset(tmp_path / "a", "k"), load_dataset(tmp_path / "b", "k")
    assert tensor_sha256(da.images) == tensor_sha256(db.images)
    assert (path_a / "images.safetensors").read_bytes() == (path_b / "images.safetensors").read_bytes()
    imgs = da.images.float()
    assert len(da) == 300 and da.images.shape[1:] == (1, 32, 32)
    # Nothing touches the outermost ring (no clipping) ...
    ring = torch.cat([imgs[:, :, 0, :], imgs[:, :, -1, :], imgs[:, :, :, 0], imgs[:, :, :, -1]], dim=-1)
    assert ring.max() == 0
    # ... and on average the ink sits at the centre.
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    mass = imgs.sum(dim=(1, 2, 3))
    cy = ((imgs[:, 0] * ys).sum(dim=(1, 2)) / mass).mean()
    cx = ((imgs[:, 0] * xs).sum(dim=(1, 2)) / mass).mean()
    assert abs(cy - 15.5) < 1.5 and abs(cx - 15.5) < 1.5
    manifest = json.loads((path_a / "manifest.json").read_text())
    assert manifest["count"] == 300 and len(manifest["codepoints"]) == 300
    assert manifest["font"]["name"] == "IPAexGothic" and len(manifest["font"]["sha256"]) == 64
    assert (path_a / "preview.png").is_file()


def test_rerun_is_a_no_op_and_force_rebuilds(home: Path) -> None:
    make_kanji(home, "k", limit=20)
    folder = dataset_path(home, "k")
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    proc = ganji(home, "fetch-data", "--name", "k", "--size", "16", "--limit", "20")
    assert proc.returncode == 0 and "already prepared" in proc.stderr
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp
    proc = ganji(home, "fetch-data", "--name", "k", "--size", "16", "--limit", "30", "--force", "-q")
    assert proc.returncode == 0, proc.stderr
    assert load_dataset(home, "k").images.shape[0] == 30


@pytest.mark.parametrize("bad", ["missing", "not-a-font"])
def test_bad_font_is_a_clear_error_and_leaves_nothing(home: Path, tmp_path: Path, bad: str) -> None:
    make_kanji(home, "good", limit=10)
    good_before = (dataset_path(home, "good") / "images.safetensors").read_bytes()
    font = tmp_path / "font.ttf"
    if bad == "not-a-font":
        font.write_bytes(b"this is not a font" * 100)
    for name in ("new", "good"):
        args = ["fetch-data", "--name", name, "--font", str(font), "--size", "16"] + (["--force"] if name == "good" else [])
        proc = ganji(home, *args)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "font" in proc.stderr
    assert not dataset_path(home, "new").exists()
    assert (dataset_path(home, "good") / "images.safetensors").read_bytes() == good_before
    assert sorted(p.name for p in dataset_path(home, "good").parent.iterdir()) == ["good"]


def glyph_png(ink_dark: bool, size: int = 48, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.zeros((size, size), np.uint8)
    arr[12:36, 20:28] = 255
    arr[20:28, rng.integers(8, 16):40] = 255
    if ink_dark:
        arr = 255 - arr
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_import_folder(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "imgs"
    (src / "sub").mkdir(parents=True)
    (src / "a.png").write_bytes(glyph_png(False, seed=1))
    (src / "sub" / "b.png").write_bytes(glyph_png(True, seed=2))  # black on white: inverted
    (src / "notes.txt").write_text("not an image")
    (src / "broken.png").write_bytes(b"\x89PNG garbage")
    prepare_folder(home, src, "imp", size=32, progress=False)
    ds = load_dataset(home, "imp")
    assert ds.images.shape == (2, 1, 32, 32)
    m = ds.manifest
    assert m["files"] == ["a.png", "sub/b.png"]
    assert m["skipped_non_images"] == 1 and m["skipped_unreadable"] == ["broken.png"] and m["inverted"] == 1
    # Both images now have bright ink on a dark border.
    assert ds.images[:, :, 0, :].float().mean() < 10 and ds.images.float().mean() > 10


def test_import_zip_and_refusals(home: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("k/1.png", glyph_png(True))
        z.writestr("k/readme.md", "hello")
    prepare_folder(home, good, "zipped", size=16, progress=False)
    assert load_dataset(home, "zipped").images.shape == (1, 1, 16, 16)

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("ok.png", glyph_png(False))
        z.writestr("../escape.png", glyph_png(False))
    with pytest.raises(GanjiError, match="escape"):
        prepare_folder(home, evil, "evil", size=16, progress=False)
    assert not dataset_path(home, "evil").exists()

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("huge.png", b"\0" * (80 * 2**20))
    with pytest.raises(GanjiError, match="zip bomb"):
        prepare_folder(home, bomb, "bomb", size=16, progress=False)


def test_empty_input_is_a_clear_error(home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    proc = ganji(home, "fetch-data", "--from", str(empty), "--name", "e")
    assert proc.returncode != 0 and "no usable images" in proc.stderr and "Traceback" not in proc.stderr
    assert not dataset_path(home, "e").exists()


def _write_mnist_raw(root: Path, n: int = 5) -> np.ndarray:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = (np.random.default_rng(0).random((n, 28, 28)) * 255).astype(np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
    return images


def test_mnist_conversion_from_raw_files(home: Path) -> None:
    images = _write_mnist_raw(home / "cache" / "torchvision")
    prepare_torchvision(home, "mnist", size=28, progress=False, download=False)
    ds = load_dataset(home, "mnist")
    assert ds.images.shape == (5, 1, 28, 28)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    assert ds.labels.tolist() == [0, 1, 2, 3, 4]
    assert len(ds.manifest["classes"]) == 10
    prepare_torchvision(home, "mnist", name="mnist64", size=64, progress=False, download=False)
    assert load_dataset(home, "mnist64").images.shape == (5, 1, 64, 64)


def test_cifar10_conversion_from_raw_files(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    folder = home / "cache" / "torchvision" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        batch = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [i % 10, (i + 1) % 10]}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    (folder / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    # Our files are not the real archive's, so skip torchvision's md5 checks (the format is real).
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    prepare_torchvision(home, "cifar10", size=16, progress=False, download=False)
    ds = load_dataset(home, "cifar10")
    assert ds.images.shape == (10, 3, 16, 16) and ds.labels.tolist()[:2] == [1, 2]
    assert ds.manifest["classes"][0] == "c0"


def test_no_network_is_a_one_line_error(home: Path) -> None:
    with pytest.raises(GanjiError, match="could not download"):
        prepare_torchvision(home, "mnist", progress=False, download=False)


def test_damaged_dataset_is_caught(home: Path) -> None:
    make_kanji(home, "k", limit=10)
    manifest = dataset_path(home, "k") / "manifest.json"
    data = json.loads(manifest.read_text())
    data["images_sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    with pytest.raises(GanjiError, match="sha256"):
        load_dataset(home, "k")


def test_help_shows_every_option_with_defaults(home: Path) -> None:
    proc = ganji(home, "fetch-data", "--help")
    assert proc.returncode == 0
    for option in ("--from", "--name", "--size", "--limit", "--charset", "--font", "--channels", "--invert", "--force", "--home"):
        assert option in proc.stdout
    assert "default: 64" in proc.stdout and "jis0213" in proc.stdout
    top = ganji(home, "--help")
    assert top.returncode == 0 and "fetch-data" in top.stdout and "train" in top.stdout
