"""Running a test: the project's rules (those the test names, with its variables and CSVs)
planned by the real planner, offline, against the opportunities the test gives and the
snapshot of the account's types; then the plan compared with what the test expects."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from lsqsync import __version__
from lsqsync.config import Config
from lsqsync.display import did_you_mean, quote
from lsqsync.documents import csvsource
from lsqsync.documents.problems import Problem, ProjectInvalid, format_path
from lsqsync.lsq import FieldMeta, OpportunityRecord, OpportunityType, User, codec
from lsqsync.lsq.models import value_text
from lsqsync.plan.model import FieldChange, Plan
from lsqsync.plan.planner import CONFLICT, PlanOptions, UnsafePlan, build_plan
from lsqsync.plan.snapshot import Snapshot, TypeData, guid
from lsqsync.rules import names
from lsqsync.rules.project import Project, Rule, load_project
from lsqsync.rules.typefiles import TypeSnapshots
from lsqsync.ruletest.cases import Case, Given

Status = Literal["passed", "failed", "error"]
# plans of tests are stamped with a fixed time: only ``now`` reaches what they plan
CREATED = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Outcome:
    case: Case
    status: Status
    lines: tuple[str, ...] = ()  # why it failed: expected against planned
    problems: tuple[Problem, ...] = ()  # why it could not run: the test's (or rules') mistakes
    exercised: frozenset[str] = frozenset()  # rules that planned a change


@dataclass
class _Setup:
    """What a test plans: the project narrowed to its rules, the snapshot of its
    opportunities, and how a given name maps to the id the plan uses."""

    project: Project
    snapshot: Snapshot
    ids: dict[str, str]  # plan id (lower case) → given name
    everyone: dict[str, str]  # lower-cased email → id, of every user of the test


def run(config: Config, case: Case, types: TypeSnapshots) -> Outcome:
    problems: list[Problem] = []
    with tempfile.TemporaryDirectory(prefix="lsqsync-test-") as scratch:
        setup = _setup(config, case, types, Path(scratch), problems)
        if setup is None or problems:
            return Outcome(case, "error", problems=tuple(problems))
        options = PlanOptions(
            now=case.now, created_at=CREATED, lsqsync_version=__version__, input_files={}
        )
        try:
            plan = build_plan(setup.project, setup.snapshot, "lsqsync test", options)
        except ProjectInvalid as e:
            return _errored(case, e.problems)
        except UnsafePlan as e:
            return _refused(case, str(e))
    return _compare(case, plan, setup, problems)


# -- setting a test up -----------------------------------------------------------------------


def _setup(
    config: Config, case: Case, types: TypeSnapshots, scratch: Path, problems: list[Problem]
) -> _Setup | None:
    try:
        project = load_project(config, case.vars)
    except ProjectInvalid as e:
        problems.extend(e.problems)
        return None
    project = _only(project, case, problems)
    _unused_csvs(project, case, config, problems)
    project = replace(project, rules=tuple(_with_csv(r, case, config, scratch, problems)
                                           for r in project.rules))  # fmt: skip
    users = _users(case)
    everyone = {u.email.lower(): u.id.lower() for u in users or ()}
    codes = {r.opportunity_type for r in project.rules} | {g.opportunity_type for g in case.given}
    metas: dict[int, OpportunityType] = {}
    for code in sorted(codes):
        if code in types.files:
            metas[code] = types.files[code].meta
        else:
            # at the first opportunity of the type, else at the test (a rule's type)
            at = next(((*g.path, "type") for g in case.given if g.opportunity_type == code),
                      (*case.path, "name"))  # fmt: skip
            problems.append(
                Problem(case.document.where(at), format_path(at),
                        f"{types.folder}/ has no snapshot of opportunity type {code}: "
                        f"lsqsync types pull {code}")
            )  # fmt: skip
    project, found = names.resolve_project(project, metas)
    problems.extend(found)
    ids: dict[str, str] = {}
    records: dict[int, dict[str, OpportunityRecord]] = {code: {} for code in metas}
    for given in case.given:
        if given.opportunity_type not in metas:
            continue  # reported above
        record = _record(given, metas[given.opportunity_type], everyone, case, problems)
        records[given.opportunity_type][record.id.lower()] = record
        ids[record.id.lower()] = given.name
    if problems:
        return None
    data = {
        code: _type_data(meta, records[code], case.totals.get(code, len(records[code])))
        for code, meta in metas.items()
    }
    return _Setup(project, Snapshot(data, users, 0), ids, everyone)


def _only(project: Project, case: Case, problems: list[Problem]) -> Project:
    if case.rules is None:
        return project
    known = [r.name for r in project.rules]
    for j, name in enumerate(case.rules):
        if name not in known:
            hint = did_you_mean(name, known)
            problems.append(
                Problem(case.where("rules", j), format_path((*case.path, "rules", j)),
                        f"no rule named '{name}'{hint}")
            )  # fmt: skip
    return replace(project, rules=tuple(r for r in project.rules if r.name in case.rules))


def _csv_key(config: Config, path: str) -> Path:
    return (config.root / path).resolve()


def _with_csv(
    rule: Rule, case: Case, config: Config, scratch: Path, problems: list[Problem]
) -> Rule:
    """The rule with the test's contents for its CSV, if the test gives them."""
    if rule.csv is None:
        return rule
    for name, text in case.csv.items():
        if _csv_key(config, name) != rule.csv.path.resolve():
            continue
        copy = scratch / f"{len(list(scratch.iterdir()))}.csv"
        copy.write_text(text, "utf-8")
        where = case.where("csv", name)
        shown = f"{case.file} (csv {name})"
        read = csvsource.read(copy, shown, rule.csv.key, where, format_path((*case.path, "csv")))
        if isinstance(read, list):
            problems.extend(
                Problem(where, format_path((*case.path, "csv", name)), f"{p.location}: {p.message}")
                for p in read
            )
            return rule
        return replace(rule, csv=replace(read, file=shown))
    return rule


