"""A project: its configuration and every rule file, loaded, validated and turned into rules.

Every problem is collected before anything is reported, so a user fixes a file in one pass:
YAML errors, schema errors, then what the schema cannot say (unique rule names across files,
template and ``when`` syntax, undefined names, system fields in ``set``, CSV problems).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    key_location: Location | None = dataclasses.field(default=None, compare=False)  # its key's


@dataclass(frozen=True)
class FieldValue:
    """One entry of ``set``: a literal (None clears the field) or a compiled template."""

    field: str
    literal: Any
    template: templates.Compiled | None
    location: Location
    path: str = ""  # rules[0].set.Status, for messages
    reads: frozenset[str] = frozenset()  # the opp fields its template reads
    reads_now: bool = False  # its template reads `now`
    lines: Callable[[int], Location | None] | None = dataclasses.field(default=None, compare=False)
    key_location: Location | None = dataclasses.field(default=None, compare=False)  # its key's

    def at(self, line: int) -> Location:
        """Where line ``line`` of the value's template is written (its start when unknown)."""
        return (self.lines(line) if self.lines is not None else None) or self.location


@dataclass(frozen=True)
class RuleLimits:
    """``limits:`` of an ``apply: auto`` rule: beyond either, reconcile leaves every change of the
    rule for review. None: no limit of the rule's own (the project's ``safety:`` still holds)."""

    max_changes: int | None = None  # opportunities the rule may change
    max_change_ratio: float | None = None  # share of its type (RATIO_MIN_TOTAL or more)


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
    apply: str = "review"  # "auto": reconcile applies its changes without a per-plan review
    limits: RuleLimits = RuleLimits()
    # a one-off rule: it changes only opportunities it never wrote (per the state file)
    once: bool = False

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

    def only(self, targets: Sequence[str], known: Iterable[str] = ()) -> Project:
        """The project with only the rules named (``--target``); all of them without names.
        ``known``: every rule name of the files, when the project holds only the targets."""
        if not targets:
            return self
        known = {r.name for r in self.rules} | set(known)
        unknown = [t for t in targets if t not in known]
        if unknown:
            raise LsqsyncError(
                f"--target: no rule named {', '.join(repr(t) for t in unknown)} "
                f"(rules: {', '.join(sorted(known))})"
            )
        return replace(self, rules=tuple(r for r in self.rules if r.name in targets))


def load_project(
    config: Config, var_overrides: Mapping[str, Any] | None = None, targets: Sequence[str] = ()
) -> Project:
    """Load every rule file of the project; raises ProjectInvalid listing every problem. With
    ``targets`` (``--target``), only those rules are read whole: the others' CSVs, templates and
    schema problems are not theirs to block (a file that is not YAML still is)."""
    variables = {**config.vars, **(var_overrides or {})}
    problems: list[Problem] = []
    files = _rule_files(config, problems)
    rules: list[Rule] = []
    names: dict[str, Location] = {}
    wanted = frozenset(targets)
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
        for rule, plannable in _rules(document, config, variables, problems, wanted):
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
    project = Project(config, tuple(rules), tuple(files), variables)
    return project.only(targets, known=names) if targets else project


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
    document: Document,
    config: Config,
    variables: Mapping[str, Any],
    problems: list[Problem],
    wanted: frozenset[str] = frozenset(),
) -> Iterable[tuple[Rule, bool]]:
    """Each rule with a name, and whether it can be planned (it has no schema problems). With
    ``wanted`` names, the other rules are named but not read (nor are their problems kept)."""
    if document.data is None:
        problems.append(
            Problem(document.where(()), "", "the file is empty (expected version: 1 and rules)")
        )
        return
    schema_problems = schemacheck.check(document, "rules")
    rules = document.data.get("rules") if isinstance(document.data, dict) else None
    others = {
        f"rules[{i}]"
        for i, raw in enumerate(rules if isinstance(rules, list) else [])
        if wanted and isinstance(raw, dict) and raw.get("name") not in wanted
    }
    problems.extend(p for p in schema_problems if p.path.split(".")[0] not in others)
    if not isinstance(rules, list):
        return
    broken = {p.path.split(".")[0] for p in schema_problems}
    for i, raw in enumerate(rules):
        if isinstance(raw, dict) and f"rules[{i}]" in others:
            if isinstance(raw.get("name"), str):
                yield _named(document, ("rules", i), raw["name"]), False
        elif isinstance(raw, dict):
            rule = _rule(document, ("rules", i), raw, config, variables, problems)
            # A rule with schema problems is still checked for more (its name too), but not
            # planned.
            if isinstance(raw.get("name"), str):
                yield rule, f"rules[{i}]" not in broken


