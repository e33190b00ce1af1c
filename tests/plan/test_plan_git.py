"""A plan records the git commit of the rules, and says when the files it was made from are
not what that commit holds (a dirty working tree)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from crm_helpers import example_project

from lsqsync.cli import main
from lsqsync.emulator import Emulator
from lsqsync.plan.command import git_changes

NOW = ["--now", "2026-11-27 10:00:00"]


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=ops@example.com", "-c", "user.name=Ops", *args],
        cwd=folder, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def plan(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--format", "json", *NOW])
    assert exit_info.value.code == 0
    saved: dict[str, object] = json.loads(capsys.readouterr().out)
    return saved


def test_a_plan_of_uncommitted_rules_says_so(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    example_project(tmp_path)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "rules")
    head = git(tmp_path, "rev-parse", "HEAD").strip()
    (tmp_path / "notes.txt").write_text("not an input of the plan\n")
    clean = plan(capsys)
    assert (clean["git_commit"], clean["warnings"]) == (head, [])

    deals = tmp_path / "rules" / "deals.yml"
    deals.write_text(deals.read_text() + "\n# reviewed\n")
    (tmp_path / "rules" / "extra.yml").write_text("version: 1\nrules: []\n")
    dirty = plan(capsys)
    assert dirty["git_commit"] == head
    assert dirty["warnings"] == [
        "made from uncommitted files: rules/deals.yml, rules/extra.yml differ from git commit "
        f"{head[:12]}, so the commit recorded in this plan does not hold what was planned "
        "(commit them, then plan)"
    ]


def test_outside_a_repository_nothing_differs(tmp_path: Path) -> None:
    (tmp_path / "lsqsync.yml").write_text("version: 1\n")
    assert git_changes(tmp_path, ["lsqsync.yml"]) == []
