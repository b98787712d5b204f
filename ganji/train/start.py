"""Starting or resuming a training run: every check before the first step, then the loop.

`train()` is what `ganji train` and `ganji compare --train` call. Set-up, in order:
  1. the run: a new folder and config (the dataset prepared first if missing), or an existing run
     whose config.json is read back (`--resume`), with only RESUME_OVERRIDES allowed to change;
  2. the dataset: loaded, and checked to be the one the run started on (and the same on every rank);
  3. the loop (ganji.train.loop.TrainLoop), which restores the checkpoint when there is one.
The run folder has one writer: rank 0 holds the run's lock (ganji.runs.lock_run) from before it reads
or writes anything of the run until training ends. A new run that fails before its first checkpoint
(bad options, a non-finite loss, an allocation failure, Ctrl-C) leaves no folder behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganji.errors import GanjiError
from ganji.recipes import config_from_json, spec
from ganji.runs import Run, RunLock, create_run, discard_unstarted_run, find_run, lock_run, read_run_config
from ganji.runtime import distributed
from ganji.runtime.checkpoint import checkpoint_exists
from ganji.runtime.config import TrainConfig
from ganji.runtime.distributed import ReportedOnMain, World, per_rank_batch
from ganji.train.loop import TrainLoop, TrainResult
from ganji.train.observer import TrainingObserver

if TYPE_CHECKING:
    from ganji.data.store import Dataset

# Options that may change when a run is resumed; the rest define the run (changing the epochs would
# change the learning-rate schedule planned at the start, so it makes a new run instead, which
# `--init-from` can start from this one's weights).
RESUME_OVERRIDES = frozenset(
    {"max_steps", "time_budget", "device", "precision", "compile", "compile_mode", "sample_every", "checkpoint_every", "log_every",
     "eval_every", "eval_n", "eval_features"}
)


def train(
    home: Path,
    model: str,
    given: dict[str, Any],
    run_name: str | None = None,
    resume: bool = False,
    observer: TrainingObserver | None = None,
) -> TrainResult:
    """Start (or resume) a run of `model` with the options the user gave, and train it.

    `given` holds only the options given on the command line: top-level TrainConfig fields, and
    the model's own options under the key "options" (a dict). Under torchrun (WORLD_SIZE > 1)
    every process calls this: the process group lives for the duration of the call.
    """
    world = distributed.setup()
    finished = False
    try:
        result = _train(world, home, model, given, run_name, resume, observer)
        finished = True
        return result
    finally:
        distributed.teardown(world, wait=finished)


def _plan(home: Path, model: str, given: dict[str, Any], model_opts: dict[str, Any], run_name: str | None, resume: bool,
          world: World, observer: TrainingObserver, locks: list[RunLock]) -> tuple[Run, TrainConfig, dict[str, Any], bool]:
    """Rank 0: the run (found or created, and locked: the lock goes to `locks`), its config, its saved
    config.json, whether it has a checkpoint."""
    from ganji.data.prepare import ensure_dataset

    model_spec = spec(model)
    saved: dict[str, Any] = {}
    if resume:
        model_spec.options(**model_opts)  # an option the model does not have is an error of its own
        run = find_run(home, model, run_name)
        locks.append(lock_run(run))  # before reading anything: another writer may be mid-run
        saved = read_run_config(run)
        cfg = config_from_json(saved["config"])
        fixed = sorted(k for k in given if k not in RESUME_OVERRIDES and given[k] != getattr(cfg, k))
        fixed += sorted(k for k, v in model_opts.items() if v != getattr(cfg.options, k, None))
        if fixed:
            names = ", ".join("--" + k.replace("_", "-") for k in fixed)
            raise GanjiError(f"{names} cannot change when resuming run {model}/{run.name}; start a new run instead")
        for k, v in given.items():
            setattr(cfg, k, v)
        cfg.validate()
        per_rank_batch(cfg.batch_size, world.size)
        has_checkpoint = checkpoint_exists(run.checkpoint_path)  # a folder or a broken link there is an error
        if not has_checkpoint:
            # Stopped (or killed) before its first checkpoint: nothing to lose, start it over.
            observer.note(f"run {model}/{run.name} has no checkpoint yet: training it from step 0")
    else:
        cfg = model_spec.config(options=model_opts, **given)
        per_rank_batch(cfg.batch_size, world.size)
        if cfg.init_from:
            source = find_run(home, model, cfg.init_from)
            if not checkpoint_exists(source.checkpoint_path):
                raise GanjiError(f"run {model}/{source.name} has no checkpoint yet: --init-from needs its weights")
        ensure_dataset(home, cfg.dataset)
        run = create_run(home, model, run_name)
        try:
            locks.append(lock_run(run, new=True))
        except GanjiError:
            if run_name is None:
                discard_unstarted_run(run)  # the empty folder claimed for a timestamp name
            raise
        has_checkpoint = False
    return run, cfg, saved, has_checkpoint


def _train(world: World, home: Path, model: str, given: dict[str, Any], run_name: str | None, resume: bool,
           observer: TrainingObserver | None) -> TrainResult:
    from ganji.home import runs_dir

    observer = observer or TrainingObserver()
    given = {k: v for k, v in given.items() if v is not None}
    model_opts = {k: v for k, v in (given.pop("options", None) or {}).items() if v is not None}

    # 1. Rank 0 decides (a new run's name is a timestamp) and locks the run; every rank gets the
    # same run and config.
    locks: list[RunLock] = []
    try:
        run, cfg, saved, has_checkpoint = world.on_main(
            lambda: _plan(home, model, given, model_opts, run_name, resume, world, observer, locks),
            encode=lambda r: {"run": [r[0].model, r[0].name, str(r[0].path)], "config": r[1].to_json(), "saved": r[2], "checkpoint": r[3]},
            # The other ranks find the run under their own home (the same folder when it is shared).
            decode=lambda d: (Run(model, d["run"][1], runs_dir(home) / model / d["run"][1]), config_from_json(d["config"]), d["saved"], d["checkpoint"]),
        )
        try:
            return _train_run(world, home, run, cfg, saved, has_checkpoint, resume, observer)
        except BaseException:
            if not resume and world.is_main:
                # A new run that failed before its first checkpoint leaves no folder behind (one with
                # a checkpoint is kept, and can be resumed).
                discard_unstarted_run(run, locks[0] if locks else None)
            raise
    finally:
        for lock in locks:
            lock.release()


def _train_run(world: World, home: Path, run: Run, cfg: TrainConfig, saved: dict[str, Any], has_checkpoint: bool, resume: bool,
               observer: TrainingObserver) -> TrainResult:
    """Steps 2 and 3 of the module's docstring, for a run that is planned (and locked on rank 0)."""
    from ganji.data.prepare import ensure_dataset
    from ganji.data.store import load_dataset

    model = run.model
    # 2. the dataset
    if world.distributed:
        if not resume and world.local_rank == 0 and not world.is_main:
            ensure_dataset(home, cfg.dataset)  # each machine's first process prepares its copy if missing
        world.barrier()
    dataset = load_dataset(home, cfg.dataset)
    if resume:
        started_on = (saved.get("dataset") or {}).get("images_sha256")
        if started_on and started_on != dataset.manifest.get("images_sha256"):
            raise _error(
                world,
                f"dataset {cfg.dataset!r} has changed since run {model}/{run.name} started (its sha256 differs): "
                "resuming would train on other images; start a new run instead",
            )
    if world.distributed:
        hashes = world.gather_json(dataset.manifest.get("images_sha256"))
        if len(set(hashes)) > 1:
            by_rank = ", ".join(str(h)[:12] for h in hashes)
            raise _error(world, f"the processes see different {cfg.dataset!r} datasets (sha256 by rank: {by_rank}): give every machine the same copy")
    _attach_vocabulary(world, run, cfg, dataset)
    dataset = _hold_out_requests(world, run, cfg, dataset)
    # 3. the loop
    loop = TrainLoop(run, cfg, dataset, resume=has_checkpoint, observer=observer, home=home, world=world)
    if has_checkpoint and loop.step >= loop.stop_step:
        raise _error(
            world,
            f"run {model}/{run.name} is already at step {loop.step} of {loop.stop_step}: nothing to resume "
            "(raise --max-steps, or start a new run)",
        )
    return loop.run_steps()


