"""Run folders: `runs/MODEL/RUN/` with config.json, checkpoint.safetensors, metrics.jsonl, samples/."""

from __future__ import annotations

import glob
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganji.atomic import leftover_temporaries
from ganji.errors import GanjiError
from ganji.home import runs_dir

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
BEST_CHECKPOINT_FILE = "best.safetensors"  # the lowest FID seen by --eval-every
METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Run:
    model: str
    name: str
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def best_checkpoint_path(self) -> Path:
        return self.path / BEST_CHECKPOINT_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def samples_dir(self) -> Path:
        return self.path / SAMPLES_DIR


def check_run_name(name: str) -> str:
    if not _NAME.match(name):
        raise GanjiError(f"invalid run name {name!r}: use letters, digits, '.', '_' or '-' (up to 100)")
    return name


def new_run_name() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def list_runs(home: Path, model: str) -> list[Run]:
    """Runs of `model` that have a config, oldest first (by the time they were created)."""
    folder = runs_dir(home) / model
    if not folder.is_dir():
        return []
    found: list[tuple[float, str, Run]] = []
    for path in folder.iterdir():
        cfg = path / CONFIG_FILE
        if path.is_dir() and cfg.is_file():
            try:
                created = float(json.loads(cfg.read_text("utf-8")).get("created", 0.0))
            except (ValueError, OSError, AttributeError, TypeError):
                created = cfg.stat().st_mtime
            found.append((created, path.name, Run(model, path.name, path)))
    return [run for _, _, run in sorted(found, key=lambda item: (item[0], item[1]))]


def find_run(home: Path, model: str, name: str | None = None) -> Run:
    """The named run of `model`, or its latest; a clear error with the command to train one."""
    if name is not None:
        check_run_name(name)
        path = runs_dir(home) / model / name
        if not (path / CONFIG_FILE).is_file():
            known = ", ".join(r.name for r in list_runs(home, model)) or "none"
            raise GanjiError(f"no {model} run named {name!r} in {runs_dir(home) / model} (runs: {known})")
        return Run(model, name, path)
    runs = list_runs(home, model)
    if not runs:
        raise GanjiError(f"no trained {model} run in {runs_dir(home) / model}: train one with `ganji train {model}`")
    return runs[-1]


def read_run_config(run: Run) -> dict[str, Any]:
    """A run's config.json as written by `ganji train`; a clear error if it was damaged or edited badly."""
    try:
        data = json.loads(run.config_path.read_text("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise ValueError("no 'config' object")
        if not isinstance(data.get("dataset", {}), dict):
            raise ValueError("'dataset' is not an object")
        return data
    except (ValueError, UnicodeDecodeError) as exc:
        raise GanjiError(f"{run.config_path} is not a valid run config ({exc})") from None


def create_run(home: Path, model: str, name: str | None) -> Run:
    name = check_run_name(name) if name else new_run_name()
    path = runs_dir(home) / model / name
    if (path / CONFIG_FILE).exists():
        raise GanjiError(f"run {model}/{name} already exists: add --resume to continue it, or choose another --run")
    path.mkdir(parents=True, exist_ok=True)
    return Run(model, name, path)


def remove_stale_temporaries(run: Run) -> None:
    """Delete what interrupted atomic writes of this run's files left behind (the files themselves are intact)."""
    found = [tmp for path in (run.config_path, run.checkpoint_path, run.best_checkpoint_path, run.metrics_path)
             for tmp in leftover_temporaries(path.parent, glob.escape(path.name))]
    found += leftover_temporaries(run.samples_dir, "step-*")
    for path in found:
        try:
            path.unlink()
        except OSError:
            pass


def discard_unstarted_run(run: Run) -> None:
    """Remove the folder of a new run that failed to start (bad options, no GPU, ...), if it holds no checkpoint."""
    if run.checkpoint_path.exists():
        return
    for path in (run.config_path, run.metrics_path):
        path.unlink(missing_ok=True)
    for folder in (run.samples_dir, run.path):
        try:
            folder.rmdir()  # only when empty: anything else in it stays
        except OSError:
            pass
