"""Connection settings. Credentials come from the environment only (LSQ_ACCESS_KEY,
LSQ_SECRET_KEY, and LSQSYNC_STATE_PASSWORD for a PostgreSQL state); they are never read from
files, and never shown."""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lsqsync.documents import schemacheck
from lsqsync.documents.problems import Problem, ProjectInvalid, document_problems
from lsqsync.documents.yamlsource import Document, Location, YamlError, load
from lsqsync.errors import ConfigError
from lsqsync.lsq import (
    DOCUMENTED_LIMIT,
    FieldSettings,
    Kind,
    Limit,
    LsqClient,
    SharedLedger,
    account_limiter,
    normalise_host,
    slowest,
    trace,
)
from lsqsync.lsq.transport import TransportOptions

ENV_HOST = "LSQ_HOST"
ENV_ACCESS_KEY = "LSQ_ACCESS_KEY"
ENV_SECRET_KEY = "LSQ_SECRET_KEY"  # noqa: S105 - the variable name, not a secret
ENV_STATE_URL = "LSQSYNC_STATE_URL"  # overrides the URL of `state:` (CI: from a secret)
ENV_STATE_PASSWORD = "LSQSYNC_STATE_PASSWORD"  # noqa: S105 - the variable name, not a secret

logger = logging.getLogger(__name__)


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
    if default_host and host != default_host and _same_host(host, default_host) is False:
        # In CI the variable is the repository's and lsqsync.yml may be a pull request's: a
        # host: that names another place is a mistake or an attempt, never quietly overruled.
        raise ConfigError(
            f"{ENV_HOST} ({host}) and host: in lsqsync.yml ({default_host}) name different "
            "hosts: make them agree, or remove host: from lsqsync.yml"
        )
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


def _same_host(a: str, b: str) -> bool | None:
    """Whether two host settings name one place (None when either is not a valid host: the
    client says why when it is used)."""
    try:
        return normalise_host(a).lower() == normalise_host(b).lower()
    except ConfigError:
        return None


