"""The workflow `lsqsync init` writes, run step by step against the emulator.

Each test plays pull requests and merges the way GitHub would: a bare repository stands in for
GitHub's copy, a fake GitHub answers the `gh` calls and keeps comments and artifacts, and each job
runs in a fresh clone, as on a new runner. The `run:` scripts are the workflow's own, unmodified.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from crm_helpers import write_directly, writes
from fake_gh import FakeGitHub
from pg_server import TEAM_PASSWORD, TEAM_ROLE, PgServer
from runner import Event, JobResult, Runner

from lsqsync import scaffold
from lsqsync.config import StateLocation
from lsqsync.emulator import Emulator
from lsqsync.plan import planfile
from lsqsync.plan.model import compute_digest, summarise
from lsqsync.scaffold import StateKind
from lsqsync.state.location import open_location
from lsqsync.state.store import StateFile

REPOSITORY = "acme/crm-rules"
WORKFLOW = ".github/workflows/lsqsync.yml"
TOKEN = "ghs_token-of-this-run"  # what the fake gh accepts as the job's GITHUB_TOKEN
MARKER = "<!-- lsqsync:plan "
PRIVATE_ERROR = "plans and the state file hold CRM values: keep this repository private"


class Project:
    """A rule repository made by `lsqsync init`, its copy on the fake GitHub, and the runner."""

    def __init__(
        self,
        root: Path,
        emu: Emulator,
        state: StateKind = "sqlite",
        secrets: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.emu = emu
        self.origin = root / "origin.git"
        self.clone = root / "clone"
        home = root / "home"
        home.mkdir()
        # the tests' own git commands: no global or system configuration
        self.env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
        self.git("init", "--quiet", "--bare", "--initial-branch=main", str(self.origin), cwd=root)
        self.git("clone", "--quiet", str(self.origin), str(self.clone), cwd=root)
        self.git("config", "user.name", "Rule Author")
        self.git("config", "user.email", "author@example.com")
        self.git("checkout", "--quiet", "-b", "main")
        result = scaffold.init(self.clone, "main", state)
        assert WORKFLOW in result.created
        self.state = state
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", "lsqsync init")
        self.git("push", "--quiet", "origin", "main")
        self.github = FakeGitHub(root / "github", REPOSITORY, TOKEN)
        self.run_ids = itertools.count(9001)
        self.secrets = {"LSQ_ACCESS_KEY": emu.access_key, "LSQ_SECRET_KEY": emu.secret_key}
        self.secrets.update(secrets or {})
        self.private = True
        self.jobs: list[JobResult] = []  # every job run, for failure reports (conftest.py)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=cwd or self.clone,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def run(self, job: str, event: Event, needs: dict[str, str] | None = None) -> JobResult:
        runner = Runner(
            origin=self.origin,
            github=self.github,
            work=self.root / "runs",
            secrets=self.secrets,
            variables={"LSQ_HOST": self.emu.url},
            workflow=scaffold.files(state=self.state)[WORKFLOW],
        )
        result = runner.run(job, event, needs)
        self.jobs.append(result)
        return result

    # -- what people do ---------------------------------------------------------------------

    def push_to_pull(self, number: int, files: dict[str, str]) -> str:
        """Commit ``files`` on the pull request's branch (made from main if new) and push it."""
        branch = f"pr-{number}"
        if self.git("branch", "--list", branch):
            self.git("checkout", "--quiet", branch)
        else:
            self.git("checkout", "--quiet", "-b", branch, "main")
        for path, text in files.items():
            (self.clone / path).write_text(text, "utf-8")
        self.git("add", *files)
        self.git("commit", "--quiet", "-m", f"pull request #{number}")
        self.git("push", "--quiet", "origin", branch)
        sha = self.git("rev-parse", "HEAD")
        self.github.set_pull(number, sha)
        return sha

    def merge(self, number: int) -> str:
        """Merge the pull request's branch into main (a merge commit) and push main."""
        self.git("checkout", "--quiet", "main")
        self.git(
            "merge", "--quiet", "--no-ff", "-m", f"Merge pull request #{number}", f"pr-{number}"
        )
        self.git("push", "--quiet", "origin", "main")
        sha = self.git("rev-parse", "HEAD")
        self.github.set_commit_pulls(sha, [number])
        return sha

    # -- what GitHub runs -------------------------------------------------------------------

    def pull_request(self, number: int, fork: str | None = None) -> Event:
        head = self.github.load()["pulls"][str(number)]
        payload = {
            "action": "synchronize",
            "number": number,
            "pull_request": {
                "number": number,
                "head": {
                    "sha": head,
                    "ref": f"pr-{number}",
                    "repo": {"full_name": fork or REPOSITORY},
                },
                "base": {"ref": "main", "repo": {"full_name": REPOSITORY}},
            },
            "repository": {"full_name": REPOSITORY, "private": self.private},
        }
        # GitHub checks out the pull request merged into main; main is its base, so that is the
        # head's content
        return Event("pull_request", payload, head, next(self.run_ids))

    def push(self, sha: str) -> Event:
        payload = {
            "ref": "refs/heads/main",
            "after": sha,
            "repository": {"full_name": REPOSITORY, "private": self.private},
        }
        return Event("push", payload, sha, next(self.run_ids))

    def validate(self, number: int, fork: str | None = None) -> JobResult:
        return self.run("validate", self.pull_request(number, fork))

    def plan(self, number: int, fork: str | None = None) -> tuple[JobResult, Event]:
        return self.run_plan(number, fork)

    def run_plan(
        self, number: int, fork: str | None = None, validated: str = "success"
    ) -> tuple[JobResult, Event]:
        event = self.pull_request(number, fork)
        return self.run("plan", event, needs={"validate": validated}), event

    def apply(self, sha: str) -> tuple[JobResult, Event]:
        event = self.push(sha)
        return self.run("apply", event), event

    # -- what tests look at -----------------------------------------------------------------

    def artifact_plan(self, event: Event) -> dict[str, Any]:
        folder = self.github.artifact(event.run_id, "lsqsync-plan")
        assert folder is not None, f"run {event.run_id} uploaded no plan"
        assert sorted(p.name for p in folder.iterdir()) == ["lsqsync-plan.json"]
        plan: dict[str, Any] = json.loads((folder / "lsqsync-plan.json").read_text("utf-8"))
        return plan

    def state_branch(self) -> str | None:
        refs = self.git(
            "for-each-ref", "--format=%(objectname)", "refs/heads/lsqsync-state", cwd=self.origin
        )
        return refs or None

    def state_file(self) -> Path:
        """The state file on origin's lsqsync-state branch, in a temporary file."""
        blob = subprocess.run(
            ["git", "show", "lsqsync-state:state.db"],
            cwd=self.origin,
            env=self.env,
            capture_output=True,
            check=True,
        ).stdout
        path = self.root / f"state-{len(list(self.root.glob('state-*.db')))}.db"
        path.write_bytes(blob)
        return path


