"""Where ganji keeps everything it writes: `$GANJI_HOME`, `--home`, or the platform's data folder."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from ganji.errors import GanjiError


def resolve_home(home: Path | None = None) -> Path:
    """The home folder: `home` if given, else `$GANJI_HOME`, else `platformdirs.user_data_dir("ganji")`."""
    if home is None:
        env = os.environ.get("GANJI_HOME")
        home = Path(env) if env else Path(platformdirs.user_data_dir("ganji"))
    home = home.expanduser()
    if home.exists() and not home.is_dir():
        raise GanjiError(f"home folder {home} exists and is not a folder")
    return home


def datasets_dir(home: Path) -> Path:
    return home / "datasets"


def runs_dir(home: Path) -> Path:
    return home / "runs"


def cache_dir(home: Path) -> Path:
    return home / "cache"
