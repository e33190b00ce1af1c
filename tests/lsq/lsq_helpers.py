"""Test helpers for the LeadSquared client: a scripted HTTP server on 127.0.0.1 for answers the
emulator cannot give, a recording ``sleep``, a fake clock, and access to the emulator's log."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from lsqsync.lsq import LsqClient

# Keys that are not the emulator's: used where the server must refuse them, and for the stub.
OTHER_ACCESS_KEY = "test-access-Zq8vK2mW"
OTHER_SECRET_KEY = "test-secret-Hy4Np7Rt0000aaaa"


class Sleeps(list[float]):
    """A ``sleep`` that records what it was asked to wait and returns at once."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class FakeClock:
    """A clock that only moves when its ``sleep`` is called."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``body`` is sent as JSON unless it is ``bytes`` (sent raw);
    ``drop`` cuts the connection without answering."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class StubServer:
    """Answers every request with the next scripted reply (the last one repeats)."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies) or [Reply()]
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; without this each answer waits ~40 ms
            # for a delayed ACK.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stub._answer(self)

            do_POST = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            self.seen.append(
                Seen(h.command, parts.path, dict(parse_qsl(parts.query)), dict(h.headers), body)
            )
            reply = self.replies[min(len(self.seen), len(self.replies)) - 1]
        if reply.drop:
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        h.send_response(reply.status)
        for name, value in reply.headers.items():
            h.send_header(name, value)
        if "Content-Type" not in reply.headers:
            h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self._thread.join()
        self.httpd.server_close()


@contextmanager
def stub_server(*replies: Reply) -> Iterator[StubServer]:
    with StubServer(*replies) as stub:
        yield stub


def closed_port_url() -> str:
    """A loopback URL nobody listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def api_log(url: str) -> list[dict[str, Any]]:
    """The emulator's request log, through its admin surface."""
    response = requests.get(f"{url}/_emulator/requests", timeout=5)
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()["requests"]
    return entries


def wait_for_log(url: str, count: int, timeout: float = 3.0) -> list[dict[str, Any]]:
    """The emulator logs a call once it has answered it: wait for calls still in flight."""
    deadline = time.monotonic() + timeout
    while len(entries := api_log(url)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return entries


def stored(url: str, opportunity_id: str) -> dict[str, Any]:
    """An opportunity's stored values, through the emulator's admin surface."""
    response = requests.get(f"{url}/_emulator/opportunities/{opportunity_id}", timeout=5)
    response.raise_for_status()
    fields: dict[str, Any] = response.json()["fields"]
    return fields


# What the ``serve`` fixture returns: ``serve(*replies, **client_options) -> (stub, client)``.
Serve = Callable[..., tuple[StubServer, LsqClient]]
