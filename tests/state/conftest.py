from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from state_helpers import Clock

from lsqsync.state.store import StateFile


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / ".lsqsync" / "state.db"


@pytest.fixture
def state(state_path: Path, clock: Clock) -> Iterator[StateFile]:
    with StateFile.open(state_path, now=clock) as sf:
        yield sf


@pytest.fixture
def locked(state: StateFile) -> StateFile:
    """The state file, with this process holding its lock."""
    state.acquire_lock("apply")
    return state
