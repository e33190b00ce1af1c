"""plan → apply → plan, state show, drift and rollback with the state in a PostgreSQL workspace,
against the emulator; and an apply killed with -9, whose lock the server releases, so that the
next apply takes over at once — from any host — and finishes without sending anything twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import run
from crm_helpers import not_as_planned, writes
from pg_server import PgServer

from lsqsync.config import StateLocation
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.plan import planfile
from lsqsync.state.location import open_location

ROOT = Path(__file__).parents[2]
NOW = ["--now", "2026-11-27 10:00:00"]


def example_project(root: Path, url: str, workspace: str) -> StateLocation:
    """The repository's example project in ``root``, its state in a PostgreSQL workspace."""
    root.mkdir(exist_ok=True)
    config = (ROOT / "lsqsync.yml").read_text()
    assert "state: .lsqsync/state.db\n" in config
    state = f"state: {{url: '{url}', workspace: {workspace}}}\n"
    (root / "lsqsync.yml").write_text(config.replace("state: .lsqsync/state.db\n", state))
    shutil.copytree(ROOT / "rules", root / "rules")
    return StateLocation(None, url, workspace)


def test_plan_apply_and_read_back_with_the_state_in_postgresql(
    connected: Emulator,
    pg: PgServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    location = example_project(tmp_path, pg.url(pg.new_database()), "sales-ops")
    monkeypatch.chdir(tmp_path)
    code, _, _ = run(["plan", "--out", "p.json", *NOW], capsys)
    assert code == 0
    assert json.loads((tmp_path / "p.json").read_text())["state"]["lineage"] is None

    code, out, _ = run(["apply", "p.json"], capsys)
    assert code == 0, out
    assert not (tmp_path / ".lsqsync" / "state.db").exists()  # nothing in a file
    with open_location(location, read_only=True) as st:
        (only,) = st.runs()
        assert (st.serial, only.outcome) == (1, "succeeded")
        lineage = st.lineage
    applied = only.counts.applied
    assert applied > 0

    assert run(["plan", "--out", "again.json", "--detailed-exitcode", *NOW], capsys)[0] == 0
    state = json.loads((tmp_path / "again.json").read_text())["state"]
    assert (state["lineage"], state["serial"]) == (lineage, 1)
    code, out, _ = run(["state", "runs", "--format", "json"], capsys)
    assert [r["id"] for r in json.loads(out)["runs"]] == [only.id]
    code, out, _ = run(["state", "show", "last"], capsys)
    assert out.startswith(f"Run {only.id}: succeeded\n")
    assert run(["drift"], capsys)[:2] == (
        0,
        "No drift: LeadSquared holds every value lsqsync last wrote.\n",
    )
    code, _, _ = run(["rollback", "last", "--out", "back.json"], capsys)
    assert code == 0
    rollback = planfile.load(tmp_path / "back.json")
    assert rollback.summary.fields == applied
    assert rollback.state_lineage == lineage


@pytest.mark.slow
def test_a_killed_apply_s_lock_is_released_by_the_server_and_the_next_apply_takes_over(
    pg: PgServer, tmp_path: Path
) -> None:
    settings = Settings(rate_limit_calls=None, latency_ms=150, jitter_ms=0)
    with Emulator(opportunities=400, settings=settings) as emu:
        env = {**os.environ, "LSQ_HOST": emu.url, "LSQ_ACCESS_KEY": DEMO_ACCESS_KEY,
               "LSQ_SECRET_KEY": DEMO_SECRET_KEY}  # fmt: skip
        location = example_project(tmp_path, pg.url(pg.new_database()), "default")
        lsqsync = [sys.executable, "-m", "lsqsync"]
        plan = subprocess.run(
            [*lsqsync, "plan", "--out", "p.json", "--allow-large", *NOW],
            cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert plan.returncode == 0, plan.stderr
        first = subprocess.Popen(
            [*lsqsync, "apply", "p.json", "--workers", "1"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not writes(emu):  # it holds the lock and is sending
            assert first.poll() is None, "apply ended before its first write"
            assert time.monotonic() < deadline, "no write within 30 s"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        with open_location(location) as st:  # as if it had run on another machine
            held = st.current_lock()
            assert held is not None
            assert held.pid == first.pid
            st._db.execute("UPDATE lock SET host = 'runner-7', pid = 1")

        resumed = subprocess.run(
            [*lsqsync, "apply", "p.json", "--lock-timeout", "10"],
            cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip

        assert resumed.returncode == 0, resumed.stderr
        assert (
            f"WARNING: state: taking over lock {held.id} of {held.holder} (pid 1 on runner-7"
            in (resumed.stderr)
        )
        assert "its database session has ended" in resumed.stderr
        saved = planfile.load(tmp_path / "p.json")
        assert not_as_planned(emu, saved) == []
        with open_location(location, read_only=True) as st:
            killed, last = st.runs()
            assert killed.outcome == "interrupted"
            assert st.pending_batches(saved.digest) == ()
            applied = [
                (r.opportunity_id, r.field)
                for run in (killed, last)
                for r in st.results(run.id)
                if r.status == "applied"
            ]
        planned = {(c.id, f.field) for c in saved.changes for f in c.changes}
        assert sorted(applied) == sorted(planned)  # each once: nothing confirmed was sent twice