def _named(document: Document, at: PathKey, name: str) -> Rule:
    """A rule left out by --target: its name and place only (for names used twice)."""
    return Rule(name, "", 0, None, None, (), None, (), document.where((*at, "name")), frozenset(),
                False, path=format_path(at))  # fmt: skip


def _rule(
    document: Document,
    at: PathKey,
    raw: dict[str, Any],
    config: Config,
    variables: Mapping[str, Any],
    problems: list[Problem],
) -> Rule:
    """One rule of the file, its problems added to ``problems``."""
    reader = _RuleReader(document, at, variables, has_row="csv" in raw, problems=problems)
    # In this order: a template's row.column is checked against the CSV's header.
    reader.csv = _csv(reader, raw.get("csv"), config)
    when = _when(reader, raw.get("when"))
    values = _values(reader, raw.get("set"), config)
    return Rule(
        name=str(raw.get("name")),
        description=str(raw.get("description", "")),
        opportunity_type=raw.get("opportunity_type", 0),
        ids=tuple(raw["ids"]) if isinstance(raw.get("ids"), list) else None,
        csv=reader.csv,
        where=_conditions(reader, raw.get("where")),
        when=when,
        set=values,
        location=reader.where("name"),
        when_location=reader.where("when") if when is not None else None,
        path=format_path(at),
        referenced_fields=frozenset(reader.referenced),
        uses_user=reader.uses_user,
        apply="auto" if raw.get("apply") == "auto" else "review",
        limits=_limits(raw.get("limits")),
        once=raw.get("once") is True,
    )


def _limits(spec: Any) -> RuleLimits:
    """``limits:`` as the schema lets it through (a rule with schema problems is not planned)."""
    if not isinstance(spec, dict):
        return RuleLimits()
    return RuleLimits(spec.get("max_changes"), spec.get("max_change_ratio"))


