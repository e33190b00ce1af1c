"""Runs, the journal of batches, field results, confirmed pairs for resume, last-written
values — on both backends."""

from __future__ import annotations

import hashlib
import re

import pytest
from state_helpers import DIGEST, OPP_A, OPP_B, OPP_C, OTHER_DIGEST, Clock, Place, result

from lsqsync.errors import StateError
from lsqsync.state.records import Batch, Counts, LastWritten
from lsqsync.state.store import StateFile, default_where, default_who


def test_a_run_from_begin_to_finish(locked: StateFile, clock: Clock) -> None:
    run = locked.begin_run(DIGEST, overrides=["ignore-rule-changes"], who="ci@r1", where="/w")
    assert re.fullmatch(r"20240501-100000-[0-9a-f]{6}", run.id)
    assert (run.outcome, run.started, run.finished, run.serial) == (
        "running",
        "2024-05-01T10:00:00Z",
        None,
        None,
    )
    assert locked.current_lock() is not None
    assert locked.current_lock().run_id == run.id  # type: ignore[union-attr]
    batch = locked.begin_batch(run.id, [OPP_A, OPP_B], b"[]")
    locked.record_batch_result(
        run.id,
        batch.batch,
        "done",
        [result(OPP_A), result(OPP_B, status="failed", message="MXInvalidInput: bad")],
    )
    locked.record_results(run.id, [result(OPP_C, status="stale", message="now 'Lost'")])
    clock.advance(65)
    finished = locked.finish_run(run.id, "partial")
    assert finished == run.__class__(
        id=run.id,
        who="ci@r1",
        where="/w",
        plan_digest=DIGEST,
        started="2024-05-01T10:00:00Z",
        finished="2024-05-01T10:01:05Z",
        outcome="partial",
        overrides=("ignore-rule-changes",),
        serial=1,
        counts=Counts(applied=1, failed=1, stale=1),
    )
    assert locked.runs() == (finished,)
    assert finished.counts.total == 3


def test_who_and_where_default_to_this_process(locked: StateFile) -> None:
    run = locked.begin_run(DIGEST)
    assert run.who == default_who()
    assert re.fullmatch(r"[^@\s]+@\S+", run.who)
    assert run.where == default_where()


def test_where_names_the_ci_job_when_there_is_one() -> None:
    github = {"GITHUB_REPOSITORY": "acme/crm-rules", "GITHUB_RUN_ID": "42"}
    assert default_where(github, "/x") == "https://github.com/acme/crm-rules/actions/runs/42"
    retry = {**github, "GITHUB_RUN_ATTEMPT": "2", "GITHUB_SERVER_URL": "https://ghe.acme.io/"}
    assert (
        default_where(retry, "/x")
        == "https://ghe.acme.io/acme/crm-rules/actions/runs/42/attempts/2"
    )
    gitlab = {"CI_JOB_URL": "https://gitlab.com/acme/crm/-/jobs/7"}
    assert default_where(gitlab, "/x") == "https://gitlab.com/acme/crm/-/jobs/7"
    assert default_where({}, "/home/me/crm") == "/home/me/crm"


def test_finishing_twice_or_with_a_wrong_outcome_is_refused(locked: StateFile) -> None:
    run = locked.begin_run(DIGEST)
    with pytest.raises(ValueError, match="not a final outcome: 'running'"):
        locked.finish_run(run.id, "running")
    locked.finish_run(run.id, "succeeded")
    with pytest.raises(StateError, match=rf"run {run.id} has already ended \(succeeded\)"):
        locked.finish_run(run.id, "failed")
    with pytest.raises(StateError, match="no run nope"):
        locked.finish_run("nope", "failed")


def test_a_run_needs_the_lock(state: StateFile) -> None:
    with pytest.raises(StateError) as caught:
        state.begin_run(DIGEST)
    assert str(caught.value) == f"{state.name}: cannot begin a run without the lock (acquire_lock)"
    assert state.runs() == ()


