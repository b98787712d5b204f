"""The on-disk dataset format shared by every source.

A prepared dataset is a folder `datasets/NAME/` holding
- `images.safetensors`: `images` (uint8, N x C x H x W, ink bright on dark) and optionally `labels`
  (int64, N: a class per image) and `components` (uint8, N x V: which of a vocabulary of V
  (component, position) pairs each image's character is built from, see ganji.data.components);
- `manifest.json`: where the images came from, their count and size, and the sha256 of the image
  tensor's bytes, so that a damaged or edited file is caught at load time (with components: their
  vocabulary, provenance and sha256 under "components");
- `preview.png`: a grid of the first images, for people.

The manifest is written last: a folder without one is not a prepared dataset.

A dataset is replaced (`fetch-data --force`) by a swap that the next command finishes or undoes if
the process dies half-way (`recover_dataset`), under a per-dataset OS lock (`dataset_lock`) that
makes two builds of one name exclusive. Loading checks the tensor header against the manifest
before reading a byte of images, so a header that promises a terabyte is refused, not read.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ganji.atomic import ExclusiveLock, file_kind, write_atomic, write_json_atomic
from ganji.errors import GanjiError
from ganji.home import datasets_dir
from ganji.runtime.checkpoint import memory_bytes, read_safetensors_header, strict_json

IMAGES_FILE = "images.safetensors"
MANIFEST_FILE = "manifest.json"
PREVIEW_FILE = "preview.png"
FORMAT_VERSION = 1


@dataclass
class Dataset:
    """A prepared dataset in memory."""

    name: str
    path: Path
    images: torch.Tensor  # uint8, N x C x H x W, ink bright
    labels: torch.Tensor | None
    manifest: dict[str, Any]
    components: torch.Tensor | None = None  # uint8, N x V multi-hot over `component_vocabulary`

    @property
    def component_vocabulary(self) -> list[str] | None:
        """The (component, position) keys the columns of `components` stand for, or None without labels."""
        if self.components is None:
            return None
        return list(self.manifest["components"]["vocabulary"])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])


_NAME = re.compile(r"[^\W_][\w.-]{0,99}")  # matched whole: a plain visible name, never a hidden one


def check_dataset_name(name: str) -> str:
    """A plain visible name: a letter or digit, then letters, digits, '-', '_' or '.' (up to 100)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise GanjiError(f"invalid dataset name {name!r}: use letters, digits, '-', '_' or '.' (up to 100), starting with a letter or digit")
    return name


def dataset_name_from(text: str) -> str | None:
    """A valid dataset name made from a folder or file name (runs of other characters become '-'), if any."""
    name = re.sub(r"[^\w.-]+", "-", text).lstrip("._-")[:100].rstrip("-")
    return name if name and _NAME.fullmatch(name) else None


def dataset_path(home: Path, name: str) -> Path:
    return datasets_dir(home) / check_dataset_name(name)


def dataset_lock(home: Path, name: str) -> ExclusiveLock:
    """The OS lock that makes building (and recovering) dataset `name` exclusive; not yet taken."""
    folder = dataset_path(home, name)

    def busy(pid: int | None) -> str:
        who = f"process {pid}" if pid is not None else "another process"
        return f"dataset {name!r} is being prepared by {who}: wait for it to finish"

    return ExclusiveLock(folder.with_name(f".{name}.lock"), busy, report_as=folder)


def leftovers(home: Path, name: str) -> dict[str, list[Path]]:
    """What interrupted builds of dataset `name` left beside it, by kind, newest last: "building"
    (incomplete), "new" (complete, not yet swapped in), "old" (the previous dataset, moved aside)."""
    parent = datasets_dir(home)
    pattern = re.compile(rf"\.{re.escape(name)}\.(\d+|[A-Za-z0-9_]+)\.(building|new|old)")
    found: dict[str, list[Path]] = {"building": [], "new": [], "old": []}
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return found
    for path in entries:
        match = pattern.fullmatch(path.name)
        if match:
            found[match.group(2)].append(path)
    for kind in ("new", "old"):
        found[kind].sort(key=lambda p: int(p.name.split(".")[-2]) if p.name.split(".")[-2].isdigit() else 0)
    return found


