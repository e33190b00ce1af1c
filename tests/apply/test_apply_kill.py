"""kill -9 of `lsqsync apply` at random moments, then resume: every planned field ends at its
planned value, nothing confirmed is sent twice, and the state file stays intact."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from crm_helpers import example_project, not_as_planned, writes

from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.plan import planfile
from lsqsync.state.store import StateFile

TRIALS = 6


def lsqsync(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lsqsync", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def connection(emu: Emulator) -> dict[str, str]:
    """The environment of an lsqsync process talking to ``emu``."""
    return {**os.environ, "LSQ_HOST": emu.url, "LSQ_ACCESS_KEY": DEMO_ACCESS_KEY,
            "LSQ_SECRET_KEY": DEMO_SECRET_KEY}  # fmt: skip


def plan_example(root: Path, env: dict[str, str], *plan_options: str) -> None:
    """The repository's example project in ``root``, planned into ``root/p.json``."""
    example_project(root)
    plan = subprocess.run(
        [sys.executable, "-m", "lsqsync", "plan", "--out", "p.json", *plan_options],
        cwd=root, env=env, capture_output=True, check=False,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr.decode()


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume(tmp_path: Path) -> None:
    rng = random.Random(7)
    killed_running = 0
    settings = Settings(rate_limit_calls=None, latency_ms=60, jitter_ms=40)
    with Emulator(opportunities=400, settings=settings) as emu:
        env = connection(emu)
        for trial in range(TRIALS):
            project = tmp_path / f"trial{trial}"
            requests.post(emu.url + "/_emulator/reset", timeout=10).raise_for_status()
            plan_example(project, env, "--allow-large", "--now", "2026-11-27 10:00:00")
            proc = lsqsync(["apply", "p.json", "--workers", "2"], env, project)
            time.sleep(rng.uniform(0.3, 1.3))
            killed_running += proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait()

            resumed = subprocess.run(
                [sys.executable, "-m", "lsqsync", "apply", "p.json"],
                cwd=project, env=env, capture_output=True, check=False,
            )  # fmt: skip
            assert resumed.returncode == 0, (
                trial,
                resumed.stdout.decode(),
                resumed.stderr.decode(),
            )

            saved = planfile.load(project / "p.json")
            assert not_as_planned(emu, saved) == [], trial
            db = project / ".lsqsync" / "state.db"
            with sqlite3.connect(db) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            with StateFile.open(db, create=False) as st:
                assert st.pending_batches(saved.digest) == ()
                applied = {
                    (r.opportunity_id, r.field)
                    for run in st.runs()
                    for r in st.results(run.id)
                    if r.status == "applied"
                }
                planned = {(c.id, f.field) for c in saved.changes for f in c.changes}
                assert applied == planned, trial
    # most kills must land while the apply is running, or the test proves little
    assert killed_running >= TRIALS // 2, killed_running


def _interrupt_once(root: Path, env: dict[str, str], emu: Emulator) -> tuple[int, int, int]:
    """Apply, Ctrl-C as soon as the first write has reached LeadSquared (so that, with one
    worker and 300 ms a call, the next batch is in flight), resume: (fields applied before the
    interrupt, by the resume, planned)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsqsync", "apply", "p.json", "--workers", "1"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not writes(emu):
        assert proc.poll() is None, "apply ended before its first write"
        assert time.monotonic() < deadline, "no write within 30 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert b": interrupted." in out
    with StateFile.open(root / ".lsqsync" / "state.db", create=False) as st:
        first = st.runs()[-1]
        assert first.outcome == "interrupted"
        assert all(b.status != "sending" for b in st.batches(first.id))  # in-flight recorded
        before = first.counts.applied
    resumed = subprocess.run(
        [sys.executable, "-m", "lsqsync", "apply", "p.json"],
        cwd=root, env=env, capture_output=True, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr.decode()
    with StateFile.open(root / ".lsqsync" / "state.db", create=False) as st:
        second = st.runs()[-1]
        return before, second.counts.applied, planfile.load(root / "p.json").summary.fields


@pytest.mark.slow
def test_ctrl_c_records_in_flight_batches_exits_130_and_resumes(tmp_path: Path) -> None:
    settings = Settings(rate_limit_calls=None, latency_ms=300, jitter_ms=0)
    # enough opportunities for several batches: one worker keeps two in flight
    with Emulator(opportunities=1000, settings=settings) as emu:
        env = connection(emu)
        plan_example(tmp_path, env, "--allow-large")
        requests.delete(emu.url + "/_emulator/requests", timeout=10).raise_for_status()
        before, after_resume, planned = _interrupt_once(tmp_path, env, emu)
        assert 0 < before < planned, (before, planned)  # interrupted while sending
        assert before + after_resume == planned  # nothing sent twice, nothing lost


@pytest.mark.slow
def test_a_second_apply_process_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    settings = Settings(rate_limit_calls=None, latency_ms=500, jitter_ms=0)
    # several batches at 500 ms each with one worker: the first apply holds the lock for seconds
    with Emulator(opportunities=400, settings=settings) as emu:
        env = connection(emu)
        plan_example(tmp_path, env)
        requests.delete(emu.url + "/_emulator/requests", timeout=10).raise_for_status()
        first = subprocess.Popen(
            [sys.executable, "-m", "lsqsync", "apply", "p.json", "--workers", "1"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        # its first call means it holds the lock (taken before any call), for seconds more
        while not requests.get(emu.url + "/_emulator/requests", timeout=10).json()["requests"]:
            assert first.poll() is None, "the first apply ended before its first call"
            assert time.monotonic() < deadline, "no call within 30 s"
            time.sleep(0.02)
        second = subprocess.run(
            [sys.executable, "-m", "lsqsync", "apply", "p.json", "--lock-timeout", "0.5"],
            cwd=tmp_path, env=env, capture_output=True, check=False, text=True,
        )  # fmt: skip
        out, _ = first.communicate(timeout=60)
        assert first.returncode == 0, out
        assert second.returncode == 1
        assert second.stdout == ""
        assert second.stderr.startswith("error: ")
        assert f"(pid {first.pid} on " in second.stderr
        assert "for apply" in second.stderr
        assert "lsqsync state unlock " in second.stderr


@pytest.mark.slow
def test_kill_9_while_reading_back_resumes_without_sending_anything(tmp_path: Path) -> None:
    # reads show a write 30 s after it: the apply waits for its writes to show, and is killed
    settings = Settings(rate_limit_calls=None, read_lag_ms=30_000)
    with Emulator(opportunities=200, settings=settings) as emu:
        env = connection(emu)
        plan_example(tmp_path, env)
        requests.delete(emu.url + "/_emulator/requests", timeout=10).raise_for_status()
        proc = lsqsync(["apply", "p.json", "--verify-wait", "60"], env, tmp_path)
        deadline = time.monotonic() + 30
        while not reading_back(emu):
            assert proc.poll() is None, "apply ended before it read back"
            assert time.monotonic() < deadline, "no read back within 30 s"
            time.sleep(0.02)
        time.sleep(0.3)  # into the wait for the values to show
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sent = len(writes(emu))

        emu.settings.read_lag_ms = 0
        resumed = subprocess.run(
            [sys.executable, "-m", "lsqsync", "apply", "p.json"],
            cwd=tmp_path, env=env, capture_output=True, check=False, text=True,
        )  # fmt: skip

        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert len(writes(emu)) == sent  # nothing sent again
        saved = planfile.load(tmp_path / "p.json")
        fields = saved.summary.fields
        assert f"({fields} fields written by an earlier run of the plan)" in resumed.stdout
        with StateFile.open(tmp_path / ".lsqsync" / "state.db", create=False) as st:
            killed, last = st.runs()
            assert (killed.outcome, last.outcome) == ("interrupted", "succeeded")
            assert killed.counts.applied == fields
            assert killed.counts.confirmed + killed.counts.normalised == fields
            assert st.unverified(saved.digest) == ()


def reading_back(emu: Emulator) -> bool:
    """Whether a read came after the writes (every write has been answered)."""
    log = requests.get(emu.url + "/_emulator/requests", timeout=10).json()["requests"]
    last_write = max((i for i, e in enumerate(log) if e["path"].endswith("ByOpportunityId")),
                     default=None)  # fmt: skip
    return last_write is not None and any(
        e["path"].endswith("GetOpportunitiesById") for e in log[last_write:]
    )
