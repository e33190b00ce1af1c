"""The workflows `lsqsync init` writes (for either state) pass actionlint (with shellcheck on
every `run:` script) and the GitHub workflow JSON Schema; broken copies fail them, so the checks
are known to check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lsqsync.cli import main

WORKFLOW = ".github/workflows/lsqsync.yml"
# the checkers are installed beside this interpreter; actionlint finds shellcheck on PATH
PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def init(
    target: Path, branch: str, capsys: pytest.CaptureFixture[str], state: str = "sqlite"
) -> Path:
    with pytest.raises(SystemExit) as exit_info:
        main(["init", str(target), "--branch", branch, "--state", state])
    capsys.readouterr()
    assert exit_info.value.code in (0, None)
    return target / WORKFLOW


def actionlint(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("actionlint", path=PATH)
    assert exe is not None
    # without shellcheck, actionlint skips the run: scripts silently
    assert shutil.which("shellcheck", path=PATH) is not None
    return subprocess.run(
        [exe, "-no-color", *map(str, args)],
        env={**os.environ, "PATH": PATH},
        capture_output=True,
        text=True,
        check=False,
    )


def schema_check(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("check-jsonschema", path=PATH)
    assert exe is not None
    return subprocess.run(
        [exe, "--builtin-schema", "vendor.github-workflows", *map(str, args)],
        env={**os.environ, "PATH": PATH},
        capture_output=True,
        text=True,
        check=False,
    )


BRANCHES = ["main", "release/2026"]
STATES = ["sqlite", "postgres"]


def test_the_generated_workflows_pass_actionlint_and_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = [(b, s) for b in BRANCHES for s in STATES]
    paths = [init(tmp_path / f"{b.replace('/', '-')}-{s}", b, capsys, s) for b, s in made]

    lint = actionlint(*paths)
    schema = schema_check(*paths)

    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")
    assert (schema.returncode, schema.stdout) == (0, "ok -- validation done\n"), schema.stderr
    for (branch, _), path in zip(made, paths, strict=True):
        workflow = yaml.safe_load(path.read_text("utf-8"))
        assert workflow[True]["push"]["branches"] == [branch]  # YAML 1.1 reads `on` as True


# each breakage → (old, new) in the generated workflow, and what each checker says about it
BROKEN = {
    "runs-on-misspelt": ("    runs-on: ubuntu-latest\n", "    runs-onn: ubuntu-latest\n"),
    "run-and-uses-in-one-step": (
        "      - name: Validate\n        run:",
        "      - name: Validate\n        uses: actions/checkout@v6\n        run:",
    ),
    "variable-in-a-printf-format": (  # a shellcheck finding (SC2059)
        "printf '\\n%s\\n' \"The saved plan",
        'printf "\\n$PR\\n" "The saved plan',
    ),
}
ACTIONLINT = {
    "runs-on-misspelt": 'unexpected key "runs-onn" for "job" section',
    "run-and-uses-in-one-step": 'unexpected key "uses" for step to run shell command',
    "variable-in-a-printf-format": "shellcheck reported issue in this script: SC2059",
}
SCHEMA = {
    "runs-on-misspelt": "'runs-on' is a required property",
    "run-and-uses-in-one-step": "'uses' is a required property",
    # the schema cannot see inside scripts: the shell checks need actionlint with shellcheck
}


def test_broken_workflows_fail_the_checks_that_can_see_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = init(tmp_path / "repo", "main", capsys).read_text("utf-8")
    paths = []
    for name, (old, new) in BROKEN.items():
        assert good.count(old) >= 1, old
        paths.append(tmp_path / f"{name}.yml")
        paths[-1].write_text(good.replace(old, new, 1), "utf-8")

    lint = actionlint("-format", "{{json .}}", *paths)
    schema = schema_check("--output-format", "JSON", *paths)

    assert lint.returncode == 1, lint.stderr
    found: dict[str, list[str]] = {}
    for error in json.loads(lint.stdout):
        found.setdefault(Path(error["filepath"]).stem, []).append(error["message"])
    seen = {name: any(ACTIONLINT[name] in m for m in found.get(name, [])) for name in BROKEN}
    assert seen == dict.fromkeys(BROKEN, True), found
    assert schema.returncode == 1, schema.stderr
    found = {}
    for error in json.loads(schema.stdout)["errors"]:
        found.setdefault(Path(error["filename"]).stem, []).append(error["best_match"]["message"])
    assert {name: sorted(set(messages)) for name, messages in found.items()} == {
        name: [message] for name, message in SCHEMA.items()
    }


def test_the_scheduled_workflows_pass_actionlint_and_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for state in STATES:
        with pytest.raises(SystemExit):
            main(["init", str(tmp_path / state), "--state", state, "--schedule", "17 6 * * 1-5"])
        capsys.readouterr()
        paths.append(tmp_path / state / ".github/workflows/lsqsync-schedule.yml")

    lint = actionlint(*paths)
    schema = schema_check(*paths)

    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")
    assert (schema.returncode, schema.stdout) == (0, "ok -- validation done\n"), schema.stderr
    for path in paths:
        workflow = yaml.safe_load(path.read_text("utf-8"))
        assert workflow[True]["schedule"] == [{"cron": "17 6 * * 1-5"}]
        assert workflow["permissions"] == {}
        (job,) = workflow["jobs"].values()
        assert job["concurrency"] == {
            "group": "lsqsync-apply",  # the apply job's: never two writers at once
            "cancel-in-progress": False,
            "queue": "max",
        }
        # the keys reach only the steps that talk to LeadSquared
        with_keys = [s["name"] for s in job["steps"] if "LSQ_SECRET_KEY" in s.get("env", {})]
        assert with_keys == ["Reconcile", "Drift"]
        with_token = [s["name"] for s in job["steps"] if "GH_TOKEN" in s.get("env", {})]
        assert with_token == ["Refuse a public repository", "Open, update or close the issue"]
    sqlite, postgres = (yaml.safe_load(p.read_text("utf-8"))["jobs"]["reconcile"] for p in paths)
    assert sqlite["permissions"] == {"contents": "write", "issues": "write"}
    assert postgres["permissions"] == {"contents": "read", "issues": "write"}