def crm_value(emu: Emulator, opportunity: str, field: str) -> object:
    stored = requests.get(f"{emu.url}/_emulator/opportunities/{opportunity}", timeout=5).json()
    return stored["fields"].get(field)


def marker(body: str) -> dict[str, str]:
    first = body.splitlines()[0]
    assert first.startswith(MARKER), first
    assert first.endswith(" -->"), first
    return dict(part.split("=", 1) for part in first[len(MARKER) : -4].split() if "=" in part)


@pytest.fixture
def project(emu: Emulator, tmp_path: Path) -> Project:
    return Project(tmp_path, emu)


# the rule files of the pull requests: edits of what `lsqsync init` wrote
EXAMPLE = scaffold.files()["rules/example.yml"]
CONFIG = scaffold.files()["lsqsync.yml"]
FIRST = {"rules/example.yml": EXAMPLE.replace("Open deals worth", "Open deals (Q4) worth")}
SECOND = {"lsqsync.yml": CONFIG.replace("team: sales-ops", "team: revenue-ops")}


def test_a_pull_request_is_validated_and_planned_in_one_comment(project: Project) -> None:
    head = project.push_to_pull(7, FIRST)

    validate = project.validate(7)
    plan, event = project.plan(7)

    assert validate.result == "success", validate
    assert validate.outcomes() == {
        "actions/checkout@v6": "success",
        "actions/setup-python@v6": "success",
        "Install lsqsync": "success",
        "Validate": "success",
        "Test the rules": "success",
    }
    assert plan.result == "success", plan
    assert plan.step("plan").outputs == {"exit-code": "2"}  # changes: not a failure
    assert plan.step("Fail when the plan failed").outcome == "skipped"
    saved = project.artifact_plan(event)
    (comment,) = project.github.comments(7)
    assert comment["user"]["login"] == "github-actions[bot]"
    assert marker(comment["body"]) == {
        "run": str(event.run_id),
        "sha": head,
        "digest": saved["digest"],
        "changes": "true",
    }
    assert f"\n### lsqsync plan `{saved['digest'][:8]}` for `" in comment["body"]
    assert "Flagged by sales-ops (value 422000)" in comment["body"]
    run_url = f"https://github.com/{REPOSITORY}/actions/runs/{event.run_id}"
    assert comment["body"].endswith(f"[this run]({run_url}); merging applies it.\n")
    assert saved["summary"]["opportunities"] > 0
    assert writes(project.emu) == []  # planning never writes

    # a second push: the same comment, now about the new head
    new_head = project.push_to_pull(7, SECOND)
    replan, second = project.plan(7)

    assert replan.result == "success", replan
    resaved = project.artifact_plan(second)
    (updated,) = project.github.comments(7)
    assert updated["id"] == comment["id"]
    assert marker(updated["body"]) == {
        "run": str(second.run_id),
        "sha": new_head,
        "digest": resaved["digest"],
        "changes": "true",
    }
    assert resaved["digest"] != saved["digest"]
    assert "Flagged by revenue-ops (value 422000)" in updated["body"]
    assert [c[:3] for c in project.github.calls()][-2:] == [
        ["api", "--paginate", f"repos/{REPOSITORY}/issues/7/comments"],
        ["api", "--method", "PATCH", f"repos/{REPOSITORY}/issues/comments/{comment['id']}"][:3],
    ]


