"""What reading back applied fields found, in the state (schema 4), on both backends: the
verdicts, the counts, the last value written, the fields a resume checks again."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from state_helpers import DIGEST, OPP_A, OPP_B, OTHER_DIGEST, Clock, result

from lsqsync.errors import StateError
from lsqsync.state import database as state_module
from lsqsync.state.records import FieldResult, Verification
from lsqsync.state.schema import SCHEMA_VERSION
from lsqsync.state.store import StateFile


def applied_run(st: StateFile, *results: FieldResult, digest: str = DIGEST) -> str:
    """A run of ``digest`` whose one batch had ``results``."""
    run = st.begin_run(digest)
    batch = st.begin_batch(run.id, sorted({r.opportunity_id for r in results}), b"[]")
    st.record_batch_result(run.id, batch.batch, "done", results)
    return run.id


def last_written(st: StateFile) -> dict[tuple[str, str], tuple[str, str]]:
    return {(w.opportunity_id, w.field): (w.value, w.run_id) for w in st.last_written_values()}


def test_verdicts_are_recorded_and_counted(locked: StateFile) -> None:
    run_id = applied_run(
        locked,
        result(OPP_A),
        result(OPP_A, "mx_Custom_7", before="10", after="23500"),
        result(OPP_B, "mx_Custom_9", before="old", after=""),
    )
    assert [r.verified for r in locked.results(run_id)] == [None, None, None]
    assert len(locked.unverified(run_id)) == 3

    locked.record_verification(
        [
            Verification(run_id, OPP_A, "Status", "confirmed", None),
            Verification(run_id, OPP_A, "mx_Custom_7", "normalised", "23500.00"),
            Verification(run_id, OPP_B, "mx_Custom_9", "not_persisted", "old"),
        ]
    )

    found = {r.field: (r.verified, r.current) for r in locked.results(run_id)}
    assert found == {
        "Status": ("confirmed", None),
        "mx_Custom_7": ("normalised", "23500.00"),
        "mx_Custom_9": ("not_persisted", "old"),
    }
    counts = locked.run(run_id).counts
    assert (counts.applied, counts.confirmed, counts.normalised, counts.not_persisted) == (
        3, 1, 1, 1,
    )  # fmt: skip
    assert locked.unverified(DIGEST) == ()
    # the stored form of a normalised value is the last one written; a value that did not
    # persist is not one lsqsync wrote
    assert last_written(locked) == {
        (OPP_A, "Status"): ("Won", run_id),
        (OPP_A, "mx_Custom_7"): ("23500.00", run_id),
    }
    # a resume checks the field not persisted again, and never re-sends the others
    assert locked.confirmed(DIGEST) == {(OPP_A, "Status"), (OPP_A, "mx_Custom_7")}


def test_a_value_not_persisted_leaves_the_one_an_earlier_run_wrote(
    locked: StateFile, clock: Clock
) -> None:
    first = applied_run(locked, result(OPP_A, after="Won"), digest=OTHER_DIGEST)
    clock.advance(60)
    second = applied_run(locked, result(OPP_A, before="Won", after="Lost"))
    assert last_written(locked)[(OPP_A, "Status")] == ("Lost", second)
    locked.record_verification([Verification(second, OPP_A, "Status", "not_persisted", "Won")])
    assert last_written(locked)[(OPP_A, "Status")] == ("Won", first)
    assert [w.written for w in locked.last_written_values()] == ["2024-05-01T10:00:00Z"]


def test_unverified_lists_the_applied_fields_of_every_run_of_the_plan(locked: StateFile) -> None:
    killed = applied_run(locked, result(OPP_A), result(OPP_B, status="failed", message="x"))
    locked.finish_run(killed, "interrupted")
    resumed = applied_run(locked, result(OPP_B, "mx_Custom_9", before=None, after="note"))
    applied_run(locked, result(OPP_A, "mx_Custom_10"), digest=OTHER_DIGEST)
    assert [(run, r.opportunity_id, r.field) for run, r in locked.unverified(resumed)] == [
        (killed, OPP_A, "Status"),
        (resumed, OPP_B, "mx_Custom_9"),
    ]


def test_a_verdict_for_a_field_the_run_did_not_apply_is_refused(locked: StateFile) -> None:
    run_id = applied_run(locked, result(OPP_A, status="failed", message="MX: no"))
    with pytest.raises(StateError, match=f"run {run_id} applied no field Status of {OPP_A}"):
        locked.record_verification([Verification(run_id, OPP_A, "Status", "confirmed", None)])
    with pytest.raises(ValueError, match="not a verification verdict: 'maybe'"):
        locked.record_verification([Verification(run_id, OPP_A, "Status", "maybe", None)])  # type: ignore[arg-type]
    assert locked.results(run_id)[0].verified is None  # nothing of it was recorded
    with pytest.raises(ValueError, match="not a verification verdict: 'maybe'"):
        locked.record_results(run_id, [replace(result(OPP_B), verified="maybe")])  # type: ignore[arg-type]


def test_a_later_result_of_the_same_field_starts_unverified(locked: StateFile) -> None:
    run_id = applied_run(locked, result(OPP_A))
    locked.record_verification([Verification(run_id, OPP_A, "Status", "confirmed", None)])
    (kept,) = locked.results(run_id)
    locked.record_results(run_id, [replace(kept, verified=None, status="unknown")])
    assert locked.results(run_id)[0].verified is None


def test_a_version_3_file_gains_the_verified_column_and_keeps_its_results(
    state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "MIGRATIONS", state_module.MIGRATIONS[:3])
    with StateFile.open(state_path) as sf:
        sf.acquire_lock("apply")
        run_id = applied_run(sf, result(OPP_A))
        assert sf.unverified(run_id) == ()  # a version 3 file cannot say
    with sqlite3.connect(state_path) as db, pytest.raises(sqlite3.OperationalError):
        db.execute("SELECT verified FROM results")
    monkeypatch.undo()
    with StateFile.open(state_path, read_only=True) as sf:  # read as it is
        assert sf.results(run_id)[0].verified is None
        assert sf.schema_version == 3
    with StateFile.open(state_path) as sf:
        assert sf.schema_version == SCHEMA_VERSION
        sf.record_verification([Verification(run_id, OPP_A, "Status", "confirmed", None)])
        assert sf.run(run_id).counts.confirmed == 1
    with sqlite3.connect(state_path) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE results SET verified = 'probably'")
