"""The shared rich consoles: results on stdout, messages and progress on stderr."""

import os
import sys

from rich.console import Console


def _width(stream) -> int | None:
    """Rich's own width on a terminal (or with $COLUMNS); 160 columns when piped to a file, where
    rich would otherwise squeeze wide tables such as `ganji compare`'s into 80."""
    return None if "COLUMNS" in os.environ or stream.isatty() else 160


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))
