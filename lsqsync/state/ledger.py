"""The rate-limit ledger in a PostgreSQL state database: one budget, and one memory of what the
account's refusals taught, for every runner on every machine whose state is in that database —
whatever its workspace, since the limit is the account's.

**The table** ``lsqsync.ledger`` (a shared table: `postgres.SHARED_MIGRATIONS`) has a row per
account — the fingerprint of host and access key that the cache folder uses, never a key — and
bucket. A grant is one short transaction: lock the account's rows (``SELECT … FOR UPDATE``, in
bucket order, so that two grants never wait for each other crosswise), decide with the same rule
as the other ledgers (`lsqsync.lsq.ledger`), and record the grant. Two round trips: the lock and
the read go out together, and so do the record and the COMMIT (psycopg's pipeline mode).

**One clock.** Grant times are the database server's (``clock_timestamp()``), never a runner's:
runners on several machines share no other. It is read once the rows are locked — a runner that
queued behind another's transaction decides on the time it got its turn, not on the time it
asked (which would make the window look fuller than it is, and let the runners that never queue
win every free slot) — and again when the grant is written.

**A runner that dies holds nothing.** Grants are records of calls made, not leases: there is
nothing to give back. A runner killed inside a grant transaction loses its connection, and the
server rolls the transaction back and releases the rows at once; a runner that stops inside one
without losing its connection (a frozen machine) is cut off by the server after
``idle_in_transaction_session_timeout``. Whoever waits for the rows longer than ``lock_timeout``
paces itself alone for the rest of its run, as with a ledger file whose lock is not let go.

**Durability** is not needed: ``synchronous_commit`` is off for the ledger's session, so a grant
does not wait for the server's disk. A server crash can forget the last grants; the next
refusal, if any, is handled as refusals are.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from lsqsync.config import shown_url
from lsqsync.errors import StateError
from lsqsync.lsq import SharedLedger
from lsqsync.lsq.ledger import (
    MAX_GRANTS,
    MAX_HOLD,
    Lesson,
    Lessons,
    MemoryLedger,
    Windows,
    seconds_to_wait,
)
from lsqsync.state.postgres import SHARED_MIGRATIONS, connect, reason_of

log = logging.getLogger(__name__)
# psycopg warns of the errors it ignores while ending a pipeline on a connection that broke; the
# ledger says what broke, once, itself
logging.getLogger("psycopg").setLevel(logging.ERROR)

LEDGER_VERSION = 2  # the shared schema version that made lsqsync.ledger
# A ledger transaction takes milliseconds; a session idle inside one this long is gone. Waiting
# twice as long for another runner's transaction: that runner does not let go.
STALL_TIMEOUT = 5.0
# Grant times more than this ahead of the server's clock are not honoured (a clock set back).
_FUTURE = 60.0
# Asking again after finding the account's rows deleted (by a person, to forget the lessons).
_AGAIN = 0.01

_ENSURE = (
    "INSERT INTO lsqsync.ledger (account, bucket, host) "
    "SELECT %s, b, %s FROM unnest(%s::text[]) AS b ON CONFLICT DO NOTHING"
)
_LOCK = (
    "SELECT bucket, grants, keep, hold_until, calls, per_seconds, learned, evidence "
    "FROM lsqsync.ledger WHERE account = %s ORDER BY bucket FOR UPDATE"
)
# after _LOCK, in the same round trip: the time once the rows are this transaction's
_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"
_RECORD = (
    "UPDATE lsqsync.ledger "
    "SET grants = %s::float8[] || extract(epoch FROM clock_timestamp())::float8, "
    "keep = %s WHERE account = %s AND bucket = %s"
)
_HOLD = (
    "UPDATE lsqsync.ledger "
    "SET hold_until = greatest(hold_until, extract(epoch FROM clock_timestamp())::float8 + %s) "
    "WHERE account = %s"
)
_LEARN = (
    "INSERT INTO lsqsync.ledger (account, bucket, host, calls, per_seconds, learned, evidence) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (account, bucket) DO UPDATE SET "
    "host = excluded.host, calls = excluded.calls, per_seconds = excluded.per_seconds, "
    "learned = excluded.learned, evidence = excluded.evidence"
)
_LESSONS = (
    "SELECT bucket, calls, per_seconds, learned, evidence FROM lsqsync.ledger WHERE account = %s"
)
_MAX_EVIDENCE = 200


def opener(url: str) -> SharedLedger:
    """What `lsqsync.config.open_client` calls to get the account's ledger in the database at
    ``url``: a `PostgresLedger`, or None (this machine's ledger) when the database has no ledger
    to share yet or cannot be reached."""
    return lambda account, host: PostgresLedger.open(url, account, host)


class PostgresLedger:
    """The account's ledger in a PostgreSQL state database, on a connection of its own (the
    state's is busy with the run's transactions, and may be read-only). Shared by the process's
    threads: one transaction at a time."""

    def __init__(self, conn: psycopg.Connection[Any], name: str, account: str, host: str) -> None:
        self.name = name
        self.account = account
        self.host = host
        self.where = (
            f"table lsqsync.ledger in {name} (what refusals taught, shared by every runner "
            "using the database; delete the account's rows to forget)"
        )
        self._conn = conn
        self._mutex = threading.Lock()
        self._fallback: MemoryLedger | None = None
        self._lessons: Lessons = {}
        self._rows: set[str] = set()  # the buckets whose rows the last transaction found
        self._pipeline = psycopg.Pipeline.is_supported()

    @classmethod
    def open(
        cls, url: str, account: str, host: str, *, stall_timeout: float = STALL_TIMEOUT
    ) -> PostgresLedger | None:
        """The ledger of ``account`` in the database at ``url``; None when there is none yet
        (nothing was applied with this lsqsync: a read-only command creates nothing) or it
        cannot be used, with a warning then."""
        name = shown_url(url)
        try:
            conn = connect(url, name, read_only=False)
        except StateError as e:
            _warn(name, str(e).removeprefix(f"{name}: "))
            return None
        ledger = cls(conn, name, account, host)
        try:
            if not ledger._ready(stall_timeout):
                conn.close()
                return None
        except psycopg.Error as e:
            conn.close()
            _warn(name, reason_of(e))
            return None
        return ledger

    def _ready(self, stall_timeout: float) -> bool:
        conn = self._conn
        try:
            version = conn.execute("SELECT version FROM lsqsync.meta").fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            version = None
        if version is None or not LEDGER_VERSION <= version[0] <= len(SHARED_MIGRATIONS):
            # no state yet, or one an older lsqsync made (the first apply with this one brings
            # it up to date), or a newer one (which the state itself refuses, saying why)
            log.info("lsq: %s has no rate-limit ledger this lsqsync can use", self.name)
            return False
        stall = round(stall_timeout * 1000)
        conn.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', %s, false), "
            "set_config('lock_timeout', %s, false), set_config('synchronous_commit', 'off', false)",
            (f"{stall}ms", f"{2 * stall}ms"),
        )
        conn.execute(_ENSURE, (self.account, self.host, ["account", "bulk"]))
        self._rows = {"account", "bulk"}
        self._lessons = _lessons(conn.execute(_LESSONS, (self.account,)).fetchall())
        return True

    def __repr__(self) -> str:
        return f"PostgresLedger({self.name!r})"

    @property
    def shared(self) -> bool:
        """False once the database could not be used and the process paces itself alone."""
        return self._fallback is None

    # -- Ledger ----------------------------------------------------------------------------

    def grant(self, windows: Windows) -> float:
        with self._mutex:
            if self._fallback is not None:
                return self._fallback.grant(windows)
            try:
                return self._grant(windows)
            except psycopg.Error as e:
                return self._give_up(e).grant(windows)

    def hold(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._mutex:
            if self._fallback is not None:
                self._fallback.hold(seconds)
                return
            try:
                self._conn.execute(_HOLD, (min(seconds, MAX_HOLD), self.account))
            except psycopg.Error as e:
                self._give_up(e).hold(seconds)

    def lessons(self) -> Lessons:
        fallback = self._fallback
        return self._lessons if fallback is None else fallback.lessons()

    def learn(self, bucket: str, lesson: Lesson) -> None:
        with self._mutex:
            if self._fallback is None:
                try:
                    self._conn.execute(
                        _LEARN,
                        (self.account, bucket, self.host, lesson.calls, lesson.per_seconds,
                         lesson.learned, lesson.evidence[:_MAX_EVIDENCE]),
                    )  # fmt: skip
                    self._lessons = {**self._lessons, bucket: lesson}
                    return
                except psycopg.Error as e:
                    self._give_up(e)
            assert self._fallback is not None
            self._fallback.learn(bucket, lesson)

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._conn.close()  # the server rolls back whatever was open

    # -- inside the mutex ------------------------------------------------------------------

    def _grant(self, windows: Windows) -> float:
        """One transaction: lock the account's rows, decide, record (if granted)."""
        conn = self._conn
        asked = max((w.seconds for ws in windows.values() for w in ws), default=0.0)
        batched: AbstractContextManager[psycopg.Pipeline | None] = (
            conn.pipeline() if self._pipeline else contextlib.nullcontext()
        )
        with batched as pipeline, conn.transaction():
            if not self._rows.issuperset(windows):  # a bucket new to the account
                conn.execute(_ENSURE, (self.account, self.host, sorted(windows)))
            cursor = conn.execute(_LOCK, (self.account,))
            clock = conn.execute(_NOW)
            if pipeline is not None:
                # a Sync, not only a flush: the server then sees the transaction wait for its
                # client, and cuts off one that stalls (idle_in_transaction_session_timeout)
                pipeline.sync()
            rows = cursor.fetchall()
            (now,) = clock.fetchone() or (0.0,)
            self._rows = {r[0] for r in rows}
            if not self._rows.issuperset(windows):
                return _AGAIN  # rows deleted meanwhile: make them again first
            keep = max([asked, *(float(r[2]) for r in rows)])
            grants = {
                r[0]: sorted(t for t in r[1] if now - keep < t <= now + _FUTURE) for r in rows
            }
            hold_until = max(min(float(r[3]), now + MAX_HOLD) for r in rows)
            wait = seconds_to_wait(grants, hold_until, windows, now)
            if wait == 0.0:
                for bucket in sorted(windows):
                    kept = grants[bucket][-(MAX_GRANTS - 1) :]
                    conn.execute(_RECORD, (kept, keep, self.account, bucket))
        found = _lessons((r[0], *r[4:8]) for r in rows)
        if found != self._lessons:
            self._lessons = found  # a new mapping: the limiter adopts what is new in it
        return wait

    def _give_up(self, error: psycopg.Error) -> MemoryLedger:
        log.warning(
            "lsq: the shared rate-limit ledger in %s cannot be used (%s); this process paces "
            "itself alone, so other runners using the account may meet refusals",
            self.name,
            reason_of(error),
        )
        self._fallback = MemoryLedger()
        for bucket, lesson in self._lessons.items():
            self._fallback.learn(bucket, lesson)
        with contextlib.suppress(psycopg.Error):
            self._conn.close()
        return self._fallback


def _warn(name: str, reason: str) -> None:
    log.warning(
        "lsq: the shared rate-limit ledger in %s cannot be used (%s); this process shares the "
        "account's budget only with lsqsync processes on this machine",
        name,
        reason,
    )


def _lessons(rows: Iterable[tuple[Any, ...]]) -> dict[str, Lesson]:
    """The lessons stored in (bucket, calls, per_seconds, learned, evidence) rows; a row with
    none, or with one that is not a limit, teaches nothing."""
    found: dict[str, Lesson] = {}
    for bucket, calls, per_seconds, learned, evidence in rows:
        if calls is None or per_seconds is None or not math.isfinite(per_seconds):
            continue
        with contextlib.suppress(ValueError):
            found[bucket] = Lesson(int(calls), float(per_seconds), learned or "", evidence or "")
    return found
