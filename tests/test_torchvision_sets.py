"""`ganji fetch-data mnist|cifar10`: conversion of torchvision's raw files, written here, offline."""

from __future__ import annotations

import pickle
import struct
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


def write_cifar_batches(root: Path, per_batch: int = 2) -> np.ndarray:
    """The python pickle batches torchvision's CIFAR10 reads from root/cifar-10-batches-py."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (5 * per_batch, 3072), dtype=np.uint8)
    for i in range(5):
        rows = data[i * per_batch : (i + 1) * per_batch]
        labels = [(i * per_batch + j) % 10 for j in range(per_batch)]
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps({"data": rows, "labels": labels}))
    (folder / "test_batch").write_bytes(pickle.dumps({"data": data[:1], "labels": [0]}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))
    return data


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


def test_cifar10_from_pickled_batches(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_cifar_batches(home / "cache" / "torchvision")
    # These are not the real archive's files, so their md5 sums differ: skip torchvision's checks.
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    build_torchvision(home, "cifar10", size=32, progress=False)
    ds = load_dataset(home, "cifar10")
    assert ds.images.shape == (10, 3, 32, 32)
    assert torch.equal(ds.images.reshape(10, -1), torch.from_numpy(data))  # CHW order kept
    assert ds.labels.tolist() == list(range(10))
    assert ds.manifest["classes"] == [f"class{i}" for i in range(10)]
    build_torchvision(home, "cifar10", name="c16", size=16, progress=False)
    assert load_dataset(home, "c16").images.shape == (10, 3, 16, 16)


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
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", _offline)
    with pytest.raises(GanjiError, match=r"could not download mnist .*train-images-idx3-ubyte"):
        build_torchvision(home, "mnist", progress=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch-data", "cifar10", "--home", str(home), "-q"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: could not download cifar10 (cifar-10-python.tar.gz)") and "\n" not in err
    assert "Traceback" not in err
    assert not dataset_path(home, "mnist").exists() and not dataset_path(home, "cifar10").exists()
