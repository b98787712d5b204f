"""Options that several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Folder where ganji keeps datasets and runs \\[default: $GANJI_HOME, else the user data folder].",
        show_default=False,
    ),
]