def test_a_run_by_id_or_unique_prefix(locked: StateFile, clock: Clock) -> None:
    first = locked.begin_run(DIGEST)
    clock.advance(1)
    second = locked.begin_run(DIGEST)
    clock.advance(86400)
    third = locked.begin_run(DIGEST)
    assert locked.run(second.id) == second
    assert locked.run(second.id[:-2]) == second
    assert locked.run("20240502") == third
    with pytest.raises(StateError) as caught:
        locked.run("2024050")
    assert str(caught.value) == (
        f"{locked.name}: run '2024050' is ambiguous: it starts {first.id}, {second.id}, {third.id}"
    )
    for missing in ("2023", "", "%", "2024050_-"):
        with pytest.raises(StateError, match=r"no run .* \(`lsqsync state runs` lists them\)"):
            locked.run(missing)
    assert [r.id for r in locked.runs()] == [first.id, second.id, third.id]


def test_last_is_the_most_recent_run(locked: StateFile, clock: Clock) -> None:
    with pytest.raises(StateError) as caught:
        locked.run("last")
    assert str(caught.value) == f"{locked.name}: no runs yet, so there is no last run"
    locked.begin_run(DIGEST)
    clock.advance(1)
    second = locked.begin_run(DIGEST)
    assert locked.run("last") == second


def test_a_batch_is_journaled_before_it_is_sent_and_updated_after(
    locked: StateFile, clock: Clock
) -> None:
    run = locked.begin_run(DIGEST)
    payload = b'[{"OpportunityId":"x","Fields":[]}]'
    batch = locked.begin_batch(run.id, [OPP_A, OPP_B], payload)
    sending = Batch(
        run.id,
        1,
        (OPP_A, OPP_B),
        hashlib.sha256(payload).hexdigest(),
        "sending",
        "2024-05-01T10:00:00Z",
    )
    assert batch == sending
    assert locked.batches(run.id) == (sending,)  # on disk before anything is sent
    assert locked.pending_batches(run.id) == (sending,)
    clock.advance(2)
    done = locked.record_batch_result(run.id, 1, "done", [result(OPP_A), result(OPP_B)])
    assert done.status == "done"
    assert done.finished == "2024-05-01T10:00:02Z"
    assert done.payload_sha256 == sending.payload_sha256
    assert locked.pending_batches(run.id) == ()
    second = locked.begin_batch(run.id, [OPP_C], b"[]")
    assert second.batch == 2
    failed = locked.record_batch_result(run.id, 2, "failed", [], message="HTTP 500 MXException")
    assert (failed.status, failed.message) == ("failed", "HTTP 500 MXException")


