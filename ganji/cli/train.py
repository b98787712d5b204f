"""`ganji train MODEL`: parse the options, call ganji.train.start.train, print the summary.

The model's own options (`--latent-dim`, `--timesteps`, ...) are made from the registry: one option
per field of the models' options dataclasses (ganji.recipes.registry), with the field's help, its
choices and each model's default; an option of another model is a one-line error.

`--nproc N` runs the same command under torchrun with N processes on this machine (one per GPU on a
CUDA machine); under torchrun, only rank 0 prints.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from typing import Annotated, Any

import typer

from ganji.cli import app
from ganji.cli.options import HomeOption, Model, complete_dataset, complete_run
from ganji.console import console, err_console
from ganji.errors import GanjiError
from ganji.home import resolve_home
from ganji.recipes import MODELS, ModelSpec

RUN = "Run"


def _per_model(attr: str) -> str:
    """Each model's paper default of a run setting, e.g. "vae 128, gan 128, ddpm 32"."""
    return ", ".join(f"{m.name} {getattr(m, attr):g}" for m in MODELS)


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


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise GanjiError(f"{flag} takes comma-separated whole numbers such as 512,256,128,64 (got {text!r})") from None


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _model_options() -> dict[str, list[tuple[ModelSpec, dataclasses.Field]]]:
    """Every model option that has command-line help, by field name, with the models that have it."""
    found: dict[str, list[tuple[ModelSpec, dataclasses.Field]]] = {}
    for m in MODELS:
        for f in dataclasses.fields(m.options_type):
            if "help" in f.metadata:
                found.setdefault(f.name, []).append((m, f))
    return found


MODEL_OPTIONS = _model_options()


