"""Checkpoints and atomic writes: round trips, damage detection, failing writes keep the old file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from ganji.atomic import write_atomic, write_json_atomic
from ganji.errors import GanjiError
from ganji.runtime.checkpoint import CheckpointData, load_checkpoint, save_checkpoint
from ganji.recipes import config_from_json, spec


def sample_data() -> CheckpointData:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.0, 0.99))
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return CheckpointData(
        nets={"net": net.state_dict()},
        emas={"net": {k: v + 1 for k, v in net.state_dict().items()}},
        optimizers={"net": opt.state_dict()},
        rng={"cpu": torch.get_rng_state()},
        meta={"model": "vae", "step": 7, "schedulers": {"net": {"last_epoch": 7, "_last_lr": [0.001]}}},
    )


def test_round_trip(tmp_path: Path) -> None:
    data = sample_data()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, data)
    back = load_checkpoint(path)
    assert back.meta["step"] == 7 and back.meta["schedulers"] == data.meta["schedulers"]
    for k, v in data.nets["net"].items():
        assert torch.equal(back.nets["net"][k], v)
        assert torch.equal(back.emas["net"][k], data.emas["net"][k])
    assert torch.equal(back.rng["cpu"], data.rng["cpu"])
    # The optimiser state loads into a fresh optimiser and matches tensor for tensor.
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    opt.load_state_dict(back.optimizers["net"])
    want = data.optimizers["net"]
    for idx, state in want["state"].items():
        for key, value in state.items():
            assert torch.equal(opt.state_dict()["state"][idx][key], value)
    assert tuple(opt.param_groups[0]["betas"]) == (0.0, 0.99)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "no-header"])
def test_damaged_checkpoints_are_clear_errors(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, sample_data())
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(GanjiError):
        load_checkpoint(path)


def test_failing_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, sample_data())
    before = path.read_bytes()

    def disk_full(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(path, disk_full)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp file left behind
    assert load_checkpoint(path).meta["step"] == 7


def test_config_round_trip_and_edits(tmp_path: Path) -> None:
    cfg = spec("gan").config(options={"loss": "lsgan", "layers": (64, 32)})
    assert config_from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    bad_values = [
        {"epochs": "ten"},
        {"model": "transformer"},
        {"surprise": 1},
        {"options": {"loss": "nope"}},
        {"options": {"wings": 2}},
        {"lr": -1},
    ]
    for edit in bad_values:
        data = cfg.to_json()
        if "options" in edit:
            data["options"] = {**data["options"], **edit["options"]}
        else:
            data.update(edit)
        with pytest.raises(GanjiError):
            config_from_json(data)


def test_write_json_atomic(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.json"
    write_json_atomic(path, {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}


def test_optimizer_state_gets_the_parameters_layout_back() -> None:
    """Resuming a channels_last run (CUDA) needs Adam's moments in the parameters' strides."""
    from ganji.recipes.base import match_parameter_layout

    conv = torch.nn.Conv2d(2, 4, 3).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(conv.parameters())
    conv(torch.randn(1, 2, 5, 5)).sum().backward()
    opt.step()
    path_state = opt.state_dict()
    for st in path_state["state"].values():  # what a checkpoint gives back: contiguous tensors
        for k, v in st.items():
            st[k] = v.contiguous()
    fresh = torch.optim.Adam(conv.parameters())
    fresh.load_state_dict(path_state)
    match_parameter_layout(fresh)
    for p in conv.parameters():
        for k in ("exp_avg", "exp_avg_sq"):
            assert fresh.state[p][k].stride() == p.stride()
            assert torch.equal(fresh.state[p][k], opt.state[p][k])


def test_a_runs_leftover_temporaries_are_found_by_the_atomic_writers_naming(tmp_path: Path) -> None:
    """What a write killed mid-way leaves (write_atomic's own temporary name) is removed when the
    run starts again; the run's files and anything not ganji's stay."""
    import tempfile

    from ganji.runs import Run, remove_stale_temporaries

    run = Run("vae", "r", tmp_path / "r")
    run.samples_dir.mkdir(parents=True)
    run.checkpoint_path.write_bytes(b"ckpt")
    left = []
    for path in (run.checkpoint_path, run.metrics_path, run.samples_dir / "step-00000004.png"):
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # as write_atomic names it
        os.close(fd)
        left.append(Path(name))
    foreign = run.path / ".notes.txt.abc.tmp"
    foreign.write_text("mine")
    remove_stale_temporaries(run)
    assert not any(p.exists() for p in left)
    assert foreign.exists() and run.checkpoint_path.read_bytes() == b"ckpt"
