"""``lsqsync validate``: every problem in a project's configuration and rules, offline (and
against the opportunity types' metadata with ``--online``).

Offline, the field checks of ``--online`` run against the reviewed snapshot of the account's
types in ``types/`` when there is one (``lsqsync types pull``), so that pull requests from forks,
which get no keys, have them too. ``--online`` also lists how the account differs from the
snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lsqsync.clock import utcnow
from lsqsync.config import Config
from lsqsync.documents.problems import Problem, ProjectInvalid
from lsqsync.errors import ApiRejected
from lsqsync.lsq import OpportunityType
from lsqsync.rules import metadata as field_check
from lsqsync.rules import names, typefiles
from lsqsync.rules.project import Project, Rule, load


@dataclass(frozen=True)
class Result:
    problems: tuple[Problem, ...]
    rules: int
    files: int
    warnings: tuple[Problem, ...] = ()

    @property
    def summary(self) -> dict[str, int]:
        return {"rules": self.rules, "files": self.files}


def validate(config_path: Path | None, variables: Mapping[str, Any], online: bool) -> Result:
    try:
        config, project = load(config_path, variables)
        snapshots = typefiles.load(config)
    except ProjectInvalid as e:
        return Result(e.problems, 0, 0)
    check = _online if online else _offline
    problems, warnings, project = check(config, project, snapshots)
    problems = snapshots.problems + problems
    warnings += tuple(nonconvergent_templates(project))
    return Result(problems, len(project.rules), len(project.files), warnings)


def nonconvergent_templates(project: Project) -> list[Problem]:
    """A warning at each ``set`` template that can never settle, visibly without data: it reads
    ``now``, or the field it sets (every plan would change the field again). A ``once`` rule
    changes an opportunity once, so its templates may; and so may a rule whose ``where`` no
    longer holds for what it writes (``Status: Open`` and ``set: {Status: Won}``). The plan
    checks every rule against its planned result, whatever it reads."""
    found = []
    for rule in project.rules:
        for value in () if rule.once or _excludes_its_result(rule) else rule.set:
            why = (
                "reads `now`"
                if value.reads_now
                else "reads the field it sets"
                if value.field in value.reads
                else None
            )
            if why:
                found.append(
                    Problem(
                        value.location,
                        value.path,
                        f"non-convergent: the template {why}, so every plan would change "
                        f"{value.field} again; make it settle, or give rule '{rule.name}' "
                        "once: true if it is a one-off job",
                    )
                )
    return found


Checked = tuple[tuple[Problem, ...], tuple[Problem, ...], Project]


def _offline(config: Config, project: Project, snapshots: typefiles.TypeSnapshots) -> Checked:
    """The field checks against the snapshot, for the rules of the types it has (display names
    resolved as online); warnings for the types it lacks (with the names left unresolved for
    them) and for snapshots pulled long ago. The project comes back with the names resolved."""
    codes = {r.opportunity_type for r in project.rules}
    first = {}
    for rule in reversed(project.rules):
        first[rule.opportunity_type] = rule.location
    warnings = typefiles.missing(snapshots, codes, first, names.used_names(project))
    warnings += typefiles.too_old(snapshots, codes, utcnow(), config.types.max_age_days)
    project, found = names.resolve_project(project, snapshots.types)
    covered = replace(
        project, rules=tuple(r for r in project.rules if r.opportunity_type in snapshots.files)
    )
    problems = (*found, *field_check.check(covered, snapshots.types))
    if covered.rules and codes <= set(snapshots.files):
        problems += tuple(field_check.mask_problems(config, snapshots.types))
        problems += tuple(field_check.field_type_problems(config, snapshots.types))
    return problems, tuple(warnings), project


def _online(config: Config, project: Project, snapshots: typefiles.TypeSnapshots) -> Checked:
    """The field checks against the account (display names resolved from it), and how the
    account differs from the snapshot of each type the snapshot has."""
    from lsqsync.state.location import open_client

    types: dict[int, OpportunityType] = {}
    missing: dict[int, str] = {}
    codes = {r.opportunity_type for r in project.rules} | set(snapshots.files)
    with open_client(config) as client:
        for code in sorted(codes):
            try:
                types[code] = client.opportunity_type(code)
            except ApiRejected as e:  # e.g. no such type: a problem of the rules using it
                missing[code] = e.exception_message or str(e)
        active = {u.email.lower(): u.id.lower() for u in client.users() if u.active}
    project, found = names.resolve_project(project, types)
    problems = (*found, *field_check.check(project, types, missing, active))
    if not missing:  # with a type unread, an entry may be one of its fields
        problems += tuple(field_check.mask_problems(config, types))
        problems += tuple(field_check.field_type_problems(config, types))
    for code, snapshot in sorted(snapshots.files.items()):
        if code in types:
            problems += tuple(typefiles.differences(snapshot, types[code]))
        else:
            why = f"the account has no opportunity type {code} ({missing.get(code, 'not found')})"
            problems += (Problem(snapshot.field_location(), "", why),)
    return problems, (), project


def _excludes_its_result(rule: Rule) -> bool:
    """Whether the rule's ``where`` tests a field it sets in a way its new value fails: the
    opportunities it changed are not selected again."""
    sets = {v.field: v for v in rule.set}
    for condition in rule.where:
        value = sets.get(condition.field)
        if value is None:
            continue
        if condition.op == "empty" and condition.value is True:
            return True  # it fills a field it requires empty
        if value.template is not None:
            continue
        literal = value.literal
        if (
            (condition.op == "eq" and literal != condition.value)
            or (condition.op == "ne" and literal == condition.value)
            or (condition.op == "in" and literal not in condition.value)
            or (condition.op == "not_in" and literal in condition.value)
        ):
            return True
    return False
