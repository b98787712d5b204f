"""The quiz's HTTP API: the token, cards only by index, answers checked, bodies capped; and nothing lost
when the server is killed mid-quiz (`ganji quiz --resume` continues, the answers intact)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from quiz_support import start_server, synthetic_session

from ganji.quiz.server import QuizApp, address, make_server
from ganji.quiz.session import load_session


class Client:
    """Requests to a quiz server, with or without its token; (status, body) back."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.token = parts.query.split("token=", 1)[1]

    def request(self, method: str, path: str, body: bytes | None = None, token: str | None = "", headers: dict | None = None):
        if token is not None:
            path += ("&" if "?" in path else "?") + f"token={token or self.token}"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def answer(self, card, answer="real", ms=800, **extra):
        status, body = self.request("POST", "/api/answer", json.dumps({"card": card, "answer": answer, "ms": ms, **extra}).encode())
        return status, json.loads(body)


@pytest.fixture
def served(home: Path) -> Iterator[tuple[Client, Path]]:
    session = synthetic_session(home, n=6)
    app = QuizApp(session)
    server = make_server(app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Client(address(server, app)), session.path
    finally:
        server.shutdown()
        server.server_close()


def digest(path: Path) -> str:
    answers = path / "answers.jsonl"
    return hashlib.sha256(answers.read_bytes()).hexdigest() if answers.exists() else "none"


def test_listens_on_localhost_with_a_token(served: tuple[Client, Path]) -> None:
    client, _ = served
    assert client.host == "127.0.0.1" and len(client.token) >= 40


@pytest.mark.parametrize("path", ["/", "/api/state", "/api/results", "/card/0", "/favicon.ico", "/nope"])
def test_every_request_needs_the_token(served: tuple[Client, Path], path: str) -> None:
    client, folder = served
    assert client.request("GET", path, token=None)[0] == 403
    assert client.request("GET", path, token=("y" if client.token[0] == "x" else "x") + client.token[1:])[0] == 403
    assert client.request("GET", path + "?token=", token=None)[0] == 403
    assert client.request("POST", "/api/answer", b'{"card": 0, "answer": "real", "ms": 1}', token=None)[0] == 403
    assert digest(folder) == "none"


def test_the_page_is_self_contained(served: tuple[Client, Path]) -> None:
    client, _ = served
    status, body = client.request("GET", "/")
    page = body.decode()
    assert status == 200 and "<script>" in page and "Real" in page and "Fake" in page
    for outside in ("http://", "https://", "//fonts", "<script src", "<link rel=\"stylesheet\"", "@import"):
        assert outside not in page


def test_cards_only_by_index(served: tuple[Client, Path]) -> None:
    client, folder = served
    status, body = client.request("GET", "/card/3")
    assert status == 200 and body == (folder / "cards" / "card-003.png").read_bytes()
    for path in ("/card/6", "/card/9999", "/card/-1", "/card/1.5", "/card/card-000.png", "/card/..%2Fdeck.json",
                 "/card/../deck.json", "/cards/card-000.png", "/deck.json", "/card/%2Fetc%2Fpasswd", "/card/0x1", "/card/"):
        status, body = client.request("GET", path)
        assert status in (400, 404), path
        assert b"card" not in body or b"error" in body


def test_answers_are_checked_and_a_refused_one_writes_nothing(served: tuple[Client, Path]) -> None:
    client, folder = served
    status, state = client.answer(0, "fake", 1234)
    assert status == 200 and state["answered"] == 1 and state["next"] == 1
    before = digest(folder)
    bad = [
        client.answer(0),  # repeated
        client.answer(3),  # not the card on screen
        client.answer(6),  # unknown card
        client.answer("1"),
        client.answer(True),
        client.answer(1, "maybe"),
        client.answer(1, ms=-5),
        client.answer(1, ms=1.5),
        client.answer(1, ms=10**12),
        client.answer(1, extra=1),
    ]
    for status, body in bad:
        assert status == 400 and body["error"]
    assert "already answered" in bad[0][1]["error"] and "unknown card" in bad[2][1]["error"]
    for raw in (b"not json", b"[1, 2]", b"\xff\xfe", b"{" * 3000):
        assert client.request("POST", "/api/answer", raw)[0] == 400
    assert client.request("GET", "/api/answer")[0] == 405
    assert client.request("POST", "/api/state", b"{}")[0] == 405
    assert digest(folder) == before
    lines = (folder / "answers.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["answer"] == "fake" and json.loads(lines[0])["ms"] == 1234


def test_bodies_are_capped(served: tuple[Client, Path]) -> None:
    client, folder = served
    big = json.dumps({"card": 0, "answer": "real", "ms": 1, "pad": "x" * 1_000_000}).encode()
    status, body = client.request("POST", "/api/answer", big)
    assert status == 413 and b"4096" in body
    # Declared but never sent: refused on the header alone.
    conn = http.client.HTTPConnection(client.host, client.port, timeout=10)
    conn.putrequest("POST", f"/api/answer?token={client.token}")
    conn.putheader("Content-Length", str(10**9))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    assert digest(folder) == "none"


def test_results_never_tell_an_unanswered_card(served: tuple[Client, Path]) -> None:
    client, folder = served
    for card in range(2):
        assert client.answer(card)[0] == 200
    status, body = client.request("GET", "/api/results")
    results = json.loads(body)
    assert status == 200 and not results["finished"] and [c["card"] for c in results["cards"]] == [0, 1]
    assert results["scores"]["answers"] == 2


def test_a_killed_server_loses_nothing_and_resume_continues(home: Path) -> None:
    session = synthetic_session(home, n=6)
    proc, url = start_server(home, "--resume")
    client = Client(url)
    try:
        for card in range(3):
            assert client.answer(card, "real" if card % 2 else "fake", 100 + card)[0] == 200
        kept = (session.path / "answers.jsonl").read_bytes()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.communicate()
    assert load_session(session.path).next_card == 3
    # The kernel released the session's lock with the process: --resume (the latest unfinished) opens it.
    proc, url = start_server(home, "--resume")
    client = Client(url)
    try:
        state = json.loads(client.request("GET", "/api/state")[1])
        assert state["next"] == 3 and state["session"] == session.name
        for card in range(3, 6):
            assert client.answer(card)[0] == 200
        assert client.request("GET", "/api/results")[0] == 200  # the finished quiz's results: the command ends
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "fool rate" in out and "Traceback" not in err
    text = (session.path / "answers.jsonl").read_bytes()
    assert text.startswith(kept)
    lines = [json.loads(line) for line in text.decode().splitlines()]
    assert [a["card"] for a in lines] == list(range(6)) and [a["ms"] for a in lines[:3]] == [100, 101, 102]
    assert load_session(session.path).finished


def test_ctrl_c_stops_the_server_and_keeps_the_answers(home: Path) -> None:
    session = synthetic_session(home, n=4)
    proc, url = start_server(home, "--resume")
    try:
        assert Client(url).answer(0, "fake", 42)[0] == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err
    assert "1 answer saved" in err and f"ganji quiz --resume {session.name}" in err
    assert [a.ms for a in load_session(session.path).answers] == [42]
