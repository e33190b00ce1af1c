"""The state file: what lsqsync has done, in SQLite, safe under kill -9.

It holds the ``lineage`` (a UUID set when the file is created: a plan names the lineage it was
made against) and the ``serial`` (bumped by every apply run that sends anything); the runs (who,
where, which plan, outcome, overrides used); a journal of batches, written *before* a batch is
sent and updated with its result; the per-field results; the last value lsqsync wrote to each
field of each opportunity (for drift and rollback); and the lock every writing command takes.

Why it is built the way it is:

- **Rollback journal (``journal_mode=DELETE``), ``synchronous=FULL``.** Both DELETE and WAL
  survive kill -9 with every committed transaction intact. DELETE keeps the file
  self-contained at rest: after a commit everything is in ``state.db`` itself, whereas WAL keeps
  committed transactions in ``state.db-wal`` until a checkpoint, so a CI job killed mid-apply
  whose ``state.db`` alone is cached or uploaded as an artifact would silently lose results.
  DELETE also works where WAL's shared memory does not (network and some container file
  systems). WAL's advantage, readers not blocking the writer, is irrelevant at our write rate
  (a few small transactions a second, one writer under the lock). FULL fsyncs the journal and the
  file at every commit, so a power cut is as safe as a kill.
- **One transaction per step.** A batch is journaled (status ``sending``) in one transaction
  before it is sent; its field results, its ``last_written`` values and its new status are
  written together in one more (`record_batch_result`). So at any instant a batch is either still
  ``sending`` with no results, or finished with all of them.
- **Lock protocol.** One row in ``lock``. Taking it is a ``BEGIN IMMEDIATE`` transaction (a write
  lock on the whole file, so two processes cannot both see "free"): read the row, insert ours if
  there is none or if the holder is stale (its process is gone on this host, or it has not been
  seen for longer than ``expiry``), and commit. Otherwise poll until ``timeout``. Every batch
  refreshes the lock's heartbeat and checks, in the transaction that journals it, that the lock is
  still ours: a process whose lock was taken over stops before sending anything more. Taking the
  lock also marks runs left ``running`` by a killed process as ``interrupted``.
- **Resume.** A resumed apply is a new run of the same plan digest: `confirmed` gives the fields
  any run of that digest applied or found current (never re-sent), `pending_batches` the batches
  whose answer never came (re-read their records first), and `resolve_batches` records what the
  re-read found and closes them.
- **No secrets.** Nothing here ever receives a key: runs record user@host and a directory or CI
  URL, batches a payload *hash*, results the field values the plan already holds.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from lsqsync.clock import parse_stamp, stamp, utcnow
from lsqsync.errors import StateError, StateLocked
from lsqsync.state.records import (
    CONFIRMED,
    LAST,
    OUTCOMES,
    RESULT_STATUSES,
    Batch,
    Counts,
    FieldResult,
    LastWritten,
    Lock,
    Outcome,
    Run,
)
from lsqsync.state.schema import APPLICATION_ID, MIGRATIONS, SQLITE_MAGIC

logger = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
BUSY_TIMEOUT = 10.0  # seconds SQLite waits for another process's (short) transaction
_DIGEST = re.compile(r"[0-9a-f]{64}")


def default_who() -> str:
    """``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError, ImportError):  # no login name and no passwd entry (containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def default_where(env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    """The CI job's URL when running in GitHub Actions or GitLab CI, else the directory."""
    env = os.environ if env is None else env
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
        return url if attempt in ("", "1") else f"{url}/attempts/{attempt}"
    if env.get("CI_JOB_URL"):
        return env["CI_JOB_URL"]
    return cwd if cwd is not None else os.getcwd()


def _new_run_id(moment: datetime) -> str:
    # Sortable by time to the second, unique by its random tail, short enough to type a prefix.
    return f"{moment.astimezone(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


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


# -- the state file ---------------------------------------------------------------------------


