"""CSV files of rules: UTF-8 with or without a BOM, a header row, a present and unique key; every
problem with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsqsync.documents import csvsource
from lsqsync.documents.csvsource import CsvData, CsvRow
from lsqsync.documents.problems import Problem
from lsqsync.documents.yamlsource import Location

RULE = Location("rules/r.yml", 6, 17)
PATH = "rules[0].csv.path"


def _read(tmp_path: Path, content: bytes, key: str = "opportunity_id") -> CsvData | list[Problem]:
    path = tmp_path / "sheet.csv"
    path.write_bytes(content)
    return csvsource.read(path, "data/sheet.csv", key, RULE, PATH)


def _problems(result: CsvData | list[Problem]) -> list[str]:
    return [str(p) for p in (result.problems if isinstance(result, CsvData) else result)]


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["plain", "bom"])
def test_a_good_csv(tmp_path: Path, bom: bytes) -> None:
    content = (
        bom + b"opportunity_id,new_owner,reason\nopp-1,a@example.com,territory\nopp-2,b@x.com,\n"
    )
    assert _read(tmp_path, content) == CsvData(
        "data/sheet.csv",
        tmp_path / "sheet.csv",
        "opportunity_id",
        ("opportunity_id", "new_owner", "reason"),
        (
            CsvRow(
                "opp-1",
                2,
                {"opportunity_id": "opp-1", "new_owner": "a@example.com", "reason": "territory"},
            ),
            CsvRow("opp-2", 3, {"opportunity_id": "opp-2", "new_owner": "b@x.com", "reason": ""}),
        ),
    )


def test_cells_are_trimmed_blank_lines_skipped_and_lines_counted(tmp_path: Path) -> None:
    content = b' opportunity_id , owner \r\n\r\n opp-1 , a@x.com \r\n , \r\n"opp-2","b, c"\r\n'
    assert _read(tmp_path, content) == CsvData(
        "data/sheet.csv",
        tmp_path / "sheet.csv",
        "opportunity_id",
        ("opportunity_id", "owner"),
        (
            CsvRow("opp-1", 3, {"opportunity_id": "opp-1", "owner": "a@x.com"}),
            CsvRow("opp-2", 5, {"opportunity_id": "opp-2", "owner": "b, c"}),
        ),
    )


def test_a_quoted_value_may_span_lines(tmp_path: Path) -> None:
    result = _read(tmp_path, b'opportunity_id,note\nopp-1,"two\nlines"\nopp-2,x\n')
    assert isinstance(result, CsvData)
    assert [(r.key, r.values["note"]) for r in result.rows] == [
        ("opp-1", "two\nlines"),
        ("opp-2", "x"),
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", ["data/sheet.csv:1:1: the CSV is empty (a header row is required)"]),
        (b"\n \n,\n", ["data/sheet.csv:1:1: the CSV is empty (a header row is required)"]),
        (
            b"id,owner\nopp-1,a\n",
            ["data/sheet.csv:1:1: no key column 'opportunity_id' (columns: id, owner)"],
        ),
        (
            b"\nid,opportunity_id,id\n",
            ["data/sheet.csv:2:1: duplicate column 'id'"],
        ),
        (
            b"opportunity_id,owner\nopp-1,a\nopp-2,b\nopp-1,c\nopp-1,d\n",
            [
                "data/sheet.csv:4:1: duplicate key opportunity_id='opp-1' (first on line 2)",
                "data/sheet.csv:5:1: duplicate key opportunity_id='opp-1' (first on line 2)",
            ],
        ),
        (
            b"opportunity_id,owner\nopp-1,a\n  ,b\n",
            ["data/sheet.csv:3:1: empty key 'opportunity_id'"],
        ),
        (
            b"opportunity_id,owner\nopp-1\nopp-2,b,c\n",
            [
                "data/sheet.csv:2:1: 1 value for 2 columns",
                "data/sheet.csv:3:1: 3 values for 2 columns",
            ],
        ),
        (
            b'opportunity_id,owner\nopp-1,"a"b\n',
            ["data/sheet.csv:2:1: malformed CSV: ',' expected after '\"'"],
        ),
        (
            b'opportunity_id,owner\nopp-1,a\n"opp-2,b\n',
            ["data/sheet.csv:3:1: malformed CSV: unexpected end of data"],
        ),
        (
            b"opportunity_id,owner\nopp-1,a\nopp-2,Jos\xe9\n",
            ["data/sheet.csv:3:1: not UTF-8 text (save the CSV as UTF-8)"],
        ),
        (
            b"\xff\xfeo\x00p\x00",
            ["data/sheet.csv:1:1: not UTF-8 text (save the CSV as UTF-8)"],
        ),
        (
            # Every problem at once: an empty key, a duplicate and a short row.
            b"opportunity_id,owner\n,a\nopp-1,b\nopp-1,c\nopp-3\n",
            [
                "data/sheet.csv:2:1: empty key 'opportunity_id'",
                "data/sheet.csv:4:1: duplicate key opportunity_id='opp-1' (first on line 3)",
                "data/sheet.csv:5:1: 1 value for 2 columns",
            ],
        ),
    ],
    ids=[
        "empty",
        "blank",
        "no-key-column",
        "duplicate-column",
        "duplicate-key",
        "empty-key",
        "ragged",
        "bad-quote",
        "unterminated-quote",
        "latin1",
        "utf16",
        "several",
    ],
)
def test_csv_problems(tmp_path: Path, content: bytes, expected: list[str]) -> None:
    assert _problems(_read(tmp_path, content)) == expected


def test_a_missing_or_unreadable_file_is_a_problem_of_the_rule(tmp_path: Path) -> None:
    missing = csvsource.read(tmp_path / "nope.csv", "data/nope.csv", "id", RULE, PATH)
    folder = csvsource.read(tmp_path, "data", "id", RULE, PATH)
    assert (_problems(missing), _problems(folder)) == (
        ["rules/r.yml:6:17: rules[0].csv.path: CSV file data/nope.csv not found"],
        ["rules/r.yml:6:17: rules[0].csv.path: data is not a regular file"],
    )


def test_the_key_can_be_any_column(tmp_path: Path) -> None:
    result = _read(tmp_path, b"email,opportunity_id\na@x.com,opp-1\n", key="email")
    assert isinstance(result, CsvData)
    assert [(r.key, r.line) for r in result.rows] == [("a@x.com", 2)]
