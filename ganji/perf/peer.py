"""`ganji bench peer`: one of our models against a peer, lucidrains' denoising-diffusion-pytorch.

Side by side in one run, as the fairest comparison this machine can make:
- the same data: the prepared dataset's tensor (the kanji at 32 px), no flips (a mirrored kanji is
  not a kanji; the peer's Trainer flips by default);
- the same training wall time: the peer trains for `seconds`; ours plans its epochs from a short
  throughput probe so that its learning-rate schedule ends near the same `seconds`, with `seconds`
  as a hard cap. The epochs are rounded to the nearest whole number, not down: rounding down left
  up to a third of the time unused (2 epochs in 96 of 142 s), while the cap cuts at most the last
  half epoch, where the cosine schedule's learning rate is already small;
- the same sampling cost: `calls` network calls per sample (the peer's DDIM steps; our model's fast
  sampler at that many calls, e.g. Heun-10 for 20);
- the same metric, prepared the same way: both sides' samples are written as PNGs and scored like
  `ganji fid --images` (`evaluate_folder`), at the same n, against the same dataset.

The peer runs with its own network, objective and schedule (GaussianDiffusion's defaults: v
prediction, sigmoid β schedule) and its Trainer's optimiser defaults (Adam with β = (0.9, 0.99),
gradient-norm clip 1, EMA 0.995 updated every 10 steps by ema-pytorch), at the batch size and
learning rate given. It is an optional dependency: `pip install "ganji[peer]"`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ganji.errors import GanjiError

PEER = "denoising-diffusion-pytorch"
PEER_INSTALL = 'pip install "ganji[peer]"'


@dataclass
class PeerRow:
    """One contender's training and score."""

    name: str  # e.g. "ganji flow", "peer dim 32"
    seed: int
    configuration: str
    parameters: int
    train_seconds: float
    steps: int
    images_seen: int
    sampler: str
    sample_seconds: float
    score: dict[str, Any] = field(default_factory=dict)  # Score.to_json()

    @property
    def fid(self) -> float:
        return float(self.score["fid"])


def peer_modules() -> tuple[Any, Any]:
    """The peer's package and ema-pytorch, or a one-line GanjiError saying how to install them."""
    try:
        import denoising_diffusion_pytorch as ddp
        from ema_pytorch import EMA
    except ImportError:
        raise GanjiError(f"the peer ({PEER}) is not installed: {PEER_INSTALL}") from None
    return ddp, EMA


