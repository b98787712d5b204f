"""The training loop: one for every model; the model's recipe owns its loss and step.

`ganji.train.start.train` sets a run up (a new folder, or checks before resuming one) and hands
this loop a run, its config and its dataset. Stages of `TrainLoop`:
  1. set-up (`__init__`): device and precision; the prepared uint8 images moved to the device once;
     the recipe (networks, optimisers, schedulers, EMA), restored from the checkpoint on resume
     (or, for a new `--init-from` run, its networks and EMA from another run's checkpoint);
  2. the steps (`run`), each in named stages:
       next_batch   the epoch's permutation, drawn from a generator seeded by (seed, epoch), so any
                    step of any epoch can be resumed exactly; this step's slice of it, normalised
                    (and, for a `--condition components` run, the same rows of the component labels,
                    with `--component-mix` some two-part kanji made up, seeded by (seed, step))
       train_step   the recipe's step, then its schedulers and EMA
       log          every `log_every` steps: losses read from the device (the one host sync),
                    appended to metrics.jsonl, shown by the observer
       end_of_epoch sample grids from fixed noise every `sample_every` epochs, FID every
                    `eval_every`, checkpoints every `checkpoint_every`
       should_stop  the end, `max_steps`, the time budget, Ctrl-C (checkpoint first), or a
                    non-finite loss (no checkpoint: the last good one stays)
  3. the end: a final checkpoint and grid, and a TrainResult.

Several processes (torchrun, or `ganji train --nproc N`; see ganji.runtime.distributed): every rank
runs this loop in lockstep on its share of each global batch (`--batch-size` is the global batch);
rank 0 alone writes config, checkpoints, metrics and grids, evaluates and reports progress; logged
losses are averaged over ranks; stop decisions are agreed on every step, so all ranks stop at the
same step. A checkpoint holds nothing rank-specific: weights, EMA, optimiser and scheduler states
are the same on every rank, and so is the RNG state (per-sample noise is drawn for the global batch
on every rank; rank 0's state is given to all after its grids and evaluations), so a run resumes
exactly under any number of processes.

Units: a step is one batch of real images (for the GAN its D steps plus one G step); epochs count
whole passes over the dataset (the last partial batch is dropped, so shapes are static); times are
seconds of wall clock; images/s counts real images consumed.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from ganji import __version__
from ganji.atomic import write_json_atomic
from ganji.data.store import Dataset
from ganji.errors import GanjiError
from ganji.images import make_grid, save_image, to_data_range, to_uint8
from ganji.recipes import spec
from ganji.recipes.base import Recipe
from ganji.runs import Run, find_run, remove_stale_temporaries
from ganji.runtime.checkpoint import CheckpointData, load_checkpoint, save_checkpoint
from ganji.runtime.config import TrainConfig
from ganji.runtime.device import Precision, choose_precision, device_name, peak_memory_mb, resolve_device, synchronize
from ganji.runtime.distributed import SINGLE, ReportedOnMain, World, local_device, per_rank_batch, rank_indices
from ganji.runtime.metrics_log import MetricsLog
from ganji.train.observer import TrainingObserver

# Progress grids of an iterative model use its fast sampler with this many steps, so that a grid
# costs seconds, not the minutes of a full 1024-step sampler (`ganji sample` gives the full one).
PREVIEW_STEPS = 20


class StopReason(str, Enum):
    """Why training stopped (a str, so that it prints and compares as its value)."""

    FINISHED = "finished"  # every planned epoch
    MAX_STEPS = "max-steps"
    TIME_BUDGET = "time-budget"
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM, after a checkpoint

    def __str__(self) -> str:
        return self.value


@dataclass
class TrainResult:
    run: Run
    step: int
    total_steps: int
    epoch: float
    reason: StopReason
    train_seconds: float
    images_per_second: float
    losses: dict[str, float]
    grids: list[Path] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)  # lowest FID seen by --eval-every, and its step


class NonFiniteLoss(Exception):
    pass


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of epoch `epoch`: a function of (seed, epoch) alone, so resuming needs no RNG state."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def normalise(images_u8: torch.Tensor, data_range: tuple[float, float], precision: Precision) -> torch.Tensor:
    """uint8 0..255 -> float32 in `data_range`, in the run's memory format (done on the device)."""
    return to_data_range(images_u8, data_range).contiguous(memory_format=precision.memory_format())


