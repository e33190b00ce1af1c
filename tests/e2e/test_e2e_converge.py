"""Rules that settle, end to end against the emulator over real HTTP with a real state file:
the convergence check (a template that reads ``now``, one that reads the field it writes),
apply's refusal of a plan with rules that never settle, ``once: true`` settling, and a rollback
that says which rules would write its fields again (and the plan that marks them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run
from crm_helpers import example_project

from lsqsync.emulator import Emulator

# the rules change most opportunities of the type: over the example's safety ratio
NOW = ["--now", "2026-11-27 10:00:00", "--allow-large"]
LATER = ["--now", "2026-11-27 11:00:00", "--allow-large"]
MARK = "[re-applies a rolled-back run]"

NEVER_SETTLE = """\
version: 1
rules:
  - name: stamp-review
    opportunity_type: 12003
    where:
      Status: Open
    set:
      mx_Custom_9: "Reviewed {{ now }} (priority was {{ opp.mx_Custom_10 }})"
  - name: grow-reference
    opportunity_type: 12003
    where:
      Status: Open
    set:
      mx_Custom_1: "{{ opp.mx_Custom_1 }}x"
  - name: flag-high-value
    opportunity_type: 12003
    where:
      Status: Open
      mx_Custom_6: {gte: 400000}
    set:
      mx_Custom_10: High
