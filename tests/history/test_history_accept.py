"""drift --accept and --undo-accept, end to end: the emulator over real HTTP, a real state
file, and people's edits made in the emulator behind lsqsync's back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run
from crm_helpers import example_project, write_directly

from lsqsync.emulator import Emulator
from lsqsync.state.records import FieldResult
from lsqsync.state.store import StateFile

NOW = ["--now", "2026-11-27 10:00:00"]
GONE = "00000000-0000-4000-8000-0000000000aa"
# mx_Custom_9 as drift names it: its display name in each type, then its schema name
NOTE = {12000: "Remarks (mx_Custom_9)", 12003: "Closing Note (mx_Custom_9)"}


@pytest.fixture
def applied(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[str, list[dict[str, str]]]:
    """The example project planned and applied: the run's id and its note fields."""
    monkeypatch.chdir(tmp_path)
    example_project(tmp_path)
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    assert run(["apply", "p.json"], capsys)[0] == 0
    shown = json.loads(run(["state", "show", "last", "--format", "json"], capsys)[1])
    notes = [r for r in shown["results"] if r["field"] == "mx_Custom_9"]
    assert len(notes) >= 2
    return shown["run"]["id"], notes


def edit(emu: Emulator, note: dict[str, str], value: str) -> None:
    write_directly(
        emu,
        [{"ProspectOpportunityId": note["opportunity_id"],
          "OpportunityEventCode": note["opportunity_type"],
          "Fields": [{"SchemaName": "mx_Custom_9", "Value": value}]}],
    )  # fmt: skip


def test_accepted_drift_is_no_longer_drift_and_an_undo_brings_it_back(
    connected: Emulator,
    applied: tuple[str, list[dict[str, str]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    apply_run, (first, second, *_) = applied
    note = NOTE[first["opportunity_type"]]
    edit(connected, first, "called the client: keep open")
    edit(connected, second, "")
    code, out, _ = run(["drift"], capsys)
    assert code == 2
    assert (
        f"~ {first['opportunity_id']} (type {first['opportunity_type']}) {note}: wrote "
        f'"{first["after"]}" (run {apply_run}), now "called the client: keep open"'
    ) in out.splitlines()
    assert out.endswith(
        "Drift: 2 fields changed outside lsqsync.\n"
        "To take LeadSquared's values as the known ones: lsqsync drift --accept RUN (the fields "
        "that run wrote) or --accept --all.\n"
    )

    code, out, err = run(["drift", "--accept", apply_run[:12]], capsys)
    assert (code, err) == (0, "")
    accepting = out.splitlines()[-1].removeprefix("To undo: lsqsync drift --undo-accept ")
    assert out.splitlines()[-2] == (
        f"Accepted 2 fields as LeadSquared holds them (run {accepting}); nothing was sent. "
        "Drift now reports only later edits."
    )
    assert run(["drift"], capsys)[:2] == (
        0,
        "No drift: LeadSquared holds every value lsqsync last wrote.\n",
    )
    # a run of its own: nothing sent, each field already current, the serial moved on
    runs = json.loads(run(["state", "runs", "--format", "json"], capsys)[1])["runs"]
    assert [(r["plan_digest"], r["serial"], r["overrides"]) for r in runs[1:]] == [
        ("drift-accept", 2, [f"--accept {apply_run}"])
    ]
    shown = json.loads(run(["state", "show", accepting, "--format", "json"], capsys)[1])
    statuses = {(r["opportunity_id"], r["status"], r["after"]) for r in shown["results"]}
    assert statuses == {
        (first["opportunity_id"], "already_current", "called the client: keep open"),
        (second["opportunity_id"], "already_current", ""),
    }

    # a later edit is drift again, against the accepted value
    edit(connected, first, "lost after all")
    code, out, _ = run(["drift"], capsys)
    assert code == 2
    assert out.splitlines()[0] == (
        f"~ {first['opportunity_id']} (type {first['opportunity_type']}) {note}: accepted "
        f'"called the client: keep open" (run {accepting}), now "lost after all"'
    )

    # undone: drift compares with what the apply wrote again
    code, out, _ = run(["drift", "--undo-accept", accepting], capsys)
    assert code == 0
    assert out.splitlines()[-1].startswith("Put back 2 fields (run ")
    code, out, _ = run(["drift", "--format", "json"], capsys)
    assert code == 2
    rows = {r["opportunity_id"]: r for r in json.loads(out)}
    assert rows[first["opportunity_id"]]["written"] == first["after"]
    assert rows[first["opportunity_id"]]["known_by"] == "undo"
    assert rows[second["opportunity_id"]]["current"] is None
    # an undone accept cannot be undone twice; a rollback of it is refused with the way back
    code, out, _ = run(["drift", "--undo-accept", accepting], capsys)
    assert code == 0
    assert out.endswith("No changes: nothing to undo; the state is as it was.\n")
    assert "(changed since by run " in out
    code, _, err = run(["rollback", accepting, "--out", "r.json"], capsys)
    assert (code, err) == (
        1,
        f"error: run {accepting} sent nothing to LeadSquared: it recorded values as known "
        f"(drift --accept). To reverse it: lsqsync drift --undo-accept {accepting}\n",
    )
    code, _, err = run(["drift", "--undo-accept", apply_run], capsys)
    assert code == 1
    assert err.startswith(f"error: run {apply_run} did not accept drift (its plan is ")


def test_accept_all_forgets_opportunities_that_no_longer_exist(
    connected: Emulator,
    applied: tuple[str, list[dict[str, str]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An opportunity deleted in LeadSquared was drift forever; accepting stops comparing it,
    and undoing the acceptance compares it again."""
    state = Path(".lsqsync/state.db")
    with StateFile.open(state, create=False) as st:
        lock = st.acquire_lock("test")
        seeded = st.begin_run("drift-accept")
        st.record_accepted(
            seeded.id,
            [FieldResult(GONE, 12003, "mx_Custom_9", None, "kept", "already_current", "t")],
        )
        st.finish_run(seeded.id, "succeeded")
        st.release_lock(lock.id)
    code, out, _ = run(["drift"], capsys)
    assert code == 2
    assert out.splitlines()[0] == (
        f'~ {GONE} (type 12003) Closing Note (mx_Custom_9): accepted "kept" (run {seeded.id}), '
        "the opportunity no longer exists"
    )
    code, out, _ = run(["drift", "--accept", "--all"], capsys)
    assert code == 0
    assert out.splitlines()[0] == (
        f'~ {GONE} (type 12003) Closing Note (mx_Custom_9): "kept" -> the opportunity no longer '
        "exists"
    )
    assert run(["drift"], capsys)[0] == 0
    accepting = out.splitlines()[-1].rsplit(" ", 1)[-1]
    assert run(["drift", "--undo-accept", accepting], capsys)[0] == 0
    assert run(["drift"], capsys)[0] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--accept"], "--accept takes RUN (the drifted fields that run wrote) or --all"),
        (["--all"], "--all goes with --accept: lsqsync drift --accept --all"),
        (["--accept", "last", "--all"], "--accept takes RUN (the drifted fields that run"),
        (["--undo-accept", "last", "--accept", "--all"], "--undo-accept cannot be combined"),
    ],
)
def test_accept_takes_a_run_or_all(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # refused before any file is read
    code, out, err = run(["drift", *args], capsys)
    assert (code, out) == (1, "")
    assert message in err
