"""The one exception type that reaches the user as a one-line message instead of a traceback."""


class GanjiError(Exception):
    """A problem the user can fix (bad input, missing file, no GPU...): printed as one line, exit 1."""
