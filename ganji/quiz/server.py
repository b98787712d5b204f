"""The quiz in the browser: a small HTTP server (standard library only) for one session.

Safe to leave running:
- it listens on 127.0.0.1 unless told otherwise (`--host`);
- every request must carry the random token of the opened URL (`?token=`, from `secrets`),
  compared in constant time; without it: 403, whatever the path;
- the browser never names a file: a card is asked for by its index in the deck (`/card/7`), and the
  server sends that card's file, which the deck names; anything else is 404;
- answers are checked (the card on screen, "real" or "fake", a response time) and a bad or repeated
  one is refused with 400 and nothing written; request bodies over 4 KiB are refused (413) unread;
- responses forbid every external resource (Content-Security-Policy), caching and referrers, and the
  request log is never printed (the URLs carry the token).

The page (`page.html`) is self-contained: inline CSS and JavaScript, no fonts, scripts or CDNs.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import socket
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ganji.errors import GanjiError
from ganji.quiz.scoring import score
from ganji.quiz.session import AnswerRefused, Session

MAX_BODY = 4096  # an answer is ~50 bytes of JSON
MAX_DRAIN = 1 << 20  # an oversized body read and dropped before the 413, so the client sees it
_CARD = re.compile(r"/card/([0-9]{1,4})")
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
}


def page() -> bytes:
    return resources.files("ganji.quiz").joinpath("page.html").read_bytes()


def results(session: Session) -> dict[str, Any]:
    """Scores and what each answered card was: never a source of a card not yet answered. The cards'
    pictures come inline, so that the page keeps them once the command has ended."""
    scores = score(session.answers, session.deck.sources)
    return {
        "session": session.name, "total": session.total, "answered": len(session.answers), "finished": session.finished,
        "scores": scores.to_json(),
        "cards": [{"card": a.card, "id": a.id, "was": a.source.label, "model": a.source.model, "real": a.source.real, "answer": a.answer,
                   "correct": a.correct, "ms": a.ms, "png": base64.b64encode(session.card_png(a.card)).decode()}
                  for a in session.answers],
    }


@dataclass
class QuizApp:
    """The state the request threads share: the session, the token, and whether the quiz is over
    (`done`: set once a finished quiz's results have been sent, so the command can end)."""

    session: Session
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    done: threading.Event = field(default_factory=threading.Event)
    page: bytes = field(default_factory=page)

    def authorised(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode())


class QuizHandler(BaseHTTPRequestHandler):
    """One request: the token first, then the route (see the module's docstring)."""

    app: QuizApp  # set on the subclass made for each server
    server_version = "ganji-quiz"
    sys_version = ""
    timeout = 30  # a client that stops sending mid-request does not hold a thread for ever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # the request line holds the token: never print it

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _handle(self, method: str) -> None:
        try:
            self._route(method)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True  # the client went away (a closed tab): nothing to answer

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            query = parse_qs(url.query, max_num_fields=8)
        except ValueError:
            query = {}
        if not self.app.authorised((query.get("token") or [None])[0]):
            return self._error(HTTPStatus.FORBIDDEN, "missing or wrong token: open the address that `ganji quiz` printed")
        path = url.path
        card = _CARD.fullmatch(path)
        routes = {"/": "GET", "/api/state": "GET", "/api/results": "GET", "/api/answer": "POST"}
        if card is None and path not in routes:
            if path.startswith("/card/"):
                return self._error(HTTPStatus.NOT_FOUND, "cards are asked for by their index in the deck, such as /card/0")
            return self._error(HTTPStatus.NOT_FOUND, "no such page")
        if method != (routes.get(path) or "GET"):
            return self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here")
        if card is not None:
            return self._card(int(card.group(1)))
        if path == "/":
            return self._send(HTTPStatus.OK, self.app.page, "text/html; charset=utf-8")
        if path == "/api/state":
            return self._json(HTTPStatus.OK, self._state())
        if path == "/api/results":
            return self._results()
        return self._answer()

    def _state(self) -> dict[str, Any]:
        s = self.app.session
        return {"session": s.name, "total": s.total, "answered": len(s.answers), "next": s.next_card, "size": s.deck.size,
                "reader": s.deck.reader}

    def _card(self, index: int) -> None:
        session = self.app.session
        if not 0 <= index < session.total:
            return self._error(HTTPStatus.NOT_FOUND, f"unknown card {index}: the deck has cards 0 to {session.total - 1}")
        try:
            data = session.card_png(index)
        except OSError:
            return self._error(HTTPStatus.NOT_FOUND, f"card {index}'s file cannot be read")
        self._send(HTTPStatus.OK, data, "image/png")

    def _results(self) -> None:
        session = self.app.session
        self._json(HTTPStatus.OK, results(session))
        if session.finished:
            self.app.done.set()  # after the response is written: the page has everything it shows

    def _answer(self) -> None:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None:
            self.close_connection = True
            return self._error(HTTPStatus.LENGTH_REQUIRED, "an answer needs a Content-Length")
        if not length.isdigit():
            self.close_connection = True
            return self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        if int(length) > MAX_BODY:
            self.close_connection = True
            if int(length) <= MAX_DRAIN:
                self._drain(int(length))
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"an answer is at most {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(int(length)).decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError, OSError, socket.timeout):
            return self._error(HTTPStatus.BAD_REQUEST, "an answer is a JSON object: {\"card\": 0, \"answer\": \"real\", \"ms\": 1200}")
        if not isinstance(body, dict) or set(body) != {"card", "answer", "ms"}:
            return self._error(HTTPStatus.BAD_REQUEST, "an answer has exactly the fields card, answer and ms")
        try:
            self.app.session.record(body["card"], body["answer"], body["ms"])
        except AnswerRefused as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except (OSError, GanjiError) as exc:  # a full disk: the answer was not saved, and the page must say so
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"the answer could not be saved: {exc}")
        self._json(HTTPStatus.OK, self._state())

    def _drain(self, length: int) -> None:
        """Read and drop an oversized body of up to MAX_DRAIN bytes (in small chunks: never held), so that
        the client, still sending, reads the 413 rather than a reset connection; a bigger one is not read."""
        left = length
        try:
            self.connection.settimeout(2.0)  # a body declared but never sent does not delay the answer long
            while left > 0:
                chunk = self.rfile.read(min(left, 65_536))
                if not chunk:
                    break
                left -= len(chunk)
        except (OSError, socket.timeout):
            pass

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": message})

    def _json(self, status: HTTPStatus, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in _HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never keeps the command from ending
    allow_reuse_address = False  # one quiz per port: never share a port another server holds


def make_server(app: QuizApp, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for `app`, listening on host:port (port 0: a free one); not yet serving."""
    handler = type("Handler", (QuizHandler,), {"app": app})
    server_class = type("Server6", (_Server,), {"address_family": socket.AF_INET6}) if ":" in host else _Server
    try:
        return server_class((host, port), handler)
    except (OSError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise GanjiError(f"cannot listen on {host}:{port}: {reason}") from None


def check_address(host: str, port: int) -> None:
    """A one-line GanjiError now, before a deck is drawn, if host:port cannot be listened on."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
    except (OSError, OverflowError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise GanjiError(f"cannot listen on {host}:{port}: {reason}") from None


def address(server: ThreadingHTTPServer, app: QuizApp) -> str:
    """The URL to open: the server's address, with the token."""
    host, port = server.server_address[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(str(host), str(host))  # listening everywhere: open it here
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={app.token}"


def serve(server: ThreadingHTTPServer, app: QuizApp, poll: float = 0.2) -> None:
    """Serve until the finished quiz's results have been sent, or Ctrl-C (KeyboardInterrupt, after
    the server is closed: every answer given is already on disk)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll}, daemon=True)
    thread.start()
    try:
        while not app.done.wait(poll):
            pass
    finally:
        server.shutdown()
        server.server_close()
