"""Helpers shared by the tests/test_hardening_*.py suites of issue 16 (no tests of its own).

The same conventions as tests/test_bad_input.py: the real command line, in-process through
`ganji.cli.main` where that is enough and in a subprocess where the entry point, a hang, a kill or
the memory of the process matters; every failure is one line `error: ...` with a non-zero exit;
"nothing damaged" is checked as the sha256 of every file before and after.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import cli, one_line_error, succeeded  # noqa: F401 (re-exported to test_hardening_*)

from ganji.cli import main

# Tiny runs: 16 px kanji, widths of 8, on the CPU.
TRAIN_VAE = ("train", "vae", "--dataset", "k16", "--batch-size", "8", "--latent-dim", "8", "--base-width", "8",
             "--log-every", "1", "--sample-every", "0", "--device", "cpu", "-q")

# A safety net for cases that allocated without bound before the fix: a regression fails with a
# MemoryError in the child instead of taking the machine's memory (torch alone reserves ~3 GB).
ADDRESS_SPACE = 8 * 2**30

# `python -m ganji` under an address-space limit (argv[1]); the rest of argv is ganji's.
LIMITED = """import resource, runpy, sys
limit = int(sys.argv[1])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
sys.argv = ["ganji", *sys.argv[2:]]
runpy.run_module("ganji", run_name="__main__")
"""


# Several ganji commands in one subprocess (one torch import), under the same cap; prints a JSON list
# of [exit code, stdout, stderr], an escaping exception counting as exit -1 with its traceback.
MANY = """import contextlib, io, json, resource, sys, traceback
limit = int(sys.argv[1])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
from ganji.cli import main
results = []
for args in json.loads(sys.argv[2]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = -1
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def ganji_many(home: Path, commands: list[list[str]], timeout: float = 300) -> list[tuple[int, str, str]]:
    """Each command's (exit code, stdout, stderr), all run in one capped subprocess."""
    import json

    proc = subprocess.run([sys.executable, "-c", MANY, str(ADDRESS_SPACE), json.dumps(commands)], env=env_for(home),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [tuple(r) for r in json.loads(proc.stdout.strip().splitlines()[-1])]


class Hung(Exception):
    pass


@contextlib.contextmanager
def no_hang(seconds: int = 30) -> Iterator[None]:
    """Fail (rather than hang the suite) when the block blocks for `seconds`, e.g. opening a FIFO:
    SIGALRM interrupts the system call and its handler raises."""
    def hung(signum: int, frame: object) -> None:
        raise Hung(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "GANJI_HOME": str(home), "COLUMNS": "200", "OMP_NUM_THREADS": "1", **extra}


def ganji(home: Path, *args: str, timeout: float = 120, address_space: int = ADDRESS_SPACE) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m ganji ARGS` in a subprocess with a memory cap and a timeout."""
    proc = subprocess.run([sys.executable, "-c", LIMITED, str(address_space), *args], env=env_for(home),
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def popen(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LIMITED, str(ADDRESS_SPACE), *args], env=env_for(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tree(*roots: Path) -> dict[str, str]:
    """sha256 of every regular file under the roots (a file root counts too), keyed by path; other
    kinds of file (FIFOs, devices, links) by what they are, never opened; huge (sparse) files by
    size and time."""
    found: dict[str, str] = {}
    for root in roots:
        paths = [root] if not root.is_dir() else sorted(root.rglob("*"))
        for p in paths:
            if p.is_symlink():
                found[str(p)] = "link:" + os.readlink(p)
            elif p.is_file() and p.stat().st_size > 2**28:  # a sparse file that declares a terabyte
                st = p.stat()
                found[str(p)] = f"large:{st.st_size}:{st.st_mtime_ns}"
            elif p.is_file():
                found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif not p.is_dir():
                found[str(p)] = "special"
    return found


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


def train_world(home: Path) -> Path:
    """k16 (32 kanji at 16 px) and a 2-step vae run "r" on it, made through the command line."""
    from conftest import make_kanji

    make_kanji(home, name="k16", size=16, limit=32)
    try:
        main([*TRAIN_VAE, "--max-steps", "2", "--run", "r", "--home", str(home)])
    except SystemExit as exc:
        assert not exc.code, exc.code
    assert (home / "runs" / "vae" / "r" / "checkpoint.safetensors").is_file()
    return home


def copy_world(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import shutil

    copy = tmp_path / "home"
    shutil.copytree(world, copy, symlinks=True)
    monkeypatch.setenv("GANJI_HOME", str(copy))
    return copy


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
