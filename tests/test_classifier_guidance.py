"""Classifier guidance of a conditional flow run (`ganji train-classifier`, `--classifier-guidance`,
Dhariwal & Nichol 2021 §4) by a noise-aware component classifier (CPU, 16 px)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_kanji, sample_images, stub_conditioning_suite

from ganji.data.components import ANY, join_pair, split_key
from ganji.data.store import load_dataset
from ganji.errors import GanjiError
from ganji.features.noisy_component_net import CLASSIFIER_FILE, NoisyComponentNet, load_classifier
from ganji.train.classifier import train_classifier
from ganji.metrics.conditioning import rows_with_pairs
from ganji.recipes.flow import CG_EDGE, classifier_guided, widen_edges
from ganji.sampling import load_model
from ganji.train.start import train

TINY = {"dataset": "kanji16", "epochs": 1, "batch_size": 16, "log_every": 1, "sample_every": 0, "lr": 1e-3}
CLASSIFIER = {"epochs": 1, "batch_size": 16, "width": 8, "device": "cpu"}


def ganji(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GANJI_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ganji", *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 px kanji: a conditional flow run with made-up kanji (c) and its classifier, an unconditional
    flow run (u) and a conditional DDPM (d)."""
    home = tmp_path_factory.mktemp("home")
    make_kanji(home, name="kanji16", size=16, limit=600)
    train(home, "flow", {**TINY, "max_steps": 3, "options": {"base_width": 8, "condition": "components", "component_mix": 0.5}}, run_name="c")
    train(home, "flow", {**TINY, "max_steps": 2, "options": {"base_width": 4}}, run_name="u")
    train(home, "ddpm", {**TINY, "max_steps": 2, "options": {"base_width": 4, "timesteps": 16, "condition": "components"}}, run_name="d")
    train_classifier(home, "flow", "c", **CLASSIFIER)
    return home


def a_key(loaded) -> str:
    return next(k for k in loaded.recipe.cfg.options.vocabulary if split_key(k)[1] != ANY)


def test_guided_velocity() -> None:
    """v' = v - s · t / (1 - t) · ∇ log p, 1 - t clamped at CG_EDGE (t = 1 gets a finite push)."""
    x = torch.randn(3, 1, 4, 4)
    t = torch.tensor([0.25, 0.5, 1.0])
    v, g = torch.randn_like(x), torch.randn_like(x)
    guided = classifier_guided(lambda _x, _t: v, lambda _x, _t: g, 2.0)(x, t)
    weight = torch.tensor([0.25 / 0.75, 1.0, 1.0 / CG_EDGE]).view(-1, 1, 1, 1)
    torch.testing.assert_close(guided, v - 2.0 * weight * g)


def test_gradient_is_of_the_asked_keys_log_probability(runs: Path) -> None:
    loaded = load_model(runs, "flow", "c", device="cpu", classifier=True)
    classifier = loaded.classifier
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([0.3, 0.7])
    condition = torch.zeros(2, len(classifier.vocabulary))
    condition[:, 3] = 1
    assert torch.count_nonzero(classifier.grad_log_prob(x, t, torch.zeros_like(condition))) == 0
    x_ = x.clone().requires_grad_(True)
    torch.nn.functional.logsigmoid(classifier.net(x_, t)[:, 3]).sum().backward()
    torch.testing.assert_close(classifier.grad_log_prob(x, t, condition), x_.grad)
    assert not any(p.requires_grad for p in classifier.net.parameters())


def test_training_is_deterministic_and_leaves_out_held_out_kanji(runs: Path, tmp_path: Path) -> None:
    """The same seed gives the same file; the kanji of the run's held-out pairs are never trained on,
    and the classifier's recall on them is recorded."""
    path = runs / "runs" / "flow" / "c" / CLASSIFIER_FILE
    first = hashlib.sha256(path.read_bytes()).hexdigest()
    meta = train_classifier(runs, "flow", "c", **CLASSIFIER)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == first
    dataset = load_dataset(runs, "kanji16")
    assert meta["kanji"] == len(dataset) and "held_out_recall" not in meta
    assert meta["vocabulary"] == dataset.component_vocabulary
    stored = load_classifier(path.parent, "flow/c", dataset.component_vocabulary, torch.device("cpu")).meta
    assert meta["seconds"] >= 0 and "seconds" not in stored  # a time would make the same training different bytes

    # A run that held out a pair (set in its config, as --hold-out-requests records it).
    labels = dataset.components.bool().numpy()
    vocabulary = dataset.component_vocabulary
    row = next(r for r in range(len(labels)) if sum(not vocabulary[i].endswith(":" + ANY) for i in np.flatnonzero(labels[r])) == 2)
    pair = tuple(vocabulary[i] for i in np.flatnonzero(labels[row]) if not vocabulary[i].endswith(":" + ANY))
    held = rows_with_pairs(labels, {k: i for i, k in enumerate(vocabulary)}, [pair])
    assert row in held
    config = runs / "runs" / "flow" / "c" / "config.json"
    saved = config.read_text("utf-8")
    try:
        data = json.loads(saved)
        data["config"]["options"].update(hold_out_requests=True, held_out=[join_pair(pair)])
        config.write_text(json.dumps(data), "utf-8")
        meta = train_classifier(runs, "flow", "c", **CLASSIFIER)
    finally:
        config.write_text(saved, "utf-8")
    assert meta["kanji"] == len(dataset) - len(held) and meta["held_out"] == [join_pair(pair)]
    assert set(meta["held_out_recall"]) == {"t=0", "t=0.3", "t=0.6"}
    assert all(0 <= v <= 1 for v in meta["held_out_recall"].values())
    train_classifier(runs, "flow", "c", **CLASSIFIER)  # back to the fixture's classifier
    assert hashlib.sha256(path.read_bytes()).hexdigest() == first