def _to_uint8(x01: torch.Tensor) -> torch.Tensor:
    return (x01.clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def write_pngs(images: torch.Tensor, folder: Path) -> Path:
    """uint8 N x C x H x W as numbered PNGs (the folder emptied of PNGs first)."""
    from ganji.images import save_image, to_pil

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    arr = images.numpy()
    for i in range(len(arr)):
        save_image(folder / f"{i:05d}.png", to_pil(arr[i]))
    return folder


def train_peer(
    images: torch.Tensor, seconds: float, *, dim: int, dim_mults: tuple[int, ...], timesteps: int, calls: int, lr: float,
    batch_size: int, seed: int, device: torch.device, on_step: Callable[[float], None] | None = None,
) -> tuple[Any, int, float]:
    """Train the peer's GaussianDiffusion on uint8 `images` for `seconds` of wall time, as its Trainer
    would (see the module's docstring); its EMA model, the steps taken and the seconds used."""
    ddp, EMA = peer_modules()
    torch.manual_seed(seed)
    size, channels = images.shape[-1], images.shape[1]
    unet = ddp.Unet(dim=dim, dim_mults=dim_mults, channels=channels)
    diffusion = ddp.GaussianDiffusion(unet, image_size=size, timesteps=timesteps, sampling_timesteps=calls).to(device)
    ema = EMA(diffusion, beta=0.995, update_every=10).to(device)
    opt = torch.optim.Adam(diffusion.parameters(), lr=lr, betas=(0.9, 0.99))
    data = images.to(device).float() / 255.0  # the peer normalises [0, 1] to [-1, 1] itself
    g = torch.Generator().manual_seed(seed)
    order, at, steps = torch.randperm(len(data), generator=g), 0, 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        if at + batch_size > len(order):
            order, at = torch.randperm(len(data), generator=g), 0
        batch = data[order[at:at + batch_size].to(device)]
        at += batch_size
        loss = diffusion(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(diffusion.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update()
        steps += 1
        if on_step is not None:
            on_step(elapsed)
    return ema.ema_model.eval(), steps, time.perf_counter() - start


@torch.inference_mode()
def sample_peer(model: Any, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """n samples of the peer's (EMA) model as uint8, by its own sampler (DDIM when `calls` < T)."""
    torch.manual_seed(seed)
    out = [_to_uint8(model.sample(batch_size=min(batch_size, n - i))) for i in range(0, n, batch_size)]
    return torch.cat(out)[:n]


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _bench_home(home: Path, dataset: str) -> Path:
    """A home of its own for the bench's runs (so that they never become a user's latest run), with
    a copy of the dataset; emptied of earlier bench runs."""
    import shutil

    from ganji.data.prepare import build_kanji
    from ganji.data.store import dataset_path, is_prepared
    from ganji.home import cache_dir, runs_dir
    from ganji.report.presets import QUICK_DATASET, QUICK_SIZE

    if not is_prepared(home, dataset):
        if dataset != QUICK_DATASET:
            raise GanjiError(f"dataset {dataset!r} is not prepared: run `ganji fetch-data ... --name {dataset}` first")
        build_kanji(home, name=QUICK_DATASET, size=QUICK_SIZE, progress=False)
    bench = cache_dir(home) / "bench-peer"
    shutil.rmtree(runs_dir(bench), ignore_errors=True)
    target = dataset_path(bench, dataset)
    if not is_prepared(bench, dataset):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(dataset_path(home, dataset), target)
    return bench


def train_ours(bench: Path, model: str, dataset: str, seconds: float, seed: int, device: str, n_images: int, size: int) -> Any:
    """Our `model` with its quick preset, its epochs planned to end near `seconds`, the hard cap (see the module)."""
    from ganji.perf.bench import bench_train
    from ganji.recipes import spec
    from ganji.train.start import train

    model_spec = spec(model)
    quick = dict(model_spec.quick)
    options = dict(quick.get("options", {}))
    batch = int(quick.get("batch_size", model_spec.batch_size))
    probe = bench_train(model, device, size=size, batch_size=batch, options=options, compile=False, max_seconds=5.0)
    epochs = max(1, round(seconds * probe.images_per_s / n_images))
    given = {"dataset": dataset, "epochs": epochs, "batch_size": batch, "lr": quick.get("lr", model_spec.lr),
             "time_budget": seconds / 60.0, "sample_every": 0, "seed": seed, "device": device, "options": options}
    return train(bench, model, given, run_name=f"{model}-seed{seed}")


def bench_peer(
    home: Path, *, model: str, dataset: str, seconds: float, n: int, calls: int, seeds: list[int], peer_dims: list[int],
    dim_mults: tuple[int, ...], timesteps: int, peer_lr: float, peer_batch: int, features: str, device_name: str,
    on_row: Callable[[PeerRow], None] | None = None,
) -> list[PeerRow]:
    """Train and score our `model` and the peer at each width in `peer_dims`, for every seed; the
    rows in the order they were measured."""
    from ganji.data.store import load_dataset
    from ganji.features.extractors import load_extractor
    from ganji.home import cache_dir
    from ganji.metrics.protocol import evaluate_folder
    from ganji.recipes import spec
    from ganji.runtime.device import resolve_device
    from ganji.sampling import SampleRequest, generate, load_model

    peer_modules()  # fail before any work when the peer is missing
    fast = spec(model).sampling.fast_choice(calls)
    if fast is None:
        raise GanjiError(f"the {model} model samples in one pass: compare an iterative model (ddpm, flow) with the peer")
    device = resolve_device(device_name)
    bench = _bench_home(home, dataset)
    data = load_dataset(bench, dataset)
    extractor = load_extractor(features, device, cache_dir(home))
    rows: list[PeerRow] = []

    def score(name: str, images: torch.Tensor, seed: int) -> dict[str, Any]:
        folder = write_pngs(images, bench / "samples" / f"{name.replace(' ', '-')}-seed{seed}")
        return evaluate_folder(bench, folder, dataset, extractor, n, invert=False).to_json()

    for seed in seeds:
        result = train_ours(bench, model, dataset, seconds, seed, device_name, len(data), data.size)
        loaded = load_model(bench, model, result.run.name, device=device_name)
        request = SampleRequest.resolve(loaded.spec, loaded.recipe, n, seed=seed, sampler=fast.name, steps=fast.steps)
        start = time.perf_counter()
        images = generate(loaded, request)
        sample_s = time.perf_counter() - start
        opts = loaded.recipe.cfg.options
        row = PeerRow(
            name=f"ganji {model}", seed=seed, parameters=sum(parameters(net) for net in loaded.recipe.nets.values()),
            configuration=f"{loaded.recipe.describe(opts)}; batch {loaded.recipe.cfg.batch_size}, lr {loaded.recipe.cfg.lr:g}, "
                          f"EMA {loaded.recipe.cfg.ema_decay:g}, {loaded.recipe.cfg.epochs} epochs",
            train_seconds=result.train_seconds, steps=result.step, images_seen=result.step * loaded.recipe.cfg.batch_size,
            sampler=request.sampler.label if request.sampler else "-", sample_seconds=sample_s,
        )
        row.score = score(row.name, images, seed)
        rows.append(row)
        if on_row:
            on_row(row)
        for dim in peer_dims:
            net, steps, used = train_peer(data.images, seconds, dim=dim, dim_mults=dim_mults, timesteps=timesteps, calls=calls,
                                          lr=peer_lr, batch_size=peer_batch, seed=seed, device=device)
            start = time.perf_counter()
            images = sample_peer(net, n, 256, seed)
            sample_s = time.perf_counter() - start
            mults = ",".join(map(str, dim_mults))
            row = PeerRow(
                name=f"peer dim {dim}", seed=seed, parameters=parameters(net.model),
                configuration=f"Unet dim {dim}, mults {mults}; v, sigmoid, T = {timesteps}; batch {peer_batch}, lr {peer_lr:g}, clip 1, EMA 0.995",
                train_seconds=used, steps=steps, images_seen=steps * peer_batch, sampler=f"ddim-{calls}", sample_seconds=sample_s,
            )
            row.score = score(row.name, images, seed)
            rows.append(row)
            if on_row:
                on_row(row)
    return rows
