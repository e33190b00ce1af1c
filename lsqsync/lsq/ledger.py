"""Where the rate limiter records its grants: the ledger of every call made to one account, and
of what the account's refusals taught about its limit.

The account's limit covers every call of every lsqsync process (and every other integration)
using the account, so the limiter's memory of recent calls must be shared too. A ``Ledger`` is
that memory: one small transaction per grant checks every window the call counts against and,
if each has room, records the call in all of them at once. It also keeps the limits refusals
named (``Lesson``), so that every user of the ledger paces to what any of them learned.

- ``MemoryLedger``: one process's threads (the limiter's default, and tests);
- ``accounts.LocalLedger``: every process on this machine — the grants in a ``FileLedger`` (a
  JSON file in the user cache directory under a file lock: ``flock`` on POSIX, released by the
  kernel when a process dies, even by ``kill -9`` while holding it; the file is replaced
  atomically, so a process killed while writing leaves the previous version, never half a
  file), the lessons in ``accounts.json`` beside it;
- ``lsqsync.state.ledger.PostgresLedger``: every runner on every machine using one PostgreSQL
  state database, when the state is there.

The limiter knows only the protocol: it never learns which one it has.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import filelock

log = logging.getLogger(__name__)

# Below this a computed wait is float noise: sleeping it could not move a coarse clock.
EPSILON = 1e-9
# Grants kept per bucket: enough for the largest limit lsqsync.yml accepts (1,000 calls).
MAX_GRANTS = 1000
# A hold longer than this (a clock that jumped, a corrupt file) is not honoured.
MAX_HOLD = 300.0
# How long a process waits for another's ledger transaction before pacing itself alone (a
# transaction takes well under a millisecond; only a stopped process holds the lock longer).
LOCK_TIMEOUT = 10.0


@dataclass(frozen=True)
class Window:
    """At most ``calls`` grants whose time lies within the last ``seconds``."""

    calls: int
    seconds: float


# bucket name → the windows a call drawing from that bucket must fit
Windows = Mapping[str, Sequence[Window]]


@dataclass(frozen=True)
class Lesson:
    """A limit one of the account's refusals named — at most ``calls`` calls in any
    ``per_seconds`` — with when it was learned (a UTC stamp) and what the refusal said."""

    calls: int
    per_seconds: float
    learned: str
    evidence: str

    def __post_init__(self) -> None:
        if self.calls < 1 or not (0 < self.per_seconds < math.inf):
            raise ValueError(f"not a limit: {self.calls} calls per {self.per_seconds} s")


# bucket name → the last limit refusals named for it
Lessons = Mapping[str, Lesson]


class Ledger(Protocol):
    """The shared record of grants, per bucket (``account``, ``bulk``), and of the limits the
    account's refusals taught. ``where`` tells people where the lessons are kept and how to
    forget them (``lsqsync whoami`` shows it)."""

    where: str

    def grant(self, windows: Windows) -> float:
        """One transaction: if no hold is in force and each named bucket has room in each of its
        windows, record a grant now in every one of them and return 0; otherwise record nothing
        and return the seconds to wait before asking again."""
        ...

    def hold(self, seconds: float) -> None:
        """Hold every grant, of every user of the ledger, until ``seconds`` from now (never
        shortens a longer hold)."""
        ...

    def lessons(self) -> Lessons:
        """What refusals taught any user of the ledger, per bucket, as the ledger last saw it
        (at its last transaction, or now: cheap enough to ask before every grant). The same
        mapping is returned until something changes."""
        ...

    def learn(self, bucket: str, lesson: Lesson) -> None:
        """Remember ``lesson`` for every user of the ledger, in this run and the next ones (best
        effort: a lesson lost costs a refusal)."""
        ...

    def close(self) -> None:
        """Let go of what the ledger holds open (a connection); it is not used again."""
        ...


def seconds_to_wait(
    grants: Mapping[str, Sequence[float]], hold_until: float, windows: Windows, now: float
) -> float:
    """Seconds until a grant in every bucket of ``windows`` fits (0: now). ``grants`` are the
    buckets' grant times, oldest first."""
    wait = hold_until - now
    for bucket, limits in windows.items():
        times = grants.get(bucket, ())
        for w in limits:
            if len(times) >= w.calls:
                # the grant that must leave the window before another fits
                wait = max(wait, times[len(times) - w.calls] + w.seconds - now)
    return wait if wait > EPSILON else 0.0


class MemoryLedger:
    """The grants and lessons of one process, shared by its threads."""

    where = "this process's memory (forgotten when it ends)"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._grants: dict[str, deque[float]] = {}
        self._hold_until = float("-inf")
        self._lessons: Lessons = {}

    def grant(self, windows: Windows) -> float:
        with self._lock:
            now = self._clock()
            wait = seconds_to_wait(self._grants, self._hold_until, windows, now)
            if wait == 0.0:
                for bucket in windows:
                    self._grants.setdefault(bucket, deque(maxlen=MAX_GRANTS)).append(now)
            return wait

    def hold(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)

    def lessons(self) -> Lessons:
        return self._lessons

    def learn(self, bucket: str, lesson: Lesson) -> None:
        with self._lock:
            self._lessons = {**self._lessons, bucket: lesson}  # a new mapping: a change shows

    def close(self) -> None:
        pass


