"""``lsqsync validate``: every problem in a project's configuration and rules, offline (and
against the opportunity types' metadata with ``--online``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsqsync.config import Config, load_config
from lsqsync.errors import ApiRejected, ConfigError
from lsqsync.rules import yamlsource
from lsqsync.rules.problems import Problem, ProjectInvalid
from lsqsync.rules.project import Project, load_project


@dataclass(frozen=True)
class Result:
    problems: tuple[Problem, ...]
    rules: int
    files: int

    @property
    def summary(self) -> dict[str, int]:
        return {"rules": self.rules, "files": self.files}


def parse_vars(pairs: tuple[str, ...], files: tuple[Path, ...]) -> dict[str, Any]:
    """``--var-file`` mappings in order, then ``--var k=v`` pairs (strings) on top."""
    out: dict[str, Any] = {}
    for path in files:
        # Loaded as rule files are: duplicate keys are errors, dates stay strings.
        try:
            data = yamlsource.load(path).data
        except yamlsource.YamlError as e:
            raise ConfigError(f"--var-file {e.location}: {e.message}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--var-file {path}: cannot read: {e}") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise ConfigError(f"--var-file {path}: expected a mapping of names to values")
        out.update(data)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ConfigError(f"--var {pair!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


def load(config_path: Path | None, variables: Mapping[str, Any]) -> tuple[Config, Project]:
    config = load_config(config_path)
    return config, load_project(config, variables)


def validate(config_path: Path | None, variables: Mapping[str, Any], online: bool) -> Result:
    try:
        config, project = load(config_path, variables)
    except ProjectInvalid as e:
        return Result(e.problems, 0, 0)
    problems: tuple[Problem, ...] = ()
    if online:
        from lsqsync.config import open_client
        from lsqsync.lsq import OpportunityType
        from lsqsync.rules import online as online_check

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
    return Result(problems, len(project.rules), len(project.files))
