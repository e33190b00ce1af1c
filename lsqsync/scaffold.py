"""``lsqsync init``: a new rule repository, ready for editors, pre-commit and GitHub Actions.

The files come from ``lsqsync/templates/init/`` and the schemas lsqsync ships; an existing file
is never overwritten. The templates hold both ways of keeping the state — a SQLite file on a
branch, or a PostgreSQL database — each in blocks between ``#if sqlite`` or ``#if postgres`` and
``#end``; a new repository gets the blocks of its way."""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal, get_args

from lsqsync import __version__
from lsqsync.config import DEFAULT_WORKSPACE, WORKSPACE_NAME
from lsqsync.errors import LsqsyncError
from lsqsync.resources import schema_text

StateKind = Literal["sqlite", "postgres"]
STATE_KINDS: tuple[StateKind, ...] = get_args(StateKind)
# what pip installs in the workflow
PACKAGES: dict[StateKind, str] = {"sqlite": "lsqsync", "postgres": "lsqsync[postgres]"}

# where each file goes → its template (dot-files are stored without the dot, so that git and
# tools do not take the templates for this repository's own files)
TEMPLATES = {
    "lsqsync.yml": "lsqsync.yml",
    "rules/example.yml": "rules/example.yml",
    "tests/example.yml": "tests/example.yml",
    "types/12003.json": "types/12003.json",
    ".gitignore": "gitignore",
    ".pre-commit-config.yaml": "pre-commit-config.yaml",
    ".github/workflows/lsqsync.yml": "workflow.yml",
}
# the `$schema` lines of lsqsync.yml and the rule files point at these copies
SCHEMAS = {
    "schemas/config.schema.json": "config",
    "schemas/rules.schema.json": "rules",
    "schemas/tests.schema.json": "tests",
}
# `init --schedule CRON`: the scheduled workflow (reconcile and drift)
SCHEDULE = ".github/workflows/lsqsync-schedule.yml"
# the five fields of POSIX cron as GitHub reads them: (name, lowest, highest, names)
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of the month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
                      "NOV", "DEC")),
    ("day of the week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)  # fmt: skip
_CRON_PART = re.compile(r"(\*|(\w+)(?:-(\w+))?)(?:/(\d+))?")
# git's rules for a branch name (git check-ref-format --branch), for the characters a YAML
# flow list and a shell can carry without quoting trouble
_BRANCH = re.compile(r"(?!-)(?!.*(?://|\.\.|/\.|\.lock(?:/|$)|[/.]$))[A-Za-z0-9._/-]+")


@dataclass(frozen=True)
class InitResult:
    created: tuple[str, ...]
    skipped: tuple[str, ...]  # already there: left as they were
    # lines of the .gitignore template missing from an existing .gitignore: without them the
    # state file and saved plans (CRM values) could be committed
    gitignore_missing: tuple[str, ...] = ()
    state: StateKind = "sqlite"
    schedule: str | None = None

    def report(self, where: str) -> str:
        """What ``init`` did in the folder shown as ``where``, and what to do next."""
        lines = [f"created  {path}" for path in self.created]
        lines += [f"skipped  {path} (already there)" for path in self.skipped]
        if not self.created:
            return "\n".join([*lines, f"Nothing to do: {where} already has every file."]) + "\n"
        go = "" if where == "." else f"cd {shlex.quote(where)} && "
        if self.state == "postgres":
            lines += [
                "",
                f"Next: {go}lsqsync validate and lsqsync test (offline), then set LSQ_HOST, "
                "LSQ_ACCESS_KEY, LSQ_SECRET_KEY, LSQSYNC_STATE_URL and LSQSYNC_STATE_PASSWORD "
                "and run lsqsync types pull (your account's types) and lsqsync plan.",
                "For CI, add those five to the repository's Actions settings "
                "(.github/workflows/lsqsync.yml says how).",
            ]
        else:
            lines += [
                "",
                f"Next: {go}lsqsync validate and lsqsync test (offline), then set LSQ_HOST, "
                "LSQ_ACCESS_KEY and LSQ_SECRET_KEY and run lsqsync types pull (your account's "
                "types) and lsqsync plan.",
                "For CI, add those three to the repository's Actions settings "
                "(.github/workflows/lsqsync.yml says how).",
            ]
        if self.schedule is not None and SCHEDULE in self.created:
            lines.append(
                f"{SCHEDULE} runs lsqsync reconcile and drift at '{self.schedule}' (UTC): it "
                "applies the rules marked apply: auto and opens an issue for the rest."
            )
        return "\n".join(lines) + "\n"

    @property
    def warning(self) -> str | None:
        """Why the existing .gitignore needs lines, if it does."""
        missing = self.gitignore_missing
        if not missing:
            return None
        return (
            f".gitignore does not list {', '.join(missing)}"
            f"{': add them' if len(missing) > 1 else ': add it'}, or the state file and saved "
            "plans (CRM values) may be committed"
        )


def files(
    branch: str = "main",
    state: StateKind = "sqlite",
    workspace: str = DEFAULT_WORKSPACE,
    schedule: str | None = None,
) -> dict[str, str]:
    """Every file ``init`` writes (path relative to the new repository → content), for a state
    kept in a SQLite file or in the PostgreSQL workspace ``workspace``; with ``schedule`` (a
    cron expression), the scheduled workflow too."""
    if not _BRANCH.fullmatch(branch) or branch.startswith(("/", ".")):
        raise LsqsyncError(f"--branch {branch!r} is not a branch name")
    if schedule is not None:
        schedule = " ".join(schedule.split())
        why = cron_problem(schedule)
        if why:
            raise LsqsyncError(
                f"--schedule {schedule!r} is not a cron schedule: {why} (five fields, minute "
                "hour day-of-month month day-of-week, in UTC: e.g. '0 6 * * 1-5' is 06:00 on "
                "weekdays)"
            )
    root = resources.files("lsqsync").joinpath("templates", "init")
    templates = dict(TEMPLATES)
    if schedule is not None:
        templates[SCHEDULE] = "schedule.yml"
    out = {
        path: _variant(root.joinpath(*template.split("/")).read_text("utf-8"), state)
        .replace("@VERSION@", __version__)
        .replace("@BRANCH@", branch)
        .replace("@PACKAGE@", PACKAGES[state])
        .replace("@WORKSPACE@", workspace)
        .replace("@CRON@", schedule or "")
        for path, template in templates.items()
    }
    out.update({path: schema_text(name) for path, name in SCHEMAS.items()})
    return out


def cron_problem(text: str) -> str | None:
    """What keeps ``text`` from being a five-field cron schedule GitHub accepts, if anything."""
    parts = text.split(" ")
    if len(parts) != len(_CRON_FIELDS):
        return f"{len(parts)} field{'s' if len(parts) != 1 else ''}"
    for part, (name, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            m = _CRON_PART.fullmatch(item)
            bounds = [b for b in (m[2], m[3]) if b] if m else []
            values = [_cron_value(b, names) for b in bounds]
            if m is None or any(v is None or not low <= v <= high for v in values):
                return f"'{item}' is not a {name} ({low}-{high}{', or a name' if names else ''})"
            if m[4] is not None and int(m[4]) == 0:
                return f"'{item}': a step of 0"
    return None


def _cron_value(text: str, names: tuple[str, ...]) -> int | None:
    if text.isdigit():
        return int(text)
    if text.upper() in names:
        return names.index(text.upper()) + (1 if len(names) == 12 else 0)
    return None


def init(
    directory: Path,
    branch: str = "main",
    state: StateKind = "sqlite",
    schedule: str | None = None,
) -> InitResult:
    """Write the files of a new rule repository into ``directory`` (created if needed), skipping
    every file that already exists. A PostgreSQL state's workspace is named after the folder.
    With ``schedule``, the scheduled workflow too (into an existing repository as well)."""
    if directory.exists() and not directory.is_dir():
        raise LsqsyncError(f"{directory}: not a folder")
    created, skipped = [], []
    schedule = " ".join(schedule.split()) if schedule is not None else None
    wanted = files(branch, state, workspace_for(directory), schedule)
    for path, content in wanted.items():
        target = directory / path
        if target.exists() or target.is_symlink():
            skipped.append(path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with target.open("x", encoding="utf-8", newline="\n") as f:  # x: never overwrite
                f.write(content)
        except FileExistsError:  # appeared since the check
            skipped.append(path)
            continue
        created.append(path)
    missing = _missing_ignores(directory / ".gitignore", wanted[".gitignore"])
    return InitResult(tuple(created), tuple(skipped), missing, state, schedule)


def in_git_repository(directory: Path) -> bool | None:
    """Whether ``directory`` is in a git working tree (None: git is not installed)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--is-inside-work-tree"],  # noqa: S607 - git from PATH
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except FileNotFoundError:
        return None
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == "true"


def git_init(directory: Path, branch: str) -> str:
    """Make ``directory`` a git repository whose first branch is ``branch``; what was done."""
    found = in_git_repository(directory)
    if found is None:
        raise LsqsyncError("init --git: git is not installed (the files are written; run git init)")
    if found:
        return f"git: {directory} is already in a git repository: left as it is"
    # `git init -b` needs git 2.28; naming HEAD's branch works with every version
    for args in (["init", "-q"], ["symbolic-ref", "HEAD", f"refs/heads/{branch}"]):
        done = subprocess.run(  # noqa: S603 - fixed arguments; the branch name is checked
            ["git", *args],  # noqa: S607 - git from PATH, as a user runs it
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise LsqsyncError(f"init --git: git {args[0]} failed: {done.stderr.strip()}")
    return f"git: made {directory} a git repository (branch {branch}); commit the files to start"


def workspace_for(directory: Path) -> str:
    """A workspace name from the folder's name (``CRM Rules`` → ``crm-rules``)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", directory.absolute().name.lower())
    name = name.strip("-_")[:40].strip("-_")
    return name if WORKSPACE_NAME.fullmatch(name) else DEFAULT_WORKSPACE


def _variant(text: str, state: StateKind) -> str:
    """The template's lines for ``state``: a block between ``#if OTHER`` and ``#end`` goes, and
    so do the marker lines."""
    out, keep = [], True
    for line in text.splitlines(keepends=True):
        mark = line.strip()
        if mark.startswith("#if "):
            keep = mark.removeprefix("#if ") == state
        elif mark == "#end":
            keep = True
        elif keep:
            out.append(line)
    return "".join(out)


def _missing_ignores(gitignore: Path, template: str) -> tuple[str, ...]:
    """The patterns of lsqsync's .gitignore that the folder's .gitignore lacks (``/x/``, ``x``
    and ``/x`` count as the same pattern)."""

    def patterns(text: str) -> list[str]:
        lines = (line.strip() for line in text.splitlines())
        return [line for line in lines if line and not line.startswith("#")]

    wanted = patterns(template)
    try:
        text = gitignore.read_text("utf-8", errors="replace")
    except OSError:
        return tuple(wanted)
    have = {p.strip("/") for p in patterns(text)}
    return tuple(p for p in wanted if p.strip("/") not in have)
