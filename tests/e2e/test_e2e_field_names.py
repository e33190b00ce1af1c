"""Fields by the names people know, end to end over real HTTP against the emulator with a real
state file: a plan (text, Markdown, JSON), ``show`` of the saved plan with no network, ``state
show`` (every format), ``drift`` and ``drift --accept``, apply's fields that need a look, and a
rollback's plan all name ``mx_Custom_2`` as ``Stage (mx_Custom_2)``; JSON keeps the schema name
as the field and adds the display name; a run recorded without labels falls back to the types
snapshot, then to the schema name."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import run
from crm_helpers import ROOT, example_project, write_directly

from lsqsync.emulator import Emulator
from lsqsync.state.records import FieldResult
from lsqsync.state.store import StateFile

NOW = ["--now", "2026-11-27 10:00:00"]
DEAL = "aa2ca1af-6a10-4b75-a77f-6cbdcc22af58"  # DEAL-000002: Won, Closed Won
LOAN = "c7af3626-f949-4568-9eb0-e066de26e655"  # a home loan
OTHER = "ff000000-0000-4000-8000-000000000001"  # of a type the snapshot does not hold
RULES = f"""\
version: 1
rules:
  - name: reopen-deal
    opportunity_type: 12003
    ids: [{DEAL}]
    set:
      Status: Open
      mx_Custom_2: Negotiation
      mx_Custom_9: reopened
  - name: loan-note
    opportunity_type: 12000
    ids: [{LOAN}]
    set:
      mx_Custom_9: checked
