"""`ganji bench peer`: the harness that trains our model and the peer side by side and scores both
the same way. The real peer is an optional dependency; here a stand-in with its API keeps the test
about the harness (same data, same time, same metric), tiny and offline."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import make_kanji

from ganji.cli import main
from ganji.errors import GanjiError


class _Unet(torch.nn.Module):
    def __init__(self, dim: int, dim_mults: tuple[int, ...], channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)


class _Diffusion(torch.nn.Module):
    """The peer's GaussianDiffusion as the harness uses it: forward(x in [0, 1]) is the loss, sample() gives [0, 1]."""

    seen: list[torch.Tensor] = []

    def __init__(self, model: _Unet, image_size: int, timesteps: int, sampling_timesteps: int) -> None:
        super().__init__()
        self.model, self.image_size = model, image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _Diffusion.seen.append(x.detach())
        return (self.model.conv(x * 2 - 1) - (x * 2 - 1)).square().mean()

    real: torch.Tensor | None = None  # what sample() returns: the dataset's own images, in [0, 1]

    def sample(self, batch_size: int) -> torch.Tensor:
        return _Diffusion.real[torch.arange(batch_size) % len(_Diffusion.real)]


class _EMA(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, beta: float, update_every: int) -> None:
        super().__init__()
        self.ema_model = model

    def update(self) -> None:
        pass


@pytest.fixture
def fake_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    peer = types.ModuleType("denoising_diffusion_pytorch")
    peer.Unet, peer.GaussianDiffusion = _Unet, _Diffusion
    ema = types.ModuleType("ema_pytorch")
    ema.EMA = _EMA
    monkeypatch.setitem(sys.modules, "denoising_diffusion_pytorch", peer)
    monkeypatch.setitem(sys.modules, "ema_pytorch", ema)


def test_both_sides_train_for_the_same_time_and_are_scored_alike(home: Path, fake_peer: None) -> None:
    from ganji.perf.peer import bench_peer

    make_kanji(home, "k16", 16, limit=64)
    from ganji.data.store import load_dataset

    data = load_dataset(home, "k16").images.float() / 255
    _Diffusion.seen.clear()
    _Diffusion.real = data
    rows = bench_peer(home, model="flow", dataset="k16", seconds=2.0, n=16, calls=4, seeds=[0], peer_dims=[8], dim_mults=(1, 2),
                      timesteps=16, peer_lr=1e-3, peer_batch=8, features="kanji", device_name="cpu")
    ours, peer = rows
    assert (ours.name, peer.name) == ("ganji flow", "peer dim 8")
    assert ours.sampler == "heun-2" and peer.sampler == "ddim-4"  # 4 network calls each: Heun-2 takes 3
    assert 2.0 <= peer.train_seconds < 4.0 and peer.steps > 0 and ours.steps > 0
    # Ours: epochs planned from a throughput probe to end within the time, and the time as a hard cap.
    from ganji.home import cache_dir
    from ganji.runs import find_run, read_run_config

    cfg = read_run_config(find_run(cache_dir(home) / "bench-peer", "flow", "flow-seed0"))["config"]
    assert cfg["time_budget"] == pytest.approx(2.0 / 60) and cfg["epochs"] >= 1 and cfg["sample_every"] == 0
    # The peer sees the dataset's images in [0, 1], ink bright, never flipped: every batch is a set of dataset rows.
    assert all(any(torch.equal(img, d) for d in data) for img in _Diffusion.seen[0])
    for row in rows:  # the same protocol: n samples read back from PNGs against the same dataset
        assert row.score["n"] == 16 and row.score["dataset"] == "k16" and row.score["details"]["inverted"] == 0
    # A stand-in that returns the dataset's own kanji comes back through the same PNG round trip as
    # exact copies, every one inside the real manifold: the protocol neither hurts nor flatters a side.
    assert peer.score["novelty_copies"] == 1.0 and peer.score["precision"] == 1.0
    assert ours.score["novelty_copies"] < 1.0
    assert not (home / "runs").exists()  # the bench's runs live in its own home, never the user's latest


def _fails(capsys: pytest.CaptureFixture, *args: str) -> str:
    """The one line a failing command printed."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code != 0 and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_without_the_peer_installed(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from ganji.perf.peer import peer_modules

    monkeypatch.setitem(sys.modules, "denoising_diffusion_pytorch", None)  # import fails
    with pytest.raises(GanjiError, match=r'pip install "ganji\[peer\]"'):
        peer_modules()
    assert _fails(capsys, "bench", "peer", "--seconds", "1") == 'error: the peer (denoising-diffusion-pytorch) is not installed: pip install "ganji[peer]"'
    with pytest.raises(SystemExit):
        main(["bench", "peer", "--help"])
    assert '"ganji[peer]"' in capsys.readouterr().out  # the help keeps the extra's brackets too (rich markup)



@pytest.mark.parametrize("args, needle", [(["--model", "vae"], "--model"), (["--seconds", "0"], "--seconds"), (["--calls", "0"], "--calls"),
                                          (["--seeds", "a"], "--seeds"), (["--dataset", "nope"], "'nope' is not prepared")])
def test_bad_options(home: Path, fake_peer: None, capsys: pytest.CaptureFixture, args: list[str], needle: str) -> None:
    assert needle in _fails(capsys, "bench", "peer", *args)
    assert not (home / "runs").exists()
