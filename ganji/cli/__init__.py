"""The `ganji` command line: a thin layer that parses options and calls the library.

Each command lives in its own module here and registers itself on `app`. Errors the user can fix
(GanjiError, OS errors such as a read-only folder) are printed as one line with a non-zero exit.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from ganji import __version__
from ganji.console import err_console
from ganji.errors import GanjiError

app = typer.Typer(
    name="ganji",
    help="Train generative models (VAE, GAN, DDPM, ...) on ~10,000 kanji, sample fake kanji, and compare them.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion: model, run and dataset names complete in the shell
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ganji {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Train generative models (VAE, GAN, DDPM, ...) on ~10,000 kanji, sample fake kanji, and compare them."""


def _register() -> None:
    # Importing a command module registers its command on `app`.
    from ganji.cli import bench, compare, fetch_data, fid, font, quiz, sample, train, train_classifier  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `ganji` console script and of `python -m ganji`."""
    _register()
    try:
        app(args=argv, prog_name="ganji")
    except GanjiError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)  # text in [] is not markup
        sys.exit(1)
    except OSError as exc:  # read-only folder, full disk, missing file: a fact about the machine
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        err_console.print(f"[bold red]error:[/] {escape(str(exc.strerror or exc) + where)}", highlight=False, soft_wrap=True)
        sys.exit(1)
