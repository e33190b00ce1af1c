"""Schema 5: each run keeps the display names of its fields (``field_labels``), on both
backends; a state of schema 4 is read as it is (no labels) and migrated in place, its runs kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pg_server import PgServer
from state_helpers import DIGEST, OPP_A, Clock, Place, result

from lsqsync.config import StateLocation
from lsqsync.state import database as sqlite_backend
from lsqsync.state import postgres
from lsqsync.state.location import open_location
from lsqsync.state.migrate import fingerprint
from lsqsync.state.schema import SCHEMA_VERSION
from lsqsync.state.store import StateFile

LABELS = {12003: {"mx_Custom_2": "Stage", "Status": "Status"}, 12000: {"mx_Custom_9": "Remarks"}}


def a_run(sf: StateFile, labels: dict[int, dict[str, str]] | None = None) -> str:
    """A run of DIGEST that applied Stage, with ``labels`` recorded."""
    lock = sf.acquire_lock("apply")
    run = sf.begin_run(DIGEST, field_labels=labels)
    sf.record_results(run.id, [result(OPP_A, "mx_Custom_2", "already_current")])
    sf.finish_run(run.id, "succeeded")
    sf.release_lock(lock.id)
    return run.id


@pytest.fixture(params=["sqlite", "postgres"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if request.param == "sqlite":
        return Place.sqlite(tmp_path / "state.db")
    server: PgServer = request.getfixturevalue("pg")
    return Place.postgres(server)


def test_a_run_keeps_its_labels_and_another_run_its_own(place: Place) -> None:
    with open_location(place.location, now=Clock()) as sf:
        labelled = a_run(sf, LABELS)
        bare = a_run(sf)
        assert sf.field_labels(labelled) == LABELS
        assert sf.field_labels(bare) == {}
        # state migrate copies them with the rest
        assert fingerprint(sf)["field_labels"][0] == 3
        assert sorted(sf.rows("field_labels")) == [
            (labelled, 12000, "mx_Custom_9", "Remarks"),
            (labelled, 12003, "Status", "Status"),
            (labelled, 12003, "mx_Custom_2", "Stage"),
        ]


def test_an_empty_label_is_not_recorded(place: Place) -> None:
    with open_location(place.location, now=Clock()) as sf:
        run_id = a_run(sf, {12003: {"mx_Custom_2": "", "Status": "Status"}})
        assert sf.field_labels(run_id) == {12003: {"Status": "Status"}}


def test_a_version_4_sqlite_file_is_read_as_it_is_then_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.db"
    monkeypatch.setattr(sqlite_backend, "MIGRATIONS", sqlite_backend.MIGRATIONS[:4])
    with StateFile.open(path, now=Clock()) as sf:
        assert sf.schema_version == 4
        old = a_run(sf)
    with sqlite3.connect(path) as db, pytest.raises(sqlite3.OperationalError):
        db.execute("SELECT * FROM field_labels")
    monkeypatch.undo()
    with StateFile.open(path, read_only=True) as sf:  # reading changes nothing
        assert sf.schema_version == 4
        assert sf.field_labels(old) == {}
        assert list(sf.rows("field_labels")) == []
        assert fingerprint(sf)["field_labels"][0] == 0
    with StateFile.open(path, now=Clock()) as sf:
        assert sf.schema_version == SCHEMA_VERSION == 5
        assert [r.id for r in sf.runs()] == [old]
        assert sf.results(old)[0].field == "mx_Custom_2"
        assert sf.field_labels(old) == {}  # an older run has none: state show falls back
        new = a_run(sf, LABELS)
        assert sf.field_labels(new) == LABELS
    with sqlite3.connect(path) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO field_labels VALUES (?, 12003, 'mx_Custom_2', 'Stage')", (new,))


def test_a_version_4_postgres_workspace_is_read_as_it_is_then_migrated(
    pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = pg.new_database()
    location = StateLocation(None, pg.url(database), "default")
    monkeypatch.setattr(postgres, "POSTGRES_MIGRATIONS", postgres.POSTGRES_MIGRATIONS[:4])
    with open_location(location, now=Clock()) as sf:
        assert sf.schema_version == 4
        old = a_run(sf)
    monkeypatch.undo()
    with open_location(location, read_only=True) as sf:  # reading changes nothing
        assert sf.schema_version == 4
        assert sf.field_labels(old) == {}
        assert list(sf.rows("field_labels")) == []
    assert pg.execute("SELECT to_regclass('lsqsync_default.field_labels')", database) == [(None,)]
    with open_location(location, now=Clock()) as sf:
        assert sf.schema_version == SCHEMA_VERSION
        assert [r.id for r in sf.runs()] == [old]
        assert sf.field_labels(old) == {}
        new = a_run(sf, LABELS)
        assert sf.field_labels(new) == LABELS
    assert pg.execute("SELECT version FROM lsqsync.workspaces", database) == [(SCHEMA_VERSION,)]
