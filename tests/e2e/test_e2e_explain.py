"""``lsqsync plan --explain ID`` end to end, against the emulator over real HTTP: each rule's
where (the values it tested, as read and typed), when (what it read, its result) and set
(change, already current, or held: another rule's name, once), for ids and AutoId values; its
verdicts are the plan's own; an id the rules did not read is an error with a hint."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from crm_helpers import example_project

from lsqsync.cli import main
from lsqsync.emulator import Emulator

DEAL_1 = "4f530c63-4c93-4150-8b8e-83487befb3b2"  # DEAL-000001: Open, Negotiation, 382000, Medium
DEAL_11 = "906704c3-65d6-4b6e-86e3-db95d4350b28"  # DEAL-000011: Open, Proposal, 221000, High
DEAL_16 = "45547d9d-0b9e-4d4d-82a4-c12e779409b9"  # DEAL-000016: Open, Prospecting, 473000
DEAL_2 = "aa2ca1af-6a10-4b75-a77f-6cbdcc22af58"  # DEAL-000002: Won
NOW = ["--now", "2026-11-27 10:00:00"]

RULES = """\
version: 1
rules:
  - name: flag-big-open
    opportunity_type: 12003
    where:
      Status: Open
      mx_Custom_6: {gt: 250000}
    when: "opp.mx_Custom_2 in ['Negotiation', 'Proposal']"
    set: {mx_Custom_10: High}

  - name: open-is-high
    opportunity_type: 12003
    where:
      Status: Open
      mx_Custom_6: {gte: "380,000"}
      mx_Custom_11: {empty: false}
    set: {mx_Custom_10: High}

  - name: note-won-once
    opportunity_type: 12003
    once: true
    where: {Status: Won}
    set: {mx_Custom_9: "won"}

  - name: note-lost-loans
    opportunity_type: 12000
    where: {Status: Lost}
    set: {mx_Custom_9: "lost"}
