"""Checkpoints as safetensors + JSON: never pickle.

One `.safetensors` file holds every tensor of a run's state, under prefixed keys:
`net.<network>.<key>` (weights and buffers), `ema.<network>.<key>`, `opt.<optimiser>.<param>.<key>`
(Adam moments and step counters) and `rng.<device>` (generator states). Everything that is not a
tensor (step, epoch, optimiser hyper-parameters, scheduler state, the run's config) is JSON in the
file's header metadata under the key "ganji". Files are written atomically (temp file + rename), so
a crash or a full disk never leaves a half-written checkpoint in place of the previous one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ganji.atomic import write_atomic
from ganji.errors import GanjiError

FORMAT = 1


@dataclass
class CheckpointData:
    """What a checkpoint file holds, split into tensors by section and the JSON header."""

    nets: dict[str, dict[str, torch.Tensor]]
    emas: dict[str, dict[str, torch.Tensor]]
    optimizers: dict[str, dict[str, Any]]  # optimiser state_dicts, ready for load_state_dict
    rng: dict[str, torch.Tensor]
    meta: dict[str, Any]  # step, epoch, model, image_size, channels, config, schedulers, ...


def save_checkpoint(path: Path, data: CheckpointData) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for section, groups in (("net", data.nets), ("ema", data.emas)):
        for net, state in groups.items():
            for key, t in state.items():
                tensors[f"{section}.{net}.{key}"] = t.detach().contiguous().cpu()
    opt_json: dict[str, Any] = {}
    for name, sd in data.optimizers.items():
        per_param: dict[str, dict[str, Any]] = {}
        for idx, st in sd["state"].items():
            scalars = {}
            for key, value in st.items():
                if torch.is_tensor(value):
                    tensors[f"opt.{name}.{idx}.{key}"] = value.detach().contiguous().cpu()
                else:
                    scalars[key] = value
            per_param[str(idx)] = scalars
        opt_json[name] = {"param_groups": sd["param_groups"], "scalars": per_param}
    for dev, state in data.rng.items():
        tensors[f"rng.{dev}"] = state.contiguous().cpu()
    meta = {"format": FORMAT, **data.meta, "optimizers": opt_json}
    header = {"ganji": json.dumps(meta)}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def load_checkpoint(path: Path) -> CheckpointData:
    """Read a checkpoint; any damage (truncation, garbage, missing header) is a clear GanjiError."""
    try:
        return _load_checkpoint(Path(path))
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        # A file that safetensors reads but whose keys or header ganji cannot make sense of.
        raise GanjiError(f"{path} is not a ganji checkpoint or is damaged ({_short(exc)})") from None


def _load_checkpoint(path: Path) -> CheckpointData:
    if not path.is_file():
        raise GanjiError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise GanjiError(f"checkpoint {path} is unreadable ({_short(exc)})") from None
    try:
        meta = json.loads(header["ganji"])
        if not isinstance(meta, dict):
            raise ValueError("its header is not a JSON object")
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
    except (KeyError, ValueError, TypeError) as exc:
        raise GanjiError(f"{path} is not a ganji checkpoint ({_short(exc)})") from None
    nets: dict[str, dict[str, torch.Tensor]] = {}
    emas: dict[str, dict[str, torch.Tensor]] = {}
    opt_tensors: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    rng: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        section, _, rest = key.partition(".")
        if section in ("net", "ema"):
            net, _, sub = rest.partition(".")
            (nets if section == "net" else emas).setdefault(net, {})[sub] = t
        elif section == "opt":
            name, idx, sub = rest.split(".", 2)
            opt_tensors.setdefault(name, {}).setdefault(int(idx), {})[sub] = t
        elif section == "rng":
            rng[rest] = t
    optimizers: dict[str, dict[str, Any]] = {}
    for name, js in meta.pop("optimizers", {}).items():
        state: dict[int, dict[str, Any]] = {}
        for idx_s, scalars in js["scalars"].items():
            idx = int(idx_s)
            state[idx] = {**scalars, **opt_tensors.get(name, {}).get(idx, {})}
        optimizers[name] = {"state": state, "param_groups": js["param_groups"]}
    return CheckpointData(nets=nets, emas=emas, optimizers=optimizers, rng=rng, meta=meta)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else exc.__class__.__name__
