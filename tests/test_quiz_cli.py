"""`ganji quiz` on the command line: a whole quiz from every model with a run (answers from a pipe),
quitting and the session lock, and one-line errors for bad input."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from quiz_support import copy_world, synthetic_session
from cli_support import cli, one_line_error, succeeded

from ganji.quiz.session import load_session, session_folders


@pytest.fixture
def world(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = copy_world(tmp_path_factory.getbasetemp(), tmp_path / "home")
    monkeypatch.setenv("GANJI_HOME", str(home))
    return home


def typed(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def test_a_whole_quiz_of_every_model_with_a_run(world: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    typed(monkeypatch, "r\nnot an answer\nf\nR\nfake\nr\nf\n")
    out, err = succeeded(cli(capsys, "quiz", "--terminal", "--n", "6", "--device", "cpu", "-q"))
    assert "vae (run r)" in out and "gan (run r)" in out and "what each card was" in out and "fool rate" in out
    assert "6 cards, 3 real from 'k16'" in err
    (path,) = session_folders(world)
    session = load_session(path)
    assert session.finished and [a.answer for a in session.answers] == ["real", "fake", "real", "fake", "real", "fake"]
    assert {a.source.model for a in session.answers} == {None, "vae", "gan"}
    one_line_error(cli(capsys, "quiz", "--resume", path.name), "is finished", "ganji quiz --report")
    one_line_error(cli(capsys, "quiz", "--resume"), "no unfinished quiz")


def test_quitting_keeps_the_answers_and_one_process_per_session(home: Path, capsys: pytest.CaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    session = synthetic_session(home, n=6)
    typed(monkeypatch, "r\nq\n")
    out, err = succeeded(cli(capsys, "quiz", "--terminal", "--resume"))
    assert f"ganji quiz --resume {session.name}" in err and "1 answer saved" in err
    typed(monkeypatch, "f\n")  # the end of the input quits too
    succeeded(cli(capsys, "quiz", "--terminal", "--resume", session.name))
    assert [a.answer for a in load_session(session.path).answers] == ["real", "fake"]
    lock = session.lock()  # as another process would hold it
    try:
        one_line_error(cli(capsys, "quiz", "--terminal", "--resume"), f"quiz session {session.name} is open in process")
    finally:
        lock.release()
    one_line_error(cli(capsys, "quiz", "--resume", "--reader", "ann", "--terminal"), "is nobody's: leave out --reader")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--n", "3"), "--n must be an even number"),
        (("--n", "2"), "use --n 4 or more"),
        (("vea",), "unknown model 'vea'"),
        (("ddpm",), "no trained ddpm run"),
        (("--runs", "vae=nope"), "no vae run named 'nope'"),
        (("vae", "--runs", "gan=r"), "--runs names gan"),
        (("--seed", "-1"), "--seed must be between 0"),
        (("--dataset", "../x", "--images", "."), "invalid dataset name"),
        (("--images", "/no/such/folder", "--dataset", "k16", "--n", "4"), "does not exist"),
        (("--resume", "--n", "10"), "--resume continues a saved deck: leave out --n"),
        (("--resume", "a", "b"), "--resume continues one session"),
        (("--resume", "nope"), "no quiz session named 'nope'"),
        (("--json",), "--json goes with --report"),
        (("--reader", "a b"), "invalid reader name"),
        (("--port", "70000"), "--port must be between 0 and 65535"),
        (("--host", "256.1.1.1", "--no-open"), "cannot listen on 256.1.1.1:0"),
    ],
)
def test_bad_input_is_one_line(world: Path, capsys: pytest.CaptureFixture, args: tuple[str, ...], message: str) -> None:
    one_line_error(cli(capsys, "quiz", *args), message)
    assert session_folders(world) == []  # nothing was started


def test_quiz_is_a_command(capsys: pytest.CaptureFixture) -> None:
    out, _ = succeeded(cli(capsys, "--help"))
    assert "quiz" in out
    out, _ = succeeded(cli(capsys, "quiz", "--help"))
    assert "--terminal" in out and "--resume" in out and "--report" in out
