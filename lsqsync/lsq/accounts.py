"""What lsqsync remembers about each account between runs, in the user cache directory — the
``LocalLedger`` of every lsqsync process on this machine:

- ``accounts.json``: the limits the account's refusals named (per bucket, with when and what
  the refusal said), so that the next run starts at the right pace;
- ``ledger.json``: the recent calls (``ledger.FileLedger``).

When the state is in a PostgreSQL database, the ledger is there instead
(``lsqsync.state.ledger``), and this folder is not used.

An account is known by its host and a fingerprint of its access key: a keyed hash, truncated,
from which the key cannot be recovered — never the key. Both files are mode 0600 in a 0700
folder. ``LSQSYNC_CACHE_DIR`` moves the folder (tests point it at a temporary one); deleting
the folder forgets everything, and is always safe.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import filelock
import platformdirs

from lsqsync.clock import stamp, utcnow
from lsqsync.lsq.ledger import LOCK_TIMEOUT, FileLedger, Ledger, Lesson, Lessons, Windows
from lsqsync.lsq.ratelimit import BUCKETS, Budget, Limit, RateLimiter
from lsqsync.lsq.transport import normalise_host

log = logging.getLogger(__name__)

ENV_CACHE_DIR = "LSQSYNC_CACHE_DIR"
ACCOUNTS_FILE = "accounts.json"
LEDGER_FILE = "ledger.json"
_FINGERPRINT_KEY = b"lsqsync account fingerprint v1"
_MAX_ACCOUNTS = 100  # the emulator is a new account on every port: forget the oldest
_MAX_EVIDENCE = 200


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``LSQSYNC_CACHE_DIR``, else the platform's user cache directory for lsqsync."""
    env = os.environ if env is None else env
    chosen = env.get(ENV_CACHE_DIR, "").strip()
    return Path(chosen) if chosen else Path(platformdirs.user_cache_dir("lsqsync", False))


def fingerprint(host: str, access_key: str) -> str:
    """The account's name in the cache: host and access key, hashed with a fixed key (so that
    runners on several machines name the account alike) and truncated to 64 bits. Access keys
    are long random strings: the fingerprint tells nothing about the key."""
    message = f"{normalise_host(host)}\n{access_key.strip()}".encode()
    return hmac.new(_FINGERPRINT_KEY, message, hashlib.sha256).hexdigest()[:16]


# Given an account (its fingerprint) and its host: the ledger shared beyond this machine, or None
# for this machine's (`LocalLedger`).
SharedLedger = Callable[[str, str], Ledger | None]


