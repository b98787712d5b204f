"""The training engine: exact resume, learning, stopping rules, and its errors (CPU, 16 px)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import make_kanji, sample_images
from safetensors.torch import load_file

from ganji.errors import GanjiError
from ganji.runs import find_run
from ganji.train.start import train

# Tiny versions of the three models, so that every test runs in seconds on 2 CPU cores.
TINY = {
    "vae": {"batch_size": 16, "options": {"latent_dim": 16, "base_width": 16}},
    "gan": {"batch_size": 16, "options": {"layers": (32, 16, 16, 8), "latent_dim": 16, "disc_ratio": 2}},
    "ddpm": {"batch_size": 16, "options": {"base_width": 8, "timesteps": 100}},
}


def tiny(model: str, **extra) -> dict:
    given = {"dataset": "kanji16", "epochs": 2, "log_every": 1, "sample_every": 1, **TINY[model]}
    given["options"] = {**TINY[model]["options"], **extra.pop("options", {})}
    given.update(extra)
    return given


@pytest.fixture
def data(home: Path) -> Path:
    make_kanji(home, name="kanji16", size=16, limit=64)
    return home


def weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(path)).items() if k.startswith(("net.", "ema.", "opt."))}


@pytest.mark.parametrize("model", ["vae", "gan", "ddpm"])
def test_resume_is_bit_identical(data: Path, model: str) -> None:
    straight = train(data, model, tiny(model, max_steps=4), run_name="straight")
    assert straight.step == 4
    first = train(data, model, tiny(model, max_steps=2), run_name="split")
    assert first.step == 2 and first.reason == "max-steps"
    second = train(data, model, {"max_steps": 4}, run_name="split", resume=True)
    assert second.step == 4
    a = weights(straight.run.checkpoint_path)
    b = weights(second.run.checkpoint_path)
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The metrics log of the resumed run has one record per step, none repeated.
    steps = [json.loads(line)["step"] for line in second.run.metrics_path.read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_run_folder_has_config_checkpoint_log_and_grids(data: Path) -> None:
    result = train(data, "vae", tiny("vae"), run_name="r")
    run = result.run
    config = json.loads(run.config_path.read_text())
    assert config["config"]["model"] == "vae" and config["parameters"]["vae"] > 0
    assert run.checkpoint_path.is_file()
    records = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert {"step", "epoch", "loss", "lr", "img_per_s", "train_s", "peak_mem_mb"} <= set(records[-1])
    assert result.reason == "finished" and result.epoch == 2
    # One grid per epoch (64 images / batch 16 = 4 steps per epoch).
    assert sorted(p.name for p in run.samples_dir.iterdir()) == ["step-00000004.png", "step-00000008.png"]


def test_progress_grids_use_fixed_noise(data: Path) -> None:
    from PIL import Image

    a = train(data, "gan", tiny("gan", seed=3, max_steps=4, epochs=1), run_name="a")
    b = train(data, "gan", tiny("gan", seed=3, max_steps=4, epochs=1), run_name="b")
    assert Image.open(a.grids[-1]).tobytes() == Image.open(b.grids[-1]).tobytes()


def test_ddpm_learns(data: Path) -> None:
    given = tiny("ddpm", epochs=100, max_steps=240, log_every=20, sample_every=0, lr=2e-3)
    given["options"]["base_width"] = 16
    result = train(data, "ddpm", given, run_name="learn")
    losses = [json.loads(line)["loss"] for line in result.run.metrics_path.read_text().splitlines()]
    assert losses[-1] < 0.5 * losses[0], losses


def test_vae_learns(data: Path) -> None:
    result = train(data, "vae", tiny("vae", epochs=30, log_every=4, sample_every=0), run_name="learn")
    losses = [json.loads(line)["loss"] for line in result.run.metrics_path.read_text().splitlines()]
    assert losses[-1] < 0.7 * losses[0], losses


def test_gan_samples_vary_with_the_latent(data: Path) -> None:
    from ganji.sampling import load_model

    train(data, "gan", tiny("gan", epochs=5, sample_every=0), run_name="g")
    loaded = load_model(data, "gan", "g")
    images = sample_images(loaded, 16, seed=0).float()
    assert images.std(dim=0).mean() > 1.0  # not one image repeated
    assert images.std() > 5.0  # not a constant


def test_time_budget_stops_with_a_checkpoint(data: Path) -> None:
    result = train(data, "vae", tiny("vae", epochs=1000, time_budget=0.0005, sample_every=0), run_name="t")
    assert result.reason == "time-budget"
    assert result.run.checkpoint_path.is_file()


def test_non_finite_loss_keeps_the_last_good_checkpoint(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train(data, "vae", tiny("vae", epochs=3, max_steps=4, sample_every=0), run_name="nan")
    run = find_run(data, "vae", "nan")
    before = run.checkpoint_path.read_bytes()
    from ganji.recipes.vae import VAERecipe

    def broken(self, x):
        return {"loss": torch.tensor(float("nan"))}

    monkeypatch.setattr(VAERecipe, "train_step", broken)
    with pytest.raises(GanjiError, match="not finite"):
        train(data, "vae", {"max_steps": 8}, run_name="nan", resume=True)
    assert run.checkpoint_path.read_bytes() == before


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"batch_size": 1000}, "larger than the dataset"),
        ({"device": "cuda"}, "no CUDA"),
        ({"options": {"loss": "nope"}}, "--loss"),
        ({"dataset": "missing"}, "fetch-data"),
    ],
)
def test_bad_options_are_clear_errors(data: Path, given: dict, message: str) -> None:
    if given.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    model = "gan" if "options" in given else "vae"
    opts = tiny(model)
    opts["options"] = {**opts["options"], **given.pop("options", {})}
    opts.update(given)
    with pytest.raises(GanjiError, match=message):
        train(data, model, opts, run_name="bad")


def test_resume_errors(data: Path) -> None:
    with pytest.raises(GanjiError, match="no trained vae run"):
        train(data, "vae", {}, resume=True)
    train(data, "vae", tiny("vae", max_steps=2), run_name="r")
    with pytest.raises(GanjiError, match="cannot change"):
        train(data, "vae", {"lr": 0.5}, run_name="r", resume=True)
    with pytest.raises(GanjiError, match="already at step"):
        train(data, "vae", {}, run_name="r", resume=True)
    with pytest.raises(GanjiError, match="already exists"):
        train(data, "vae", tiny("vae"), run_name="r")
    from ganji.data.prepare import build_kanji

    build_kanji(data, name="kanji16", size=16, limit=80, force=True, progress=False)
    with pytest.raises(GanjiError, match="has changed"):
        train(data, "vae", {"max_steps": 4}, run_name="r", resume=True)


def _ganji(home: Path, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "GANJI_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ganji", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_cli_train_and_errors(data: Path) -> None:
    proc = _ganji(data, "train", "ddpm", "--dataset", "kanji16", "--epochs", "1", "--max-steps", "3", "--batch-size", "8",
                  "--base-width", "8", "--timesteps", "50", "--run", "cli", "-q")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "cli" in out and "steps" in out
    assert "--resume" in err  # it says how to continue a run stopped by --max-steps
    run = find_run(data, "ddpm", "cli")
    assert run.checkpoint_path.is_file() and any(run.samples_dir.iterdir())
    for args, text in [
        (["train", "vae", "--loss", "bce"], "does not apply to the vae"),
        (["train", "gan", "--epochs", "0"], "--epochs"),
        (["train", "ddpm", "--run", "nope", "--resume"], "no ddpm run named"),
        (["train", "gan", "--layers", "a,b"], "--layers"),
    ]:
        proc = _ganji(data, *args)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0
        assert text in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(data: Path) -> None:
    proc = _ganji(data, "train", "vae", "--dataset", "kanji16", "--epochs", "100000", "--batch-size", "16",
                  "--latent-dim", "8", "--base-width", "8", "--sample-every", "0", "--log-every", "1", "--run", "int", "-q")
    metrics = data / "runs" / "vae" / "int" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.stat().st_size > 0):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    assert (data / "runs" / "vae" / "int" / "checkpoint.safetensors").is_file()


@pytest.mark.parametrize("model", ["vae", "gan", "ddpm"])
def test_colour_images_train_and_sample(home: Path, model: str) -> None:
    """Three channels (CIFAR-10) work end to end, not only in the networks."""
    from ganji.data.store import dataset_path, save_dataset
    from ganji.sampling import load_model

    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    save_dataset(dataset_path(home, "rgb16"), images, {"source": "test"})
    result = train(home, model, tiny(model, dataset="rgb16", max_steps=2, sample_every=1), run_name="rgb")
    assert result.step == 2 and result.grids
    out = sample_images(load_model(home, model, "rgb"), 4, sampler="ddim", steps=3, strict=False)
    assert out.shape == (4, 3, 16, 16)


def test_help_shows_the_defaults(home: Path) -> None:
    """Defaults are written as "[default: ...]", which rich would eat as markup unless escaped."""
    for args, wanted in [(["train", "--help"], ["default: 100", "default: vae 128, gan 128, ddpm 32", "default: 512,256,128,64"]),
                         (["sample", "--help"], ["default: 50", "default: 64"]),
                         (["bench", "train", "--help"], ["default: the paper's"])]:
        env = {**os.environ, "GANJI_HOME": str(home), "COLUMNS": "200"}
        proc = subprocess.run([sys.executable, "-m", "ganji", *args], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0
        for text in wanted:
            assert text in proc.stdout, (args, text)


def test_init_from_starts_with_the_source_weights_and_a_fresh_schedule(data: Path) -> None:
    source = train(data, "ddpm", tiny("ddpm", max_steps=3), run_name="source")
    fresh = train(data, "ddpm", tiny("ddpm", max_steps=1, lr=1e-12), run_name="fresh")
    warm = train(data, "ddpm", tiny("ddpm", max_steps=1, lr=1e-12, init_from="source"), run_name="warm")
    a, f, w = (weights(r.run.checkpoint_path) for r in (source, fresh, warm))
    nets = [k for k in a if k.startswith("net.")]
    assert nets
    # One step at a learning rate of 1e-12 barely moves the weights: the warm run holds the
    # source's, the fresh run its own initialisation.
    assert all(torch.allclose(w[k], a[k], atol=1e-6) for k in nets)
    assert not all(torch.allclose(f[k], a[k], atol=1e-6) for k in nets)
    config = json.loads(warm.run.config_path.read_text())
    assert config["initialised_from"] == {"run": "source", "step": 3}
    assert config["config"]["init_from"] == "source"
    # The schedule starts afresh: the warm run plans its own steps from step 0.
    assert warm.step == 1 and "initialised_from" not in json.loads(fresh.run.config_path.read_text())


def test_init_from_resumes_exactly_without_loading_the_source_again(data: Path) -> None:
    train(data, "ddpm", tiny("ddpm", max_steps=2), run_name="source")
    straight = train(data, "ddpm", tiny("ddpm", max_steps=4, init_from="source"), run_name="straight")
    train(data, "ddpm", tiny("ddpm", max_steps=2, init_from="source"), run_name="split")
    # The source moves on before the split run resumes: a resume must not read it again.
    train(data, "ddpm", {"max_steps": 4}, run_name="source", resume=True)
    second = train(data, "ddpm", {"max_steps": 4}, run_name="split", resume=True)
    a, b = weights(straight.run.checkpoint_path), weights(second.run.checkpoint_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_init_from_errors(data: Path) -> None:
    with pytest.raises(GanjiError, match="no ddpm run named 'missing'"):
        train(data, "ddpm", tiny("ddpm", max_steps=1, init_from="missing"), run_name="x")
    train(data, "vae", tiny("vae", max_steps=1), run_name="v")
    with pytest.raises(GanjiError, match="no ddpm run named 'v'"):
        train(data, "ddpm", tiny("ddpm", max_steps=1, init_from="v"), run_name="x")
    train(data, "ddpm", tiny("ddpm", max_steps=1), run_name="narrow")
    with pytest.raises(GanjiError, match=r"do not fit this run's networks \(they differ in --base-width\)"):
        train(data, "ddpm", tiny("ddpm", max_steps=1, init_from="narrow", options={"base_width": 16}), run_name="wide")
    assert not (data / "runs" / "ddpm" / "wide").exists()  # a failed new run leaves no folder
    with pytest.raises(GanjiError, match="cannot change"):
        train(data, "ddpm", {"init_from": "other"}, run_name="narrow", resume=True)
