"""``lsqsync reconcile`` end to end against the emulator: the changes of ``apply: auto`` rules are
applied through apply's own path (state, journal, re-checks) within their limits and the safety
limits; the rest is saved as a plan for review; exit 0, 2, 3 or 1."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_helpers import run
from crm_helpers import NO_LIMIT, write_directly, writes

from lsqsync import reconcile as standing
from lsqsync.config import Safety, load_config
from lsqsync.emulator import Emulator
from lsqsync.lsq import Limit
from lsqsync.plan import planfile
from lsqsync.plan.model import PLAN_LIFETIME, FieldChange, Inputs, OpportunityChange, assemble
from lsqsync.rules.project import load_project
from lsqsync.state.store import StateFile

AUTO = """\
  - name: flag-high-value
    apply: auto
    LIMITS
    opportunity_type: 12003
    where: {Status: Open, mx_Custom_6: {gte: 400000}}
    set: {mx_Custom_10: High}
"""
REVIEW = """\
  - name: note-rejected-loans
    opportunity_type: 12000
    where: {Status: Lost, mx_Custom_2: Rejected}
    set: {mx_Custom_9: Rejected}
"""


def write(
    root: Path, *rules: str, limits: str = "limits: {max_changes: 10}", safety: str = ""
) -> None:
    root.joinpath("rules").mkdir(exist_ok=True)
    config = f"version: 1\nrate_limit: {NO_LIMIT}\n{safety}"
    (root / "lsqsync.yml").write_text(config)
    body = "".join(rules).replace("LIMITS", limits)
    (root / "rules" / "rules.yml").write_text(f"version: 1\nrules:\n{body}")


@pytest.fixture
def project(connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def rules_of(plan_path: Path) -> set[str]:
    plan = planfile.load(plan_path)  # schema and digest checked: a plan apply accepts
    return {f.rule for c in plan.changes for f in c.changes}


def test_auto_rules_are_applied_and_recorded_and_the_rest_is_saved_for_review(
    project: Path, connected: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project, AUTO, REVIEW)

    code, out, err = run(["reconcile"], capsys)

    assert code == 2, err
    lines = out.splitlines()
    assert lines[0] == "Applied without review (apply: auto): 2 opportunities (2 fields)."
    assert lines[1].endswith(": succeeded.")
    assert lines[-3:] == [
        "Waiting for review: 1 opportunity (1 field), saved to .lsqsync/review.plan.json "
        f"(digest {planfile.load(project / '.lsqsync/review.plan.json').digest[:12]}).",
        "  note-rejected-loans: apply: review",
        "Review it with: lsqsync show .lsqsync/review.plan.json; apply it with: lsqsync apply "
        ".lsqsync/review.plan.json",
    ]
    assert len(writes(connected)) == 1
    with StateFile.open(project / ".lsqsync" / "state.db", create=False) as st:
        (run_,) = st.runs()
        results = st.results(run_.id)
    assert run_.outcome == "succeeded"
    assert {(r.rule, r.field, r.after, r.status) for r in results} == {
        ("flag-high-value", "mx_Custom_10", "High", "applied")
    }
    assert len(results) == 2
    assert rules_of(project / ".lsqsync" / "review.plan.json") == {"note-rejected-loans"}

    # the saved plan is applied as any reviewed plan is
    code, out, _ = run(["apply", ".lsqsync/review.plan.json"], capsys)
    assert (code, out.splitlines()[0].endswith(": succeeded.")) == (0, True)

    # nothing left: nothing applied, nothing waits
    before = len(writes(connected))
    assert run(["reconcile", "--format", "json"], capsys)[:2] == (
        0,
        json.dumps({"applied": None, "review": None, "refused": None}, indent=2) + "\n",
    )
    assert len(writes(connected)) == before


@pytest.mark.parametrize(
    ("limits", "why"),
    [
        (
            "limits: {max_changes: 1}",
            "it changes 2 opportunities, more than its limits.max_changes (1)",
        ),
        (
            "limits: {max_change_ratio: 0.05}",
            "it changes 2 of the 31 opportunities of type 12003 (6%), more than its "
            "limits.max_change_ratio (5%)",
        ),
    ],
)
def test_an_auto_rule_over_its_limits_waits_for_review(
    project: Path,
    connected: Emulator,
    capsys: pytest.CaptureFixture[str],
    limits: str,
    why: str,
) -> None:
    write(project, AUTO, limits=limits)

    code, out, _ = run(["reconcile", "--out", "waiting.plan.json", "--format", "json"], capsys)

    assert code == 2
    assert writes(connected) == []
    review = json.loads(out)["review"]
    assert review["rules"] == {"flag-high-value": f"apply: auto, but {why}"}
    plan = planfile.load(project / "waiting.plan.json")
    assert plan.warnings == (
        f"rule 'flag-high-value' is apply: auto, but {why}: its changes wait for review",
    )
    assert not (project / ".lsqsync" / "state.db").exists()  # nothing applied


def test_an_opportunity_with_a_change_that_waits_waits_whole(
    project: Path, connected: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # a review rule on the same deals: their fields were planned together, they go together
    note = REVIEW.replace("note-rejected-loans", "note-big-deals").replace("12000", "12003")
    note = note.replace("{Status: Lost, mx_Custom_2: Rejected}", "{mx_Custom_6: {gte: 400000}}")
    write(project, AUTO, note)

    code, out, _ = run(["reconcile"], capsys)

    assert (code, writes(connected)) == (2, []), out
    plan = planfile.load(project / ".lsqsync" / "review.plan.json")
    together = [c for c in plan.changes if len({f.rule for f in c.changes}) == 2]
    assert together, "a deal the two rules both change"
    assert any(w.startswith("rule 'flag-high-value' is apply: auto, but ") for w in plan.warnings)
    for c in together:  # not written: they wait with the review change
        assert {f.rule for f in c.changes} == {"flag-high-value", "note-big-deals"}


def test_changes_over_the_safety_limits_are_neither_applied_nor_saved(
    project: Path, connected: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project, AUTO, REVIEW, safety="safety: {max_changes: 1}\n")

    code, out, err = run(["reconcile"], capsys)

    assert code == 1
    assert writes(connected) == []
    assert (
        "  flag-high-value: apply: auto, but the auto rules' changes exceed the safety limits\n"
        in out
    )
    assert err.splitlines()[-1] + "\n" == (
        "error: the changes that wait for review were not saved: it changes 3 opportunities, more"
        " than safety.max_changes (1). Review the rules, or plan them with lsqsync plan "
        "--allow-large\n"
    )
    assert not (project / ".lsqsync" / "review.plan.json").exists()


def test_review_changes_over_the_safety_limits_do_not_stop_the_auto_ones(
    project: Path, connected: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    every_open_loan = REVIEW.replace("{Status: Lost, mx_Custom_2: Rejected}", "{Status: Open}")
    write(project, AUTO, every_open_loan)

    code, out, err = run(["reconcile"], capsys)

    assert code == 1
    assert out.startswith("Applied without review (apply: auto): 2 opportunities (2 fields).\n")
    assert len(writes(connected)) == 1
    assert "more than safety.max_change_ratio (30%)" in err
    assert not (project / ".lsqsync" / "review.plan.json").exists()


def test_a_field_changed_while_applying_makes_a_partial_run(
    project: Path, connected: Emulator
) -> None:
    write(project, AUTO)
    edited: list[str] = []

    def meanwhile(message: str) -> None:
        # between the plan and apply's re-read, a person edits a planned field
        if message.startswith("re-reading") and not edited:
            plan = next((project / ".lsqsync").glob("reconcile-*.json"))
            change = planfile.load(plan).changes[0]
            write_directly(connected, [{
                "ProspectOpportunityId": change.id, "OpportunityEventCode": 12003,
                "Fields": [{"SchemaName": "mx_Custom_10", "Value": "Low"}],
            }])  # fmt: skip
            edited.append(change.id)

    options = standing.ReconcileOptions(out=project / "review.plan.json")
    result = standing.reconcile(None, {}, options, meanwhile)

    assert result.exit_code == 3
    assert result.summary is not None
    assert (result.summary.outcome, result.summary.counts["stale"]) == ("partial", 1)
    assert result.review is None
    assert standing.render(result, "text").splitlines()[-1] == "Nothing waits for review."


@pytest.mark.parametrize(("total", "applied"), [(9, True), (10, False)])
def test_a_rule_s_share_counts_only_for_types_of_ten_or_more(
    tmp_path: Path, total: int, applied: bool
) -> None:
    write(tmp_path, AUTO, limits="limits: {max_change_ratio: 0.1}")
    rules = load_project(load_config(tmp_path)).rules
    field = FieldChange("mx_Custom_10", None, "High", "flag-high-value", "r.yml:3")
    changes = [
        OpportunityChange(f"deal-{i}", 12003, ("flag-high-value",), (field,)) for i in range(5)
    ]
    plan = assemble(
        changes,
        Inputs({}, {}, "2026-01-01 00:00:00", "https://api.example.com"),
        version="0",
        created=datetime(2026, 1, 1, tzinfo=UTC),
        lifetime=PLAN_LIFETIME,
        rule_sources={"flag-high-value": "r.yml:3"},
        type_totals={12003: ("Deal", total)},
        rate=Limit(25, 5),
        read_calls=0,
    )

    parts = standing.split(plan, rules, Safety(max_changes=1000, max_change_ratio=1.0))

    assert (len(parts.auto), len(parts.review)) == ((5, 0) if applied else (0, 5))