def test_merges_apply_the_reviewed_plans_and_keep_the_state_on_its_branch(
    project: Project,
) -> None:
    project.push_to_pull(7, FIRST)
    plan, event = project.plan(7)
    assert plan.result == "success", plan
    saved = project.artifact_plan(event)
    merge = project.merge(7)

    apply, pushed = project.apply(merge)

    assert apply.result == "success", apply
    assert apply.step("Apply").outcome == "success"
    fields = saved["summary"]["fields"]
    assert len(writes(project.emu)) == 1  # ≤ 25 opportunities: one bulk call
    for change in saved["changes"]:
        for f in change["fields"]:
            assert crm_value(project.emu, change["id"], f["field"]) == f["after"]
    state_commit = project.state_branch()
    assert state_commit is not None
    message = project.git("log", "-1", "--format=%an|%s", "lsqsync-state", cwd=project.origin)
    assert message == (
        f"github-actions[bot]|lsqsync apply of {merge} "
        f"(https://github.com/{REPOSITORY}/actions/runs/{pushed.run_id})"
    )
    with StateFile.open(project.state_file(), create=False) as st:
        (run,) = st.runs()
        lineage = st.lineage
        assert (run.outcome, run.counts.applied, run.plan_digest) == (
            "succeeded",
            fields,
            saved["digest"],
        )
    _plan_comment, summary = project.github.comments(7)
    assert summary["body"].startswith(f"### lsqsync apply `{run.id}`: succeeded\n")
    assert apply.summary == summary["body"]

    # the next pull request plans against that state: nothing left to do
    project.push_to_pull(8, {"rules/example.yml": EXAMPLE.replace("An example rule", "A rule")})
    plan8, event8 = project.plan(8)

    assert plan8.result == "success", plan8
    saved8 = project.artifact_plan(event8)
    assert saved8["state"] == {"lineage": lineage, "serial": 1}
    (comment8,) = project.github.comments(8)
    assert marker(comment8["body"])["changes"] == "false"
    assert "No changes" in comment8["body"]

    apply8, _ = project.apply(project.merge(8))

    assert apply8.result == "success", apply8
    assert apply8.step("reviewed").outputs["changes"] == "false"
    assert {s.name: s.outcome for s in apply8.steps if s.outcome == "skipped"} == {
        "Download the reviewed plan": "skipped",
        "Read the state file": "skipped",
        "Apply": "skipped",
        "Save the state file": "skipped",
        "Post the run's summary on the pull request": "skipped",
    }
    assert len(writes(project.emu)) == 1
    assert project.state_branch() == state_commit
    assert len(project.github.comments(8)) == 1

    # a pull request with changes again: its run is added to the state, on top of the branch
    project.push_to_pull(9, SECOND)
    plan9, event9 = project.plan(9)
    assert plan9.result == "success", plan9
    assert "WARNING" not in plan9.step("Plan").stderr  # the state file was read as it should be
    saved9 = project.artifact_plan(event9)
    assert saved9["state"] == {"lineage": lineage, "serial": 1}

    apply9, _ = project.apply(project.merge(9))

    assert apply9.result == "success", apply9
    assert "WARNING" not in apply9.step("Apply").stderr
    assert len(writes(project.emu)) == 2
    assert project.git("rev-parse", "lsqsync-state~1", cwd=project.origin) == state_commit
    with StateFile.open(project.state_file(), create=False) as st:
        assert (st.lineage, st.serial) == (lineage, 2)
        assert [(r.outcome, r.plan_digest) for r in st.runs()] == [
            ("succeeded", saved["digest"]),
            ("succeeded", saved9["digest"]),
        ]
    assert project.github.comments(9)[1]["body"].startswith("### lsqsync apply `")


