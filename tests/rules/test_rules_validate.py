"""``lsqsync validate`` end to end: output formats, --var and --var-file, the repository's own
example project, and the shipped schemas."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml
from validation_helpers import unchecked_types

from lsqsync import resources
from lsqsync.cli import main
from lsqsync.config import load_config
from lsqsync.errors import ConfigError
from lsqsync.rules.project import load_project, parse_vars

ROOT = Path(__file__).parents[2]
SKELETON = Path(__file__).parent / "cases" / "skeleton"

BAD_RULES = """\
version: 1
rules:
  - name: close-signed-deals
    opportunity_type: 12003
    set:
      Status: Won
      ModifiedOn: "{{ now }}"
      mx_Custom_9: "{{ vars.team }}"
"""


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The case skeleton with one rule file, as the working directory."""
    root = tmp_path / "project"
    shutil.copytree(SKELETON, root)
    (root / "rules").mkdir()
    (root / "rules" / "q4.yml").write_text(BAD_RULES, encoding="utf-8")
    monkeypatch.chdir(root)
    return root


# -- formats -------------------------------------------------------------------------------------


def test_text(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["validate"], capsys) == (
        1,
        "rules/q4.yml:7:7: rules[0].set.ModifiedOn: 'ModifiedOn' is a system field and cannot "
        "be set\n"
        "rules/q4.yml:8:20: rules[0].set.mx_Custom_9: 'vars.team' is undefined (vars: region)\n"
        "2 problems found\n",
        "",
    )


def test_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["validate", "--config", "lsqsync.yml", "--format", "json"], capsys)
    assert (code, json.loads(out), err) == (
        1,
        {
            "valid": False,
            "rules": 0,
            "files": 0,
            "problems": [
                {
                    "file": "rules/q4.yml",
                    "line": 7,
                    "col": 7,
                    "path": "rules[0].set.ModifiedOn",
                    "message": "'ModifiedOn' is a system field and cannot be set",
                },
                {
                    "file": "rules/q4.yml",
                    "line": 8,
                    "col": 20,
                    "path": "rules[0].set.mx_Custom_9",
                    "message": "'vars.team' is undefined (vars: region)",
                },
            ],
        },
        "",
    )


def test_github(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["validate", "--format", "github"], capsys) == (
        1,
        "::error file=rules/q4.yml,line=7,col=7,title=lsqsync validate::"
        "rules[0].set.ModifiedOn: 'ModifiedOn' is a system field and cannot be set\n"
        "::error file=rules/q4.yml,line=8,col=20,title=lsqsync validate::"
        "rules[0].set.mx_Custom_9: 'vars.team' is undefined (vars: region)\n",
        "",
    )


def test_valid_in_every_format(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "rules" / "q4.yml").write_text(
        BAD_RULES.replace('      ModifiedOn: "{{ now }}"\n', ""), encoding="utf-8"
    )
    args = ["validate", "--var", "team=EMEA"]
    # offline, with no types snapshot: valid, and it says what it did not check and how to
    code, out, err = _run(args, capsys)
    assert (code, out) == (0, "valid: 1 rule in 1 file\n")
    assert unchecked_types(err) == [12003]
    skipped = (
        "fields and options of opportunity type 12003 not checked (types/ has no snapshot of it), "
        "nor which field each name means (Status, mx_Custom_9: a schema name, a display name or "
        "nothing): run `lsqsync validate --online`, or keep a types snapshot "
        "(lsqsync types pull 12003)"
    )
    code, out, err = _run([*args, "--format", "github"], capsys)
    assert (code, out, err) == (
        0,
        f"::warning file=rules/q4.yml,line=3,col=11,title=lsqsync validate::{skipped}\n",
        "",
    )
    code, out, _ = _run([*args, "--format", "json"], capsys)
    assert (code, json.loads(out)) == (
        0,
        {
            "valid": True,
            "rules": 1,
            "files": 1,
            "problems": [],
            "warnings": [
                {"file": "rules/q4.yml", "line": 3, "col": 11, "path": "", "message": skipped}
            ],
        },
    )
    # with a snapshot of the type, nothing is left unchecked
    (project / "types").mkdir()
    shutil.copy(ROOT / "types" / "12003.json", project / "types")
    assert _run(args, capsys) == (0, "valid: 1 rule in 1 file\n", "")
    code, out, _ = _run([*args, "--format", "json"], capsys)
    assert "warnings" not in json.loads(out)


