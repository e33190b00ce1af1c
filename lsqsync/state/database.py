"""The state's database behind one interface, `Backend`, with two implementations: the SQLite
file here (`SqliteFile`), and a workspace of a PostgreSQL database
(`lsqsync.state.postgres`). `Database` is what the lock and the store build on — one
transaction per call, shared between threads — and nothing above it knows which backend it has.

The SQLite file: created with mode 0600 (its folder 0700), one connection shared by threads, one
transaction per call, and the schema brought up to date.

- **Rollback journal (``journal_mode=DELETE``), ``synchronous=FULL``.** Both DELETE and WAL
  survive kill -9 with every committed transaction intact. DELETE keeps the file
  self-contained at rest: after a commit everything is in ``state.db`` itself, whereas WAL keeps
  committed transactions in ``state.db-wal`` until a checkpoint, so a CI job killed mid-apply
  whose ``state.db`` alone is cached or uploaded as an artifact would silently lose results.
  DELETE also works where WAL's shared memory does not (network and some container file
  systems). WAL's advantage, readers not blocking the writer, is irrelevant at our write rate
  (a few small transactions a second, one writer under the lock). FULL fsyncs the journal and the
  file at every commit, so a power cut is as safe as a kill.
- **Read-only** opens (commands that only read) change nothing on disk: no folder, mode or
  migration.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import stat
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from lsqsync.clock import stamp, utcnow
from lsqsync.errors import StateError
from lsqsync.state.records import Lock
from lsqsync.state.schema import APPLICATION_ID, MIGRATIONS, SQLITE_MAGIC, Sql

logger = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
BUSY_TIMEOUT = 10.0  # seconds SQLite waits for another process's (short) transaction


class NoState(StateError):
    """Nothing has been applied there yet: no state file, or no such workspace. `plan` makes a
    plan bound to no state then; the commands that read runs say so."""


class Backend(ABC):
    """Where one state is kept, and what differs between kinds of storage: transactions,
    schema versions, and how a lock's holder is known to be gone."""

    name: str  # what messages call it: the file's path, or the URL (no password) and workspace
    sql: Sql
    version: int  # the schema version read (older than the latest only when opened read-only)

    @abstractmethod
    def write(self) -> AbstractContextManager[Sql]:
        """One write transaction, serialised with every other writer of this state: what it
        reads cannot change before it writes."""

    @abstractmethod
    def errors(self) -> AbstractContextManager[None]:
        """The storage's own failures (a damaged file, a lost connection) as StateError naming
        the state."""

    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def holder_gone(self, lock: Lock) -> str | None:
        """Why the holder of ``lock`` is surely gone (so that it is taken over at once), or
        None while it may still be working."""

    def hold(self, lock_id: str) -> None:  # noqa: B027 - a hook most backends need not fill
        """In the transaction that takes the lock ``lock_id``: tie it to this connection, for a
        backend whose server can tell when a holder is gone."""

    def let_go(self, lock_id: str) -> None:  # noqa: B027 - the other half of `hold`
        """This connection no longer holds the lock ``lock_id``."""

    @abstractmethod
    def close(self) -> None: ...


class Database:
    """An open state. Every method is one transaction (or one read), and the object may be
    shared between threads."""

    def __init__(self, backend: Backend, now: Callable[[], datetime] = utcnow) -> None:
        self._backend = backend
        self._db = backend.sql
        self.name = backend.name
        self._now = now
        self._mutex = threading.RLock()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        read_only: bool = False,
        now: Callable[[], datetime] = utcnow,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> Self:
        """Open (or create, mode 0600, with its folder) the state file at ``path`` and bring its
        schema up to date. ``read_only`` (for commands that only read: plan, state runs and
        show, drift, rollback) changes nothing on disk — no folder, mode or migration — and
        needs an existing file. Raises StateError for a file that is not an lsqsync state file,
        or one written by a newer lsqsync."""
        backend = SqliteFile.open(
            Path(path), create=create, read_only=read_only, now=now, busy_timeout=busy_timeout
        )
        return cls(backend, now)

    def close(self) -> None:
        with self._mutex:
            self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------

    @property
    def _version(self) -> int:
        return self._backend.version

    @contextmanager
    def _write(self) -> Iterator[Sql]:
        with self._mutex, self._backend.errors(), self._backend.write() as db:
            yield db

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._mutex, self._backend.errors():
            return self._db.execute(sql, params).fetchall()

    def _stamp(self) -> str:
        return stamp(self._now())

    # -- lineage and serial ----------------------------------------------------------------

    @property
    def lineage(self) -> str:
        """A UUID set once, when the state was created."""
        value: str = self._read("SELECT lineage FROM state")[0][0]
        return value

    @property
    def serial(self) -> int:
        """Bumped by every apply run that sends anything."""
        value: int = self._read("SELECT serial FROM state")[0][0]
        return value

    @property
    def schema_version(self) -> int:
        with self._mutex:
            return self._backend.schema_version()


