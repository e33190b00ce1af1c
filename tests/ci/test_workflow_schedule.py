"""The scheduled workflow `lsqsync init --schedule` writes, run step by step against the emulator,
as GitHub would run it from cron: reconcile applies the `apply: auto` rules within their limits,
the rest waits for review in one issue (opened, edited in place, closed), drift is reported.

It reuses the repository, the fake GitHub and the runner of test_workflow_steps.py; the rule
tests in the pull-request workflow's validate job are checked here too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from crm_helpers import write_directly, writes
from runner import Event, JobResult, Runner
from test_workflow_steps import REPOSITORY, Project, crm_value

from lsqsync import scaffold
from lsqsync.display import md
from lsqsync.emulator import Emulator
from lsqsync.state.store import StateFile

CRON = "17 6 * * 1-5"
MARKER = "<!-- lsqsync:review -->"

AUTO = """\
version: 1
rules:
  - name: flag-high-value
    apply: auto
    limits: {max_changes: 100}
    opportunity_type: 12003
    where: {Status: Open, mx_Custom_6: {gte: 400000}}
    set: {mx_Custom_10: High}
"""
OVER = """\
  - name: note-lost-deals
    apply: auto
    limits: {max_changes: 1}
    opportunity_type: 12003
    where: {Status: Lost, mx_Custom_9: {empty: true}}
    set: {mx_Custom_9: Lost}
"""
REVIEW = """\
  - name: note-rejected-loans
    opportunity_type: 12000
    where: {Status: Lost, mx_Custom_2: Rejected, mx_Custom_9: {empty: true}}
    set: {mx_Custom_9: "Rejected: {{ opp.mx_Custom_1 }}"}
