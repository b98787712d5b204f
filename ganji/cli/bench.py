"""`ganji bench train|sample|fid`: how fast this machine trains, samples and measures each model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ganji.cli import app
from ganji.cli.options import HomeOption
from ganji.console import console, err_console
from ganji.errors import GanjiError
from ganji.recipes import MODELS, model_names, spec
from ganji.recipes.registry import DEFAULT_SAMPLER_STEPS
from ganji.runtime.config import COMPILE_MODES

def _fields(model) -> set[str]:
    return {f.name for f in dataclasses.fields(model.options_type)}


bench_app = typer.Typer(help="Measure training, sampling and metric speed on this machine.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

MODELS_HELP = "Comma-separated models to measure."
ALL_MODELS = ",".join(model_names())
WIDTH_HELP = "Base width of the models that have one (" + ", ".join(m.name for m in MODELS if "base_width" in _fields(m)) + ") \\[default: each one's paper width]."


def _models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in models if m not in model_names()]
    if bad or not models:
        raise GanjiError(f"--models takes {', '.join(model_names())} (got {text!r})")
    return models


def _width_options(model: str, base_width: int | None) -> dict[str, int]:
    """--base-width for the models whose options have it."""
    return {"base_width": base_width} if base_width and "base_width" in _fields(spec(model)) else {}


def _samplers(model: str, steps: int) -> list[tuple[str | None, int | None]]:
    """Every sampler of an iterative model (with `steps` where it chooses them); one direct pass otherwise."""
    return [(s.name, steps if s.chooses_steps else None) for s in spec(model).sampling.samplers] or [(None, None)]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@bench_app.command("train")
def bench_train_command(
    models: Annotated[str, typer.Option(help=MODELS_HELP)] = ALL_MODELS,
    size: Annotated[int, typer.Option(help="Image size (the paper's 64).")] = 64,
    batch_size: Annotated[int | None, typer.Option(help="Images per step \\[default: the paper's: vae 128, gan 128, ddpm 32].", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = "auto",
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile on CUDA.")] = True,
    compile_mode: Annotated[str, typer.Option(help="Comma-separated torch.compile modes to time, a row each: " + ", ".join(COMPILE_MODES)
                                              + " (reduce-overhead and max-autotune replay CUDA graphs).")] = "default",
    cudnn_benchmark: Annotated[bool, typer.Option("--cudnn-benchmark/--no-cudnn-benchmark", help="CUDA: let cuDNN time its convolution algorithms once per shape and keep the fastest, as training does.")] = True,
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last", help="CUDA: networks and batches in channels_last memory format, as training does.")] = True,
    warmup: Annotated[int, typer.Option(help="Untimed steps first (compilation happens here).")] = 2,
    min_steps: Annotated[int, typer.Option(help="Timed steps, at least.")] = 3,
    seconds: Annotated[float, typer.Option(help="Keep timing steps until this many seconds have passed.")] = 10.0,
    base_width: Annotated[int | None, typer.Option(help=WIDTH_HELP, show_default=False)] = None,
    eager: Annotated[bool, typer.Option("--eager-baseline/--no-eager-baseline", help="Also time a plain eager fp32 PyTorch loop of the same model and batch, for comparison.")] = True,
    profile: Annotated[int, typer.Option(help="Then profile this many steps: the operators that take a step's time, and how busy the GPU was.")] = 0,
    trace: Annotated[Path | None, typer.Option(help="With --profile: write each model's Chrome/Perfetto trace into this folder.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one object per model).")] = False,
) -> None:
    """Training images/s, epoch time on the 10,020-kanji set, FLOPs per image, MFU and peak memory."""
    from ganji.perf.bench import as_dict, bench_train

    if size < 16 or size % 16:
        raise GanjiError(f"--size must be a positive multiple of 16 (got {size})")
    if warmup < 0 or min_steps < 1 or seconds < 0 or profile < 0:
        raise GanjiError("--warmup must be >= 0, --min-steps >= 1, --seconds >= 0 and --profile >= 0")
    if trace is not None and not profile:
        raise GanjiError("--trace needs --profile N (the number of steps to profile)")
    if trace is not None and trace.exists() and not trace.is_dir():
        raise GanjiError(f"--trace must be a folder: {trace} is a file")
    modes = [m.strip() for m in compile_mode.split(",") if m.strip()]
    if not modes or any(m not in COMPILE_MODES for m in modes):
        raise GanjiError(f"--compile-mode takes {', '.join(COMPILE_MODES)} (got {compile_mode!r})")
    results = []
    for model in _models(models):
        options = _width_options(model, base_width)
        for mode in modes:
            with err_console.status(f"timing {model} training ({mode})..."):
                suffix = "" if len(modes) == 1 else f"-{mode}"
                model_trace = trace / f"{model}{suffix}-train-trace.json" if trace is not None else None
                results.append(bench_train(model, device, size, batch_size, precision, compile, warmup, min_steps, seconds, options,
                                           eager_baseline=eager, profile=profile, trace=model_trace, compile_mode=mode,
                                           cudnn_benchmark=cudnn_benchmark, channels_last=channels_last))
    if as_json:
        console.print_json(json.dumps([as_dict(r) for r in results]))
        return
    first = results[0]
    layout = ""
    if first.settings["device_type"] == "cuda":
        on = {True: "on", False: "off"}
        layout = f"; channels_last {on[first.settings['channels_last']]}, cuDNN autotuning {on[first.settings['cudnn_benchmark']]}"
    table = Table(title=f"training speed on {first.device} (torch {first.settings['torch']}{layout})")
    for col in ("model", "precision", "compiled", "batch", "size", "params", "GFLOPs/img", "img/s", "epoch (10k) s", "MFU", "peak MiB", "timed steps", "plain eager img/s", "ganji / eager"):
        table.add_column(col, justify="right" if col not in ("model", "precision") else "left")
    for r in results:
        table.add_row(r.model, r.precision, r.compile_mode if r.compiled else "no", str(r.batch_size), str(r.image_size), f"{r.parameters:,}",
                      f"{r.gflops_per_image:.2f}", f"{r.images_per_s:,.1f}", f"{r.epoch_s:,.1f}",
                      _fmt(None if r.mfu is None else 100 * r.mfu, ".1f") + ("%" if r.mfu is not None else ""),
                      f"{r.peak_mem_mb:,.0f}", str(r.timed_steps), _fmt(r.eager_images_per_s, ",.1f"),
                      _fmt(None if r.eager_images_per_s is None else r.images_per_s / r.eager_images_per_s, ".2f"))
    console.print(table)
    if len(modes) > 1 and not any(r.compiled for r in results):
        console.print("nothing is compiled here (compiling is for CUDA, or --no-compile): each mode's row times the same eager step.")
    for r in results:
        if r.profile is not None:
            print_profile(r.model, r.profile)
    if trace is not None:
        console.print(f"traces (open in https://ui.perfetto.dev or chrome://tracing): {trace}")
    console.print("GAN steps run all of their D steps (worst case); MFU is against the GPU's dense bf16 peak. "
                  "Plain eager: the same networks and batch in a bare fp32 PyTorch loop (no EMA, no autocast, no compile); "
                  "with it, both img/s are medians of steps timed alternately.")


def print_profile(model: str, p) -> None:
    """One model's step profile: its top operators, and how much of the step's wall time they fill."""
    where = "GPU kernel" if p.timed_on == "cuda" else "CPU"
    table = Table(title=f"{model}: where a training step goes ({p.steps} profiled steps, {where} self time per step)")
    for col in ("operator", "calls/step", "ms/step", "share"):
        table.add_column(col, justify="left" if col == "operator" else "right")
    for op in p.top:
        table.add_row(op.name, f"{op.calls_per_step:g}", f"{op.self_ms_per_step:,.3f}", f"{100 * op.share:.1f}%")
    console.print(table)
    if p.timed_on == "cuda":
        console.print(f"{model}: GPU busy {p.busy_ms_per_step:,.2f} ms of {p.wall_ms_per_step:,.2f} ms wall per step "
                      f"({100 * p.busy_share:.0f}%): {'kernel-bound' if p.busy_share > 0.8 else 'launch/Python-bound: CUDA graphs or bigger batches would help'}")
    else:
        console.print(f"{model}: {p.busy_ms_per_step:,.2f} ms of operator CPU time in {p.wall_ms_per_step:,.2f} ms wall per step (under the profiler)")


@bench_app.command("sample")
def bench_sample_command(
    models: Annotated[str, typer.Option(help=MODELS_HELP)] = ALL_MODELS,
    size: Annotated[int, typer.Option(help="Image size (the paper's 64).")] = 64,
    batch_size: Annotated[int, typer.Option(help="Images generated at once.")] = 256,
    ddim_steps: Annotated[int, typer.Option("--steps", "--ddim-steps", help="Steps of the step-choosing samplers (DDIM, ...), to compare with the full sampler.")] = DEFAULT_SAMPLER_STEPS,
    extrapolate_after: Annotated[int, typer.Option(help="Iterative models: time this many network calls and scale to all of them (0 = run the whole sampler).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = "auto",
    seconds: Annotated[float, typer.Option(help="One-pass models: keep timing until this many seconds have passed.")] = 5.0,
    base_width: Annotated[int | None, typer.Option(help=WIDTH_HELP, show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Seconds per 1,000 samples for each model and sampler, and each few-step sampler's speed-up."""
    from ganji.perf.bench import as_dict, bench_sample

    if size < 16 or size % 16:
        raise GanjiError(f"--size must be a positive multiple of 16 (got {size})")
    if batch_size < 1 or ddim_steps < 1 or extrapolate_after < 0:
        raise GanjiError("--batch-size and --ddim-steps must be >= 1, --extrapolate-after >= 0")
    results = []
    for model in _models(models):
        options = _width_options(model, base_width)
        for sampler, steps in _samplers(model, ddim_steps):
            with err_console.status(f"timing {model} sampling ({sampler})..."):
                results.append(bench_sample(model, sampler, steps, device, size, batch_size, precision, options, seconds,
                                            extrapolate_after or None))
    if as_json:
        console.print_json(json.dumps([as_dict(r) for r in results]))
        return
    table = Table(title=f"sampling speed on {results[0].device}")
    for col in ("model", "sampler", "precision", "batch", "net calls/img", "s / 1000 img", "img/s", "timed"):
        table.add_column(col)
    for r in results:
        timed = f"{r.extrapolated_from_steps} steps, extrapolated" if r.extrapolated_from_steps else "whole sampler"
        table.add_row(r.model, r.sampler, r.precision, str(r.batch_size),
                      str(r.model_calls), f"{r.seconds_per_1000:,.2f}", f"{r.images_per_s:,.1f}", timed)
    console.print(table)
    for model in dict.fromkeys(r.model for r in results):
        rows = sorted((r for r in results if r.model == model and r.model_calls > 1), key=lambda r: r.seconds_per_1000)
        if len(rows) > 1:
            slow = rows[-1]
            for r in rows[:-1]:
                console.print(f"{model}: {r.sampler} is {slow.seconds_per_1000 / r.seconds_per_1000:,.1f}x faster than {slow.sampler} "
                              f"({r.model_calls} against {slow.model_calls} network calls per image).")