class AccountCache:
    """``accounts.json``: per account fingerprint, its host and the limits learned, per bucket.
    Every change is a locked read-modify-write that replaces the file whole."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / ACCOUNTS_FILE
        self._lock = filelock.FileLock(
            str(self.path) + ".lock", timeout=LOCK_TIMEOUT, mode=0o600, thread_local=False
        )

    def get(self, account: str) -> dict[str, Lesson]:
        entry = self._read().get(account)
        if not isinstance(entry, dict):
            return {}
        found = {b: _lesson(entry.get(b)) for b in BUCKETS}
        return {b: r for b, r in found.items() if r is not None}

    def put(self, account: str, host: str, bucket: str, learned: Lesson) -> None:
        """Remember a limit (best effort: a cache that cannot be written only costs the next
        run a refusal)."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self._lock:
                accounts = self._read()
                entry = accounts.pop(account, None)
                entry = entry if isinstance(entry, dict) else {}
                entry.update(host=host, used=stamp(utcnow()))
                entry[bucket] = {
                    "calls": learned.calls,
                    "per_seconds": learned.per_seconds,
                    "learned": learned.learned,
                    "evidence": learned.evidence[:_MAX_EVIDENCE],
                }
                accounts[account] = entry  # the most recently used last
                kept = dict(list(accounts.items())[-_MAX_ACCOUNTS:])
                self._write({"version": 1, "accounts": kept})
        except (OSError, filelock.Timeout) as e:
            log.warning("lsq: cannot remember the learned rate limit in %s (%s)", self.path, e)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, UnicodeDecodeError) as e:
            log.info("lsq: ignoring the unreadable account cache %s (%s)", self.path, e)
            return {}
        accounts = data.get("accounts") if isinstance(data, dict) else None
        return dict(accounts) if isinstance(accounts, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")  # only the lock holder writes
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(temporary, self.path)

    def changed(self) -> int | None:
        """A token that changes whenever the file does (None: there is none)."""
        try:
            found = self.path.stat()
        except OSError:
            return None
        return hash((found.st_mtime_ns, found.st_size, found.st_ino))


def _lesson(stored: Any) -> Lesson | None:
    if not isinstance(stored, dict):
        return None
    try:
        return Lesson(
            int(stored["calls"]),
            float(stored["per_seconds"]),
            str(stored.get("learned", "")),
            str(stored.get("evidence", "")),
        )
    except (KeyError, TypeError, ValueError):  # "calls": "many", or a limit of 0
        return None


class LocalLedger:
    """The ledger of every lsqsync process on this machine using one account: its grants in
    ``ledger.json`` (``FileLedger``), its lessons in ``accounts.json``, re-read when the file
    changes (one ``stat`` per grant)."""

    def __init__(self, directory: Path, account: str, host: str) -> None:
        self.where = f"{directory / ACCOUNTS_FILE} (what refusals taught; delete it to forget)"
        self.account = account
        self.host = host
        self.grants = FileLedger(directory / LEDGER_FILE, account)
        self.cache = AccountCache(directory)
        self._version: int | None = None
        self._lessons: Lessons = {}

    def grant(self, windows: Windows) -> float:
        return self.grants.grant(windows)

    def hold(self, seconds: float) -> None:
        self.grants.hold(seconds)

    def lessons(self) -> Lessons:
        version = self.cache.changed()
        if version != self._version:
            self._version = version
            found = self.cache.get(self.account)
            if found != self._lessons:
                self._lessons = found
        return self._lessons

    def learn(self, bucket: str, lesson: Lesson) -> None:
        self.cache.put(self.account, self.host, bucket, lesson)

    def close(self) -> None:
        pass


def account_limiter(
    host: str,
    access_key: str,
    *,
    configured: Limit | None,
    configured_bulk: Limit | None = None,
    directory: Path | None = None,
    shared: SharedLedger | None = None,
) -> RateLimiter:
    """The process's limiter for the account behind ``host`` and ``access_key``.

    The account bucket starts at the configured limit (it wins, and is never raised), else at
    the limit the account's refusals named in earlier runs, else at the documented top tier;
    the bulk bucket at the configured one, else the remembered one, else none. What a refusal
    teaches is remembered at once, and every grant goes through the ledger shared with every
    other lsqsync process using the account: ``shared``'s, else this machine's (in
    ``directory``, by default the cache folder).
    """
    account = fingerprint(host, access_key)
    shown_host = normalise_host(host)
    ledger = shared(account, shown_host) if shared is not None else None
    if ledger is None:
        ledger = LocalLedger(directory or cache_dir(), account, shown_host)
    remembered = ledger.lessons()
    if configured is not None:
        start = Budget.configured(configured)
    elif "account" in remembered:
        start = Budget.lesson(remembered["account"])
    else:
        start = Budget.assumed()
    bulk: Budget | None = None
    if configured_bulk is not None:
        bulk = Budget.configured(configured_bulk, "rate_limit.bulk")
    elif "bulk" in remembered:
        bulk = Budget.lesson(remembered["bulk"])
    return RateLimiter(
        start.limit.calls,
        start.limit.per_seconds,
        kind=start.kind,
        origin=start.origin,
        bulk=bulk,
        ledger=ledger,
    )
