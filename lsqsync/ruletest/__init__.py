"""``lsqsync test``: the rule repository's tests, run offline by the real planner against the
snapshot of the account's types (``types/``), reported like pytest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lsqsync.config import load_config
from lsqsync.display import plural
from lsqsync.documents.problems import Problem, ProjectInvalid, annotation
from lsqsync.rules import typefiles
from lsqsync.rules.project import Rule, load_project
from lsqsync.ruletest import cases
from lsqsync.ruletest.run import Outcome, run

Format = Literal["text", "github"]


@dataclass(frozen=True)
class Report:
    outcomes: tuple[Outcome, ...]
    problems: tuple[Problem, ...]  # test files (or the project) that could not be read
    unexercised: tuple[Rule, ...]  # rules no test planned a change from
    files: int

    @property
    def ok(self) -> bool:
        return not self.problems and all(o.status == "passed" for o in self.outcomes)


def run_tests(config_path: Path | None, variables: Mapping[str, Any] | None = None) -> Report:
    """Every test of the project, in file order."""
    config = load_config(config_path)
    problems: list[Problem] = []
    try:
        project = load_project(config, variables)
        snapshots = typefiles.load(config)
    except ProjectInvalid as e:
        return Report((), e.problems, (), 0)
    files = cases.find_files(config, problems)
    problems += snapshots.problems
    outcomes: list[Outcome] = []
    for path in files:
        found, file_problems = cases.load(path)
        problems += file_problems
        outcomes += [run(config, case, snapshots) for case in found]
    exercised = set().union(*(o.exercised for o in outcomes))
    unexercised = tuple(r for r in project.rules if r.name not in exercised)
    return Report(tuple(outcomes), tuple(problems), unexercised, len(files))


def render(report: Report, fmt: Format) -> str:
    """pytest's habits: a line per test, then the failures in detail, then the counts."""
    lines: list[str] = []
    if fmt == "github":
        lines += _annotations(report)
    lines += [f"{o.case.title} {o.status.upper()}" for o in report.outcomes]
    details = [o for o in report.outcomes if o.status != "passed"]
    if details or report.problems:
        lines += ["", "=" * 20 + " failures " + "=" * 20]
    for o in details:
        lines.append(f"{o.case.location}: {o.case.name}: {o.status}")
        lines += [f"    {line}" for line in o.lines]
        lines += [f"    {p}" for p in o.problems]
    lines += [str(p) for p in report.problems]
    if report.unexercised:
        lines += ["", "Rules that no test exercises (no test plans a change from them):"]
        lines += [f"  {r.name} ({r.location.file}:{r.location.line})" for r in report.unexercised]
    lines += ["", _counts(report)]
    return "\n".join(lines) + "\n"


def _counts(report: Report) -> str:
    if not report.outcomes and not report.problems:
        return f"no tests ran ({plural(report.files, 'test file')})"
    counts = {s: sum(o.status == s for o in report.outcomes) for s in ("passed", "failed", "error")}
    parts = [plural(n, s, "errors" if s == "error" else s) for s, n in counts.items() if n]
    if report.problems:
        parts.append(f"{plural(len(report.problems), 'problem')} in the test files")
    return ", ".join(parts) + f" ({plural(report.files, 'test file')})"


def _annotations(report: Report) -> list[str]:
    out = []
    for o in report.outcomes:
        if o.status == "failed":
            message = f"test '{o.case.name}' failed:\n" + "\n".join(o.lines)
            out.append(annotation(Problem(o.case.location, "", message), title="lsqsync test"))
        out += [annotation(p, title="lsqsync test") for p in o.problems]
    out += [annotation(p, title="lsqsync test") for p in report.problems]
    for rule in report.unexercised:
        message = f"no test plans a change from rule '{rule.name}'"
        out.append(annotation(Problem(rule.location, "", message), "warning", "lsqsync test"))
    return [line.rstrip("\n") for line in out]
