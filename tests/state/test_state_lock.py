"""The lock, on both backends: contention between real processes, waiting, takeover of dead
and expired locks, unlock by exact id."""

from __future__ import annotations

import getpass
import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from pg_server import PgServer
from state_helpers import DIGEST, OPP_A, START, Clock, Place, child, raw, result

from lsqsync.errors import StateError, StateLocked
from lsqsync.state.schema import SCHEMA_VERSION
from lsqsync.state.store import StateFile, default_who

HOST = socket.gethostname()
# A child opens the state its argv names (Place.argv): a file, or a URL and a workspace.
OPEN = """
import sys
from lsqsync.config import StateLocation
from lsqsync.state.location import open_location
def state():
    return open_location(StateLocation.parse(sys.argv[1], sys.argv[2]))
"""

# Holds the lock until its stdin is closed; prints the lock id.
HOLD = (
    OPEN
    + """
with state() as sf:
    print(sf.acquire_lock("apply").id, flush=True)
    sys.stdin.read()
"""
)

# Waits for "go", tries the lock once, says whether it got it, then holds it until stdin closes.
RACE = (
    OPEN
    + """
from lsqsync.errors import StateLocked
with state() as sf:
    sys.stdin.readline()
    try:
        sf.acquire_lock("apply")
    except StateLocked:
        print("locked", flush=True)
    else:
        print("got", flush=True)
    sys.stdin.read()
"""
)

# Takes the lock, begins a run and dies without releasing anything.
DIE = (
    OPEN
    + """
import os
sf = state()
lock = sf.acquire_lock("apply")
run = sf.begin_run("d" * 64)
print(lock.id, lock.since, run.id, flush=True)
os._exit(0)
"""
)


@pytest.mark.slow
def test_a_second_process_waits_then_fails_naming_the_holder(place: Place) -> None:
    with child(HOLD, *place.argv) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        lock_id = holder.stdout.readline().strip()
        with place.open() as sf:
            held = sf.current_lock()
            assert held is not None
            assert (held.id, held.pid) == (lock_id, holder.pid)
            start = time.monotonic()
            with pytest.raises(StateLocked) as caught:
                sf.acquire_lock("apply", timeout=0.3, poll=0.05)
            assert 0.3 <= time.monotonic() - start < 3
            assert str(caught.value) == (
                f"{place.name} is locked by {default_who()} (pid {holder.pid} on {HOST}) for "
                f"apply since {held.since}; waited 0.3s. Lock id: {lock_id}. If that process "
                f"is gone: lsqsync state unlock {lock_id}"
            )
            # The holder finishes while the second process waits: the second gets the lock.
            threading.Timer(0.2, holder.stdin.close).start()
            lock = sf.acquire_lock("apply", timeout=10, poll=0.05)
            assert (lock.pid, lock.operation) == (os.getpid(), "apply")
        assert holder.wait(5) == 0


@pytest.mark.slow
def test_exactly_one_of_several_racing_processes_gets_the_lock(place: Place) -> None:
    # The state does not exist yet: creating it races too.
    racers = [child(RACE, *place.argv) for _ in range(4)]
    try:
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        answers = sorted(r.stdout.readline().strip() for r in racers if r.stdout)
        assert answers == ["got", "locked", "locked", "locked"]
    finally:
        for racer in racers:
            racer.communicate(timeout=10)
    with place.raw() as db:
        assert db.execute("SELECT count(*) FROM state").fetchone()[0] == 1
    with place.open(read_only=True) as sf:
        assert sf.schema_version == SCHEMA_VERSION


def test_waiting_polls_with_the_injected_sleep_until_the_timeout(
    place: Place, clock: Clock
) -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with place.open(now=clock) as holder, place.open() as waiter:
        held = holder.acquire_lock("apply", "r1")
        with pytest.raises(StateLocked, match=r"waited 1s\. Lock id"):
            waiter.acquire_lock("apply", timeout=1.0, poll=0.3, sleep=sleep, clock=lambda: now[0])
        assert sleeps == pytest.approx([0.3, 0.3, 0.3, 0.1])
        sleeps.clear()
        with pytest.raises(StateLocked) as caught:
            waiter.acquire_lock("drift", sleep=sleep)
        assert sleeps == []  # the default timeout is 0: no waiting
        assert str(caught.value) == (
            f"{place.name} is locked by {default_who()} (pid {os.getpid()} on {HOST}) for apply "
            f"(run r1) since 2024-05-01T10:00:00Z; waited 0s. Lock id: {held.id}. "
            f"If that process is gone: lsqsync state unlock {held.id}"
        )