@pytest.mark.slow
def test_with_a_postgresql_state_merges_apply_into_the_workspace_and_no_branch_is_kept(
    emu: Emulator, pg: PgServer, tmp_path: Path
) -> None:
    # the team's role, with its password, as the repository's secrets give them
    database = pg.new_database(team=True)
    url = pg.url(database, user=TEAM_ROLE)
    secrets = {"LSQSYNC_STATE_URL": url, "LSQSYNC_STATE_PASSWORD": TEAM_PASSWORD}
    project = Project(tmp_path, emu, "postgres", secrets)
    # read back as the superuser: the test's own environment has no password to give
    workspace = StateLocation(None, pg.url(database), scaffold.workspace_for(project.clone))
    project.push_to_pull(7, FIRST)
    plan, event = project.plan(7)
    assert plan.result == "success", plan
    saved = project.artifact_plan(event)
    assert saved["state"] == {"lineage": None, "serial": None}  # nothing applied yet

    apply, _ = project.apply(project.merge(7))

    assert apply.result == "success", apply
    assert apply.step("state").outputs == {"runs": "0"}
    assert "Save the state file" not in [s.name for s in apply.steps]
    assert project.state_branch() is None
    for change in saved["changes"]:
        for f in change["fields"]:
            assert crm_value(project.emu, change["id"], f["field"]) == f["after"]
    with open_location(workspace, read_only=True) as st:
        (run,) = st.runs()
    assert (run.outcome, run.plan_digest) == ("succeeded", saved["digest"])
    assert project.github.comments(7)[1]["body"].startswith(
        f"### lsqsync apply `{run.id}`: succeeded\n"
    )


# -- what must not happen ---------------------------------------------------------------------


def test_each_job_runs_on_its_own_event_only(project: Project) -> None:
    head = project.push_to_pull(7, FIRST)
    pushed = project.push(head)

    assert project.run("validate", pushed).result == "skipped"
    assert project.run("plan", pushed, needs={"validate": "skipped"}).result == "skipped"
    assert project.run("apply", project.pull_request(7)).result == "skipped"


