"""Autoguidance (`--guide-run`, Karras et al. 2024): a weaker run of the same model guides sampling (CPU, 16 px)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_kanji, sample_images, stub_conditioning_suite

from ganji.data.components import ANY, split_key
from ganji.errors import GanjiError
from ganji.recipes import spec
from ganji.recipes.flow import TIME_SCALE
from ganji.runtime.device import choose_precision
from ganji.sampling import load_model
from ganji.train.start import train

TINY = {"dataset": "kanji16", "epochs": 1, "batch_size": 16, "log_every": 1, "sample_every": 0, "lr": 1e-3}
FLOW = {"base_width": 8}
CPU = choose_precision(True, torch.device("cpu"), "fp32", False, "default")


def ganji(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GANJI_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ganji", *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Flow runs on 16 px kanji: a main run (m), its weaker guide (g: fewer steps, half the width),
    one with another output (x0), a conditional pair (c, cg) and a DDPM (d)."""
    home = tmp_path_factory.mktemp("home")
    make_kanji(home, name="kanji16", size=16, limit=200)
    train(home, "flow", {**TINY, "max_steps": 4, "options": FLOW}, run_name="m")
    train(home, "flow", {**TINY, "max_steps": 2, "options": {"base_width": 4}}, run_name="g")
    train(home, "flow", {**TINY, "max_steps": 2, "options": {**FLOW, "prediction": "x0"}}, run_name="x0")
    train(home, "flow", {**TINY, "max_steps": 4, "options": {**FLOW, "condition": "components"}}, run_name="c")
    train(home, "flow", {**TINY, "max_steps": 2, "options": {"base_width": 4, "condition": "components"}}, run_name="cg")
    train(home, "ddpm", {**TINY, "max_steps": 2, "options": {"base_width": 4, "timesteps": 16}}, run_name="d")
    return home


def test_guided_output_is_eq_2_and_guidance_zero_skips_the_guide(runs: Path) -> None:
    """out = guide + w (main - guide) (Karras et al. 2024, eq. 2); w = 0 is the main network alone,
    bit for bit, and never calls the guide."""
    loaded = load_model(runs, "flow", "m", device="cpu", guide_run="g")
    assert loaded.guide is not None and loaded.guide.run_name == "g"
    recipe, net, weak = loaded.recipe, loaded.recipe.nets["unet"].eval(), loaded.guide.recipe.nets["unet"].eval()
    calls: list[int] = []
    handle = weak.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    x, t = torch.randn(3, 1, 16, 16), torch.full((3,), 0.4)
    try:
        with torch.no_grad():
            guided = recipe.network_fn(net, TIME_SCALE, None, 2.0, weak)(x, t)
            assert calls == [3]
            off = recipe.network_fn(net, TIME_SCALE, None, 0.0, weak)(x, t)
            assert calls == [3]
            main, guide = net(x, t * TIME_SCALE), weak(x, t * TIME_SCALE)
    finally:
        handle.remove()
    torch.testing.assert_close(guided, guide + 2.0 * (main - guide), atol=1e-5, rtol=1e-5)
    assert torch.equal(off, main)


def test_guided_samples(runs: Path) -> None:
    """A guide changes the samples; guidance 0 gives the run's own samples bit for bit; the default
    weight is 2; a conditional run is guided with the request's label, and its unconditional
    samples with none."""
    plain_model = load_model(runs, "flow", "m", device="cpu")
    guided_model = load_model(runs, "flow", "m", device="cpu", guide_run="g")
    draw = {"sampler": "heun", "steps": 3, "seed": 5}
    plain = sample_images(plain_model, 4, **draw)
    guided = sample_images(guided_model, 4, guided=True, **draw)
    assert not torch.equal(plain, guided)
    assert torch.equal(plain, sample_images(guided_model, 4, guided=True, guidance=0.0, **draw))
    assert torch.equal(guided, sample_images(guided_model, 4, guided=True, guidance=2.0, **draw))

    conditional = load_model(runs, "flow", "c", device="cpu", guide_run="cg")
    key = next(k for k in conditional.recipe.cfg.options.vocabulary if split_key(k)[1] != ANY)
    asked = sample_images(conditional, 4, guided=True, with_keys=[key], **draw)
    unasked = sample_images(conditional, 4, guided=True, **draw)
    assert not torch.equal(asked, unasked)
    # A conditional run guides an unconditional one through its null label.
    assert load_model(runs, "flow", "m", device="cpu", guide_run="c").guide is not None


def recipe(model: str, size: int, **options):
    """A model's recipe on the CPU, built without a run."""
    cfg = spec(model).config(spec(model).options(**options), dataset="x", epochs=1)
    return spec(model).recipe_class()(cfg, size, 1, 10, CPU)


