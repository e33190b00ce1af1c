"""The SQLite file itself: creation, permissions, schema version and migrations, refusals; and
lineage and serial on both backends."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from state_helpers import DIGEST, OPP_A, Clock, Place, raw

from lsqsync.errors import StateError
from lsqsync.state import database as state_module
from lsqsync.state.records import FieldResult
from lsqsync.state.schema import SCHEMA_VERSION
from lsqsync.state.store import StateFile


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tables(path: Path) -> set[str]:
    with raw(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def user_version(path: Path) -> int:
    with raw(path) as db:
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def test_a_new_file_and_its_folder_are_created_private(state_path: Path) -> None:
    old_umask = os.umask(0o000)  # even with a permissive umask
    try:
        with StateFile.open(state_path):
            pass
    finally:
        os.umask(old_umask)
    assert mode(state_path) == 0o600
    assert mode(state_path.parent) == 0o700
    assert state_path.read_bytes().startswith(b"SQLite format 3\x00")
    assert not list(state_path.parent.glob("state.db-*"))  # no journal left behind at rest


def test_a_readable_file_is_made_private_again_with_a_warning(
    state_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with StateFile.open(state_path):
        pass
    state_path.chmod(0o644)
    with StateFile.open(state_path):
        pass
    assert mode(state_path) == 0o600
    assert f"state: {state_path} had mode 644; setting it to 600" in caplog.text


def test_pragmas_rollback_journal_full_sync_foreign_keys(state_path: Path) -> None:
    with StateFile.open(state_path) as state:
        db = state._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_schema_version_and_tables(state_path: Path) -> None:
    with StateFile.open(state_path) as state:
        assert state.schema_version == SCHEMA_VERSION == 5
    assert user_version(state_path) == 5
    assert tables(state_path) >= {
        *("state", "runs", "batches", "results", "last_written", "lock", "field_labels")
    }


def test_a_new_migration_is_applied_once_in_order(
    state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StateFile.open(state_path):
        pass
    calls: list[str] = []

    def next_version(db: sqlite3.Connection, now: str) -> None:
        calls.append(now)
        db.execute("ALTER TABLE runs ADD COLUMN note TEXT")

    monkeypatch.setattr(state_module, "MIGRATIONS", (*state_module.MIGRATIONS, next_version))
    clock = Clock()
    with StateFile.open(state_path, now=clock) as sf:
        assert sf.schema_version == SCHEMA_VERSION + 1
    with StateFile.open(state_path, now=clock) as sf:
        assert sf.schema_version == SCHEMA_VERSION + 1
    assert calls == ["2024-05-01T10:00:00Z"]  # once, not on every open
    with raw(state_path) as db:
        assert "note" in [r[1] for r in db.execute("PRAGMA table_info(runs)")]


def test_a_failing_migration_leaves_the_previous_version_intact(
    state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StateFile.open(state_path) as sf:
        lineage = sf.lineage

    def broken(db: sqlite3.Connection, now: str) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(state_module, "MIGRATIONS", (*state_module.MIGRATIONS, broken))
    with pytest.raises(RuntimeError, match="migration bug"):
        StateFile.open(state_path)
    assert user_version(state_path) == SCHEMA_VERSION
    assert "half_done" not in tables(state_path)
    monkeypatch.undo()
    with StateFile.open(state_path) as sf:
        assert sf.lineage == lineage


def test_a_version_1_file_gains_the_current_column_and_keeps_its_results(
    state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "MIGRATIONS", state_module.MIGRATIONS[:1])
    with StateFile.open(state_path) as sf:
        sf.acquire_lock("apply")
        run = sf.begin_run("a" * 64)
    with raw(state_path) as db:  # a result as lsqsync wrote it before version 2
        db.execute(
            "INSERT INTO results VALUES (?, 'opp', 'Status', 1, 'Open', 'Won', 'stale', NULL, "
            "'r', NULL, '2024-05-01T10:00:00Z')",
            (run.id,),
        )
    assert user_version(state_path) == 1
    monkeypatch.undo()
    with StateFile.open(state_path) as sf:
        assert sf.schema_version == SCHEMA_VERSION
        (kept,) = sf.results(run.id)
        assert (kept.status, kept.current) == ("stale", None)
        sf.acquire_lock("apply")
        sf.record_results(run.id, [replace(kept, current="Lost")])
        assert sf.results(run.id)[0].current == "Lost"


def test_a_file_from_a_newer_lsqsync_is_refused(state_path: Path) -> None:
    with StateFile.open(state_path):
        pass
    with raw(state_path) as db:
        db.execute("PRAGMA user_version = 7")
    with pytest.raises(StateError) as caught:
        StateFile.open(state_path)
    assert str(caught.value) == (
        f"{state_path}: state file schema version 7 is newer than this lsqsync supports (5); "
        "upgrade lsqsync to use it"
    )
    assert user_version(state_path) == 7  # untouched


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a database\n")
    path.chmod(0o644)
    with pytest.raises(StateError) as caught:
        StateFile.open(path)
    assert str(caught.value) == f"{path}: not an lsqsync state file (not a SQLite database)"
    assert path.read_text() == "hello, this is not a database\n"
    assert mode(path) == 0o644


def test_a_corrupt_sqlite_file_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(StateError, match=r"not a usable lsqsync state file \(.+\)"):
        StateFile.open(path)


def test_another_programs_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with raw(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    path.chmod(0o600)
    with pytest.raises(StateError) as caught:
        StateFile.open(path)
    assert str(caught.value) == (
        f"{path}: a SQLite database, but not an lsqsync state file "
        "(it has tables and no lsqsync schema version)"
    )
    with raw(path) as db:
        db.execute("PRAGMA user_version = 1")
    with pytest.raises(StateError) as caught:
        StateFile.open(path)
    assert str(caught.value) == f"{path}: a SQLite database, but not an lsqsync state file"


def test_a_folder_or_an_unwritable_place_is_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot open the state file"):
        StateFile.open(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="cannot open the state file"):
        StateFile.open(blocker / "state.db")


def test_open_without_create_needs_an_existing_file(state_path: Path) -> None:
    with pytest.raises(StateError) as caught:
        StateFile.open(state_path, create=False)
    assert str(caught.value) == f"{state_path}: no state file (nothing has been applied yet)"
    assert not state_path.exists()


def test_lineage_is_a_uuid_set_once(place: Place) -> None:
    with place.open() as sf:
        lineage = sf.lineage
    assert uuid.UUID(lineage).version == 4
    with place.open() as sf:
        assert sf.lineage == lineage
    with place.other("other").open() as other:
        assert other.lineage != lineage


def test_serial_is_bumped_once_by_each_run_that_sends_something(locked: StateFile) -> None:
    assert locked.serial == 0
    quiet = locked.begin_run(DIGEST)  # nothing to send
    locked.finish_run(quiet.id, "succeeded")
    assert locked.serial == 0
    busy = locked.begin_run(DIGEST)
    locked.begin_batch(busy.id, [OPP_A], b"{}")
    locked.begin_batch(busy.id, [OPP_A], b"{}")
    assert locked.serial == 1
    again = locked.begin_run(DIGEST)
    locked.begin_batch(again.id, [OPP_A], b"{}")
    assert locked.serial == 2
    assert [r.serial for r in locked.runs()] == [None, 1, 2]
    assert [r.id for r in locked.runs_since(1)] == [again.id]
    assert [r.id for r in locked.runs_since(0)] == [busy.id, again.id]


def test_migration_logs_at_info(state_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lsqsync.state")
    with StateFile.open(state_path):
        pass
    assert f"state: {state_path} migrated to schema version 1" in caplog.text


def test_a_damaged_state_file_is_an_error_naming_it(state_path: Path) -> None:
    with StateFile.open(state_path):
        pass
    with raw(state_path) as db:
        db.execute("DROP TABLE results")
    with StateFile.open(state_path, read_only=True) as sf, pytest.raises(StateError) as caught:
        sf.results("any")
    assert str(caught.value) == (
        f"{state_path}: the state file cannot be used (no such table: results)"
    )


def test_a_foreign_sqlite_file_is_refused_before_its_mode_is_touched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with raw(path) as db:
        db.execute("CREATE TABLE notes (x)")
    path.chmod(0o644)
    with pytest.raises(StateError, match="not an lsqsync state file"):
        StateFile.open(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_version_2_file_accepts_not_sent_and_keeps_its_results(
    state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "MIGRATIONS", state_module.MIGRATIONS[:2])
    with StateFile.open(state_path) as sf:
        sf.acquire_lock("apply")
        run = sf.begin_run("a" * 64)
        sf.record_results(run.id, [FieldResult("opp", 1, "Status", "Open", "Won", "stale", "r",
                                               "changed", "Lost")])  # fmt: skip
    with raw(state_path) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO results VALUES (?, 'opp', 'Owner', 1, NULL, 'u', 'not_sent', NULL, "
            "'r', NULL, '2024-05-01T10:00:00Z', NULL)",
            (run.id,),
        )
    monkeypatch.undo()
    with StateFile.open(state_path) as sf:
        assert sf.schema_version == SCHEMA_VERSION
        (kept,) = sf.results(run.id)
        assert (kept.status, kept.message, kept.current) == ("stale", "changed", "Lost")
        sf.acquire_lock("apply")
        sf.record_results(run.id, [FieldResult("opp", 1, "Owner", None, "u", "not_sent", "r")])
        assert sf.run(run.id).counts.not_sent == 1
        assert ("opp", "Owner") not in sf.confirmed(run.id)
