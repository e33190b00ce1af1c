"""The commands around a PostgreSQL state: `state:` in lsqsync.yml (validated: no password,
a warning without TLS), LSQSYNC_STATE_URL, `state path`, `state workspaces`, reading commands on
a workspace that does not exist, and `state migrate` from one backend to the other and back."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run
from pg_server import PgServer
from state_helpers import DIGEST, OPP_A, OPP_B, OPP_C, Clock, Place, result

from lsqsync.config import StateLocation
from lsqsync.state import store
from lsqsync.state.location import open_location
from lsqsync.state.schema import SCHEMA_VERSION


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LSQSYNC_STATE_URL", raising=False)
    monkeypatch.delenv("PGSSLMODE", raising=False)
    (tmp_path / "rules").mkdir()
    return tmp_path


def configure(project: Path, state: str) -> None:
    (project / "lsqsync.yml").write_text(f"version: 1\nrules: [rules/]\nstate: {state}\n")


# -- lsqsync.yml ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "where"),
    [
        ("postgresql://ci:s3cret@db.internal/lsqsync", "lsqsync.yml:3:8: state"),
        ("{url: 'postgres://ci:s3cret@db.internal/lsqsync'}", "lsqsync.yml:3:14: state.url"),
        ("{url: 'postgresql://ci@db/l?password=s3cret'}", "lsqsync.yml:3:14: state.url"),
    ],
)
def test_validate_refuses_a_password_in_the_state_url(
    project: Path, state: str, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(project, state)
    code, out, err = run(["validate"], capsys)
    assert code == 1
    assert f"{where}: a password does not go in lsqsync.yml: remove it from the URL and set " in out
    assert "LSQSYNC_STATE_PASSWORD (or PGPASSWORD, ~/.pgpass, a service file)" in out
    assert "s3cret" not in out + err


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("{url: 'mysql://x/y'}", "state.url: a state URL starts with postgresql://"),
        ("{url: 'postgresql://x/y', workspace: Sales}", "state.workspace: a workspace name is"),
        ("{workspace: sales}", "state: 'url' is required"),
    ],
)
def test_validate_checks_the_state_mapping(
    project: Path, state: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(project, state)
    code, out, _ = run(["validate"], capsys)
    assert (code, message in out) == (1, True), out


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("postgresql://ci@db.internal:5432/lsqsync", True),
        ("postgresql://ci@10.0.0.7/lsqsync?sslmode=prefer", True),
        ("postgresql://ci@db.internal/lsqsync?sslmode=require", False),
        ("postgresql://ci@db.internal/lsqsync?sslmode=verify-full", False),
        ("postgresql://ci@127.0.0.1/lsqsync", False),
        ("postgresql://ci@[::1]/lsqsync", False),
        ("postgresql://ci@localhost/lsqsync", False),
        ("postgresql:///lsqsync?host=/var/run/postgresql", False),
    ],
)
def test_a_remote_host_without_tls_gets_a_warning(
    project: Path,
    url: str,
    warned: bool,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure(project, f"{{url: '{url}', workspace: sales}}")
    assert run(["validate"], capsys)[0] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if not warned:
        assert warnings == []
        return
    host = url.split("@")[1].split("/")[0].split(":")[0]
    assert warnings == [
        f"lsqsync.yml:3:14: state.url: the database host {host} is not a loopback address and "
        "the URL does not ask for TLS (add ?sslmode=require, or verify-full): CRM values and the "
        "login could cross the network unencrypted"
    ]


def test_pgsslmode_in_the_environment_counts(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure(project, "postgresql://ci@db.internal/lsqsync")
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    assert run(["validate"], capsys)[0] == 0
    assert caplog.records == []


def test_state_path_shows_the_url_without_password_and_the_workspace(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure(
        project,
        "{url: 'postgresql://ci@db.internal:5432/lsqsync?sslmode=require', workspace: sales}",
    )
    assert run(["state", "path"], capsys)[1] == (
        "postgresql://ci@db.internal:5432/lsqsync?sslmode=require (workspace sales)\n"
    )
    # LSQSYNC_STATE_URL replaces the URL (CI keeps it in a secret); the workspace stays
    monkeypatch.setenv("LSQSYNC_STATE_URL", "postgresql://ci@127.0.0.1:6432/team")
    assert (
        run(["state", "path"], capsys)[1]
        == "postgresql://ci@127.0.0.1:6432/team (workspace sales)\n"
    )
    monkeypatch.setenv("LSQSYNC_STATE_URL", "postgresql://ci:hunter2@127.0.0.1/team")
    code, out, err = run(["state", "path"], capsys)
    assert (code, out) == (1, "")
    assert err == (
        "error: LSQSYNC_STATE_URL holds a password: remove it from the URL and set "
        "LSQSYNC_STATE_PASSWORD (or PGPASSWORD, ~/.pgpass, a service file)\n"
    )
    monkeypatch.setenv("LSQSYNC_STATE_URL", "state.db")
    assert (
        run(["state", "path"], capsys)[2]
        == "error: LSQSYNC_STATE_URL must be a postgresql:// URL\n"
    )
    monkeypatch.setenv("LSQSYNC_STATE_URL", "postgresql://ci@db.internal/team")
    run(["state", "path"], capsys)
    assert "state: LSQSYNC_STATE_URL: the database host db.internal is not a loopback" in (
        caplog.text
    )


# -- state workspaces and reading commands ----------------------------------------------------


def test_state_workspaces_lists_them_and_marks_the_project_s(
    project: Path, pg: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    main_place = Place.postgres(pg, "sales")
    url = main_place.location.url
    configure(project, f"{{url: '{url}', workspace: sales}}")
    code, _, err = run(["state", "workspaces"], capsys)
    assert (code, err) == (
        1,
        f"error: {url}: no lsqsync state in this database yet (nothing applied)\n",
    )
    with main_place.open(now=Clock()) as sales, main_place.other("finance").open() as finance:
        lock = sales.acquire_lock("apply")
        run_id = sales.begin_run(DIGEST).id
        sales.begin_batch(run_id, [OPP_A], b"[]")
        finance.acquire_lock("apply")
        finance.release_lock(finance.current_lock().id)  # type: ignore[union-attr]
        code, out, _ = run(["state", "workspaces"], capsys)
        assert code == 0
        assert out.splitlines() == [
            "   WORKSPACE  SERIAL  RUNS  LAST RUN                        LOCK",
            "   finance    0       0     -                               -",
            f"*  sales      1       1     {run_id} running  {lock.holder} (apply since "
            "2024-05-01T10:00:00Z)",
        ]
        data = json.loads(run(["state", "workspaces", "--format", "json"], capsys)[1])
    assert [(w["name"], w["current"], w["runs"]) for w in data["workspaces"]] == [
        ("finance", False, 0),
        ("sales", True, 1),
    ]
    assert data["workspaces"][1]["lock"]["id"] == lock.id
    assert data["workspaces"][1]["schema_version"] == SCHEMA_VERSION
    # a reading command on a workspace nothing was applied to
    configure(project, f"{{url: '{url}', workspace: marketing}}")
    code, out, err = run(["state", "runs"], capsys)
    assert (code, out) == (1, "")
    assert err == (
        f"error: {url} (workspace marketing): no such workspace yet (nothing has been applied to "
        "it; `lsqsync state workspaces` lists the workspaces)\n"
    )


def test_state_workspaces_of_a_sqlite_state_says_there_are_none(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(project, ".lsqsync/state.db")
    code, _, err = run(["state", "workspaces"], capsys)
    assert code == 1
    assert err.startswith(
        "error: .lsqsync/state.db is a SQLite state file, which has no workspaces"
    )


def test_without_psycopg_a_command_says_what_to_install(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(project, "postgresql://ci@127.0.0.1:1/lsqsync")
    monkeypatch.setitem(__import__("sys").modules, "psycopg", None)
    for args in (["state", "runs"], ["state", "workspaces"]):
        code, _, err = run(args, capsys)
        assert (code, err) == (
            1,
            "error: a PostgreSQL state needs the psycopg driver: pip install 'lsqsync[postgres]'\n",
        )


# -- state migrate ----------------------------------------------------------------------------


def fill(place: Place) -> None:
    """Two runs as apply leaves them: batches done, unknown and resolved, results of every
    status, last-written values, a stale field's current value."""
    clock = Clock()
    with place.open(now=clock) as sf:
        sf.acquire_lock("apply")
        first = sf.begin_run(DIGEST, overrides=["--allow-large"], who="ci@r1", where="https://ci/1")
        b = sf.begin_batch(first.id, [OPP_A, OPP_B], b"[1]")
        sf.record_batch_result(
            first.id, b.batch, "done",
            [result(OPP_A), result(OPP_B, status="failed", message="MXInvalid: no")],
        )  # fmt: skip
        lost = sf.begin_batch(first.id, [OPP_C], b"[2]")
        sf.record_batch_result(first.id, lost.batch, "unknown", [], message="read timed out")
        sf.record_results(first.id, [result("opp-x", "Owner", "stale", message="edited")])
        sf.finish_run(first.id, "partial")
        clock.advance(60)
        second = sf.begin_run(DIGEST)
        sf.resolve_batches(second.id, sf.pending_batches(DIGEST), [result(OPP_C)])
        for n in range(5):  # more rows than a page (PAGE is 2 in these tests)
            b = sf.begin_batch(second.id, [f"opp-{n}"], b"[3]")
            sf.record_batch_result(
                second.id, b.batch, "done", [result(f"opp-{n}", f, after=f"v{n}") for f in "ab"]
            )
        sf.finish_run(second.id, "succeeded")


