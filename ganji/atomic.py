"""Atomic file writes: write a temporary file beside the target, fsync, then rename over it.

A crash, a kill -9 or a full disk in the middle of a write leaves the previous file intact; the
rename is atomic on POSIX file systems, so readers see either the old file or the new one.

Every failure to write (a read-only folder, a full disk, a file-size limit) comes out as an OSError
naming the file that was to be written, never the temporary one: also when the writer is a library
that reports I/O errors its own way (safetensors raises "... (os error 28)"), so that the command
line turns it into one line.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` to produce the file, then move it onto `path` atomically.

    On any failure the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _follow_umask(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _naming(exc, path) from None
        io_errno = _io_errno(exc)
        if io_errno is not None:
            raise OSError(io_errno, os.strerror(io_errno), str(path)) from None
        raise
    _fsync_dir(path.parent)


def leftover_temporaries(folder: Path, names: str = "*") -> list[Path]:
    """Temporary files that `write_atomic` made for files of `folder` matching the glob `names` and
    that a process killed mid-write left behind (".NAME.<random>.tmp"; the files themselves are intact)."""
    return sorted(Path(folder).glob(f".{names}.*.tmp"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _naming(exc: OSError, path: Path) -> OSError:
    """The same error, about `path` rather than the temporary file (PermissionError stays one)."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


_RUST_IO_ERROR = re.compile(r"\(os error (\d+)\)")


def _io_errno(exc: BaseException) -> int | None:
    """The errno of an I/O failure reported by a non-Python writer (safetensors: "... (os error 28)")."""
    match = _RUST_IO_ERROR.search(str(exc))
    if match is None:
        return None
    code = int(match.group(1))
    return code if code in errno.errorcode else None


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: os.umask can only be read by setting it


def _follow_umask(tmp: Path) -> None:
    # mkstemp makes the file private (0600); a dataset or a checkpoint should follow the umask.
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
    except OSError:
        pass


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