def recover_dataset(home: Path, name: str) -> None:
    """Finish or undo a swap that a killed `fetch-data --force` left half-done, and remove what
    interrupted builds left behind. Call it holding `dataset_lock(home, name)`.

    With the dataset missing, a complete new build waiting to be swapped in is moved into place
    (finished); failing that, the previous dataset moved aside is moved back (undone).
    """
    final = dataset_path(home, name)
    found = leftovers(home, name)
    if not os.path.lexists(final):
        for candidate in [*reversed(found["new"]), *reversed(found["old"])]:
            if (candidate / MANIFEST_FILE).is_file():
                candidate.rename(final)
                break
    for kind in ("building", "new", "old"):
        for path in found[kind]:
            if path.exists() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)


def _try_recover(home: Path, name: str) -> None:
    """Recover a half-done swap and remove what killed builds left, if there is any such thing and no
    build of `name` is running; quietly nothing when the home is read-only or another process holds
    the lock (it recovers itself)."""
    if not any(leftovers(home, name).values()):
        return
    lock = dataset_lock(home, name)
    try:
        with lock:
            recover_dataset(home, name)
    except (GanjiError, OSError):
        pass


def is_prepared(home: Path, name: str) -> bool:
    manifest = dataset_path(home, name) / MANIFEST_FILE
    _try_recover(home, name)
    return manifest.is_file() and file_kind(manifest) is None


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of a tensor's raw bytes in C order (what determinism tests compare)."""
    return hashlib.sha256(t.contiguous().cpu().numpy().tobytes()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_dataset(
    folder: Path,
    images: torch.Tensor,
    manifest: dict[str, Any],
    labels: torch.Tensor | None = None,
    components: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Write images (+ labels, + component labels) and the manifest atomically; returns the manifest
    as written.

    Adds the fields every dataset has: format, count, channels, size, sha256 of the image tensor;
    with `components` (uint8 N x V), the manifest must hold their vocabulary under
    manifest["components"]["vocabulary"] (V keys), and their sha256 is added beside it.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError("images must be a uint8 tensor of shape N x C x H x W")
    if images.shape[-1] != images.shape[-2]:
        raise GanjiError(f"images must be square (got {images.shape[-2]} x {images.shape[-1]} px)")
    if len(images) == 0:
        raise GanjiError("no usable images: nothing to save")
    images = images.contiguous()
    tensors = {"images": images}
    if labels is not None:
        tensors["labels"] = labels.to(torch.int64).contiguous()
    if components is not None:
        vocabulary = (manifest.get("components") or {}).get("vocabulary")
        if components.dtype != torch.uint8 or components.shape != (len(images), len(vocabulary or ())):
            raise ValueError("components must be uint8 N x V, with the V vocabulary keys in manifest['components']")
        tensors["components"] = components.contiguous()
        manifest = {**manifest, "components": {**manifest["components"], "sha256": tensor_sha256(tensors["components"])}}
    full = {
        "format": FORMAT_VERSION,
        **manifest,
        "count": int(images.shape[0]),
        "channels": int(images.shape[1]),
        "size": int(images.shape[-1]),
        "images_sha256": tensor_sha256(images),
    }
    folder.mkdir(parents=True, exist_ok=True)
    # Remove a stale manifest first, so that a crash between the two writes never leaves a manifest
    # that describes other images.
    (folder / MANIFEST_FILE).unlink(missing_ok=True)
    write_atomic(folder / IMAGES_FILE, lambda tmp: save_file(tensors, str(tmp)))
    write_json_atomic(folder / MANIFEST_FILE, full)
    return full


def load_manifest(home: Path, name: str) -> dict[str, Any]:
    path = dataset_path(home, name) / MANIFEST_FILE
    if not is_prepared(home, name):
        kind = file_kind(path)
        if kind is not None:
            raise GanjiError(f"dataset {name!r}: manifest {path} is {kind}; rebuild it with `ganji fetch-data --force`")
        raise GanjiError(f"dataset {name!r} is not prepared in {datasets_dir(home)}: run `ganji fetch-data`")
    try:
        manifest = strict_json(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        kind = exc.__class__.__name__ if not str(exc).startswith(("JSON nested", "non-finite")) else str(exc)
        raise GanjiError(
            f"dataset {name!r}: manifest {path} is not valid JSON ({kind}); "
            "rebuild it with `ganji fetch-data --force`"
        ) from None
    except OSError as exc:
        raise GanjiError(f"dataset {name!r}: cannot read manifest {path} ({exc.strerror})") from None
    if not isinstance(manifest, dict):
        raise GanjiError(f"dataset {name!r}: manifest {path} is not a JSON object; rebuild it with `ganji fetch-data --force`")
    return manifest


def load_dataset(home: Path, name: str, verify: bool = True) -> Dataset:
    """Load a prepared dataset; with `verify`, check the tensor against the manifest's sha256."""
    manifest = load_manifest(home, name)
    folder = dataset_path(home, name)
    path = folder / IMAGES_FILE
    rebuild = "rebuild it with `ganji fetch-data --force`"
    try:
        declared, _ = read_safetensors_header(path, "images file")
    except GanjiError as exc:
        detail = str(exc).split(" (", 1)[1].rstrip(")") if " (" in str(exc) else str(exc)
        raise GanjiError(f"dataset {name!r}: cannot read {path} ({detail}); {rebuild}") from None
    _check_declared(name, path, declared, manifest)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GanjiError(f"dataset {name!r}: cannot read {path} ({exc}); {rebuild}") from None
    images = tensors.get("images")
    if images is None or images.dtype != torch.uint8 or images.ndim != 4:
        raise GanjiError(f"dataset {name!r}: {IMAGES_FILE} holds no uint8 N x C x H x W 'images' tensor")
    if verify and tensor_sha256(images) != manifest.get("images_sha256"):
        raise GanjiError(
            f"dataset {name!r}: images do not match the sha256 in its manifest (damaged or edited); "
            "rebuild it with `ganji fetch-data --force`"
        )
    components = tensors.get("components")
    if verify and components is not None and tensor_sha256(components) != manifest["components"].get("sha256"):
        raise GanjiError(
            f"dataset {name!r}: component labels do not match the sha256 in its manifest (damaged or edited); "
            "rebuild it with `ganji fetch-data --force`"
        )
    return Dataset(name=name, path=folder, images=images, labels=tensors.get("labels"), manifest=manifest, components=components)


def _check_declared(name: str, path: Path, declared: dict[str, Any], manifest: dict[str, Any]) -> None:
    """The tensors a dataset file declares must be the ones its manifest describes (count, channels,
    square size), and fit in memory, before any of them is read."""
    rebuild = "rebuild it with `ganji fetch-data --force`"
    fields = {key: manifest.get(key) for key in ("count", "channels", "size")}
    bad = [key for key, value in fields.items() if type(value) is not int or value < 1]
    if bad:
        raise GanjiError(f"dataset {name!r}: its manifest has no valid {', '.join(bad)} (damaged or edited); {rebuild}")
    want = (fields["count"], fields["channels"], fields["size"], fields["size"])
    images = declared.get("images")
    if images is None or images.dtype != "U8" or len(images.shape) != 4:
        raise GanjiError(f"dataset {name!r}: {IMAGES_FILE} holds no uint8 N x C x H x W 'images' tensor")
    if images.shape[-1] != images.shape[-2]:
        raise GanjiError(
            f"dataset {name!r}: its images are not square ({images.shape[-2]} x {images.shape[-1]} px); {rebuild}"
        )
    if images.shape != want:
        raise GanjiError(
            f"dataset {name!r}: {path} declares images of shape {images.shape}, but its manifest says {want} "
            f"(damaged or edited); {rebuild}"
        )
    labels = declared.get("labels")
    if labels is not None and (labels.dtype != "I64" or labels.shape != (fields["count"],)):
        raise GanjiError(f"dataset {name!r}: {path} declares labels of shape {labels.shape}, not ({fields['count']},); {rebuild}")
    components = declared.get("components")
    if components is not None:
        described = manifest.get("components")
        vocabulary = described.get("vocabulary") if isinstance(described, dict) else None
        if not isinstance(vocabulary, list) or not all(isinstance(k, str) for k in vocabulary):
            raise GanjiError(f"dataset {name!r}: {path} holds component labels but its manifest has no vocabulary for them; {rebuild}")
        if components.dtype != "U8" or components.shape != (fields["count"], len(vocabulary)):
            raise GanjiError(
                f"dataset {name!r}: {path} declares component labels of shape {components.shape}, "
                f"not ({fields['count']}, {len(vocabulary)}); {rebuild}"
            )
    total = sum(info.nbytes for info in declared.values())
    memory = memory_bytes()
    if memory is not None and total > memory:
        raise GanjiError(f"dataset {name!r}: {path} holds {total:,} bytes of tensors, more than this machine's memory")
