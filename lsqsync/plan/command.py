"""``lsqsync plan`` (and ``apply`` without a plan file): load the project, read LeadSquared,
build the plan.

The one place where the planner's inputs are gathered (files, network, clock, git); the
planner itself stays pure.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lsqsync import __version__
from lsqsync.clock import NOW_FORMAT
from lsqsync.config import Config
from lsqsync.documents.problems import ProjectInvalid
from lsqsync.errors import ApiRejected, ConfigError
from lsqsync.lsq import Limit, LsqClient, OpportunityType
from lsqsync.plan import explain
from lsqsync.plan.fetch import Progress, fetch, read_types
from lsqsync.plan.model import PLAN_LIFETIME, Plan
from lsqsync.plan.planfile import file_sha256
from lsqsync.plan.planner import PlanOptions, build_plan
from lsqsync.plan.snapshot import Snapshot
from lsqsync.rules import metadata, names
from lsqsync.rules.project import Project, load


def parse_now(text: str | None) -> str:
    """``--now`` (for reproducible plans) or the current UTC time, as templates see it."""
    if text is None:
        return datetime.now(UTC).strftime(NOW_FORMAT)
    try:
        return datetime.strptime(text.strip(), NOW_FORMAT).strftime(NOW_FORMAT)
    except ValueError:
        raise ConfigError(f"--now {text!r}: expected UTC 'YYYY-MM-DD HH:MM:SS'") from None


def input_files(config: Config, project: Project) -> dict[str, str]:
    """sha256 of every file the plan depends on (lsqsync.yml, the rule files, the CSVs), by its
    path relative to the project folder: the plan means the same from any working directory."""
    paths = [config.root / Path(config.file).name, *project.files]
    paths += [r.csv.path for r in project.rules if r.csv is not None]
    root = os.path.abspath(config.root)
    return {
        Path(os.path.relpath(os.path.abspath(p), root)).as_posix(): file_sha256(p) for p in paths
    }


@dataclass(frozen=True)
class _StateFacts:
    """What the planner takes from the state (nothing before any apply)."""

    lineage: str | None = None  # the state's lineage and serial bind a plan to it
    serial: int | None = None
    once_written: Mapping[str, frozenset[str]] = field(default_factory=dict)
    rolled_back: tuple[tuple[str, str, str, str, str], ...] = ()


def _state_facts(config: Config, project: Project) -> _StateFacts:
    """The state's position, what each ``once`` rule wrote, and what rolled-back runs wrote."""
    from lsqsync.state.database import NoState
    from lsqsync.state.location import open_state

    try:
        st = open_state(config, read_only=True)
    except NoState:
        return _StateFacts()
    with st:
        once = {r.name: st.opportunities_written(r.name) for r in project.rules if r.once}
        return _StateFacts(st.lineage, st.serial, once, st.rolled_back_writes())