def _attach_vocabulary(world: World, run: Run, cfg: TrainConfig, dataset: Dataset) -> None:
    """A conditional run conditions on its dataset's component keys: a new run takes the dataset's
    vocabulary into its config (and so its config.json and checkpoints); a resumed one must find the
    same keys."""
    if not getattr(cfg.options, "conditional", False):
        return
    vocabulary = dataset.component_vocabulary
    if vocabulary is None:
        raise _error(world, f"dataset {cfg.dataset!r} has no component labels, which --condition components needs: "
                            f"rebuild it with `ganji fetch-data --force` (ganji labels kanji from KanjiVG)")
    if not vocabulary:
        raise _error(world, f"dataset {cfg.dataset!r} has component labels but no component keys (too few kanji?): "
                            "--condition components needs some")
    if cfg.options.component_mix:
        _require_code_points(world, cfg, dataset, "--component-mix")
    if not cfg.options.vocabulary:
        cfg.options.vocabulary = tuple(vocabulary)
    elif list(cfg.options.vocabulary) != vocabulary:
        raise _error(world, f"dataset {cfg.dataset!r}'s component keys have changed since run {run.model}/{run.name} started: "
                            "resuming would condition on other keys; start a new run instead")


def _require_code_points(world: World, cfg: TrainConfig, dataset: Dataset, flag: str) -> list[int]:
    """The character of every image, which `flag` needs (its parts come from KanjiVG), or a clear error."""
    codepoints = list(dataset.manifest.get("codepoints", []))
    if len(codepoints) != len(dataset):
        raise _error(world, f"{flag} needs to know which kanji each image of dataset {cfg.dataset!r} is "
                            "(a `ganji fetch-data` kanji dataset): its manifest lists no code points")
    return codepoints


