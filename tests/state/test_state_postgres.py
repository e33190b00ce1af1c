"""What only a PostgreSQL state has: its layout (a schema per workspace beside the shared
registry), migrations per workspace, refusals of databases that are not lsqsync states, read-only
sessions, connections that fail (server down, wrong password, no such database, lost mid-run),
the least privileges of a team's role, and the missing driver."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from pg_server import TEAM_PASSWORD, TEAM_ROLE, PgServer
from state_helpers import DIGEST, OPP_A, Clock, Place, result

from lsqsync.config import StateLocation
from lsqsync.errors import ConfigError, StateError
from lsqsync.state import postgres
from lsqsync.state.database import NoState
from lsqsync.state.location import open_location
from lsqsync.state.schema import SCHEMA_VERSION, Sql


def location(pg: PgServer, database: str, workspace: str = "default", **user: str) -> StateLocation:
    return StateLocation(None, pg.url(database, **user), workspace)


def schemas(pg: PgServer, database: str) -> set[str]:
    rows = pg.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'lsqsync%'", database)
    return {str(r[0]) for r in rows}


def test_each_workspace_is_a_schema_of_its_own_beside_the_registry(pg: PgServer) -> None:
    database = pg.new_database()
    with (
        open_location(location(pg, database)) as default,
        open_location(location(pg, database, "sales-ops")) as sales,
    ):
        assert default.lineage != sales.lineage
        # two locks at once: each workspace has its own
        default.acquire_lock("apply")
        sales.acquire_lock("apply")
        sales.begin_run(DIGEST)
        assert (len(default.runs()), len(sales.runs())) == (0, 1)
        assert sales.name == f"{pg.url(database)} (workspace sales-ops)"
    assert schemas(pg, database) == {"lsqsync", "lsqsync_default", "lsqsync_sales-ops"}
    registry = pg.execute("SELECT name, version FROM lsqsync.workspaces ORDER BY name", database)
    assert registry == [("default", SCHEMA_VERSION), ("sales-ops", SCHEMA_VERSION)]
    tables = pg.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'lsqsync_default'", database
    )
    assert {t[0] for t in tables} == {
        *("state", "runs", "batches", "results", "last_written", "lock", "field_labels")
    }


def test_a_new_migration_is_applied_once_per_workspace(
    pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = pg.new_database()
    open_location(location(pg, database)).close()
    calls: list[str] = []

    def next_version(db: Sql, now: str) -> None:
        calls.append(now)
        db.execute("ALTER TABLE runs ADD COLUMN note TEXT")

    migrations = (*postgres.POSTGRES_MIGRATIONS, next_version)
    monkeypatch.setattr(postgres, "POSTGRES_MIGRATIONS", migrations)
    for _ in range(2):
        with open_location(location(pg, database), now=Clock()) as sf:
            assert sf.schema_version == SCHEMA_VERSION + 1
    assert calls == ["2024-05-01T10:00:00Z"]
    columns = pg.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = "
        "'lsqsync_default' AND table_name = 'runs'",
        database,
    )
    assert ("note",) in columns


def test_a_failing_migration_leaves_the_previous_version_intact(
    pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = pg.new_database()
    with open_location(location(pg, database)) as sf:
        lineage = sf.lineage

    def broken(db: Sql, now: str) -> None:
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(postgres, "POSTGRES_MIGRATIONS", (*postgres.POSTGRES_MIGRATIONS, broken))
    with pytest.raises(RuntimeError, match="migration bug"):
        open_location(location(pg, database))
    assert pg.execute("SELECT version FROM lsqsync.workspaces", database) == [(SCHEMA_VERSION,)]
    assert pg.execute("SELECT to_regclass('lsqsync_default.half_done')", database) == [(None,)]
    monkeypatch.undo()
    with open_location(location(pg, database)) as sf:
        assert sf.lineage == lineage


def test_a_version_1_workspace_is_read_as_it_is_then_migrated(
    pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = pg.new_database()
    monkeypatch.setattr(postgres, "POSTGRES_MIGRATIONS", postgres.POSTGRES_MIGRATIONS[:1])
    with open_location(location(pg, database)) as sf:
        sf.acquire_lock("apply")
        run = sf.begin_run(DIGEST)
    pg.execute(  # a result as lsqsync wrote it before version 2
        "INSERT INTO lsqsync_default.results VALUES ('" + run.id + "', 'opp', 'Status', 1, "
        "'Open', 'Won', 'stale', NULL, 'r', NULL, '2024-05-01T10:00:00Z')",
        database,
    )
    monkeypatch.undo()
    with open_location(location(pg, database), read_only=True) as sf:  # reading changes nothing
        assert sf.schema_version == 1
        (kept,) = sf.results(run.id)
        assert (kept.status, kept.current) == ("stale", None)
    with open_location(location(pg, database)) as sf:
        assert sf.schema_version == SCHEMA_VERSION
        sf.acquire_lock("apply")
        sf.record_results(run.id, [replace(kept, current="Lost")])
        assert sf.results(run.id)[0].current == "Lost"


def test_a_workspace_or_database_from_a_newer_lsqsync_is_refused(pg: PgServer) -> None:
    database = pg.new_database()
    open_location(location(pg, database)).close()
    name = f"{pg.url(database)} (workspace default)"
    pg.execute("UPDATE lsqsync.workspaces SET version = 7", database)
    for read_only in (False, True):
        with pytest.raises(StateError) as caught:
            open_location(location(pg, database), read_only=read_only)
        assert str(caught.value) == (
            f"{name}: state schema version 7 is newer than this lsqsync supports "
            f"({SCHEMA_VERSION}); upgrade lsqsync to use it"
        )
    pg.execute("UPDATE lsqsync.meta SET version = 5", database)
    with pytest.raises(StateError, match="schema version 5 is newer than this lsqsync supports"):
        open_location(location(pg, database, "other"), read_only=True)


def test_a_database_that_is_not_an_lsqsync_state_is_refused_untouched(pg: PgServer) -> None:
    database = pg.new_database()
    pg.execute("CREATE TABLE customers (id INTEGER)", database)
    for read_only in (False, True):
        with pytest.raises(StateError) as caught:
            open_location(location(pg, database), read_only=read_only)
        assert str(caught.value) == (
            f"{pg.url(database)} (workspace default): a PostgreSQL database, but not an lsqsync "
            "state (it has tables and no lsqsync schema); give lsqsync a database of its own"
        )
    assert schemas(pg, database) == set()
    pg.execute("CREATE SCHEMA lsqsync", database)
    with pytest.raises(StateError, match="a schema lsqsync that is not an lsqsync state"):
        open_location(location(pg, database))


def test_a_schema_in_the_way_of_a_new_workspace_is_refused(pg: PgServer) -> None:
    database = pg.new_database()
    open_location(location(pg, database)).close()
    pg.execute('CREATE SCHEMA "lsqsync_reports"', database)
    with pytest.raises(StateError, match="has a schema lsqsync_reports that is not an lsqsync"):
        open_location(location(pg, database, "reports"))


def test_reading_opens_change_nothing_and_need_a_state(pg: PgServer) -> None:
    database = pg.new_database()
    with pytest.raises(NoState) as caught:
        open_location(location(pg, database), read_only=True)
    assert str(caught.value) == (
        f"{pg.url(database)} (workspace default): no lsqsync state in this database yet "
        "(nothing applied)"
    )
    assert schemas(pg, database) == set()
    open_location(location(pg, database)).close()
    with pytest.raises(NoState) as caught:
        open_location(location(pg, database, "sales"), read_only=True)
    assert str(caught.value) == (
        f"{pg.url(database)} (workspace sales): no such workspace yet (nothing has been applied "
        "to it; `lsqsync state workspaces` lists the workspaces)"
    )
    with pytest.raises(NoState, match="no such workspace yet"):
        open_location(location(pg, database, "sales"), create=False)
    with (
        open_location(location(pg, database), read_only=True) as sf,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),  # the server refuses it
    ):
        sf._db.execute("UPDATE state SET serial = 5")
    assert schemas(pg, database) == {"lsqsync", "lsqsync_default"}


def test_a_server_that_is_down_is_a_clear_error(pg: PgServer, tmp_path: Path) -> None:
    port = pg.port + 1 if pg.port < 65535 else pg.port - 1
    url = f"postgresql://postgres@127.0.0.1:{port}/x"
    with pytest.raises(StateError) as caught:
        open_location(StateLocation(None, url, "default"))
    message = str(caught.value)
    assert message.startswith(f"{url} (workspace default): cannot connect to the state database: ")
    assert "Connection refused" in message
    assert "\n" not in message


def test_a_database_that_does_not_exist_is_a_clear_error(pg: PgServer) -> None:
    with pytest.raises(StateError) as caught:
        open_location(location(pg, "nowhere"))
    assert str(caught.value).startswith(
        f"{pg.url('nowhere')} (workspace default): cannot connect to the state database: "
    )
    assert 'database "nowhere" does not exist' in str(caught.value)


def test_the_team_role_logs_in_with_lsqsync_state_password_and_needs_no_more_privileges(
    pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CONNECT and CREATE on its own database: enough to make the registry and its workspaces,
    # take locks, and write runs.
    database = pg.new_database(team=True)
    at = location(pg, database, "team", user=TEAM_ROLE)
    monkeypatch.setenv("LSQSYNC_STATE_PASSWORD", TEAM_PASSWORD)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with open_location(at) as sf:
        sf.acquire_lock("apply")
        run = sf.begin_run(DIGEST)
        batch = sf.begin_batch(run.id, [OPP_A], b"[]")
        sf.record_batch_result(run.id, batch.batch, "done", [result(OPP_A)])
        sf.finish_run(run.id, "succeeded")
    assert postgres.workspaces(at.url or "")[0].runs == 1
    owner = pg.execute(
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'lsqsync_team'", database
    )
    assert owner == [(TEAM_ROLE,)]
    monkeypatch.setenv("LSQSYNC_STATE_PASSWORD", "wrong")
    with pytest.raises(StateError) as caught:
        open_location(at)
    assert f'password authentication failed for user "{TEAM_ROLE}"' in str(caught.value)
    assert str(caught.value).endswith(
        "; the password comes from LSQSYNC_STATE_PASSWORD (or PGPASSWORD, ~/.pgpass, a "
        "service file)"
    )
    monkeypatch.delenv("LSQSYNC_STATE_PASSWORD")
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    with pytest.raises(StateError, match="no password supplied; the password comes from"):
        open_location(at)
    monkeypatch.setenv("PGPASSWORD", TEAM_PASSWORD)  # libpq's own sources work as well
    open_location(at, read_only=True).close()


def test_a_role_without_rights_is_told_what_it_needs(
    pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = pg.new_database()
    pg.execute(f"GRANT CONNECT ON DATABASE {database} TO {TEAM_ROLE}")
    monkeypatch.setenv("LSQSYNC_STATE_PASSWORD", TEAM_PASSWORD)
    with pytest.raises(StateError) as caught:
        open_location(location(pg, database, user=TEAM_ROLE))
    assert "the database refused: permission denied for database" in str(caught.value)
    assert (
        "docs/guide/state.md, 'A PostgreSQL state, for teams', lists the privileges the role needs"
        in str(caught.value)
    )


def test_a_connection_lost_in_the_middle_of_a_run_is_a_state_error(
    pg: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    place = Place.postgres(pg)
    with place.open() as sf:
        lock = sf.acquire_lock("apply")
        run = sf.begin_run(DIGEST)
        pg.terminate(str(place.location.url).rsplit("/", 1)[1])
        with pytest.raises(StateError, match=r"the state database failed: .*terminat"):
            sf.begin_batch(run.id, [OPP_A], b"[]")
    # closing does not fail again: the server released what the session held
    assert f"state: lock={lock.id} not released: " in caplog.text


def test_a_bad_workspace_name_is_refused_before_connecting() -> None:
    url = "postgresql://nobody@127.0.0.1:1/x"
    with pytest.raises(ConfigError, match="workspace 'Sales Ops': a workspace name is 1 to 40"):
        open_location(StateLocation(None, url, "Sales Ops"))


def test_without_psycopg_the_message_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg fails
    with pytest.raises(ConfigError) as caught:
        open_location(StateLocation(None, "postgresql://u@127.0.0.1:1/x", "default"))
    assert str(caught.value) == (
        "a PostgreSQL state needs the psycopg driver: pip install 'lsqsync[postgres]'"
    )


@pytest.mark.slow
def test_help_and_a_sqlite_state_never_load_psycopg(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from lsqsync.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('psycopg' in sys.modules)\n"
    )
    (tmp_path / "lsqsync.yml").write_text("version: 1\n")
    for args in (["--help"], ["state", "runs"], ["state", "path"]):
        done = subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.stdout.splitlines()[-1] == "False", (args, done.stdout, done.stderr)


def test_a_workspace_registered_but_not_yet_made_is_listed_empty_and_made_by_the_next_apply(
    pg: PgServer,
) -> None:
    # a process that died between registering a workspace and making its tables
    database = pg.new_database()
    open_location(location(pg, database)).close()
    pg.execute(
        "INSERT INTO lsqsync.workspaces VALUES ('half', 0, '2024-05-01T10:00:00Z')", database
    )
    pg.execute('CREATE SCHEMA "lsqsync_half"', database)
    half = postgres.workspaces(pg.url(database))[1]
    assert (half.name, half.schema_version, half.runs, half.lock) == ("half", 0, 0, None)
    with pytest.raises(NoState, match="no such workspace yet"):
        open_location(location(pg, database, "half"), read_only=True)
    with open_location(location(pg, database, "half")) as sf:
        assert (sf.schema_version, sf.serial) == (SCHEMA_VERSION, 0)