def open_client(
    config: Config | None = None,
    shared: SharedLedger | None = None,
    **options: Unpack[TransportOptions],
) -> LsqClient:
    """The process's one client: host from LSQ_HOST or lsqsync.yml, keys from the environment,
    and the account's rate limit — as lsqsync.yml configures it, else learned (``auto``) — shared
    with every other lsqsync process using the account: through ``shared``'s ledger, else this
    machine's. Commands open it with ``lsqsync.state.location.open_client``, which knows where
    the state puts the ledger. Every exchange also goes to the process's trace (``--trace``),
    which masks the fields of ``mask:``."""
    rate = config.rate_limit if config is not None else RateLimit()
    connection = connection_from_env(default_host=config.host if config is not None else None)
    limiter = account_limiter(
        connection.host,
        connection.access_key,
        configured=rate.account,
        configured_bulk=rate.bulk,
        shared=shared,
    )
    tracing = trace.current()
    if tracing is not None:
        mask = config.mask if config is not None else ()
        options["observers"] = [*options.get("observers", ()), tracing.observer(mask)]
    return LsqClient(
        connection.host,
        connection.access_key,
        connection.secret_key,
        limiter=limiter,
        field_settings=config.field_settings if config is not None else None,
        **options,
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
    """``rate_limit:`` — ``auto`` (``account`` None: learned from the account's refusals), or
    the account-wide budget of API calls as the plan states it, optionally with the bulk APIs'
    own (``bulk``)."""

    account: Limit | None = None
    bulk: Limit | None = None

    @property
    def auto(self) -> bool:
        return self.account is None

    def write_pace(self) -> Limit:
        """The strictest limit a Bulk Update call meets as configured (``auto``: the documented
        top tier, until the account says otherwise)."""
        return slowest(x for x in (self.account, self.bulk) if x is not None) or DOCUMENTED_LIMIT


@dataclass(frozen=True)
class Safety:
    """``safety:`` — a plan over either limit is refused unless ``--allow-large``."""

    max_changes: int = 1000  # opportunities one plan may change
    max_change_ratio: float = 0.3  # share of a type (RATIO_MIN_TOTAL or more) it may change


RATIO_MIN_TOTAL = 10  # smaller types are exempt from max_change_ratio
DEFAULT_TIMEZONE = "UTC"  # the account's zone unless lsqsync.yml says (timezone:)


@dataclass(frozen=True)
class TypeSnapshots:
    """``types:`` — where ``lsqsync types pull`` keeps the reviewed snapshot of the account's
    opportunity types (one ``<code>.json`` each), and the age after which ``validate`` says a
    snapshot should be pulled again."""

    path: str = "types/"
    max_age_days: int = 90


DEFAULT_WORKSPACE = "default"
WORKSPACE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")  # the schema's pattern repeats it
_URL_PREFIXES = ("postgresql://", "postgres://")
_TLS_MODES = ("require", "verify-ca", "verify-full")  # sslmode values that refuse plain text
# where the password of a PostgreSQL state comes from (libpq reads the last three itself)
PASSWORD_SOURCES = f"{ENV_STATE_PASSWORD} (or PGPASSWORD, ~/.pgpass, a service file)"


@dataclass(frozen=True)
class StateLocation:
    """``state:`` — a SQLite file (``path``, relative to the project folder) or a workspace of a
    PostgreSQL database (``url``, which never holds the password)."""

    path: str | None = STATE_FILE
    url: str | None = None
    workspace: str = DEFAULT_WORKSPACE

    @classmethod
    def parse(cls, text: str, workspace: str = DEFAULT_WORKSPACE) -> StateLocation:
        """A path or a ``postgresql://`` URL, as ``state:`` or ``state migrate --to`` give it."""
        if is_database_url(text):
            return cls(None, text, workspace)
        return cls(text, None, workspace)

    def describe(self, root: Path = Path()) -> str:
        """As messages and `lsqsync state path` show it: the file (relative to the working
        folder when below it), or the URL without a password, and the workspace."""
        if self.url is not None:
            return f"{shown_url(self.url)} (workspace {self.workspace})"
        assert self.path is not None
        return display_path(root / self.path)


def is_database_url(text: str) -> bool:
    return text.lower().startswith(_URL_PREFIXES)


def url_password(url: str) -> bool:
    """Whether ``url`` carries a password (``user:secret@`` or ``?password=``)."""
    parts = urlsplit(url)
    in_query = any(k == "password" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return parts.password is not None or in_query


def shown_url(url: str) -> str:
    """``url`` as messages show it: never a password, even one given by mistake."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username is not None:
        netloc = f"{parts.username}@{netloc}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


def tls_warning(url: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why a connection to ``url`` may travel unencrypted: a host that is not a loopback address
    (nor a Unix socket folder), with no ``sslmode`` of require or stronger (PGSSLMODE counts)."""
    env = os.environ if env is None else env
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    hosts = [h for h in (query.get("host") or parts.hostname or "").split(",") if h]
    remote = [h for h in hosts if not _is_local(h)]
    mode = query.get("sslmode") or env.get("PGSSLMODE", "")
    if not remote or mode in _TLS_MODES:
        return None
    return (
        f"the database host {remote[0]} is not a loopback address and the URL does not ask for "
        f"TLS (add ?sslmode=require, or verify-full): CRM values and the login could cross the "
        f"network unencrypted"
    )


def _is_local(host: str) -> bool:
    if host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# The LSQSYNC_STATE_URL values warned about in this process: a command that opens the state and
# its rate-limit ledger looks the URL up twice, and says it once.
_WARNED: set[str] = set()


def state_location(config: Config, env: Mapping[str, str] | None = None) -> StateLocation:
    """Where the project's state is: ``state:`` of lsqsync.yml, with its URL replaced by
    LSQSYNC_STATE_URL when that is set (the workspace stays the file's). A URL that may travel
    unencrypted is warned about, once."""
    env = os.environ if env is None else env
    url = env.get(ENV_STATE_URL, "").strip()
    if not url:
        return config.state
    if not is_database_url(url):
        raise ConfigError(f"{ENV_STATE_URL} must be a postgresql:// URL")
    if url_password(url):
        raise ConfigError(
            f"{ENV_STATE_URL} holds a password: remove it from the URL and set {PASSWORD_SOURCES}"
        )
    warning = tls_warning(url, env)
    if warning and url not in _WARNED:
        _WARNED.add(url)
        logger.warning("state: %s: %s", ENV_STATE_URL, warning)
    return StateLocation(None, url, config.state.workspace)


@dataclass(frozen=True)
class Config:
    """A project's ``lsqsync.yml``. Relative paths in it are relative to its folder (``root``)."""

    root: Path
    file: str  # as shown in messages
    host: str | None = None
    rules: tuple[str, ...] = ("rules/",)
    state: StateLocation = StateLocation()  # a file: relative to root, inside it
    rate_limit: RateLimit = RateLimit()
    vars: Mapping[str, Any] = field(default_factory=dict)
    safety: Safety = Safety()
    mask: tuple[str, ...] = ()
    allow_created_on: bool = False
    field_types: Mapping[str, Kind] = field(default_factory=dict)  # schema name → kind
    timezone: str = DEFAULT_TIMEZONE  # the account's IANA zone: Date fields are its days
    types: TypeSnapshots = TypeSnapshots()
    tests: tuple[str, ...] = ("tests/",)  # test files, or folders searched for *.yml / *.yaml
    positions: Mapping[tuple[str | int, ...], Any] = field(default_factory=dict, compare=False)

    def where(self, path: tuple[str | int, ...]) -> Location:
        """The Location of a value in lsqsync.yml (for problems about the configuration)."""
        return Document(self.file, None, self.positions).where(path)

    @property
    def field_settings(self) -> FieldSettings:
        """How the client reads the account's values: ``field_types`` and ``timezone``."""
        return FieldSettings(self.field_types, self.timezone)


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
    state, state_path = _state(document.data)
    where, key = document.where(state_path), ".".join(state_path)
    if state.url is not None and url_password(state.url):
        message = "a password does not go in lsqsync.yml: remove it from the URL and set "
        problems.append(Problem(where, key, message + PASSWORD_SOURCES))
    if document.data is not None and not any(p.path == "timezone" for p in problems):
        problems += _timezone_problems(document)
    if problems:
        raise ProjectInvalid(problems)
    data: dict[str, Any] = document.data
    if state.url is not None and (warning := tls_warning(state.url)):
        logger.warning("%s: %s: %s", where, key, warning)
    if state.path is not None:
        inside = inside_project(path.parent, state.path)
        if isinstance(inside, str) or not state.path.strip() or inside.is_dir():
            why = inside if isinstance(inside, str) else "must name a file in the project folder"
            raise ProjectInvalid([Problem(where, key, why)])
    safety = data.get("safety") or {}
    return Config(
        root=path.parent,
        file=shown,
        host=data.get("host"),
        rules=tuple(data.get("rules", ["rules/"])),
        state=state,
        rate_limit=_rate_limit(data.get("rate_limit", "auto")),
        vars=dict(data.get("vars") or {}),
        safety=Safety(**safety),
        mask=tuple(data.get("mask") or ()),
        allow_created_on=bool(data.get("allow_created_on", False)),
        field_types=dict(data.get("field_types") or {}),
        timezone=data.get("timezone", DEFAULT_TIMEZONE),
        types=TypeSnapshots(**(data.get("types") or {})),
        tests=tuple(data.get("tests", ["tests/"])),
        positions=document.positions,
    )


def _timezone_problems(document: Document) -> list[Problem]:
    """``timezone:`` must name a zone of the IANA database (the schema checks it is text)."""
    name = document.data.get("timezone") if isinstance(document.data, dict) else None
    if not isinstance(name, str) or is_timezone(name):
        return []
    known = sorted(zoneinfo.available_timezones())
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else " (e.g. Asia/Kolkata, UTC)"
    return [
        Problem(
            document.where(("timezone",)),
            "timezone",
            f"'{name}' is not a time zone of the IANA database{hint}",
        )
    ]


def is_timezone(name: str) -> bool:
    """Whether ``name`` is a zone the IANA database (tzdata) knows, such as Asia/Kolkata."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _state(data: Any) -> tuple[StateLocation, tuple[str, ...]]:
    """``state:`` of a loaded lsqsync.yml, and the path in the document of its file or URL."""
    value = data.get("state", STATE_FILE) if isinstance(data, dict) else STATE_FILE
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        workspace = value.get("workspace", DEFAULT_WORKSPACE)
        return StateLocation(None, value["url"], str(workspace)), ("state", "url")
    if isinstance(value, str):
        return StateLocation.parse(value), ("state",)
    return StateLocation(), ("state",)  # a schema problem, reported with the others


def _rate_limit(value: Any) -> RateLimit:
    """``rate_limit:`` as the schema lets it through: ``auto``, or calls, per_seconds and an
    optional bulk."""
    if not isinstance(value, dict):
        return RateLimit()
    bulk = value.get("bulk")
    return RateLimit(
        Limit(value["calls"], float(value["per_seconds"])),
        Limit(bulk["calls"], float(bulk["per_seconds"])) if bulk else None,
    )
