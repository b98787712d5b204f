"""Benchmarks behind `ganji bench`: how fast this machine trains and samples each model.

Figures are measured, never estimated, except where a line says "extrapolated" (the 1024-step
sampler on a CPU, timed over a few steps: every step costs the same network call). FLOPs are
counted with torch.utils.flop_counter on one real step; MFU divides achieved FLOP/s by the GPU's
dense bf16 peak.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ganji.perf.step_profile import StepProfile, profile_steps
from ganji.recipes import spec
from ganji.recipes.registry import DEFAULT_SAMPLE_BATCH
from ganji.recipes.base import Recipe
from ganji.runtime.device import choose_precision, device_name, peak_memory_mb, resolve_device, synchronize
from ganji.train.loop import normalise

# Dense bf16 tensor-core peaks (vendor datasheets), by a substring of torch.cuda.get_device_name().
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0, "RTX 4070": 58.0}
KANJI_SET_SIZE = 10_020


def bf16_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_PEAK_TFLOPS.items():
        if key in name:
            return peak
    return None


@dataclass
class TrainBench:
    model: str
    device: str
    precision: str
    compiled: bool
    compile_mode: str  # torch.compile's mode, when compiled
    batch_size: int
    image_size: int
    parameters: int
    gflops_per_image: float  # one training step's FLOPs / batch size
    images_per_s: float
    epoch_s: float  # one pass over the 10,020-kanji set at this rate
    mfu: float | None
    peak_mem_mb: float
    timed_steps: int
    # The same model, batch and device in a plain eager fp32 loop (ganji.perf.eager_baseline), if timed.
    eager_images_per_s: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    profile: StepProfile | None = None  # where a step's time goes, if asked for (`--profile N`)


def make_bench_recipe(model: str, size: int, batch_size: int | None, device: torch.device, precision: str, compile: bool,
                      options: dict[str, Any], compile_mode: str = "default", cudnn_benchmark: bool = True,
                      channels_last: bool = True) -> Recipe:
    model_spec = spec(model)
    cfg = model_spec.config(batch_size=batch_size, device=device.type, precision=precision, compile=compile,
                            compile_mode=compile_mode, options=dict(options))
    prec = choose_precision(model_spec.bf16, device, precision, compile, compile_mode, cudnn_benchmark, channels_last)
    return model_spec.recipe_class()(cfg, size, 1, 10_000, prec)


class CountFlops(TorchDispatchMode):
    """Sums torch.utils.flop_counter's formulas (matmuls, convolutions, attention) over every op.

    FlopCounterMode itself also tracks modules with backward hooks, which break `autograd.grad`
    (the GAN's gradient penalty); the formulas are the same.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def train_flops_per_image(model: str, size: int, device: torch.device, precision: str, options: dict[str, Any], batch: int = 4) -> float:
    """FLOPs of one real training step per image (all D steps and the G step for the GAN).

    Counted on an eager copy with a small batch: a dispatch-level counter does not see inside
    compiled graphs, and FLOPs per image do not depend on the batch size.
    """
    recipe = make_bench_recipe(model, size, batch, device, precision, False, options)
    x = normalise(torch.randint(0, 256, (batch, 1, size, size), dtype=torch.uint8, device=device), recipe.data_range, recipe.precision)
    with CountFlops() as counter:
        recipe.train_step(x)
    return counter.total / batch


def _timed(fn: Callable[[], Any], device: torch.device, min_steps: int, max_seconds: float) -> tuple[int, float]:
    """Run fn at least min_steps times and until max_seconds pass; (steps, seconds), synced."""
    synchronize(device)
    start = time.perf_counter()
    steps = 0
    while steps < min_steps or (time.perf_counter() - start < max_seconds and steps < 10_000):
        fn()
        steps += 1
        if steps >= min_steps and time.perf_counter() - start >= max_seconds:
            break
    synchronize(device)
    return steps, time.perf_counter() - start


def _alternating(a: Callable[[], Any], b: Callable[[], Any], device: torch.device, min_steps: int, max_seconds: float) -> tuple[list[float], list[float]]:
    """Seconds of each step of `a` and of `b`, run alternately (a, b, a, b, ...), at least
    min_steps of each and until max_seconds pass for each; synced around every step."""
    times: tuple[list[float], list[float]] = ([], [])
    start = time.perf_counter()
    while len(times[0]) < min_steps or (time.perf_counter() - start < 2 * max_seconds and len(times[0]) < 10_000):
        for fn, out in zip((a, b), times):
            synchronize(device)
            begin = time.perf_counter()
            fn()
            synchronize(device)
            out.append(time.perf_counter() - begin)
    return times


def bench_train(
    model: str,
    device_name_: str = "auto",
    size: int = 64,
    batch_size: int | None = None,
    precision: str = "auto",
    compile: bool = True,
    warmup: int = 2,
    min_steps: int = 3,
    max_seconds: float = 10.0,
    options: dict[str, Any] | None = None,
    eager_baseline: bool = False,
    profile: int = 0,
    trace: Path | None = None,
    compile_mode: str = "default",
    cudnn_benchmark: bool = True,
    channels_last: bool = True,
) -> TrainBench:
    """Training throughput of `model` with the paper's architecture and batch size on random images.

    A model's `bench_options` (ModelSpec) apply unless given: the GAN runs all of its D steps every
    step (the early stop on D accuracy is disabled), its worst case and the case the reference
    figures measured.
    """
    device = resolve_device(device_name_)
    opts = {**spec(model).bench_options, **(options or {})}
    torch.manual_seed(0)
    recipe = make_bench_recipe(model, size, batch_size, device, precision, compile, opts, compile_mode, cudnn_benchmark, channels_last)
    B = recipe.cfg.batch_size
    images = torch.randint(0, 256, (B, 1, size, size), dtype=torch.uint8, device=device)
    x = normalise(images, recipe.data_range, recipe.precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = 0

    def one() -> None:
        nonlocal step
        recipe.precision.begin_step()  # as the training loop does
        recipe.train_step(x)
        recipe.after_step(step)
        step += 1

    for _ in range(warmup):
        one()
    eager_rate = None
    if eager_baseline:
        plain = recipe.plain_eager_step(x)
        for _ in range(warmup):
            plain()
        # Alternating steps, so that both loops see the same machine state (on a shared CPU, its
        # speed drifts by ~10% from one minute to the next); the median step of each.
        ours, theirs = _alternating(one, plain, device, min_steps, max_seconds)
        steps, rate, eager_rate = len(ours), B / statistics.median(ours), B / statistics.median(theirs)
    else:
        steps, seconds = _timed(one, device, min_steps, max_seconds)
        rate = steps * B / seconds
    step_profile = profile_steps(one, device, profile, trace=trace) if profile > 0 else None
    flops = train_flops_per_image(model, size, device, precision, opts)
    peak = bf16_peak_tflops(device)
    mfu = (flops * rate) / (peak * 1e12) if peak else None
    return TrainBench(
        model=model,
        device=device_name(device),
        precision=recipe.precision.name,
        compiled=recipe.compiled,
        compile_mode=compile_mode,
        batch_size=B,
        image_size=size,
        parameters=sum(recipe.parameter_counts().values()),
        gflops_per_image=flops / 1e9,
        images_per_s=rate,
        epoch_s=(KANJI_SET_SIZE // B) * B / rate,
        mfu=mfu,
        peak_mem_mb=peak_memory_mb(device),
        timed_steps=steps,
        eager_images_per_s=eager_rate,
        settings={"options": opts, "warmup": warmup, "torch": torch.__version__, "device_type": device.type,
                  "cudnn_benchmark": recipe.precision.cudnn_benchmark,
                  "channels_last": recipe.precision.channels_last},
        profile=step_profile,
    )


@dataclass
class SampleBench:
    model: str
    sampler: str
    device: str
    precision: str
    batch_size: int
    model_calls: int  # network evaluations per image
    seconds_per_1000: float
    images_per_s: float
    extrapolated_from_steps: int | None  # None: the whole sampler ran


def bench_sample(
    model: str,
    sampler: str | None = None,
    steps: int | None = None,
    device_name_: str = "auto",
    size: int = 64,
    batch_size: int = DEFAULT_SAMPLE_BATCH,
    precision: str = "auto",
    options: dict[str, Any] | None = None,
    max_seconds: float = 10.0,
    extrapolate_after: int | None = None,
) -> SampleBench:
    """Sampling speed of an untrained model of the paper's architecture (speed does not depend on weights).

    With `extrapolate_after` k (iterative models), only the first k network calls are timed and the
    total is scaled to all of them: each is the same network call on the same batch.
    """
    from ganji.sampling import LoadedModel, SampleRequest, generate

    device = resolve_device(device_name_)
    torch.manual_seed(0)
    recipe = make_bench_recipe(model, size, None, device, precision, False, dict(options or {}))
    loaded = LoadedModel(recipe, model, "bench", None, 0, {})  # type: ignore[arg-type]
    request = SampleRequest.resolve(loaded.spec, recipe, batch_size, batch_size=batch_size, sampler=sampler, steps=steps)
    calls = recipe.model_calls(request.sampler)
    iterative = request.sampler is not None

    def run(stop_after: int | None = None) -> int:
        """Generate one batch, stopping after `stop_after` network calls; returns the calls run."""
        counter = _StepCounter(stop_after)
        try:
            generate(loaded, request, on_step=counter if iterative else None)
        except _Enough:
            pass
        return counter.count

    # Warm-up: one batch through one network call (kernel selection, allocator).
    run(1)
    timed_steps = None
    if iterative and extrapolate_after:
        synchronize(device)
        start = time.perf_counter()
        ran = run(extrapolate_after)  # fewer when the sampler has fewer steps
        synchronize(device)
        seconds_per_image = (time.perf_counter() - start) / ran * calls / batch_size
        timed_steps = ran if ran < calls else None
    else:
        done, seconds = _timed(run, device, 1, max_seconds)
        seconds_per_image = seconds / (done * batch_size)
    return SampleBench(
        model=model,
        sampler=request.sampler.label if request.sampler else "direct",
        device=device_name(device),
        precision=recipe.precision.name,
        batch_size=batch_size,
        model_calls=calls,
        seconds_per_1000=seconds_per_image * 1000,
        images_per_s=1.0 / seconds_per_image,
        extrapolated_from_steps=timed_steps,
    )


class _Enough(Exception):
    """Raised from a sampler's step callback to stop it after the steps being timed."""


class _StepCounter:
    """A sampler's on_step callback that counts steps and stops the sampler after `limit`."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.count = 0

    def __call__(self, _: int) -> None:
        self.count += 1
        if self.limit is not None and self.count >= self.limit:
            raise _Enough


def as_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)


@dataclass
class FidBench:
    extractor: str
    device: str
    feature_dim: int
    image_size: int
    images_per_s: float  # feature extraction, uint8 images in, features out
    extract_s: float  # n samples' features at that rate
    metrics_s: float  # FID + KID + precision/recall + novelty on n x n features (measured)
    fid_s: float  # a whole n-sample evaluation, sampling excluded (reference features cached)
    n: int


def bench_fid(extractor_name: str, device_name_: str = "auto", size: int = 64, n: int = 10_000,
              max_seconds: float = 5.0, inception_weights: Any = None, cache: Any = None) -> FidBench:
    """Feature-extraction speed on `size` px images and the time of the metrics on n x n features."""
    import numpy as np

    from ganji.features.extractors import load_extractor
    from ganji.metrics.protocol import score_features

    device = resolve_device(device_name_)
    extractor = load_extractor(extractor_name, device, cache, inception_weights)
    batch = 250
    images = torch.randint(0, 256, (batch, 1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    extractor.features(images[:8])  # warm-up
    done, seconds = _timed(lambda: extractor.features(images, batch_size=batch), device, 1, max_seconds)
    per_s = done * batch / seconds
    rng = np.random.default_rng(0)
    real = rng.normal(size=(KANJI_SET_SIZE, extractor.dim)).astype(np.float32)
    fake = rng.normal(size=(n, extractor.dim)).astype(np.float32) + 0.1
    start = time.perf_counter()
    score_features(real[:n], fake, real)
    metrics_s = time.perf_counter() - start
    return FidBench(extractor_name, device_name(device), extractor.dim, size, per_s, n / per_s, metrics_s, n / per_s + metrics_s, n)
