"""CSV files that select opportunities for a rule and give its templates a ``row``."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lsqsync.documents.problems import Problem
from lsqsync.documents.yamlsource import Location

MAX_BYTES = 64 * 2**20  # far more than any sheet of opportunities; /dev/zero is refused


@dataclass(frozen=True)
class CsvRow:
    key: str
    line: int
    values: Mapping[str, str]


@dataclass(frozen=True)
class CsvData:
    file: str  # as shown in messages
    path: Path  # as read
    key: str
    columns: tuple[str, ...]
    rows: tuple[CsvRow, ...]  # the rows without problems
    problems: tuple[Problem, ...] = ()  # duplicate columns; rows too short or long, bad keys


def read(
    path: Path, shown: str, key: str, referenced_at: Location, referenced_path: str
) -> CsvData | list[Problem]:
    """Read a UTF-8 CSV (BOM or not) with a header row; ``key`` must be a column whose values
    are present and unique. Returns the data — with the problems of its rows, so that a short
    row does not hide what else is wrong (a template's column the header lacks) — or, when the
    file or its header cannot be used, every problem found."""
    text = _text(path, shown, referenced_at, referenced_path)
    if isinstance(text, Problem):
        return [text]
    records = _records(text, shown)
    if isinstance(records, Problem):
        return [records]
    header_line, header = records[0]
    columns = tuple(c.strip() for c in header)
    problems = _header_problems(columns, key, Location(shown, header_line, 1))
    if key not in columns:
        return problems
    rows = _rows(records[1:], columns, key, shown, problems)
    return CsvData(shown, path, key, columns, tuple(rows), tuple(problems))


def _text(path: Path, shown: str, referenced_at: Location, referenced_path: str) -> str | Problem:
    """The file's text, or why it cannot be read (at the rule that names it, or in the file)."""
    if path.exists() and not path.is_file():
        return Problem(referenced_at, referenced_path, f"{shown} is not a regular file")
    if path.is_file() and path.stat().st_size > MAX_BYTES:
        return Problem(
            referenced_at,
            referenced_path,
            f"CSV file {shown} is larger than {MAX_BYTES // 2**20} MiB",
        )
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return Problem(referenced_at, referenced_path, f"CSV file {shown} not found")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        return Problem(Location(shown, line, 1), "", "not UTF-8 text (save the CSV as UTF-8)")
    except OSError as e:
        return Problem(
            referenced_at, referenced_path, f"cannot read CSV file {shown}: {e.strerror or e}"
        )


def _records(text: str, shown: str) -> list[tuple[int, list[str]]] | Problem:
    """The non-blank records with their line numbers, the header first."""
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    try:
        records = [(reader.line_num, record) for record in reader]
    except csv.Error as e:
        return Problem(Location(shown, reader.line_num, 1), "", f"malformed CSV: {e}")
    records = [(line, r) for line, r in records if any(cell.strip() for cell in r)]
    if not records:
        return Problem(Location(shown, 1, 1), "", "the CSV is empty (a header row is required)")
    return records


def _header_problems(columns: Sequence[str], key: str, at: Location) -> list[Problem]:
    """Duplicate columns, and a key that is not a column."""
    problems = []
    seen_columns: dict[str, int] = {}
    for i, column in enumerate(columns):
        if column in seen_columns:
            problems.append(Problem(at, "", f"duplicate column '{column}'"))
        seen_columns.setdefault(column, i)
    if key not in columns:
        problems.append(Problem(at, "", f"no key column '{key}' (columns: {', '.join(columns)})"))
    return problems


def _rows(
    records: Sequence[tuple[int, list[str]]],
    columns: Sequence[str],
    key: str,
    shown: str,
    problems: list[Problem],
) -> list[CsvRow]:
    """The rows after the header, by column; a row of the wrong width, or with an empty or
    repeated key, is added to ``problems`` instead."""
    rows: list[CsvRow] = []
    first_line: dict[str, int] = {}
    for line, record in records:
        if len(record) != len(columns):
            problems.append(
                Problem(
                    Location(shown, line, 1),
                    "",
                    f"{len(record)} value{'s' if len(record) != 1 else ''} for "
                    f"{len(columns)} columns",
                )
            )
            continue
        values = {c: v.strip() for c, v in zip(columns, record, strict=True)}
        value = values[key]
        if not value:
            problems.append(Problem(Location(shown, line, 1), "", f"empty key '{key}'"))
        elif value in first_line:
            problems.append(
                Problem(
                    Location(shown, line, 1),
                    "",
                    f"duplicate key {key}={value!r} (first on line {first_line[value]})",
                )
            )
        else:
            first_line[value] = line
            rows.append(CsvRow(value, line, values))
    return rows
