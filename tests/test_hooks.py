"""The pre-commit hook this repository offers (.pre-commit-hooks.yaml) is well-formed and runs
a real lsqsync command on the files it should."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from lsqsync.cli import cli

MANIFEST = Path(__file__).parents[1] / ".pre-commit-hooks.yaml"


def hooks() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(MANIFEST.read_text())
    assert isinstance(data, list)
    return {hook["id"]: hook for hook in data}


def test_the_manifest_offers_lsqsync_validate_with_the_required_keys() -> None:
    hook = hooks()["lsqsync-validate"]
    # pre-commit's manifest format: id, name, entry and language are required.
    for key in ("id", "name", "entry", "language"):
        assert isinstance(hook.get(key), str), key
        assert hook[key].strip(), key
    assert hook["language"] == "python"
    assert hook["entry"] == "lsqsync validate"
    assert hook["description"]


def test_validate_always_checks_the_whole_project_once() -> None:
    hook = hooks()["lsqsync-validate"]
    assert hook["pass_filenames"] is False
    assert hook["require_serial"] is True


@pytest.mark.parametrize(
    ("path", "matches"),
    [
        ("lsqsync.yml", True),
        ("rules/a.yml", True),
        ("rules/sub/b.yaml", True),
        ("rules/data/x.csv", True),
        ("src/app.py", False),
        ("rules/notes.md", False),
        ("other/lsqsync.yml", False),
        ("old-rules/a.yml", False),
    ],
)
def test_files_selects_the_configuration_rules_and_csvs(path: str, matches: bool) -> None:
    # pre-commit applies `files` with re.search to paths relative to the repository root.
    pattern = re.compile(hooks()["lsqsync-validate"]["files"])
    assert bool(pattern.search(path)) is matches


@pytest.mark.parametrize(
    ("path", "matches"),
    [
        ("lsqsync.yml", True),
        ("rules/a.yml", True),
        ("rules/data/x.csv", True),
        ("tests/deals.yml", True),
        ("tests/sub/loans.yaml", True),
        ("types/12003.json", True),
        ("types/notes.json", False),
        ("tests/test_app.py", False),
        ("src/app.py", False),
    ],
)
def test_the_tests_run_when_a_rule_a_test_or_a_snapshot_changes(path: str, matches: bool) -> None:
    hook = hooks()["lsqsync-test"]
    assert (hook["pass_filenames"], hook["require_serial"], hook["language"]) == (
        False,
        True,
        "python",
    )
    assert bool(re.compile(hook["files"]).search(path)) is matches


@pytest.mark.parametrize("hook", ["lsqsync-validate", "lsqsync-test"])
def test_the_entry_is_a_real_lsqsync_command(hook: str) -> None:
    program, *command = shlex.split(hooks()[hook]["entry"])
    assert program == "lsqsync"
    result = CliRunner().invoke(cli, [*command, "--help"], prog_name="lsqsync")
    assert result.exit_code == 0, result.output
    assert f"Usage: lsqsync {' '.join(command)} " in result.output
