"""The state's tables and their migrations, and what statements run on.

Both backends hold the same tables (the SQLite file, and each PostgreSQL workspace), written
once here in SQL that both understand, and reach the same schema version by the same steps.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

APPLICATION_ID = 0x4C535153  # "LSQS" in the SQLite header: this file is an lsqsync state file
SQLITE_MAGIC = b"SQLite format 3\x00"


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Sql(Protocol):
    """What the state's statements run on: a ``sqlite3`` connection, or the PostgreSQL
    backend's, which takes the same ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...


# -- schema and migrations --------------------------------------------------------------------

Migration = Callable[[Sql, str], None]  # (connection, now as a timestamp)

# The first schema, whole: one statement per table reads as the schema itself. Both backends
# run these statements as they are.
_V1_TABLES = (
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
)


def _v1_tables(db: Sql, now: str) -> None:
    for statement in _V1_TABLES:
        db.execute(statement)
    db.execute("INSERT INTO state VALUES (1, ?, 0, ?)", (str(uuid.uuid4()), now))


def _v1_initial(db: Sql, now: str) -> None:
    _v1_tables(db, now)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def _v1_initial_postgres(db: Sql, now: str) -> None:
    _v1_tables(db, now)
    # Runs are listed in the order they were begun: SQLite's implicit rowid, made explicit.
    db.execute("ALTER TABLE runs ADD COLUMN rowid BIGINT GENERATED ALWAYS AS IDENTITY")


def _v2_current(db: Sql, now: str) -> None:
    # what LeadSquared held when a field was found stale, so that `state show` can say it
    db.execute("ALTER TABLE results ADD COLUMN current TEXT")


def _v3_not_sent(db: Sql, now: str) -> None:
    # a field whose call LeadSquared kept refusing for the rate limit: 'not_sent'. SQLite cannot
    # change a CHECK constraint in place, so the table is rebuilt (nothing refers to it).
    db.execute(
        """CREATE TABLE results_v3 (
            run_id TEXT NOT NULL REFERENCES runs (id),
            opportunity_id TEXT NOT NULL,
            field TEXT NOT NULL,
            opportunity_type INTEGER NOT NULL,
            before TEXT,
            after TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('applied', 'failed', 'stale', 'already_current', 'unknown', 'not_sent')),
            message TEXT,
            rule TEXT NOT NULL,
            batch INTEGER,
            recorded TEXT NOT NULL,
            current TEXT,
            PRIMARY KEY (run_id, opportunity_id, field),
            FOREIGN KEY (run_id, batch) REFERENCES batches (run_id, batch)
        )"""
    )
    columns = "run_id, opportunity_id, field, opportunity_type, before, after, status, message, "
    columns += "rule, batch, recorded, current"
    db.execute(f"INSERT INTO results_v3 ({columns}) SELECT {columns} FROM results")
    db.execute("DROP TABLE results")
    db.execute("ALTER TABLE results_v3 RENAME TO results")


def _v3_not_sent_postgres(db: Sql, now: str) -> None:
    # PostgreSQL changes the CHECK in place (an inline one is named table_column_check)
    db.execute("ALTER TABLE results DROP CONSTRAINT results_status_check")
    db.execute(
        "ALTER TABLE results ADD CONSTRAINT results_status_check CHECK (status IN "
        "('applied', 'failed', 'stale', 'already_current', 'unknown', 'not_sent'))"
    )


def _v4_verified(db: Sql, now: str) -> None:
    # what reading an applied field back found. Both backends add a column with its CHECK in
    # place (SQLite does not check the existing rows, which are all NULL).
    db.execute(
        "ALTER TABLE results ADD COLUMN verified TEXT "
        "CHECK (verified IN ('confirmed', 'normalised', 'not_persisted'))"
    )


def _v5_field_labels(db: Sql, now: str) -> None:
    # the display name of each field a run names, as the plan it applied had it from the
    # metadata: `state show` says "Stage (mx_Custom_2)" without the network. Older runs have
    # none (state show falls back to the types snapshot, then to the schema name).
    db.execute(
        """CREATE TABLE field_labels (
            run_id TEXT NOT NULL REFERENCES runs (id),
            opportunity_type INTEGER NOT NULL,
            field TEXT NOT NULL,
            label TEXT NOT NULL,
            PRIMARY KEY (run_id, opportunity_type, field)
        )"""
    )


# Applied in order, each in its own transaction with the new version: schema version N is
# MIGRATIONS[:N]. A new version is one more function appended to both tuples.
MIGRATIONS: tuple[Migration, ...] = (
    _v1_initial,
    _v2_current,
    _v3_not_sent,
    _v4_verified,
    _v5_field_labels,
)
POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    _v1_initial_postgres,
    _v2_current,
    _v3_not_sent_postgres,
    _v4_verified,
    _v5_field_labels,
)
SCHEMA_VERSION = len(MIGRATIONS)

# What `lsqsync state migrate` copies and compares, in an order foreign keys allow: each table's
# columns (at SCHEMA_VERSION), and the key that orders its rows (runs: the order they were
# begun). The lock is not copied: it belongs to a process working on the source.
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "state": (("lineage", "serial", "created"), ("one",)),
    "runs": (
        (
            "id",
            "who",
            "location",
            "plan_digest",
            "started",
            "finished",
            "outcome",
            "overrides",
            "serial",
        ),
        ("rowid",),
    ),
    "batches": (
        (
            "run_id",
            "batch",
            "opportunity_ids",
            "payload_sha256",
            "status",
            "sent",
            "finished",
            "message",
            "resolved_by",
        ),
        ("run_id", "batch"),
    ),
    "results": (
        (
            "run_id",
            "opportunity_id",
            "field",
            "opportunity_type",
            "before",
            "after",
            "status",
            "message",
            "rule",
            "batch",
            "recorded",
            "current",
            "verified",
        ),
        ("run_id", "opportunity_id", "field"),
    ),
    "last_written": (
        ("opportunity_id", "field", "opportunity_type", "value", "run_id", "written"),
        ("opportunity_id", "field"),
    ),
    "field_labels": (
        ("run_id", "opportunity_type", "field", "label"),
        ("run_id", "opportunity_type", "field"),
    ),
}
# columns an older schema version lacks
ADDED_IN = {("results", "current"): 2, ("results", "verified"): 4}
# tables an older schema version lacks (read as empty)
TABLE_ADDED_IN = {"field_labels": 5}