@bench_app.command("fid")
def bench_fid_command(
    features: Annotated[str, typer.Option(help="Comma-separated extractors: kanji and/or inception (needs its weights).")] = "kanji",
    inception_weights: Annotated[Path | None, typer.Option(help="pytorch-fid's Inception weights file \\[default: the home cache's].", show_default=False)] = None,
    models: Annotated[str, typer.Option(help=MODELS_HELP + " Their 10k-sample sampling time is added to get a whole FID's time ('' = none).")] = ALL_MODELS,
    size: Annotated[int, typer.Option(help="Image size (the paper's 64).")] = 64,
    n: Annotated[int, typer.Option("--n", help="Samples per FID.")] = 10_000,
    batch_size: Annotated[int, typer.Option(help="Images generated at once.")] = 256,
    extrapolate_after: Annotated[int, typer.Option(help="Iterative models' sampling: time this many network calls and scale (0 = whole sampler).")] = 2,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seconds: Annotated[float, typer.Option(help="Keep timing each measurement this long.")] = 5.0,
    home: HomeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Feature extraction images/s, metric time, and the time of a whole n-sample FID per model."""
    from ganji.perf.bench import as_dict, bench_fid, bench_sample
    from ganji.home import cache_dir, resolve_home

    names = [f.strip() for f in features.split(",") if f.strip()]
    if not names or any(f not in ("kanji", "inception") for f in names):
        raise GanjiError(f"--features takes kanji and/or inception (got {features!r})")
    if n < 10 or size < 16 or size % 16:
        raise GanjiError("--n must be >= 10 and --size a positive multiple of 16")
    cache = cache_dir(resolve_home(home))
    extractors = []
    for name in names:
        with err_console.status(f"timing {name} features and the metrics..."):
            extractors.append(bench_fid(name, device, size, n, seconds, inception_weights, cache))
    sampling = []
    for model in _models(models) if models.strip() else []:
        for sampler, steps in _samplers(model, DEFAULT_SAMPLER_STEPS):
            with err_console.status(f"timing {model} sampling ({sampler})..."):
                sampling.append(bench_sample(model, sampler, steps, device, size, batch_size, "auto", None, seconds, extrapolate_after or None))
    if as_json:
        console.print_json(json.dumps({"extractors": [as_dict(e) for e in extractors], "sampling": [as_dict(s) for s in sampling]}))
        return
    table = Table(title=f"metric speed on {extractors[0].device} (torch {torch_version()}), {n:,} samples, {size} px")
    for col in ("features", "dim", "extract img/s", f"extract {n:,} s", "metrics s", "FID s (no sampling)"):
        table.add_column(col, justify="left" if col == "features" else "right")
    for e in extractors:
        table.add_row(e.extractor, str(e.feature_dim), f"{e.images_per_s:,.0f}", f"{e.extract_s:,.1f}", f"{e.metrics_s:,.1f}", f"{e.fid_s:,.1f}")
    console.print(table)
    if sampling:
        table = Table(title=f"a whole {n:,}-sample FID per model (sampling + features + metrics)")
        table.add_column("model")
        table.add_column("sampler")
        for e in extractors:
            table.add_column(f"{e.extractor}: total s", justify="right")
        for s in sampling:
            sample_s = s.seconds_per_1000 * n / 1000
            label = s.sampler + (" (extrapolated)" if s.extrapolated_from_steps else "")
            table.add_row(s.model, label, *[f"{sample_s + e.fid_s:,.1f}" for e in extractors])
        console.print(table)


def _int_list(text: str, what: str) -> list[int]:
    return _number_list(text, what, int)


def _float_list(text: str, what: str) -> list[float]:
    return _number_list(text, what, float)


def _number_list(text: str, what: str, kind: type) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise GanjiError(f"{what} takes comma-separated {'whole numbers' if kind is int else 'numbers'} (got {text!r})")
    return values


@bench_app.command("peer")
def bench_peer_command(
    model: Annotated[str, typer.Option(help="Our model to compare: an iterative one (ddpm or flow), with its quick preset.")] = "flow",
    seconds: Annotated[float, typer.Option(help="Training wall time of each contender, in seconds (142: the quick DDPM's before issue 17).")] = 142.0,
    n: Annotated[int, typer.Option("--n", help="Samples per FID.")] = 1_000,
    calls: Annotated[int, typer.Option(help="Network calls per sample: the peer's DDIM steps, our fast sampler's budget.")] = 20,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; every contender trains once per seed.")] = "0",
    peer_dims: Annotated[str, typer.Option(help="Comma-separated Unet widths (dim) of the peer.")] = "32",
    peer_dim_mults: Annotated[str, typer.Option(help="The peer's Unet dim_mults.")] = "1,2,4",
    peer_timesteps: Annotated[int, typer.Option(help="The peer's T.")] = 256,
    peer_lr: Annotated[float, typer.Option(help="The peer's Adam learning rate.")] = 1e-3,
    peer_batch_size: Annotated[int, typer.Option(help="The peer's batch size.")] = 32,
    dataset: Annotated[str, typer.Option(help="Prepared dataset both train on (kanji32 is prepared if missing).")] = "kanji32",
    features: Annotated[str, typer.Option(help="FID features: kanji or inception.")] = "kanji",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Our model against lucidrains' denoising-diffusion-pytorch: same data, training time, network
    calls per sample and metric, in one run (needs `pip install "ganji\\[peer]"`)."""
    from ganji.home import resolve_home
    from ganji.perf.peer import bench_peer

    if model not in model_names() or not spec(model).sampling.iterative:
        raise GanjiError(f"--model must be an iterative model: {', '.join(m.name for m in MODELS if m.sampling.iterative)} (got {model!r})")
    if not (seconds > 0 and seconds <= 86_400) or n < 10 or not 1 <= calls <= 1_000 or peer_timesteps < calls:
        raise GanjiError("--seconds must be in (0, 86400], --n at least 10, --calls in 1..1000 and at most --peer-timesteps")
    rows = []

    def show(row) -> None:
        rows.append(row)
        if not as_json:
            err_console.print(f"{row.name} (seed {row.seed}): {row.steps:,} steps in {row.train_seconds:,.0f} s, FID {row.fid:,.1f}")

    with err_console.status("training and scoring both sides (this takes a while)..."):
        bench_peer(resolve_home(home), model=model, dataset=dataset, seconds=seconds, n=n, calls=calls,
                   seeds=_int_list(seeds, "--seeds"), peer_dims=_int_list(peer_dims, "--peer-dims"),
                   dim_mults=tuple(_int_list(peer_dim_mults, "--peer-dim-mults")), timesteps=peer_timesteps, peer_lr=peer_lr,
                   peer_batch=peer_batch_size, features=features, device_name=device, on_row=show)
    if as_json:
        console.print_json(json.dumps([{**dataclasses.asdict(r)} for r in rows]))
        return
    table = Table(title=f"ganji {model} against the peer: {seconds:g} s of training each, {calls} network calls per sample, n = {n:,}")
    for col in ("contender", "seed", "configuration", "parameters", "steps", "images", "train s", "sampler", "sample s", "FID", "KID x1000",
                "precision", "recall"):
        table.add_column(col, justify="left" if col in ("contender", "configuration", "sampler") else "right")
    for r in rows:
        sc = r.score
        table.add_row(r.name, str(r.seed), r.configuration, f"{r.parameters:,}", f"{r.steps:,}", f"{r.images_seen:,}",
                      f"{r.train_seconds:,.0f}", r.sampler, f"{r.sample_seconds:,.1f}", f"{sc['fid']:,.1f}",
                      f"{sc['kid']:,.1f}", f"{sc['precision']:.3f}", f"{sc['recall']:.3f}")
    console.print(table)
    ours = [r.fid for r in rows if r.name.startswith("ganji")]
    for dim in _int_list(peer_dims, "--peer-dims"):
        theirs = [r.fid for r in rows if r.name == f"peer dim {dim}"]
        if ours and theirs:
            mean_ours, mean_theirs = sum(ours) / len(ours), sum(theirs) / len(theirs)
            console.print(f"mean FID over {len(ours)} seed(s): ganji {model} {mean_ours:,.1f}, peer dim {dim} {mean_theirs:,.1f} "
                          f"(ours is {mean_ours / mean_theirs:.2f}x the peer's)")


@bench_app.command("trace")
def bench_trace_command(
    n: Annotated[int, typer.Option("--n", help="Glyphs traced per setting (a fixed sample of the dataset).")] = 100,
    thresholds: Annotated[str, typer.Option(help="Comma-separated ink thresholds (grey level 0-1 of the upscaled glyph).")] = "0.4,0.5,0.6",
    upscales: Annotated[str, typer.Option(help="Comma-separated upscaling factors before tracing.")] = "1,2,4,8",
    alphamax: Annotated[str, typer.Option(help="Comma-separated potrace corner thresholds (0 = corners, 1.33 = curves).")] = "0.5,1.0,1.3",
    dataset: Annotated[str, typer.Option(help="Prepared dataset whose real kanji are traced.")] = "kanji",
    from_images: Annotated[Path | None, typer.Option("--from-images", help="Trace this folder's glyph images instead (at the dataset's size).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one object per setting).")] = False,
    home: HomeOption = None,
) -> None:
    """How faithfully `ganji font` traces glyphs: each setting's font rendered back and compared with
    the images it came from (ink IoU, grey error), with its outline size and time per glyph."""
    from ganji.data.store import load_dataset
    from ganji.font.make import folder_source
    from ganji.font.trace import require_potrace
    from ganji.home import resolve_home
    from ganji.metrics.protocol import reference_rows
    from ganji.perf.trace_bench import bench_trace

    if n < 1:
        raise GanjiError(f"--n must be at least 1 (got {n})")
    grid = (_float_list(thresholds, "--thresholds"), _int_list(upscales, "--upscales"), _float_list(alphamax, "--alphamax"))
    require_potrace()
    data = load_dataset(resolve_home(home), dataset)
    if from_images is not None:
        images = folder_source(from_images, data, limit=n).images
    else:
        images = data.images[reference_rows(len(data), n)].numpy()
    total = len(grid[0]) * len(grid[1]) * len(grid[2])
    with err_console.status(f"tracing {len(images)} glyphs x {total} settings..."):
        rows = bench_trace(images, *grid)
    if as_json:
        console.print_json(json.dumps([dataclasses.asdict(r) for r in rows]))
        return
    table = Table(title=f"tracing {len(images)} glyphs of {from_images or dataset} ({images.shape[-1]} px), rendered back by FreeType")
    for col in ("threshold", "upscale", "alphamax", "ink IoU", "grey error", "segments / glyph", "ms / glyph"):
        table.add_column(col, justify="right")
    best = max(rows, key=lambda r: r.iou)
    for r in rows:
        table.add_row(f"{r.threshold:g}", str(r.upscale), f"{r.alphamax:g}", f"{r.iou:.4f}", f"{r.grey_error:.4f}", f"{r.segments:.1f}",
                      f"{r.ms_per_glyph:.1f}", style="bold" if r is best else None)
    console.print(table)
    console.print(f"best ink IoU: --threshold {best.threshold:g} --upscale {best.upscale} --alphamax {best.alphamax:g} ({best.iou:.4f})")


def torch_version() -> str:
    import torch

    return torch.__version__
