"""`ganji train vae|gan|ddpm`: parse the options, call ganji.train.loop.train, print the summary.

`--nproc N` runs the same command under torchrun with N processes on this machine (one per GPU on a
CUDA machine); under torchrun, only rank 0 prints.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated

import typer

from ganji.cli import app
from ganji.cli.options import HomeOption
from ganji.console import console, err_console
from ganji.errors import GanjiError
from ganji.home import resolve_home

RUN = "Run"
VAE = "VAE options"
GAN = "GAN options"
DDPM = "DDPM options"


class Model(str, Enum):
    vae = "vae"
    gan = "gan"
    ddpm = "ddpm"


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line without its --nproc option (`--nproc N` or `--nproc=N`)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _layers(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise GanjiError(f"--layers takes comma-separated widths such as 512,256,128,64 (got {text!r})") from None


@app.command("train")
def train_command(
    model: Annotated[Model, typer.Argument(help="Which model to train.", show_default=False)],
    epochs: Annotated[int | None, typer.Option(help="Passes over the dataset \\[default: 100, the paper's].", show_default=False, rich_help_panel=RUN)] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step \\[default: vae 128, gan 128, ddpm 32].", show_default=False, rich_help_panel=RUN)] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate \\[default: vae 1e-3, gan 1e-4, ddpm 5e-5].", show_default=False, rich_help_panel=RUN)] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every random draw \\[default: 0].", show_default=False, rich_help_panel=RUN)] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda \\[default: auto].", show_default=False, rich_help_panel=RUN)] = None,
    precision: Annotated[str | None, typer.Option(help="auto, fp32 or bf16 \\[default: auto = bf16 on CUDA for vae/ddpm, else fp32].", show_default=False, rich_help_panel=RUN)] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the networks on CUDA \\[default: on].", show_default=False, rich_help_panel=RUN)] = None,
    compile_mode: Annotated[str | None, typer.Option(help="torch.compile mode: default, reduce-overhead or max-autotune (these two replay CUDA graphs), max-autotune-no-cudagraphs \\[default: default].", show_default=False, rich_help_panel=RUN)] = None,
    ema_decay: Annotated[float | None, typer.Option(help="EMA decay of the sampling weights, 0 = off \\[default: vae 0, gan 0.999, ddpm 0.9995].", show_default=False, rich_help_panel=RUN)] = None,
    dataset: Annotated[str | None, typer.Option(help="Prepared dataset name \\[default: kanji, prepared first if missing].", show_default=False, rich_help_panel=RUN)] = None,
    run: Annotated[str | None, typer.Option(help="Run name \\[default: a timestamp; with --resume, the latest run].", show_default=False, rich_help_panel=RUN)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the named (or latest) run from its checkpoint.", rich_help_panel=RUN)] = False,
    max_steps: Annotated[int | None, typer.Option(help="Stop at this total step count of the run (0 = no limit) \\[default: 0].", show_default=False, rich_help_panel=RUN)] = None,
    time_budget: Annotated[float | None, typer.Option(help="Stop after this many minutes, with a checkpoint (0 = none) \\[default: 0].", show_default=False, rich_help_panel=RUN)] = None,
    sample_every: Annotated[int | None, typer.Option(help="Save a sample grid every N epochs and at the end (0 = never) \\[default: 1].", show_default=False, rich_help_panel=RUN)] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Save a checkpoint every N epochs (and always at the end) \\[default: 1].", show_default=False, rich_help_panel=RUN)] = None,
    eval_every: Annotated[int | None, typer.Option(help="Measure FID every N epochs and keep the best checkpoint as best.safetensors (0 = never) \\[default: 0].", show_default=False, rich_help_panel=RUN)] = None,
    eval_n: Annotated[int | None, typer.Option(help="Samples per --eval-every measurement \\[default: 2000].", show_default=False, rich_help_panel=RUN)] = None,
    eval_features: Annotated[str | None, typer.Option(help="Features for --eval-every: kanji or inception \\[default: kanji].", show_default=False, rich_help_panel=RUN)] = None,
    log_every: Annotated[int | None, typer.Option(help="Read losses from the device every N steps \\[default: 50].", show_default=False, rich_help_panel=RUN)] = None,
    latent_dim: Annotated[int | None, typer.Option(help="Latent size \\[default: vae 256, gan 128].", show_default=False, rich_help_panel="VAE and GAN options")] = None,
    arch: Annotated[str | None, typer.Option(help="vae: resnet|conv; gan: resnet|dcgan \\[default: resnet].", show_default=False, rich_help_panel="VAE and GAN options")] = None,
    beta: Annotated[float | None, typer.Option(help="Weight of the KL term \\[default: 1].", show_default=False, rich_help_panel=VAE)] = None,
    loss: Annotated[str | None, typer.Option(help="hinge, wasserstein, bce or lsgan \\[default: hinge].", show_default=False, rich_help_panel=GAN)] = None,
    gp: Annotated[float | None, typer.Option(help="Gradient-penalty weight, not used with bce \\[default: 10].", show_default=False, rich_help_panel=GAN)] = None,
    disc_ratio: Annotated[int | None, typer.Option(help="Most D steps per G step (fewer once D accuracy > 0.9) \\[default: 5].", show_default=False, rich_help_panel=GAN)] = None,
    layers: Annotated[str | None, typer.Option(help="Generator widths \\[default: 512,256,128,64].", show_default=False, rich_help_panel=GAN)] = None,
    spectral_norm: Annotated[bool | None, typer.Option("--spectral-norm/--no-spectral-norm", help="Spectral norm on D's layers \\[default: off].", show_default=False, rich_help_panel=GAN)] = None,
    bn_freeze_epoch: Annotated[int | None, typer.Option(help="After N epochs G's BatchNorm uses frozen running statistics, as the study's code did (0 = never) \\[default: 1].", show_default=False, rich_help_panel=GAN)] = None,
    timesteps: Annotated[int | None, typer.Option(help="Diffusion steps T \\[default: 1024].", show_default=False, rich_help_panel=DDPM)] = None,
    schedule: Annotated[str | None, typer.Option(help="Noise schedule: cosine or linear \\[default: cosine].", show_default=False, rich_help_panel=DDPM)] = None,
    attention: Annotated[bool | None, typer.Option("--attention/--no-attention", help="Self-attention after every U-Net block \\[default: off].", show_default=False, rich_help_panel=DDPM)] = None,
    base_width: Annotated[int | None, typer.Option(help="Base width of the VAE or the U-Net; widths scale with it \\[default: 64, the paper's].", show_default=False, rich_help_panel="VAE and DDPM options")] = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Train with N processes on this machine through torchrun (one per GPU); --batch-size is the global batch \\[default: 1].", show_default=False, rich_help_panel=RUN)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel=RUN)] = False,
    home: HomeOption = None,
) -> None:
    """Train a model; defaults reproduce the paper's final configuration (100 epochs)."""
    from ganji.train.distributed import world_from_env

    world = world_from_env()
    if nproc is not None:
        if nproc < 1:
            raise GanjiError(f"--nproc must be at least 1 (got {nproc})")
        if world.launched:
            raise GanjiError("--nproc starts torchrun itself: leave it out when the command already runs under torchrun")
        if nproc > 1:
            from ganji.train.launch import check_devices_for, launch_torchrun

            check_devices_for(nproc, device or "auto")
            raise typer.Exit(launch_torchrun(nproc, _without_nproc(sys.argv[1:])))
    from ganji.train.distributed import ReportedOnMain
    from ganji.train.loop import summary_table, train

    name = model.value
    per_model = {
        "vae": {"latent_dim": latent_dim, "arch": arch, "beta": beta, "base_width": base_width},
        "gan": {"latent_dim": latent_dim, "arch": arch, "loss": loss, "gp": gp, "disc_ratio": disc_ratio,
                "layers": _layers(layers), "spectral_norm": spectral_norm,
                "bn_freeze_epoch": bn_freeze_epoch},
        "ddpm": {"timesteps": timesteps, "schedule": schedule, "attention": attention, "base_width": base_width},
    }
    foreign = sorted(
        {k for other, opts in per_model.items() if other != name for k, v in opts.items() if v is not None}
        - {k for k, v in per_model[name].items()}
    )
    if foreign:
        raise GanjiError(f"{', '.join('--' + k.replace('_', '-') for k in foreign)} does not apply to the {name} model")
    given = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "device": device,
        "precision": precision, "compile": compile, "compile_mode": compile_mode, "ema_decay": ema_decay, "dataset": dataset,
        "max_steps": max_steps, "time_budget": time_budget, "sample_every": sample_every,
        "checkpoint_every": checkpoint_every, "log_every": log_every, "options": per_model[name],
        "eval_every": eval_every, "eval_n": eval_n, "eval_features": eval_features,
    }
    try:
        result = train(resolve_home(home), name, given, run_name=run, resume=resume, show_progress=not quiet)
    except ReportedOnMain:
        raise typer.Exit(1) from None  # rank 0 prints this error
    if not world.is_main:
        if result.reason == "interrupted":
            raise typer.Exit(130)
        return
    console.print(summary_table(result))
    if result.reason in ("interrupted", "time-budget") or result.step < result.total_steps:
        err_console.print(
            f"checkpoint saved at step {result.step}; continue with: "
            f"[bold]ganji train {name} --run {result.run.name} --resume[/]"
            + (" --max-steps N" if result.reason == "max-steps" else "")
        )
    if result.reason == "interrupted":
        raise typer.Exit(130)
