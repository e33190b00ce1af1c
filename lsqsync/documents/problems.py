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


def report(problems: Sequence[Problem], fmt: ReportFormat, summary: dict[str, int]) -> str:
    """The validation result for stdout, in ``fmt``."""
    problems = sorted(set(problems))
    if fmt == "json":
        body = {
            "valid": not problems,
            **summary,
            "problems": [
                {
                    "file": p.location.file,
                    "line": p.location.line,
                    "col": p.location.col,
                    "path": p.path,
                    "message": p.message,
                }
                for p in problems
            ],
        }
        return json.dumps(body, indent=2) + "\n"
    if fmt == "github":
        return "".join(
            f"::error file={_github_escape(p.location.file, property=True)},"
            f"line={p.location.line},col={p.location.col},"
            f"title={_github_escape('lsqsync validate', property=True)}::"
            f"{_github_escape((p.path + ': ' if p.path else '') + p.message)}\n"
            for p in problems
        )
    lines = [str(p) + "\n" for p in problems]
    rules, files = summary.get("rules", 0), summary.get("files", 0)
    if problems:
        lines.append(f"{plural(len(problems), 'problem')} found\n")
    else:
        lines.append(f"valid: {plural(rules, 'rule')} in {plural(files, 'file')}\n")
    return "".join(lines)
