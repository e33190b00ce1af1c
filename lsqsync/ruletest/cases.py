"""Test files (``tests/*.yml`` of a rule repository): loaded, checked against their schema with
every problem at its ``file:line:col``, and turned into test cases."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lsqsync.config import Config, display_path, inside_project
from lsqsync.documents import schemacheck, yamlsource
from lsqsync.documents.problems import Problem, document_problems, format_path
from lsqsync.documents.yamlsource import Document, Location, PathKey, YamlError

ErrorKind = Literal["invalid", "conflict", "safety"]
DEFAULT_NOW = "2000-01-01 00:00:00"


@dataclass(frozen=True)
class Given:
    """One opportunity of a test: its name (or id), type and field values as written."""

    name: str
    opportunity_type: int
    fields: Mapping[str, Any]
    location: Location
    path: PathKey  # in the document, for messages about its parts


@dataclass(frozen=True)
class UserSpec:
    email: str
    id: str | None
    active: bool


@dataclass(frozen=True)
class Expected:
    """What one opportunity must get: field → value (empty: no change)."""

    name: str
    fields: Mapping[str, Any]
    location: Location
    path: PathKey


@dataclass(frozen=True)
class ExpectedError:
    kind: ErrorKind
    message: str | None
    location: Location


@dataclass(frozen=True)
class Case:
    file: str  # as shown
    name: str
    location: Location  # of the test's name
    path: PathKey  # ("tests", i)
    document: Document
    rules: tuple[str, ...] | None  # None: every rule
    vars: Mapping[str, Any]
    now: str
    csv: Mapping[str, str]  # path as a rule names it → contents
    users: tuple[UserSpec, ...] | None
    totals: Mapping[int, int]
    given: tuple[Given, ...]
    expected: tuple[Expected, ...]
    error: ExpectedError | None

    @property
    def title(self) -> str:
        return f"{self.file}::{self.name}"

    def where(self, *path: str | int) -> Location:
        return self.document.where((*self.path, *path))


def find_files(config: Config, problems: list[Problem]) -> list[Path]:
    """The test files of ``tests:`` in lsqsync.yml: files, and the ``*.yml``/``*.yaml`` under
    folders; an entry that leads out of the project or names nothing is a problem (a folder
    that does not exist is no tests)."""
    files: list[Path] = []
    for i, entry in enumerate(config.tests):
        path = inside_project(config.root, entry)
        if isinstance(path, str):
            problems.append(Problem(config.where(("tests", i)), f"tests[{i}]", f"{entry}: {path}"))
            continue
        if path.is_dir():
            found = sorted({p for pattern in ("*.yml", "*.yaml") for p in path.rglob(pattern)})
            for f in found:
                relative = str(f.relative_to(config.root))
                if isinstance(inside_project(config.root, relative), str) or not f.is_file():
                    problems.append(
                        Problem(Location(display_path(f), 1, 1), "",
                                "not a regular file inside the project folder: not read")
                    )  # fmt: skip
                else:
                    files.append(f)
        elif path.is_file():
            files.append(path)
        elif entry != "tests/":  # the default: a project without tests
            problems.append(
                Problem(config.where(("tests", i)), f"tests[{i}]",
                        f"no such file or folder: {display_path(path)}")
            )  # fmt: skip
    return list(dict.fromkeys(files))


def load(path: Path) -> tuple[list[Case], list[Problem]]:
    """The cases of one test file, and its problems (a file with schema problems has none)."""
    shown = display_path(path)
    try:
        document = yamlsource.load(path, shown)
    except YamlError as e:
        return [], [Problem(e.location, "", e.message)]
    except (OSError, UnicodeDecodeError) as e:
        return [], [Problem(Location(shown, 1, 1), "", f"cannot read: {e}")]
    if document.data is None:
        message = "the file is empty (expected version: 1 and tests)"
        return [], [Problem(Location(shown, 1, 1), "", message)]
    problems = document_problems(document) + schemacheck.check(document, "tests")
    if problems:
        return [], problems
    cases: list[Case] = []
    names: dict[str, Location] = {}
    for i, raw in enumerate(document.data["tests"]):
        case = _case(document, i, raw)
        if case.name in names:
            problems.append(
                Problem(case.location, f"tests[{i}].name",
                        f"test name '{case.name}' is already used at {names[case.name]}")
            )  # fmt: skip
        names.setdefault(case.name, case.location)
        problems += _expect_problems(case)
        cases.append(case)
    return (cases, problems) if not problems else ([], problems)


def _case(document: Document, i: int, raw: Mapping[str, Any]) -> Case:
    at: PathKey = ("tests", i)
    given = tuple(
        Given(
            str(name),
            spec["type"],
            dict(spec.get("fields") or {}),
            document.where((*at, "given", name, "<key>")),
            (*at, "given", name),
        )
        for name, spec in raw["given"].items()
    )
    expected = tuple(
        Expected(
            str(name),
            {} if spec == "no_change" else dict(spec),
            document.where((*at, "expect", name, "<key>")),
            (*at, "expect", name),
        )
        for name, spec in (raw.get("expect") or {}).items()
    )
    error = None
    if "expect_error" in raw:
        spec = raw["expect_error"]
        spec = spec if isinstance(spec, dict) else {"kind": spec}
        error = ExpectedError(
            spec["kind"], spec.get("message"), document.where((*at, "expect_error"))
        )
    users = None
    if "users" in raw:
        users = tuple(
            UserSpec(u["email"].strip(), u.get("id"), u.get("active", True)) for u in raw["users"]
        )
    return Case(
        file=document.file,
        name=raw["name"],
        location=document.where((*at, "name")),
        path=at,
        document=document,
        rules=tuple(raw["rules"]) if "rules" in raw else None,
        vars=dict(raw.get("vars") or {}),
        now=raw.get("now", DEFAULT_NOW),
        csv=dict(raw.get("csv") or {}),
        users=users,
        totals={int(k): v for k, v in (raw.get("totals") or {}).items() if str(k).isdigit()},
        given=given,
        expected=expected,
        error=error,
    )


def _expect_problems(case: Case) -> list[Problem]:
    """Expectations about opportunities the test does not give, and totals that are not codes."""
    names = {g.name for g in case.given}
    given = ", ".join(sorted(names))
    problems = [
        Problem(e.location, format_path(e.path),
                f"'{e.name}' is not an opportunity the test gives ({given})")
        for e in case.expected
        if e.name not in names
    ]  # fmt: skip
    raw_totals = case.document.data["tests"][case.path[1]].get("totals") or {}
    problems += [
        Problem(case.where("totals", k, "<key>"), format_path((*case.path, "totals", k)),
                "a key of totals is an opportunity type's code")
        for k in raw_totals
        if not str(k).isdigit()
    ]  # fmt: skip
    return problems
