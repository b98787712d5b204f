"""The training loop: one for every model; the model's recipe owns its loss and step.

Stages of `train()`:
  1. the run: a new folder with config.json, or an existing one to resume;
  2. the data: the prepared uint8 tensor moved to the device once; per epoch a permutation drawn
     from a generator seeded by (seed, epoch), so any step of any epoch can be resumed exactly;
  3. the recipe: networks, optimisers, schedulers, EMA; restored from the checkpoint on resume;
  4. the steps: losses stay on the device and are read every `log_every` steps (one host sync);
     sample grids from fixed noise every `sample_every` epochs; checkpoints every
     `checkpoint_every` epochs; stops at the end, at `max_steps`, at the time budget, on Ctrl-C
     (checkpoint first) or on a non-finite loss (no checkpoint: the last good one stays);
  5. the end: a final checkpoint and grid, and a summary.

Several processes (torchrun, or `ganji train --nproc N`; see ganji.train.distributed): every rank
runs this loop in lockstep on its share of each global batch (`--batch-size` is the global batch);
rank 0 alone creates the run, writes config, checkpoints, metrics and grids, evaluates and draws
progress; logged losses are averaged over ranks; stop requests and the time budget are agreed on
every step, so all ranks stop at the same step. A checkpoint holds nothing rank-specific: weights,
EMA, optimiser and scheduler states are the same on every rank, and so is the RNG state (per-sample
noise is drawn for the global batch on every rank; rank 0's state is given to all after its
grids and evaluations), so a run resumes exactly under any number of processes.

Units: a step is one batch of real images (for the GAN its D steps plus one G step); epochs count
whole passes over the dataset (the last partial batch is dropped, so shapes are static); times are
seconds of wall clock; images/s counts real images consumed.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ganji import __version__
from ganji.atomic import write_json_atomic
from ganji.console import err_console
from ganji.data.store import Dataset
from ganji.errors import GanjiError
from ganji.images import make_grid, save_png, to_uint8
from ganji.recipes import recipe_class
from ganji.recipes.base import Recipe
from ganji.runs import Run, discard_unstarted_run, remove_stale_temporaries
from ganji.train import distributed
from ganji.train.checkpoint import CheckpointData, load_checkpoint, save_checkpoint
from ganji.train.config import TrainConfig
from ganji.train.device import Precision, choose_precision, device_name, peak_memory_mb, resolve_device, synchronize
from ganji.train.distributed import SINGLE, ReportedOnMain, World, local_device, per_rank_batch, rank_indices
from ganji.train.metrics_log import MetricsLog

# How the DDPM's progress grids are drawn: DDIM with few steps, so that a grid costs seconds, not the
# minutes of the full 1024-step sampler (`ganji sample` gives the full one).
PREVIEW_SAMPLER = {"sampler": "ddim", "steps": 20}


@dataclass
class TrainResult:
    run: Run
    step: int
    total_steps: int
    epoch: float
    reason: str  # finished | max-steps | time-budget | interrupted
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
    low, high = data_range
    x = images_u8.float().mul_((high - low) / 255.0).add_(low)
    return x.contiguous(memory_format=precision.memory_format())


def build_recipe(
    cfg: TrainConfig, dataset_size: int, image_size: int, channels: int, precision: Precision, world: World = SINGLE
) -> tuple[Recipe, int, int]:
    """The recipe, the steps per epoch and the total steps planned for the run."""
    steps_per_epoch = dataset_size // cfg.batch_size
    if steps_per_epoch == 0:
        raise GanjiError(f"--batch-size {cfg.batch_size} is larger than the dataset ({dataset_size} images): use a smaller batch")
    per_rank_batch(cfg.batch_size, world.size)
    total = steps_per_epoch * cfg.epochs
    recipe = recipe_class(cfg.model)(cfg, image_size, channels, total, precision, world)
    return recipe, steps_per_epoch, total


class TrainLoop:
    def __init__(
        self,
        run: Run,
        cfg: TrainConfig,
        dataset: Dataset,
        resume: bool,
        show_progress: bool = True,
        home: Path | None = None,
        world: World = SINGLE,
    ) -> None:
        self.run = run
        self.cfg = cfg
        self.world = world
        self.main = world.is_main  # rank 0: the only process that writes files and draws progress
        self.show_progress = show_progress and self.main
        self.device = local_device(resolve_device(cfg.device), world)
        self.precision = choose_precision(cfg.model, self.device, cfg.precision, cfg.compile, cfg.compile_mode)
        self.images = dataset.images.to(self.device)  # stays uint8: 4x less memory than float
        self.n_images = len(dataset)

        if not resume:
            torch.manual_seed(cfg.seed)  # weights initialisation and every random draw of the steps
        self.recipe, self.steps_per_epoch, self.total_steps = build_recipe(
            cfg, self.n_images, dataset.size, dataset.channels, self.precision, world
        )
        self.stop_step = min(self.total_steps, cfg.max_steps) if cfg.max_steps else self.total_steps
        self.step = 0
        self.train_seconds = 0.0
        self.metrics = MetricsLog(run.metrics_path)
        self._bar: Progress | None = None
        self.best: dict[str, float] = {}  # {"fid": ..., "step": ...} of best.safetensors
        self.evaluator = None
        if self.main:
            remove_stale_temporaries(run)
        if cfg.eval_every and self.main:
            from ganji.metrics.during_training import TrainingEvaluator

            # The run folder is <home>/runs/<model>/<run>: the feature cache lives in that home.
            self.evaluator = TrainingEvaluator(home or run.path.parents[2], dataset, cfg.model, cfg.eval_n, cfg.eval_features, self.device)
        if resume:
            self._restore()
        elif self.main:
            self._write_config(dataset)
            self.metrics.truncate_after(0)
        # Fixed noise for the progress grids: drawn on the CPU from the seed, identical on every device.
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.fixed_noise = self.recipe.make_noise(cfg.grid_n, gen).to(self.device)

    # -- 1. run folder ---------------------------------------------------------------------------
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
            },
        )

    def _restore(self) -> None:
        if not self.main and not self.run.checkpoint_path.is_file():
            raise GanjiError(
                f"process {self.world.rank} cannot read {self.run.checkpoint_path}: with several machines, the ganji home "
                "must be on a shared file system (or the run folder copied to every machine) to --resume"
            )
        ckpt = load_checkpoint(self.run.checkpoint_path)
        meta = ckpt.meta
        expect = {"model": self.cfg.model, "image_size": self.recipe.image_size, "channels": self.recipe.channels}
        for key, want in expect.items():
            if meta.get(key) != want:
                raise GanjiError(f"checkpoint {self.run.checkpoint_path} has {key}={meta.get(key)!r}, but this run needs {want!r}")
        try:
            self.recipe.load_state(ckpt, meta.get("schedulers", {}))
            self.step = int(meta["step"])
            self.train_seconds = float(meta.get("train_seconds", 0.0))
            self.best = dict(meta.get("best") or {})
            # Every rank gets the checkpoint's (rank 0's) RNG state: the states of all ranks are the same
            # during training (see ganji.train.distributed), whatever number of processes wrote it.
            torch.set_rng_state(ckpt.rng["cpu"])
            if self.device.type == "cuda" and "cuda" in ckpt.rng:
                torch.cuda.set_rng_state(ckpt.rng["cuda"], self.device)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # an edited or foreign checkpoint
            raise GanjiError(f"checkpoint {self.run.checkpoint_path} cannot be resumed: its progress or RNG state is damaged ({exc!r})") from None
        if self.main:
            self.metrics.truncate_after(self.step)

    # -- checkpoints and grids -------------------------------------------------------------------
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
            "train_seconds": self.train_seconds,
            "schedulers": schedulers,
            "config": self.cfg.to_json(),
            "data_range": list(self.recipe.data_range),
            "best": self.best,
            "processes": self.world.size,  # for information: a checkpoint resumes under any number
        }
        save_checkpoint(path or self.run.checkpoint_path, CheckpointData(nets=nets, emas=emas, optimizers=optimizers, rng=rng, meta=meta))

    def save_grid(self) -> Path:
        extra: dict[str, Any] = dict(PREVIEW_SAMPLER) if self.cfg.model == "ddpm" else {}
        bar, task = self._bar, None
        if bar is not None and extra:
            # A grid costs minutes on a CPU for the full U-Net: show it advancing.
            task = bar.add_task("sample grid", total=extra["steps"], stats="")
            extra["on_step"] = lambda _: bar.advance(task)
        images = self.recipe.generate(self.fixed_noise, **extra)
        if task is not None:
            bar.remove_task(task)
        low, high = self.recipe.data_range
        path = self.run.samples_dir / f"step-{self.step:08d}.png"
        save_png(path, make_grid(to_uint8(images, low, high)))
        return path

    def evaluate(self) -> dict[str, float]:
        """FID & co. of the current EMA generator; a new lowest FID also writes best.safetensors."""
        assert self.evaluator is not None
        bar, task = self._bar, None
        if bar is not None:
            task = bar.add_task(f"evaluating ({self.cfg.eval_n} samples)", total=None, stats="")
        scores = self.evaluator.score(self.recipe, self.step)
        if task is not None:
            bar.remove_task(task)
        self.metrics.append({"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), "eval": {**scores, "n": self.cfg.eval_n, **self.evaluator.sampler()}})
        if not self.best or scores["fid"] < self.best["fid"]:
            self.best = {"fid": scores["fid"], "step": self.step}
            self.save_checkpoint(self.run.best_checkpoint_path)
        return scores

    # -- 4. the steps ----------------------------------------------------------------------------
    def run_steps(self) -> TrainResult:
        cfg, recipe, world = self.cfg, self.recipe, self.world
        B, spe = cfg.batch_size, self.steps_per_epoch
        grids: list[Path] = []
        sums: dict[str, torch.Tensor] = {}
        last: dict[str, float] = {}
        logged_steps, since = 0, time.perf_counter()
        rate = 0.0
        reason = "finished" if self.stop_step == self.total_steps else "max-steps"
        perm: torch.Tensor | None = None
        start = time.monotonic()
        budget_s = cfg.time_budget * 60.0

        def flush() -> None:
            nonlocal sums, logged_steps, since, rate, last
            if logged_steps == 0:
                return
            means = world.mean_values({k: v / logged_steps for k, v in sums.items()})  # over ranks
            values = {k: v.item() for k, v in means.items()}  # the host sync
            now = time.perf_counter()
            self.train_seconds += now - since
            rate = logged_steps * B / max(now - since, 1e-9)  # B is the global batch: the whole job's rate
            if not all(math.isfinite(v) for v in values.values()):
                raise NonFiniteLoss(", ".join(f"{k}={v}" for k, v in values.items()))
            last = values
            if self.main:
                self.metrics.append(
                    {
                        "step": self.step,
                        "epoch": round(self.step / spe, 4),
                        **{k: round(v, 6) for k, v in values.items()},
                        "lr": {name: opt.param_groups[0]["lr"] for name, opt in recipe.optimizers.items()},
                        "img_per_s": round(rate, 2),
                        "train_s": round(self.train_seconds, 3),
                        "peak_mem_mb": round(peak_memory_mb(self.device), 1),
                    }
                )
            sums, logged_steps = {}, 0
            since = time.perf_counter()

        with _stop_on_signals() as stop_requested, self._progress() as progress:
            self._bar = progress
            task = progress.add_task(self._describe(), total=self.stop_step, completed=self.step, stats="")
            try:
                while self.step < self.stop_step:
                    epoch, i = divmod(self.step, spe)
                    if perm is None or i == 0:
                        perm = epoch_permutation(cfg.seed, epoch, self.n_images).to(self.device)
                        recipe.set_epoch(epoch)
                    x = normalise(self.images[rank_indices(perm, i, B, world.rank, world.size)], recipe.data_range, self.precision)
                    self.precision.begin_step()
                    losses = recipe.train_step(x)
                    recipe.after_step(self.step)
                    self.step += 1
                    logged_steps += 1
                    for k, v in losses.items():
                        sums[k] = sums[k] + v if k in sums else v.clone()
                    end_of_epoch = self.step % spe == 0
                    if self.step % cfg.log_every == 0 or end_of_epoch or self.step == self.stop_step:
                        flush()
                        progress.update(task, description=self._describe(), stats=_stats(last, rate))
                    progress.update(task, completed=self.step)
                    if end_of_epoch:
                        done = self.step // spe
                        since_pause = time.perf_counter()
                        grid_due = bool(cfg.sample_every) and done % cfg.sample_every == 0
                        eval_due = bool(cfg.eval_every) and done % cfg.eval_every == 0
                        if grid_due and self.main:
                            grids.append(self.save_grid())
                        if eval_due and self.evaluator is not None:
                            last = {**last, "fid": self.evaluate()["fid"]}
                        if done % cfg.checkpoint_every == 0 and self.step < self.stop_step:
                            self.save_checkpoint()
                        if grid_due or eval_due:
                            world.sync_rng(self.device)  # the others wait here for rank 0's grid and FID
                        since += time.perf_counter() - since_pause  # grids and checkpoints are not training time
                    # 0: go on, 1: time budget spent, 2: stop requested; the same decision on every rank.
                    stop = world.max(2 if stop_requested() else 1 if budget_s and time.monotonic() - start >= budget_s else 0)
                    if stop == 2:
                        reason = "interrupted"
                        break
                    if stop == 1:
                        reason = "time-budget"
                        break
                flush()
            except NonFiniteLoss as exc:
                # Every rank sees the same averaged losses and stops here; rank 0 says so.
                raise (GanjiError if self.main else ReportedOnMain)(
                    f"training stopped at step {self.step}: the loss is not finite ({exc}); the last good checkpoint "
                    f"is kept in {self.run.path}. Try a lower --lr or --precision fp32"
                ) from None
            # 5. the end: a final checkpoint and grid unless the last epoch boundary just wrote them
            self.save_checkpoint()
            if cfg.sample_every and self.main and not (grids and grids[-1].name == f"step-{self.step:08d}.png"):
                grids.append(self.save_grid())
        synchronize(self.device)
        return TrainResult(
            run=self.run,
            step=self.step,
            total_steps=self.total_steps,
            epoch=self.step / spe,
            reason=reason,
            train_seconds=self.train_seconds,
            images_per_second=rate,
            losses=last,
            grids=grids,
            best=self.best,
        )

    def _describe(self) -> str:
        epoch = min(self.step // self.steps_per_epoch + 1, self.cfg.epochs)
        return f"{self.cfg.model} epoch {epoch}/{self.cfg.epochs}"

    @contextmanager
    def _progress(self) -> Iterator[Progress]:
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err_console,
            disable=not self.show_progress,
        )
        with progress:
            yield progress


def _stats(losses: dict[str, float], rate: float) -> str:
    parts = [f"{k} {v:.4g}" for k, v in losses.items() if k != "d_steps"]
    return "  ".join(parts + [f"{rate:,.1f} img/s"])


@contextmanager
def _stop_on_signals() -> Iterator[Any]:
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
        err_console.print("[yellow]stopping after this step and saving a checkpoint (Ctrl-C again to abort)[/]")

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def summary_table(result: TrainResult) -> Table:
    table = Table(title=f"{result.run.model} run {result.run.name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("stopped", result.reason)
    table.add_row("steps", f"{result.step:,} / {result.total_steps:,} (epoch {result.epoch:.2f})")
    table.add_row("training time", f"{result.train_seconds:,.1f} s")
    table.add_row("throughput", f"{result.images_per_second:,.1f} img/s")
    for k, v in result.losses.items():
        table.add_row(k, f"{v:.5g}")
    table.add_row("folder", str(result.run.path))
    if result.grids:
        table.add_row("latest grid", str(result.grids[-1]))
    if result.best:
        table.add_row("best FID", f"{result.best['fid']:.4g} at step {int(result.best['step']):,} (best.safetensors)")
    return table


# Options that may change when a run is resumed; the rest define the run (changing the epochs would
# change the learning-rate schedule planned at the start, so it makes a new run instead).
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
    show_progress: bool = True,
) -> TrainResult:
    """Start (or resume) a run of `model` with the options the user gave, and train it.

    `given` holds only the options given on the command line: top-level TrainConfig fields, and
    the model's own options under the key "options" (a dict). Under torchrun (WORLD_SIZE > 1)
    every process calls this: the process group lives for the duration of the call.
    """
    world = distributed.setup()
    finished = False
    try:
        result = _train(world, home, model, given, run_name, resume, show_progress)
        finished = True
        return result
    finally:
        distributed.teardown(world, wait=finished)


def _train(world: World, home: Path, model: str, given: dict[str, Any], run_name: str | None, resume: bool, show_progress: bool) -> TrainResult:
    from ganji.data.prepare import ensure_dataset
    from ganji.data.store import load_dataset
    from ganji.home import runs_dir
    from ganji.runs import create_run, find_run
    from ganji.train.config import OPTIONS_TYPES

    given = {k: v for k, v in given.items() if v is not None}
    model_opts = {k: v for k, v in (given.pop("options", None) or {}).items() if v is not None}

    def plan() -> tuple[Run, TrainConfig, dict[str, Any], bool]:
        """Rank 0: the run (found or created), its config, its saved config.json, whether it has a checkpoint."""
        saved: dict[str, Any] = {}
        if resume:
            run = find_run(home, model, run_name)
            saved = _read_run_config(run)
            cfg = TrainConfig.from_json(saved["config"])
            fixed = sorted(k for k in given if k not in RESUME_OVERRIDES and given[k] != getattr(cfg, k))
            fixed += sorted(k for k, v in model_opts.items() if v != getattr(cfg.options, k))
            if fixed:
                names = ", ".join("--" + k.replace("_", "-") for k in fixed)
                raise GanjiError(f"{names} cannot change when resuming run {model}/{run.name}; start a new run instead")
            for k, v in given.items():
                setattr(cfg, k, v)
            cfg.validate()
            per_rank_batch(cfg.batch_size, world.size)
            has_checkpoint = run.checkpoint_path.is_file()
            if not has_checkpoint:
                # Stopped (or killed) before its first checkpoint: nothing to lose, start it over.
                err_console.print(f"run {model}/{run.name} has no checkpoint yet: training it from step 0")
        else:
            cfg = TrainConfig(model=model, **given, options=OPTIONS_TYPES[model](**model_opts))
            per_rank_batch(cfg.batch_size, world.size)
            ensure_dataset(home, cfg.dataset)
            run = create_run(home, model, run_name)
            has_checkpoint = False
        return run, cfg, saved, has_checkpoint

    # Rank 0 decides (a new run's name is a timestamp); every rank gets the same run and config.
    run, cfg, saved, has_checkpoint = world.on_main(
        plan,
        encode=lambda r: {"run": [r[0].model, r[0].name, str(r[0].path)], "config": r[1].to_json(), "saved": r[2], "checkpoint": r[3]},
        # The other ranks find the run under their own home (the same folder when it is shared).
        decode=lambda d: (Run(model, d["run"][1], runs_dir(home) / model / d["run"][1]), TrainConfig.from_json(d["config"]), d["saved"], d["checkpoint"]),
    )
    try:
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
        loop = TrainLoop(run, cfg, dataset, resume=has_checkpoint, show_progress=show_progress, home=home, world=world)
    except GanjiError:
        if not resume and world.is_main:
            discard_unstarted_run(run)  # a new run that failed before its first step leaves no folder behind
        raise
    if has_checkpoint and loop.step >= loop.stop_step:
        raise _error(
            world,
            f"run {model}/{run.name} is already at step {loop.step} of {loop.stop_step}: nothing to resume "
            "(raise --max-steps, or start a new run)",
        )
    return loop.run_steps()


def _error(world: World, message: str) -> GanjiError:
    """An error every rank runs into alike: rank 0 reports it, the others exit quietly."""
    return GanjiError(message) if world.is_main else ReportedOnMain(message)


def _read_run_config(run: Run) -> dict[str, Any]:
    import json

    try:
        data = json.loads(run.config_path.read_text("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise ValueError("no 'config' object")
        return data
    except (ValueError, UnicodeDecodeError) as exc:
        raise GanjiError(f"{run.config_path} is not a valid run config ({exc})") from None
