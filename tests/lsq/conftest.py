"""Fixtures for the client tests: one emulator per session (rate limit off), reset before each
test, and clients wired to it with a recording sleep so retries never really wait."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict
from typing import Any

import pytest
from lsq_helpers import OTHER_ACCESS_KEY, OTHER_SECRET_KEY, Reply, Sleeps, StubServer

from lsqsync.emulator.server import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.lsq import LsqClient


def _test_settings() -> Settings:
    return Settings(rate_limit_calls=None)


@pytest.fixture(scope="session")
def emulator_session() -> Iterator[Emulator]:
    with Emulator(opportunities=50, settings=_test_settings()) as emu:
        yield emu


@pytest.fixture
def emu(emulator_session: Emulator) -> Emulator:
    """The session's emulator with fresh data, an empty request log and default settings."""
    emulator_session.settings.update(asdict(_test_settings()))
    emulator_session.reset()
    return emulator_session


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(emu: Emulator, sleeps: Sleeps) -> Iterator[Callable[..., LsqClient]]:
    """``make_client(**overrides)``: a client for the emulator with the demo keys, no limiter
    and the recording sleep, unless overridden."""
    clients: list[LsqClient] = []

    def make(**overrides: Any) -> LsqClient:
        options: dict[str, Any] = {
            "host": emu.url,
            "access_key": DEMO_ACCESS_KEY,
            "secret_key": DEMO_SECRET_KEY,
            "limiter": None,
            "sleep": sleeps,
            "backoff_base": 0.1,
            **overrides,
        }
        client = LsqClient(
            options.pop("host"), options.pop("access_key"), options.pop("secret_key"), **options
        )
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def client(make_client: Callable[..., LsqClient]) -> LsqClient:
    return make_client()


@pytest.fixture
def serve(sleeps: Sleeps) -> Iterator[Callable[..., tuple[StubServer, LsqClient]]]:
    """``serve(*replies, **client_options)``: a scripted server on 127.0.0.1 and a client for it
    (non-demo keys, no limiter, the recording sleep, 1 s backoff base unless overridden)."""
    with ExitStack() as stack:

        def start(*replies: Reply, **overrides: Any) -> tuple[StubServer, LsqClient]:
            stub = stack.enter_context(StubServer(*replies))
            options: dict[str, Any] = {"limiter": None, "sleep": sleeps, "backoff_base": 1.0}
            client = LsqClient(
                stub.url, OTHER_ACCESS_KEY, OTHER_SECRET_KEY, **{**options, **overrides}
            )
            stack.callback(client.close)
            return stub, client

        yield start
