"""Shared pieces of the state tests: where a state lives (a SQLite file or a PostgreSQL
workspace), a settable clock, field results, child processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from pg_server import PgServer

from lsqsync.config import StateLocation
from lsqsync.state.location import open_location
from lsqsync.state.records import FieldResult, ResultStatus
from lsqsync.state.schema import TABLES
from lsqsync.state.store import StateFile

DIGEST = "d" * 64
OTHER_DIGEST = "e" * 64
START = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
OPP_A = "4f530c63-4c93-4150-8b8e-83487befb3b2"
OPP_B = "7d2e9a10-1b3c-4d5e-8f70-91a2b3c4d5e6"
OPP_C = "a0b1c2d3-e4f5-4a6b-8c7d-8e9f0a1b2c3d"


class Clock:
    """A wall clock for `StateFile.open(now=...)` that moves only when told."""

    def __init__(self, start: datetime = START) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += timedelta(seconds=seconds)


def result(
    opp: str,
    field: str = "Status",
    status: ResultStatus = "applied",
    *,
    before: str | None = "Open",
    after: str = "Won",
    message: str | None = None,
    rule: str = "close-won",
) -> FieldResult:
    return FieldResult(opp, 12003, field, before, after, status, rule, message)


@dataclass(frozen=True)
class Place:
    """Where a test's state lives: a SQLite file, or a workspace of a database of its own."""

    location: StateLocation
    server: PgServer | None = None

    @classmethod
    def sqlite(cls, path: Path) -> Place:
        return cls(StateLocation(str(path)))

    @classmethod
    def postgres(cls, server: PgServer, workspace: str = "default") -> Place:
        return cls(StateLocation(None, server.url(server.new_database()), workspace), server)

    @property
    def postgres_url(self) -> str | None:
        return self.location.url

    @property
    def name(self) -> str:
        """What the state's messages call it."""
        return self.location.describe()

    @property
    def argv(self) -> list[str]:
        """For a child process: ``StateLocation.parse(sys.argv[1], sys.argv[2])``."""
        return [self.location.url or str(self.location.path), self.location.workspace]

    def open(self, **options: Any) -> StateFile:
        return open_location(self.location, **options)

    def other(self, name: str) -> Place:
        """Another state beside this one: a file in the same folder, or another workspace of
        the same database."""
        if self.location.url is not None:
            return Place(StateLocation(None, self.location.url, name), self.server)
        return Place.sqlite(Path(str(self.location.path)).with_name(f"{name}.db"))

    @contextmanager
    def raw(self) -> Iterator[Any]:
        """A plain connection to the state's tables (autocommit; ``?`` placeholders)."""
        if self.location.url is None:
            with raw(Path(str(self.location.path))) as db:
                yield db
            return
        with psycopg.connect(self.location.url, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "lsqsync_{self.location.workspace}"')
            yield _Placeholders(conn)

    def dump(self) -> bytes:
        """Everything the state holds, as bytes: the file, or every row of the database."""
        if self.location.url is None:
            return Path(str(self.location.path)).read_bytes()
        with psycopg.connect(self.location.url, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT schemaname, tablename FROM pg_tables WHERE schemaname LIKE 'lsqsync%'"
            ).fetchall()
            assert len(tables) > len(TABLES)
            return repr(
                [conn.execute(f'SELECT * FROM "{s}"."{t}"').fetchall() for s, t in tables]
            ).encode()


class _Placeholders:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, statement: str, parameters: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(statement.replace("?", "%s"), parameters)


def child(script: str, *args: str) -> subprocess.Popen[str]:
    """A separate Python process running ``script`` (argv: the args), stdin/stdout piped."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the file (autocommit), closed afterwards."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        yield db
    finally:
        db.close()
