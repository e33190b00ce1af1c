from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from state_helpers import Clock, Place

from lsqsync.state.store import StateFile


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    """A SQLite state file (for what only the file has: modes, pragmas, its header)."""
    return tmp_path / ".lsqsync" / "state.db"


@pytest.fixture(params=["sqlite", "postgres"])
def place(request: pytest.FixtureRequest, state_path: Path) -> Place:
    """Where the test's state lives: each test runs on both backends."""
    if request.param == "sqlite":
        return Place.sqlite(state_path)
    return Place.postgres(request.getfixturevalue("pg"))


@pytest.fixture
def state(place: Place, clock: Clock) -> Iterator[StateFile]:
    with place.open(now=clock) as sf:
        yield sf


@pytest.fixture
def locked(state: StateFile) -> StateFile:
    """The state, with this process holding its lock."""
    state.acquire_lock("apply")
    return state
