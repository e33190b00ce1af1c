"""Runners on separate machines — separate cache folders — whose states share one PostgreSQL
database share one rate budget and one memory of the account's limit: real processes, a real
emulator account with a low limit, a real PostgreSQL server.

One runner learns the limit from the account's refusals; two more, started together in other
workspaces, start from it and meet no refusal; one of them is killed with -9 in the middle of
its run and holds nothing: the other goes on alone at the account's full rate, and a resumed
apply finishes the killed one's work. Every field is applied once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cli_helpers import run
from crm_helpers import not_as_planned, requests_log
from pg_server import PgServer

from lsqsync.config import StateLocation
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.lsq.accounts import ACCOUNTS_FILE, LEDGER_FILE
from lsqsync.plan import planfile
from lsqsync.state.location import open_location

# 4 calls per 2 s: the margin is then 0.1 s, as against a real account, which a busy machine's
# scheduling noise does not reach
CALLS, WINDOW = 4, 2.0
PER_TYPE = 100  # opportunities of each type: 4 batches for a rule that selects them all
LEARNED = f"rate limit: {CALLS} calls per {WINDOW:g} s (learned "


def project(root: Path, url: str, workspace: str, code: int, field: str, where: str = "") -> Path:
    """A rule repository whose state is the workspace ``workspace`` of the database at ``url``,
    with one rule stamping ``field`` on the opportunities of type ``code`` (``where``: a YAML
    mapping of conditions). The account's limit is left to learn (``rate_limit: auto``)."""
    (root / "rules").mkdir(parents=True)
    (root / "lsqsync.yml").write_text(
        f"version: 1\nstate: {{url: '{url}', workspace: {workspace}}}\n"
        "safety: {max_changes: 100000, max_change_ratio: 1}\n"
    )
    (root / "rules" / "stamp.yml").write_text(
        f"version: 1\nrules:\n  - name: stamp-{workspace}\n    opportunity_type: {code}\n"
        + (f"    where: {where}\n" if where else "")
        + f"    set: {{{field}: 'stamped by {workspace}'}}\n"
    )
    return root


def refused(out: str) -> int:
    found = re.search(r"\(.*?(\d+) refused for the rate limit\)", out)
    assert found, out
    return int(found[1])


def within_one_window(arrivals: list[float]) -> int:
    """The most calls among ``arrivals`` (sorted) that arrived within one window."""
    return max(
        (sum(1 for t in arrivals[i:] if t - start < WINDOW) for i, start in enumerate(arrivals)),
        default=0,
    )


@pytest.mark.slow
def test_runners_on_separate_machines_share_the_accounts_budget_and_its_learned_limit(
    pg: PgServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database = pg.new_database()
    url = pg.url(database)
    roots = {
        "learner": project(tmp_path / "learner", url, "learner", 12003, "mx_Custom_11",
                           "{mx_Custom_10: {ne: High}}"),
        "sales-ops": project(tmp_path / "sales", url, "sales-ops", 12000, "mx_Custom_9"),
        "finance": project(tmp_path / "finance", url, "finance", 12003, "mx_Custom_9"),
    }  # fmt: skip
    caches = {name: tmp_path / "machines" / name for name in roots}  # one machine each
    unlimited = Settings(rate_limit_calls=None)
    with Emulator(opportunities=2 * (PER_TYPE - 1), settings=unlimited) as emu:
        env = {**os.environ, "LSQ_HOST": emu.url, "LSQ_ACCESS_KEY": DEMO_ACCESS_KEY,
               "LSQ_SECRET_KEY": DEMO_SECRET_KEY}  # fmt: skip
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for root in roots.values():
            planned = run(["plan", "--config", str(root), "--out", str(root / "p.json")], capsys)
            assert planned[0] == 0, planned
        plans = {name: planfile.load(root / "p.json") for name, root in roots.items()}
        emu.settings = Settings(rate_limit_calls=CALLS, rate_limit_seconds=WINDOW)

        # 1. one runner meets the account's refusals and learns its limit
        monkeypatch.setenv("LSQSYNC_CACHE_DIR", str(caches["learner"]))
        monkeypatch.chdir(roots["learner"])
        code, out, _ = run(["apply", "p.json"], capsys)
        assert code == 0, out
        assert refused(out) > 0
        assert LEARNED in out
        requests.delete(emu.url + "/_emulator/requests", timeout=5).raise_for_status()

        # 2. two runners on two more machines, started together: they start from that limit.
        # One is killed with -9 after its first call, and its machine applies the plan again
        # at once, beside the other.
        def start(name: str, *args: str) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [sys.executable, "-m", "lsqsync", "apply", "p.json", *args],
                cwd=roots[name], env={**env, "LSQSYNC_CACHE_DIR": str(caches[name])},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip

        running = [start("sales-ops"), start("finance")]
        try:
            deadline = time.monotonic() + 30
            while not [e for e in requests_log(emu) if e["query"].get("code") == "12003"]:
                assert running[1].poll() is None, running[1].communicate()
                assert time.monotonic() < deadline, "finance made no call within 30 s"
                time.sleep(0.02)
            running[1].send_signal(signal.SIGKILL)  # in the middle of its run
            running[1].communicate()
            killed_at = time.time()
            running.append(start("finance", "--lock-timeout", "10"))
            outputs = [proc.communicate(timeout=60) for proc in running]
        finally:
            for proc in running:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        log = requests_log(emu)
        wrong = {name: not_as_planned(emu, plan) for name, plan in plans.items()}

    sales, _, resumed = running
    (out, err), _, (resumed_out, resumed_err) = outputs
    assert (sales.returncode, resumed.returncode) == (0, 0), outputs
    assert refused(out) == refused(resumed_out) == 0
    assert LEARNED in out  # from the database: its own cache folder knew nothing
    assert "WARNING" not in err
    assert "its database session has ended" in resumed_err  # the server released its lock
    assert wrong == {name: [] for name in plans}  # every field holds its planned value
    assert [e for e in log if e["rate_limited"]] == []  # the account refused nothing
    arrivals = sorted(float(e["arrived_at"]) for e in log)
    assert within_one_window(arrivals) <= CALLS  # together they kept to the account's window
    # the killed runner holds nothing: the others had the account's whole budget, as soon as
    # its calls left the window (a call of its in flight lands within 0.2 s); the resumed
    # apply alone has 4 batches to send at once after its reads
    after = [t for t in arrivals if t > killed_at + 0.2]
    assert within_one_window(after) == CALLS, (killed_at, arrivals)
    for name, plan in plans.items():
        with open_location(StateLocation(None, url, name), read_only=True) as st:
            applied = [
                (r.opportunity_id, r.field)
                for run_ in st.runs()
                for r in st.results(run_.id)
                if r.status == "applied"
            ]
        planned = [(c.id, f.field) for c in plan.changes for f in c.changes]
        assert sorted(applied) == sorted(planned), name  # each once: none sent twice
    for name in ("sales-ops", "finance"):  # the machines' own ledgers were never used
        assert not (caches[name] / ACCOUNTS_FILE).exists()
        assert not (caches[name] / LEDGER_FILE).exists()
    ledger = pg.execute("SELECT bucket, calls, per_seconds FROM lsqsync.ledger", database)
    assert sorted(ledger, key=str) == [("account", CALLS, WINDOW), ("bulk", None, None)]
