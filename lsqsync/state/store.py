"""The state: what lsqsync has done, safe under kill -9, in a SQLite file or a PostgreSQL
workspace (`lsqsync.state.database`: nothing here knows which).

It holds the ``lineage`` (a UUID set when the state is created: a plan names the lineage it was
made against) and the ``serial`` (bumped by every apply run that sends anything); the runs (who,
where, which plan, outcome, overrides used); a journal of batches, written *before* a batch is
sent and updated with its result; the per-field results; the last value lsqsync wrote to each
field of each opportunity (for drift and rollback); and the lock every writing command takes
(`lsqsync.state.lock`).

- **One transaction per step.** A batch is journaled (status ``sending``) in one transaction
  before it is sent; its field results, its ``last_written`` values and its new status are
  written together in one more (`record_batch_result`). So at any instant a batch is either still
  ``sending`` with no results, or finished with all of them.
- **Resume.** A resumed apply is a new run of the same plan digest: `confirmed` gives the fields
  any run of that digest applied or found current (never re-sent), `pending_batches` the batches
  whose answer never came (re-read their records first), and `resolve_batches` records what the
  re-read found and closes them.
- **No secrets.** Nothing here ever receives a key: runs record user@host and a directory or CI
  URL, batches a payload *hash*, results the field values the plan already holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from lsqsync.errors import StateError
from lsqsync.state.database import marks
from lsqsync.state.lock import Locking, default_who
from lsqsync.state.records import (
    CONFIRMED,
    LAST,
    OUTCOMES,
    RESULT_STATUSES,
    VERDICTS,
    Batch,
    Counts,
    FieldResult,
    LastWritten,
    Outcome,
    ResultStatus,
    Run,
    Verification,
)
from lsqsync.state.schema import ADDED_IN, TABLE_ADDED_IN, TABLES, Sql

__all__ = ["StateFile", "default_where", "default_who"]

logger = logging.getLogger(__name__)

_DIGEST = re.compile(r"[0-9a-f]{64}")
PAGE = 1000  # rows read or written at a time when a whole table is copied


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


class StateFile(Locking):
    """An open state: its runs, the journal of their batches, and their field results. Use
    `StateFile.open` for a SQLite file (`lsqsync.state.location.open_state` for a project's
    state, wherever it is); every method is one transaction (or one read), and the object may
    be shared between threads.

    Runs, batches and results stay one class: each write of the journal checks and updates the
    run it belongs to (and the lock) in the same transaction, so splitting them would only spread
    one transaction's rules over several places."""

    # -- runs ------------------------------------------------------------------------------

    def begin_run(
        self,
        plan_digest: str,
        *,
        overrides: Iterable[str] = (),
        who: str | None = None,
        where: str | None = None,
        field_labels: Mapping[int, Mapping[str, str]] | None = None,
    ) -> Run:
        """Record a new run of the plan ``plan_digest`` (needs the lock; the lock then names the
        run). ``who``/``where`` default to this process's user@host and directory or CI job;
        ``field_labels`` (type code → schema name → display name: the plan's) are kept with the
        run, for `state show`."""
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
            _write_field_labels(db, run.id, field_labels or {})
        logger.info("state: run=%s begun plan=%s", run.id, plan_digest)
        return run

    def finish_run(self, run_id: str, outcome: Outcome) -> Run:
        """Set the outcome of a running run (succeeded, partial, failed or interrupted)."""
        if outcome not in OUTCOMES or outcome == "running":
            raise ValueError(f"not a final outcome: {outcome!r}")
        with self._write() as db:
            row = db.execute("SELECT outcome FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StateError(f"{self.name}: no run {run_id}")
            if row[0] != "running":
                raise StateError(f"{self.name}: run {run_id} has already ended ({row[0]})")
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
                raise StateError(f"{self.name}: no runs yet, so there is no last run")
            return latest[0]
        exact = self._runs("SELECT * FROM runs WHERE id = ?", (id_or_prefix,))
        if exact:
            return exact[0]
        # run ids are lower case; SQLite's LIKE ignores ASCII case, PostgreSQL's does not
        escaped = id_or_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = escaped.lower()
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
                f"{self.name}: no run {id_or_prefix!r} (`lsqsync state runs` lists them)"
            )
        raise StateError(
            f"{self.name}: run {id_or_prefix!r} is ambiguous: it starts "
            f"{', '.join(r.id for r in found)}"
        )

    def _runs(self, sql: str, params: Sequence[Any] = ()) -> tuple[Run, ...]:
        rows = self._read(sql, params)
        counts: dict[str, dict[str, int]] = {}
        ids = [row[0] for row in rows]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for run_id, status, n in self._read(
                f"SELECT run_id, status, count(*) FROM results WHERE run_id IN ({marks(chunk)}) "
                "GROUP BY run_id, status",
                chunk,
            ):
                counts.setdefault(run_id, {})[status] = n
            if self._version >= 4:
                for run_id, verdict, n in self._read(
                    "SELECT run_id, verified, count(*) FROM results WHERE run_id IN "
                    f"({marks(chunk)}) AND verified IS NOT NULL GROUP BY run_id, verified",
                    chunk,
                ):
                    counts.setdefault(run_id, {})[verdict] = n
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
                raise StateError(f"{self.name}: no run {run_id}")
            if row[0] != "running":
                raise StateError(f"{self.name}: run {run_id} has already ended ({row[0]})")
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
                raise StateError(f"{self.name}: no batch {batch} in run {run_id}")
            if row[1] != "sending":
                raise StateError(
                    f"{self.name}: batch {batch} of run {run_id} is already recorded ({row[1]})"
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
                raise StateError(f"{self.name}: no run {run_id}")
            self._write_results(db, run_id, None, results, self._stamp())

    def record_accepted(self, run_id: str, results: Iterable[FieldResult]) -> None:
        """Record values taken as known without sending anything (``drift --accept``, and
        undoing it): each field's result, and in ``last_written`` its ``after`` value for an
        ``already_current`` result, or no value for a ``stale`` one (its opportunity no longer
        exists: nothing left to compare). One transaction, which bumps the serial too: what
        drift and rollback compare with has changed. Needs the lock."""
        results = tuple(results)
        _check_results(results)
        if any(r.status not in ("already_current", "stale") for r in results):
            raise ValueError("accepted values are already_current, or stale when gone")
        with self._write() as db:
            self._check_lock(db, "accept values")
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise StateError(f"{self.name}: no run {run_id}")
            now = self._stamp()
            self._write_results(db, run_id, None, results, now)
            known = [r for r in results if r.status == "already_current"]
            db.executemany(
                _upsert("last_written", TABLES["last_written"][0], TABLES["last_written"][1]),
                [
                    (r.opportunity_id, r.field, r.opportunity_type, r.after, run_id, now)
                    for r in known
                ],
            )
            db.executemany(
                "DELETE FROM last_written WHERE opportunity_id = ? AND field = ?",
                [(r.opportunity_id, r.field) for r in results if r.status == "stale"],
            )
            db.execute("UPDATE state SET serial = serial + 1")
            db.execute(
                "UPDATE runs SET serial = (SELECT serial FROM state) WHERE id = ?", (run_id,)
            )
        logger.info("state: run=%s accepted=%d", run_id, len(results))

    def _write_results(
        self,
        db: Sql,
        run_id: str,
        batch: int | None,
        results: Sequence[FieldResult],
        now: str,
    ) -> None:
        columns, key = TABLES["results"]
        # the columns this state's schema has (an older one only where tests make it so)
        kept = [self._version >= ADDED_IN.get(("results", c), 0) for c in columns]
        rows = [
            (
                *(run_id, r.opportunity_id, r.field, r.opportunity_type, r.before, r.after),
                *(r.status, r.message, r.rule, batch, now, r.current, r.verified),
            )
            for r in results
        ]
        db.executemany(
            _upsert("results", [c for c, k in zip(columns, kept, strict=True) if k], key),
            [tuple(v for v, k in zip(row, kept, strict=True) if k) for row in rows],
        )
        db.executemany(
            _upsert("last_written", TABLES["last_written"][0], TABLES["last_written"][1]),
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
                raise StateError(f"{self.name}: no run {run_id}")
            for key in keys:
                changed = db.execute(
                    "UPDATE batches SET resolved_by = ? WHERE run_id = ? AND batch = ? "
                    "AND status IN ('sending', 'unknown') AND resolved_by IS NULL",
                    (run_id, *key),
                ).rowcount
                if not changed:
                    raise StateError(f"{self.name}: batch {key[1]} of run {key[0]} is not pending")
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
                f"SELECT {self._result_columns()} FROM results "
                "WHERE run_id = ? ORDER BY opportunity_id, field",
                (run_id,),
            )
        )

    def field_labels(self, run_id: str) -> dict[int, dict[str, str]]:
        """The display names run ``run_id`` recorded for its fields (type code → schema name →
        display name); none for a run of a state older than schema 5."""
        if self._version < TABLE_ADDED_IN["field_labels"]:
            return {}
        labels: dict[int, dict[str, str]] = {}
        for code, field, label in self._read(
            "SELECT opportunity_type, field, label FROM field_labels WHERE run_id = ? "
            "ORDER BY opportunity_type, field",
            (run_id,),
        ):
            labels.setdefault(int(code), {})[field] = label
        return labels

    def _result_columns(self, prefix: str = "") -> str:
        """FieldResult's columns, NULL for those an older schema lacks."""
        columns = [
            c if self._version >= ADDED_IN.get(("results", c), 0) else "NULL"
            for c in (
                *("opportunity_id", "opportunity_type", "field", "before", "after", "status"),
                *("rule", "message", "current", "verified"),
            )
        ]
        return ", ".join(prefix + c if c != "NULL" else c for c in columns)

    def unverified(self, run_or_digest: str) -> tuple[tuple[str, FieldResult], ...]:
        """(run id, result) of the applied fields of any run of this plan digest (a run id or
        prefix stands for its plan's digest) not read back yet: the run that wrote them ended
        before it verified them (killed, interrupted, ``--no-verify``). Oldest run first."""
        digest = self._digest_of(run_or_digest)
        if self._version < 4:
            return ()
        return tuple(
            (row[0], FieldResult(*row[1:]))
            for row in self._read(
                f"SELECT results.run_id, {self._result_columns('results.')} FROM results "
                "JOIN runs ON runs.id = results.run_id WHERE runs.plan_digest = ? "
                "AND results.status = 'applied' AND results.verified IS NULL "
                "ORDER BY runs.rowid, results.opportunity_id, results.field",
                (digest,),
            )
        )

    def record_verification(self, found: Iterable[Verification]) -> None:
        """Record what reading applied fields back found, in one transaction. The last value
        written to a normalised field becomes its stored form; a field not persisted is no
        longer one lsqsync wrote (its last written value is the one before, if any)."""
        found = tuple(found)
        for v in found:
            if v.verdict not in VERDICTS:
                raise ValueError(f"not a verification verdict: {v.verdict!r}")
        with self._write() as db:
            for v in found:
                changed = db.execute(
                    "UPDATE results SET verified = ?, current = ? WHERE run_id = ? "
                    "AND opportunity_id = ? AND field = ? AND status = 'applied'",
                    (v.verdict, v.current, v.run_id, v.opportunity_id, v.field),
                ).rowcount
                if not changed:
                    raise StateError(
                        f"{self.name}: run {v.run_id} applied no field {v.field} of "
                        f"{v.opportunity_id}"
                    )
            pairs = {(v.opportunity_id, v.field) for v in found if v.verdict != "confirmed"}
            for pair in sorted(pairs):
                _refresh_last_written(db, *pair)
        logger.info("state: verified=%d", len(found))

    def confirmed(
        self, run_or_digest: str, statuses: Sequence[ResultStatus] = CONFIRMED
    ) -> frozenset[tuple[str, str]]:
        """(opportunity id, field) pairs applied or found already current (``statuses``) by any
        run of this plan digest (a run id or prefix stands for its plan's digest): a resumed
        apply never re-sends them. An applied field read back as not persisted is not among
        them: the next apply checks it again."""
        digest = self._digest_of(run_or_digest)
        persisted = (
            " AND (results.verified IS NULL OR results.verified <> 'not_persisted')"
            if self._version >= 4
            else ""
        )
        return frozenset(
            (row[0], row[1])
            for row in self._read(
                "SELECT DISTINCT opportunity_id, field FROM results "
                "JOIN runs ON runs.id = results.run_id "
                f"WHERE runs.plan_digest = ? AND results.status IN ({marks(statuses)})" + persisted,
                (digest, *statuses),
            )
        )

    def opportunities_written(self, rule: str) -> frozenset[str]:
        """The opportunities (lower-cased ids) rule ``rule`` ever wrote a field of: a ``once``
        rule leaves them alone."""
        return frozenset(
            row[0].lower()
            for row in self._read(
                "SELECT DISTINCT opportunity_id FROM results WHERE rule = ? AND status = 'applied'",
                (rule,),
            )
        )

    def rolled_back_writes(self) -> tuple[tuple[str, str, str, str, str], ...]:
        """(run id, rule, opportunity id, field, value written) of every field applied by a run
        that a rollback put back since (a rollback's rule is ``rollback-<run id>``). Two reads
        by the results' key, not one per result: a state holds millions of them."""
        rules = self._read(
            "SELECT DISTINCT rule FROM results WHERE rule LIKE 'rollback-%' AND status = 'applied'"
        )
        known = {r.id for r in self.runs()}
        runs = sorted(known & {row[0].removeprefix("rollback-") for row in rules})
        if not runs:
            return ()
        return tuple(
            (row[0], row[1], row[2], row[3], row[4])
            for row in self._read(
                "SELECT run_id, rule, opportunity_id, field, after FROM results "
                f"WHERE run_id IN ({marks(runs)}) AND status = 'applied' "
                "ORDER BY run_id, opportunity_id, field",
                runs,
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

    # -- the whole state, for `lsqsync state migrate` ---------------------------------------

    def rows(self, table: str) -> Iterator[tuple[Any, ...]]:
        """Every row of ``table`` (one of schema.TABLES) in the order of its key, with the
        columns of the latest schema (None for a column an older state lacks)."""
        columns, key = TABLES[table]
        if self._version < TABLE_ADDED_IN.get(table, 0):
            return
        shown = ", ".join(
            c if self._version >= ADDED_IN.get((table, c), 0) else "NULL" for c in columns
        )
        order = ", ".join(key)
        after: tuple[Any, ...] = ()
        while True:
            where = f"WHERE ({order}) > ({marks(key)}) " if after else ""
            page = self._read(
                f"SELECT {shown}, {order} FROM {table} {where}ORDER BY {order} LIMIT {PAGE}",
                after,
            )
            for row in page:
                yield tuple(row[: len(columns)])
            if len(page) < PAGE:
                return
            after = tuple(page[-1][len(columns) :])

    def load(self, tables: Iterable[tuple[str, Iterable[Sequence[Any]]]]) -> None:
        """Fill a new, empty state with another state's rows (``state``: its lineage, serial and
        creation time; then the rest of schema.TABLES, in that order), in one transaction (needs
        the lock)."""
        with self._write() as db:
            self._check_lock(db, "load a state")
            for table, rows in tables:
                columns, _ = TABLES[table]
                if table == "state":  # the one row the new state was created with
                    assignments = ", ".join(f"{c} = ?" for c in columns)
                    statement = f"UPDATE state SET {assignments}"
                else:
                    statement = (
                        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks(columns)})"
                    )
                page: list[Sequence[Any]] = []
                for row in rows:
                    page.append(row)
                    if len(page) == PAGE:
                        db.executemany(statement, page)
                        page.clear()
                if page:
                    db.executemany(statement, page)

    def _digest_of(self, run_or_digest: str) -> str:
        if _DIGEST.fullmatch(run_or_digest):
            return run_or_digest
        return self.run(run_or_digest).plan_digest


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """An INSERT of every column that replaces the row with the same key (SQLite and
    PostgreSQL both read it)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks(columns)}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def _write_field_labels(db: Sql, run_id: str, labels: Mapping[int, Mapping[str, str]]) -> None:
    rows = [
        (run_id, code, field, label)
        for code, names in sorted(labels.items())
        for field, label in sorted(names.items())
        if label
    ]
    if rows:
        db.executemany("INSERT INTO field_labels VALUES (?, ?, ?, ?)", rows)


def _check_results(results: Sequence[FieldResult]) -> None:
    for r in results:
        if r.status not in RESULT_STATUSES:
            raise ValueError(f"not a field result status: {r.status!r}")
        if r.verified is not None and r.verified not in VERDICTS:
            raise ValueError(f"not a verification verdict: {r.verified!r}")


def _refresh_last_written(db: Sql, opportunity_id: str, field: str) -> None:
    """The last value lsqsync wrote to a field, from its results: the latest applied one that
    was not found missing on reading back (its stored form when it was normalised)."""
    row = db.execute(
        "SELECT results.opportunity_type, CASE WHEN results.verified = 'normalised' "
        "THEN results.current ELSE results.after END, results.run_id, results.recorded "
        "FROM results JOIN runs ON runs.id = results.run_id "
        "WHERE results.opportunity_id = ? AND results.field = ? AND results.status = 'applied' "
        "AND (results.verified IS NULL OR results.verified <> 'not_persisted') "
        "ORDER BY runs.rowid DESC LIMIT 1",
        (opportunity_id, field),
    ).fetchone()
    if row is None:
        db.execute(
            "DELETE FROM last_written WHERE opportunity_id = ? AND field = ?",
            (opportunity_id, field),
        )
        return
    db.execute(
        _upsert("last_written", TABLES["last_written"][0], TABLES["last_written"][1]),
        (opportunity_id, field, *row),
    )