def test_the_lock_of_a_dead_process_is_taken_over_and_its_run_interrupted(
    place: Place, caplog: pytest.LogCaptureFixture
) -> None:
    with child(DIE, *place.argv) as dead:
        out, _ = dead.communicate(timeout=10)
    old_id, since, run_id = out.split()
    with place.open() as sf:
        # the server ends the dead process's session as soon as it sees its socket closed
        lock = sf.acquire_lock("apply", timeout=10, poll=0.05)
        assert lock.id != old_id
        run = sf.run(run_id)
        assert (run.outcome, run.finished) == ("interrupted", lock.since)
    reason = (
        "its database session has ended (its process was killed or lost the database)"
        if place.postgres_url
        else f"its process {dead.pid} is gone"
    )
    assert (
        f"state: taking over lock {old_id} of {default_who()} (pid {dead.pid} on {HOST}, "
        f"apply since {since}): {reason}"
    ) in caplog.text
    assert f"state: run={run_id} was left running; marking it interrupted" in caplog.text
    assert [r.levelname for r in caplog.records if "taking over" in r.message] == ["WARNING"]


def test_a_dead_pid_on_another_host_is_not_ours_to_judge(state_path: Path, clock: Clock) -> None:
    with child(DIE, str(state_path), "default") as dead:
        dead.communicate(timeout=10)
    with raw(state_path) as db:
        db.execute("UPDATE lock SET host = 'runner-7'")
    with StateFile.open(state_path, now=clock) as sf:
        with pytest.raises(StateLocked, match=f"pid {dead.pid} on runner-7"):
            sf.acquire_lock("apply")
        clock.advance(3600)  # the lock was taken at the real time, long after START
        with pytest.raises(StateLocked):
            sf.acquire_lock("apply", expiry=3600)