def test_a_push_that_does_not_validate_leaves_no_plan_in_the_comment(project: Project) -> None:
    project.push_to_pull(7, FIRST)
    assert project.plan(7)[0].result == "success"
    (first,) = project.github.comments(7)
    head = project.push_to_pull(7, {"rules/example.yml": EXAMPLE.replace("set:", "sett:")})
    validate = project.validate(7)
    assert validate.result == "failure"

    plan, event = project.run_plan(7, validated="failure")

    assert plan.result == "success", plan  # the validate check is the red one
    assert plan.step("plan").outputs == {"exit-code": "invalid"}
    assert project.github.artifact(event.run_id, "lsqsync-plan") is None
    (comment,) = project.github.comments(7)
    assert comment["id"] == first["id"]
    assert comment["body"].splitlines() == [
        f"<!-- lsqsync:plan run={event.run_id} sha={head} failed -->",
        "### lsqsync plan not made",
        "",
        f"The rules of {head} do not validate: the `validate` check lists the problems.",
    ]
    assert writes(project.emu) == []
    # merged anyway: the comment shows no plan, so nothing is applied
    apply, _ = project.apply(project.merge(7))
    assert apply.result == "failure"
    assert apply.step("reviewed").errors == [
        "pull request #7 has no plan comment from a successful plan: nothing was reviewed"
    ]


def test_a_pull_request_from_a_fork_is_validated_but_never_planned(project: Project) -> None:
    project.push_to_pull(7, FIRST)

    validate = project.validate(7, fork="someone/crm-rules")
    plan, event = project.plan(7, fork="someone/crm-rules")

    assert validate.result == "success", validate
    assert (plan.result, plan.steps) == ("skipped", [])
    assert project.github.calls() == []
    assert project.github.artifact(event.run_id, "lsqsync-plan") is None
    assert project.emu.requests == []


def test_a_plan_that_fails_is_shown_in_the_comment_and_fails_the_job(project: Project) -> None:
    project.secrets["LSQ_SECRET_KEY"] = "not-the-secret-key"
    head = project.push_to_pull(7, FIRST)

    plan, event = project.plan(7)

    assert plan.result == "failure", plan
    assert plan.step("plan").outputs == {"exit-code": "1"}
    assert plan.outcomes() | {"Plan": "?"} == {
        "actions/checkout@v6": "success",
        "actions/setup-python@v6": "success",
        "Install lsqsync": "success",
        "Refuse a public repository": "success",
        "Read the state file": "success",
        "Plan": "?",
        "Upload the saved plan": "skipped",
        "Comment on the pull request": "success",
        "Fail when the plan failed": "failure",
    }
    assert project.github.artifact(event.run_id, "lsqsync-plan") is None
    (comment,) = project.github.comments(7)
    lines = comment["body"].splitlines()
    assert lines[:4] == [
        f"<!-- lsqsync:plan run={event.run_id} sha={head} failed -->",
        "### lsqsync plan failed",
        "",
        "````",
    ]
    error = plan.step("plan").stderr.strip().splitlines()[-1]
    assert error.startswith("error: LeadSquared refused the keys")
    assert error in lines
    assert "not-the-secret-key" not in comment["body"]

    # merged anyway: nothing was reviewed, so nothing is applied
    apply, _ = project.apply(project.merge(7))

    assert apply.result == "failure", apply
    assert apply.step("reviewed").errors == [
        "pull request #7 has no plan comment from a successful plan: nothing was reviewed"
    ]
    assert apply.step("Apply").outcome == "skipped"
    assert (writes(project.emu), project.state_branch()) == ([], None)


def test_an_error_with_a_fence_of_its_own_stays_inside_the_comments_fence(
    project: Project,
) -> None:
    # lsqsync's own messages are escaped to one line each; this fakes a plan whose error output
    # holds a line of backticks anyway (a server's echo, a future message) and HTML after it.
    real = Path(sys.executable).parent / "lsqsync"
    fake = project.root / "runs" / "bin" / "lsqsync"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = plan ]; then\n'
        "  printf 'error: LeadSquared said:\\n````\\n' >&2\n"
        "  printf '<img src=x onerror=alert(1)>\\n````` end\\n' >&2\n"
        "  exit 1\n"
        "fi\n"
        f'exec "{real}" "$@"\n'
    )
    fake.chmod(0o755)
    project.push_to_pull(7, FIRST)

    plan, _ = project.plan(7)

    assert plan.result == "failure", plan
    (comment,) = project.github.comments(7)
    lines = comment["body"].splitlines()
    assert lines[3] == lines[-1] == "`" * 7  # longer than the longest run inside (5)
    assert "<img src=x onerror=alert(1)>" in lines[4:-1]