def test_a_file_outside_the_working_directory_is_shown_as_given(
    project: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, _ = _run(["validate", "--config", str(project), "--var", "team=x"], capsys)
    assert (code, out) == (
        1,
        f"{project}/rules/q4.yml:7:7: rules[0].set.ModifiedOn: 'ModifiedOn' is a system field "
        "and cannot be set\n1 problem found\n",
    )


@pytest.mark.parametrize(
    ("config", "shown"), [("nowhere.yml", "nowhere.yml"), ("sub", "sub/lsqsync.yml")]
)
def test_a_missing_configuration(
    config: str,
    shown: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    assert _run(["validate", "--config", config], capsys) == (
        1,
        f"{shown}:1:1: not found (a project is a folder with lsqsync.yml; use --config PATH to "
        "point elsewhere)\n1 problem found\n",
        "",
    )


def test_an_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["validate", "--format", "xml"], capsys)
    assert (code, out, err.splitlines()[-1]) == (
        1,
        "",
        "Error: Invalid value for '--format': 'xml' is not one of 'text', 'json', 'github'.",
    )


# -- --var and --var-file ------------------------------------------------------------------------


@pytest.mark.parametrize("pair", ["team", "=EMEA", "sales team=EMEA", "1team=x", "team-a=x"])
def test_a_bad_var_is_an_error(
    pair: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["validate", "--var", pair], capsys) == (
        1,
        "",
        f"error: --var {pair!r}: expected NAME=VALUE\n",
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"team: [EMEA\n", "vars.yml:2:1: the […] opened at line 1, column 7 is not closed "
                           "with ']', or its entries need a ',' between them"),
        (b"team: EMEA\nteam: APAC\n", "vars.yml:2:1: duplicate key 'team' (first at line 1)"),
        (b"- team\n", "vars.yml: expected a mapping of names to values"),
        (b"", "vars.yml: expected a mapping of names to values"),
        (b"1: x\n", "vars.yml: expected a mapping of names to values"),
        (b"team: Jos\xe9\n", "vars.yml:1:10: not UTF-8 text (save the file as UTF-8)"),
    ],
)  # fmt: skip
def test_a_bad_var_file_is_an_error(
    content: bytes, message: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "vars.yml").write_bytes(content)
    assert _run(["validate", "--var-file", "vars.yml"], capsys) == (
        1,
        "",
        f"error: --var-file {message}\n",
    )


def test_a_missing_var_file_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(["validate", "--var-file", "nope.yml"], capsys)
    assert (code, out, err.splitlines()[-1]) == (
        1,
        "",
        "Error: Invalid value for '--var-file': File 'nope.yml' does not exist.",
    )


