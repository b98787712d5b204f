"""`ganji fetch-data mnist|cifar10`: conversion of the published raw files (written here, offline)."""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision

from ganji.cli import main
from ganji.data import torchvision_sets
from ganji.data.prepare import build_torchvision
from ganji.data.store import dataset_path, load_dataset
from ganji.errors import GanjiError


def write_mnist_raw(root: Path, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """The four idx files torchvision's MNIST looks for in root/MNIST/raw (present: no download)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) * 3 % 10).astype(np.uint8)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
    return images, labels


def write_cifar_archive(root: Path, per_batch: int = 2) -> np.ndarray:
    """A cifar-10-binary.tar.gz laid out as the real one: five training batches of 3,073-byte records,
    a test batch and the class names (rows of the returned array: the CHW pixels of each image)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (5 * per_batch, 3072), dtype=np.uint8)
    labels = (np.arange(5 * per_batch) % 10).astype(np.uint8)
    members = {f"cifar-10-batches-bin/data_batch_{i + 1}.bin": np.concatenate(
        [labels[i * per_batch : (i + 1) * per_batch, None], data[i * per_batch : (i + 1) * per_batch]], axis=1).tobytes()
        for i in range(5)}
    members["cifar-10-batches-bin/test_batch.bin"] = bytes(3073)
    members["cifar-10-batches-bin/batches.meta.txt"] = "".join(f"class{i}\n" for i in range(10)).encode() + b"\n"
    with tarfile.open(root / "cifar-10-binary.tar.gz", "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return data


def fake_md5(monkeypatch: pytest.MonkeyPatch, archive: Path) -> None:
    """Let the test's archive pass as the published one."""
    monkeypatch.setattr(torchvision_sets, "CIFAR_MD5", hashlib.md5(archive.read_bytes()).hexdigest())


def test_mnist_from_raw_files(home: Path) -> None:
    images, labels = write_mnist_raw(home / "cache" / "torchvision")
    # download=True, as the CLI calls it: torchvision finds the files and fetches nothing.
    build_torchvision(home, "mnist", size=28, progress=False)
    ds = load_dataset(home, "mnist")
    assert ds.images.shape == (6, 1, 28, 28)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))  # at 28 px: the very same pixels
    assert ds.labels.tolist() == labels.tolist()
    assert ds.manifest["source"] == "mnist" and ds.manifest["split"] == "train"
    assert ds.manifest["classes"][3] == "3 - three"
    build_torchvision(home, "mnist", name="mnist64", size=64, limit=4, progress=False)
    big = load_dataset(home, "mnist64")
    assert big.images.shape == (4, 1, 64, 64) and big.labels.tolist() == labels[:4].tolist()


def test_cifar10_from_the_binary_archive_without_unpickling(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = home / "cache" / "torchvision"
    data = write_cifar_archive(root)
    fake_md5(monkeypatch, root / "cifar-10-binary.tar.gz")
    build_torchvision(home, "cifar10", size=32, progress=False)
    ds = load_dataset(home, "cifar10")
    assert ds.images.shape == (10, 3, 32, 32)
    assert torch.equal(ds.images.reshape(10, -1), torch.from_numpy(data))  # CHW order kept
    assert ds.labels.tolist() == list(range(10))
    assert ds.manifest["classes"] == [f"class{i}" for i in range(10)]
    build_torchvision(home, "cifar10", name="c16", size=16, progress=False)
    assert load_dataset(home, "c16").images.shape == (10, 3, 16, 16)
    assert not (root / "cifar-10-batches-bin").exists()  # read from the archive, nothing extracted


def test_a_cifar_archive_that_is_not_the_published_one(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = home / "cache" / "torchvision"
    write_cifar_archive(root)
    with pytest.raises(GanjiError, match="does not match CIFAR-10's published md5"):
        build_torchvision(home, "cifar10", size=32, progress=False)
    # Right checksum, wrong contents (a member missing): named, and nothing is written.
    archive = root / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.size = 3073
        tar.addfile(info, io.BytesIO(bytes(3073)))
    fake_md5(monkeypatch, archive)
    with pytest.raises(GanjiError, match="data_batch_2.bin"):
        build_torchvision(home, "cifar10", size=32, progress=False)
    assert not dataset_path(home, "cifar10").exists()


def test_chunked_resize_matches_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fake:
        data = np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8)
        targets = list(range(7))
        classes = [str(i) for i in range(10)]

    whole, labels, _ = torchvision_sets.convert("mnist", Fake(), 40)
    monkeypatch.setattr(torchvision_sets, "CHUNK", 3)
    seen: list[int] = []
    chunked, _, _ = torchvision_sets.convert("mnist", Fake(), 40, on_chunk=seen.append)
    assert torch.equal(whole, chunked) and seen == [3, 3, 1] and labels.tolist() == list(range(7))


def _offline(*args, **kwargs):
    raise URLError("[Errno -3] Temporary failure in name resolution")


def test_no_network_is_a_one_line_error(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", _offline)
    monkeypatch.setattr(torchvision.datasets.utils, "download_url", _offline)
    with pytest.raises(GanjiError, match=r"could not download mnist .*train-images-idx3-ubyte"):
        build_torchvision(home, "mnist", progress=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch-data", "cifar10", "--home", str(home), "-q"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: could not download cifar10 (cifar-10-binary.tar.gz)") and "\n" not in err
    assert "Traceback" not in err
    assert not dataset_path(home, "mnist").exists() and not dataset_path(home, "cifar10").exists()
