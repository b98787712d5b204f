"""Generating images from a trained run: the code behind `ganji sample` (and the metrics' samples).

Every image leaves here as uint8 with the ink bright, exactly like the prepared dataset, so samples
and real images are always quantised the same way (values are clamped before the cast).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganji.errors import GanjiError
from ganji.images import to_uint8
from ganji.recipes import recipe_class
from ganji.recipes.base import Recipe
from ganji.runs import Run, find_run, read_run_config
from ganji.train.checkpoint import load_checkpoint
from ganji.train.config import TrainConfig
from ganji.train.device import choose_precision, resolve_device

SAMPLERS = ("ddpm", "ddim")


@dataclass
class LoadedModel:
    recipe: Recipe
    model: str
    run_name: str
    checkpoint: Path
    step: int
    meta: dict[str, Any]


def load_model(
    home: Path,
    model: str,
    run_name: str | None = None,
    checkpoint: Path | None = None,
    device: str = "auto",
    precision: str = "auto",
) -> LoadedModel:
    """A recipe with the weights (and EMA weights) of a run's checkpoint, ready to sample."""
    run = None
    if checkpoint is None:
        run = find_run(home, model, run_name)
        checkpoint, run_name = run.checkpoint_path, run.name
        if not checkpoint.is_file():
            raise GanjiError(f"run {model}/{run.name} has no checkpoint yet (training did not reach one)")
    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.meta
    if meta.get("model") != model:
        raise GanjiError(f"{checkpoint} is a {meta.get('model')!r} checkpoint, not a {model} one")
    try:
        cfg = TrainConfig.from_json(meta["config"])
        size, channels, step = int(meta["image_size"]), int(meta["channels"]), int(meta.get("step", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise GanjiError(f"{checkpoint} lacks its configuration ({exc})") from None
    if run is not None:
        _check_run_matches(run, checkpoint, size, channels)
    dev = resolve_device(device)
    # Compilation pays off over long training, not for one sampling call.
    prec = choose_precision(model, dev, precision, compile=False)
    recipe = recipe_class(model)(cfg, size, channels, 1, prec)
    recipe.load_state(ckpt, {}, weights_only=True)
    return LoadedModel(recipe, model, run_name or checkpoint.stem, Path(checkpoint), step, meta)


def _check_run_matches(run: Run, checkpoint: Path, size: int, channels: int) -> None:
    """A run's checkpoint must be the run's own: same model and image shape as its config.json says.

    A damaged or badly edited config.json is an error too (the run folder is not what `ganji train`
    left); `--checkpoint FILE` samples from a checkpoint alone.
    """
    hint = f"; to sample from the checkpoint alone, pass --checkpoint {checkpoint}"
    try:
        saved = read_run_config(run)
        TrainConfig.from_json(saved["config"])
    except GanjiError as exc:
        raise GanjiError(f"{exc}{hint}") from None
    if saved["config"].get("model") != run.model:
        raise GanjiError(f"{run.config_path} describes a {saved['config'].get('model')!r} run, not a {run.model} one{hint}")
    data = saved.get("dataset") or {}
    for key, have in (("size", size), ("channels", channels)):
        want = data.get(key)
        if want is not None and want != have:
            what = "px images" if key == "size" else "channels"
            raise GanjiError(
                f"{checkpoint} is for {have} {what}, but run {run.model}/{run.name} was trained on {want} {what} "
                f"(its config.json): the checkpoint belongs to another run"
            )


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b (Shoemake 1985; White 2016 for latent walks).

    a, b: (N, ...) ; t: (K,) in [0, 1]  ->  (N, K, ...). Falls back to lerp when a ∥ b.
    """
    fa, fb = a.flatten(1), b.flatten(1)
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))[:, None]  # (N, 1)
    so = torch.sin(omega)
    tt = t[None, :]  # (1, K)
    wa = torch.where(so > 1e-6, torch.sin((1 - tt) * omega) / so, 1 - tt)
    wb = torch.where(so > 1e-6, torch.sin(tt * omega) / so, tt)
    out = wa[..., None] * fa[:, None, :] + wb[..., None] * fb[:, None, :]
    return out.reshape(a.shape[0], t.shape[0], *a.shape[1:])


def make_noise(recipe: Recipe, n: int, seed: int, interpolate: int = 0) -> torch.Tensor:
    """The n starting points (latents or x_T), drawn on the CPU so every device gets the same ones.

    With `interpolate` K, rows of K points walk (slerp) between two random points per row.
    """
    gen = torch.Generator().manual_seed(seed)
    if interpolate <= 1:
        return recipe.make_noise(n, gen)
    rows = math.ceil(n / interpolate)
    ends = recipe.make_noise(2 * rows, gen)
    walk = slerp(ends[:rows], ends[rows:], torch.linspace(0, 1, interpolate))
    return walk.reshape(rows * interpolate, *ends.shape[1:])


def generate(
    loaded: LoadedModel,
    n: int,
    seed: int = 0,
    batch_size: int = 256,
    sampler: str = "ddpm",
    steps: int | None = None,
    eta: float = 0.0,
    use_ema: bool = True,
    interpolate: int = 0,
    on_batch: Callable[[int], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """n images (uint8, N x C x H x W, ink bright) from a loaded model, in batches.

    For the DDPM, `sampler` picks the 1024-step ancestral sampler or DDIM with `steps` steps and
    `eta`; interpolation uses deterministic DDIM (eta 0) so that nearby noise gives nearby images.
    """
    steps = check_request(loaded, n, batch_size, sampler, steps, interpolate, eta)
    recipe = loaded.recipe
    kwargs: dict[str, Any] = {}
    if loaded.model == "ddpm":
        if interpolate > 1:
            sampler, eta = "ddim", 0.0
        kwargs = {"sampler": sampler, "steps": steps, "eta": eta, "on_step": on_step}
    noise = make_noise(recipe, n, seed, interpolate)
    low, high = recipe.data_range
    out = []
    for b, start in enumerate(range(0, noise.shape[0], batch_size)):
        chunk = noise[start : start + batch_size]
        if loaded.model == "ddpm":
            kwargs["generator"] = torch.Generator(recipe.device).manual_seed(seed * 100_003 + b + 1)
        images = recipe.generate(chunk, use_ema=use_ema, **kwargs)
        out.append(to_uint8(images, low, high).cpu())
        if on_batch is not None:
            on_batch(chunk.shape[0])
    return torch.cat(out)[: noise.shape[0]]


def check_request(
    loaded: LoadedModel, n: int, batch_size: int, sampler: str, steps: int | None, interpolate: int = 0, eta: float = 0.0
) -> int | None:
    """Validate a sampling request before any work starts; returns the DDIM step count to use.

    A DDPM interpolation always samples with DDIM (see `generate`), so its steps are checked too.
    """
    if n < 1:
        raise GanjiError(f"--n must be at least 1 (got {n})")
    if batch_size < 1:
        raise GanjiError(f"--batch-size must be at least 1 (got {batch_size})")
    if sampler not in SAMPLERS:
        raise GanjiError(f"--sampler must be ddpm or ddim (got {sampler!r})")
    if not (math.isfinite(eta) and eta >= 0):
        raise GanjiError(f"--eta must be a number >= 0 (got {eta})")
    if loaded.model == "ddpm" and (sampler == "ddim" or interpolate > 1):
        limit = loaded.recipe.schedule.timesteps
        steps = min(50, limit) if steps is None else steps
        if not 1 <= steps <= limit:
            raise GanjiError(f"--steps must be between 1 and {limit} (got {steps})")
    return steps


def model_calls_per_image(loaded: LoadedModel, sampler: str, steps: int | None) -> int:
    """Network evaluations per image (for progress bars and benchmarks)."""
    from ganji.diffusion import sampling_steps

    return sampling_steps(sampler, steps, loaded.recipe.schedule) if loaded.model == "ddpm" else 1
