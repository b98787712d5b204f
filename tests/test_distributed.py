"""Training with several processes: torchrun, gloo on the CPU, two processes, tiny models at 16 px.

One global batch split over the ranks; every image once per epoch; only rank 0 writes; the same
weights as one process (up to the order of float sums); resume from 1 to 2 processes and back;
the GAN's several optimisers, SyncBatchNorm and gradient penalty under DDP.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_kanji
from safetensors.torch import load_file

from ganji.errors import GanjiError
from ganji.runtime.checkpoint import load_checkpoint
from ganji.runtime.distributed import World, per_rank_batch, rank_indices
from ganji.train.loop import epoch_permutation
from ganji.train.start import train

# Command-line options and the same as train() arguments, for tiny runs (64 images, 4 steps an epoch).
DDPM_ARGS = ["--dataset", "kanji16", "--epochs", "2", "--batch-size", "16", "--base-width", "8", "--timesteps", "100",
             "--log-every", "1", "--device", "cpu", "-q"]
DDPM = {"dataset": "kanji16", "epochs": 2, "batch_size": 16, "log_every": 1, "device": "cpu",
        "options": {"base_width": 8, "timesteps": 100}}
VAE_ARGS = ["--dataset", "kanji16", "--epochs", "2", "--batch-size", "16", "--base-width", "8", "--latent-dim", "8",
            "--log-every", "1", "--device", "cpu", "--sample-every", "0", "-q"]
VAE = {"dataset": "kanji16", "epochs": 2, "batch_size": 16, "log_every": 1, "device": "cpu", "sample_every": 0,
       "options": {"base_width": 8, "latent_dim": 8}}
GAN_ARGS = ["--dataset", "kanji16", "--epochs", "2", "--batch-size", "16", "--arch", "dcgan", "--loss", "hinge", "--gp", "10",
            "--disc-ratio", "2", "--layers", "32,16,16,8", "--latent-dim", "16", "--log-every", "1", "--device", "cpu", "-q"]
GAN = {"dataset": "kanji16", "epochs": 2, "batch_size": 16, "log_every": 1, "device": "cpu",
       "options": {"arch": "dcgan", "loss": "hinge", "gp": 10.0, "disc_ratio": 2, "layers": (32, 16, 16, 8), "latent_dim": 16}}


@pytest.fixture
def data(home: Path) -> Path:
    make_kanji(home, name="kanji16", size=16, limit=64)
    return home


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "GANJI_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchrun(home: Path, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node N -m ganji -- train ARGS` (the `--` keeps torchrun's
    parser from reading ganji's --run as its own --run-path)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "ganji", "--", "train", *args]
    proc = subprocess.run(command, env=_env(home), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def weights(path: Path) -> dict[str, torch.Tensor]:
    """Networks, EMA and optimiser tensors of a checkpoint (step counters included)."""
    return {k: v for k, v in load_file(str(path)).items() if k.startswith(("net.", "ema.", "opt."))}


def assert_close(a_path: Path, b_path: Path, atol: float = 1e-5) -> None:
    a, b = weights(a_path), weights(b_path)
    assert a.keys() == b.keys() and len(a) > 0
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert worst <= atol, f"largest difference {worst}"


def records(run_path: Path) -> list[dict]:
    return [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines()]


def steps_logged(run_path: Path) -> list[int]:
    return [r["step"] for r in records(run_path)]


# -- the pieces, in one process ---------------------------------------------------------------------
@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_every_image_once_per_epoch_and_the_ranks_make_the_global_batch(world_size: int) -> None:
    n, batch = 70, 8  # 8 steps an epoch; the last 6 images of the permutation are dropped
    perm = epoch_permutation(seed=3, epoch=1, n=n)
    seen: list[int] = []
    for step in range(n // batch):
        shards = [rank_indices(perm, step, batch, rank, per_rank_batch(batch, world_size)) for rank in range(world_size)]
        assert all(len(s) == batch // world_size for s in shards)
        # The ranks' slices, in rank order, are the one-process batch of that step.
        assert torch.equal(torch.cat(shards), perm[step * batch : (step + 1) * batch])
        seen += torch.cat(shards).tolist()
    assert sorted(seen) == sorted(perm[: (n // batch) * batch].tolist())
    assert len(set(seen)) == len(seen)


def test_the_global_batch_must_split_evenly() -> None:
    assert per_rank_batch(128, 4) == 32
    with pytest.raises(GanjiError, match="divisible by the number of processes"):
        per_rank_batch(30, 4)


def test_per_sample_draws_are_slices_of_the_global_draw() -> None:
    torch.manual_seed(7)
    full = torch.randn(8, 3)
    after = torch.randn(1)
    parts = []
    for rank in range(2):
        torch.manual_seed(7)
        parts.append(World(rank=rank, size=2).draw(4, lambda n: torch.randn(n, 3)))
        assert torch.equal(torch.randn(1), after)  # every rank's generator ends where one process's does
    assert torch.equal(torch.cat(parts), full)
    torch.manual_seed(7)
    assert torch.equal(World().draw(8, lambda n: torch.randn(n, 3)), full)


# -- two processes ----------------------------------------------------------------------------------
def test_two_processes_train_like_one_and_resume_across_world_sizes(data: Path) -> None:
    straight = train(data, "ddpm", {**DDPM, "max_steps": 4}, run_name="one")
    half = train(data, "ddpm", {**DDPM, "max_steps": 2}, run_name="half")

    proc = torchrun(data, "ddpm", *DDPM_ARGS, "--max-steps", "2", "--run", "two")
    two = data / "runs" / "ddpm" / "two"
    # The same global batches and noise: the weights of one process, up to float rounding.
    assert_close(two / "checkpoint.safetensors", half.run.checkpoint_path)
    # Rank 0 alone writes: one config, one checkpoint, one log line per step, one grid, one summary.
    assert sorted(p.name for p in two.iterdir()) == ["checkpoint.safetensors", "config.json", "metrics.jsonl", "samples"]
    assert steps_logged(two) == [1, 2]
    assert [p.name for p in (two / "samples").iterdir()] == ["step-00000002.png"]
    assert proc.stdout.count("ddpm run two") == 1
    assert json.loads((two / "config.json").read_text())["processes"] == 2

    # 2 processes -> 1: resume the two-process run in one process.
    resumed = train(data, "ddpm", {"max_steps": 4}, run_name="two", resume=True)
    assert resumed.step == 4 and steps_logged(two) == [1, 2, 3, 4]
    assert_close(two / "checkpoint.safetensors", straight.run.checkpoint_path)

    # 1 process -> 2: resume the one-process run with two.
    torchrun(data, "ddpm", "--run", "half", "--resume", "--max-steps", "4", "--device", "cpu", "-q")
    assert steps_logged(half.run.path) == [1, 2, 3, 4]
    assert_close(half.run.checkpoint_path, straight.run.checkpoint_path)
    assert load_checkpoint(half.run.checkpoint_path).meta["step"] == 4


def test_nproc_shortcut_and_the_vae_with_sync_batchnorm(data: Path) -> None:
    """`ganji train --nproc 2`: the VAE's BatchNorm layers see the global batch (SyncBatchNorm).

    Its losses are those of one process. The weights are not compared: a ReLU after BatchNorm
    turns a last-bit difference between two BatchNorm implementations into a whole gradient
    element now and then (test_sync_batchnorm checks the layer itself, to float precision).
    """
    one = train(data, "vae", {**VAE, "max_steps": 2}, run_name="one")
    command = [sys.executable, "-m", "ganji", "train", "vae", *VAE_ARGS, "--max-steps", "2", "--nproc", "2", "--run", "two"]
    proc = subprocess.run(command, env=_env(data), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("vae run two") == 1
    two = data / "runs" / "vae" / "two"
    a, b = records(one.run.path), records(two)
    assert [r["step"] for r in b] == [1, 2]
    for ra, rb in zip(a, b):
        for key in ("loss", "recon", "kl"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4), (key, ra, rb)
    assert load_checkpoint(two / "checkpoint.safetensors").meta["step"] == 2


def test_gan_with_gradient_penalty_and_batchnorm_under_two_processes(data: Path) -> None:
    """DCGAN (BatchNorm in G and D) with hinge + gradient penalty and 2 D steps: DDP on two
    networks with their own optimisers, a double backward through SyncBatchNorm."""
    one = train(data, "gan", {**GAN, "max_steps": 3}, run_name="one")
    torchrun(data, "gan", *GAN_ARGS, "--max-steps", "3", "--run", "two")
    two = data / "runs" / "gan" / "two"
    got = records(two)
    assert [r["step"] for r in got] == [1, 2, 3]
    assert all(math.isfinite(r[k]) for r in got for k in ("loss_d", "loss_g", "d_acc"))
    ckpt = load_checkpoint(two / "checkpoint.safetensors")
    assert ckpt.meta["step"] == 3 and set(ckpt.nets) == {"generator", "discriminator"}
    # The first step's losses are one process's.
    first = records(one.run.path)[0]
    for key in ("loss_d", "loss_g"):
        assert got[0][key] == pytest.approx(first[key], rel=1e-3), (key, first, got[0])


SYNC_BN_CHECK = r"""
import torch, torch.distributed as dist
from torch import nn
from ganji.runtime.distributed import SyncBatchNorm, convert_sync_batchnorm

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
N = 8
x = torch.randn(N, 3, 5, 5) * 2 + 0.5
net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4),
                    nn.Flatten(), nn.Linear(36, 1))