def test_which_runs_can_guide(runs: Path) -> None:
    cases = {
        ("m", "m"): "a run cannot guide itself",
        ("m", "x0"): "the guide was trained with --prediction x0, this run with velocity",
        ("c", "m"): "the guide was not trained on the same components",
        ("m", "nope"): "no flow run named 'nope'",
    }
    for (run, guide), message in cases.items():
        with pytest.raises(GanjiError, match=message):
            load_model(runs, "flow", run, device="cpu", guide_run=guide)
    small, large, ddpm = recipe("flow", 16), recipe("flow", 32), recipe("ddpm", 16)
    assert small.guide_mismatch(recipe("flow", 16, base_width=4)) is None
    assert "the guide draws 32 px images" in str(small.guide_mismatch(large))
    assert "the guide is a ddpm run, not a flow one" in str(small.guide_mismatch(ddpm))
    assert "--schedule linear" in str(ddpm.guide_mismatch(recipe("ddpm", 16, schedule="linear")))
    assert "one network pass" in str(recipe("gan", 16).guide_mismatch(recipe("gan", 16)))
    # A guide must not have seen the kanji a run holds out (--hold-out-requests): it would hand them back.
    cond = {"condition": "components", "vocabulary": ("a:left", "b:right")}
    held = recipe("flow", 16, **cond, hold_out_requests=True, held_out=("a:left+b:right",))
    assert "the guide was trained on kanji this run holds out (a:left+b:right)" in str(held.guide_mismatch(recipe("flow", 16, **cond)))
    assert held.guide_mismatch(recipe("flow", 16, **cond, base_width=4, hold_out_requests=True, held_out=("a:left+b:right",))) is None
    assert recipe("flow", 16, **cond).guide_mismatch(held) is None  # one that saw less may guide one that saw more
    train(runs, "vae", {**TINY, "max_steps": 1, "options": {"latent_dim": 4}}, run_name="v")
    with pytest.raises(GanjiError, match="--guide-run applies to the iterative models"):
        load_model(runs, "vae", "v", device="cpu", guide_run="v2")


def test_cli(runs: Path) -> None:
    out = ganji(runs, "sample", "flow", "--run", "m", "--guide-run", "g", "--n", "2", "--steps", "2", "-o", str(runs / "a.png"))
    assert out.returncode == 0, out.stderr
    assert "guided by g, guidance 2" in out.stderr and (runs / "a.png").exists()
    bad = ganji(runs, "sample", "flow", "--run", "m", "--guide-run", "x0", "--n", "2", "-o", str(runs / "b.png"))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "cannot guide" in bad.stderr and not (runs / "b.png").exists()

    fid = ganji(runs, "fid", "flow", "--run", "m", "--guide-run", "g", "--guidance", "1.5", "--n", "12", "--steps", "2",
                "--no-references", "--json", "-q")
    assert fid.returncode == 0, fid.stderr
    details = json.loads(fid.stdout)[0]["details"]
    assert details["guide_run"] == "g" and details["guidance"] == 1.5
    for args, message in ((("--all", "--guide-run", "g"), "--guide-run guides one model's run"),
                          (("flow", "--run", "m", "--guidance", "2"), "--guidance applies with --condition components or --guide-run")):
        out = ganji(runs, "fid", *args, "--n", "12")
        assert out.returncode != 0 and message in out.stderr and "Traceback" not in out.stderr
    assert "--guide-run" in ganji(runs, "sample", "--help").stdout


def test_conditioning_suite_keeps_its_unconditional_baseline_unguided(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ganji fid --condition components --guide-run`: the requests are autoguided, the unconditional
    samples (chance, the FID baseline) stay the run's own."""
    import ganji.metrics.conditioning as conditioning

    loaded = load_model(runs, "flow", "c", device="cpu")
    key = next(k for k in loaded.recipe.cfg.options.vocabulary if split_key(k)[1] != ANY)
    seen = stub_conditioning_suite(monkeypatch, key)
    score, extra = conditioning.evaluate_conditioning(runs, "flow", "c", per_request=4, sampler="heun", steps=2, device="cpu", guide_run="cg")
    assert score == "score" and extra["guide_run"] == "cg"
    draw = {"sampler": "heun", "steps": 2, "seed": 7}
    assert torch.equal(seen[()], sample_images(loaded, 2, **draw))
    guided = load_model(runs, "flow", "c", device="cpu", guide_run="cg")
    assert torch.equal(seen[(key,)], sample_images(guided, 2, guided=True, with_keys=[key], guidance=2.0, **draw))
    assert not torch.equal(seen[(key,)], sample_images(loaded, 2, with_keys=[key], guidance=2.0, **draw))