def _unused_csvs(project: Project, case: Case, config: Config, problems: list[Problem]) -> None:
    used = {r.csv.path.resolve() for r in project.rules if r.csv is not None}
    for name in case.csv:
        if _csv_key(config, name) not in used:
            problems.append(
                Problem(case.where("csv", name, "<key>"), format_path((*case.path, "csv", name)),
                        f"no rule of the test reads the CSV {name}")
            )  # fmt: skip


def _users(case: Case) -> tuple[User, ...] | None:
    if case.users is None:
        return None
    return tuple(
        User(
            id=u.id or str(uuid.uuid5(uuid.NAMESPACE_URL, "mailto:" + u.email.lower())),
            email=u.email,
            first_name=u.email.split("@")[0],
            last_name="",
            role="",
            active=u.active,
        )
        for u in case.users
    )


def _held(meta: FieldMeta, value: Any, everyone: Mapping[str, str]) -> str:
    """A value of the test as LeadSquared would hold (or be sent) it; a user-valued field may
    name a user of the test by email."""
    if value is None:
        return ""
    if meta.is_user_valued:
        text = value_text(value) or ""
        if "@" not in text:
            return text.strip()
        found = everyone.get(text.strip().lower())
        if found is None:
            raise codec.InvalidValue(
                f"{meta.schema_name}: no user with email '{text}' in the test's users"
            )
        return found
    return codec.to_wire(meta, value_text(value) if isinstance(value, bool) else value, everyone)


def _record(
    given: Given,
    meta: OpportunityType,
    everyone: Mapping[str, str],
    case: Case,
    problems: list[Problem],
) -> OpportunityRecord:
    values: dict[str, str | None] = {}
    at = (*given.path, "fields")
    for name, (field, value) in _by_schema_name(case, at, given.fields, meta, problems).items():
        try:
            values[name] = _held(field, value, everyone)
        except codec.InvalidValue as e:
            where = (*at, field.schema_name)
            problems.append(Problem(case.document.where(where), format_path(where), str(e)))
    return OpportunityRecord(guid(given.name) or given.name, meta.code, values)


def _by_schema_name(
    case: Case,
    at: tuple[str | int, ...],
    fields: Mapping[str, Any],
    meta: OpportunityType,
    problems: list[Problem],
) -> dict[str, tuple[FieldMeta, Any]]:
    """A test's field → value mapping (of a given or an expected opportunity) by schema name:
    fields may be named as rules name them, by schema or display name (``rules.names``). A name
    of no field, of several, or of a field named already is a problem at its key."""
    out: dict[str, tuple[FieldMeta, Any]] = {}
    first: dict[str, str] = {}
    for name, value in fields.items():
        key = (*at, name)
        found = names.find(meta, name)
        message = None
        if found is None:
            message = (
                f"'{name}' is not a field of opportunity type {meta.code} ({meta.name})"
                + names.did_you_mean(name, meta)
            )
        elif isinstance(found, names.Ambiguous):
            message = found.message(meta)
        elif found.schema_name in first:
            message = (
                f"'{name}' and '{first[found.schema_name]}' both name the field "
                f"{names.label(found)}: keep one"
            )
        if message is not None or not isinstance(found, FieldMeta):
            where = case.document.where((*key, "<key>"))
            problems.append(Problem(where, format_path(key), message or ""))
            continue
        first[found.schema_name] = name
        out[found.schema_name] = (found, value)
    return out