"""
STAGE = "Stage (mx_Custom_2)"


@pytest.fixture
def project(connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    example_project(tmp_path)
    for f in (tmp_path / "rules").glob("*.yml"):
        f.unlink()
    (tmp_path / "rules" / "reopen.yml").write_text(RULES)
    return tmp_path


def test_a_plan_names_fields_by_display_name_and_keeps_schema_names_in_json(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text, _ = run(["plan", "--out", "p.json", *NOW], capsys)
    assert code == 0
    lines = text.splitlines()
    assert (
        '    ~ Stage (mx_Custom_2): "Closed Won" -> "Negotiation"   # reopen-deal (line 8)' in lines
    )
    assert '    ~ Status: "Won" -> "Open"   # reopen-deal (line 7)' in lines  # its own name
    # one schema name, another field in each type: each opportunity's line says which
    assert (
        '    ~ Closing Note (mx_Custom_9): (empty) -> "reopened"   # reopen-deal (line 9)' in lines
    )
    assert '    ~ Remarks (mx_Custom_9): (empty) -> "checked"   # loan-note (line 14)' in lines
    assert "    Closing Note / Remarks (mx_Custom_9): 2 opportunities" in lines  # the summary
    assert f"    {STAGE}: 1 opportunity" in lines

    code, markdown, _ = run(["plan", "--format", "markdown", *NOW], capsys)
    assert code == 0
    assert "| Stage (mx\\_Custom\\_2) | 1 |" in markdown.splitlines()
    assert '+     Stage (mx_Custom_2): "Negotiation"   # reopen-deal (line 8)' in markdown

    data = json.loads((project / "p.json").read_text())
    assert data["field_labels"] == {
        "12000": {"mx_Custom_9": "Remarks"},
        "12003": {"Status": "Status", "mx_Custom_2": "Stage", "mx_Custom_9": "Closing Note"},
    }
    deal = next(c for c in data["changes"] if c["id"] == DEAL)
    assert [f["field"] for f in deal["fields"]] == ["Status", "mx_Custom_2", "mx_Custom_9"]


def test_show_of_a_saved_plan_names_fields_without_the_network(
    project: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    refused: list[object] = request.getfixturevalue("no_network")  # from here on, no network
    code, text, _ = run(["show", "p.json"], capsys)
    assert code == 0
    assert '    ~ Stage (mx_Custom_2): "Closed Won" -> "Negotiation"   # reopen-deal (line 8)' in (
        text.splitlines()
    )
    code, markdown, _ = run(["show", "p.json", "--format", "markdown"], capsys)
    assert code == 0
    assert "| Stage (mx\\_Custom\\_2) | 1 |" in markdown.splitlines()
    assert refused == []


def test_state_show_drift_and_accept_name_fields_by_display_name(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    assert run(["apply", "p.json"], capsys)[0] == 0

    code, text, _ = run(["state", "show", "last"], capsys)
    assert code == 0
    row = next(line for line in text.splitlines() if "Negotiation" in line)
    assert f"  12003  {STAGE}  " in row
    data = json.loads(run(["state", "show", "last", "--format", "json"], capsys)[1])
    stage = next(r for r in data["results"] if r["field"] == "mx_Custom_2")
    assert stage["field_label"] == "Stage"
    rows = list(
        csv.DictReader(io.StringIO(run(["state", "show", "last", "--format", "csv"], capsys)[1]))
    )
    assert {(r["field"], r["field_label"]) for r in rows} >= {("mx_Custom_2", "Stage")}

    write_directly(
        connected,
        [{"ProspectOpportunityId": DEAL, "OpportunityEventCode": 12003,
          "Fields": [{"SchemaName": "mx_Custom_2", "Value": "Proposal"}]}],
    )  # fmt: skip
    code, text, _ = run(["drift"], capsys)
    assert code == 2
    assert f"~ {DEAL} (type 12003) {STAGE}: wrote " in text
    code, out, _ = run(["drift", "--format", "json"], capsys)
    assert code == 2
    (drifted,) = json.loads(out)
    assert (drifted["field"], drifted["field_label"]) == ("mx_Custom_2", "Stage")

    code, text, _ = run(["drift", "--accept", "last"], capsys)
    assert code == 0
    assert f'~ {DEAL} (type 12003) {STAGE}: "Negotiation" -> "Proposal"' in text.splitlines()
    # the accepting run keeps the labels too
    code, text, _ = run(["state", "show", "last"], capsys)
    assert f"  12003  {STAGE}  " in text


def test_apply_and_rollback_name_the_fields_that_changed_since_the_plan(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    write_directly(
        connected,
        [{"ProspectOpportunityId": DEAL, "OpportunityEventCode": 12003,
          "Fields": [{"SchemaName": "mx_Custom_2", "Value": "Lost to Competitor"},
                     {"SchemaName": "Status", "Value": "Lost"}]}],
    )  # fmt: skip
    code, out, _ = run(["apply", "p.json"], capsys)
    assert code == 3
    assert (
        f'  stale  {DEAL} (12003) {STAGE}: "Closed Won" → "Negotiation", now '
        '"Lost to Competitor": changed in LeadSquared since the plan'
    ) in out.splitlines()
    assert 'Closing Note (mx_Custom_9): (empty) → "reopened", now (empty): premise changed: ' in out

    # the loan's note was applied; a hand edit, then a rollback leaves it alone and says so
    write_directly(
        connected,
        [{"ProspectOpportunityId": LOAN, "OpportunityEventCode": 12000,
          "Fields": [{"SchemaName": "mx_Custom_9", "Value": "by hand"}]}],
    )  # fmt: skip
    code, out, _ = run(["rollback", "last", "--out", "back.json"], capsys)
    assert code == 0
    assert f"is left alone: {LOAN} Remarks (mx_Custom_9)" in out


def test_a_run_without_labels_falls_back_to_the_types_snapshot_then_the_schema_name(
    project: Path, capsys: pytest.CaptureFixture[str], no_network: list[object]
) -> None:
    with StateFile.open(project / ".lsqsync" / "state.db", create=True) as sf:
        lock = sf.acquire_lock("apply")
        run_id = sf.begin_run("d" * 64).id  # as a run of a state before schema 5
        sf.record_results(
            run_id,
            [
                FieldResult(DEAL, 12003, "mx_Custom_2", "Proposal", "Negotiation", "applied", "r"),
                FieldResult(OTHER, 12004, "mx_Custom_2", None, "x", "applied", "r"),
            ],
        )
        sf.finish_run(run_id, "succeeded")
        sf.release_lock(lock.id)

    code, text, _ = run(["state", "show", run_id], capsys)
    assert code == 0
    assert [line.split()[2] for line in text.splitlines()[-2:]] == ["mx_Custom_2", "mx_Custom_2"]

    shutil.copytree(ROOT / "types", project / "types")  # the snapshot has 12003, not 12004
    code, text, _ = run(["state", "show", run_id], capsys)
    assert code == 0
    deal, other = text.splitlines()[-2:]
    assert f"  12003  {STAGE}  " in deal
    assert "  12004  mx_Custom_2  " in other
    data = json.loads(run(["state", "show", run_id, "--format", "json"], capsys)[1])
    assert [r["field_label"] for r in data["results"]] == ["Stage", None]
    assert no_network == []