class _RuleReader:
    """One rule being read: where its parts are, for messages, and what its templates refer to,
    gathered over ``when`` and every ``set`` value."""

    def __init__(
        self,
        document: Document,
        at: PathKey,
        variables: Mapping[str, Any],
        *,
        has_row: bool,
        problems: list[Problem],
    ) -> None:
        self.document = document
        self.at = at
        self.variables = variables
        self.has_row = has_row
        self.problems = problems
        self.csv: csvsource.CsvData | None = None
        self.referenced: set[str] = set()
        self.uses_user = False

    def where(self, *path: str | int) -> Location:
        return self.document.where((*self.at, *path))

    def path(self, *path: str | int) -> str:
        return format_path((*self.at, *path))

    def problem(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(Problem(self.where(*path), self.path(*path), message))

    def analyse(
        self, path: tuple[str | int, ...], source: str, expression: bool
    ) -> templates.Analysis:
        """Check a template of the rule, and note the fields and functions it uses."""
        analysis = templates.analyse(
            source, expression=expression, vars=self.variables, has_row=self.has_row
        )
        for message, line in analysis.located:
            # at the template's own line, where the file has it (else its first, and which)
            at = self.document.line_of((*self.at, *path), line)
            where = f" (template line {line})" if at is None else ""
            self.problems.append(
                Problem(at or self.where(*path), self.path(*path), message + where)
            )
        self.referenced.update(analysis.opp_fields)
        self.uses_user = self.uses_user or analysis.uses_user
        if self.csv is not None:
            columns = self.csv.columns
            for column in sorted(analysis.row_fields - set(columns)):
                close = difflib.get_close_matches(column, columns, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.problem(
                    path,
                    f"'row.{column}' is not a column of {self.csv.file} "
                    f"({hint}columns: {', '.join(columns)})",
                )
        return analysis


def _csv(reader: _RuleReader, spec: Any, config: Config) -> csvsource.CsvData | None:
    """The rule's CSV, if it names one that can be read (its problems reported otherwise)."""
    if not isinstance(spec, dict) or not all(
        isinstance(spec.get(k), str) and spec[k] for k in ("path", "key")
    ):
        return None  # (a schema problem)
    csv_path = inside_project(config.root, spec["path"])
    if isinstance(csv_path, str):
        reader.problem(("csv", "path"), csv_path)
        return None
    result = csvsource.read(
        csv_path,
        display_path(csv_path),
        spec["key"],
        reader.where("csv", "path"),
        reader.path("csv", "path"),
    )
    if isinstance(result, list):
        reader.problems.extend(result)
        return None
    reader.problems.extend(result.problems)  # a rule with them is not planned: the project fails
    return result


def _when(reader: _RuleReader, source: Any) -> templates.Compiled | None:
    if not isinstance(source, str) or not source:
        return None  # (an empty one: a schema problem)
    reader.analyse(("when",), source, expression=True)
    return _compile(source, expression=True)


def _values(reader: _RuleReader, spec: Any, config: Config) -> tuple[FieldValue, ...]:
    """The entries of ``set``, each a literal or a compiled template."""
    values = []
    for field, value in (spec if isinstance(spec, dict) else {}).items():
        if field in SYSTEM_FIELDS and not (field == "CreatedOn" and config.allow_created_on):
            hint = (
                " (set allow_created_on: true in lsqsync.yml only if LeadSquared enabled an "
                "editable CreatedOn for the account)"
                if field == "CreatedOn"
                else ""
            )
            reader.problems.append(
                Problem(
                    reader.where("set", field, "<key>"),
                    reader.path("set", field),
                    f"'{field}' is a system field and cannot be set{hint}",
                )
            )
        template, reads, reads_now = None, frozenset[str](), False
        if isinstance(value, str) and templates.is_template(value):
            analysis = reader.analyse(("set", field), value, expression=False)
            reads, reads_now = analysis.opp_fields, analysis.uses_now
            template = _compile(value, expression=False)
        literal = value if template is None else None
        if isinstance(value, list):
            literal = _options(reader, field, value)
        path = reader.path("set", field)
        where = reader.where("set", field)
        lines = functools.partial(reader.document.line_of, (*reader.at, "set", field))
        key = reader.where("set", field, "<key>")
        values.append(
            FieldValue(field, literal, template, where, path, reads, reads_now, lines, key)
        )
    return tuple(values)


def _options(reader: _RuleReader, field: str, items: list[Any]) -> tuple[Any, ...]:
    """A list in ``set``: the options of a multi-select field, literally (a template in it
    would be written as its text, so it is refused)."""
    for i, item in enumerate(items):
        if isinstance(item, str) and templates.is_template(item):
            reader.problem(
                ("set", field, i),
                "a list of options is written as it is: templates in it are not rendered",
            )
    return tuple(items)


def _conditions(reader: _RuleReader, spec: Any) -> tuple[Condition, ...]:
    """The entries of ``where``: a value is ``eq``, a one-key mapping names its operator."""
    return tuple(
        Condition(
            field,
            *_operator(cond),
            reader.where("where", field),
            reader.path("where", field),
            reader.where("where", field, "<key>"),
        )
        for field, cond in (spec if isinstance(spec, dict) else {}).items()
    )


def _operator(spec: Any) -> tuple[str, Any]:
    if isinstance(spec, dict) and len(spec) == 1:
        ((op, value),) = spec.items()
        return op, value
    return "eq", spec


# The operators of a ``where`` condition (schemas/rules.schema.json lists them for files).
OPERATORS = (
    "eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "startswith", "empty",
)  # fmt: skip
_LISTS = ("in", "not_in")
_TRUTH = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def condition_from_text(text: str) -> Condition:
    """A ``where`` condition written on a command line, as a rule file would have it:
    ``FIELD=VALUE`` (eq), or ``FIELD=OP:VALUE`` with OP one of OPERATORS; ``in`` and ``not_in``
    take comma-separated values, ``empty`` true or false. A value that starts with a word and
    a colon is an eq value unless the word is an operator (``eq:gt:5`` compares with "gt:5")."""
    field, sep, rest = text.partition("=")
    field = field.strip()
    usage = f"--where {text!r}: expected FIELD=VALUE or FIELD=OP:VALUE (OP: {', '.join(OPERATORS)})"
    if not sep or not field:
        raise ConfigError(usage)
    op, colon, value = rest.partition(":")
    spec: Any = rest
    if colon and op.strip() in OPERATORS:
        op = op.strip()
        spec = {op: value}
        if op in _LISTS:
            spec = {op: [v.strip() for v in value.split(",") if v.strip()]}
            if not spec[op]:
                raise ConfigError(f"--where {text!r}: {op} takes values separated by commas")
        elif op == "empty":
            truth = _TRUTH.get(value.strip().lower())
            if truth is None:
                raise ConfigError(f"--where {text!r}: empty takes true or false")
            spec = {op: truth}
    return Condition(field, *_operator(spec), Location("--where", 1, 1), f"--where {text}")


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


def load(
    config_path: Path | None, variables: Mapping[str, Any], targets: Sequence[str] = ()
) -> tuple[Config, Project]:
    config = load_config(config_path)
    return config, load_project(config, variables, targets)