def _type_data(
    meta: OpportunityType, records: Mapping[str, OpportunityRecord], total: int
) -> TypeData:
    auto_id = meta.auto_id_field
    auto_ids = {}
    if auto_id is not None:
        auto_ids = {
            value: r.id for r in records.values() if (value := r.values.get(auto_id.schema_name))
        }
    return TypeData(meta, total, dict(records), True, auto_ids)


# -- comparing -------------------------------------------------------------------------------


def _errored(case: Case, problems: Sequence[Problem]) -> Outcome:
    """The planner refused the rules: what the test expected, or a failure listing why."""
    kinds = {"conflict" if CONFLICT in p.message else "invalid" for p in problems}
    texts = [str(p) for p in problems]
    expected = case.error
    if expected is not None and expected.kind in kinds and _mentions(texts, expected.message):
        return Outcome(case, "passed")
    want = "no error" if expected is None else _error_text(expected.kind, expected.message)
    lines = [f"expected {want}; the planner refused the rules:", *(f"  {t}" for t in texts)]
    return Outcome(case, "failed", tuple(lines))


def _refused(case: Case, message: str) -> Outcome:
    expected = case.error
    if (
        expected is not None
        and expected.kind == "safety"
        and _mentions([message], expected.message)
    ):
        return Outcome(case, "passed")
    want = "no error" if expected is None else _error_text(expected.kind, expected.message)
    return Outcome(case, "failed", (f"expected {want}; the planner said: {message}",))


def _mentions(texts: Sequence[str], part: str | None) -> bool:
    return part is None or any(part in t for t in texts)


def _error_text(kind: str, message: str | None) -> str:
    names = {"invalid": "an invalid rule", "conflict": "a conflict", "safety": "a safety refusal"}
    return names[kind] + (f" mentioning {quote(message)}" if message else "")


def _compare(case: Case, plan: Plan, setup: _Setup, problems: list[Problem]) -> Outcome:
    exercised = frozenset(f.rule for c in plan.changes for f in c.changes)
    if case.error is not None:
        made = f"{plan.summary.opportunities} opportunities to change"
        line = f"expected {_error_text(case.error.kind, case.error.message)}; got a plan ({made})"
        return Outcome(case, "failed", (line,), exercised=exercised)
    planned: dict[str, dict[str, FieldChange]] = {}
    for change in plan.changes:
        planned[setup.ids[change.id.lower()]] = {f.field: f for f in change.changes}
    expected = {e.name: e for e in case.expected}
    by_name = {g.name: g for g in case.given}
    lines: list[str] = []
    for name in sorted(set(planned) | set(expected), key=list(by_name).index):
        meta = setup.snapshot.types[by_name[name].opportunity_type].meta
        lines += _difference(case, name, meta, expected.get(name), planned.get(name, {}),
                             setup.everyone, problems)  # fmt: skip
    if problems:
        return Outcome(case, "error", problems=tuple(problems), exercised=exercised)
    status: Status = "failed" if lines else "passed"
    return Outcome(case, status, tuple(lines), exercised=exercised)


def _difference(
    case: Case,
    name: str,
    meta: OpportunityType,
    expected: Any,
    planned: Mapping[str, FieldChange],
    everyone: Mapping[str, str],
    problems: list[Problem],
) -> list[str]:
    """Lines for the fields of opportunity ``name`` where the plan is not what was expected."""
    want = (
        _by_schema_name(case, expected.path, expected.fields, meta, problems)
        if expected is not None
        else {}
    )
    lines = []
    for field in sorted(set(want) | set(planned)):
        got = planned.get(field)
        shown_got = (
            "no change" if got is None else f"{quote(got.after)}   # {got.rule} ({got.source})"
        )
        if field not in want:
            lines.append(f"{name}: {field}: expected no change, planned {shown_got}")
            continue
        f, value = want[field]
        try:
            wire = _held(f, value, everyone)
        except codec.InvalidValue as e:
            at = (*expected.path, field)
            problems.append(Problem(case.document.where(at), format_path(at), str(e)))
            continue
        if got is None or not codec.same(f, got.after, wire):
            lines.append(f"{name}: {field}: expected {quote(wire)}, planned {shown_got}")
    return lines