def _option_parameter(name: str, owners: list[tuple[ModelSpec, dataclasses.Field]]) -> inspect.Parameter:
    """The typer option for a model option: its help, each model's choices and default, its panel."""
    flag = "--" + name.replace("_", "-")
    first = owners[0][1]
    kind = first.type if isinstance(first.type, str) else first.type.__name__
    help_text = first.metadata["help"].rstrip(".")
    choices = {m.name: f.metadata["choices"] for m, f in owners if f.metadata["choices"]}
    if choices:
        if len({c for c in choices.values()}) == 1:
            help_text += ": " + "|".join(next(iter(choices.values())))
        else:
            help_text += ": " + "; ".join(f"{m} {'|'.join(c)}" for m, c in choices.items())
    defaults = {m.name: _shown(f.default) for m, f in owners}
    shown = next(iter(defaults.values())) if len(set(defaults.values())) == 1 else ", ".join(f"{m} {d}" for m, d in defaults.items())
    titles = [m.title for m, _ in owners]
    panel = (" and ".join(titles) if len(titles) < 3 else ", ".join(titles[:-1]) + " and " + titles[-1]) + " options"
    extra = {"help": f"{help_text} \\[default: {shown}].", "show_default": False, "rich_help_panel": panel}
    if kind == "bool":
        annotation = Annotated[bool | None, typer.Option(f"{flag}/--no-{name.replace('_', '-')}", **extra)]
    else:
        python_type = {"int": int, "float": float, "str": str}.get(kind, str)  # tuples arrive as text: 512,256
        annotation = Annotated[python_type | None, typer.Option(flag, **extra)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def _parse_model_options(model: ModelSpec, values: dict[str, Any]) -> dict[str, Any]:
    """The given model options for `model`, parsed to their fields' types; another model's option is an error."""
    given = {k: v for k, v in values.items() if v is not None}
    own = {f.name: f for f in dataclasses.fields(model.options_type)}
    foreign = sorted(k for k in given if k not in own)
    if foreign:
        raise GanjiError(f"{', '.join('--' + k.replace('_', '-') for k in foreign)} does not apply to the {model.name} model")
    for k, v in given.items():
        if str(own[k].type).startswith("tuple[int"):
            given[k] = _int_list(v, "--" + k.replace("_", "-"))
    return given


def train_command(
    model: Annotated[Model, typer.Argument(help="Which model to train.", show_default=False)],
    epochs: Annotated[int | None, typer.Option(help="Passes over the dataset \\[default: 100, the paper's].", show_default=False, rich_help_panel=RUN)] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"Images per step \\[default: {_per_model('batch_size')}].", show_default=False, rich_help_panel=RUN)] = None,
    lr: Annotated[float | None, typer.Option(help=f"Learning rate \\[default: {_per_model('lr')}].", show_default=False, rich_help_panel=RUN)] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every random draw \\[default: 0].", show_default=False, rich_help_panel=RUN)] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda \\[default: auto].", show_default=False, rich_help_panel=RUN)] = None,
    precision: Annotated[str | None, typer.Option(help=f"auto, fp32 or bf16 \\[default: auto = bf16 on CUDA for {'/'.join(m.name for m in MODELS if m.bf16)}, else fp32].", show_default=False, rich_help_panel=RUN)] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the networks on CUDA \\[default: on].", show_default=False, rich_help_panel=RUN)] = None,
    compile_mode: Annotated[str | None, typer.Option(help="torch.compile mode: default, reduce-overhead or max-autotune (these two replay CUDA graphs), max-autotune-no-cudagraphs \\[default: default].", show_default=False, rich_help_panel=RUN)] = None,
    ema_decay: Annotated[float | None, typer.Option(help=f"EMA decay of the sampling weights, 0 = off \\[default: {_per_model('ema_decay')}].", show_default=False, rich_help_panel=RUN)] = None,
    dataset: Annotated[str | None, typer.Option(help="Prepared dataset name \\[default: kanji, prepared first if missing].", show_default=False, rich_help_panel=RUN, autocompletion=complete_dataset)] = None,
    run: Annotated[str | None, typer.Option(help="Run name \\[default: a timestamp; with --resume, the latest run].", show_default=False, rich_help_panel=RUN, autocompletion=complete_run)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the named (or latest) run from its checkpoint.", rich_help_panel=RUN)] = False,
    init_from: Annotated[str | None, typer.Option(help="Start from the weights (and EMA) of another run of this model, its last checkpoint; the optimiser and the learning-rate schedule start afresh (fine-tuning, or a warm restart for more epochs) \\[default: fresh weights].", show_default=False, rich_help_panel=RUN, autocompletion=complete_run)] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop at this total step count of the run (0 = no limit) \\[default: 0].", show_default=False, rich_help_panel=RUN)] = None,
    time_budget: Annotated[float | None, typer.Option(help="Stop after this many minutes, with a checkpoint (0 = none) \\[default: 0].", show_default=False, rich_help_panel=RUN)] = None,
    sample_every: Annotated[int | None, typer.Option(help="Save a sample grid every N epochs and at the end (0 = never) \\[default: 1].", show_default=False, rich_help_panel=RUN)] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Save a checkpoint every N epochs (and always at the end) \\[default: 1].", show_default=False, rich_help_panel=RUN)] = None,
    eval_every: Annotated[int | None, typer.Option(help="Measure FID every N epochs and keep the best checkpoint as best.safetensors (0 = never) \\[default: 0].", show_default=False, rich_help_panel=RUN)] = None,
    eval_n: Annotated[int | None, typer.Option(help="Samples per --eval-every measurement \\[default: 2000].", show_default=False, rich_help_panel=RUN)] = None,
    eval_features: Annotated[str | None, typer.Option(help="Features for --eval-every: kanji or inception \\[default: kanji].", show_default=False, rich_help_panel=RUN)] = None,
    log_every: Annotated[int | None, typer.Option(help="Read losses from the device every N steps \\[default: 50].", show_default=False, rich_help_panel=RUN)] = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Train with N processes on this machine through torchrun (one per GPU); --batch-size is the global batch \\[default: 1].", show_default=False, rich_help_panel=RUN)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel=RUN)] = False,
    home: HomeOption = None,
    **model_options: Any,
) -> None:
    """Train a model; defaults reproduce the paper's final configuration (100 epochs)."""
    from ganji.recipes import spec

    name = model.value
    options = _parse_model_options(spec(name), model_options)
    given = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "device": device,
        "precision": precision, "compile": compile, "compile_mode": compile_mode, "ema_decay": ema_decay, "dataset": dataset,
        "max_steps": max_steps, "time_budget": time_budget, "sample_every": sample_every,
        "checkpoint_every": checkpoint_every, "log_every": log_every, "options": options,
        "eval_every": eval_every, "eval_n": eval_n, "eval_features": eval_features, "init_from": init_from,
    }
    # Each value checked on its own before torch is imported, so that a mistyped option fails at
    # once; train() checks them again merged with a resumed run's.
    spec(name).config(options, **{k: v for k, v in given.items() if k != "options"})
    from ganji.runtime.distributed import world_from_env

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
    from ganji.cli.train_display import ProgressBar, summary_table
    from ganji.runtime.distributed import ReportedOnMain
    from ganji.train.start import train

    try:
        result = train(resolve_home(home), name, given, run_name=run, resume=resume, observer=None if quiet else ProgressBar())
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


def _register() -> None:
    """`ganji train` with the static options above and one option per model option (its signature)."""
    static = [p for p in inspect.signature(train_command).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    hints = typing.get_type_hints(train_command, include_extras=True)
    static = [p.replace(annotation=hints[p.name]) for p in static]
    dynamic = [_option_parameter(name, owners) for name, owners in MODEL_OPTIONS.items()]
    train_command.__signature__ = inspect.Signature(static + dynamic)  # type: ignore[attr-defined]
    app.command("train")(train_command)


_register()
