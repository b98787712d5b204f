"""Never lose work: kill -9 a training run again and again, resume it each time, get the same model.

A tiny VAE (with EMA) on 32 kanji at 16 px, 2 steps an epoch, a checkpoint every epoch and a grid
every few, trains in a subprocess that is killed with SIGKILL at random (seeded) moments: during
start-up, while it trains, while it writes. After every kill, every checkpoint on disk must load;
then `--resume` (or a fresh start if the run had not even written its config) continues it. The
finished run must equal an uninterrupted one bit for bit (weights, EMA, optimiser state), with
one metrics record per step and no temporary files left behind.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import make_kanji
from safetensors.torch import load_file

from ganji.runtime.checkpoint import load_checkpoint

EPOCHS = 40  # 80 steps
ARGS = ["--dataset", "kanji16", "--epochs", str(EPOCHS), "--batch-size", "16", "--latent-dim", "8", "--base-width", "8",
        "--ema-decay", "0.9", "--log-every", "1", "--sample-every", "4", "--checkpoint-every", "1", "--device", "cpu", "-q"]
KILLS = 10


def _start(home: Path, run: str, resume: bool) -> subprocess.Popen:
    env = {**os.environ, "GANJI_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = ["--run", run, "--resume", "-q"] if resume else [*ARGS, "--run", run]
    return subprocess.Popen([sys.executable, "-m", "ganji", "train", "vae", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _last_step(metrics: Path) -> int:
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _checkpoint_step(run: Path) -> int:
    path = run / "checkpoint.safetensors"
    return int(load_checkpoint(path).meta["step"]) if path.is_file() else 0


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(path)).items() if k.startswith(("net.", "ema.", "opt.", "rng."))}


def test_kill_9_and_resume_until_done_gives_the_uninterrupted_model(home: Path) -> None:
    make_kanji(home, name="kanji16", size=16, limit=32)
    total = EPOCHS * 2

    ref = _start(home, "straight", resume=False)  # the uninterrupted run, alongside
    straight = home / "runs" / "vae" / "straight"

    rng = random.Random(20261122)
    run = home / "runs" / "vae" / "soak"
    kills, starts, completed_by_a_run = 0, 0, False
    deadline = time.monotonic() + 240
    while True:
        assert time.monotonic() < deadline, f"still not done after {kills} kills and {starts} starts"
        if _checkpoint_step(run) == total:
            break  # killed after the last checkpoint: nothing is left to train
        before = _inode(run / "metrics.jsonl")
        proc = _start(home, "soak", resume=(run / "config.json").is_file())
        starts += 1
        if kills >= KILLS:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            completed_by_a_run = True
            break
        if kills % 4 == 0:
            # Now and then during start-up: before or while it writes its config, or reads its checkpoint.
            time.sleep(rng.uniform(0.2, 2.5))
        else:
            # Mostly once it trains, a random moment later: in a step, a checkpoint or a grid. (It
            # trains once its log, rewritten at start-up without the records past its checkpoint,
            # has a record past the checkpoint.)
            begin = _checkpoint_step(run)
            while proc.poll() is None and (_inode(run / "metrics.jsonl") == before or _last_step(run / "metrics.jsonl") <= begin):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is not None:  # it finished before the kill
            assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
            completed_by_a_run = True
            break
        proc.kill()  # SIGKILL: no handler, no last checkpoint
        proc.wait()
        kills += 1
        # Whatever the moment, every checkpoint on disk is whole and loads.
        for path in run.glob("*.safetensors"):
            assert load_checkpoint(path).meta["step"] <= total, path
        if (run / "config.json").is_file():
            json.loads((run / "config.json").read_text())

    assert kills >= KILLS
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    a, b = _weights(straight / "checkpoint.safetensors"), _weights(run / "checkpoint.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # One log record per step, none lost or repeated; no temporary file left behind.
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, total + 1))
    if completed_by_a_run:  # (a run cleans up what killed writes left behind when it starts)
        assert not [p.name for p in run.rglob(".*.tmp")]
    # The grids that were drawn are the uninterrupted run's.
    for grid in (run / "samples").iterdir():
        assert grid.read_bytes() == (straight / "samples" / grid.name).read_bytes(), grid.name
