"""The rate-limit ledger in a PostgreSQL state database, on a real server: one table for every
workspace, holding fingerprints and never keys; grants, holds and lessons shared by runners on
separate connections (as on separate machines) and by them only; a runner killed or frozen
inside a grant transaction holds nobody up; and every way the database can fail a runner leaves
it pacing itself, with a warning — never stopped."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pg_server import TEAM_PASSWORD, TEAM_ROLE, PgServer

from lsqsync.config import Config, state_location
from lsqsync.lsq import Limit, account_limiter
from lsqsync.lsq.accounts import fingerprint
from lsqsync.lsq.ledger import Lesson, Window
from lsqsync.state import ledger as ledger_module
from lsqsync.state.ledger import PostgresLedger, opener
from lsqsync.state.postgres import PostgresWorkspace

HOST = "https://api-in21.leadsquared.com"
KEY = "u$r$a7f3c0e9b8d14f2a9c6e5d4b3a2f1e0d9"
ACCOUNT = fingerprint(HOST, KEY)
TWO = {"account": [Window(2, 2.0)]}


def state_database(pg: PgServer, *workspaces: str) -> str:
    """A database holding an lsqsync state (the shared tables, the ledger among them), with a
    workspace for each name: as the first apply of each project leaves it."""
    database = pg.new_database()
    for name in workspaces or ("default",):
        PostgresWorkspace.open(pg.url(database), name).close()
    return database


def ledger(url: str, account: str = ACCOUNT, stall_timeout: float = 5.0) -> PostgresLedger:
    opened = PostgresLedger.open(url, account, HOST, stall_timeout=stall_timeout)
    assert opened is not None
    return opened


def test_one_ledger_table_for_every_workspace_holding_fingerprints_never_keys(
    pg: PgServer,
) -> None:
    database = state_database(pg, "sales-ops", "finance")
    assert pg.execute("SELECT version FROM lsqsync.meta", database) == [(2,)]
    runner = ledger(pg.url(database))
    runner.learn("bulk", Lesson(10, 5.0, "2026-12-03T09:30:00Z", "limit of 10 in 5 second(s)"))
    runner.close()
    rows = pg.execute("SELECT account, bucket, host, calls FROM lsqsync.ledger", database)
    assert sorted(rows) == [(ACCOUNT, "account", HOST, None), (ACCOUNT, "bulk", HOST, 10)]
    dump = str(pg.execute("SELECT * FROM lsqsync.ledger", database))
    assert not any(KEY[i : i + 6] in dump for i in range(len(KEY) - 5))
    tables = pg.execute("SELECT schemaname FROM pg_tables WHERE tablename = 'ledger'", database)
    assert tables == [("lsqsync",)]  # the account's, not a workspace's


def test_runners_on_separate_connections_share_one_accounts_grants_hold_and_lessons(
    pg: PgServer,
) -> None:
    url = pg.url(state_database(pg))
    first, second, other = ledger(url), ledger(url), ledger(url, account="0123456789abcdef")
    try:
        assert first.grant(TWO) == 0.0
        assert second.grant(TWO) == 0.0
        assert 0.0 < first.grant(TWO) <= 2.0  # the window is full: nothing recorded
        assert other.grant(TWO) == 0.0  # another account's budget is its own
        second.hold(1.0)
        assert 0.0 < first.grant({"bulk": [Window(9, 2.0)]}) <= 1.0
        assert other.grant({"bulk": [Window(9, 2.0)]}) == 0.0

        seen = second.lessons()
        assert seen == {}
        lesson = Lesson(4, 2.0, "2026-12-03T09:30:00Z", "HTTP 429: limit of 4 in 2 second(s)")
        first.learn("account", lesson)
        assert first.lessons() == {"account": lesson}
        assert second.lessons() is seen  # it learns of it at its next transaction
        second.grant({"bulk": []})
        assert second.lessons() == {"account": lesson}
        again = second.lessons()
        second.grant({"bulk": []})
        assert second.lessons() is again  # unchanged: the same mapping
        assert other.lessons() == {}
    finally:
        for runner in (first, second, other):
            runner.close()


def test_a_limiter_starts_from_what_the_database_learned_and_grants_through_it(
    pg: PgServer, tmp_path: os.PathLike[str]
) -> None:
    url = pg.url(state_database(pg))
    teacher = account_limiter(HOST, KEY, configured=None, shared=opener(url))
    assert teacher.where.startswith(f"table lsqsync.ledger in {url} (what refusals taught")
    teacher.refused(named=Limit(4, 2.0), evidence="HTTP 429: limit of 4 in 2 second(s)")
    teacher.close()
    # another machine: another cache folder, which knows nothing
    pupil = account_limiter(HOST, KEY, configured=None, shared=opener(url), directory=tmp_path)
    assert (pupil.calls, pupil.per_seconds) == (4, 2.0)
    pupil.acquire()
    pupil.close()
    grants = pg.execute(
        "SELECT cardinality(grants) FROM lsqsync.ledger WHERE bucket = 'account'",
        url.rsplit("/", 1)[1],
    )
    assert grants == [(1,)]
    assert os.listdir(tmp_path) == []  # nothing in the cache folder


# A runner that is granted ``calls`` calls, then locks the account's rows inside its next grant
# transaction and stalls there: what a runner killed, or frozen, at the worst moment leaves.
STALLED = """
import sys, time
import lsqsync.state.ledger as ledger
from lsqsync.lsq.ledger import Window

