"""`ganji fid`: runs of every model, folders of images, the Inception loading path, and errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_kanji
from PIL import Image

from ganji.data.store import load_dataset
from ganji.errors import GanjiError
from ganji.train.start import train

FIELDS = ("model", "run", "n", "extractor", "fid", "kid", "kid_std", "precision", "recall", "novelty_copies", "seconds")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny runs of all three models on 16 px kanji."""
    home = tmp_path_factory.mktemp("home")
    make_kanji(home, name="kanji", size=16, limit=64)
    common = {"dataset": "kanji", "epochs": 1, "batch_size": 16, "sample_every": 0}
    train(home, "vae", {**common, "options": {"latent_dim": 16, "base_width": 16}}, run_name="r")
    train(home, "gan", {**common, "options": {"layers": (32, 16, 16, 8), "latent_dim": 16, "disc_ratio": 1}}, run_name="r")
    train(home, "ddpm", {**common, "options": {"base_width": 8, "timesteps": 20}}, run_name="r")
    return home


def ganji(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GANJI_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ganji", *args], env=env, capture_output=True, text=True, timeout=300)


def test_fid_all_json_has_every_model_and_finite_fields(trained: Path) -> None:
    proc = ganji(trained, "fid", "--all", "--json", "--n", "48", "-q")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    # The models, then the reference rows of real kanji (tests/test_references.py).
    assert [r["model"] for r in rows] == ["vae", "gan", "ddpm", "real, held out", "real, another font"]
    rows = rows[:3]
    for r in rows:
        assert all(k in r for k in FIELDS)
        assert r["n"] == 48 and r["extractor"] == "kanji" and r["run"] == "r"
        assert all(math.isfinite(r[k]) for k in FIELDS[4:])
    # Saved in the run folder too, and the reference features were cached once.
    saved = json.loads((trained / "runs" / "ddpm" / "r" / "fid.json").read_text())
    assert saved[-1]["fid"] == rows[2]["fid"]
    assert len(list((trained / "cache" / "metrics").glob("*.safetensors"))) == 1


def test_fid_table_and_same_seed_same_score(trained: Path) -> None:
    a = ganji(trained, "fid", "vae", "--n", "32", "-q")
    assert a.returncode == 0, a.stderr
    assert "FID" in a.stdout and "vae" in a.stdout
    one = json.loads(ganji(trained, "fid", "gan", "--n", "32", "--json", "-q").stdout)[0]
    two = json.loads(ganji(trained, "fid", "gan", "--n", "32", "--json", "-q").stdout)[0]
    assert one["fid"] == two["fid"] and one["kid"] == two["kid"]


def test_fid_images_scores_a_folder_and_flags_training_copies(trained: Path, tmp_path: Path) -> None:
    images = load_dataset(trained, "kanji").images[:40].numpy()
    folder = tmp_path / "copies"
    folder.mkdir()
    for i, img in enumerate(images):  # black ink on white, as other tools save samples
        Image.fromarray(255 - img[0]).save(folder / f"{i}.png")
    proc = ganji(trained, "fid", "--images", str(folder), "--n", "40", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)[0]
    assert row["n"] == 40 and row["details"]["inverted"] == 40
    assert row["novelty_copies"] == 1.0  # every image is a training image
    # Random noise is neither realistic nor a copy.
    noise = tmp_path / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(noise / f"{i}.png")
    noisy = json.loads(ganji(trained, "fid", "--images", str(noise), "--n", "40", "--json", "-q", "--no-invert").stdout)[0]
    assert noisy["novelty_copies"] == 0.0
    # n = 40 in 256-d features: both FIDs carry a large small-sample bias, so ask for a clear
    # ordering rather than a ratio the full-size validation shows.
    assert noisy["fid"] > 2 * row["fid"] and noisy["kid"] > row["kid"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "say what to measure"),
        (("vae", "--all"), "say what to measure"),
        (("vae", "--n", "5"), "--n must be at least 10"),
        (("vae", "--features", "clip"), "--features must be one of"),
        (("--all", "--run", "r"), "--run names one model"),
        (("--images", "/nonexistent/folder"), "does not exist"),
        (("ddpm", "--run", "nope"), "nope"),
        (("vae", "--features", "inception", "--inception-weights", "/nonexistent.pth"), "is not a file"),
    ],
)
def test_fid_errors_are_one_line(trained: Path, args: tuple[str, ...], message: str) -> None:
    proc = ganji(trained, "fid", *args)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_fid_all_with_no_runs_says_how_to_train(home: Path) -> None:
    proc = ganji(home, "fid", "--all")
    assert proc.returncode == 1 and "ganji train" in proc.stderr


# -- the Inception path ---------------------------------------------------------------------------


def test_inception_loads_a_pytorch_fid_style_state_dict(tmp_path: Path) -> None:
    from ganji.features.extractors import load_extractor
    from ganji.features.inception import FIDInception

    torch.manual_seed(0)
    reference = FIDInception().eval()
    # pytorch-fid's file: the torchvision module names at the top level, saved by torch.save.
    state = {k.removeprefix("net."): v for k, v in reference.state_dict().items()}
    path = tmp_path / "pt_inception.pth"
    torch.save(state, path)
    ex = load_extractor("inception", torch.device("cpu"), tmp_path, inception_weights=path)
    images = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    feats = ex.features(images)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    # The same numbers as the module it was saved from, fed the same prepared input.
    with torch.no_grad():
        expected = reference(ex.prepare(images)).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-5)


def test_inception_refuses_other_state_dicts_and_explains_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ganji.features import inception

    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(GanjiError, match="not an FID Inception-v3 state dict"):
        inception.load_fid_inception(wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a weights file")
    with pytest.raises(GanjiError, match="not a readable Inception weights file"):
        inception.load_fid_inception(garbage)

    def offline(*_a, **_k):
        raise OSError("Network is unreachable")

    monkeypatch.setattr("torch.hub.download_url_to_file", offline)
    with pytest.raises(GanjiError, match="--inception-weights PATH"):
        inception.fetch_weights(tmp_path / "cache")
    assert not (tmp_path / "cache" / "inception" / inception.WEIGHTS_FILE).exists()