class SqliteFile(Backend):
    """The state in one SQLite file."""

    def __init__(self, path: Path, db: sqlite3.Connection, now: Callable[[], datetime]) -> None:
        self.path = path
        self.name = str(path)
        self.sql = db
        self._db = db
        self._now = now
        self.version = len(MIGRATIONS)  # an older one only when opened read-only

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        create: bool,
        read_only: bool,
        now: Callable[[], datetime],
        busy_timeout: float,
    ) -> SqliteFile:
        if (read_only or not create) and not path.exists():
            raise NoState(f"{path}: no state file (nothing has been applied yet)")
        if read_only:
            _check_header(path)
            target, uri = f"{path.absolute().as_uri()}?mode=ro", True
        else:
            _prepare_file(path)
            target, uri = str(path), False
        try:
            db = sqlite3.connect(
                target, timeout=busy_timeout, isolation_level=None, check_same_thread=False, uri=uri
            )
        except sqlite3.Error as e:
            raise StateError(f"{path}: cannot open the state file ({e})") from None
        state = cls(path, db, now)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            state.version = state._check_version()
            if not read_only:
                _tighten(path)  # only once it is known to be an lsqsync state file
                db.execute("PRAGMA synchronous = FULL")
                mode = db.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
                if mode != "delete":  # pragma: no cover - only if another holds it in WAL
                    raise StateError(f"{path}: cannot set the rollback journal ({mode})")
                state._migrate()
                state.version = len(MIGRATIONS)
        except sqlite3.DatabaseError as e:
            db.close()
            raise StateError(f"{path}: not a usable lsqsync state file ({e})") from None
        except BaseException:
            db.close()
            raise
        return state

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """IMMEDIATE takes the file's write lock up front."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def errors(self) -> Iterator[None]:
        """SQLite's own errors (a damaged page, a dropped table, a folder that turned read-only)
        as StateError naming the file, not a bare ``DatabaseError``."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            raise StateError(f"{self.path}: the state file cannot be used ({e})") from None

    def schema_version(self) -> int:
        version: int = self._db.execute("PRAGMA user_version").fetchone()[0]
        return version

    def holder_gone(self, lock: Lock) -> str | None:
        if lock.host == socket.gethostname() and not _pid_alive(lock.pid):
            return f"its process {lock.pid} is gone"
        return None

    def _check_version(self) -> int:
        # One statement, so one snapshot: read apart, another process creating the file could
        # commit its first version between the reads.
        version, tables, application_id = self._db.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), "
            "(SELECT count(*) FROM sqlite_master), "
            "(SELECT application_id FROM pragma_application_id)"
        ).fetchone()
        if version > len(MIGRATIONS):
            raise StateError(
                f"{self.path}: state file schema version {version} is newer than this lsqsync "
                f"supports ({len(MIGRATIONS)}); upgrade lsqsync to use it"
            )
        if version == 0:
            if tables:
                raise StateError(
                    f"{self.path}: a SQLite database, but not an lsqsync state file "
                    f"(it has tables and no lsqsync schema version)"
                )
        elif application_id != APPLICATION_ID:
            raise StateError(f"{self.path}: a SQLite database, but not an lsqsync state file")
        return int(version)

    def _migrate(self) -> None:
        while self._check_version() < len(MIGRATIONS):
            with self.write() as db:
                version = self._check_version()  # another process may have migrated meanwhile
                if version == len(MIGRATIONS):
                    break
                MIGRATIONS[version](db, stamp(self._now()))
                db.execute(f"PRAGMA user_version = {version + 1}")
            logger.info("state: %s migrated to schema version %d", self.path, version + 1)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite without changing anything."""
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise StateError(f"{path}: cannot read the state file ({e.strerror or e})") from None
    if header != SQLITE_MAGIC:
        raise StateError(f"{path}: not an lsqsync state file (not a SQLite database)")


def _prepare_file(path: Path) -> None:
    """Create the file (and its folder) with mode 0600 before SQLite opens it, and refuse a file
    that is not SQLite before touching it."""
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as e:
        raise StateError(f"{path}: cannot open the state file ({e.strerror or e})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # pragma: no cover - O_RDWR already refuses folders
            raise StateError(f"{path}: not a regular file")
        header = os.read(fd, len(SQLITE_MAGIC))
        if header and header != SQLITE_MAGIC:
            raise StateError(f"{path}: not an lsqsync state file (not a SQLite database)")
    except OSError as e:  # pragma: no cover - reading a file just opened
        raise StateError(f"{path}: cannot read the state file ({e.strerror or e})") from None
    finally:
        os.close(fd)


def _tighten(path: Path) -> None:
    """Give an lsqsync state file mode 0600 (it records what was changed where)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != FILE_MODE:
            logger.warning("state: %s had mode %o; setting it to %o", path, mode, FILE_MODE)
            path.chmod(FILE_MODE)
    except OSError as e:
        raise StateError(f"{path}: cannot secure the state file ({e.strerror or e})") from None


def marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))
