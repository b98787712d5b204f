"""The rectified-flow model (`ganji train flow`): its maths, learning, resume, sampling and errors (CPU, 16 px)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_kanji, sample_images
from safetensors.torch import load_file

from ganji.errors import GanjiError
from ganji.recipes import SamplerChoice, spec
from ganji.recipes.flow import T_MIN, TIME_SCALE, euler_sample, heun_sample, interpolate_path, sample_time, velocity_from_x0, widen_edges
from ganji.sampling import load_model
from ganji.train.start import train

TINY = {"dataset": "kanji16", "epochs": 2, "batch_size": 16, "log_every": 1, "sample_every": 0, "options": {"base_width": 8}}


def ganji(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GANJI_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ganji", *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    make_kanji(home, name="kanji16", size=16, limit=64)
    train(home, "flow", dict(TINY), run_name="r")
    return home


# -- the maths ------------------------------------------------------------------------------------


def test_the_path_runs_from_data_at_0_to_noise_at_1() -> None:
    x0, noise = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    assert torch.equal(interpolate_path(x0, noise, torch.zeros(3)), x0)
    assert torch.equal(interpolate_path(x0, noise, torch.ones(3)), noise)
    half = interpolate_path(x0, noise, torch.full((3,), 0.5))
    assert torch.allclose(half, (x0 + noise) / 2)


@pytest.mark.parametrize("sampler", [euler_sample, heun_sample])
def test_the_exact_velocity_carries_noise_back_to_the_data(sampler) -> None:
    """For one data point x₀, the ideal v(x_t, t) = (x_t - x₀) / t; both integrators land on x₀."""
    x0 = torch.randn(2, 1, 4, 4)

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (x - x0) / t.reshape(-1, 1, 1, 1)

    out = sampler(velocity, torch.randn(2, 1, 4, 4), steps=4)
    assert torch.allclose(out, x0, atol=1e-5)


def test_heun_is_second_order_where_euler_is_first() -> None:
    """On dx/dt = x (exact: x(0) = x(1)/e), halving the step cuts Euler's error ~2x and Heun's ~4x."""

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x

    x1 = torch.ones(1, 1, 1, 1)
    exact = float(torch.exp(torch.tensor(-1.0)))
    err = {(f.__name__, s): abs(float(f(velocity, x1, s)) - exact) for f in (euler_sample, heun_sample) for s in (8, 16)}
    assert 1.7 < err["euler_sample", 8] / err["euler_sample", 16] < 2.3
    assert 3.5 < err["heun_sample", 8] / err["heun_sample", 16] < 4.5
    assert err["heun_sample", 16] < err["euler_sample", 16] / 10


def test_time_sampling() -> None:
    torch.manual_seed(0)
    logit = sample_time(20_000, "logit-normal", torch.device("cpu"))
    uniform = sample_time(20_000, "uniform", torch.device("cpu"))
    assert 0 < float(logit.min()) and float(logit.max()) < 1 and 0 <= float(uniform.min()) and float(uniform.max()) < 1
    # logit-normal puts more weight in the middle of the path than uniform does.
    middle = lambda t: float(((t > 0.25) & (t < 0.75)).float().mean())  # noqa: E731
    assert middle(logit) > middle(uniform) + 0.1 and abs(middle(uniform) - 0.5) < 0.02


def test_the_network_gets_the_time_on_the_ddpm_scale() -> None:
    recipe = load_recipe()
    seen = []
    recipe.nets["unet"].register_forward_pre_hook(lambda _m, args: seen.append(args[1].clone()))
    recipe.generate(torch.randn(2, 1, 16, 16), use_ema=False, sampler=SamplerChoice("euler", 2))
    assert [float(t[0]) for t in seen] == [TIME_SCALE, TIME_SCALE / 2]


def load_recipe():
    from ganji.runtime.device import choose_precision

    cfg = spec("flow").config(options={"base_width": 8}, device="cpu")
    return spec("flow").recipe_class()(cfg, 16, 1, 10, choose_precision(spec("flow").bf16, torch.device("cpu")))


def test_the_true_clean_image_reads_as_the_true_velocity() -> None:
    """x0 prediction ([JiT]): x̂_0 = x_0 gives v = (x_t - x_0) / t = ε - x_0 wherever t >= T_MIN."""
    x0, noise = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t = torch.tensor([T_MIN, 0.3, 1.0])
    assert torch.allclose(velocity_from_x0(x0, interpolate_path(x0, noise, t), t), noise - x0, atol=1e-5)
    tiny = torch.tensor([0.0, 1e-4, T_MIN / 2])  # training caps the 1/t: finite even at t = 0
    assert torch.isfinite(velocity_from_x0(x0, interpolate_path(x0, noise, tiny), tiny)).all()
    small = torch.tensor([T_MIN / 2] * 3)  # sampling does not: a step from t to 0 lands on x̂_0
    x_t = interpolate_path(x0, noise, small)
    assert torch.allclose(x_t - small[0] * velocity_from_x0(x0, x_t, small, t_min=1e-6), x0, atol=1e-5)


# -- training -------------------------------------------------------------------------------------


def test_flow_learns(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_kanji(home, name="kanji16", size=16, limit=64)
    given = {**TINY, "epochs": 100, "max_steps": 160, "log_every": 20, "lr": 2e-3, "options": {"base_width": 16}}
    result = train(home, "flow", given, run_name="learn")
    losses = [json.loads(line)["loss"] for line in result.run.metrics_path.read_text().splitlines()]
    assert losses[-1] < 0.5 * losses[0], losses


def test_x0_prediction_learns_and_samples(tmp_path: Path) -> None:
    """--prediction x0 trains on the same velocity loss, halves it in a short run, and samples images."""
    home = tmp_path / "home"
    make_kanji(home, name="kanji16", size=16, limit=64)
    given = {**TINY, "epochs": 100, "max_steps": 160, "log_every": 20, "lr": 2e-3, "options": {"base_width": 16, "prediction": "x0"}}
    result = train(home, "flow", given, run_name="x0")
    losses = [json.loads(line)["loss"] for line in result.run.metrics_path.read_text().splitlines()]
    assert losses[-1] < 0.5 * losses[0], losses
    loaded = load_model(home, "flow", "x0")
    assert "x0 prediction" in loaded.recipe.describe(loaded.recipe.cfg.options)
    images = sample_images(loaded, 4, seed=0, sampler="heun", steps=4)
    assert images.shape == (4, 1, 16, 16) and images.float().std() > 0


def test_x0_through_tanh_stays_in_the_image_range(tmp_path: Path) -> None:
    """--prediction x0-tanh: x̂_0 = tanh(output) in [-1, 1]; a short run trains and samples."""
    from ganji.recipes.flow import read_output

    x_t, t = torch.randn(2, 1, 4, 4), torch.full((2,), 0.5)
    huge = torch.full((2, 1, 4, 4), 50.0)  # far outside the images' range
    assert torch.allclose(read_output(huge, x_t, t, "x0-tanh"), (x_t - 1.0) / 0.5)
    assert torch.equal(read_output(huge, x_t, t, "velocity"), huge)
    home = tmp_path / "home"
    make_kanji(home, name="kanji16", size=16, limit=64)
    train(home, "flow", {**TINY, "max_steps": 3, "options": {"base_width": 8, "prediction": "x0-tanh"}}, run_name="t")
    loaded = load_model(home, "flow", "t")
    assert "through tanh" in loaded.recipe.describe(loaded.recipe.cfg.options)
    assert sample_images(loaded, 2, seed=0, sampler="heun", steps=3).shape == (2, 1, 16, 16)


def test_the_edge_margin_moves_only_exact_paper_and_ink() -> None:
    """--edge-margin m: -1 -> -1 - m and +1 -> 1 + m, everything between unchanged; m = 0 is the identity."""
    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 0.999, 1.0]).reshape(1, 1, 2, 3)
    assert torch.equal(widen_edges(x, 0.0), x)
    assert torch.equal(widen_edges(x, 0.25).flatten(), torch.tensor([-1.25, -0.999, 0.0, 0.5, 0.999, 1.25]))


def test_the_edge_margin_turns_near_misses_into_exact_paper() -> None:
    """Why the margin: a sample within m of where paper was trained quantises to exactly paper (0),
    where the same miss around -1 leaves grey (the clamp only removes misses below -1)."""
    from ganji.images import to_uint8

    real = torch.tensor([-1.0, -1.0, 1.0, 0.2]).reshape(1, 1, 2, 2)
    miss = torch.tensor([0.2, -0.2, 0.1, 0.0]).reshape(1, 1, 2, 2)  # within the margin, both ways
    plain, widened = to_uint8(real + miss), to_uint8(widen_edges(real, 0.25) + miss)
    assert plain.flatten().tolist()[0] > 0  # grey where paper was meant
    assert torch.equal(widened, to_uint8(real))


def test_edge_margin_trains_and_samples(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_kanji(home, name="kanji16", size=16, limit=64)
    train(home, "flow", {**TINY, "max_steps": 3, "options": {"base_width": 8, "edge_margin": 0.25}}, run_name="m")
    loaded = load_model(home, "flow", "m")
    assert loaded.recipe.cfg.options.edge_margin == 0.25
    assert "edge margin 0.25" in loaded.recipe.describe(loaded.recipe.cfg.options)
    assert sample_images(loaded, 2, seed=0, sampler="heun", steps=3).shape == (2, 1, 16, 16)


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_kanji(home, name="kanji16", size=16, limit=64)
    straight = train(home, "flow", {**TINY, "max_steps": 4, "options": {"base_width": 8, "time_sampling": "uniform"}}, run_name="a")
    train(home, "flow", {**TINY, "max_steps": 2, "options": {"base_width": 8, "time_sampling": "uniform"}}, run_name="b")
    resumed = train(home, "flow", {"max_steps": 4}, run_name="b", resume=True)
    a, b = load_file(str(straight.run.checkpoint_path)), load_file(str(resumed.run.checkpoint_path))
    keys = [k for k in a if k.startswith(("net.", "ema.", "opt."))]
    assert keys and all(torch.equal(a[k], b[k]) for k in keys)


# -- sampling -------------------------------------------------------------------------------------


def test_sampling_is_deterministic_and_the_samplers_differ(trained: Path) -> None:
    loaded = load_model(trained, "flow")
    euler = sample_images(loaded, 4, seed=1, sampler="euler", steps=5)
    assert euler.dtype == torch.uint8 and euler.shape == (4, 1, 16, 16)
    assert torch.equal(euler, sample_images(loaded, 4, seed=1, sampler="euler", steps=5))
    assert not torch.equal(euler, sample_images(loaded, 4, seed=2, sampler="euler", steps=5))
    assert not torch.equal(euler, sample_images(loaded, 4, seed=1, sampler="heun", steps=5))
    assert loaded.recipe.model_calls(spec("flow").sampling.fast_choice(5)) == 5
    calls = []
    loaded.recipe.generate(torch.randn(2, 1, 16, 16), sampler=SamplerChoice("heun", 5), on_step=calls.append)
    assert calls == list(range(9)) == list(range(loaded.recipe.model_calls(SamplerChoice("heun", 5))))


def test_interpolation_rows_change_smoothly(trained: Path) -> None:
    images = sample_images(load_model(trained, "flow"), 16, seed=0, interpolate=8, steps=10).float().reshape(2, 8, -1)
    neighbour = (images[:, 1:] - images[:, :-1]).abs().mean()
    assert neighbour < (images[:, -1] - images[:, 0]).abs().mean()


def test_cli_sample_fid_and_help(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    proc = ganji(trained, "sample", "flow", "--n", "4", "--steps", "10", "-o", str(out), "-q")
    assert proc.returncode == 0 and out.is_file(), proc.stderr
    proc = ganji(trained, "fid", "flow", "--n", "16", "--steps", "4", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    score = json.loads(proc.stdout)[0]  # then the reference rows
    assert score["model"] == "flow" and score["n"] == 16 and score["details"]["sampler"] == "heun" and score["details"]["steps"] == 4
    help_text = ganji(trained, "train", "--help").stdout
    assert "--time-sampling" in help_text and "logit-normal|uniform" in help_text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "flow", "--timesteps", "10", "--dataset", "kanji16"), "--timesteps does not apply to the flow model"),
        (("train", "flow", "--time-sampling", "sideways", "--dataset", "kanji16"), "--time-sampling must be logit-normal or uniform"),
        (("train", "flow", "--attention", "--base-width", "12", "--dataset", "kanji16"), "--base-width must be a positive multiple of 8"),
        (("sample", "flow", "--sampler", "ddim"), "--sampler must be one of euler, heun for the flow model"),
        (("sample", "flow", "--steps", "0"), "--steps must be between 1 and"),
        (("sample", "flow", "--eta", "0.5"), "--eta does not apply to the heun sampler"),
    ],
)
def test_bad_input_is_one_line(trained: Path, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    proc = ganji(trained, *args, "-o", str(tmp_path / "x.png")) if args[0] == "sample" else ganji(trained, *args)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_options_check_themselves() -> None:
    with pytest.raises(GanjiError, match="--time-sampling"):
        spec("flow").config(options={"time_sampling": "nope"})
    with pytest.raises(GanjiError, match="--prediction"):
        spec("flow").config(options={"prediction": "eps"})
    with pytest.raises(GanjiError, match="--edge-margin must be in"):
        spec("flow").config(options={"edge_margin": -0.1})
    with pytest.raises(GanjiError, match="--edge-margin needs --prediction velocity or x0"):
        spec("flow").config(options={"edge_margin": 0.2, "prediction": "x0-tanh"})