def test_a_token_that_cannot_comment_fails_the_plan_job(project: Project) -> None:
    project.github.refuse_comment_writes()
    project.push_to_pull(7, FIRST)

    plan, _ = project.plan(7)

    assert plan.result == "failure", plan
    assert plan.step("Plan").outcome == "success"
    comment = plan.step("Comment on the pull request")
    assert comment.outcome == "failure"
    assert "Resource not accessible by integration (HTTP 403)" in comment.stderr
    assert project.github.comments(7) == []


def test_a_push_after_the_last_plan_is_not_applied(project: Project) -> None:
    planned = project.push_to_pull(7, FIRST)
    assert project.plan(7)[0].result == "success"
    merged_head = project.push_to_pull(7, SECOND)  # its plan never ran (cancelled, or failed)

    apply, _ = project.apply(project.merge(7))

    assert apply.result == "failure", apply
    assert apply.step("reviewed").errors == [
        f"the plan on pull request #7 was made for {planned}, but it was merged at"
        f" {merged_head}: the last push was never planned"
    ]
    assert [s.outcome for s in apply.steps[apply.steps.index(apply.step("reviewed")) + 1 :]] == [
        "skipped"
    ] * 5
    assert (writes(project.emu), project.state_branch()) == ([], None)
    assert len(project.github.comments(7)) == 1


def test_a_commit_pushed_to_main_is_not_applied_though_an_open_pull_request_has_it(
    project: Project,
) -> None:
    head = project.push_to_pull(7, FIRST)
    assert project.plan(7)[0].result == "success"
    # main fast-forwarded to the pull request's head: no merge, the pull request stays open
    project.git("checkout", "--quiet", "main")
    project.git("merge", "--quiet", "--ff-only", "pr-7")
    project.git("push", "--quiet", "origin", "main")
    project.github.set_commit_pulls(head, [7], merged=False)

    apply, _ = project.apply(head)

    assert apply.result == "failure", apply
    assert apply.step("reviewed").errors == [
        f"{head} was not merged from a pull request: lsqsync applies only plans reviewed in one"
    ]
    assert (writes(project.emu), project.state_branch()) == ([], None)


def test_a_refused_apply_says_it_did_not_start(project: Project) -> None:
    project.push_to_pull(7, FIRST)
    assert project.plan(7)[0].result == "success"
    # another change to the rules reaches main before the merge: the plan no longer matches
    project.git("checkout", "--quiet", "main")
    (project.clone / "rules" / "example.yml").write_text(EXAMPLE + "# reviewed elsewhere\n")
    project.git("commit", "--quiet", "-am", "a rule edited on main")
    project.git("push", "--quiet", "origin", "main")

    apply, _ = project.apply(project.merge(7))

    assert apply.result == "failure", apply
    assert apply.step("apply").outcome == "failure"
    assert "files changed on disk since the plan: rules/example.yml" in apply.step("apply").stderr
    assert writes(project.emu) == []
    summary = project.github.comments(7)[-1]["body"]
    assert summary.startswith("### lsqsync apply did not start\n\n````\n")
    assert "refused: files changed on disk since the plan" in summary
    assert summary == apply.summary
    with StateFile.open(project.state_file(), create=False) as st:
        assert st.runs() == ()  # the refusal started no run


def forge(path: Path) -> str:
    """Put another valid plan at ``path``: one value changed, summary and digest made to match.
    Its digest."""
    plan = planfile.load(path)
    first = plan.changes[0]
    edited = replace(first.changes[0], after="Something else")
    changes = (replace(first, changes=(edited, *first.changes[1:])), *plan.changes[1:])
    summary = summarise(
        changes,
        {r.name: r.source for r in plan.summary.rules},
        {t.opportunity_type: (t.name, t.total) for t in plan.summary.types},
    )
    forged = replace(plan, changes=changes, summary=summary)
    digest = compute_digest(forged)
    planfile.save(replace(forged, digest=digest), path)
    return digest