def sqlite_tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a SQLite state file, runs in the order they were begun."""
    with sqlite3.connect(path) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            name: db.execute(f"SELECT * FROM {name} ORDER BY rowid").fetchall()
            for name in sorted(names)
        }


def test_migrate_sqlite_to_postgresql_and_back_loses_nothing(
    project: Path, pg: PgServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(store, "PAGE", 2)
    configure(project, ".lsqsync/state.db")
    source = project / ".lsqsync" / "state.db"
    fill(Place.sqlite(source))
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    mtime = source.stat().st_mtime_ns
    database = pg.new_database()
    url = pg.url(database)

    code, out, err = run(["state", "migrate", "--to", url, "--workspace", "sales"], capsys)
    assert (code, err) == (0, ""), err
    with open_location(StateLocation(str(source)), read_only=True) as sf:
        lineage = sf.lineage
    assert out == (
        f"Copied the state of {source.relative_to(project)} to {url} (workspace sales): lineage "
        f"{lineage}, serial 2; 2 runs, 7 batches, 14 field results, 12 last-written values. "
        "Counts and checksums match; the source is unchanged.\n"
        f'To use it, set in lsqsync.yml:  state: {{url: "{url}", workspace: sales}}\n'
    )
    assert (hashlib.sha256(source.read_bytes()).hexdigest(), source.stat().st_mtime_ns) == (
        before,
        mtime,
    )
    with open_location(StateLocation(None, url, "sales"), read_only=True) as copy:
        assert (copy.lineage, copy.serial, len(copy.runs())) == (lineage, 2, 2)
        assert copy.current_lock() is None

    # ... and back, from the PostgreSQL workspace to a new file
    configure(project, f"{{url: '{url}', workspace: sales}}")
    code, out, err = run(["state", "migrate", "--to", "back.db"], capsys)
    assert (code, err) == (0, ""), err
    assert out.endswith('To use it, set in lsqsync.yml:  state: "back.db"\n')
    assert sqlite_tables(project / "back.db") == sqlite_tables(source)


def test_migrate_refuses_a_target_that_holds_a_state_a_locked_source_and_a_password(
    project: Path, pg: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(project, ".lsqsync/state.db")
    source = Place.sqlite(project / ".lsqsync" / "state.db")
    fill(source)
    target = Place.postgres(pg)
    fill(target)
    url = target.location.url
    code, _, err = run(["state", "migrate", "--to", str(url)], capsys)
    assert code == 1
    assert err == (
        f"error: {url} (workspace default) already holds a state (2 runs, serial 2): migrate "
        "copies into a new state only\n"
    )
    code, _, err = run(["state", "migrate", "--to", "postgresql://ci:pw@127.0.0.1/x"], capsys)
    assert code == 1
    assert "--to holds a password: command lines end up in shell histories" in err
    assert "pw@" not in err
    with source.open() as sf:
        lock = sf.acquire_lock("apply")
        code, _, err = run(["state", "migrate", "--to", "copy.db"], capsys)
    assert code == 1
    assert err.startswith(f"error: .lsqsync/state.db is locked by {lock.holder} (pid ")
    assert err.endswith(f"(if that process is gone: lsqsync state unlock {lock.id})\n")
    assert not (project / "copy.db").exists()


def test_a_copy_that_differs_from_its_source_is_reported(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(project, ".lsqsync/state.db")
    fill(Place.sqlite(project / ".lsqsync" / "state.db"))
    load = store.StateFile.load

    def lossy(self: store.StateFile, tables: Any) -> None:  # loses the last-written values
        load(self, ((table, rows) for table, rows in tables if table != "last_written"))

    monkeypatch.setattr(store.StateFile, "load", lossy)
    code, out, err = run(["state", "migrate", "--to", "copy.db"], capsys)
    assert (code, out) == (1, "")
    assert err == (
        "error: copy.db: the copy differs from .lsqsync/state.db in last_written; do not use it\n"
    )
