"""``lsqsync validate``: every problem in a project's configuration and rules, offline (and
against the opportunity types' metadata with ``--online``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsqsync.documents.problems import Problem, ProjectInvalid
from lsqsync.errors import ApiRejected
from lsqsync.rules.project import load


@dataclass(frozen=True)
class Result:
    problems: tuple[Problem, ...]
    rules: int
    files: int

    @property
    def summary(self) -> dict[str, int]:
        return {"rules": self.rules, "files": self.files}


def validate(config_path: Path | None, variables: Mapping[str, Any], online: bool) -> Result:
    try:
        config, project = load(config_path, variables)
    except ProjectInvalid as e:
        return Result(e.problems, 0, 0)
    problems: tuple[Problem, ...] = ()
    if online:
        from lsqsync.lsq import OpportunityType
        from lsqsync.rules import metadata as online_check
        from lsqsync.state.location import open_client

        types: dict[int, OpportunityType] = {}
        missing: dict[int, str] = {}
        with open_client(config) as client:
            for code in sorted({r.opportunity_type for r in project.rules}):
                try:
                    types[code] = client.opportunity_type(code)
                except ApiRejected as e:  # e.g. no such type: a problem of the rules using it
                    missing[code] = e.exception_message or str(e)
            active = {u.email.lower(): u.id.lower() for u in client.users() if u.active}
        problems = tuple(online_check.check(project, types, missing, active))
        if not missing:  # with a type unread, an entry may be one of its fields
            problems += tuple(online_check.mask_problems(config, types))
    return Result(problems, len(project.rules), len(project.files))
