"""Checkpoints as safetensors + JSON: never pickle.

One `.safetensors` file holds every tensor of a run's state, under prefixed keys:
`net.<network>.<key>` (weights and buffers), `ema.<network>.<key>`, `opt.<optimiser>.<param>.<key>`
(Adam moments and step counters) and `rng.<device>` (generator states). Everything that is not a
tensor (step, epoch, optimiser hyper-parameters, scheduler state, the run's config) is JSON in the
file's header metadata under the key "ganji". Files are written atomically (temp file + rename), so
a crash or a full disk never leaves a half-written checkpoint in place of the previous one.

Reading is as careful as writing: only a missing path means "no checkpoint" (`checkpoint_exists`);
a folder, a dangling symlink, a device or a FIFO there is an error, never opened. The header is
checked before any tensor is read (`read_safetensors_header`): its JSON must be a plain object, not
nested past reason, without NaN or Infinity, and the tensors it declares must fit the file and this
machine's memory. `checkpoint_shapes` gives the tensor shapes from the header alone, so that a
caller can check them against the model a checkpoint describes before building that model.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ganji.atomic import file_kind, write_atomic
from ganji.errors import GanjiError

FORMAT = 1
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on the JSON header
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as a safetensors header declares it."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int


def strict_json(text: str | bytes) -> Any:
    """json.loads that refuses NaN and Infinity and turns nesting too deep to parse into a ValueError."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"non-finite number {constant} in JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def memory_bytes() -> int | None:
    """This machine's physical memory, when the platform says."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def read_safetensors_header(path: Path, what: str = "file") -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """(tensors, metadata) from a safetensors file's header, reading nothing else; a GanjiError when
    the path is not a regular file or the header is damaged or promises more than the file holds."""
    path = Path(path)
    kind = file_kind(path)
    if kind is not None or not os.path.lexists(path):
        raise GanjiError(f"{what} {path} is {kind or 'missing'}, not a safetensors file")
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("shorter than a header")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or n > size - 8:
                raise ValueError(f"header of {n:,} bytes in a file of {size:,}")
            raw = f.read(n)
    except OSError as exc:
        raise GanjiError(f"{what} {path} is unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise GanjiError(f"{what} {path} is not a safetensors file or is damaged ({exc})") from None
    try:
        header = strict_json(raw)
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError("its metadata is not a map of strings")
        tensors: dict[str, TensorInfo] = {}
        data_bytes = size - 8 - n
        for name, entry in header.items():
            if not isinstance(entry, dict):
                raise ValueError(f"tensor {name!r} is not described by an object")
            dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
            if dtype not in DTYPE_BYTES:
                raise ValueError(f"tensor {name!r} has dtype {dtype!r}")
            if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) or len(shape) > 16:
                raise ValueError(f"tensor {name!r} has shape {str(shape)[:80]}")
            nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
            if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                    or not 0 <= offsets[0] <= offsets[1] <= data_bytes or offsets[1] - offsets[0] != nbytes):
                raise ValueError(f"tensor {name!r} of shape {tuple(shape)} does not fit the file's {data_bytes:,} data bytes")
            tensors[name] = TensorInfo(dtype, tuple(shape), nbytes)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise GanjiError(f"{what} {path} is not a safetensors file or is damaged ({_short(exc)})") from None
    return tensors, metadata


def checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of a checkpoint, by key ("net.decoder.fc.weight", ...), from its header
    alone: nothing is allocated, whatever the header claims. A GanjiError for anything but a readable
    safetensors file."""
    tensors, _ = read_safetensors_header(Path(path), "checkpoint")
    return {name: info.shape for name, info in tensors.items()}


def check_checkpoint_shapes(path: Path, expected: dict[str, tuple[int, ...]], prefix: str = "net.") -> None:
    """A one-line GanjiError unless every tensor of `expected` (keys without `prefix`, e.g. a model's
    state_dict shapes, as built on the "meta" device) has that shape in the checkpoint's header."""
    have = checkpoint_shapes(path)
    for key, shape in expected.items():
        got = have.get(prefix + key)
        if got is None:
            raise GanjiError(f"checkpoint {path} lacks {prefix + key} ({tuple(shape)}): its config does not describe its weights")
        if tuple(got) != tuple(shape):
            raise GanjiError(
                f"checkpoint {path}: {prefix + key} is {tuple(got)} but its config describes {tuple(shape)} "
                "(damaged or edited config?)"
            )


def checkpoint_exists(path: Path) -> bool:
    """Whether there is a checkpoint to resume or sample from: False only when nothing is at `path`;
    True for a regular file (or a symlink to one); a one-line GanjiError for anything else (a folder,
    a dangling symlink, a device, a FIFO), which must not be taken for "no checkpoint yet"."""
    path = Path(path)
    if not os.path.lexists(path):
        return False
    kind = file_kind(path)
    if kind is not None:
        raise GanjiError(f"{path} is {kind}, not a checkpoint file: move it away (nothing was changed)")
    return True


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
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        # A file that safetensors reads but whose keys or header ganji cannot make sense of.
        raise GanjiError(f"{path} is not a ganji checkpoint or is damaged ({_short(exc)})") from None


def _load_checkpoint(path: Path) -> CheckpointData:
    if not checkpoint_exists(path):
        raise GanjiError(f"no checkpoint at {path}")
    # The header first: its JSON and what it promises, before safetensors reads any tensor.
    try:
        declared, _ = read_safetensors_header(path, "checkpoint")
    except GanjiError as exc:
        raise GanjiError(f"{str(exc).replace('is not a safetensors file or is damaged', 'is unreadable')}") from None
    total = sum(info.nbytes for info in declared.values())
    memory = memory_bytes()
    if memory is not None and total > memory:
        raise GanjiError(f"checkpoint {path} is unreadable (its tensors would take {total:,} bytes, more than this machine's memory)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise GanjiError(f"checkpoint {path} is unreadable ({_short(exc)})") from None
    try:
        meta = strict_json(header["ganji"])
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
