"""Shared pieces of the state-file tests: a settable clock, field results, child processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lsqsync.state.records import FieldResult, ResultStatus

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