"""


def project(root: Path, rules: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)
    example_project(root)
    for f in (root / "rules").glob("*.yml"):
        f.unlink()
    (root / "rules" / "review.yml").write_text(rules)


def test_rules_that_never_settle_are_found_and_their_plan_is_refused(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project(tmp_path, NEVER_SETTLE, monkeypatch)
    code, out, err = run(["validate"], capsys)
    assert code == 0
    warned = [line for line in (out + err).splitlines() if "non-convergent" in line]
    assert warned == [
        "rules/review.yml:8:20: warning: rules[0].set.mx_Custom_9: non-convergent: the template "
        "reads `now`, so every plan would change mx_Custom_9 again; make it settle, or give "
        "rule 'stamp-review' once: true if it is a one-off job",
        "rules/review.yml:14:20: warning: rules[1].set.mx_Custom_1: non-convergent: the "
        "template reads the field it sets, so every plan would change mx_Custom_1 again; make "
        "it settle, or give rule 'grow-reference' once: true if it is a one-off job",
    ]

    code, out, _ = run(["plan", "--out", "p.json", *NOW], capsys)
    assert code == 0
    warnings = [line for line in out.splitlines() if line.startswith("Warning: non-conv")]
    assert len(warnings) == 2
    grow, stamp = warnings  # sorted by rule
    assert grow.startswith(
        "Warning: non-convergent rule 'grow-reference' (rules/review.yml:9): its template reads "
        "the field it writes, so it would change Opportunity Name (mx_Custom_1) again after this "
        "plan is applied"
    )
    assert stamp.startswith(
        "Warning: non-convergent rule 'stamp-review' (rules/review.yml:3): its template reads "
        "`now`, so it would change Closing Note (mx_Custom_9) again after this plan is "
        "applied, e.g. "
    )
    assert "2026-11-27 10:00:00" in stamp
    assert "2026-11-28 11:01:01" in stamp  # now, a day, an hour, a minute and a second later
    assert "flag-high-value" not in " ".join(warnings)  # it settles
    saved = json.loads((tmp_path / "p.json").read_text())
    assert sum(w.startswith("non-convergent rule") for w in saved["warnings"]) == 2

    code, out, err = run(["apply", "p.json"], capsys)
    assert code == 1
    assert (
        "refused: non-convergent rules 'grow-reference', 'stamp-review': every plan would "
        "change their fields again (see the plan's warnings). Make them settle, give a one-off "
        "rule once: true, or pass --allow-nonconvergent (recorded)"
    ) in err
    assert json.loads(run(["state", "runs", "--format", "json"], capsys)[1])["runs"] == []

    code, out, err = run(["apply", "p.json", "--allow-nonconvergent"], capsys)
    assert code == 0, err
    runs = json.loads(run(["state", "runs", "--format", "json"], capsys)[1])["runs"]
    assert [r["overrides"] for r in runs] == [["--allow-large", "--allow-nonconvergent"]]
    # as promised: the next plan changes them again
    code, out, _ = run(["plan", "--out", "p2.json", *LATER], capsys)
    changed = {f["rule"] for c in json.loads((tmp_path / "p2.json").read_text())["changes"]
               for f in c["fields"]}  # fmt: skip
    assert changed == {"stamp-review", "grow-reference"}


def test_a_once_rule_settles_after_one_apply(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    once = NEVER_SETTLE.replace(
        "  - name: stamp-review\n", "  - name: stamp-review\n    once: true\n"
    ).replace("  - name: grow-reference\n", "  - name: grow-reference\n    once: true\n")
    project(tmp_path, once, monkeypatch)
    code, out, err = run(["validate"], capsys)
    assert (code, "non-convergent" in out + err) == (0, False)
    code, out, _ = run(["plan", "--out", "p.json", *NOW], capsys)
    assert code == 0
    assert "non-convergent" not in out
    first = json.loads((tmp_path / "p.json").read_text())
    stamped = {c["id"] for c in first["changes"] if "stamp-review" in c["rules"]}
    assert stamped
    code, _, err = run(["apply", "p.json"], capsys)
    assert code == 0, err

    code, out, _ = run(["plan", "--out", "p2.json", *LATER], capsys)
    assert code == 0
    assert "No changes." in out
    second = json.loads((tmp_path / "p2.json").read_text())
    assert second["changes"] == []
    # what the once rule matched, it leaves alone: the plan says so rather than "all current"
    count = next(c for c in second["rule_counts"] if c["rule"] == "stamp-review")
    assert count["once"] == count["matched"] == len(stamped)
    assert (
        f"    stamp-review (rules/review.yml:3): matched {len(stamped)}: {len(stamped)} left "
        "alone (once: true)"
    ) in out.splitlines()


def test_a_rollback_names_the_rules_that_would_apply_again_and_the_plan_marks_them(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rules = NEVER_SETTLE.split("  - name: grow-reference")[0].replace(
        '"Reviewed {{ now }} (priority was {{ opp.mx_Custom_10 }})"', "Reviewed"
    )
    project(tmp_path, rules, monkeypatch)
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    assert run(["apply", "p.json"], capsys)[0] == 0
    applied = json.loads(run(["state", "show", "last", "--format", "json"], capsys)[1])
    run_id = applied["run"]["id"]
    written = {r["opportunity_id"] for r in applied["results"]}

    code, out, err = run(["rollback", run_id, "--out", "rb.json"], capsys)
    assert code == 0, err
    assert (
        "Warning: rule 'stamp-review' still wants the values this rollback puts back: the next "
        "plan re-applies them; revert this rule (or make it skip these opportunities) before the "
        "next plan is applied"
    ) in out.splitlines()
    assert run(["apply", "rb.json"], capsys)[0] == 0

    code, out, _ = run(["plan", "--out", "again.json", *LATER], capsys)
    assert code == 0
    lines = out.splitlines()
    warning = [line for line in lines if line.startswith("Warning: re-applies")]
    assert len(warning) == 1
    assert warning[0].startswith(
        f"Warning: re-applies rolled-back run {run_id}: {len(written)} fields of rule "
        "'stamp-review' (e.g. "
    )
    marked = [line for line in lines if line.endswith("[re-applies a rolled-back run]")]
    assert len(marked) == min(len(written), 200)
    assert all("mx_Custom_9" in line for line in marked)
    # the marks are saved: show marks the same changes, in text and in the PR comment
    saved = json.loads((tmp_path / "again.json").read_text())
    assert saved["reapplied"] == [
        {"id": c["id"], "field": "mx_Custom_9", "run": run_id}
        for c in saved["changes"]
        if c["id"] in written
    ]
    assert len(saved["reapplied"]) == len(written)
    code, shown, _ = run(["show", "again.json", "--max-details", "1000"], capsys)
    assert code == 0
    shown_marked = [line for line in shown.splitlines() if line.endswith(MARK)]
    assert len(shown_marked) == len(written)
    code, out, _ = run(["show", "again.json", "--format", "markdown"], capsys)
    assert "re-applies rolled-back run" in out
    marked_md = [line for line in out.splitlines() if line.endswith(MARK)]
    assert marked_md
    assert all(line.startswith("+     Closing Note (mx_Custom_9): ") for line in marked_md)
    # a mark taken out of the saved plan is an edit its digest catches
    saved["reapplied"] = saved["reapplied"][1:]
    (tmp_path / "edited.json").write_text(json.dumps(saved))
    code, _, err = run(["show", "edited.json"], capsys)
    assert code == 1
    assert "the plan was modified after it was made" in err
