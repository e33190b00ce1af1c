"""``lsqsync state migrate --to URL|PATH``: copy a project's state to another place — a SQLite
file to a PostgreSQL workspace, or back — with every run, journal row, field result and
last-written value, its lineage and its serial; then check that the copy holds the same rows
(counts, and a checksum of every table), and leave the source as it was (it is opened
read-only)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from lsqsync.config import (
    PASSWORD_SOURCES,
    Config,
    StateLocation,
    shown_url,
    state_location,
    url_password,
)
from lsqsync.display import plural
from lsqsync.errors import ConfigError, StateError
from lsqsync.state.location import open_location
from lsqsync.state.schema import TABLES
from lsqsync.state.store import StateFile

Fingerprint = dict[str, tuple[int, str]]  # table → (rows, checksum)
_LABELS = {
    "runs": ("run", "runs"),
    "batches": ("batch", "batches"),
    "results": ("field result", "field results"),
    "last_written": ("last-written value", "last-written values"),
}


@dataclass(frozen=True)
class Migrated:
    source: str
    target: StateLocation
    lineage: str
    serial: int
    rows: dict[str, int]  # by table

    def text(self) -> str:
        counts = ", ".join(plural(self.rows[t], *label) for t, label in _LABELS.items())
        if self.target.url is not None:
            url, workspace = shown_url(self.target.url), self.target.workspace
            setting = f"state: {{url: {json.dumps(url)}, workspace: {workspace}}}"
        else:
            setting = f"state: {json.dumps(self.target.path)}"
        return (
            f"Copied the state of {self.source} to {self.target.describe()}: lineage "
            f"{self.lineage}, serial {self.serial}; {counts}. Counts and checksums match; the "
            "source is unchanged.\n"
            f"To use it, set in lsqsync.yml:  {setting}\n"
        )


def migrate(config: Config, to: str, workspace: str | None = None) -> Migrated:
    """Copy the state of ``config`` to ``to`` (a postgresql:// URL, or a SQLite file relative
    to the working folder), which must not hold a state yet."""
    source = state_location(config)
    target = StateLocation.parse(to, workspace or source.workspace)
    if target.url is not None and url_password(target.url):
        raise ConfigError(
            "--to holds a password: command lines end up in shell histories and process "
            f"lists; remove it and set {PASSWORD_SOURCES}"
        )
    with open_location(source, config.root, read_only=True) as src:
        lock = src.current_lock()
        if lock is not None:
            raise StateError(
                f"{src.name} is locked by {lock.holder} (pid {lock.pid} on {lock.host}) for "
                f"{lock.operation} since {lock.since}: migrate a state nobody is writing to "
                f"(if that process is gone: lsqsync state unlock {lock.id})"
            )
        expected = fingerprint(src)
        with open_location(target) as dst:
            taken = dst.acquire_lock("state migrate")
            try:
                _check_empty(dst)
                dst.load((table, src.rows(table)) for table in TABLES)
            finally:
                dst.release_lock(taken.id)
        with open_location(target, read_only=True) as copy:
            found = fingerprint(copy)
        if found != expected:
            differ = sorted(t for t in TABLES if found[t] != expected[t])
            raise StateError(
                f"{copy.name}: the copy differs from {src.name} in {', '.join(differ)}; do not "
                "use it"
            )
        return Migrated(
            src.name, target, src.lineage, src.serial, {t: n for t, (n, _) in expected.items()}
        )


def fingerprint(st: StateFile) -> Fingerprint:
    """Each table's row count and checksum. Rows are summed as numbers, so the checksum does
    not depend on the order a database sorts text in; the order of runs is part of the state,
    and part of their rows' sums."""
    out: Fingerprint = {}
    for table in TABLES:
        count = total = 0
        for count, row in enumerate(st.rows(table), start=1):
            item = [count, *row] if table == "runs" else list(row)
            digest = hashlib.sha256(json.dumps(item).encode()).digest()
            total = (total + int.from_bytes(digest, "big")) % 2**256
        out[table] = (count, f"{total:064x}")
    return out


def _check_empty(st: StateFile) -> None:
    runs, written = len(st.runs()), len(st.last_written_values())
    if runs or written or st.serial:
        raise StateError(
            f"{st.name} already holds a state ({plural(runs, 'run')}, serial {st.serial}): "
            "migrate copies into a new state only"
        )