def test_var_files_in_order_then_vars_on_top(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yml", tmp_path / "b.yml"
    first.write_text("team: EMEA\ncutoff: 2024-12-31\nlimit: 10\nx: a\n", encoding="utf-8")
    second.write_text("team: APAC\nflag: true\n", encoding="utf-8")
    assert parse_vars(("x=b", "limit=20", "empty=", "eq=a=b"), (first, second)) == {
        "team": "APAC",
        "cutoff": "2024-12-31",  # dates stay strings, as in rule files
        "limit": "20",  # --var values are strings
        "x": "b",
        "flag": True,
        "empty": "",
        "eq": "a=b",
    }


def test_parse_vars_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        parse_vars(("nope",), ())
    assert str(e.value) == "--var 'nope': expected NAME=VALUE"


def test_vars_override_the_configuration(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "rules" / "q4.yml").write_text(
        "version: 1\nrules:\n  - name: a\n    opportunity_type: 1\n"
        '    set: {mx_Custom_9: "{{ vars.region }} {{ vars.team }}"}\n',
        encoding="utf-8",
    )
    (project / "vars.yml").write_text("team: EMEA\n", encoding="utf-8")
    code, out, err = _run(["validate", "--var-file", "vars.yml"], capsys)
    assert (code, out, unchecked_types(err)) == (0, "valid: 1 rule in 1 file\n", [1])
    project_vars = load_project(load_config(), {"region": "EU", "team": "x"}).vars
    assert project_vars == {"region": "EU", "team": "x"}


# -- the repository's example project and schemas ---------------------------------------------


def test_the_example_project_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sorted((ROOT / "rules").rglob("*.y*ml"))
    rules = [rule["name"] for f in files for rule in yaml.safe_load(f.read_text())["rules"]]
    monkeypatch.chdir(tmp_path)
    assert _run(["validate", "--config", str(ROOT / "lsqsync.yml")], capsys) == (
        0,
        f"valid: {len(rules)} rules in {len(files)} files\n",
        "",
    )
    project = load_project(load_config(ROOT / "lsqsync.yml"))
    assert ([r.name for r in project.rules], len(project.files)) == (rules, len(files))
    assert len(files) >= 2


@pytest.mark.parametrize("example", sorted((ROOT / "rules").rglob("*.y*ml")), ids=lambda p: p.name)
def test_every_example_rule_file_validates_on_its_own(
    example: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "lsqsync.yml"
    shutil.copytree(ROOT / "rules" / "data", tmp_path / "rules" / "data")
    shutil.copy(example, tmp_path / "rules" / example.name)
    config.write_text(
        (ROOT / "lsqsync.yml")
        .read_text()
        .replace("rules: [rules/]", f"rules: [rules/{example.name}]"),
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    rules = yaml.safe_load(example.read_text())["rules"]
    count = len(rules)
    code, out, err = _run(["validate"], capsys)
    assert (code, out) == (0, f"valid: {count} rule{'s' if count != 1 else ''} in 1 file\n")
    assert unchecked_types(err) == sorted({r["opportunity_type"] for r in rules})


@pytest.mark.parametrize("name", resources.SCHEMA_NAMES)
def test_the_schemas_are_valid_draft_2020_12(name: str) -> None:
    schema = resources.schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft202012Validator


@pytest.mark.parametrize("name", ["config", "rules"])
def test_the_schemas_describe_every_property_for_editors(name: str) -> None:
    schema = resources.schema(name)
    assert (schema["title"], schema["description"]) != ("", "")
    undescribed = [
        key
        for key, prop in schema["properties"].items()
        if not (prop.get("description") or prop.get("title"))
    ]
    assert undescribed == []


def test_the_example_files_validate_against_the_schemas() -> None:
    rules = jsonschema.Draft202012Validator(resources.schema("rules"))
    config = jsonschema.Draft202012Validator(resources.schema("config"))
    errors = [
        e.message
        for f in sorted((ROOT / "rules").rglob("*.y*ml"))
        for e in rules.iter_errors(yaml.safe_load(f.read_text()))
    ] + [e.message for e in config.iter_errors(yaml.safe_load((ROOT / "lsqsync.yml").read_text()))]
    assert errors == []


def test_links_leading_out_of_the_project_are_never_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("opportunity_id,new_owner\nSECRET-VALUE,x\n")
    (outside / "evil.yml").write_text("SECRET-VALUE: 1\n")
    project = tmp_path / "project"
    (project / "rules").mkdir(parents=True)
    (project / "lsqsync.yml").write_text("version: 1\n")
    (project / "rules" / "evil.yml").symlink_to(outside / "evil.yml")
    (project / "sheet.csv").symlink_to(outside / "secret.csv")
    (project / "rules" / "r.yml").write_text(
        "version: 1\nrules:\n  - name: r\n    opportunity_type: 12000\n"
        "    csv: {path: sheet.csv, key: nope}\n    set: {Status: Won}\n"
    )
    monkeypatch.chdir(project)
    code, out, err = _run(["validate"], capsys)
    assert (code, err) == (1, "")
    assert out == (
        "rules/evil.yml:1:1: a link leading out of the project folder: not read\n"
        "rules/r.yml:5:17: rules[0].csv.path: must stay inside the project folder "
        "(no '..' or links leading out)\n"
        "2 problems found\n"
    )
    assert "SECRET-VALUE" not in out