sync = convert_sync_batchnorm(__import__("copy").deepcopy(net))
assert isinstance(sync[1], SyncBatchNorm) and sync[1].weight is not net[1].weight


def loss_of(model, inputs):
    # A mean over the batch plus a WGAN-GP style gradient penalty: a double backward through BatchNorm.
    inputs = inputs.clone().requires_grad_(True)
    out = model(inputs)
    (grad,) = torch.autograd.grad(out.sum(), inputs, create_graph=True)
    return out, out.mean() + ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


ref_out, ref_loss = loss_of(net, x)  # one process, the whole batch
ref_loss.backward()
b = N // world
out, loss = loss_of(sync, x[rank * b : (rank + 1) * b])  # this rank's share
loss.backward()
torch.testing.assert_close(out, ref_out[rank * b : (rank + 1) * b], rtol=1e-5, atol=1e-6)
for (name, p), q in zip(sync.named_parameters(), net.parameters()):
    grad = p.grad.clone()
    dist.all_reduce(grad)  # DDP's average of the ranks' gradients
    torch.testing.assert_close(grad / world, q.grad, rtol=1e-4, atol=1e-6, msg=name)
for name, buf in sync.named_buffers():
    torch.testing.assert_close(buf, dict(net.named_buffers())[name], rtol=1e-5, atol=1e-6, msg=name)