"""


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


@pytest.fixture
def project(tmp_path: Path, connected: Emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    example_project(tmp_path)
    config = tmp_path / "lsqsync.yml"
    text = config.read_text()
    config.write_text(text.replace("max_change_ratio: 0.3", "max_change_ratio: 1"))
    for f in (tmp_path / "rules").glob("*.yml"):
        f.unlink()
    (tmp_path / "rules" / "deals.yml").write_text(RULES)
    return tmp_path


def test_explain_shows_each_rule_with_the_values_it_read(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["plan", "--explain", DEAL_1, *NOW], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"opportunity {DEAL_1} (type 12003 Enterprise Deal)",
        "  rule flag-big-open (rules/deals.yml:3): matched; changes it",
        "    selects: every opportunity of type 12003",
        '    where Status eq "Open": holds (read "Open" (dropdown))',
        '    where mx_Custom_6 gt 250000: holds (read "382000" (number))',
        "    when opp.mx_Custom_2 in ['Negotiation', 'Proposal']: true"
        ' (read mx_Custom_2 = "Negotiation" (dropdown))',
        '    set mx_Custom_10: "Medium" (dropdown) -> "High": change',
        '    premise: apply sends its changes only while Status "Open", mx_Custom_2 '
        '"Negotiation", mx_Custom_6 "382000"',
        "  rule open-is-high (rules/deals.yml:11): matched; changes it, in another rule's name"
        " (the same value)",
        "    selects: every opportunity of type 12003",
        '    where Status eq "Open": holds (read "Open" (dropdown))',
        '    where mx_Custom_6 gte "380,000": holds (read "382000" (number))',
        "    where mx_Custom_11 empty false: holds (read ***)",
        '    set mx_Custom_10: "Medium" (dropdown) -> "High": change, in another rule\'s name:'
        " rule 'flag-big-open' sets the same value and comes first",
        "  rule note-won-once (rules/deals.yml:19): not matched: a where condition fails",
        "    selects: every opportunity of type 12003",
        '    where Status eq "Won": fails (read "Open" (dropdown))',
        "  rules for other types (not evaluated): note-lost-loans (type 12000)",
    ]


def test_explain_takes_autoid_values_and_several_ids_and_says_when_is_false(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        ["plan", "--explain", "DEAL-000016", "--explain", DEAL_11, "--format", "json", *NOW],
        capsys,
    )
    assert code == 0
    deal_16, deal_11 = json.loads(out)
    assert (deal_16["id"], deal_11["id"]) == (DEAL_16, DEAL_11)
    flag = deal_16["rules"][0]
    assert (flag["rule"], flag["outcome"]) == ("flag-big-open", "when fails")
    assert flag["when"] == {
        "expression": "opp.mx_Custom_2 in ['Negotiation', 'Proposal']",
        "reads": {
            "mx_Custom_2": {"read": "Prospecting", "typed": "Prospecting", "kind": "dropdown"}
        },
        "result": False,
        "failure": None,
    }
    assert flag["set"] == []
    assert deal_16["rules"][1]["outcome"] == "change"  # open-is-high, in its own name
    # a where that fails: the value it tested, as read
    where = deal_11["rules"][0]["where"]
    assert where[1] == {
        "field": "mx_Custom_6", "op": "gt", "value": 250000, "holds": False,
        "read": "221000", "typed": "221000", "kind": "number",
    }  # fmt: skip
    assert deal_11["rules"][0]["when"] is None  # not evaluated when a where fails
    assert deal_11["other_types"] == [{"rule": "note-lost-loans", "opportunity_type": 12000}]


def test_explain_agrees_with_the_plan_for_every_deal(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["plan", "--target", "flag-big-open", "--target", "open-is-high",
                        "--target", "note-won-once", "--format", "json", *NOW], capsys)  # fmt: skip
    assert code == 0
    plan = json.loads(out)
    listed = ["opportunities", "list", "--type", "12003", "--limit", "1000", "--format", "json"]
    code, out, _ = run(listed, capsys)
    ids = [o["id"] for o in json.loads(out)]
    assert len(ids) > 20
    args = [a for i in ids for a in ("--explain", i)]
    code, out, _ = run(["plan", *args, "--format", "json", *NOW], capsys)
    assert code == 0
    outcomes: Counter[tuple[str, str]] = Counter()
    changed: set[tuple[str, str]] = set()
    for e in json.loads(out):
        for r in e["rules"]:
            outcomes[(r["rule"], r["outcome"])] += 1
            changed |= {(e["id"], v["field"]) for v in r["set"] if v["verdict"] == "change"}
    for c in plan["rule_counts"]:
        assert c["matched"] == sum(
            n for (rule, outcome), n in outcomes.items()
            if rule == c["rule"] and outcome not in ("not selected", "where fails", "when fails")
        )  # fmt: skip
        assert c["changing"] == outcomes[(c["rule"], "change")]
        assert c["current"] == outcomes[(c["rule"], "current")]
        assert c["by_other_rule"] == outcomes[(c["rule"], "by other rule")]
    assert changed == {(c["id"], f["field"]) for c in plan["changes"] for f in c["fields"]}
    # a mixed set: every outcome a rule can have without a state file occurs
    assert {outcome for _, outcome in outcomes} == {
        "where fails", "when fails", "change", "current", "by other rule",
    }  # fmt: skip


def test_explain_shows_a_change_held_by_once(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["plan", "--target", "note-won-once", "--out", "p.json", *NOW], capsys)[0] == 0
    assert run(["apply", "p.json"], capsys)[0] == 0
    code, out, _ = run(["plan", "--explain", DEAL_2, *NOW], capsys)
    assert code == 0
    lines = out.splitlines()
    start = lines.index(
        "  rule note-won-once (rules/deals.yml:19): matched; left alone (once: true, and it"
        " wrote this opportunity before)"
    )
    assert lines[start + 3] == (
        '    set mx_Custom_9: "won" (text) -> "won": held: once: true, and this rule wrote the'
        " opportunity before"
    )


def test_explain_hides_masked_values(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plan", "--format", "json", *NOW], capsys)
    plan = json.loads(out)
    secret = next(
        p["read"]["mx_Custom_11"]
        for c in plan["changes"]
        for p in c["premises"]
        if "mx_Custom_11" in p["read"]
    )
    assert secret
    opp = next(c["id"] for c in plan["changes"] if "open-is-high" in json.dumps(c["premises"]))
    for fmt in ("text", "json"):
        code, out, _ = run(["plan", "--explain", opp, "--format", fmt, *NOW], capsys)
        assert code == 0
        assert "***" in out
        assert secret not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (  # a typo
            ["--explain", DEAL_1[:-1] + "3"],
            f"error: --explain {DEAL_1[:-1]}3: not among the opportunities the rules read: did "
            f"you mean {DEAL_1}? (the rules read type 12000 Home Loan, 12003 Enterprise Deal)",
        ),
        (  # a Home Loan, when only the deal rules are planned
            ["--target", "flag-big-open", "--explain", "3fbb1a6e-0000-4000-8000-000000000001"],
            "error: --explain 3fbb1a6e-0000-4000-8000-000000000001: not among the opportunities "
            "the rules read: LeadSquared has no opportunity 3fbb1a6e-0000-4000-8000-000000000001 "
            "(the rules read type 12003 Enterprise Deal)",
        ),
        (
            ["--explain", "DEAL-999"],
            "error: --explain DEAL-999: not among the opportunities the rules read: not an "
            "opportunity id, nor an AutoId value of type 12000 Home Loan, 12003 Enterprise Deal",
        ),
    ],
)
def test_an_id_the_rules_did_not_read_is_an_error_with_a_hint(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(["plan", *args, *NOW], capsys)
    assert (code, out) == (1, "")
    assert message in err.splitlines()


def test_an_id_of_another_type_says_its_type(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["opportunities", "list", "--type", "12000", "--format", "json"], capsys)
    loan = json.loads(out)[0]["id"]
    code, out, err = run(["plan", "--target", "flag-big-open", "--explain", loan, *NOW], capsys)
    assert (code, out) == (1, "")
    assert (
        f"error: --explain {loan}: not among the opportunities the rules read: it is an "
        "opportunity of type Home Loan; the rules read type 12003 Enterprise Deal"
    ) in err.splitlines()


def test_explain_exits_as_plan_and_saves_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    detailed = ["plan", "--detailed-exitcode", *NOW, "--explain"]
    assert run([*detailed, DEAL_1], capsys)[0] == 2  # it changes
    assert run([*detailed, DEAL_11], capsys)[0] == 0  # nothing changes it
    code, out, err = run(["plan", "--explain", DEAL_1, "--out", "p.json", *NOW], capsys)
    assert (code, out) == (1, "")
    assert "--explain saves no plan" in err
    assert not (project / "p.json").exists()
    code, _, err = run(["plan", "--explain", DEAL_1, "--format", "markdown", *NOW], capsys)
    assert code == 1
    assert "--explain prints text or json" in err
