"""Run folders: `runs/MODEL/RUN/` with config.json, checkpoint.safetensors, metrics.jsonl, samples/.

A run folder has one writer at a time: training holds `lock_run(run)` (an OS file lock on `.lock`
in the folder, which the kernel releases when the process dies) from before it reads or writes
anything of the run until it has finished; a second writer is refused with the holder's pid.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganji.atomic import ExclusiveLock, file_kind, leftover_temporaries
from ganji.errors import GanjiError
from ganji.home import runs_dir

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
BEST_CHECKPOINT_FILE = "best.safetensors"  # the lowest FID seen by --eval-every
METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"
LOCK_FILE = ".lock"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # matched whole (fullmatch: no trailing newline)


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

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE


def check_run_name(name: str) -> str:
    """A plain visible name: a letter or digit, then letters, digits, '.', '_' or '-' (no spaces,
    no hidden names, no control characters)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise GanjiError(f"invalid run name {name!r}: use letters, digits, '.', '_' or '-' (up to 100), starting with a letter or digit")
    return name


def new_run_name() -> str:
    """A timestamp name; `create_run` makes it unique (two runs started in one second never share one)."""
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
                if created != created:  # NaN sorts nowhere
                    raise ValueError("created is NaN")
            except (ValueError, OSError, AttributeError, TypeError, RecursionError, OverflowError):
                try:
                    created = cfg.stat().st_mtime
                except OSError:
                    continue
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
    kind = file_kind(run.config_path)
    if kind is not None:  # never open a FIFO or a device: reading it could block or never end
        raise GanjiError(f"{run.config_path} is {kind}, not a valid run config")
    try:
        data = json.loads(run.config_path.read_text("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise ValueError("no 'config' object")
        if not isinstance(data.get("dataset", {}), dict):
            raise ValueError("'dataset' is not an object")
        return data
    except (ValueError, UnicodeDecodeError) as exc:
        raise GanjiError(f"{run.config_path} is not a valid run config ({exc})") from None
    except RecursionError:
        raise GanjiError(f"{run.config_path} is not a valid run config (JSON nested too deeply)") from None


def create_run(home: Path, model: str, name: str | None) -> Run:
    """The folder of a new run. Without a name, a timestamp that no other run has: the folder is
    claimed with an exclusive mkdir, so two runs started in the same second get "...-HHMMSS" and
    "...-HHMMSS-2". A named run may exist only as an empty or unstarted folder (no config.json);
    `lock_run(run, new=True)` checks that again once it holds the run's lock."""
    parent = runs_dir(home) / model
    if not name:
        parent.mkdir(parents=True, exist_ok=True)
        stamp = new_run_name()
        for i in range(1, 10_000):
            candidate = stamp if i == 1 else f"{stamp}-{i}"
            try:
                os.mkdir(parent / candidate)
            except FileExistsError:
                continue
            return Run(model, candidate, parent / candidate)
        raise GanjiError(f"cannot find a free run name for {stamp} in {parent}: give one with --run")
    name = check_run_name(name)
    path = parent / name
    _check_not_started(model, name, path)
    path.mkdir(parents=True, exist_ok=True)
    return Run(model, name, path)


def _check_not_started(model: str, name: str, path: Path) -> None:
    if os.path.lexists(path / CONFIG_FILE):
        raise GanjiError(f"run {model}/{name} already exists: add --resume to continue it, or choose another --run")
    if os.path.lexists(path) and not path.is_dir():
        raise GanjiError(f"{path} exists and is not a folder: choose another --run")


class RunLock:
    """The one-writer lock of a run folder (see the module's docstring); a context manager.

    `acquire(new=True)` is for a run being created: once the lock is held it checks again that no
    other process has started the run meanwhile (config.json written), so of two `--run same` started
    at once exactly one trains.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self._lock = ExclusiveLock(run.lock_path, self._busy, report_as=run.path)

    @property
    def held(self) -> bool:
        return self._lock.held

    def _busy(self, pid: int | None) -> str:
        who = f"process {pid}" if pid is not None else "another process"
        return (f"run {self.run.model}/{self.run.name} is being trained by {who}: wait for it to finish, "
                "or choose another --run")

    def acquire(self, new: bool = False) -> RunLock:
        if not self.run.path.is_dir():
            raise GanjiError(f"run folder {self.run.path} does not exist (removed while starting?)")
        self._lock.acquire()
        if new:
            try:
                _check_not_started(self.run.model, self.run.name, self.run.path)
            except BaseException:
                self._lock.release()
                raise
        return self

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run(run: Run, new: bool = False) -> RunLock:
    """Take the run's one-writer lock (a GanjiError naming the holder's pid if another process has
    it); hold it for the whole training, then `.release()` it (or use it as a context manager)."""
    return RunLock(run).acquire(new=new)


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


def discard_unstarted_run(run: Run, lock: RunLock | None = None) -> None:
    """Remove the folder of a new run that failed before its first checkpoint (bad options, no GPU,
    a non-finite loss, an allocation failure...): what ganji wrote there (config, metrics, the grids
    drawn so far, leftover temporaries, the lock file) goes, and the folder with it when that leaves
    it empty. A run with a checkpoint (or anything at that path, even a broken link) is kept.

    Call it while holding the run's lock (and pass it: it is released here), so that no other process
    can start the run in between.
    """
    try:
        if os.path.lexists(run.checkpoint_path) or os.path.lexists(run.best_checkpoint_path):
            return
        remove_stale_temporaries(run)
        for path in (run.config_path, run.metrics_path):
            try:
                if path.is_file() and not path.is_symlink():
                    path.unlink()
            except OSError:
                pass
        if run.samples_dir.is_dir() and not run.samples_dir.is_symlink():
            for grid in run.samples_dir.glob("step-*.png"):
                try:
                    grid.unlink()
                except OSError:
                    pass
        if lock is not None:
            lock.release()  # removes the lock file
        else:  # the caller holds the lock (see above): its file must go for the folder to be removed
            try:
                run.lock_path.unlink()
            except OSError:
                pass
        for folder in (run.samples_dir, run.path):
            try:
                folder.rmdir()  # only when empty: anything else in it stays
            except OSError:
                pass
    finally:
        if lock is not None:
            lock.release()
