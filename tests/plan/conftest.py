from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_cwd() -> Iterator[None]:
    """Planner tests chdir into their project (messages name files relative to it)."""
    before = os.getcwd()
    yield
    os.chdir(before)