def _hold_out_requests(world: World, run: Run, cfg: TrainConfig, dataset: Dataset) -> Dataset:
    """`--hold-out-requests`: the dataset without the kanji of the request suite's existing pairs
    (ganji.metrics.conditioning.held_out_pairs); a new run records the pairs in its config (the loop's
    made-up kanji never pair them either), a resumed one must find the same."""
    if not getattr(cfg.options, "hold_out_requests", False):
        return dataset
    import dataclasses

    import numpy as np
    import torch

    from ganji.features.component_net import load_component_net
    from ganji.metrics.conditioning import held_out_pairs

    codepoints = _require_code_points(world, cfg, dataset, "--hold-out-requests")
    assert dataset.components is not None  # _attach_vocabulary checked it
    pairs, rows = held_out_pairs(list(cfg.options.vocabulary), dataset.components, codepoints, set(load_component_net().vocabulary))
    if not pairs:
        raise _error(world, f"dataset {cfg.dataset!r} has no two-part kanji the request suite asks for: there is nothing to hold out")
    if not cfg.options.held_out:
        cfg.options.held_out = tuple(pairs)
    elif list(cfg.options.held_out) != pairs:
        raise _error(world, f"the request suite's existing pairs have changed since run {run.model}/{run.name} started (another "
                            "ComponentNet?): resuming would train on kanji it held out; start a new run instead")
    keep = torch.from_numpy(np.setdiff1d(np.arange(len(dataset)), rows))
    return dataclasses.replace(
        dataset,
        images=dataset.images[keep],
        labels=None if dataset.labels is None else dataset.labels[keep],
        components=dataset.components[keep],
        manifest={**dataset.manifest, "codepoints": [codepoints[i] for i in keep.tolist()]},
    )


def _error(world: World, message: str) -> GanjiError:
    """An error every rank runs into alike: rank 0 reports it, the others exit quietly."""
    return GanjiError(message) if world.is_main else ReportedOnMain(message)