def build_recipe(
    cfg: TrainConfig, dataset_size: int, image_size: int, channels: int, precision: Precision, world: World = SINGLE
) -> tuple[Recipe, int, int]:
    """The recipe, the steps per epoch and the total steps planned for the run."""
    steps_per_epoch = dataset_size // cfg.batch_size
    if steps_per_epoch == 0:
        raise GanjiError(f"--batch-size {cfg.batch_size} is larger than the dataset ({dataset_size} images): use a smaller batch")
    total = steps_per_epoch * cfg.epochs
    recipe = spec(cfg.model).recipe_class()(cfg, image_size, channels, total, precision, world)
    return recipe, steps_per_epoch, total


class Meter:
    """Losses summed on the device between host syncs, and the throughput and training time.

    Adding a step's losses costs no host sync; `read` does one (and averages over ranks). Time spent
    in grids, evaluations and checkpoints is excluded (`paused`): it is not training time.
    """

    def __init__(self, world: World, global_batch: int, train_seconds: float) -> None:
        self.world = world
        self.global_batch = global_batch
        self.train_seconds = train_seconds
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.since = time.perf_counter()
        self.images_per_s = 0.0
        self.last: dict[str, float] = {}

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.steps += 1

    def read(self) -> dict[str, float] | None:
        """The mean losses since the last read (None if no step since); NonFiniteLoss if any is not finite."""
        if self.steps == 0:
            return None
        means = self.world.mean_values({k: v / self.steps for k, v in self.sums.items()})  # over ranks
        values = {k: v.item() for k, v in means.items()}  # the host sync
        now = time.perf_counter()
        self.train_seconds += now - self.since
        # The global batch: the whole job's rate.
        self.images_per_s = self.steps * self.global_batch / max(now - self.since, 1e-9)
        if not all(math.isfinite(v) for v in values.values()):
            raise NonFiniteLoss(", ".join(f"{k}={v}" for k, v in values.items()))
        self.last = values
        self.sums, self.steps = {}, 0
        self.since = time.perf_counter()
        return values

    @contextmanager
    def paused(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.since += time.perf_counter() - start


class TrainLoop:
    def __init__(
        self,
        run: Run,
        cfg: TrainConfig,
        dataset: Dataset,
        resume: bool,
        observer: TrainingObserver | None = None,
        home: Path | None = None,
        world: World = SINGLE,
    ) -> None:
        self.run = run
        self.cfg = cfg
        self.world = world
        self.main = world.is_main  # rank 0: the only process that writes files and reports progress
        self.observer = observer if observer is not None and self.main else TrainingObserver()
        self.model = spec(cfg.model)
        self.device = local_device(resolve_device(cfg.device), world)
        self.precision = choose_precision(self.model.bf16, self.device, cfg.precision, cfg.compile, cfg.compile_mode)
        self.images = dataset.images.to(self.device)  # stays uint8: 4x less memory than float
        # A conditional model's labels, row for row with the images (ganji.recipes.unet_recipe).
        self.labels = dataset.components.to(self.device) if getattr(cfg.options, "conditional", False) else None
        self.made_up = None  # `--component-mix`: made-up two-part kanji (ganji.features.component_mix)
        if self.labels is not None and getattr(cfg.options, "component_mix", 0.0) > 0:
            from ganji.features.component_mix import MadeUpKanji

            self.made_up = MadeUpKanji(self.images, list(dataset.manifest.get("codepoints", [])), list(cfg.options.vocabulary),
                                       held_out=tuple(getattr(cfg.options, "held_out", ())))
        self.n_images = len(dataset)
        self.rank_batch = per_rank_batch(cfg.batch_size, world.size)  # this process's share of every global batch

        if not resume:
            torch.manual_seed(cfg.seed)  # weights initialisation and every random draw of the steps
        self.recipe, self.steps_per_epoch, self.total_steps = build_recipe(
            cfg, self.n_images, dataset.size, dataset.channels, self.precision, world
        )
        self.stop_step = min(self.total_steps, cfg.max_steps) if cfg.max_steps else self.total_steps
        # `--init-from`: a new run starts from another run's weights (a run resumed from its own
        # checkpoint has them already); loading draws no random numbers, so the steps stay seeded.
        self.initialised_from: dict[str, Any] | None = None
        if not resume and cfg.init_from:
            self.initialised_from = self._initialise_from(find_run(home or run.path.parents[2], cfg.model, cfg.init_from))
        self.step = 0
        train_seconds = 0.0
        self.metrics = MetricsLog(run.metrics_path)
        self.best: dict[str, float] = {}  # {"fid": ..., "step": ...} of best.safetensors
        self.evaluator = None
        if self.main:
            remove_stale_temporaries(run)
        if cfg.eval_every and self.main:
            from ganji.metrics.during_training import TrainingEvaluator

            # The run folder is <home>/runs/<model>/<run>: the feature cache lives in that home.
            self.evaluator = TrainingEvaluator(home or run.path.parents[2], dataset, self.model, cfg.eval_n, cfg.eval_features, self.device)
        if resume:
            train_seconds = self._restore()
        elif self.main:
            self._write_config(dataset)
            self.metrics.truncate_after(0)
        self.meter = Meter(world, cfg.batch_size, train_seconds)
        # Fixed noise for the progress grids: drawn on the CPU from the seed, identical on every device.
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.fixed_noise = self.recipe.make_noise(cfg.grid_n, gen).to(self.device)
        self._perm: torch.Tensor | None = None
        self._perm_host = torch.empty(0, dtype=torch.long)  # the same order on the host, for --component-mix
        self.grids: list[Path] = []

    # -- 1. set-up: the run folder -----------------------------------------------------------------
    def _write_config(self, dataset: Dataset) -> None:
        write_json_atomic(
            self.run.config_path,
            {
                "created": time.time(),
                "model": self.cfg.model,
                "run": self.run.name,
                "config": self.cfg.to_json(),
                "dataset": {
                    "name": dataset.name,
                    "count": len(dataset),
                    "size": dataset.size,
                    "channels": dataset.channels,
                    "images_sha256": dataset.manifest.get("images_sha256"),
                },
                "parameters": self.recipe.parameter_counts(),
                "device": device_name(self.device),
                "precision": self.precision.name,
                "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps,
                "processes": self.world.size,
                "ganji": __version__,
                "torch": torch.__version__,
                **({"initialised_from": self.initialised_from} if self.initialised_from else {}),
            },
        )

    def _check_fits(self, ckpt: CheckpointData, path: Path) -> None:
        """A clear error when a checkpoint is of another model, image size or channel count."""
        expect = {"model": self.cfg.model, "image_size": self.recipe.image_size, "channels": self.recipe.channels}
        for key, want in expect.items():
            if ckpt.meta.get(key) != want:
                raise GanjiError(f"checkpoint {path} has {key}={ckpt.meta.get(key)!r}, but this run needs {want!r}")

    def _initialise_from(self, source: Run) -> dict[str, Any]:
        """Networks and EMA from `source`'s last checkpoint (optimisers and schedulers stay fresh);
        returns what config.json records of it."""
        ckpt = load_checkpoint(source.checkpoint_path)
        self._check_fits(ckpt, source.checkpoint_path)
        mine = getattr(self.cfg.options, "vocabulary", None)
        theirs = ((ckpt.meta.get("config") or {}).get("options") or {}).get("vocabulary")
        if mine and list(theirs or []) != list(mine):
            raise GanjiError(f"run {source.model}/{source.name} conditions on other component keys than this run's dataset: "
                             "its weights cannot start this run")
        saw = set(getattr(self.cfg.options, "held_out", ())) - set(((ckpt.meta.get("config") or {}).get("options") or {}).get("held_out") or [])
        if saw:
            raise GanjiError(f"run {source.model}/{source.name} trained on kanji this run holds out (--hold-out-requests: "
                             f"{', '.join(sorted(saw))}): its weights cannot start this run")
        try:
            self.recipe.load_state(ckpt, {}, weights_only=True)
        except GanjiError:
            theirs_options = (ckpt.meta.get("config") or {}).get("options") or {}
            differ = sorted(k for k, v in self.cfg.options.__dict__.items() if k != "vocabulary" and k in theirs_options
                            and (list(v) if isinstance(v, tuple) else v) != theirs_options[k])
            hint = f" (they differ in {', '.join('--' + k.replace('_', '-') for k in differ)})" if differ else ""
            raise GanjiError(f"the weights of run {source.model}/{source.name} do not fit this run's networks{hint}") from None
        return {"run": source.name, "step": int(ckpt.meta.get("step", 0))}

    def _restore(self) -> float:
        """Weights, optimisers, schedulers, RNG and progress from the checkpoint; returns the training seconds so far."""
        if not self.main and not self.run.checkpoint_path.is_file():
            raise GanjiError(
                f"process {self.world.rank} cannot read {self.run.checkpoint_path}: with several machines, the ganji home "
                "must be on a shared file system (or the run folder copied to every machine) to --resume"
            )
        ckpt = load_checkpoint(self.run.checkpoint_path)
        meta = ckpt.meta
        self._check_fits(ckpt, self.run.checkpoint_path)
        try:
            self.recipe.load_state(ckpt, meta.get("schedulers", {}))
            self.step = int(meta["step"])
            train_seconds = float(meta.get("train_seconds", 0.0))
            self.best = dict(meta.get("best") or {})
            # Every rank gets the checkpoint's (rank 0's) RNG state: the states of all ranks are the same
            # during training (see ganji.runtime.distributed), whatever number of processes wrote it.
            torch.set_rng_state(ckpt.rng["cpu"])
            if self.device.type == "cuda" and "cuda" in ckpt.rng:
                torch.cuda.set_rng_state(ckpt.rng["cuda"], self.device)
        except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:  # an edited or foreign checkpoint
            raise GanjiError(f"checkpoint {self.run.checkpoint_path} cannot be resumed: its progress or RNG state is damaged ({exc!r})") from None
        if self.main:
            self.metrics.truncate_after(self.step)
        return train_seconds

    # -- checkpoints, grids, evaluations -------------------------------------------------------------
    def save_checkpoint(self, path: Path | None = None) -> None:
        """Weights, EMA, optimisers, schedulers, RNG and progress in one atomic file (rank 0 only)."""
        if not self.main:
            return
        nets, emas, optimizers, schedulers = self.recipe.state()
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        meta: dict[str, Any] = {
            "model": self.cfg.model,
            "image_size": self.recipe.image_size,
            "channels": self.recipe.channels,
            "step": self.step,
            "epoch": self.step / self.steps_per_epoch,
            "train_seconds": self.meter.train_seconds,
            "schedulers": schedulers,
            "config": self.cfg.to_json(),
            "data_range": list(self.recipe.data_range),
            "best": self.best,
            "processes": self.world.size,  # for information: a checkpoint resumes under any number
        }
        save_checkpoint(path or self.run.checkpoint_path, CheckpointData(nets=nets, emas=emas, optimizers=optimizers, rng=rng, meta=meta))

    def save_grid(self) -> Path:
        choice = self.recipe.fast_sampler(PREVIEW_STEPS)
        calls = self.recipe.model_calls(choice)
        # An iterative model's grid costs minutes on a CPU at full size: show it advancing.
        with self.observer.side_task("sample grid", calls) if calls > 1 else _no_side_task() as advance:
            images = self.recipe.generate(self.fixed_noise, sampler=choice, on_step=lambda _i: advance(1))
        low, high = self.recipe.data_range
        path = self.run.samples_dir / f"step-{self.step:08d}.png"
        save_image(path, make_grid(to_uint8(images, low, high)))
        return path

    def evaluate(self) -> dict[str, float]:
        """FID & co. of the current EMA generator; a new lowest FID also writes best.safetensors."""
        assert self.evaluator is not None
        with self.observer.side_task(f"evaluating ({self.cfg.eval_n} samples)"):
            scores = self.evaluator.score(self.recipe, self.step)
        self.metrics.append({"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4),
                             "eval": {**scores, "n": self.cfg.eval_n, **self.evaluator.sampler_fields(self.recipe)}})
        if not self.best or scores["fid"] < self.best["fid"]:
            self.best = {"fid": scores["fid"], "step": self.step}
            self.save_checkpoint(self.run.best_checkpoint_path)
        return scores

    # -- 2. the steps ----------------------------------------------------------------------------------
    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """This rank's slice of the step's global batch, normalised, on the device, its rows of the
        labels (None for an unconditional model) and which of them are made-up kanji (None without
        `--component-mix`)."""
        epoch, i = divmod(self.step, self.steps_per_epoch)
        if self._perm is None or i == 0:
            self._perm_host = epoch_permutation(self.cfg.seed, epoch, self.n_images)
            self._perm = self._perm_host.to(self.device)
            self.recipe.set_epoch(epoch)
        rows = rank_indices(self._perm, i, self.cfg.batch_size, self.world.rank, self.rank_batch)
        images = self.images[rows]
        labels = self.labels[rows] if self.labels is not None else None
        made_up = None
        if self.made_up is not None and labels is not None:
            host_rows = rank_indices(self._perm_host, i, self.cfg.batch_size, self.world.rank, self.rank_batch).numpy()
            images, labels, made_up = self.made_up.mix(images, host_rows, labels, self.cfg.options.component_mix, self.cfg.seed,
                                                       self.step, self.world.rank * self.rank_batch, self.cfg.batch_size)
        return normalise(images, self.recipe.data_range, self.precision), labels, made_up

    def train_step(self, x: torch.Tensor, labels: torch.Tensor | None = None, made_up: torch.Tensor | None = None) -> None:
        self.precision.begin_step()
        losses = self.recipe.train_step(x) if labels is None else self.recipe.train_step(x, labels, made_up)
        self.recipe.after_step(self.step)
        self.step += 1
        self.meter.add(losses)

    def log(self) -> None:
        """Read the losses (one host sync), append them to metrics.jsonl, show them."""
        values = self.meter.read()
        if values is None:
            return
        if self.main:
            self.metrics.append(
                {
                    "step": self.step,
                    "epoch": round(self.step / self.steps_per_epoch, 4),
                    **{k: round(v, 6) for k, v in values.items()},
                    "lr": {name: opt.param_groups[0]["lr"] for name, opt in self.recipe.optimizers.items()},
                    "img_per_s": round(self.meter.images_per_s, 2),
                    "train_s": round(self.meter.train_seconds, 3),
                    "peak_mem_mb": round(peak_memory_mb(self.device), 1),
                }
            )
        self.observer.report(self.describe(), self.meter.last, self.meter.images_per_s)

    def end_of_epoch(self) -> None:
        """Grids, evaluation and checkpoint when due (none of it counts as training time)."""
        cfg, done = self.cfg, self.step // self.steps_per_epoch
        with self.meter.paused():
            grid_due = bool(cfg.sample_every) and done % cfg.sample_every == 0
            eval_due = bool(cfg.eval_every) and done % cfg.eval_every == 0
            if grid_due and self.main:
                self.grids.append(self.save_grid())
            if eval_due and self.evaluator is not None:
                fid = self.evaluate()["fid"]
                self.meter.last = {**self.meter.last, "fid": fid}
                self.observer.report(self.describe(), self.meter.last, self.meter.images_per_s)
            if done % cfg.checkpoint_every == 0 and self.step < self.stop_step:
                self.save_checkpoint()
            if grid_due or eval_due:
                self.world.sync_rng(self.device)  # the others wait here for rank 0's grid and FID

    def should_stop(self, stop_requested: Callable[[], bool], deadline: float | None) -> StopReason | None:
        """Before the planned end: a stop request or the time budget, decided alike on every rank."""
        # 0: go on, 1: time budget spent, 2: stop requested; the largest over the ranks wins.
        vote = 2 if stop_requested() else 1 if deadline is not None and time.monotonic() >= deadline else 0
        return {0: None, 1: StopReason.TIME_BUDGET, 2: StopReason.INTERRUPTED}[self.world.max(vote)]

    def run_steps(self) -> TrainResult:
        spe = self.steps_per_epoch
        reason = StopReason.FINISHED if self.stop_step == self.total_steps else StopReason.MAX_STEPS
        deadline = time.monotonic() + self.cfg.time_budget * 60.0 if self.cfg.time_budget else None
        self.observer.start(self.describe(), self.stop_step, self.step)
        self.meter.since = time.perf_counter()  # set-up is not training time
        try:
            with _stop_on_signals(self.observer) as stop_requested:
                while self.step < self.stop_step:
                    self.train_step(*self.next_batch())
                    end_of_epoch = self.step % spe == 0
                    if self.step % self.cfg.log_every == 0 or end_of_epoch or self.step == self.stop_step:
                        self.log()
                    self.observer.advance(self.step)
                    if end_of_epoch:
                        self.end_of_epoch()
                    stop = self.should_stop(stop_requested, deadline)
                    if stop is not None:
                        reason = stop
                        break
                self.log()
                # 3. the end: a final checkpoint and grid unless the last epoch boundary just wrote them
                self.save_checkpoint()
                if self.cfg.sample_every and self.main and not (self.grids and self.grids[-1].name == f"step-{self.step:08d}.png"):
                    self.grids.append(self.save_grid())
        except NonFiniteLoss as exc:
            # Every rank sees the same averaged losses and stops here; rank 0 says so.
            raise (GanjiError if self.main else ReportedOnMain)(
                f"training stopped at step {self.step}: the loss is not finite ({exc}); the last good checkpoint "
                f"is kept in {self.run.path}. Try a lower --lr or --precision fp32"
            ) from None
        finally:
            self.observer.stop()
        synchronize(self.device)
        return TrainResult(
            run=self.run,
            step=self.step,
            total_steps=self.total_steps,
            epoch=self.step / spe,
            reason=reason,
            train_seconds=self.meter.train_seconds,
            images_per_second=self.meter.images_per_s,
            losses=self.meter.last,
            grids=self.grids,
            best=self.best,
        )

    def describe(self) -> str:
        epoch = min(self.step // self.steps_per_epoch + 1, self.cfg.epochs)
        return f"{self.cfg.model} epoch {epoch}/{self.cfg.epochs}"


@contextmanager
def _no_side_task() -> Iterator[Callable[[int], None]]:
    yield lambda _k: None


@contextmanager
def _stop_on_signals(observer: TrainingObserver) -> Iterator[Callable[[], bool]]:
    """Ctrl-C (and SIGTERM) ask the loop to stop after the current step and save a checkpoint.

    A second Ctrl-C interrupts at once (the previous checkpoint stays valid: writes are atomic).
    """
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def handler(signum: int, frame: Any) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        observer.note("[yellow]stopping after this step and saving a checkpoint (Ctrl-C again to abort)[/]")

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