def test_guided_samples(runs: Path) -> None:
    """Scale 0 is the run's own samples, bit for bit; a scale changes a request's samples, the same
    every time; unconditional samples are never classifier-guided (there is nothing asked)."""
    plain = load_model(runs, "flow", "c", device="cpu")
    loaded = load_model(runs, "flow", "c", device="cpu", classifier=True)
    draw = {"sampler": "heun", "steps": 3, "seed": 4, "with_keys": [a_key(loaded)]}
    own = sample_images(plain, 3, **draw)
    assert torch.equal(own, sample_images(loaded, 3, classifier_scale=0.0, **draw))
    pushed = sample_images(loaded, 3, classifier_scale=50.0, **draw)
    assert not torch.equal(own, pushed)
    assert torch.equal(pushed, sample_images(loaded, 3, classifier_scale=50.0, **draw))
    with pytest.raises(GanjiError, match="applies to a request for components"):
        sample_images(loaded, 3, classifier_scale=1.0, sampler="heun", steps=3)
    with pytest.raises(GanjiError, match="need the run's classifier"):
        sample_images(plain, 3, classifier_scale=1.0, **draw)


def test_best_of_keeps_the_candidate_the_classifier_reads_best(runs: Path) -> None:
    """--best-of K: image i is, of the candidates a request for K·n images draws at K·i ... K·i + K - 1,
    the one with the highest log p(request | x_0) by the run's classifier, read at t = 0 with the
    run's edge margin (as it was trained); 1 is the plain request, bit for bit."""
    loaded = load_model(runs, "flow", "c", device="cpu", classifier=True)
    key = a_key(loaded)
    draw = {"sampler": "heun", "steps": 2, "seed": 5, "with_keys": [key], "classifier_scale": 20.0}
    candidates = sample_images(loaded, 12, **draw)
    kept = sample_images(loaded, 4, best_of=3, **draw)
    assert kept.shape == (4, *candidates.shape[1:]) and kept.dtype == torch.uint8
    condition = loaded.recipe.condition_vector((key,), 12)
    scores = loaded.classifier.read(candidates, condition)
    x0 = widen_edges(candidates.float() / 127.5 - 1, loaded.classifier.meta["edge_margin"])  # the classifier's t = 0 input, by hand
    torch.testing.assert_close(scores, (torch.nn.functional.logsigmoid(loaded.classifier.net(x0, torch.zeros(12))) * condition).sum(1))
    best = scores.view(4, 3).argmax(1)
    assert torch.equal(kept, candidates.view(4, 3, *candidates.shape[1:])[torch.arange(4), best])
    assert torch.equal(sample_images(loaded, 4, best_of=1, **draw), candidates[:4])
    for bad, message in (({"best_of": 0}, "--best-of must be between 1 and 64"), ({"best_of": 65}, "between 1 and 64"),
                         ({"best_of": 2, "with_keys": None, "classifier_scale": None}, "applies to a request for components"),
                         ({"best_of": 2, "interpolate": 2}, "--interpolate")):
        with pytest.raises(GanjiError, match=message):
            sample_images(loaded, 4, **{**draw, **bad})
    with pytest.raises(GanjiError, match="draws 1,200,000 images, over 1,000,000"):
        sample_images(loaded, 600_000, **{**draw, "best_of": 2})
    with pytest.raises(GanjiError, match="need the run's classifier"):
        sample_images(load_model(runs, "flow", "c", device="cpu"), 2, best_of=2, **{**draw, "classifier_scale": None})


