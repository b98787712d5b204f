"""`ganji sample`: grids, files, determinism, DDIM, interpolation and errors (CPU, 16 px runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_kanji, sample_images
from PIL import Image

from ganji.errors import GanjiError
from ganji.sampling import load_model, slerp
from ganji.train.start import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained run of each model, shared by the tests of this file."""
    home = tmp_path_factory.mktemp("home")
    make_kanji(home, name="kanji16", size=16, limit=64)
    common = {"dataset": "kanji16", "epochs": 2, "batch_size": 16, "sample_every": 0}
    train(home, "vae", {**common, "options": {"latent_dim": 16, "base_width": 16}}, run_name="r")
    train(home, "gan", {**common, "options": {"layers": (32, 16, 16, 8), "latent_dim": 16, "disc_ratio": 1}}, run_name="r")
    train(home, "ddpm", {**common, "options": {"base_width": 8, "timesteps": 40}}, run_name="r")
    return home


def ganji(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GANJI_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "ganji", *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("n", "cols", "rows"), [(1, 1, 1), (10, 4, 3), (64, 8, 8)])
def test_grid_size(trained: Path, tmp_path: Path, n: int, cols: int, rows: int) -> None:
    out = tmp_path / "grid.png"
    proc = ganji(trained, "sample", "vae", "--n", str(n), "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    pad, size = 2, 16
    assert Image.open(out).size == (cols * (size + pad) + pad, rows * (size + pad) + pad)


@pytest.mark.parametrize("model", ["vae", "gan", "ddpm"])
def test_same_seed_same_images_other_seed_differs(trained: Path, model: str) -> None:
    loaded = load_model(trained, model)
    kw = {"sampler": "ddpm"} if model == "ddpm" else {}
    a = sample_images(loaded, 6, seed=1, **kw)
    b = sample_images(loaded, 6, seed=1, **kw)
    c = sample_images(loaded, 6, seed=2, **kw)
    assert a.dtype == torch.uint8 and a.shape == (6, 1, 16, 16)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_same_seed_same_png_bytes(trained: Path, tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        assert ganji(trained, "sample", "gan", "--n", "9", "--seed", "4", "-o", str(tmp_path / name), "-q").returncode == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_ddim_runs_with_few_steps_and_differs_from_ddpm(trained: Path) -> None:
    loaded = load_model(trained, "ddpm")
    ddim = sample_images(loaded, 4, seed=0, sampler="ddim", steps=5)
    ddpm = sample_images(loaded, 4, seed=0, sampler="ddpm")
    assert ddim.shape == ddpm.shape
    assert not torch.equal(ddim, ddpm)
    # eta = 0: deterministic whatever the seed of the per-step noise.
    assert torch.equal(ddim, sample_images(loaded, 4, seed=0, sampler="ddim", steps=5))


def test_out_dir_writes_one_png_per_image(trained: Path, tmp_path: Path) -> None:
    folder = tmp_path / "new" / "folder"
    proc = ganji(trained, "sample", "gan", "--n", "5", "--out-dir", str(folder), "-q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:05d}.png" for i in range(5)]


def test_slerp_endpoints_and_norm() -> None:
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    walk = slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(walk[:, 0], a, atol=1e-5) and torch.allclose(walk[:, -1], b, atol=1e-5)


@pytest.mark.parametrize("model", ["vae", "gan", "ddpm"])
def test_interpolation_rows_change_smoothly(trained: Path, model: str) -> None:
    loaded = load_model(trained, model)
    k = 8
    few_steps = {"sampler": loaded.spec.sampling.fast, "steps": 10} if loaded.spec.sampling.iterative else {}
    images = sample_images(loaded, 3 * k, seed=0, interpolate=k, **few_steps).float()
    rows = images.reshape(3, k, -1)
    neighbour = (rows[:, 1:] - rows[:, :-1]).abs().mean(dim=2).mean()
    endpoints = (rows[:, -1] - rows[:, 0]).abs().mean()
    assert neighbour < endpoints


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["sample", "vae", "--n", "0"], "--n must be at least 1"),
        (["sample", "gan", "--run", "nope"], "no gan run named"),
        (["sample", "ddpm", "--sampler", "ddim", "--steps", "0"], "--steps"),
        (["sample", "vae", "--checkpoint", "/nonexistent/x.safetensors"], "no checkpoint"),
        (["sample", "vae", "--interpolate", "1"], "--interpolate"),
        (["sample", "ddpm", "--interpolate", "4", "--steps", "5000"], "--steps"),
    ],
)
def test_errors_are_one_line(trained: Path, tmp_path: Path, args: list[str], text: str) -> None:
    proc = ganji(trained, *args, "-o", str(tmp_path / "x.png"))
    assert proc.returncode != 0
    assert text in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_no_run_suggests_the_train_command(tmp_path: Path) -> None:
    proc = ganji(tmp_path / "empty", "sample", "ddpm", "-o", str(tmp_path / "x.png"))
    assert proc.returncode != 0 and "ganji train ddpm" in proc.stderr


def test_garbage_checkpoint_is_a_clear_error(trained: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(GanjiError, match="unreadable"):
        load_model(trained, "vae", checkpoint=bad)
    with pytest.raises(GanjiError, match="not a vae one"):
        load_model(trained, "vae", checkpoint=trained / "runs" / "gan" / "r" / "checkpoint.safetensors")


def test_unwritable_output_is_a_clear_error(trained: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = ganji(trained, "sample", "vae", "-o", str(blocker / "grid.png"), "-q")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
