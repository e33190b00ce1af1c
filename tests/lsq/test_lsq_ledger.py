"""The ledgers of grants: in memory for one process, and in a file shared by every process on the
machine — with real files, real locks, and real processes killed while holding them."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lsq_helpers import FakeClock

from lsqsync.lsq.ledger import FileLedger, MemoryLedger, Window

ACCOUNT = {"account": [Window(2, 5.0)]}
BOTH = {"account": [Window(2, 5.0)], "bulk": [Window(1, 5.0)]}


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_a_grant_fits_every_window_of_every_bucket_or_nothing_is_recorded(
    kind: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    ledger = (
        MemoryLedger(clock)
        if kind == "memory"
        else FileLedger(tmp_path / "l.json", "a", clock=clock)
    )
    assert ledger.grant(BOTH) == 0.0
    assert ledger.grant(BOTH) == pytest.approx(5.0)  # the bulk window is full: nothing recorded
    assert ledger.grant(ACCOUNT) == 0.0  # so the account's second slot is still free
    assert ledger.grant(ACCOUNT) == pytest.approx(5.0)
    clock.now += 2.0
    assert ledger.grant(ACCOUNT) == pytest.approx(3.0)
    clock.now += 3.0
    assert ledger.grant(BOTH) == 0.0
    ledger.hold(4.0)
    ledger.hold(1.0)  # a shorter hold never shortens a longer one
    ledger.hold(0.0)
    assert ledger.grant({"other": [Window(5, 1.0)]}) == pytest.approx(4.0)


def test_two_ledgers_on_one_file_share_the_grants_of_one_account_only(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "cache" / "ledger.json"
    first, second = (FileLedger(path, "acct1", clock=clock) for _ in range(2))
    other_account = FileLedger(path, "acct2", clock=clock)
    assert first.grant(ACCOUNT) == 0.0
    assert second.grant(ACCOUNT) == 0.0
    assert first.grant(ACCOUNT) == pytest.approx(5.0)
    assert other_account.grant(ACCOUNT) == 0.0
    second.hold(2.0)
    assert first.grant({"bulk": [Window(9, 5.0)]}) == pytest.approx(2.0)
    assert other_account.grant({"bulk": [Window(9, 5.0)]}) == 0.0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())
    assert set(stored["accounts"]) == {"acct1", "acct2"}
    assert len(stored["accounts"]["acct1"]["buckets"]["account"]) == 2
    assert first.shared


def test_accounts_whose_grants_all_left_their_windows_are_dropped_from_the_file(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    path = tmp_path / "ledger.json"
    FileLedger(path, "old", clock=clock).grant(ACCOUNT)
    clock.now += 60
    FileLedger(path, "new", clock=clock).grant(ACCOUNT)
    assert set(json.loads(path.read_text())["accounts"]) == {"new"}


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe", b"[]", b'{"version": 2}', b'{"version": 1, "accounts": []}'],
)
def test_an_unreadable_ledger_is_started_afresh(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ledger.json"
    path.write_bytes(content)
    ledger = FileLedger(path, "a", clock=FakeClock())
    assert ledger.grant(ACCOUNT) == 0.0
    assert ledger.shared


def test_implausible_times_in_the_file_are_ignored(tmp_path: Path) -> None:
    clock = FakeClock(start=1000.0)
    path = tmp_path / "ledger.json"
    entry = {
        "hold_until": 1e12,  # a clock set back: no hold lasts that long
        "keep": "5",
        "buckets": {"account": [2000.0, "x", True, 990.0], "bulk": "nope"},
    }
    path.write_text(json.dumps({"version": 1, "accounts": {"a": entry, "b": "junk"}}))
    ledger = FileLedger(path, "a", clock=clock)
    # only the grant at 990 counts (keep falls back to the window asked about: 5 s)
    assert ledger.grant({"account": [Window(1, 15.0)]}) == pytest.approx(5.0)


def test_a_ledger_that_cannot_be_written_paces_the_process_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "cache").write_text("a file where the folder should be")
    clock = FakeClock()
    ledger = FileLedger(tmp_path / "cache" / "ledger.json", "a", clock=clock)
    with caplog.at_level(logging.WARNING):
        assert ledger.grant(ACCOUNT) == 0.0
        assert ledger.grant(ACCOUNT) == 0.0
        assert ledger.grant(ACCOUNT) == pytest.approx(5.0)  # still paced, in memory
        ledger.hold(1.0)
    assert not ledger.shared
    assert caplog.text.count("cannot be used") == 1
    assert "this process paces itself alone" in caplog.text


def test_a_ledger_whose_file_cannot_be_held_paces_the_process_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "ledger.json").mkdir()  # cannot be replaced by a file
    ledger = FileLedger(tmp_path / "ledger.json", "a", clock=FakeClock())
    ledger.hold(1.0)
    assert not ledger.shared
    assert ledger.grant(ACCOUNT) == pytest.approx(1.0)


# A process that takes the ledger's lock and stalls inside its transaction (its clock never
# returns): what a process stopped or killed at the worst moment leaves behind.
STALLED = """
import sys, time
from pathlib import Path
from lsqsync.lsq.ledger import FileLedger, Window

def stall():
    print("holding", flush=True)
    time.sleep(60)
    return time.time()

FileLedger(Path(sys.argv[1]), "a", clock=stall).grant({"account": [Window(1, 5.0)]})
"""


def holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", STALLED, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding"
    return proc


@pytest.mark.slow
def test_a_process_killed_while_holding_the_lock_holds_nobody_up(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    proc = holder(path)
    try:
        waiting = FileLedger(path, "a", lock_timeout=0.3)
        started = time.monotonic()
        waiting.grant(ACCOUNT)  # the lock is held: it waits, then paces itself alone
        assert not waiting.shared
        assert time.monotonic() - started >= 0.3
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    # the kernel released the dead process's lock: the next process goes on at once
    after = subprocess.run(
        [sys.executable, "-c", "from pathlib import Path; import sys; "
         "from lsqsync.lsq.ledger import FileLedger, Window; "
         "l = FileLedger(Path(sys.argv[1]), 'a', lock_timeout=5); "
         "print(l.grant({'account': [Window(1, 5.0)]}), l.shared)", str(path)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert after.stdout.split() == ["0.0", "True"]
