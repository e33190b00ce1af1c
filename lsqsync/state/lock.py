"""The lock every writing command takes on the state.

One row in ``lock``. Taking it is a write transaction (serialised with every other writer, so two
processes cannot both see "free"): read the row, insert ours if there is none or if the holder is
stale (the backend knows it is gone — on SQLite, its process is gone on this host; on
PostgreSQL, its connection is — or it has not been seen for longer than ``expiry``), and commit.
Otherwise poll until ``timeout``. Every batch refreshes the lock's
heartbeat and checks, in the transaction that journals it, that the lock is still ours: a process
whose lock was taken over stops before sending anything more. Taking the lock also marks runs left
``running`` by a killed process as ``interrupted``.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from lsqsync.clock import parse_stamp, stamp
from lsqsync.errors import StateError, StateLocked
from lsqsync.state.database import Database
from lsqsync.state.records import Lock
from lsqsync.state.schema import Sql

logger = logging.getLogger(__name__)


def default_who() -> str:
    """``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError, ImportError):  # no login name and no passwd entry (containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Locking(Database):
    """A state with its lock: taken by `acquire_lock`, checked before every write that
    needs it, released by `close`."""

    _lock_id: str | None = None  # the lock this process holds

    def close(self) -> None:
        """Release this process's lock (if it still holds one) and close the state."""
        with self._mutex:
            if self._lock_id is not None:
                try:
                    self.release_lock(self._lock_id)
                except StateError as e:  # the database is gone: so is what it held for us
                    logger.warning("state: lock=%s not released: %s", self._lock_id, e)
            super().close()

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
            raise StateError(f"{self.name}: this process already holds the lock {self._lock_id}")
        start = clock()
        while True:
            taken, holder = self._try_lock(operation, run_id, expiry)
            if taken is not None:
                return taken
            assert holder is not None
            waited = clock() - start
            if waited >= timeout:
                raise StateLocked(_locked_message(self.name, holder, timeout))
            logger.debug("state: lock held by %s (pid %d), waiting", holder.holder, holder.pid)
            sleep(min(poll, timeout - waited))

    def _try_lock(
        self, operation: str, run_id: str | None, expiry: float | None
    ) -> tuple[Lock | None, Lock | None]:
        now = self._now()
        with self._write() as db:
            current = self._current_lock(db)
            if current is not None:
                reason = self._backend.holder_gone(current) or _expired(current, now, expiry)
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
            self._backend.hold(lock.id)
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
        self._backend.let_go(lock_id)
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
                raise StateError(f"{self.name} is not locked")
            if current.id != lock_id:
                raise StateError(
                    f"{self.name}: {lock_id!r} is not the current lock's id; the current lock "
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

    def _current_lock(self, db: Sql) -> Lock | None:
        row = db.execute(
            "SELECT id, holder, host, pid, run_id, operation, since, heartbeat FROM lock"
        ).fetchone()
        return Lock(*row) if row else None

    def _check_lock(self, db: Sql, action: str) -> None:
        if self._lock_id is None:
            raise StateError(f"{self.name}: cannot {action} without the lock (acquire_lock)")
        current = self._current_lock(db)
        if current is None or current.id != self._lock_id:
            by = (
                f"{current.holder} (pid {current.pid} on {current.host}, lock id {current.id})"
                if current
                else "nobody (it was removed with unlock)"
            )
            raise StateLocked(
                f"{self.name}: this process's lock {self._lock_id} was taken over by {by}; "
                f"stopping before it can {action}"
            )


def _expired(lock: Lock, now: datetime, expiry: float | None) -> str | None:
    """Why ``lock`` may be taken over though its holder may be alive, or None."""
    if expiry is not None:
        try:
            age = (now - parse_stamp(lock.heartbeat)).total_seconds()
        except (TypeError, ValueError):  # lsqsync writes none such: not a holder to wait for
            return f"its heartbeat {lock.heartbeat!r} is not a time lsqsync writes"
        if age > expiry:
            return f"not seen for {age:g}s, more than the lock expiry of {expiry:g}s"
    return None


def _locked_message(name: str, holder: Lock, timeout: float) -> str:
    run = f" (run {holder.run_id})" if holder.run_id else ""
    return (
        f"{name} is locked by {holder.holder} (pid {holder.pid} on {holder.host}) for "
        f"{holder.operation}{run} since {holder.since}; waited {timeout:g}s. Lock id: "
        f"{holder.id}. If that process is gone: lsqsync state unlock {holder.id}"
    )
