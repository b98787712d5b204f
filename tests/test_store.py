"""The dataset store: a tensor that no longer matches its manifest is caught at load time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_kanji

from ganji.data.store import dataset_path, load_dataset
from ganji.errors import GanjiError


def test_damaged_dataset_is_caught(home: Path) -> None:
    make_kanji(home, "k", limit=10)
    manifest = dataset_path(home, "k") / "manifest.json"
    data = json.loads(manifest.read_text())
    data["images_sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    with pytest.raises(GanjiError, match="sha256"):
        load_dataset(home, "k")


def test_unreadable_tensor_file_is_caught(home: Path) -> None:
    make_kanji(home, "k", limit=10)
    (dataset_path(home, "k") / "images.safetensors").write_bytes(b"garbage")
    with pytest.raises(GanjiError, match="cannot read"):
        load_dataset(home, "k")
