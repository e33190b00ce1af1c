"""A project: its configuration and every rule file, loaded, validated and turned into rules.

Every problem is collected before anything is reported, so a user fixes a file in one pass:
YAML errors, schema errors, then what the schema cannot say (unique rule names across files,
template and ``when`` syntax, undefined names, system fields in ``set``, CSV problems).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lsqsync.config import Config, display_path, inside_project, load_config
from lsqsync.documents import csvsource, schemacheck, yamlsource
from lsqsync.documents.problems import Problem, ProjectInvalid, document_problems, format_path
from lsqsync.documents.yamlsource import Document, Location, PathKey, YamlError
from lsqsync.errors import ConfigError, LsqsyncError
from lsqsync.lsq.models import SYSTEM_FIELDS
from lsqsync.rules import templates


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # eq, ne, in, not_in, gt, gte, lt, lte, contains, startswith, empty
    value: Any
    location: Location
    path: str = ""  # rules[0].where.Status, for messages


@dataclass(frozen=True)
class FieldValue:
    """One entry of ``set``: a literal (None clears the field) or a compiled template."""

    field: str
    literal: Any
    template: templates.Compiled | None
    location: Location
    path: str = ""  # rules[0].set.Status, for messages


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    opportunity_type: int
    ids: tuple[str, ...] | None
    csv: csvsource.CsvData | None
    where: tuple[Condition, ...]
    when: templates.Compiled | None
    set: tuple[FieldValue, ...]
    location: Location  # of the rule's name
    referenced_fields: frozenset[str]  # opp fields read by when and templates
    uses_user: bool  # a template calls user(...)
    when_location: Location | None = None
    path: str = ""  # rules[0], for messages

    @property
    def read_fields(self) -> frozenset[str]:
        """Every field whose current value the plan needs for this rule."""
        return self.referenced_fields | {c.field for c in self.where} | {v.field for v in self.set}


@dataclass(frozen=True)
class Project:
    config: Config
    rules: tuple[Rule, ...]
    files: tuple[Path, ...]  # the rule files read
    vars: Mapping[str, Any]

    def only(self, targets: Sequence[str]) -> Project:
        """The project with only the rules named (``--target``); all of them without names."""
        if not targets:
            return self
        known = {r.name for r in self.rules}
        unknown = [t for t in targets if t not in known]
        if unknown:
            raise LsqsyncError(
                f"--target: no rule named {', '.join(repr(t) for t in unknown)} "
                f"(rules: {', '.join(sorted(known))})"
            )
        return replace(self, rules=tuple(r for r in self.rules if r.name in targets))


def load_project(config: Config, var_overrides: Mapping[str, Any] | None = None) -> Project:
    """Load every rule file of the project; raises ProjectInvalid listing every problem."""
    variables = {**config.vars, **(var_overrides or {})}
    problems: list[Problem] = []
    files = _rule_files(config, problems)
    rules: list[Rule] = []
    names: dict[str, Location] = {}
    for path in files:
        shown = display_path(path)
        try:
            document = yamlsource.load(path, shown)
        except YamlError as e:
            problems.append(Problem(e.location, "", e.message))
            continue
        except (OSError, UnicodeDecodeError) as e:
            problems.append(Problem(Location(shown, 1, 1), "", f"cannot read: {e}"))
            continue
        problems += document_problems(document)
        for rule, plannable in _rules(document, config, variables, problems):
            if rule.name in names:
                problems.append(
                    Problem(
                        rule.location,
                        "",
                        f"rule name '{rule.name}' is already used at {names[rule.name]}",
                    )
                )
            names.setdefault(rule.name, rule.location)
            if plannable:
                rules.append(rule)
    if problems:
        raise ProjectInvalid(problems)
    return Project(config, tuple(rules), tuple(files), variables)


def _rule_files(config: Config, problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for i, entry in enumerate(config.rules):
        path = inside_project(config.root, entry)
        if isinstance(path, str):
            problems.append(Problem(config.where(("rules", i)), f"rules[{i}]", f"{entry}: {path}"))
            continue
        if path.is_dir():
            for found in sorted(p for pattern in ("*.yml", "*.yaml") for p in path.rglob(pattern)):
                if isinstance(
                    inside_project(config.root, str(found.relative_to(config.root))), str
                ):
                    problems.append(
                        Problem(Location(display_path(found), 1, 1), "",
                                "a link leading out of the project folder: not read")
                    )  # fmt: skip
                elif found.is_file():
                    files.append(found)
                else:
                    problems.append(
                        Problem(Location(display_path(found), 1, 1), "", "not a readable file")
                    )
        elif path.is_file():
            files.append(path)
        else:
            problems.append(
                Problem(
                    config.where(("rules", i)),
                    f"rules[{i}]",
                    f"no such file or folder: {display_path(path)}",
                )
            )
    return list(dict.fromkeys(files))


def _rules(
    document: Document, config: Config, variables: Mapping[str, Any], problems: list[Problem]
) -> Iterable[tuple[Rule, bool]]:
    """Each rule with a name, and whether it can be planned (it has no schema problems)."""
    if document.data is None:
        problems.append(
            Problem(document.where(()), "", "the file is empty (expected version: 1 and rules)")
        )
        return
    schema_problems = schemacheck.check(document, "rules")
    problems.extend(schema_problems)
    if not isinstance(document.data, dict) or not isinstance(document.data.get("rules"), list):
        return
    broken = {p.path.split(".")[0] for p in schema_problems}
    for i, raw in enumerate(document.data["rules"]):
        if isinstance(raw, dict):
            rule = _rule(document, ("rules", i), raw, config, variables, problems)
            # A rule with schema problems is still checked for more (its name too), but not
            # planned.
            if isinstance(raw.get("name"), str):
                yield rule, f"rules[{i}]" not in broken


def _rule(
    document: Document,
    at: PathKey,
    raw: dict[str, Any],
    config: Config,
    variables: Mapping[str, Any],
    problems: list[Problem],
) -> Rule:
    def where(*path: str | int) -> Location:
        return document.where((*at, *path))

    def problem(path: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(where(*path), format_path((*at, *path)), message))

    csv_data = None
    csv_spec = raw.get("csv")
    if isinstance(csv_spec, dict) and all(
        isinstance(csv_spec.get(k), str) and csv_spec[k] for k in ("path", "key")
    ):
        csv_path = inside_project(config.root, csv_spec["path"])
        if isinstance(csv_path, str):
            problems.append(
                Problem(where("csv", "path"), format_path((*at, "csv", "path")), csv_path)
            )
        else:
            result = csvsource.read(
                csv_path,
                display_path(csv_path),
                csv_spec["key"],
                where("csv", "path"),
                format_path((*at, "csv", "path")),
            )
            if isinstance(result, list):
                problems.extend(result)
            else:
                csv_data = result

    referenced: set[str] = set()
    uses_user = False

    def analyse(path: tuple[str | int, ...], source: str, expression: bool) -> None:
        nonlocal uses_user
        analysis = templates.analyse(
            source, expression=expression, vars=variables, has_row="csv" in raw
        )
        for message in analysis.problems:
            problem(path, message)
        referenced.update(analysis.opp_fields)
        uses_user = uses_user or analysis.uses_user
        if csv_data is not None:
            for column in sorted(analysis.row_fields - set(csv_data.columns)):
                close = difflib.get_close_matches(column, csv_data.columns, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                problem(
                    path,
                    f"'row.{column}' is not a column of {csv_data.file} "
                    f"({hint}columns: {', '.join(csv_data.columns)})",
                )

    when = None
    if isinstance(raw.get("when"), str) and raw["when"]:  # (an empty one: a schema problem)
        analyse(("when",), raw["when"], expression=True)
        when = _compile(raw["when"], expression=True)

    values = []
    set_spec = raw.get("set")
    for field, value in (set_spec if isinstance(set_spec, dict) else {}).items():
        if field in SYSTEM_FIELDS and not (field == "CreatedOn" and config.allow_created_on):
            hint = (
                " (set allow_created_on: true in lsqsync.yml only if LeadSquared enabled an "
                "editable CreatedOn for the account)"
                if field == "CreatedOn"
                else ""
            )
            problems.append(
                Problem(
                    where("set", field, "<key>"),
                    format_path((*at, "set", field)),
                    f"'{field}' is a system field and cannot be set{hint}",
                )
            )
        template = None
        if isinstance(value, str) and templates.is_template(value):
            analyse(("set", field), value, expression=False)
            template = _compile(value, expression=False)
        literal = value if template is None else None
        path = format_path((*at, "set", field))
        values.append(FieldValue(field, literal, template, where("set", field), path))

    where_spec = raw.get("where")
    conditions = tuple(
        Condition(
            field, *_operator(spec), where("where", field), format_path((*at, "where", field))
        )
        for field, spec in (where_spec if isinstance(where_spec, dict) else {}).items()
    )
    return Rule(
        name=str(raw.get("name")),
        description=str(raw.get("description", "")),
        opportunity_type=raw.get("opportunity_type", 0),
        ids=tuple(raw["ids"]) if isinstance(raw.get("ids"), list) else None,
        csv=csv_data,
        where=conditions,
        when=when,
        set=tuple(values),
        location=where("name"),
        when_location=where("when") if when is not None else None,
        path=format_path(at),
        referenced_fields=frozenset(referenced),
        uses_user=uses_user,
    )


def _operator(spec: Any) -> tuple[str, Any]:
    if isinstance(spec, dict) and len(spec) == 1:
        ((op, value),) = spec.items()
        return op, value
    return "eq", spec


def _compile(source: str, *, expression: bool) -> templates.Compiled | None:
    """The compiled template; None when it does not compile (already reported by analyse)."""
    try:
        if expression:
            return templates.compile_expression(source)
        return templates.compile_template(source)
    except templates.TemplateProblem:
        return None


def parse_vars(pairs: tuple[str, ...], files: tuple[Path, ...]) -> dict[str, Any]:
    """``--var-file`` mappings in order, then ``--var k=v`` pairs (strings) on top."""
    out: dict[str, Any] = {}
    for path in files:
        # Loaded as rule files are: duplicate keys are errors, dates stay strings.
        try:
            document = yamlsource.load(path)
            for e in document.problems:
                raise e
        except yamlsource.YamlError as e:
            raise ConfigError(f"--var-file {e.location}: {e.message}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--var-file {path}: cannot read: {e}") from None
        data = document.data
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
