"""``plan --explain``'s verdicts are the planner's: summed over every opportunity, its outcomes
are the plan's per-rule counts, and its changes are the plan's changes."""

from __future__ import annotations

import os
import textwrap
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from test_plan_planner import NOW, A, B, C, deal, snapshot

from lsqsync.config import load_config
from lsqsync.errors import LsqsyncError
from lsqsync.plan import explain
from lsqsync.plan.planner import PlanOptions, build_plan
from lsqsync.rules.project import load_project

RULES = """
    - name: first
      opportunity_type: 12003
      where: {mx_Custom_6: {gt: 100000}}
      when: "opp.Status == 'Open'"
      set: {mx_Custom_10: High}
    - name: same-value-later
      opportunity_type: 12003
      ids: [A, B, C]
      set: {mx_Custom_10: High}
    - name: stamp
      opportunity_type: 12003
      once: true
      set: {mx_Custom_1: "{{ opp.mx_Custom_9 }}x"}
    """
NOT_MATCHED = ("not selected", "where fails", "when fails")


def test_explain_sums_to_the_plans_counts(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    (tmp_path / "lsqsync.yml").write_text("version: 1\nmask: [mx_Custom_9]\n")
    rules = RULES.replace("[A, B, C]", f"[{A}, {B}, {C}]")
    (tmp_path / "rules" / "r.yml").write_text(
        "version: 1\nrules:\n" + textwrap.indent(textwrap.dedent(rules).strip("\n") + "\n", "  ")
    )
    project = load_project(load_config(tmp_path / "lsqsync.yml"))
    records = [
        deal(A, mx_Custom_6="150000"),
        deal(B, mx_Custom_6="150000", mx_Custom_10="High", mx_Custom_9="High"),
        deal(C, mx_Custom_6="150000", Status="Lost", mx_Custom_2="Lost to Competitor"),
    ]
    snap = snapshot(records, None)
    options = PlanOptions(
        now=NOW, created_at=datetime(2026, 11, 27, 9), lsqsync_version="test",
        input_files={}, once_written={"stamp": frozenset({A})},
    )  # fmt: skip
    plan = build_plan(project, snap, "https://api.example", options)
    found = explain.explain(project, snap, plan, options, [A, B, C])
    outcomes = Counter((r.rule, r.outcome) for e in found for r in e.rules)
    assert {o for _, o in outcomes} >= {"change", "current", "by other rule", "once", "when fails"}
    for count in plan.rule_counts:
        mine = {o: n for (rule, o), n in outcomes.items() if rule == count.rule}
        assert count.matched == sum(n for o, n in mine.items() if o not in NOT_MATCHED)
        assert (count.changing, count.current) == (mine.get("change", 0), mine.get("current", 0))
        assert (count.by_other_rule, count.once) == (
            mine.get("by other rule", 0),
            mine.get("once", 0),
        )
    changed = {
        (e.id, v.field) for e in found for r in e.rules for v in r.set if v.verdict == "change"
    }
    assert changed == {(c.id, f.field) for c in plan.changes for f in c.changes}
    # a value computed from a masked field is not shown
    text = explain.render_text(found) + explain.render_json(found)
    assert "Highx" not in text
    assert "    set mx_Custom_1: (empty) -> ***: change" in text.splitlines()
    with pytest.raises(LsqsyncError, match="not among the opportunities the rules read"):
        explain.explain(project, snap, plan, options, ["DEAL-0000"])


def test_explain_says_what_a_rule_does_not_select_and_which_rules_were_targeted(
    tmp_path: Path,
) -> None:
    from lsqsync.lsq import OpportunityRecord

    os.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    (tmp_path / "lsqsync.yml").write_text("version: 1\n")
    rules = f"""
        - name: listed
          opportunity_type: 12003
          ids: [{A}]
          set: {{mx_Custom_10: High}}
        - name: other
          opportunity_type: 12003
          set: {{mx_Custom_10: High}}
        """
    (tmp_path / "rules" / "r.yml").write_text(
        "version: 1\nrules:\n" + textwrap.indent(textwrap.dedent(rules).strip("\n") + "\n", "  ")
    )
    project = load_project(load_config(tmp_path / "lsqsync.yml"), targets=["listed"])
    loan = OpportunityRecord(C, 12000, {"Status": "Open"})
    snap = snapshot([deal(A), deal(B), loan], None)
    options = PlanOptions(now=NOW, created_at=datetime(2026, 11, 27, 9), lsqsync_version="t",
                          input_files={}, targets=("listed",))  # fmt: skip
    plan = build_plan(project, snap, "https://api.example", options)
    found = explain.explain(project, snap, plan, options, [B, C])
    text = explain.render_text(found).splitlines()
    assert text[:4] == [
        f"opportunity {B} (type 12003 Enterprise Deal)",
        "  only the rules named with --target: listed",
        "  rule listed (rules/r.yml:3): not matched: it does not select this opportunity",
        "    selects: its ids do not name it",
    ]
    assert text[-4:] == [
        f"opportunity {C} (type 12000 Home Loan)",
        "  only the rules named with --target: listed",
        "  no rule is for type 12000",
        "  rules for other types (not evaluated): listed (type 12003)",
    ]
    assert found[0].targets == ("listed",)
