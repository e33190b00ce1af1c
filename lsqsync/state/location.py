"""Where a project's state lives — a SQLite file, or a workspace of a PostgreSQL database — and
the one way commands open it: `open_state` gives a `StateFile` either way. The rate-limit ledger
goes where the state goes: `open_client` gives the client whose calls are paced through the
database's ledger when the state is in PostgreSQL (every runner using the database shares the
account's budget), else through this machine's.

The PostgreSQL backend (and its driver, psycopg) is imported only when a URL is used: SQLite
users and ``lsqsync --help`` never load it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Unpack

from lsqsync.clock import utcnow
from lsqsync.config import WORKSPACE_NAME, Config, StateLocation, state_location
from lsqsync.config import open_client as build_client
from lsqsync.errors import ConfigError, StateError
from lsqsync.lsq import LsqClient
from lsqsync.lsq.transport import TransportOptions
from lsqsync.state.records import Workspace
from lsqsync.state.store import StateFile

DRIVER_MISSING = "a PostgreSQL state needs the psycopg driver: pip install 'lsqsync[postgres]'"


def open_state(
    config: Config,
    *,
    read_only: bool = False,
    create: bool = True,
    now: Callable[[], datetime] = utcnow,
) -> StateFile:
    """The project's state (``state:`` of lsqsync.yml, or LSQSYNC_STATE_URL), created and
    brought up to date unless ``read_only`` (commands that only read change nothing) or not
    ``create`` (it must exist). Raises NoState when there is none yet where it must be."""
    return open_location(
        state_location(config), config.root, read_only=read_only, create=create, now=now
    )


def open_location(
    location: StateLocation,
    root: Path = Path(),
    *,
    read_only: bool = False,
    create: bool = True,
    now: Callable[[], datetime] = utcnow,
) -> StateFile:
    """The state at ``location`` (a path relative to ``root``)."""
    if location.url is None:
        assert location.path is not None
        return StateFile.open(root / location.path, create=create, read_only=read_only, now=now)
    check_workspace(location.workspace)
    need_driver()
    from lsqsync.state import postgres

    backend = postgres.PostgresWorkspace.open(
        location.url, location.workspace, create=create, read_only=read_only, now=now
    )
    return StateFile(backend, now)


def open_client(config: Config | None, **options: Unpack[TransportOptions]) -> LsqClient:
    """The process's one client (`lsqsync.config.open_client`): with the state in a PostgreSQL
    database, every call is granted through the database's ledger."""
    if config is None:
        return build_client(None, **options)
    location = state_location(config)
    if location.url is None:
        return build_client(config, **options)
    need_driver()
    from lsqsync.state import ledger

    return build_client(config, ledger.opener(location.url), **options)


def workspaces(config: Config) -> tuple[Workspace, ...]:
    """Every workspace of the project's PostgreSQL database (`lsqsync state workspaces`)."""
    location = state_location(config)
    if location.url is None:
        raise StateError(
            f"{location.describe(config.root)} is a SQLite state file, which has no "
            "workspaces: they belong to a PostgreSQL state (state: {url: …, workspace: …})"
        )
    need_driver()
    from lsqsync.state import postgres

    return postgres.workspaces(location.url)


def check_workspace(name: str) -> None:
    if not WORKSPACE_NAME.fullmatch(name):
        raise ConfigError(
            f"workspace {name!r}: a workspace name is 1 to 40 lower-case letters, digits, '-' "
            "and '_', starting with a letter or digit"
        )


def need_driver() -> None:
    """A clear error when psycopg, which `lsqsync.state.postgres` needs, cannot be imported."""
    try:
        import psycopg  # noqa: F401 - imported to know that it can be
    except ImportError as e:
        # not installed, or installed without a libpq it can load (then say why)
        raise ConfigError(DRIVER_MISSING + ("" if e.name == "psycopg" else f" ({e})")) from None