url, account, stall_timeout, calls = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
decide = ledger.seconds_to_wait

def stall(*args):
    if calls:
        return decide(*args)
    print("holding", flush=True)
    time.sleep(60)
    return 0.0

ledger.seconds_to_wait = stall
held = ledger.PostgresLedger.open(url, account, "h", stall_timeout=stall_timeout)
while calls:
    assert held.grant({"account": [Window(2, 2.0)]}) == 0.0
    calls -= 1
held.grant({"account": [Window(2, 2.0)]})
"""


def holder(url: str, stall_timeout: float, calls: int = 0) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", STALLED, url, ACCOUNT, str(stall_timeout), str(calls)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding"
    return proc


@pytest.mark.slow
def test_a_runner_killed_inside_a_grant_transaction_holds_nobody_up(pg: PgServer) -> None:
    url = pg.url(state_database(pg))
    proc = holder(url, stall_timeout=30.0, calls=2)  # 2 calls: the window is full
    waiting = ledger(url)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        started = time.monotonic()
        wait = waiting.grant(TWO)  # its 2 calls count until they leave the window; no more
        assert waiting.shared
        assert time.monotonic() - started < 5.0  # the server rolled it back when it died
        assert wait <= 2.0
        time.sleep(2.05)  # its calls have left the window: the whole budget is free
        assert [waiting.grant(TWO), waiting.grant(TWO)] == [0.0, 0.0]
    finally:
        waiting.close()


@pytest.mark.slow
def test_a_runner_frozen_inside_a_grant_transaction_is_cut_off_by_the_server(
    pg: PgServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = pg.url(state_database(pg))
    frozen, thaw, holding = ledger(url, stall_timeout=1.0), threading.Event(), threading.Event()
    decide = ledger_module.seconds_to_wait

    def stall(*args: Any) -> float:
        if threading.current_thread().name == "frozen":  # the machine that stops answering
            holding.set()
            thaw.wait(30)
        return decide(*args)

    monkeypatch.setattr(ledger_module, "seconds_to_wait", stall)
    runner = threading.Thread(target=frozen.grant, args=(TWO,), name="frozen")
    runner.start()
    waiting = ledger(url, stall_timeout=2.0)  # waits up to 4 s for the rows
    try:
        assert holding.wait(30)
        started = time.monotonic()
        assert waiting.grant(TWO) == 0.0
        waited = time.monotonic() - started
        assert waiting.shared
        assert 0.5 < waited < 4.0  # it waited for the frozen runner, then the server cut it off
    finally:
        thaw.set()
        runner.join()
        waiting.close()
    # thawed, the frozen runner finds its session ended, warns and paces itself
    assert not frozen.shared
    assert "this process paces itself alone" in caplog.text
    assert "psycopg" not in caplog.text  # one warning, lsqsync's own
    frozen.close()


def test_without_a_state_there_is_no_shared_ledger_yet_and_nothing_is_created(
    pg: PgServer, caplog: pytest.LogCaptureFixture, tmp_path: os.PathLike[str]
) -> None:
    database = pg.new_database()
    with caplog.at_level(logging.INFO):
        limiter = account_limiter(
            HOST, KEY, configured=None, shared=opener(pg.url(database)), directory=tmp_path
        )
    assert limiter.where.startswith(str(tmp_path))  # this machine's ledger
    assert "has no rate-limit ledger this lsqsync can use" in caplog.text
    assert "WARNING" not in caplog.text
    assert pg.execute("SELECT nspname FROM pg_namespace WHERE nspname = 'lsqsync'", database) == []
    # a state an older lsqsync made (before the ledger): the same, until an apply upgrades it
    older = state_database(pg)
    pg.execute("DROP TABLE lsqsync.ledger; UPDATE lsqsync.meta SET version = 1", older)
    assert PostgresLedger.open(pg.url(older), ACCOUNT, HOST) is None


def test_a_role_needs_usage_and_select_insert_update_on_the_ledger_and_is_warned_without(
    pg: PgServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    database = state_database(pg)
    pg.execute(f"GRANT CONNECT ON DATABASE {database} TO {TEAM_ROLE}")
    monkeypatch.setenv("LSQSYNC_STATE_PASSWORD", TEAM_PASSWORD)
    url = pg.url(database, user=TEAM_ROLE)
    with caplog.at_level(logging.WARNING):
        assert PostgresLedger.open(url, ACCOUNT, HOST) is None
    assert f"lsq: the shared rate-limit ledger in {url} cannot be used (" in caplog.text
    assert "permission denied for schema lsqsync" in caplog.text
    assert "this process shares the account's budget only with lsqsync processes on this " in (
        caplog.text
    )
    pg.execute(
        f"GRANT USAGE ON SCHEMA lsqsync TO {TEAM_ROLE}; "
        f"GRANT SELECT ON lsqsync.meta TO {TEAM_ROLE}; "
        f"GRANT SELECT ON lsqsync.ledger TO {TEAM_ROLE}",
        database,
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert PostgresLedger.open(url, ACCOUNT, HOST) is None
    assert "permission denied for table ledger" in caplog.text
    pg.execute(f"GRANT INSERT, UPDATE ON lsqsync.ledger TO {TEAM_ROLE}", database)
    runner = ledger(url)  # the least it needs: no DELETE, nothing on the workspaces
    assert runner.grant(TWO) == 0.0
    runner.learn("account", Lesson(4, 2.0, "t", "e"))
    runner.hold(0.5)
    assert runner.shared
    runner.close()


def test_a_database_that_cannot_be_reached_leaves_this_machines_ledger(
    pg: PgServer, caplog: pytest.LogCaptureFixture, tmp_path: os.PathLike[str]
) -> None:
    url = pg.url(state_database(pg)).replace(str(pg.port), "1")  # nobody listens on port 1
    with caplog.at_level(logging.WARNING):
        limiter = account_limiter(
            HOST, KEY, configured=None, shared=opener(url), directory=tmp_path
        )
    assert limiter.where.startswith(str(tmp_path))
    assert "cannot connect to the state database" in caplog.text


def test_a_ledger_lost_mid_run_leaves_the_runner_pacing_itself_with_what_it_learned(
    pg: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    database = state_database(pg)
    runner = ledger(pg.url(database))
    lesson = Lesson(4, 2.0, "t", "e")
    runner.learn("account", lesson)
    pg.terminate(database)  # as a server restart, or a network that drops the connection
    with caplog.at_level(logging.WARNING):
        assert runner.grant(TWO) == 0.0
        assert runner.grant(TWO) == 0.0
        assert 0.0 < runner.grant(TWO) <= 2.0  # paced alone, to the same windows
    assert not runner.shared
    assert runner.lessons() == {"account": lesson}
    assert caplog.text.count("cannot be used") == 1  # warned once
    assert "this process paces itself alone" in caplog.text
    runner.hold(1.0)
    runner.learn("bulk", Lesson(1, 2.0, "t", "e"))
    assert set(runner.lessons()) == {"account", "bulk"}
    runner.close()


def test_rows_deleted_while_a_runner_runs_are_made_again(pg: PgServer) -> None:
    database = state_database(pg)
    runner = ledger(pg.url(database))
    assert runner.grant(TWO) == 0.0
    pg.execute("DELETE FROM lsqsync.ledger", database)  # a person forgetting the lessons
    assert 0.0 < runner.grant(TWO) < 0.1  # ask again at once
    assert runner.grant(TWO) == 0.0
    runner.close()
    assert pg.execute("SELECT bucket, cardinality(grants) FROM lsqsync.ledger", database) == [
        ("account", 1)
    ]


def test_a_hold_or_a_lesson_that_cannot_be_written_leaves_the_runner_pacing_itself(
    pg: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    database = state_database(pg)
    holding, learning = ledger(pg.url(database)), ledger(pg.url(database))
    assert repr(holding) == f"PostgresLedger('{pg.url(database)}')"
    pg.terminate(database)
    with caplog.at_level(logging.WARNING):
        holding.hold(0.0)  # nothing to hold: nothing sent
        assert holding.shared
        holding.hold(1.0)
        learning.learn("bulk", Lesson(1, 2.0, "t", "e"))
    assert caplog.text.count("cannot be used") == 2
    assert not holding.shared
    assert 0.0 < holding.grant(TWO) <= 1.0  # the hold, kept in the process
    assert learning.lessons() == {"bulk": Lesson(1, 2.0, "t", "e")}
    holding.close()
    learning.close()


def test_a_stored_limit_that_is_no_limit_teaches_nothing(pg: PgServer) -> None:
    database = state_database(pg)
    ledger(pg.url(database)).close()
    pg.execute(
        "UPDATE lsqsync.ledger SET calls = 0, per_seconds = 5, learned = 't' "
        "WHERE bucket = 'account'; "
        "UPDATE lsqsync.ledger SET calls = 2, per_seconds = 'NaN' WHERE bucket = 'bulk'",
        database,
    )
    runner = ledger(pg.url(database))
    assert runner.lessons() == {}
    runner.close()


def test_a_libpq_without_pipeline_mode_grants_alike(pg: PgServer) -> None:
    runner = ledger(pg.url(state_database(pg)))
    runner._pipeline = False  # libpq before 14: one round trip per statement
    assert [runner.grant(TWO), runner.grant(TWO)] == [0.0, 0.0]
    assert 0.0 < runner.grant(TWO) <= 2.0
    runner.close()


def test_a_state_url_from_the_environment_without_tls_is_warned_about_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: os.PathLike[str]
) -> None:
    # a command that opens the state and its ledger looks the URL up twice
    config = Config(root=Path(tmp_path), file="lsqsync.yml")
    monkeypatch.setenv("LSQSYNC_STATE_URL", "postgresql://ci@ledger-once.internal/lsqsync")
    with caplog.at_level(logging.WARNING):
        assert state_location(config).url == state_location(config).url
    assert caplog.text.count("ledger-once.internal is not a loopback address") == 1
