from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from pg_server import PgServer
from profiles import OPPORTUNITIES, SEED, Profile

from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings

AUTH = {"x-LSQ-AccessKey": DEMO_ACCESS_KEY, "x-LSQ-SecretKey": DEMO_SECRET_KEY}


@pytest.fixture(autouse=True)
def lsqsync_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test has its own lsqsync cache folder (learned limits, the shared ledger of calls),
    passed on to the processes it starts: no test touches the user's, and no test's calls count
    against another's budget."""
    path = tmp_path_factory.mktemp("lsqsync-cache")
    monkeypatch.setenv("LSQSYNC_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def shared_emulator() -> Iterator[Emulator]:
    with Emulator(opportunities=60, settings=Settings(rate_limit_calls=None)) as emu:
        yield emu


@pytest.fixture
def emu(shared_emulator: Emulator) -> Iterator[Emulator]:
    """The shared emulator with fresh data, an empty request log and default-off faults."""
    shared_emulator.settings = Settings(rate_limit_calls=None)
    shared_emulator.reset()
    yield shared_emulator
    shared_emulator.settings = Settings(rate_limit_calls=None)


@pytest.fixture(scope="session")
def profiled_emulator() -> Iterator[Callable[[Profile], Emulator]]:
    """An emulator per profile (``profiles.py``), started on first use and kept for the session;
    each use gets it with fresh data, an empty request log and the profile's settings."""
    running: dict[str, Emulator] = {}

    def get(profile: Profile) -> Emulator:
        if profile.name not in running:
            options = {"opportunities": OPPORTUNITIES, "seed": SEED, **profile.emulator}
            running[profile.name] = Emulator(**options).start()
        emu = running[profile.name]
        emu.settings = profile.make_settings()
        emu.reset()
        return emu

    yield get
    for emu in running.values():
        emu.stop()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.headers.update(AUTH)
        yield s


@pytest.fixture
def connected(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The emulator, with LSQ_HOST and the demo keys in the environment."""
    monkeypatch.setenv("LSQ_HOST", emu.url)
    monkeypatch.setenv("LSQ_ACCESS_KEY", DEMO_ACCESS_KEY)
    monkeypatch.setenv("LSQ_SECRET_KEY", DEMO_SECRET_KEY)
    return emu


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """A PostgreSQL server of this test process's own (pg_server.py); each test makes its own
    database on it."""
    server = PgServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """No keys, LSQ_HOST where nothing listens, and every connection attempt of this process
    recorded and refused: what a fork's pull request gets in CI. The list holds the attempts."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    monkeypatch.setenv("LSQ_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("LSQ_ACCESS_KEY", raising=False)
    monkeypatch.delenv("LSQ_SECRET_KEY", raising=False)
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("this test allows no network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts
