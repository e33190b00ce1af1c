"""Problems found in a project's files, each with its place: ``file:line:col: path: message``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lsqsync.display import capped, clean, plural
from lsqsync.documents.yamlsource import Document, Location, PathKey
from lsqsync.errors import LsqsyncError

ReportFormat = Literal["text", "json", "github"]


def format_path(path: PathKey) -> str:
    """``('rules', 0, 'set', 'Status')`` → ``rules[0].set.Status``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


@dataclass(frozen=True, order=True)
class Problem:
    location: Location
    path: str
    message: str

    def __str__(self) -> str:
        # One line, whatever the message quotes (a CRM or CSV value with a newline or an escape
        # sequence cannot forge a line or a fence), and of a readable length.
        text = f"{self.location}: {self.path + ': ' if self.path else ''}{self.message}"
        return capped(clean(text))


def document_problems(document: Document) -> list[Problem]:
    """What loading ``document`` found without stopping (``Document.problems``), as problems."""
    return [Problem(e.location, "", e.message) for e in document.problems]


class ProjectInvalid(LsqsyncError):
    """The project's configuration or rules have problems; all of them are listed."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(set(problems)))
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''}:\n"
            + "\n".join(str(p) for p in self.problems)
        )


def _github_escape(text: str, *, property: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def _json_problem(p: Problem) -> dict[str, object]:
    return {
        "file": p.location.file,
        "line": p.location.line,
        "col": p.location.col,
        "path": p.path,
        "message": p.message,
    }


def annotation(p: Problem, level: str = "error", title: str = "lsqsync validate") -> str:
    """``p`` as a GitHub workflow command (``::error file=…,line=…,col=…::message``)."""
    return (
        f"::{level} file={_github_escape(p.location.file, property=True)},"
        f"line={p.location.line},col={p.location.col},"
        f"title={_github_escape(title, property=True)}::"
        f"{_github_escape((p.path + ': ' if p.path else '') + p.message)}\n"
    )


def report(
    problems: Sequence[Problem],
    fmt: ReportFormat,
    summary: dict[str, int],
    warnings: Sequence[Problem] = (),
) -> str:
    """The validation result for stdout, in ``fmt``. ``warnings`` (what does not make the
    project invalid) are in the JSON and the annotations; as text, ``warning_text`` has them."""
    problems = sorted(set(problems))
    if fmt == "json":
        body = {
            "valid": not problems,
            **summary,
            "problems": [_json_problem(p) for p in problems],
        }
        if warnings:
            body["warnings"] = [_json_problem(w) for w in sorted(set(warnings))]
        return json.dumps(body, indent=2) + "\n"
    if fmt == "github":
        return "".join(annotation(w, "warning") for w in sorted(set(warnings))) + "".join(
            annotation(p) for p in problems
        )
    lines = [str(p) + "\n" for p in problems]
    rules, files = summary.get("rules", 0), summary.get("files", 0)
    if problems:
        lines.append(f"{plural(len(problems), 'problem')} found\n")
    else:
        lines.append(f"valid: {plural(rules, 'rule')} in {plural(files, 'file')}\n")
    return "".join(lines)


def warning_text(warnings: Sequence[Problem]) -> str:
    """Warnings as text lines (for stderr): ``file:line:col: warning: message``."""
    return "".join(
        capped(clean(f"{w.location}: warning: {w.path + ': ' if w.path else ''}{w.message}")) + "\n"
        for w in sorted(set(warnings))
    )
