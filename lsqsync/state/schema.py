"""The state file's SQLite schema and its migrations."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable

APPLICATION_ID = 0x4C535153  # "LSQS" in the SQLite header: this file is an lsqsync state file
SQLITE_MAGIC = b"SQLite format 3\x00"


# -- schema and migrations --------------------------------------------------------------------

Migration = Callable[[sqlite3.Connection, str], None]  # (connection, now as a timestamp)


def _v1_initial(db: sqlite3.Connection, now: str) -> None:
    """The first schema, whole: one statement per table reads as the schema itself."""
    statements = [
        """CREATE TABLE state (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            lineage TEXT NOT NULL,
            serial INTEGER NOT NULL CHECK (serial >= 0),
            created TEXT NOT NULL
        )""",
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            who TEXT NOT NULL,
            location TEXT NOT NULL,
            plan_digest TEXT NOT NULL,
            started TEXT NOT NULL,
            finished TEXT,
            outcome TEXT NOT NULL CHECK (outcome IN
                ('running', 'succeeded', 'partial', 'failed', 'interrupted')),
            overrides TEXT NOT NULL,
            serial INTEGER
        )""",
        "CREATE INDEX runs_by_digest ON runs (plan_digest)",
        """CREATE TABLE batches (
            run_id TEXT NOT NULL REFERENCES runs (id),
            batch INTEGER NOT NULL,
            opportunity_ids TEXT NOT NULL,
            payload_sha256 TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('sending', 'done', 'failed', 'unknown')),
            sent TEXT NOT NULL,
            finished TEXT,
            message TEXT,
            resolved_by TEXT REFERENCES runs (id),
            PRIMARY KEY (run_id, batch)
        )""",
        """CREATE TABLE results (
            run_id TEXT NOT NULL REFERENCES runs (id),
            opportunity_id TEXT NOT NULL,
            field TEXT NOT NULL,
            opportunity_type INTEGER NOT NULL,
            before TEXT,
            after TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('applied', 'failed', 'stale', 'already_current', 'unknown')),
            message TEXT,
            rule TEXT NOT NULL,
            batch INTEGER,
            recorded TEXT NOT NULL,
            PRIMARY KEY (run_id, opportunity_id, field),
            FOREIGN KEY (run_id, batch) REFERENCES batches (run_id, batch)
        )""",
        """CREATE TABLE last_written (
            opportunity_id TEXT NOT NULL,
            field TEXT NOT NULL,
            opportunity_type INTEGER NOT NULL,
            value TEXT NOT NULL,
            run_id TEXT NOT NULL REFERENCES runs (id),
            written TEXT NOT NULL,
            PRIMARY KEY (opportunity_id, field)
        )""",
        """CREATE TABLE lock (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            id TEXT NOT NULL,
            holder TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            run_id TEXT,
            operation TEXT NOT NULL,
            since TEXT NOT NULL,
            heartbeat TEXT NOT NULL
        )""",
    ]
    for statement in statements:
        db.execute(statement)
    db.execute("INSERT INTO state VALUES (1, ?, 0, ?)", (str(uuid.uuid4()), now))
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def _v2_current(db: sqlite3.Connection, now: str) -> None:
    # what LeadSquared held when a field was found stale, so that `state show` can say it
    db.execute("ALTER TABLE results ADD COLUMN current TEXT")


# Applied in order, each in its own transaction with the new user_version: schema version N is
# MIGRATIONS[:N]. A new version is one more function appended here.
MIGRATIONS: tuple[Migration, ...] = (_v1_initial, _v2_current)
SCHEMA_VERSION = len(MIGRATIONS)
