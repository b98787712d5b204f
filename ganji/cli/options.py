"""Options that several commands share, declared once, with their shell completions."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ganji.recipes import MODELS, model_names

# The models `ganji train|sample|fid MODEL` accept: the registry's names (ganji.recipes.registry).
Model = Enum("Model", {name: name for name in model_names()}, type=str)  # type: ignore[misc]

# For --sampler's help: each iterative model's samplers, and its default.
SAMPLERS_HELP = "; ".join(f"{m.name} {'|'.join(m.sampling.names())}" for m in MODELS if m.sampling.iterative)
DEFAULT_SAMPLERS = ", ".join(f"{m.name} {m.sampling.default}" for m in MODELS if m.sampling.iterative)
GUIDE_RUN_HELP = (f"Autoguidance (Karras et al. 2024; {', '.join(m.name for m in MODELS if m.sampling.iterative)}): guide with this weaker run of "
                  "the same model (trained the same way for fewer epochs), pushing away from its mistakes; "
                  "--guidance sets how hard.")
CLASSIFIER_GUIDANCE_HELP = ("Classifier guidance (Dhariwal & Nichol 2021) of a request, flow runs: every step is pushed towards what "
                            "the run's noise-aware component classifier (`ganji train-classifier`) reads as the asked-for "
                            "components, this hard; 0: off.")
BEST_OF_HELP = ("Best of K, flow runs: draw K candidates per image of a request and keep the one the run's noise-aware "
                "component classifier (`ganji train-classifier`) reads the asked-for components in most surely (K times the "
                "sampling work); 1: off.")


def _home_of(ctx: typer.Context) -> Path:
    from ganji.home import resolve_home

    return resolve_home(ctx.params.get("home"))


def complete_run(ctx: typer.Context, incomplete: str) -> list[str]:
    """Names of the chosen model's runs (every model's when none is chosen yet), newest first."""
    from ganji.runs import list_runs

    try:
        model = ctx.params.get("model")
        models = [model.value if isinstance(model, Enum) else model] if model else list(model_names())
        home = _home_of(ctx)
        names = [run.name for m in models for run in reversed(list_runs(home, m))]
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [n for n in dict.fromkeys(names) if n.startswith(incomplete)]


def complete_dataset(ctx: typer.Context, incomplete: str) -> list[str]:
    """Names of the prepared datasets in the home."""
    from ganji.home import datasets_dir

    try:
        folder = datasets_dir(_home_of(ctx))
        names = sorted(p.name for p in folder.iterdir() if (p / "manifest.json").is_file())
    except Exception:
        return []
    return [n for n in names if n.startswith(incomplete)]


HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Folder where ganji keeps datasets and runs \\[default: $GANJI_HOME, else the user data folder].",
        show_default=False,
        is_eager=True,  # parsed first, so that completing --run and --dataset can look in it
    ),
]
