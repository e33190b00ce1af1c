"""The local workflow runner and the fake gh: GitHub's expression rules, and refusal of anything
they do not implement (so that a workflow test cannot pass on something they ignored)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from fake_gh import FakeGitHub
from runner import Status, Strict, WorkflowError, condition, interpolate

CONTEXTS: dict[str, Any] = {
    "github": Strict(event_name="push", event={"repository": {"private": True}}, run_id="12"),
    "env": Strict(PLAN_FILE="lsqsync-plan.json"),
    "steps": Strict(
        plan={"outcome": "success", "outputs": {"exit-code": "2"}},
        apply={"outcome": "skipped", "outputs": {}},
        later=None,  # not run yet
    ),
    "secrets": {"LSQ_ACCESS_KEY": "k"},
    "vars": {},
}
TOKEN = "t"
OK, FAILED = Status(failed=False), Status(failed=True)


@pytest.mark.parametrize(
    ("expression", "status", "expected"),
    [
        ("github.event_name == 'push'", OK, True),
        ("github.event_name == 'PUSH'", OK, True),  # strings compare ignoring case
        ("github.event_name == 'push'", FAILED, False),  # implicit success()
        ("always() && github.event_name == 'push'", FAILED, True),
        ("failure()", FAILED, True),
        ("cancelled()", OK, False),
        ("steps.plan.outputs.exit-code == '0' || steps.plan.outputs.exit-code == '2'", OK, True),
        ("steps.plan.outputs.exit-code != '0' && steps.plan.outputs.exit-code != '2'", OK, False),
        ("steps.plan.outputs.exit-code == 2", OK, True),  # different types compare as numbers
        ("always() && steps.apply.outcome != 'skipped'", FAILED, False),
        ("steps.later.outcome == 'success'", OK, False),  # a step not run yet is null
        ("github.event.pull_request.head.repo.full_name == 'a/b'", OK, False),  # missing: null
        ("github.event.repository.private == false", OK, False),
        ("!(github.event_name == 'pull_request')", OK, True),
        ("vars.UNSET == ''", OK, True),  # null and '' both compare as 0
        ("vars.UNSET == 'x'", OK, False),
    ],
)
def test_conditions_follow_github_rules(expression: str, status: Status, expected: bool) -> None:
    assert condition(expression, CONTEXTS, status) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("contains(github.event_name, 'p')", "unknown function contains()"),
        ("hashFiles()", "unknown function hashFiles()"),
        ("failure() && format('{0}', 1)", "unknown function format()"),  # even unevaluated
        ("matrix.python == '3.11'", "unknown or unavailable context 'matrix'"),
        ("success() || inputs.x", "unknown or unavailable context 'inputs'"),
        ("github.actor == 'me'", "github.actor: no such property"),
        ("steps.nope.outcome == 'success'", "steps.nope: no such property"),
        ("env.PLAN_FIEL == 'x'", "env.PLAN_FIEL: no such property"),
        ("github.event_name = 'push'", "cannot parse"),
        ("github.event['x']", "cannot parse"),
    ],
)
def test_anything_else_is_an_error(expression: str, message: str) -> None:
    with pytest.raises(WorkflowError, match=message.replace("(", r"\(").replace(")", r"\)")):
        condition(expression, CONTEXTS, OK)


def test_interpolation_renders_values_as_github_does() -> None:
    text = "${{ github.event.repository.private == false }} ${{ env.PLAN_FILE }} ${{ vars.X }}."
    assert interpolate(text, CONTEXTS) == "false lsqsync-plan.json ."
    with pytest.raises(WorkflowError, match="only available in if:"):
        interpolate("${{ always() }}", CONTEXTS)
    with pytest.raises(WorkflowError, match="an object where a string is needed"):
        interpolate("${{ github.event }}", CONTEXTS)


def gh(github: FakeGitHub, tmp_path: Path, *args: str, token: str = TOKEN) -> tuple[int, str, str]:
    exe = github.wrapper(tmp_path / "bin")
    env = {"PATH": "/usr/bin:/bin", "GH_TOKEN": token} if token else {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [str(exe), *args], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_the_fake_gh_answers_the_workflow_s_calls_only(tmp_path: Path) -> None:
    github = FakeGitHub(tmp_path / "gh", "acme/rules", TOKEN)
    github.set_pull(3, "a" * 40)
    github.set_permissions({"pull-requests": "write"})
    (tmp_path / "body.md").write_text("<!-- lsqsync:plan run=1 -->\nhello\n")
    post = ["api", "repos/acme/rules/issues/3/comments", "-F", "body=@body.md"]

    assert gh(github, tmp_path, *post)[0] == 0
    assert gh(github, tmp_path, "api", "repos/acme/rules/pulls/3", "--jq", ".head.sha") == (
        0,
        "a" * 40 + "\n",
        "",
    )
    listed = gh(
        github, tmp_path, "api", "--paginate", "repos/acme/rules/issues/3/comments",
        "--jq", ".[] | .body | split(\"\\n\")[0]",
    )  # fmt: skip
    assert listed == (0, "<!-- lsqsync:plan run=1 -->\n", "")
    assert github.comments(3)[0]["user"]["login"] == "github-actions[bot]"

    for args in (
        ["pr", "comment", "3", "--body", "x"],
        ["api", "repos/acme/rules/issues/3/comments", "-f", "body=x"],
        ["api", "--method", "DELETE", "repos/acme/rules/issues/comments/1001"],
        ["api", "repos/other/rules/pulls/3"],
        ["run", "download", "1", "--name", "x"],
    ):
        code, _, err = gh(github, tmp_path, *args)
        assert (code, err.startswith("fake gh: unsupported")) == (1, True), args
    assert gh(github, tmp_path, "api", "repos/acme/rules/pulls/3", token="")[0] == 1
    assert gh(github, tmp_path, "api", "repos/acme/rules/pulls/3", token="other")[0] == 1

    # what the job's permissions: do not grant, and what a read-only token cannot do
    code, _, err = gh(github, tmp_path, "run", "download", "5", "--name", "x", "--dir", "d")
    assert (code, "HTTP 403" in err, "actions: none, read is needed" in err) == (1, True, True)
    github.set_permissions({"pull-requests": "read"})
    code, _, err = gh(github, tmp_path, *post)
    assert (code, "pull-requests: read, write is needed" in err) == (1, True)
    github.set_permissions({"pull-requests": "write"})
    github.refuse_comment_writes()
    code, _, err = gh(github, tmp_path, *post)
    assert (code, err) == (1, "gh: Resource not accessible by integration (HTTP 403)\n")
    assert len(github.comments(3)) == 1