def test_a_batch_result_is_checked_against_its_journal(locked: StateFile) -> None:
    run = locked.begin_run(DIGEST)
    batch = locked.begin_batch(run.id, [OPP_A, OPP_B], b"[]")
    with pytest.raises(ValueError, match=rf"needs results for every opportunity: \['{OPP_B}'\]"):
        locked.record_batch_result(run.id, batch.batch, "done", [result(OPP_A)])
    with pytest.raises(ValueError, match=rf"not in the batch: \['{OPP_C}'\]"):
        locked.record_batch_result(run.id, batch.batch, "unknown", [result(OPP_C)])
    with pytest.raises(ValueError, match="not a final batch status: 'sending'"):
        locked.record_batch_result(run.id, batch.batch, "sending", [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a field result status: 'maybe'"):
        locked.record_batch_result(
            run.id,
            batch.batch,
            "done",
            [result(OPP_A, status="maybe"), result(OPP_B)],  # type: ignore[arg-type]
        )
    with pytest.raises(StateError, match=f"no batch 9 in run {run.id}"):
        locked.record_batch_result(run.id, 9, "done", [])
    with pytest.raises(ValueError, match="at least one opportunity"):
        locked.begin_batch(run.id, [], b"")
    # Nothing of the refused calls was written.
    assert locked.results(run.id) == ()
    assert locked.batches(run.id)[0].status == "sending"
    locked.record_batch_result(run.id, batch.batch, "unknown", [])
    with pytest.raises(StateError, match=r"already recorded \(unknown\)"):
        locked.record_batch_result(run.id, batch.batch, "done", [result(OPP_A), result(OPP_B)])


def test_a_batch_of_an_ended_or_missing_run_is_refused(locked: StateFile) -> None:
    run = locked.begin_run(DIGEST)
    locked.finish_run(run.id, "succeeded")
    with pytest.raises(StateError, match=r"has already ended \(succeeded\)"):
        locked.begin_batch(run.id, [OPP_A], b"")
    with pytest.raises(StateError, match="no run missing"):
        locked.begin_batch("missing", [OPP_A], b"")
    with pytest.raises(StateError, match="no run missing"):
        locked.record_results("missing", [])


def test_results_and_the_pairs_a_resume_must_not_resend(locked: StateFile) -> None:
    run = locked.begin_run(DIGEST)
    b = locked.begin_batch(run.id, [OPP_A, OPP_B], b"[]")
    batch_results = [
        result(OPP_A, "Stage", before=None, after="Closed"),
        result(OPP_A, "Status"),
        result(OPP_B, "Status", "failed", message="MXDuplicateEntryException: taken"),
    ]
    locked.record_batch_result(run.id, b.batch, "done", batch_results)
    locked.record_results(run.id, [result(OPP_C, status="already_current")])
    assert locked.results(run.id) == (
        result(OPP_A, "Stage", before=None, after="Closed"),
        result(OPP_A, "Status"),
        result(OPP_B, "Status", "failed", message="MXDuplicateEntryException: taken"),
        result(OPP_C, status="already_current"),
    )
    confirmed = {(OPP_A, "Stage"), (OPP_A, "Status"), (OPP_C, "Status")}
    assert locked.confirmed(DIGEST) == confirmed
    assert locked.confirmed(run.id) == confirmed
    assert locked.confirmed(run.id[:-3]) == confirmed
    assert locked.confirmed(OTHER_DIGEST) == frozenset()
    locked.finish_run(run.id, "partial")
    # A second run of the same plan (the resume) adds to what is confirmed.
    resume = locked.begin_run(DIGEST)
    b = locked.begin_batch(resume.id, [OPP_B], b"[]")
    locked.record_batch_result(resume.id, b.batch, "done", [result(OPP_B)])
    assert locked.confirmed(DIGEST) == {*confirmed, (OPP_B, "Status")}
    assert locked.confirmed(run.id) == locked.confirmed(resume.id)
    other = locked.begin_run(OTHER_DIGEST)
    assert locked.confirmed(other.id) == frozenset()


def test_unknown_batches_are_pending_until_resolved(locked: StateFile) -> None:
    first = locked.begin_run(DIGEST)
    timed_out = locked.begin_batch(first.id, [OPP_A], b"[1]")
    locked.record_batch_result(first.id, 1, "unknown", [result(OPP_A, status="unknown")])
    in_flight = locked.begin_batch(first.id, [OPP_B], b"[2]")  # then kill -9
    assert [b.batch for b in locked.pending_batches(DIGEST)] == [1, 2]
    resume = locked.begin_run(DIGEST)
    pending = locked.pending_batches(resume.id)
    assert [(b.run_id, b.batch, b.opportunity_ids) for b in pending] == [
        (first.id, 1, (OPP_A,)),
        (first.id, 2, (OPP_B,)),
    ]
    assert (timed_out.batch, in_flight.batch) == (1, 2)
    # Re-reading found OPP_A's value landed and OPP_B's did not (it will be sent again).
    locked.resolve_batches(resume.id, pending, [result(OPP_A)])
    assert locked.pending_batches(DIGEST) == ()
    assert [b.resolved_by for b in locked.batches(first.id)] == [resume.id, resume.id]
    assert locked.confirmed(DIGEST) == {(OPP_A, "Status")}
    assert [w.run_id for w in locked.last_written_values()] == [resume.id]
    with pytest.raises(StateError, match=f"batch 1 of run {first.id} is not pending"):
        locked.resolve_batches(resume.id, pending[:1], [])
    with pytest.raises(StateError, match="no run nope"):
        locked.resolve_batches("nope", [], [])


def test_last_written_values_follow_applied_results_only(locked: StateFile, clock: Clock) -> None:
    run = locked.begin_run(DIGEST)
    b = locked.begin_batch(run.id, [OPP_A, OPP_B], b"[]")
    locked.record_batch_result(
        run.id,
        b.batch,
        "done",
        [
            result(OPP_A, "Status", after="Won"),
            result(OPP_A, "Owner", before="u1", after="u2"),
            result(OPP_B, "Status", "failed", message="no"),
        ],
    )
    locked.record_results(run.id, [result(OPP_C, status="already_current")])
    assert locked.last_written_values() == (
        LastWritten(OPP_A, 12003, "Owner", "u2", run.id, "2024-05-01T10:00:00Z"),
        LastWritten(OPP_A, 12003, "Status", "Won", run.id, "2024-05-01T10:00:00Z"),
    )
    locked.finish_run(run.id, "partial")
    clock.advance(3600)
    later = locked.begin_run(OTHER_DIGEST)
    b = locked.begin_batch(later.id, [OPP_A], b"[]")
    locked.record_batch_result(
        later.id, b.batch, "done", [result(OPP_A, "Status", before="Won", after="Lost")]
    )
    assert locked.last_written_values()[1] == LastWritten(
        OPP_A, 12003, "Status", "Lost", later.id, "2024-05-01T11:00:00Z"
    )


def test_accepted_values_replace_last_written_and_bump_the_serial(
    locked: StateFile, clock: Clock
) -> None:
    """drift --accept records LeadSquared's values as known without a batch: already_current
    results take their after value into last_written; a stale one (the opportunity is gone)
    removes the field's row. The serial moves: what drift compares with changed."""
    run = locked.begin_run(DIGEST)
    b = locked.begin_batch(run.id, [OPP_A, OPP_B], b"[]")
    locked.record_batch_result(
        run.id, b.batch, "done", [result(OPP_A), result(OPP_B, "Owner", before="u1", after="u2")]
    )
    locked.finish_run(run.id, "succeeded")
    clock.advance(60)
    accepting = locked.begin_run("drift-accept", overrides=["--accept --all"])
    accepted = [
        result(OPP_A, status="already_current", before="Won", after="Lost", rule="drift --accept"),
        result(OPP_B, "Owner", "stale", before="u2", after="", rule="drift --accept"),
    ]
    locked.record_accepted(accepting.id, accepted)
    assert locked.last_written_values() == (
        LastWritten(OPP_A, 12003, "Status", "Lost", accepting.id, "2024-05-01T10:01:00Z"),
    )
    assert locked.results(accepting.id) == tuple(accepted)
    assert (locked.serial, locked.finish_run(accepting.id, "succeeded").serial) == (2, 2)
    with pytest.raises(ValueError, match="accepted values are already_current"):
        locked.record_accepted(accepting.id, [result(OPP_A)])


def test_accepting_needs_the_lock_and_a_run(locked: StateFile) -> None:
    with pytest.raises(StateError, match="no run nope"):
        locked.record_accepted("nope", [result(OPP_A, status="already_current")])
    run = locked.begin_run("drift-accept")
    assert locked.current_lock() is not None
    locked.release_lock(locked.current_lock().id)  # type: ignore[union-attr]
    with pytest.raises(StateError, match="lock"):
        locked.record_accepted(run.id, [result(OPP_A, status="already_current")])


def test_everything_survives_reopening(place: Place, clock: Clock) -> None:
    with place.open(now=clock) as sf:
        sf.acquire_lock("apply")
        run = sf.begin_run(DIGEST)
        b = sf.begin_batch(run.id, [OPP_A], b"[]")
        sf.record_batch_result(run.id, b.batch, "done", [result(OPP_A)])
        sf.finish_run(run.id, "succeeded")
        before = (sf.runs(), sf.results(run.id), sf.batches(run.id), sf.last_written_values())
    with place.open(now=clock) as sf:
        assert (sf.runs(), sf.results(run.id), sf.batches(run.id), sf.last_written_values()) == (
            before
        )
        assert sf.current_lock() is None  # closing released it
    if place.postgres_url is None:  # PostgreSQL checks foreign keys at every statement
        with place.raw() as db:
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
