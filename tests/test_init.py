"""`lsqsync init`: a new rule repository that validates, plans and applies as it is."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from cli_helpers import run
from pg_server import PgServer

from lsqsync import __version__
from lsqsync.emulator import Emulator
from lsqsync.resources import schema_text
from lsqsync.scaffold import SCHEMAS, TEMPLATES, files

EVERY_FILE = [*TEMPLATES, *SCHEMAS]


def test_init_validate_plan_and_apply_in_a_fresh_folder(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["init"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[: len(EVERY_FILE)] == [f"created  {p}" for p in EVERY_FILE]
    assert "Next: lsqsync validate and lsqsync test (offline), then set LSQ_HOST" in out
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == (
        sorted(EVERY_FILE)
    )

    assert run(["validate"], capsys)[:2] == (0, "valid: 1 rule in 1 file\n")
    # the example test passes offline, against the example snapshot: no keys, no host
    monkeypatch.delenv("LSQ_HOST")
    code, out, _ = run(["test"], capsys)
    assert (code, out.splitlines()[-1]) == (0, "1 passed (1 test file)"), out
    monkeypatch.setenv("LSQ_HOST", connected.url)
    code, out, _ = run(["plan", "--out", "p.json"], capsys)
    assert code == 0
    assert "flag-high-value" in out
    changes = json.loads((tmp_path / "p.json").read_text())["changes"]
    assert changes, "the example rule changes some of the emulator's deals"
    code, out, _ = run(["apply", "p.json"], capsys)
    assert code == 0
    assert out.startswith("Run ")
    assert ": succeeded.\n" in out
    assert run(["plan", "--detailed-exitcode"], capsys)[0] == 0  # nothing left to do
    # the state file lands where .gitignore keeps it out of the repository
    assert (tmp_path / ".lsqsync" / "state.db").is_file()
    assert ".lsqsync/" in (tmp_path / ".gitignore").read_text().splitlines()


def test_init_never_overwrites_and_says_what_it_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "example.yml").write_text("mine\n")
    (tmp_path / ".gitignore").write_text("node_modules/\n")
    code, out, err = run(["init", str(tmp_path)], capsys)
    assert code == 0
    assert err == (
        "warning: .gitignore does not list .lsqsync/, *.plan.json, lsqsync-plan.json: add them, "
        "or the state file and saved plans (CRM values) may be committed\n"
    )
    assert "skipped  rules/example.yml (already there)\n" in out
    assert "skipped  .gitignore (already there)\n" in out
    assert "created  lsqsync.yml\n" in out
    assert (tmp_path / "rules" / "example.yml").read_text() == "mine\n"
    assert (tmp_path / ".gitignore").read_text() == "node_modules/\n"
    assert f"Next: cd {tmp_path} && lsqsync validate" in out

    (tmp_path / ".gitignore").write_text("node_modules/\n/.lsqsync\n  *.plan.json\n")
    code, out, err = run(["init", str(tmp_path)], capsys)
    assert code == 0
    assert "does not list lsqsync-plan.json: add it, or" in err
    assert out.endswith("already has every file.\n")
    assert "created" not in out


def test_init_creates_the_folder_and_names_the_branch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new" / "rules-repo"
    assert run(["init", str(target), "--branch", "release/2026"], capsys)[0] == 0
    workflow = yaml.safe_load((target / ".github/workflows/lsqsync.yml").read_text())
    assert workflow[True]["push"]["branches"] == ["release/2026"]  # YAML 1.1 reads `on` as True
    assert workflow["env"]["LSQSYNC_VERSION"] == __version__


@pytest.mark.parametrize(
    "branch",
    ["", "-x", "a b", "../main", "/main", "a;b", "a//b", "feat/", "main.lock", "a/.b", "x.", ".x"],
)
def test_a_bad_branch_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], branch: str
) -> None:
    code, out, err = run(["init", str(tmp_path), "--branch", branch], capsys)
    assert (code, out) == (1, "")
    assert err == f"error: --branch {branch!r} is not a branch name\n"
    assert list(tmp_path.iterdir()) == []


def test_init_into_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("")
    code, out, err = run(["init", str(tmp_path / "f")], capsys)
    assert (code, out) == (1, "")
    assert err.endswith(f"Directory '{tmp_path / 'f'}' is a file.\n")


def test_a_folder_that_cannot_be_made_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_text("")
    code, out, err = run(["init", str(tmp_path / "f" / "repo")], capsys)
    assert (code, out) == (1, "")
    assert err == f"error: init: {tmp_path / 'f' / 'repo'}: Not a directory\n"


def test_the_schema_lines_point_at_the_schemas_init_writes(tmp_path: Path) -> None:
    written = files()
    for path, content in written.items():
        if not path.endswith((".yml", ".yaml")) or "$schema=" not in content:
            continue
        line = content.splitlines()[0]
        assert line.startswith("# yaml-language-server: $schema="), path
        target = os.path.normpath(os.path.join(os.path.dirname(path), line.split("=", 1)[1]))
        assert target in SCHEMAS, (path, target)
        assert written[target] == schema_text(SCHEMAS[target])
    assert {p for p, c in written.items() if "$schema=" in c} == {
        "lsqsync.yml",
        "rules/example.yml",
        "tests/example.yml",
    }


def test_the_pre_commit_config_uses_this_version_of_the_hook() -> None:
    config = yaml.safe_load(files()[".pre-commit-config.yaml"])
    (repo,) = config["repos"]
    assert repo["rev"] == f"v{__version__}"
    assert [h["id"] for h in repo["hooks"]] == ["lsqsync-validate", "lsqsync-test"]
    hooks = yaml.safe_load((Path(__file__).parents[1] / ".pre-commit-hooks.yaml").read_text())
    assert {"lsqsync-validate", "lsqsync-test"} <= {h["id"] for h in hooks}


def test_the_library_refuses_a_file_as_the_folder(tmp_path: Path) -> None:
    from lsqsync.errors import LsqsyncError
    from lsqsync.scaffold import init

    (tmp_path / "f").write_text("")
    with pytest.raises(LsqsyncError, match=r"/f: not a folder$"):
        init(tmp_path / "f")


def test_state_path_follows_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    run(["init"], capsys)
    assert run(["state", "path"], capsys)[:2] == (0, ".lsqsync/state.db\n")
    config = tmp_path / "lsqsync.yml"
    config.write_text(config.read_text().replace("state: .lsqsync/state.db", "state: ops/s.db"))
    assert run(["state", "path"], capsys)[:2] == (0, "ops/s.db\n")
    monkeypatch.chdir(tmp_path.parent)
    assert run(["state", "path", "--config", str(tmp_path)], capsys)[1] == (
        f"{tmp_path.name}/ops/s.db\n"
    )


@pytest.mark.parametrize("branch", ["1.10", "true", "release/2026"])
def test_the_branch_stays_a_string_in_the_workflow(branch: str) -> None:
    workflow = yaml.safe_load(files(branch)[".github/workflows/lsqsync.yml"])
    assert workflow[True]["push"]["branches"] == [branch]


def test_the_default_plan_lifetime_in_plan_help_is_the_planner_s() -> None:
    from click.testing import CliRunner

    from lsqsync.cli import cli
    from lsqsync.plan.model import PLAN_LIFETIME

    help_text = " ".join(CliRunner().invoke(cli, ["plan", "--help"]).output.split())
    hours = PLAN_LIFETIME.total_seconds() / 3600
    assert f"apply refuses it later). [default: {hours:g}]" in help_text


def test_init_for_a_postgresql_state_plans_and_applies_into_a_workspace_named_after_the_folder(
    connected: Emulator,
    pg: PgServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "CRM Rules"
    code, out, _ = run(["init", str(folder), "--state", "postgres"], capsys)
    assert code == 0
    assert "set LSQ_HOST, LSQ_ACCESS_KEY, LSQ_SECRET_KEY, LSQSYNC_STATE_URL and " in out
    assert "For CI, add those five to the repository's Actions settings" in out
    config = yaml.safe_load((folder / "lsqsync.yml").read_text())
    assert config["state"] == {
        "url": "postgresql://lsqsync@localhost:5432/lsqsync",
        "workspace": "crm-rules",
    }
    for path, text in files("main", "postgres", "crm-rules").items():
        assert not re.search(r"^\s*#(if |end$)|@[A-Z]+@", text, flags=re.M), path
    workflow = (folder / ".github/workflows/lsqsync.yml").read_text()
    assert "lsqsync-state" not in workflow  # no state branch: the database keeps the state
    assert '"lsqsync[postgres]==$LSQSYNC_VERSION"' in workflow
    assert workflow.count("LSQSYNC_STATE_PASSWORD: ${{ secrets.LSQSYNC_STATE_PASSWORD }}") == 4
    monkeypatch.chdir(folder)
    monkeypatch.setenv("LSQSYNC_STATE_URL", pg.url(pg.new_database()))
    assert run(["validate"], capsys)[:2] == (0, "valid: 1 rule in 1 file\n")
    # the example test passes offline, against the example snapshot: no keys, no host
    monkeypatch.delenv("LSQ_HOST")
    code, out, _ = run(["test"], capsys)
    assert (code, out.splitlines()[-1]) == (0, "1 passed (1 test file)"), out
    monkeypatch.setenv("LSQ_HOST", connected.url)
    assert run(["plan", "--out", "p.json"], capsys)[0] == 0
    code, out, _ = run(["apply", "p.json"], capsys)
    assert (code, ": succeeded.\n" in out) == (0, True)
    assert not (folder / ".lsqsync" / "state.db").exists()
    code, out, _ = run(["state", "workspaces"], capsys)
    assert out.splitlines()[1].split()[:4] == ["*", "crm-rules", "1", "1"]


@pytest.mark.parametrize(
    ("folder", "workspace"),
    [("crm-rules", "crm-rules"), ("Sales Ops 2026", "sales-ops-2026"), ("---", "default")],
)
def test_the_workspace_is_named_after_the_folder(folder: str, workspace: str) -> None:
    from lsqsync.scaffold import workspace_for

    assert workspace_for(Path("/srv") / folder) == workspace


def test_init_with_a_schedule_adds_the_scheduled_workflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["init", str(tmp_path), "--schedule", " 0  6 * *  MON-FRI "], capsys)
    assert (code, err) == (0, "")
    assert "created  .github/workflows/lsqsync-schedule.yml\n" in out
    assert (
        ".github/workflows/lsqsync-schedule.yml runs lsqsync reconcile and drift at "
        "'0 6 * * MON-FRI' (UTC): it applies the rules marked apply: auto and opens an issue for "
        "the rest.\n"
    ) in out
    workflow = yaml.safe_load((tmp_path / ".github/workflows/lsqsync-schedule.yml").read_text())
    assert workflow[True]["schedule"] == [{"cron": "0 6 * * MON-FRI"}]
    assert workflow["env"]["LSQSYNC_VERSION"] == __version__

    # an existing repository gets the scheduled workflow alone
    (tmp_path / ".github/workflows/lsqsync-schedule.yml").unlink()
    code, out, _ = run(["init", str(tmp_path), "--schedule", "30 2 * * *"], capsys)
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("created")] == [
        "created  .github/workflows/lsqsync-schedule.yml"
    ]


@pytest.mark.parametrize(
    ("cron", "why"),
    [
        ("0 6 * *", "4 fields"),
        ("61 6 * * *", "'61' is not a minute (0-59)"),
        ("0 6 * * 7", "'7' is not a day of the week (0-6, or a name)"),
        ("0 6 * FOO *", "'FOO' is not a month (1-12, or a name)"),
        ("*/0 6 * * *", "'*/0': a step of 0"),
        ('0 6 * * "1"', "'\"1\"' is not a day of the week (0-6, or a name)"),
    ],
)
def test_a_bad_schedule_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cron: str, why: str
) -> None:
    code, out, err = run(["init", str(tmp_path / "repo"), "--schedule", cron], capsys)
    assert (code, out) == (1, "")
    assert err.startswith(
        f"error: --schedule {' '.join(cron.split())!r} is not a cron schedule: {why} ("
    )
    assert not (tmp_path / "repo").exists()


def _git_head(folder: Path) -> str:
    import subprocess

    done = subprocess.run(
        ["git", "symbolic-ref", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_init_git_makes_a_repository_on_the_branch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "rules-repo"
    code, out, _ = run(["init", str(folder), "--git", "--branch", "trunk"], capsys)
    assert code == 0
    assert out.splitlines()[-1] == (
        f"git: made {folder} a git repository (branch trunk); commit the files to start"
    )
    assert _git_head(folder) == "refs/heads/trunk"
    # inside a repository it is left as it is
    code, out, _ = run(["init", str(folder / "sub"), "--git"], capsys)
    assert code == 0
    assert out.splitlines()[-1] == (
        f"git: {folder / 'sub'} is already in a git repository: left as it is"
    )
    assert not (folder / "sub" / ".git").exists()


def test_init_without_a_terminal_does_not_run_git_and_says_how(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "scripted"
    code, out, _ = run(["init", str(folder)], capsys)
    assert code == 0
    assert out.splitlines()[-1] == (
        f"{folder} is not a git repository yet: git init (or lsqsync init --git)."
    )
    assert not (folder / ".git").exists()
    code, out, _ = run(["init", str(tmp_path / "quiet"), "--no-git"], capsys)
    assert (code, out.splitlines()[-1][:7]) == (0, "For CI,")  # no word about git


@pytest.mark.parametrize(("answer", "made"), [("\n", True), ("n\n", False)])
def test_init_on_a_terminal_offers_git_init(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    made: bool,
) -> None:
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal(answer))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    folder = tmp_path / "asked"
    code, out, _ = run(["init", str(folder)], capsys)
    assert code == 0
    assert f"Make {folder} a git repository (git init)? [Y/n]: " in out
    assert (folder / ".git").is_dir() is made
