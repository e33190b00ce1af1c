"""Connection settings. Credentials come from the environment only (LSQ_ACCESS_KEY,
LSQ_SECRET_KEY); they are never read from files, and never shown."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsqsync.documents import schemacheck
from lsqsync.documents.problems import Problem, ProjectInvalid, document_problems
from lsqsync.documents.yamlsource import Document, Location, YamlError, load
from lsqsync.errors import ConfigError
from lsqsync.lsq import LsqClient, RateLimiter

ENV_HOST = "LSQ_HOST"
ENV_ACCESS_KEY = "LSQ_ACCESS_KEY"
ENV_SECRET_KEY = "LSQ_SECRET_KEY"  # noqa: S105 - the variable name, not a secret


@dataclass(frozen=True)
class Connection:
    host: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)


def connection_from_env(
    env: Mapping[str, str] | None = None, default_host: str | None = None
) -> Connection:
    """The host (LSQ_HOST, else ``default_host`` from lsqsync.yml) and the keys from the
    environment. LSQ_HOST set but empty is an error, not a fall-back to ``host:``: it is what an
    unset repository variable gives in CI, where ``lsqsync.yml`` may come from a pull request
    that must not choose where the keys go."""
    env = os.environ if env is None else env
    if ENV_HOST in env and not env[ENV_HOST].strip():
        raise ConfigError(
            f"{ENV_HOST} is set but empty: set it to the account's API host "
            "(e.g. https://api-in21.leadsquared.com), or unset it to use host: in lsqsync.yml"
        )
    host = env.get(ENV_HOST, "").strip() or (default_host or "")
    missing = [
        name
        for name, value in (
            (ENV_HOST, host),
            (ENV_ACCESS_KEY, env.get(ENV_ACCESS_KEY, "")),
            (ENV_SECRET_KEY, env.get(ENV_SECRET_KEY, "")),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} not set: lsqsync reads the LeadSquared host and API keys "
            "from the environment (keys: My Account > Settings > API and Webhooks)"
        )
    return Connection(host, env[ENV_ACCESS_KEY].strip(), env[ENV_SECRET_KEY].strip())


def open_client(config: Config | None = None) -> LsqClient:
    """The process's one client: host from LSQ_HOST or lsqsync.yml, keys from the environment,
    and the account-wide rate limit of lsqsync.yml (``RateLimit``'s default without one)."""
    rate = config.rate_limit if config is not None else RateLimit()
    connection = connection_from_env(default_host=config.host if config is not None else None)
    return LsqClient(
        connection.host,
        connection.access_key,
        connection.secret_key,
        limiter=RateLimiter(rate.calls, rate.per_seconds),
    )


def optional_config(path: Path | None) -> Config | None:
    """lsqsync.yml for commands that work without one: the given file, else ./lsqsync.yml if
    there is one."""
    if path is None and not Path(CONFIG_FILE).is_file():
        return None
    return load_config(path)


# -- lsqsync.yml --------------------------------------------------------------------------------

CONFIG_FILE = "lsqsync.yml"
STATE_FILE = ".lsqsync/state.db"


@dataclass(frozen=True)
class RateLimit:
    """``rate_limit:`` — the account-wide budget of API calls (LeadSquared's top tier)."""

    calls: int = 25
    per_seconds: float = 5.0


@dataclass(frozen=True)
class Safety:
    """``safety:`` — a plan over either limit is refused unless ``--allow-large``."""

    max_changes: int = 1000  # opportunities one plan may change
    max_change_ratio: float = 0.3  # share of a type (RATIO_MIN_TOTAL or more) it may change


RATIO_MIN_TOTAL = 10  # smaller types are exempt from max_change_ratio


@dataclass(frozen=True)
class Config:
    """A project's ``lsqsync.yml``. Relative paths in it are relative to its folder (``root``)."""

    root: Path
    file: str  # as shown in messages
    host: str | None = None
    rules: tuple[str, ...] = ("rules/",)
    state: str = STATE_FILE  # relative to root, inside it
    rate_limit: RateLimit = RateLimit()
    vars: Mapping[str, Any] = field(default_factory=dict)
    safety: Safety = Safety()
    mask: tuple[str, ...] = ()
    allow_created_on: bool = False
    positions: Mapping[tuple[str | int, ...], Any] = field(default_factory=dict, compare=False)

    def where(self, path: tuple[str | int, ...]) -> Location:
        """The Location of a value in lsqsync.yml (for problems about the configuration)."""
        return Document(self.file, None, self.positions).where(path)


def inside_project(root: Path, entry: str) -> Path | str:
    """The path ``entry`` names, if it lies inside the project folder ``root``; else why not.

    Rules and configuration may come from an untrusted pull request that CI plans with the API
    keys in its environment: a file outside the project (``/proc/self/environ``, ``../..``, a
    symbolic link leading out) must never be read, let alone quoted in a message.
    """
    if Path(entry).is_absolute():
        return "must be a path relative to the project folder"
    path = root / entry
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return "must stay inside the project folder (no '..' or links leading out)"
    return path


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (as CI annotations and
    editors expect), else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_config(path: Path | None = None) -> Config:
    """Read and validate ``lsqsync.yml`` (default: the one in the working directory)."""
    path = path or Path(CONFIG_FILE)
    shown = display_path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
        shown = display_path(path)

    def unreadable(message: str) -> ProjectInvalid:
        return ProjectInvalid([Problem(Location(shown, 1, 1), "", message)])

    try:
        document = load(path, shown)
    except FileNotFoundError:
        raise unreadable(
            "not found (a project is a folder with lsqsync.yml; use --config PATH to point "
            "elsewhere)"
        ) from None
    except UnicodeDecodeError:
        raise unreadable("not UTF-8 text") from None
    except OSError as e:
        raise unreadable(f"cannot read: {e.strerror or e}") from None
    except YamlError as e:
        raise ProjectInvalid([Problem(e.location, "", e.message)]) from None
    problems = [*document_problems(document), *schemacheck.check(document, "config")]
    if document.data is None:
        problems = [Problem(Location(shown, 1, 1), "", "the file is empty (expected version: 1)")]
    if problems:
        raise ProjectInvalid(problems)
    data: dict[str, Any] = document.data
    state = data.get("state", STATE_FILE)
    where = inside_project(path.parent, state)
    if isinstance(where, str) or not state.strip() or where.is_dir():
        why = where if isinstance(where, str) else "must name a file in the project folder"
        raise ProjectInvalid([Problem(document.where(("state",)), "state", why)])
    rate = data.get("rate_limit") or {}
    safety = data.get("safety") or {}
    return Config(
        root=path.parent,
        file=shown,
        host=data.get("host"),
        rules=tuple(data.get("rules", ["rules/"])),
        state=state,
        rate_limit=RateLimit(rate["calls"], float(rate["per_seconds"])) if rate else RateLimit(),
        vars=dict(data.get("vars") or {}),
        safety=Safety(**safety),
        mask=tuple(data.get("mask") or ()),
        allow_created_on=bool(data.get("allow_created_on", False)),
        positions=document.positions,
    )