def test_conditioning_suite_guides_requests_only(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ganji.metrics.conditioning as conditioning

    loaded = load_model(runs, "flow", "c", device="cpu", classifier=True)
    key = a_key(loaded)
    seen = stub_conditioning_suite(monkeypatch, key)
    _, extra = conditioning.evaluate_conditioning(runs, "flow", "c", per_request=4, sampler="heun", steps=2, device="cpu", classifier_scale=30.0)
    assert extra["classifier_guidance"] == 30.0
    draw = {"sampler": "heun", "steps": 2, "seed": 7}
    assert torch.equal(seen[()], sample_images(loaded, 2, **draw))
    assert torch.equal(seen[(key,)], sample_images(loaded, 2, with_keys=[key], classifier_scale=30.0, **draw))
    _, extra = conditioning.evaluate_conditioning(runs, "flow", "c", per_request=4, sampler="heun", steps=2, device="cpu", best_of=3)
    assert extra["best_of"] == 3 and extra["classifier_guidance"] == 0.0
    assert torch.equal(seen[()], sample_images(loaded, 2, **draw))  # never picked among: nothing is asked
    assert torch.equal(seen[(key,)], sample_images(loaded, 2, with_keys=[key], best_of=3, **draw))


def test_which_runs_take_a_classifier(runs: Path, tmp_path: Path) -> None:
    for run, model, message in (("u", "flow", "trained without components"), ("d", "ddpm", "apply to flow runs")):
        with pytest.raises(GanjiError, match=message):
            load_model(runs, model, run, device="cpu", classifier=True)
    with pytest.raises(GanjiError, match="there is nothing to guide towards"):
        train_classifier(runs, "flow", "u", **CLASSIFIER)
    with pytest.raises(GanjiError, match="for flow runs"):
        train_classifier(runs, "ddpm", "d", **CLASSIFIER)
    for bad, message in (({"epochs": 0}, "--epochs"), ({"lr": 0.0}, "--lr"), ({"width": 12}, "multiple of 8")):
        with pytest.raises(GanjiError, match=message):
            train_classifier(runs, "flow", "c", **{**CLASSIFIER, **bad})
    # A damaged or foreign file is a clear error, never a traceback.
    (tmp_path / CLASSIFIER_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(GanjiError, match="not a readable classifier"):
        load_classifier(tmp_path, "flow/x", ["a"], torch.device("cpu"))
    with pytest.raises(GanjiError, match="has no classifier: train one with `ganji train-classifier flow --run y`"):
        load_classifier(tmp_path / "none", "flow/y", ["a"], torch.device("cpu"))
    assert NoisyComponentNet(16, 1, 5, 8)(torch.zeros(2, 1, 16, 16), torch.zeros(2)).shape == (2, 5)


def test_cli(runs: Path) -> None:
    key = a_key(load_model(runs, "flow", "c", device="cpu"))
    out = ganji(runs, "sample", "flow", "--run", "c", "--with", key, "--classifier-guidance", "4", "--n", "2", "--steps", "2",
                "-o", str(runs / "a.png"))
    assert out.returncode == 0, out.stderr
    assert "classifier guidance 4" in out.stderr and (runs / "a.png").exists()
    out = ganji(runs, "sample", "flow", "--run", "c", "--with", key, "--best-of", "3", "--n", "2", "--steps", "2", "-o", str(runs / "k.png"))
    assert out.returncode == 0, out.stderr
    assert "best of 3" in out.stderr and (runs / "k.png").exists()
    for args, message in (
        (("sample", "flow", "--run", "c", "--classifier-guidance", "4", "-o", str(runs / "b.png")), "applies to a request for components"),
        (("sample", "flow", "--run", "c", "--with", key, "--classifier-guidance", "-1", "-o", str(runs / "b.png")), "from 0 to"),
        (("sample", "flow", "--run", "u", "--with", key, "--classifier-guidance", "4", "-o", str(runs / "b.png")), "without components"),
        (("fid", "flow", "--run", "c", "--classifier-guidance", "4", "--n", "12"), "applies with --condition components"),
        (("sample", "flow", "--run", "c", "--with", key, "--best-of", "0", "-o", str(runs / "b.png")), "--best-of must be between"),
        (("sample", "flow", "--run", "c", "--best-of", "2", "-o", str(runs / "b.png")), "applies to a request for components"),
        (("sample", "ddpm", "--run", "d", "--with", key, "--best-of", "2", "-o", str(runs / "b.png")), "apply to flow runs"),
        (("fid", "flow", "--run", "c", "--best-of", "2", "--n", "12"), "--best-of applies with --condition components"),
        (("train-classifier", "flow", "--run", "u", "-q"), "nothing to guide towards"),
        (("train-classifier", "flow", "--run", "c", "--epochs", "0", "-q"), "--epochs must be"),
    ):
        bad = ganji(runs, *args)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert message in bad.stderr
    assert not (runs / "b.png").exists()
    assert all(option in ganji(runs, "sample", "--help").stdout for option in ("--classifier-guidance", "--best-of"))
