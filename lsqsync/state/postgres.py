"""A PostgreSQL state: one database that a team's rule repositories and runners share, each
project in its own workspace, with its own lineage, serial, runs, journal and lock.

**Layout.** The schema ``lsqsync`` holds what the workspaces share: ``meta`` (the version of
the shared tables) and ``workspaces`` (each workspace's name, schema version and creation time:
the registry that marks the database as an lsqsync state). Each workspace is a schema
``lsqsync_NAME`` with the SQLite file's tables (`lsqsync.state.schema`), brought up to date by
the same versioned steps. The connection's ``search_path`` is that schema alone, so the store's
statements run as they are.

**Transactions.** The connection autocommits; a write is BEGIN … COMMIT whose first statement
takes a transaction-level advisory lock keyed by the workspace, so that the writers of one
workspace are serialised as SQLite's BEGIN IMMEDIATE serialises a file's. A read-only open makes
every transaction of its session read-only (``default_transaction_read_only``): the server
itself refuses a write.

**The lock.** The holder row, as in the SQLite file, plus a session-level advisory lock keyed by
the workspace and the lock's id, taken in the transaction that writes the row and held for the
run. Whoever finds the row tries that key: if it can be had, the holder's session has ended —
its process was killed, or its machine lost the database — and the lock is taken over at once
(the server releases a dead session's locks by itself). The key includes the lock's id, and not
the workspace alone, so that taking over an *expired* lock (a holder alive but silent for
``--lock-expiry``) needs nothing from the old holder's session: it goes on holding a key nobody
asks about, and learns of the takeover at its next batch, as on SQLite.

**The password** never comes from lsqsync.yml: LSQSYNC_STATE_PASSWORD, else what libpq reads
itself (PGPASSWORD, ~/.pgpass, a service file).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg
from psycopg import sql

from lsqsync.clock import stamp, utcnow
from lsqsync.config import ENV_STATE_PASSWORD, PASSWORD_SOURCES, StateLocation, shown_url
from lsqsync.errors import StateError
from lsqsync.state.database import Backend, NoState
from lsqsync.state.records import Lock, Workspace
from lsqsync.state.schema import POSTGRES_MIGRATIONS, Cursor, Migration, Sql

logger = logging.getLogger(__name__)

SHARED = "lsqsync"  # the schema of what the workspaces share
PREFIX = "lsqsync_"  # + the workspace's name: its schema
CONNECT_TIMEOUT = 10  # seconds, unless the URL sets connect_timeout


def _v1_registry(db: Sql, now: str) -> None:
    db.execute(
        "CREATE TABLE lsqsync.workspaces (name TEXT PRIMARY KEY, version INTEGER NOT NULL, "
        "created TEXT NOT NULL)"
    )


def _v2_ledger(db: Sql, now: str) -> None:
    # The rate-limit ledger (`lsqsync.state.ledger`): the account's, not a workspace's. One row
    # per account (a fingerprint of host and access key, never a key) and bucket: the times of
    # its recent grants on the server's clock (epoch seconds, oldest first), the longest window
    # asked about, a hold, and the limit the account's refusals last named.
    db.execute(
        "CREATE TABLE lsqsync.ledger (account TEXT NOT NULL, bucket TEXT NOT NULL, "
        "host TEXT NOT NULL, grants DOUBLE PRECISION[] NOT NULL DEFAULT '{}', "
        "keep DOUBLE PRECISION NOT NULL DEFAULT 0, "
        "hold_until DOUBLE PRECISION NOT NULL DEFAULT 0, "
        "calls INTEGER, per_seconds DOUBLE PRECISION, learned TEXT, evidence TEXT, "
        "PRIMARY KEY (account, bucket))"
    )


# The shared tables, versioned like a workspace's (their version is in lsqsync.meta).
SHARED_MIGRATIONS: tuple[Migration, ...] = (_v1_registry, _v2_ledger)


def _key(*parts: str) -> int:
    """An advisory lock key (a signed 64-bit integer) for ``parts``."""
    digest = hashlib.sha256("\0".join(("lsqsync", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


SHARED_KEY = _key("shared")


@cache
def _dialect(statement: str) -> str:
    # lsqsync's own statements, every value bound as a parameter: only the placeholders differ
    return statement.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """The state's statements on a psycopg connection: ``?`` placeholders become ``%s``, and a
    failing connection or a refused privilege is a StateError naming the state."""

    def __init__(self, conn: psycopg.Connection[Any], name: str) -> None:
        self.conn = conn
        self.name = name

    def execute(self, statement: str, parameters: Sequence[Any] = (), /) -> Cursor:
        with self.errors():
            return self.conn.execute(_dialect(statement), tuple(parameters))

    def executemany(self, statement: str, parameters: Iterable[Sequence[Any]], /) -> None:
        with self.errors(), self.conn.cursor() as cursor:
            cursor.executemany(_dialect(statement), [tuple(p) for p in parameters])

    def run(self, statement: sql.Composed) -> psycopg.Cursor[Any]:
        """A statement that names a schema (composed with `psycopg.sql`, never by hand)."""
        with self.errors():
            return self.conn.execute(statement)

    @contextmanager
    def transaction(self, key: int) -> Iterator[PgConnection]:
        """BEGIN … COMMIT (ROLLBACK on an error), holding the advisory lock ``key`` throughout:
        the transactions of one key run one at a time."""
        with self.errors(), self.conn.transaction():
            self.execute("SELECT pg_advisory_xact_lock(?)", (key,))
            yield self

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.errors.InsufficientPrivilege as e:
            raise StateError(
                f"{self.name}: the database refused: {reason_of(e)} (docs/guide/state.md, "
                "'A PostgreSQL state, for teams', lists the privileges the role needs)"
            ) from None
        except psycopg.OperationalError as e:
            raise StateError(f"{self.name}: the state database failed: {reason_of(e)}") from None


class PostgresWorkspace(Backend):
    """One workspace of a PostgreSQL state."""

    def __init__(
        self, conn: psycopg.Connection[Any], location: StateLocation, now: Callable[[], datetime]
    ) -> None:
        assert location.url is not None
        self.name = location.describe()
        self.workspace = location.workspace
        self.schema = PREFIX + location.workspace
        self.db = PgConnection(conn, self.name)
        self.sql = self.db
        self._now = now
        self._write_key = _key("write", self.schema)
        self._held: set[str] = set()
        self.version = len(POSTGRES_MIGRATIONS)  # an older one only when opened read-only

    @classmethod
    def open(
        cls,
        url: str,
        workspace: str,
        *,
        create: bool = True,
        read_only: bool = False,
        now: Callable[[], datetime] = utcnow,
    ) -> PostgresWorkspace:
        """Connect to the workspace ``workspace`` of the database at ``url`` (created, with the
        shared tables, unless ``read_only`` or not ``create``) and bring its schema up to
        date. Raises NoState when there is none and it may not be created, StateError for a
        database that is not an lsqsync state or whose schema is newer than this lsqsync."""
        location = StateLocation(None, url, workspace)
        state = cls(connect(url, location.describe(), read_only=read_only), location, now)
        try:
            state._open(create=create and not read_only, read_only=read_only)
        except BaseException:
            state.close()
            raise
        return state

    def _open(self, *, create: bool, read_only: bool) -> None:
        db = self.db
        prepare_shared(db, create=create, now=self._now)
        db.run(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        version = self._registered()
        if version is None and create:
            self._create()
            version = 0
        if version is None or (read_only and version == 0):
            raise NoState(
                f"{self.name}: no such workspace yet (nothing has been applied to it; "
                "`lsqsync state workspaces` lists the workspaces)"
            )
        _not_newer(self.name, version, POSTGRES_MIGRATIONS)
        if read_only:
            self.version = version
            return
        _upgrade(
            db,
            self._write_key,
            POSTGRES_MIGRATIONS,
            ("SELECT version FROM lsqsync.workspaces WHERE name = ?", (self.workspace,)),
            "UPDATE lsqsync.workspaces SET version = ? WHERE name = ?",
            self.name,
            self._now,
        )

    def _registered(self) -> int | None:
        row = self.db.execute(
            "SELECT version FROM lsqsync.workspaces WHERE name = ?", (self.workspace,)
        ).fetchone()
        return None if row is None else int(row[0])

    def _create(self) -> None:
        with self.db.transaction(self._write_key) as db:
            if self._registered() is not None:  # another process created it meanwhile
                return
            if db.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = ?", (self.schema,)
            ).fetchone():
                raise StateError(
                    f"{self.name}: the database has a schema {self.schema} that is not an "
                    "lsqsync workspace; name the workspace otherwise"
                )
            db.run(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
            db.execute(
                "INSERT INTO lsqsync.workspaces VALUES (?, 0, ?)",
                (self.workspace, stamp(self._now())),
            )
        logger.info("state: %s created", self.name)

    # -- Backend ---------------------------------------------------------------------------

    def write(self) -> AbstractContextManager[PgConnection]:
        return self.db.transaction(self._write_key)

    def errors(self) -> AbstractContextManager[None]:
        return self.db.errors()

    def schema_version(self) -> int:
        version = self._registered()
        assert version is not None
        return version

    def holder_gone(self, lock: Lock) -> str | None:
        key = self._holder_key(lock.id)
        if not self.db.execute("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()[0]:
            return None  # its session still holds the key
        self.db.execute("SELECT pg_advisory_unlock(?)", (key,))
        return "its database session has ended (its process was killed or lost the database)"

    def hold(self, lock_id: str) -> None:
        self.db.execute("SELECT pg_advisory_lock(?)", (self._holder_key(lock_id),))
        self._held.add(lock_id)

    def let_go(self, lock_id: str) -> None:
        if lock_id in self._held:
            self.db.execute("SELECT pg_advisory_unlock(?)", (self._holder_key(lock_id),))
            self._held.discard(lock_id)

    def close(self) -> None:
        self.db.conn.close()  # the server releases the session's advisory locks

    def _holder_key(self, lock_id: str) -> int:
        return _key("lock", self.schema, lock_id)


def connect(url: str, name: str, *, read_only: bool) -> psycopg.Connection[Any]:
    """An autocommitting connection to the database at ``url``: the password from
    LSQSYNC_STATE_PASSWORD, else as libpq finds it; every transaction read-only if
    ``read_only``."""
    given = dict(parse_qsl(urlsplit(url).query))
    options: dict[str, Any] = {}
    if "connect_timeout" not in given:
        options["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in given:
        options["application_name"] = "lsqsync"
    if os.environ.get(ENV_STATE_PASSWORD):
        options["password"] = os.environ[ENV_STATE_PASSWORD]
    try:
        conn = psycopg.connect(url, autocommit=True, **options)
    except psycopg.Error as e:
        reason = reason_of(e)
        if "password" in reason:
            reason += f"; the password comes from {PASSWORD_SOURCES}"
        raise StateError(f"{name}: cannot connect to the state database: {reason}") from None
    if read_only:
        PgConnection(conn, name).execute("SET default_transaction_read_only = on")
    return conn


def prepare_shared(db: PgConnection, *, create: bool, now: Callable[[], datetime]) -> None:
    """Check that the database is an lsqsync state — or, with ``create``, make an empty one
    into one — and bring its shared tables up to date."""
    if not _exists(db, "SELECT 1 FROM pg_namespace WHERE nspname = ?", SHARED):
        if _exists(db, _USER_TABLES):
            raise StateError(
                f"{db.name}: a PostgreSQL database, but not an lsqsync state (it has tables "
                "and no lsqsync schema); give lsqsync a database of its own"
            )
        if not create:
            raise NoState(f"{db.name}: no lsqsync state in this database yet (nothing applied)")
        with db.transaction(SHARED_KEY) as tx:
            if not _exists(tx, "SELECT 1 FROM pg_namespace WHERE nspname = ?", SHARED):
                tx.execute("CREATE SCHEMA lsqsync")
                tx.execute(
                    "CREATE TABLE lsqsync.meta (one INTEGER PRIMARY KEY CHECK (one = 1), "
                    "version INTEGER NOT NULL)"
                )
                tx.execute("INSERT INTO lsqsync.meta VALUES (1, 0)")
    elif not _exists(
        db, "SELECT 1 FROM pg_tables WHERE schemaname = ? AND tablename = 'meta'", SHARED
    ):
        raise StateError(
            f"{db.name}: a PostgreSQL database with a schema lsqsync that is not an lsqsync "
            "state (it has no lsqsync.meta)"
        )
    select = ("SELECT version FROM lsqsync.meta", ())
    if create:
        update = "UPDATE lsqsync.meta SET version = ?"
        _upgrade(db, SHARED_KEY, SHARED_MIGRATIONS, select, update, db.name, now)
    else:
        _not_newer(db.name, db.execute(select[0]).fetchone()[0], SHARED_MIGRATIONS)


_USER_TABLES = (
    "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname <> 'information_schema' "
    "AND n.nspname NOT LIKE 'pg\\_%' LIMIT 1"
)


def _exists(db: PgConnection, statement: str, *parameters: Any) -> bool:
    return db.execute(statement, parameters).fetchone() is not None


def _upgrade(
    db: PgConnection,
    key: int,
    steps: Sequence[Migration],
    select: tuple[str, Sequence[Any]],
    update: str,
    name: str,
    now: Callable[[], datetime],
) -> None:
    """Apply the missing ``steps``, each in its own transaction with the new version."""
    while True:
        with db.transaction(key) as tx:
            version = int(tx.execute(*select).fetchone()[0])
            _not_newer(name, version, steps)
            if version == len(steps):
                return
            steps[version](tx, stamp(now()))
            tx.execute(update, (version + 1, *select[1]))
        logger.info("state: %s migrated to schema version %d", name, version + 1)


def _not_newer(name: str, version: int, steps: Sequence[Migration]) -> None:
    if version > len(steps):
        raise StateError(
            f"{name}: state schema version {version} is newer than this lsqsync supports "
            f"({len(steps)}); upgrade lsqsync to use it"
        )


def reason_of(error: psycopg.Error) -> str:
    """The server's or libpq's message, on one line."""
    return re.sub(r"\s+", " ", str(error)).strip() or type(error).__name__


def workspaces(url: str) -> tuple[Workspace, ...]:
    """Every workspace of the database at ``url``, by name (read-only)."""
    name = shown_url(url)
    db = PgConnection(connect(url, name, read_only=True), name)
    try:
        prepare_shared(db, create=False, now=utcnow)
        rows = db.execute("SELECT name, version, created FROM lsqsync.workspaces ORDER BY name")
        return tuple(_workspace(db, *row) for row in rows.fetchall())
    finally:
        db.conn.close()


def _workspace(db: PgConnection, name: str, version: int, created: str) -> Workspace:
    if version == 0:  # registered, its tables not made yet
        return Workspace(name, version, created, 0, 0, None, None, None)
    schema = sql.Identifier(PREFIX + name)

    def first(statement: str) -> Any:
        return db.run(sql.SQL(statement).format(schema)).fetchone()

    last = first("SELECT id, outcome FROM {}.runs ORDER BY rowid DESC LIMIT 1")
    lock = first("SELECT id, holder, host, pid, run_id, operation, since, heartbeat FROM {}.lock")
    return Workspace(
        name=name,
        schema_version=version,
        created=created,
        serial=first("SELECT serial FROM {}.state")[0],
        runs=first("SELECT count(*) FROM {}.runs")[0],
        last_run=last[0] if last else None,
        last_outcome=last[1] if last else None,
        lock=Lock(*lock) if lock else None,
    )