def test_on_postgresql_a_dead_holder_on_another_host_is_taken_over_at_once(
    pg: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The server released the dead process's session lock: no need to wait for the expiry, and
    # no need to be on its host.
    place = Place.postgres(pg)
    with child(DIE, *place.argv) as dead:
        old_id = dead.communicate(timeout=10)[0].split()[0]
    with place.raw() as db:
        db.execute("UPDATE lock SET host = 'runner-7'")
    with place.open() as sf:
        lock = sf.acquire_lock("apply", timeout=10, poll=0.05, expiry=None)
        assert lock.id != old_id
    assert f"pid {dead.pid} on runner-7, apply since" in caplog.text
    assert "its database session has ended" in caplog.text


@pytest.mark.slow
def test_on_postgresql_a_live_session_keeps_its_lock_whatever_its_row_says(pg: PgServer) -> None:
    # A pid that means nothing here (another machine's) is never taken for a dead process.
    place = Place.postgres(pg)
    with child(HOLD, *place.argv) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        lock_id = holder.stdout.readline().strip()
        with place.raw() as db:
            db.execute("UPDATE lock SET pid = 0")
        with place.open() as sf, pytest.raises(StateLocked, match=f"Lock id: {lock_id}"):
            sf.acquire_lock("apply", timeout=0.3, poll=0.05)
        holder.stdin.close()
        assert holder.wait(10) == 0


def test_an_expired_lock_is_taken_over_and_its_holder_stops(
    place: Place, caplog: pytest.LogCaptureFixture
) -> None:
    first_clock, second_clock = Clock(), Clock()
    first = place.open(now=first_clock)
    second = place.open(now=second_clock)
    try:
        old = first.acquire_lock("apply")
        run = first.begin_run(DIGEST)
        first_clock.advance(500)
        in_flight = first.begin_batch(run.id, [OPP_A], b"[]")  # refreshes the heartbeat
        second_clock.advance(1000)  # 500 s since the holder was last seen
        with pytest.raises(StateLocked):
            second.acquire_lock("apply", expiry=900)
        second_clock.advance(401)
        taken = second.acquire_lock("apply", expiry=900)
        assert (
            f"state: taking over lock {old.id} of {old.holder} (pid {os.getpid()} on {HOST}, "
            "apply since 2024-05-01T10:00:00Z): not seen for 901s, more than the lock expiry "
            "of 900s"
        ) in caplog.text
        assert second.run(run.id).outcome == "interrupted"
        # The first process learns it before sending anything more...
        with pytest.raises(StateLocked) as caught:
            first.begin_batch(run.id, [OPP_A], b"[]")
        assert str(caught.value) == (
            f"{place.name}: this process's lock {old.id} was taken over by {taken.holder} "
            f"(pid {taken.pid} on {HOST}, lock id {taken.id}); stopping before it can send a "
            "batch"
        )
        # ...still records what its batch in flight did, and cannot release the new lock.
        first.record_batch_result(run.id, in_flight.batch, "done", [result(OPP_A)])
        assert first.release_lock(old.id) is False
        assert "state: lock=" + old.id + " was no longer held when released" in caplog.text
        assert second.current_lock() == taken
    finally:
        first.close()
        second.close()


def test_a_lock_seen_within_the_expiry_is_not_taken_over(place: Place) -> None:
    with (
        place.open(now=Clock(START)) as holder,
        place.open(now=Clock(START)) as other,
    ):
        holder.acquire_lock("apply")
        with pytest.raises(StateLocked):
            other.acquire_lock("apply", expiry=0.5)  # same second: not expired


def test_unlock_needs_the_exact_id(state: StateFile, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(StateError) as caught:
        state.unlock("anything")
    assert str(caught.value) == f"{state.name} is not locked"
    lock = state.acquire_lock("apply")
    with pytest.raises(StateError) as caught:
        state.unlock(lock.id[:8])
    assert str(caught.value) == (
        f"{state.name}: {lock.id[:8]!r} is not the current lock's id; the current lock is "
        f"{lock.id}, held by {lock.holder} (pid {lock.pid} on {HOST}) for apply since "
        "2024-05-01T10:00:00Z"
    )
    assert state.current_lock() == lock
    assert state.unlock(lock.id) == lock
    assert state.current_lock() is None
    assert f"state: lock {lock.id} of {lock.holder} (pid {lock.pid} on {HOST}) removed" in (
        caplog.text
    )
    # The process that held it no longer may send.
    with pytest.raises(StateLocked, match=r"taken over by nobody \(it was removed with unlock\)"):
        state.begin_run(DIGEST)


def test_one_lock_per_state_file_object_and_close_releases_it(place: Place) -> None:
    with place.open() as sf:
        lock = sf.acquire_lock("apply")
        with pytest.raises(StateError, match=f"already holds the lock {lock.id}"):
            sf.acquire_lock("apply")
        assert sf.release_lock(lock.id) is True
        again = sf.acquire_lock("apply")
    with place.open() as sf:
        assert sf.current_lock() is None
        assert again.id != lock.id


def test_takeover_and_release_log_at_the_right_levels(
    state: StateFile, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lsqsync.state")
    lock = state.acquire_lock("apply")
    state.release_lock(lock.id)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", f"state: lock={lock.id} taken for apply"),
        ("INFO", f"state: lock={lock.id} released"),
    ]


def test_who_is_unknown_without_a_login_name(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise KeyError("getpwuid(): uid not found: 1001")

    monkeypatch.setattr(getpass, "getuser", no_user)
    assert default_who() == f"unknown@{HOST}"


def test_a_process_of_another_user_counts_as_alive(
    state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with child(DIE, str(state_path), "default") as dead:
        dead.communicate(timeout=10)

    def not_permitted(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    with StateFile.open(state_path) as sf:
        monkeypatch.setattr(os, "kill", not_permitted)
        with pytest.raises(StateLocked):
            sf.acquire_lock("apply")
        monkeypatch.undo()
        with raw(state_path) as db:
            db.execute("UPDATE lock SET pid = 0")  # no real process has pid 0
        assert sf.acquire_lock("apply").pid == os.getpid()


def test_a_lock_with_a_heartbeat_lsqsync_never_writes_is_taken_over(
    state_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with child(DIE, str(state_path), "default") as dead:
        dead.communicate(timeout=10)
    with raw(state_path) as db:  # another host's lock row, damaged
        db.execute("UPDATE lock SET host = 'runner-7', heartbeat = 'yesterday-ish'")
    with StateFile.open(state_path) as sf:
        with pytest.raises(StateLocked):
            sf.acquire_lock("apply")  # without an expiry, nothing is judged by time
        sf.acquire_lock("apply", expiry=3600)
    assert "its heartbeat 'yesterday-ish' is not a time lsqsync writes" in caplog.text
