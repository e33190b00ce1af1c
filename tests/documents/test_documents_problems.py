"""Problems and how ``validate`` reports them: text, JSON, and GitHub workflow commands."""

from __future__ import annotations

import json

import pytest

from lsqsync.documents.problems import Problem, ProjectInvalid, format_path, report
from lsqsync.documents.yamlsource import Location

SET = Problem(
    Location("rules/q4.yml", 12, 7),
    "rules[0].set.Stauts",
    "'Stauts' is not a field (did you mean 'Status'?)",
)
CSV = Problem(Location("data/dup.csv", 4, 1), "", "duplicate key id='opp-1' (first on line 2)")
NAME = Problem(Location("rules/q4.yml", 3, 11), "", "rule name 'a' is already used")


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("rules",), "rules"),
        (("rules", 0, "set", "Status"), "rules[0].set.Status"),
        (("rules", 0, "ids", 2), "rules[0].ids[2]"),
        (("vars", "sales-region"), "vars.sales-region"),
    ],
)
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text


def test_a_problem_reads_file_line_col_path_message() -> None:
    assert (str(SET), str(CSV)) == (
        "rules/q4.yml:12:7: rules[0].set.Stauts: 'Stauts' is not a field (did you mean 'Status'?)",
        "data/dup.csv:4:1: duplicate key id='opp-1' (first on line 2)",
    )


def test_project_invalid_lists_each_problem_once_in_file_order() -> None:
    error = ProjectInvalid([SET, CSV, NAME, SET])
    assert (error.problems, str(error)) == (
        (CSV, NAME, SET),
        "3 problems:\n" + "\n".join(map(str, (CSV, NAME, SET))),
    )
    assert str(ProjectInvalid([CSV])) == f"1 problem:\n{CSV}"


@pytest.mark.parametrize(
    ("problems", "summary", "text"),
    [
        ([], {"rules": 4, "files": 2}, "valid: 4 rules in 2 files\n"),
        ([], {"rules": 1, "files": 1}, "valid: 1 rule in 1 file\n"),
        ([], {"rules": 0, "files": 0}, "valid: 0 rules in 0 files\n"),
        ([CSV], {}, f"{CSV}\n1 problem found\n"),
        ([SET, CSV, NAME, CSV], {}, f"{CSV}\n{NAME}\n{SET}\n3 problems found\n"),
    ],
)
def test_text_report(problems: list[Problem], summary: dict[str, int], text: str) -> None:
    assert report(problems, "text", summary) == text


def test_json_report() -> None:
    out = report([SET, CSV], "json", {"rules": 0, "files": 0})
    assert out.endswith("}\n")
    assert json.loads(out) == {
        "valid": False,
        "rules": 0,
        "files": 0,
        "problems": [
            {
                "file": "data/dup.csv",
                "line": 4,
                "col": 1,
                "path": "",
                "message": "duplicate key id='opp-1' (first on line 2)",
            },
            {
                "file": "rules/q4.yml",
                "line": 12,
                "col": 7,
                "path": "rules[0].set.Stauts",
                "message": "'Stauts' is not a field (did you mean 'Status'?)",
            },
        ],
    }
    assert json.loads(report([], "json", {"rules": 4, "files": 2})) == {
        "valid": True,
        "rules": 4,
        "files": 2,
        "problems": [],
    }


def test_github_report_is_one_workflow_command_per_problem() -> None:
    assert report([SET, CSV], "github", {"rules": 0, "files": 0}) == (
        "::error file=data/dup.csv,line=4,col=1,title=lsqsync validate::"
        "duplicate key id='opp-1' (first on line 2)\n"
        "::error file=rules/q4.yml,line=12,col=7,title=lsqsync validate::"
        "rules[0].set.Stauts: 'Stauts' is not a field (did you mean 'Status'?)\n"
    )
    assert report([], "github", {"rules": 4, "files": 2}) == ""


def test_github_report_escapes_data_and_properties() -> None:
    odd = Problem(
        Location("rules/a:b,c%.yml", 1, 2),
        "rules[0].set.x",
        "100% sure\r\nsecond line: a, b",
    )
    assert report([odd], "github", {}) == (
        "::error file=rules/a%3Ab%2Cc%25.yml,line=1,col=2,title=lsqsync validate::"
        "rules[0].set.x: 100%25 sure%0D%0Asecond line: a, b\n"
    )
