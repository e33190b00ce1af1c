"""kill -9 at random moments while batches are being journaled and recorded, on both backends:
the state is always consistent (a SQLite file passes `PRAGMA integrity_check`), and a batch is
never 'done' without its results, nor has results while still 'sending'."""

from __future__ import annotations

import random
import signal
import stat
import time
from pathlib import Path

import pytest
from state_helpers import DIGEST, Place, child

FIELDS = ("Status", "Stage", "Owner")
WRITER = """
import json, sys
from lsqsync.config import StateLocation
from lsqsync.state.location import open_location
from lsqsync.state.records import FieldResult
sf = open_location(StateLocation.parse(sys.argv[1], sys.argv[2]))
sf.acquire_lock("apply")
run = sf.begin_run("d" * 64)
print(run.id, flush=True)
n = 0
while True:
    n += 1
    ids = [f"opp-{n:05d}-{i:02d}" for i in range(25)]
    batch = sf.begin_batch(run.id, ids, json.dumps(ids).encode())
    sf.record_batch_result(run.id, batch.batch, "done", [
        FieldResult(o, 12003, f, "before", f"after-{n}", "applied", "rule")
        for o in ids for f in ("Status", "Stage", "Owner")
    ])
"""
TRIALS = 12


def check_consistent(place: Place) -> tuple[int, int]:
    """(done batches, batches left sending), after asserting the state is consistent."""
    with place.raw() as db:  # opening rolls back a hot journal, as any reader would
        if place.postgres_url is None:  # PostgreSQL checks its constraints at every statement
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        batches = db.execute("SELECT batch, status FROM batches").fetchall()
        for batch, status in batches:
            rows = db.execute(
                "SELECT count(*), count(DISTINCT opportunity_id) FROM results WHERE batch = ?",
                (batch,),
            ).fetchone()
            if status == "done":
                assert rows == (25 * len(FIELDS), 25), f"batch {batch} is done without results"
            else:
                assert status == "sending"
                assert rows == (0, 0), f"batch {batch} has results but is still sending"
        applied = db.execute("SELECT count(*) FROM results WHERE status = 'applied'").fetchone()
        assert db.execute("SELECT count(*) FROM last_written").fetchone() == applied
        serial = db.execute("SELECT serial FROM state").fetchone()[0]
        assert serial == (1 if batches else 0)
    statuses = [b[1] for b in batches]
    assert statuses.count("sending") <= 1
    return statuses.count("done"), statuses.count("sending")


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_a_consistent_state(place: Place) -> None:
    rng = random.Random(20240501)
    left_sending = 0
    for trial in range(TRIALS):
        at = place.other(f"trial-{trial}")
        with child(WRITER, *at.argv) as writer:
            assert writer.stdout is not None
            run_id = writer.stdout.readline().strip()
            time.sleep(rng.uniform(0.0, 0.15))
            writer.send_signal(signal.SIGKILL)
            assert writer.wait(10) == -signal.SIGKILL
        journal = Path(f"{at.location.path}-journal")
        if journal.exists():  # a hot journal: as private as the file
            assert stat.S_IMODE(journal.stat().st_mode) == 0o600
        done, sending = check_consistent(at)
        left_sending += sending
        # The next apply takes over the dead process's lock, marks its run interrupted, and
        # finds the batch it may have sent.
        with at.open() as sf:
            sf.acquire_lock("apply", timeout=10, poll=0.05)
            run = sf.run(run_id)
            assert run.outcome == "interrupted"
            assert run.counts.applied == done * 25 * len(FIELDS)
            assert len(sf.pending_batches(DIGEST)) == sending
            assert len(sf.confirmed(DIGEST)) == done * 25 * len(FIELDS)
    print(f"{TRIALS} kills, {left_sending} left a batch 'sending'")