class FileLedger:
    """The grants of every process on this machine, for every account, in one JSON file (the
    grants half of ``accounts.LocalLedger``)::

        {"version": 1, "accounts": {ACCOUNT: {"hold_until": T, "keep": S,
                                              "buckets": {"account": [T, …], "bulk": […]}}}}

    ``ACCOUNT`` is the account's fingerprint (never a key). Times are wall-clock seconds
    (``time.time``): the processes share no other clock. Grants older than ``keep`` (the longest
    window any user asked about) are dropped, and an account with none left with them. If the
    file cannot be used (a read-only cache directory, a lock held for ``lock_timeout`` by a
    stopped process), the process warns once and paces itself alone for the rest of the run.
    """

    def __init__(
        self,
        path: Path,
        account: str,
        *,
        clock: Callable[[], float] = time.time,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        self.path = path
        self.account = account
        self._clock = clock
        self._mutex = threading.Lock()  # one thread of this process at a time in the file
        self._file_lock = filelock.FileLock(
            str(path) + ".lock", timeout=lock_timeout, mode=0o600, thread_local=False,
            poll_interval=0.002,
        )  # fmt: skip
        self._fallback: MemoryLedger | None = None

    def __repr__(self) -> str:
        return f"FileLedger({str(self.path)!r})"

    @property
    def shared(self) -> bool:
        """False once the file could not be used and the process paces itself alone."""
        return self._fallback is None

    def grant(self, windows: Windows) -> float:
        with self._mutex:
            if self._fallback is not None:
                return self._fallback.grant(windows)
            try:
                return self._transaction(windows, 0.0)
            except (OSError, filelock.Timeout) as e:
                return self._give_up(e).grant(windows)

    def hold(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._mutex:
            if self._fallback is not None:
                self._fallback.hold(seconds)
                return
            try:
                self._transaction({}, seconds)
            except (OSError, filelock.Timeout) as e:
                self._give_up(e).hold(seconds)

    def _give_up(self, error: Exception) -> MemoryLedger:
        why = (
            "its lock is held by a process that does not let go"
            if isinstance(error, filelock.Timeout)
            else f"{type(error).__name__}: {error}"
        )
        log.warning(
            "lsq: the shared rate-limit ledger %s cannot be used (%s); this process paces "
            "itself alone, so other lsqsync processes using the account may meet refusals",
            self.path,
            why,
        )
        self._fallback = MemoryLedger(self._clock)
        return self._fallback

    def _transaction(self, windows: Windows, hold: float) -> float:
        """Under the file lock: read, decide, and (if anything changed) replace the file."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._file_lock:
            now = self._clock()
            accounts = self._read(now)
            mine = accounts.get(self.account, _EMPTY)
            keep = max([mine["keep"], *(w.seconds for ws in windows.values() for w in ws)])
            grants = {b: [t for t in ts if now - t < keep] for b, ts in mine["buckets"].items()}
            hold_until = mine["hold_until"]
            wait = 0.0
            if windows:
                wait = seconds_to_wait(grants, hold_until, windows, now)
                if wait == 0.0:
                    for bucket in windows:
                        grants.setdefault(bucket, []).append(now)
            if hold > 0:
                hold_until = max(hold_until, now + min(hold, MAX_HOLD))
            if wait == 0.0 or hold > 0:
                accounts[self.account] = {
                    "hold_until": hold_until,
                    "keep": keep,
                    "buckets": {b: ts[-MAX_GRANTS:] for b, ts in grants.items() if ts},
                }
                self._write(accounts, now)
            return wait

    def _read(self, now: float) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError):
            log.info("lsq: ledger %s unreadable; starting it afresh", self.path)
            return {}
        if not isinstance(data, dict) or data.get("version") != 1:
            return {}
        accounts = data.get("accounts")
        if not isinstance(accounts, dict):
            return {}
        return {
            str(name): _account(entry, now)
            for name, entry in accounts.items()
            if isinstance(entry, dict)
        }

    def _write(self, accounts: dict[str, dict[str, Any]], now: float) -> None:
        live = {
            name: entry
            for name, entry in accounts.items()
            # an account none of whose grants is still in a window, and with no hold, is gone
            if entry["hold_until"] > now
            or any(ts and now - ts[-1] < entry["keep"] for ts in entry["buckets"].values())
        }
        temporary = self.path.with_name(self.path.name + ".tmp")  # only the lock holder writes
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": 1, "accounts": live}, f, separators=(",", ":"))
        os.replace(temporary, self.path)


_EMPTY: dict[str, Any] = {"hold_until": 0.0, "keep": 0.0, "buckets": {}}


def _account(entry: dict[str, Any], now: float) -> dict[str, Any]:
    """One account's entry as stored, checked: anything implausible (a time in the future, from
    a clock set back; a hold reaching further than any lsqsync sets) is dropped."""
    buckets = entry.get("buckets")
    hold = _number(entry.get("hold_until"))
    return {
        "hold_until": hold if hold <= now + MAX_HOLD else 0.0,
        "keep": min(_number(entry.get("keep")), 3600.0),
        "buckets": {
            str(name): sorted(t for t in map(_number, times) if 0 < t <= now + 1.0)
            for name, times in (buckets.items() if isinstance(buckets, dict) else ())
            if isinstance(times, list)
        },
    }


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return float(value)