sync.eval(), net.eval()
torch.testing.assert_close(sync(x), net(x))  # in eval mode: running statistics, no collective
dist.destroy_process_group()
print("sync batchnorm ok")
"""


def test_sync_batchnorm(tmp_path: Path) -> None:
    """Two ranks' SyncBatchNorm = BatchNorm2d on the whole batch: outputs, gradients (through a
    gradient penalty's double backward), running statistics."""
    script = tmp_path / "sync_bn_check.py"
    script.write_text(SYNC_BN_CHECK)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    proc = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("sync batchnorm ok") == 2


def test_nproc_errors_are_one_line_and_start_no_run(data: Path) -> None:
    command = [sys.executable, "-m", "ganji", "train", "vae", *VAE_ARGS, "--batch-size", "15", "--nproc", "2", "--run", "odd"]
    proc = subprocess.run(command, env=_env(data), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: --batch-size 15 is the global batch and must be divisible by the number of processes (2): use a multiple of 2, e.g. 14"
    ]
    assert not (data / "runs" / "vae" / "odd").exists()


def test_nproc_checks_the_devices_once_before_starting_processes(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    command = [sys.executable, "-m", "ganji", "train", "vae", *VAE_ARGS, "--device", "cuda", "--nproc", "2", "--run", "gpu"]
    proc = subprocess.run(command, env={**_env(data), "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: --device cuda was asked for but no CUDA GPU is available; use --device cpu or auto"]
    # More processes than GPUs (a machine with one GPU, as torch would report it).
    from ganji.train.launch import check_devices_for

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(GanjiError, match=r"--nproc 2 needs one GPU per process but this machine has 1: use --nproc 1 or --device cpu"):
        check_devices_for(2, "auto")
    check_devices_for(2, "cpu")  # CPU processes need no GPU
