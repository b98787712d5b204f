"""Atomic file writes: write a temporary file beside the target, fsync, then rename over it.

A crash, a kill -9 or a full disk in the middle of a write leaves the previous file intact; the
rename is atomic on POSIX file systems, so readers see either the old file or the new one.

Only a missing file or a regular file (or a symlink to one: the link is replaced, never the file
it points to) is ever replaced: a folder, a device node (`-o /dev/null`), a FIFO or a socket at the
target is refused with a one-line GanjiError, before anything is written and again just before the
rename.

Every failure to write (a read-only folder, a full disk, a file-size limit) comes out as an OSError
naming the file that was to be written, never the temporary one: also when the writer is a library
that reports I/O errors its own way (safetensors raises "... (os error 28)"), so that the command
line turns it into one line.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganji.errors import GanjiError


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` to produce the file, then move it onto `path` atomically.

    On any failure the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    check_replaceable(path)
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
        check_replaceable(path)  # again: the target may have changed while the file was written
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


def file_kind(path: Path) -> str | None:
    """What is at `path` when it is not a regular file (nor a symlink to one): "a folder", "a device",
    "a FIFO", "a socket", "a dangling symlink", "a symlink to a folder"...; None for a regular file
    or a symlink to one, and for nothing at all (see `os.path.lexists`). Never opens the path, so a
    FIFO cannot block and a device cannot be read."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"unreachable ({exc.strerror})"
    prefix = ""
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(path)
        except OSError:
            return "a dangling symlink"
        prefix = "a symlink to "
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    what = ("a folder" if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return prefix + what


def check_replaceable(path: Path) -> None:
    """A GanjiError unless `path` is missing or a regular file (or a symlink to one): the only things
    an atomic write may replace."""
    kind = file_kind(path)
    if kind is not None:
        raise GanjiError(f"{path} exists and is {kind}, not a regular file: refusing to replace it")


def check_regular_file(path: Path, what: str = "file") -> Path:
    """`path` if it is a regular file (or a symlink to one); a one-line GanjiError naming what is there
    instead (missing, a folder, a device, a FIFO, a dangling symlink...) without ever opening it."""
    path = Path(path)
    if not os.path.lexists(path):
        raise GanjiError(f"{what} {path} does not exist")
    kind = file_kind(path)
    if kind is not None:
        raise GanjiError(f"{what} {path} is {kind}, not a regular file")
    return path


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


class ExclusiveLock:
    """An exclusive OS lock (flock) on a lock file, taken without waiting; the kernel releases it when
    the process dies, so a kill -9 never leaves a stale lock. The holder writes its pid in the file,
    so that a refused second writer can say who holds it. The file is removed on release.

    `busy(pid)` makes the GanjiError raised when another process holds the lock (pid None: unknown);
    an OSError (a read-only folder) names `report_as` (what the lock protects) rather than the file.
    """

    def __init__(self, path: Path, busy: Callable[[int | None], str], report_as: Path | None = None) -> None:
        self.path = Path(path)
        self._busy = busy
        self._report_as = Path(report_as) if report_as is not None else self.path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> ExclusiveLock:
        if self._fd is not None:
            return self
        for _ in range(100):  # retried only while other processes remove the file under us
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                raise _naming(exc, self._report_as) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise GanjiError(self._busy(self._holder())) from None
            except OSError as exc:
                os.close(fd)
                raise _naming(exc, self._report_as) from None
            # The holder before us may have removed the file between our open and our lock: then
            # ours is a lock on a file nobody else will ever see. Lock the file at the path instead.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError:
                pass  # the pid is a courtesy to the next writer; the lock holds without it
            self._fd = fd
            return self
        raise GanjiError(self._busy(None))

    def release(self) -> None:
        """Remove the lock file (while still holding the lock) and release it; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(fd)  # releases the flock

    def _holder(self) -> int | None:
        for _ in range(20):  # the holder writes its pid right after it locks: give it a moment
            try:
                text = self.path.read_text("ascii", errors="replace").strip()
            except OSError:
                return None
            if text.isdigit():
                return int(text)
            time.sleep(0.01)
        return None

    def __enter__(self) -> ExclusiveLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


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