"""


class Scheduled(Project):
    """A rule repository with the scheduled workflow, on the fake GitHub."""

    def __init__(self, root: Path, emu: Emulator, example: str) -> None:
        super().__init__(root, emu)
        self.schedule = scaffold.files(schedule=CRON)[scaffold.SCHEDULE]
        (self.clone / ".github" / "workflows" / "lsqsync-schedule.yml").write_text(self.schedule)
        self.commit_to_main({"rules/example.yml": example}, "the scheduled workflow")

    def commit_to_main(self, files: dict[str, str], message: str) -> str:
        self.git("checkout", "--quiet", "main")
        for path, text in files.items():
            (self.clone / path).write_text(text, "utf-8")
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", message)
        self.git("push", "--quiet", "origin", "main")
        return self.git("rev-parse", "HEAD")

    def scheduled(self) -> tuple[JobResult, Event]:
        """The cron event: the job runs at the head of the default branch."""
        event = Event("schedule", {"schedule": CRON}, self.git("rev-parse", "main"),
                      next(self.run_ids))  # fmt: skip
        runner = Runner(
            origin=self.origin,
            github=self.github,
            work=self.root / "runs",
            secrets=self.secrets,
            variables={"LSQ_HOST": self.emu.url},
            workflow=self.schedule,
            path=scaffold.SCHEDULE,
        )
        result = runner.run("reconcile", event)
        self.jobs.append(result)
        return result, event

    def review_artifact(self, event: Event) -> dict[str, Any]:
        folder = self.github.artifact(event.run_id, "lsqsync-review")
        assert folder is not None, f"run {event.run_id} uploaded no plan for review"
        plan: dict[str, Any] = json.loads((folder / "lsqsync-review.plan.json").read_text())
        return plan


@pytest.fixture
def project(emu: Emulator, tmp_path: Path, request: pytest.FixtureRequest) -> Scheduled:
    return Scheduled(tmp_path, emu, getattr(request, "param", AUTO + OVER + REVIEW))


def run_url(event: Event) -> str:
    return f"https://github.com/{REPOSITORY}/actions/runs/{event.run_id}"


def test_auto_changes_are_applied_and_the_rest_wait_in_one_issue_until_none_does(
    project: Scheduled,
) -> None:
    # an auto rule within its limits, one over them, and a review rule
    first, event = project.scheduled()

    assert first.result == "success", first
    assert first.step("reconcile").outputs["exit-code"] == "2"  # changes wait: not a failure
    assert len(writes(project.emu)) == 1  # the auto rule's changes: one Bulk Update
    with StateFile.open(project.state_file(), create=False) as st:
        (run,) = st.runs()
        applied = st.results(run.id)
    assert {(r.rule, r.field, r.after, r.status) for r in applied} == {
        ("flag-high-value", "mx_Custom_10", "High", "applied")
    }
    for r in applied:
        assert crm_value(project.emu, r.opportunity_id, "mx_Custom_10") == "High"
    waiting = project.review_artifact(event)
    assert {f["rule"] for c in waiting["changes"] for f in c["fields"]} == {
        "note-lost-deals",  # over its limit: not applied
        "note-rejected-loans",
    }
    over = sum(1 for c in waiting["changes"] if c["rules"] == ["note-lost-deals"])
    warning = (
        f"rule 'note-lost-deals' is apply: auto, but it changes {over} opportunities, more than"
        " its limits.max_changes (1): its changes wait for review"
    )
    assert waiting["warnings"] == [warning]
    count = len(waiting["changes"])
    (issue,) = project.github.issues()
    assert (issue["title"], issue["state"]) == (f"lsqsync: {count} changes wait for review", "open")
    assert issue["body"].splitlines()[0] == MARKER
    assert f"### lsqsync plan `{waiting['digest'][:8]}`" in issue["body"]
    assert md(warning) in issue["body"]
    assert run_url(event) in issue["body"]
    assert f"### lsqsync apply `{run.id}`: succeeded" in first.summary  # what was applied
    assert f"**{count} changes wait for review:**" in first.summary

    # a person closes one of the flagged deals and lowers its priority by hand: drift, and
    # the rule no longer selects it
    edited = applied[0].opportunity_id
    write_directly(project.emu, [{
        "ProspectOpportunityId": edited, "OpportunityEventCode": 12003,
        "Fields": [{"SchemaName": "Status", "Value": "Won"},
                   {"SchemaName": "mx_Custom_2", "Value": "Closed Won"},
                   {"SchemaName": "mx_Custom_10", "Value": "Low"}],
    }])  # fmt: skip
    before = len(writes(project.emu))

    second, event2 = project.scheduled()

    assert second.result == "success", second
    assert second.step("drift").outputs["exit-code"] == "2"
    assert len(writes(project.emu)) == before  # nothing new to apply without review
    assert "Nothing was applied without review." in second.summary
    drift_line = (
        f'~ {edited} (type 12003) Priority (mx_Custom_10): wrote "High" (run {run.id}), now "Low"'
    )
    assert drift_line in second.summary
    (updated,) = project.github.issues()  # the same issue, edited in place
    assert (updated["number"], updated["state"]) == (issue["number"], "open")
    assert run_url(event2) in updated["body"]
    assert drift_line in updated["body"]
    assert crm_value(project.emu, edited, "mx_Custom_10") == "Low"  # never overwritten

    # the rules whose changes waited are gone: nothing to do, nothing waits, the issue closes
    project.commit_to_main({"rules/example.yml": AUTO}, "only the standing rule")
    third, event3 = project.scheduled()

    assert third.result == "success", third
    assert third.step("reconcile").outputs == {"exit-code": "0", "waiting": "0"}
    assert len(writes(project.emu)) == before
    assert project.github.artifact(event3.run_id, "lsqsync-review") is None
    assert third.step("Upload the plan that waits for review").outcome == "skipped"
    (closed,) = project.github.issues()
    assert (closed["number"], closed["state"], closed["state_reason"]) == (
        issue["number"],
        "closed",
        "completed",
    )
    assert closed["body"].splitlines() == [
        MARKER,
        f"Nothing waits for review since [this run]({run_url(event3)}).",
    ]
    for line in ("Nothing was applied without review.", "Nothing waits for review.", drift_line):
        assert line in third.summary
    with StateFile.open(project.state_file(), create=False) as st:
        assert [r.outcome for r in st.runs()] == ["succeeded"]


def test_an_error_fails_the_job_and_leaves_the_issue_alone(project: Scheduled) -> None:
    project.secrets["LSQ_SECRET_KEY"] = "not-the-secret-key"

    result, _ = project.scheduled()

    assert result.result == "failure", result
    assert result.step("reconcile").outputs == {"exit-code": "1", "waiting": "0"}
    assert result.step("Open, update or close the issue").outcome == "skipped"
    assert result.step("Fail when reconcile or drift failed").outcome == "failure"
    assert "**lsqsync reconcile failed:**" in result.summary
    assert "LeadSquared refused the keys" in result.summary
    assert "not-the-secret-key" not in result.summary
    assert "Nothing has been applied yet: no drift to look for." in result.summary
    assert project.github.issues() == []
    assert project.state_branch() is None


def test_a_public_repository_is_refused(project: Scheduled) -> None:
    project.github.set_private(False)

    result, _ = project.scheduled()

    assert result.result == "failure", result
    refuse = result.step("Refuse a public repository")
    assert refuse.errors == [
        "plans, issues and the state file hold CRM values: keep this repository private"
    ]
    after = result.steps[result.steps.index(refuse) + 1 :]
    assert {s.outcome for s in after} == {"skipped"}
    assert project.emu.requests == []


@pytest.mark.parametrize("project", [scaffold.files()["rules/example.yml"]], indirect=True)
def test_the_validate_job_runs_the_rule_tests(project: Scheduled) -> None:
    test = scaffold.files()["tests/example.yml"]
    broken = test.replace("mx_Custom_10: High", "mx_Custom_10: Medium")
    assert broken != test
    project.push_to_pull(7, {"tests/example.yml": broken})

    validate = project.validate(7)

    assert validate.result == "failure", validate
    step = validate.step("Test the rules")
    assert step.outcome == "failure"
    (error,) = step.errors
    assert error.startswith("test 'open deals worth 400,000 or more are flagged high priority'")
    assert 'large-deal: mx_Custom_10: expected "Medium", planned "High"' in error.replace(
        "%0A", "\n"
    )
    assert project.emu.requests == []  # offline