class StateFile:
    """An open state file. Use `StateFile.open`; every method is one transaction (or one read),
    and the object may be shared between threads."""

    def __init__(
        self, path: Path, db: sqlite3.Connection, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.path = path
        self._db = db
        self._now = now
        self._mutex = threading.RLock()
        self._lock_id: str | None = None
        self._version = len(MIGRATIONS)  # an older one only when opened read-only

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        read_only: bool = False,
        now: Callable[[], datetime] = utcnow,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> StateFile:
        """Open (or create, mode 0600, with its folder) the state file at ``path`` and bring its
        schema up to date. ``read_only`` (for commands that only read: plan, state runs and
        show, drift, rollback) changes nothing on disk — no folder, mode or migration — and
        needs an existing file. Raises StateError for a file that is not an lsqsync state file,
        or one written by a newer lsqsync."""
        path = Path(path)
        if (read_only or not create) and not path.exists():
            raise StateError(f"{path}: no state file (nothing has been applied yet)")
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
            state._version = state._check_version()
            if not read_only:
                db.execute("PRAGMA synchronous = FULL")
                mode = db.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
                if mode != "delete":  # pragma: no cover - only if another holds it in WAL
                    raise StateError(f"{path}: cannot set the rollback journal ({mode})")
                state._migrate()
                state._version = len(MIGRATIONS)
        except sqlite3.DatabaseError as e:
            db.close()
            raise StateError(f"{path}: not a usable lsqsync state file ({e})") from None
        except BaseException:
            db.close()
            raise
        return state

    def close(self) -> None:
        """Release this process's lock (if it still holds one) and close the file."""
        with self._mutex:
            if self._lock_id is not None:
                self.release_lock(self._lock_id)
            self._db.close()

    def __enter__(self) -> StateFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. IMMEDIATE takes the file's write lock up front, so that what
        the transaction reads cannot change before it writes."""
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._mutex:
            return self._db.execute(sql, params).fetchall()

    def _stamp(self) -> str:
        return stamp(self._now())

    def _check_version(self) -> int:
        version: int = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StateError(
                f"{self.path}: state file schema version {version} is newer than this lsqsync "
                f"supports ({len(MIGRATIONS)}); upgrade lsqsync to use it"
            )
        if version == 0:
            if self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StateError(
                    f"{self.path}: a SQLite database, but not an lsqsync state file "
                    f"(it has tables and no lsqsync schema version)"
                )
        elif self._db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            raise StateError(f"{self.path}: a SQLite database, but not an lsqsync state file")
        return version

    def _migrate(self) -> None:
        while self._check_version() < len(MIGRATIONS):
            with self._write() as db:
                version = self._check_version()  # another process may have migrated meanwhile
                if version == len(MIGRATIONS):
                    break
                MIGRATIONS[version](db, self._stamp())
                db.execute(f"PRAGMA user_version = {version + 1}")
            logger.info("state: %s migrated to schema version %d", self.path, version + 1)

    # -- lineage and serial ----------------------------------------------------------------

    @property
    def lineage(self) -> str:
        """A UUID set once, when the file was created."""
        value: str = self._read("SELECT lineage FROM state")[0][0]
        return value

    @property
    def serial(self) -> int:
        """Bumped by every apply run that sends anything."""
        value: int = self._read("SELECT serial FROM state")[0][0]
        return value

    @property
    def schema_version(self) -> int:
        value: int = self._read("PRAGMA user_version")[0][0]
        return value

    # -- runs ------------------------------------------------------------------------------

    def begin_run(
        self,
        plan_digest: str,
        *,
        overrides: Iterable[str] = (),
        who: str | None = None,
        where: str | None = None,
    ) -> Run:
        """Record a new run of the plan ``plan_digest`` (needs the lock; the lock then names the
        run). ``who``/``where`` default to this process's user@host and directory or CI job."""
        started = self._stamp()
        run = Run(
            id=_new_run_id(self._now()),
            who=who if who is not None else default_who(),
            where=where if where is not None else default_where(),
            plan_digest=plan_digest,
            started=started,
            finished=None,
            outcome="running",
            overrides=tuple(overrides),
            serial=None,
        )
        with self._write() as db:
            self._check_lock(db, "begin a run")
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, NULL, 'running', ?, NULL)",
                (run.id, run.who, run.where, plan_digest, started, json.dumps(run.overrides)),
            )
            db.execute("UPDATE lock SET run_id = ? WHERE id = ?", (run.id, self._lock_id))
        logger.info("state: run=%s begun plan=%s", run.id, plan_digest)
        return run

    def finish_run(self, run_id: str, outcome: Outcome) -> Run:
        """Set the outcome of a running run (succeeded, partial, failed or interrupted)."""
        if outcome not in OUTCOMES or outcome == "running":
            raise ValueError(f"not a final outcome: {outcome!r}")
        with self._write() as db:
            row = db.execute("SELECT outcome FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StateError(f"{self.path}: no run {run_id}")
            if row[0] != "running":
                raise StateError(f"{self.path}: run {run_id} has already ended ({row[0]})")
            db.execute(
                "UPDATE runs SET outcome = ?, finished = ? WHERE id = ?",
                (outcome, self._stamp(), run_id),
            )
        logger.info("state: run=%s outcome=%s", run_id, outcome)
        return self.run(run_id)

    def runs(self) -> tuple[Run, ...]:
        """Every run, oldest first."""
        return self._runs("SELECT * FROM runs ORDER BY rowid")

    def runs_since(self, serial: int) -> tuple[Run, ...]:
        """The runs that produced a serial after ``serial`` (what happened since a plan)."""
        return self._runs("SELECT * FROM runs WHERE serial > ? ORDER BY serial", (serial,))

    def run(self, id_or_prefix: str) -> Run:
        """The run with this id, the only run whose id starts with it, or (``last``) the most
        recent run."""
        if id_or_prefix == LAST:
            latest = self._runs("SELECT * FROM runs ORDER BY rowid DESC LIMIT 1")
            if not latest:
                raise StateError(f"{self.path}: no runs yet, so there is no last run")
            return latest[0]
        exact = self._runs("SELECT * FROM runs WHERE id = ?", (id_or_prefix,))
        if exact:
            return exact[0]
        pattern = id_or_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        found = (
            self._runs(
                "SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY rowid", (pattern + "%",)
            )
            if id_or_prefix
            else ()
        )
        if len(found) == 1:
            return found[0]
        if not found:
            raise StateError(
                f"{self.path}: no run {id_or_prefix!r} (`lsqsync state runs` lists them)"
            )
        raise StateError(
            f"{self.path}: run {id_or_prefix!r} is ambiguous: it starts "
            f"{', '.join(r.id for r in found)}"
        )

    def _runs(self, sql: str, params: Sequence[Any] = ()) -> tuple[Run, ...]:
        rows = self._read(sql, params)
        counts: dict[str, dict[str, int]] = {}
        ids = [row[0] for row in rows]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for run_id, status, n in self._read(
                f"SELECT run_id, status, count(*) FROM results WHERE run_id IN ({_marks(chunk)}) "
                "GROUP BY run_id, status",
                chunk,
            ):
                counts.setdefault(run_id, {})[status] = n
        return tuple(
            Run(
                id=row[0],
                who=row[1],
                where=row[2],
                plan_digest=row[3],
                started=row[4],
                finished=row[5],
                outcome=row[6],
                overrides=tuple(json.loads(row[7])),
                serial=row[8],
                counts=Counts(**counts.get(row[0], {})),
            )
            for row in rows
        )

    # -- the journal of batches ------------------------------------------------------------

    def begin_batch(self, run_id: str, opportunity_ids: Sequence[str], payload: bytes) -> Batch:
        """Journal a batch *before* it is sent: its opportunities and the sha256 of the exact
        request body. The first batch of a run bumps the serial. Needs the lock, and raises
        StateLocked if another process has taken it over meanwhile (send nothing then)."""
        if not opportunity_ids:
            raise ValueError("a batch needs at least one opportunity")
        digest = hashlib.sha256(payload).hexdigest()
        sent = self._stamp()
        with self._write() as db:
            self._check_lock(db, "send a batch")
            db.execute("UPDATE lock SET heartbeat = ? WHERE id = ?", (sent, self._lock_id))
            row = db.execute("SELECT outcome, serial FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StateError(f"{self.path}: no run {run_id}")
            if row[0] != "running":
                raise StateError(f"{self.path}: run {run_id} has already ended ({row[0]})")
            if row[1] is None:
                db.execute("UPDATE state SET serial = serial + 1")
                db.execute(
                    "UPDATE runs SET serial = (SELECT serial FROM state) WHERE id = ?", (run_id,)
                )
            number: int = db.execute(
                "SELECT coalesce(max(batch), 0) + 1 FROM batches WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, 'sending', ?, NULL, NULL, NULL)",
                (run_id, number, json.dumps(list(opportunity_ids)), digest, sent),
            )
        logger.debug("state: run=%s batch=%d status=sending", run_id, number)
        return Batch(run_id, number, tuple(opportunity_ids), digest, "sending", sent)

    def record_batch_result(
        self,
        run_id: str,
        batch: int,
        status: Literal["done", "failed", "unknown"],
        results: Iterable[FieldResult],
        *,
        message: str | None = None,
    ) -> Batch:
        """Record what became of a sent batch: its field results, the new ``last_written``
        values of the applied ones, and its status (done: answered; failed: the whole call was
        refused; unknown: no answer), all in ONE transaction. A 'done' batch needs a result
        for each of its opportunities."""
        if status not in ("done", "failed", "unknown"):
            raise ValueError(f"not a final batch status: {status!r}")
        results = tuple(results)
        _check_results(results)
        finished = self._stamp()
        with self._write() as db:
            row = db.execute(
                "SELECT opportunity_ids, status FROM batches WHERE run_id = ? AND batch = ?",
                (run_id, batch),
            ).fetchone()
            if row is None:
                raise StateError(f"{self.path}: no batch {batch} in run {run_id}")
            if row[1] != "sending":
                raise StateError(
                    f"{self.path}: batch {batch} of run {run_id} is already recorded ({row[1]})"
                )
            ids = set(json.loads(row[0]))
            strangers = sorted({r.opportunity_id for r in results} - ids)
            if strangers:
                raise ValueError(f"results for opportunities not in the batch: {strangers}")
            missing = sorted(ids - {r.opportunity_id for r in results})
            if status == "done" and missing:
                raise ValueError(f"a done batch needs results for every opportunity: {missing}")
            self._write_results(db, run_id, batch, results, finished)
            db.execute(
                "UPDATE batches SET status = ?, finished = ?, message = ? "
                "WHERE run_id = ? AND batch = ?",
                (status, finished, message, run_id, batch),
            )
        logger.info(
            "state: run=%s batch=%d status=%s results=%d", run_id, batch, status, len(results)
        )
        return self._batches("WHERE run_id = ? AND batch = ?", (run_id, batch))[0]

    def record_results(self, run_id: str, results: Iterable[FieldResult]) -> None:
        """Record field results that belong to no batch: fields found stale or already current
        before sending, and unknown outcomes resolved by re-reading. One transaction; a field's
        later result in the same run replaces its earlier one."""
        results = tuple(results)
        _check_results(results)
        with self._write() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise StateError(f"{self.path}: no run {run_id}")
            self._write_results(db, run_id, None, results, self._stamp())

    def _write_results(
        self,
        db: sqlite3.Connection,
        run_id: str,
        batch: int | None,
        results: Sequence[FieldResult],
        now: str,
    ) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO results (run_id, opportunity_id, field, opportunity_type, "
            "before, after, status, message, rule, batch, recorded, current) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    r.opportunity_id,
                    r.field,
                    r.opportunity_type,
                    r.before,
                    r.after,
                    r.status,
                    r.message,
                    r.rule,
                    batch,
                    now,
                    r.current,
                )
                for r in results
            ],
        )
        db.executemany(
            "INSERT OR REPLACE INTO last_written VALUES (?, ?, ?, ?, ?, ?)",
            [
                (r.opportunity_id, r.field, r.opportunity_type, r.after, run_id, now)
                for r in results
                if r.status == "applied"
            ],
        )

    def batches(self, run_id: str) -> tuple[Batch, ...]:
        """The journal of a run, in the order its batches were sent."""
        return self._batches("WHERE run_id = ? ORDER BY batch", (run_id,))

    def pending_batches(self, run_or_digest: str) -> tuple[Batch, ...]:
        """Batches of any run of this plan digest (a run id or prefix stands for its plan's
        digest) still 'sending' (the process died before their answer was recorded) or
        'unknown' (no answer came), and not yet resolved: their records must be re-read before
        anything is re-sent, and a planned value found there was written by lsqsync."""
        digest = self._digest_of(run_or_digest)
        return self._batches(
            "JOIN runs ON runs.id = batches.run_id "
            "WHERE runs.plan_digest = ? AND batches.status IN ('sending', 'unknown') "
            "AND resolved_by IS NULL ORDER BY runs.rowid, batch",
            (digest,),
        )

    def resolve_batches(
        self, run_id: str, batches: Iterable[Batch], results: Iterable[FieldResult]
    ) -> None:
        """Record what re-reading the records of pending ``batches`` found (as results of
        ``run_id``, the run doing it) and mark those batches resolved by it, in one
        transaction."""
        keys = [(b.run_id, b.batch) for b in batches]
        results = tuple(results)
        _check_results(results)
        with self._write() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise StateError(f"{self.path}: no run {run_id}")
            for key in keys:
                changed = db.execute(
                    "UPDATE batches SET resolved_by = ? WHERE run_id = ? AND batch = ? "
                    "AND status IN ('sending', 'unknown') AND resolved_by IS NULL",
                    (run_id, *key),
                ).rowcount
                if not changed:
                    raise StateError(f"{self.path}: batch {key[1]} of run {key[0]} is not pending")
            self._write_results(db, run_id, None, results, self._stamp())
        logger.info("state: run=%s resolved=%d results=%d", run_id, len(keys), len(results))

    def _batches(self, clause: str, params: Sequence[Any]) -> tuple[Batch, ...]:
        return tuple(
            Batch(row[0], row[1], tuple(json.loads(row[2])), *row[3:])
            for row in self._read(
                "SELECT batches.run_id, batch, opportunity_ids, payload_sha256, status, sent, "
                f"batches.finished, message, resolved_by FROM batches {clause}",
                params,
            )
        )

    # -- results ---------------------------------------------------------------------------

    def results(self, run_id: str) -> tuple[FieldResult, ...]:
        """A run's field results, by opportunity id and field."""
        return tuple(
            FieldResult(*row)
            for row in self._read(
                "SELECT opportunity_id, opportunity_type, field, before, after, status, rule, "
                f"message, {'current' if self._version >= 2 else 'NULL'} FROM results "
                "WHERE run_id = ? ORDER BY opportunity_id, field",
                (run_id,),
            )
        )

    def confirmed(self, run_or_digest: str) -> frozenset[tuple[str, str]]:
        """(opportunity id, field) pairs applied or found already current by any run of this
        plan digest (a run id or prefix stands for its plan's digest): a resumed apply never
        re-sends them."""
        digest = self._digest_of(run_or_digest)
        return frozenset(
            (row[0], row[1])
            for row in self._read(
                "SELECT DISTINCT opportunity_id, field FROM results "
                "JOIN runs ON runs.id = results.run_id "
                f"WHERE runs.plan_digest = ? AND results.status IN ({_marks(CONFIRMED)})",
                (digest, *CONFIRMED),
            )
        )

    def last_written_values(self) -> tuple[LastWritten, ...]:
        """The last value lsqsync wrote to each field of each opportunity."""
        return tuple(
            LastWritten(*row)
            for row in self._read(
                "SELECT opportunity_id, opportunity_type, field, value, run_id, written "
                "FROM last_written ORDER BY opportunity_id, field"
            )
        )

    def _digest_of(self, run_or_digest: str) -> str:
        if _DIGEST.fullmatch(run_or_digest):
            return run_or_digest
        return self.run(run_or_digest).plan_digest

    # -- the lock --------------------------------------------------------------------------

    def acquire_lock(
        self,
        operation: str,
        run_id: str | None = None,
        *,
        timeout: float = 0.0,
        expiry: float | None = None,
        poll: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> Lock:
        """Take the lock for ``operation`` ("apply"…), waiting up to ``timeout`` seconds.

        A lock whose process is gone (same host) or whose holder has not been seen for more
        than ``expiry`` seconds is taken over, with a warning. Raises StateLocked naming the
        holder when the lock is still held after ``timeout``."""
        if self._lock_id is not None:
            raise StateError(f"{self.path}: this process already holds the lock {self._lock_id}")
        start = clock()
        while True:
            taken, holder = self._try_lock(operation, run_id, expiry)
            if taken is not None:
                return taken
            assert holder is not None
            waited = clock() - start
            if waited >= timeout:
                raise StateLocked(_locked_message(self.path, holder, timeout))
            logger.debug("state: lock held by %s (pid %d), waiting", holder.holder, holder.pid)
            sleep(min(poll, timeout - waited))

    def _try_lock(
        self, operation: str, run_id: str | None, expiry: float | None
    ) -> tuple[Lock | None, Lock | None]:
        now = self._now()
        with self._write() as db:
            current = self._current_lock(db)
            if current is not None:
                reason = _stale(current, now, expiry)
                if reason is None:
                    return None, current
                logger.warning(
                    "state: taking over lock %s of %s (pid %d on %s, %s since %s): %s",
                    current.id,
                    current.holder,
                    current.pid,
                    current.host,
                    current.operation,
                    current.since,
                    reason,
                )
                db.execute("DELETE FROM lock")
            host = socket.gethostname()
            lock = Lock(
                id=str(uuid.uuid4()),
                holder=default_who(),
                host=host,
                pid=os.getpid(),
                run_id=run_id,
                operation=operation,
                since=stamp(now),
                heartbeat=stamp(now),
            )
            db.execute(
                "INSERT INTO lock VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    lock.id,
                    lock.holder,
                    lock.host,
                    lock.pid,
                    lock.run_id,
                    lock.operation,
                    lock.since,
                    lock.heartbeat,
                ),
            )
            # Every run is begun under the lock: one still 'running' now was left by a process
            # that died (or lost its lock).
            for (orphan,) in db.execute("SELECT id FROM runs WHERE outcome = 'running'"):
                logger.warning("state: run=%s was left running; marking it interrupted", orphan)
            db.execute(
                "UPDATE runs SET outcome = 'interrupted', finished = ? WHERE outcome = 'running'",
                (lock.since,),
            )
        self._lock_id = lock.id
        logger.info("state: lock=%s taken for %s", lock.id, operation)
        return lock, None

    def release_lock(self, lock_id: str) -> bool:
        """Release a lock this process took. False (and a warning) if it had been taken over."""
        with self._write() as db:
            released = db.execute("DELETE FROM lock WHERE id = ?", (lock_id,)).rowcount > 0
        if self._lock_id == lock_id:
            self._lock_id = None
        if released:
            logger.info("state: lock=%s released", lock_id)
        else:
            logger.warning("state: lock=%s was no longer held when released", lock_id)
        return released

    def unlock(self, lock_id: str) -> Lock:
        """Remove the current lock, whoever holds it (`lsqsync state unlock ID`). Needs its
        exact id."""
        with self._write() as db:
            current = self._current_lock(db)
            if current is None:
                raise StateError(f"{self.path} is not locked")
            if current.id != lock_id:
                raise StateError(
                    f"{self.path}: {lock_id!r} is not the current lock's id; the current lock "
                    f"is {current.id}, held by {current.holder} (pid {current.pid} on "
                    f"{current.host}) for {current.operation} since {current.since}"
                )
            db.execute("DELETE FROM lock")
        logger.warning(
            "state: lock %s of %s (pid %d on %s) removed by unlock",
            current.id,
            current.holder,
            current.pid,
            current.host,
        )
        return current

    def current_lock(self) -> Lock | None:
        with self._mutex:
            return self._current_lock(self._db)

    def _current_lock(self, db: sqlite3.Connection) -> Lock | None:
        row = db.execute(
            "SELECT id, holder, host, pid, run_id, operation, since, heartbeat FROM lock"
        ).fetchone()
        return Lock(*row) if row else None

    def _check_lock(self, db: sqlite3.Connection, action: str) -> None:
        if self._lock_id is None:
            raise StateError(f"{self.path}: cannot {action} without the lock (acquire_lock)")
        current = self._current_lock(db)
        if current is None or current.id != self._lock_id:
            by = (
                f"{current.holder} (pid {current.pid} on {current.host}, lock id {current.id})"
                if current
                else "nobody (it was removed with unlock)"
            )
            raise StateLocked(
                f"{self.path}: this process's lock {self._lock_id} was taken over by {by}; "
                f"stopping before it can {action}"
            )


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
    """Create the file (and its folder) with mode 0600 before SQLite opens it, refuse a file
    that is not SQLite before touching it, and tighten the mode of an existing file."""
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
        if stat.S_IMODE(info.st_mode) != FILE_MODE:
            logger.warning(
                "state: %s had mode %o; setting it to %o (it records what was changed where)",
                path,
                stat.S_IMODE(info.st_mode),
                FILE_MODE,
            )
            os.fchmod(fd, FILE_MODE)
    except OSError as e:
        raise StateError(f"{path}: cannot secure the state file ({e.strerror or e})") from None
    finally:
        os.close(fd)


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _check_results(results: Sequence[FieldResult]) -> None:
    for r in results:
        if r.status not in RESULT_STATUSES:
            raise ValueError(f"not a field result status: {r.status!r}")


def _stale(lock: Lock, now: datetime, expiry: float | None) -> str | None:
    """Why ``lock`` may be taken over, or None while its holder may still be working."""
    if lock.host == socket.gethostname() and not _pid_alive(lock.pid):
        return f"its process {lock.pid} is gone"
    if expiry is not None:
        age = (now - parse_stamp(lock.heartbeat)).total_seconds()
        if age > expiry:
            return f"not seen for {age:g}s, more than the lock expiry of {expiry:g}s"
    return None


def _locked_message(path: Path, holder: Lock, timeout: float) -> str:
    run = f" (run {holder.run_id})" if holder.run_id else ""
    return (
        f"{path} is locked by {holder.holder} (pid {holder.pid} on {holder.host}) for "
        f"{holder.operation}{run} since {holder.since}; waited {timeout:g}s. Lock id: "
        f"{holder.id}. If that process is gone: lsqsync state unlock {holder.id}"
    )