def test_an_artifact_that_is_not_the_reviewed_plan_is_not_applied(project: Project) -> None:
    project.push_to_pull(7, FIRST)
    plan, event = project.plan(7)
    assert plan.result == "success", plan
    reviewed = project.artifact_plan(event)
    artifact = project.github.artifact(event.run_id, "lsqsync-plan")
    assert artifact is not None
    original = (artifact / "lsqsync-plan.json").read_text("utf-8")
    merge = project.merge(7)

    # a value changed, the digest kept
    edited = json.loads(original)
    edited["changes"][0]["fields"][0]["after"] = "Something else"
    (artifact / "lsqsync-plan.json").write_text(json.dumps(edited), "utf-8")
    apply, _ = project.apply(merge)

    assert apply.result == "failure", apply
    download = apply.step("Download the reviewed plan")
    assert download.outcome == "failure"
    assert "the plan was modified after it was made" in download.stderr
    assert apply.step("Apply").outcome == "skipped"

    # another valid plan in its place, the job re-run
    (artifact / "lsqsync-plan.json").write_text(original, "utf-8")
    forged = forge(artifact / "lsqsync-plan.json")
    apply, _ = project.apply(merge)

    assert apply.result == "failure", apply
    assert apply.step("Download the reviewed plan").errors == [
        f"the artifact of run {event.run_id} is plan {forged}, but the pull request showed"
        f" plan {reviewed['digest']}"
    ]
    assert apply.step("Apply").outcome == "skipped"
    assert (writes(project.emu), project.state_branch()) == ([], None)


def test_a_field_edited_after_review_is_stale_and_the_state_is_still_saved(
    project: Project,
) -> None:
    project.push_to_pull(7, FIRST)
    plan, event = project.plan(7)
    assert plan.result == "success", plan
    saved = project.artifact_plan(event)
    edited = next(
        c for c in saved["changes"] if any(f["field"] == "mx_Custom_9" for f in c["fields"])
    )
    write_directly(project.emu, [{
        "ProspectOpportunityId": edited["id"],
        "OpportunityEventCode": edited["opportunity_type"],
        "Fields": [{"SchemaName": "mx_Custom_9", "Value": "Edited by a person"}],
    }])  # fmt: skip
    before = len(writes(project.emu))

    apply, _ = project.apply(project.merge(7))

    assert apply.result == "failure", apply
    assert (apply.step("Apply").outcome, apply.step("Apply").exit_code) == ("failure", 3)
    assert apply.step("Save the state file").outcome == "success"
    assert apply.step("Post the run's summary on the pull request").outcome == "success"
    assert len(writes(project.emu)) == before + 1  # the other fields were written
    assert crm_value(project.emu, edited["id"], "mx_Custom_9") == "Edited by a person"
    with StateFile.open(project.state_file(), create=False) as st:
        (run,) = st.runs()
        assert (run.outcome, run.counts.stale, run.counts.applied) == (
            "partial",
            1,
            saved["summary"]["fields"] - 1,
        )
    _, summary = project.github.comments(7)
    assert summary["body"].startswith(f"### lsqsync apply `{run.id}`: partial\n")
    note = {12000: "Remarks", 12003: "Closing Note"}[edited["opportunity_type"]]
    row = f"\n| {edited['id']} | {note} (mx\\_Custom\\_9) | stale | (empty) |"
    assert row in summary["body"]
    assert apply.summary == summary["body"]


@pytest.mark.parametrize("job", ["plan", "apply"])
def test_a_public_repository_is_refused(project: Project, job: str) -> None:
    project.private = False
    project.push_to_pull(7, FIRST)

    result = project.plan(7)[0] if job == "plan" else project.apply(project.merge(7))[0]

    assert result.result == "failure", result
    refuse = result.step("Refuse a public repository")
    assert (refuse.outcome, refuse.errors) == ("failure", [PRIVATE_ERROR])
    after = result.steps[result.steps.index(refuse) + 1 :]
    assert {s.outcome for s in after} == {"skipped"}
    assert project.github.calls() == []
    assert project.emu.requests == []