def _git(folder: Path, *args: str) -> str | None:
    """git's output in ``folder``, or None (no git, not a repository, an error)."""
    try:
        done = subprocess.run(  # noqa: S603 - file names come after "--": never options
            ["git", *args],  # noqa: S607 - git from PATH, as a user runs it
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_commit(folder: Path) -> str | None:
    found = _git(folder, "rev-parse", "HEAD")
    return found.strip() if found else None


def git_changes(folder: Path, files: Iterable[str]) -> list[str]:
    """Which of ``files`` (relative to ``folder``) differ from the commit checked out in
    ``folder``: changed, staged, new or deleted. Empty outside a repository."""
    found = _git(folder, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *files)
    entries = [e for e in (found or "").split("\0") if len(e) > 3]
    return sorted({e[3:] for e in entries})


def _dirty_warning(folder: Path, commit: str | None, files: Iterable[str]) -> list[str]:
    """A plan warning when the files the plan was made from are not what ``commit`` holds."""
    changed = git_changes(folder, files) if commit else []
    if commit is None or not changed:
        return []
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return [
        f"made from uncommitted files: {shown} differ from git commit {commit[:12]}, so the "
        "commit recorded in this plan does not hold what was planned (commit them, then plan)"
    ]


def resolve_names(project: Project, metas: Mapping[int, OpportunityType]) -> Project:
    """The project naming fields by schema name only (``rules.names``), before any opportunity
    is read: a display name several fields share, or two keys naming one field, fail the plan
    there, with every other problem the metadata shows (users aside: not read yet)."""
    project, problems = names.resolve_project(project, metas)
    if problems:
        raise ProjectInvalid([*problems, *metadata.check(project, metas)])
    return project


@dataclass(frozen=True)
class PlanRequest:
    """What ``lsqsync plan`` was asked for, besides the project and its variables."""

    targets: Sequence[str] = ()  # --target: only these rules
    allow_large: bool = False
    now: str | None = None  # --now, else the current time
    expires_in: timedelta | None = None  # else PLAN_LIFETIME
    check_safety: bool = True  # False: the caller checks the parts it applies (reconcile)


@dataclass(frozen=True)
class Planned:
    """A plan with what it was made from, for commands that go on with it (reconcile)."""

    config: Config
    project: Project
    plan: Plan
    write_pace: Limit  # the strictest limit the writes will meet (as the plan's cost says)
    options: PlanOptions  # what the planner was given


def make_plan(
    config_path: Path | None,
    variables: Mapping[str, Any],
    request: PlanRequest,
    progress: Progress | None = None,
) -> tuple[Config, Plan]:
    """The project's configuration and the plan."""
    planned = plan_project(config_path, variables, request, progress)
    return planned.config, planned.plan


def plan_project(
    config_path: Path | None,
    variables: Mapping[str, Any],
    request: PlanRequest,
    progress: Progress | None = None,
    inspect: Callable[[LsqClient, Snapshot], None] | None = None,
) -> Planned:
    """The plan, with the project and the configuration it was made from. ``inspect`` sees
    what was read, with the client still open, before the plan is made."""
    from lsqsync.state.location import open_client

    targets, allow_large = request.targets, request.allow_large
    now = parse_now(request.now)  # a typo must not cost a full read of the CRM
    config, project = load(config_path, variables, targets)
    with open_client(config) as client:
        calls = client.calls
        metas = read_types(client, (r.opportunity_type for r in project.rules), progress)
        project = resolve_names(project, metas)
        snapshot = fetch(client, project.rules, progress, metas)
        snapshot = replace(snapshot, read_calls=client.calls - calls)  # the metadata's too
        host = client.host
        pace = client.limiter.write_pace()
        if inspect is not None:
            inspect(client, snapshot)
    facts = _state_facts(config, project)
    created = datetime.now(UTC)
    files, commit = input_files(config, project), git_commit(config.root)
    options = PlanOptions(
        now=now,
        created_at=created,
        lsqsync_version=__version__,
        input_files=files,
        targets=tuple(targets),
        allow_large=allow_large,
        expires_in=request.expires_in or PLAN_LIFETIME,
        git_commit=commit,
        warnings=tuple(_dirty_warning(config.root, commit, files)),
        state_lineage=facts.lineage,
        state_serial=facts.serial,
        write_pace=pace,
        check_safety=request.check_safety,
        once_written=facts.once_written,
        rolled_back=facts.rolled_back,
    )
    plan = build_plan(project, snapshot, host, options)
    return Planned(config, project, plan, pace or config.rate_limit.write_pace(), options)


def explain_project(
    config_path: Path | None,
    variables: Mapping[str, Any],
    request: PlanRequest,
    keys: Sequence[str],
    progress: Progress | None = None,
) -> list[explain.Explanation]:
    """How each rule comes out for each opportunity of ``keys``, in the plan made as ``plan``
    makes it (but never refused for its size: nothing is saved or applied). An id that is not
    among the opportunities the rules read is an error, found before the plan is made."""
    read: list[Snapshot] = []  # the snapshot is not kept with the plan (it is large)

    def inspect(client: LsqClient, snapshot: Snapshot) -> None:
        missing = [k for k in keys if explain.locate(snapshot, k) is None]
        if missing:
            raise explain.not_found(missing, snapshot, lambda key: _type_name(client, key))
        read.append(snapshot)

    planned = plan_project(
        config_path, variables, replace(request, check_safety=False), progress, inspect
    )
    return explain.explain(planned.project, read[0], planned.plan, planned.options, keys)


def _type_name(client: LsqClient, opportunity_id: str) -> str | None:
    """The name of the type of the opportunity, or None when LeadSquared has none by that id."""
    try:
        details = client.opportunity_details(opportunity_id.strip())
    except ApiRejected:  # a missing or deleted opportunity is refused (a 500)
        return None
    return details.type_name if details is not None else None
