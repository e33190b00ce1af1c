"""The pure planner: rules + a snapshot of current values → a Plan. No I/O.

For each rule, the opportunities it selects (the whole type, its ids or its CSV rows), those
that pass ``where`` and ``when``, and for each the values of ``set`` — literal or rendered —
turned into what Bulk Update takes by the codec, checked against the metadata, and kept only
where they differ from the current value. Then, across rules: conflicts, Stage under Status,
and the safety limits.

Each opportunity's change carries the premise of every rule that changes it: the values, as
read here, of the fields that rule's ``where``, ``when`` and templates read, so that ``apply``
can send none of a rule's fields once what it decided on has changed.
"""

from __future__ import annotations

import gc
import operator
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from lsqsync.clock import NOW_FORMAT
from lsqsync.config import RATIO_MIN_TOTAL, Safety
from lsqsync.display import field_name, is_masked, plural
from lsqsync.documents.problems import Problem, ProjectInvalid
from lsqsync.documents.yamlsource import Location
from lsqsync.errors import LsqsyncError
from lsqsync.lsq import FieldMeta, Limit, OpportunityRecord, OpportunityType, User, codec
from lsqsync.plan.model import (
    NONCONVERGENT,
    PLAN_LIFETIME,
    REAPPLIES,
    FieldChange,
    Inputs,
    OpportunityChange,
    Plan,
    Premise,
    RuleCount,
    assemble,
)
from lsqsync.plan.snapshot import Snapshot, TypeData, guid, selected_ids
from lsqsync.rules import metadata as online
from lsqsync.rules import templates
from lsqsync.rules.project import Condition, FieldValue, Project, Rule
from lsqsync.rules.templates import TemplateProblem

SHOWN_IDS = 5
# what a conflict between two rules says (``lsqsync test`` recognises an expected conflict by it)
CONFLICT = "want different values for"


class UnsafePlan(LsqsyncError):
    """The plan changes more than the safety limits allow (``--allow-large`` overrides)."""


@dataclass(frozen=True)
class PlanOptions:
    now: str  # "YYYY-MM-DD HH:MM:SS", UTC: the one `now` of every template
    created_at: datetime
    lsqsync_version: str
    input_files: Mapping[str, str]  # path → sha256
    targets: tuple[str, ...] = ()
    allow_large: bool = False
    expires_in: timedelta = PLAN_LIFETIME
    git_commit: str | None = None
    warnings: tuple[str, ...] = ()  # found while gathering the inputs (a dirty git tree)
    state_lineage: str | None = None
    state_serial: int | None = None
    # the strictest limit the writes will meet, as the client knows it (learned or configured);
    # None: as lsqsync.yml configures it
    write_pace: Limit | None = None
    # False: the caller checks the safety limits on the parts it applies (reconcile)
    check_safety: bool = True
    # rule name → the opportunities (lower-cased ids) it wrote, per the state: what its
    # ``once: true`` leaves alone (only ``once`` rules need an entry)
    once_written: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # (run id, rule, opportunity id, field, value) written by runs rolled back since
    rolled_back: tuple[tuple[str, str, str, str, str], ...] = ()


def _source(location: Location) -> str:
    return f"{location.file}:{location.line}"


class _Problems:
    """Problems about one place for many opportunities collapse into one line."""

    def __init__(self) -> None:
        self._by_place: dict[tuple[Location, str, str], list[str]] = defaultdict(list)
        self.static: list[Problem] = []

    def add(self, location: Location, path: str, message: str, opportunity: str) -> None:
        self._by_place[(location, path, message)].append(opportunity)

    def all(self) -> list[Problem]:
        out = list(self.static)
        for (location, path, message), ids in self._by_place.items():
            shown = ", ".join(ids[:SHOWN_IDS])
            more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
            noun = "opportunity" if len(ids) == 1 else "opportunities"
            out.append(Problem(location, path, f"{noun} {shown}{more}: {message}"))
        return out


@dataclass(slots=True)  # one per opportunity and field a rule wants
class _Desired:
    wire: str
    rule: Rule
    value: FieldValue
    also: list[Rule] = field(default_factory=list)  # other rules that want the same value

    @property
    def rules(self) -> tuple[Rule, ...]:
        return (self.rule, *self.also)


def build_plan(project: Project, snapshot: Snapshot, host: str, options: PlanOptions) -> Plan:
    """The plan of ``project``'s rules (already narrowed to ``options.targets``, which the plan
    records), or ProjectInvalid listing every problem, or UnsafePlan.

    The garbage collector is paused meanwhile. Measured at 100,000 opportunities, its full
    passes over the millions of young objects planning makes (records' typed values, desired
    values, changes) cost ≈ 1.4 s of ≈ 4.5 s, and found nothing: the planner makes almost no
    reference cycles (a whole plan leaves a few dozen), so the memory it would reclaim is freed
    by reference counting anyway. The previous state is restored whatever happens, and a
    collection runs as usual at the next allocation threshold."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_plan(project, snapshot, host, options)
    finally:
        if was_enabled:
            gc.enable()


def _build_plan(project: Project, snapshot: Snapshot, host: str, options: PlanOptions) -> Plan:
    problems = _Problems()
    users = _user_ids(snapshot)
    problems.static.extend(_static_problems(project, snapshot, users[0]))
    tallies = {r.name: _Tally() for r in project.rules}
    desired, warnings = _desired_values(
        project, snapshot, users, options, problems, tallies=tallies
    )
    metas = {c: t.meta for c, t in snapshot.types.items()}
    warnings += [str(p) for p in online.field_type_problems(project.config, metas)]
    changes = _changes(desired, snapshot, problems, tallies)
    found = problems.all()
    if found:
        raise ProjectInvalid(found)
    warnings += nonconvergence(project, snapshot, users, options, changes, desired)
    again = reapplied(changes, snapshot, options.rolled_back)
    warnings += reapplied_warnings(changes, again)
    if options.check_safety:
        totals = {code: t.total for code, t in snapshot.types.items()}
        warnings += check_safety(changes, totals, project.config.safety, options.allow_large)
    counts = rule_counts(project, tallies)
    return _assemble(project, snapshot, host, options, changes, warnings, (counts, again))


def _user_ids(snapshot: Snapshot) -> tuple[dict[str, str], dict[str, str]]:
    """Lower-cased email → lower-cased id, of the active users and of every user."""
    users = snapshot.users or ()
    active = {u.email.lower(): u.id.lower() for u in users if u.active}
    # Conditions may name any user: reassigning from deactivated owners is a common rule.
    everyone = {u.email.lower(): u.id.lower() for u in users}
    return active, everyone


def _static_problems(
    project: Project, snapshot: Snapshot, active: Mapping[str, str]
) -> list[Problem]:
    """What is wrong with the rules whatever the opportunities: checked against the metadata."""
    return online.check(
        project,
        {c: t.meta for c, t in snapshot.types.items()},
        users=active if snapshot.users is not None else None,
    )


def _desired_values(
    project: Project,
    snapshot: Snapshot,
    users: tuple[Mapping[str, str], Mapping[str, str]],
    options: PlanOptions,
    problems: _Problems,
    only: Mapping[int, Collection[str]] | None = None,
    tallies: Mapping[str, _Tally] | None = None,
) -> tuple[dict[tuple[int, str], dict[str, _Desired]], list[str]]:
    """What the rules want, by (type, lower-cased id) and field, and a warning for each rule that
    names opportunities that do not exist. ``only``: by id(rule), the opportunities (lower-cased
    ids) to evaluate each rule on (None: all it selects); ``tallies`` (by rule name) count what
    each matched."""
    warnings: list[str] = []
    desired: dict[tuple[int, str], dict[str, _Desired]] = defaultdict(dict)
    for rule in project.rules:
        data = snapshot.types[rule.opportunity_type]
        if any(data.meta.field(name) is None for name in rule.referenced_fields):
            continue  # reported once by the static check; rendering would repeat it per record
        if online.uses_unrecognised(rule, data.meta):
            continue  # reported by the static check: never written or compared by guesswork
        selection, missing = _select(rule, data)
        if missing:
            warnings.append(_missing_warning(rule, missing))
        if only is not None:
            keep = only[id(rule)]
            selection = [(r, row) for r, row in selection if r.id.lower() in keep]
        tally = tallies[rule.name] if tallies is not None else _Tally()
        _plan_rule(rule, selection, data, users, project, options, problems, desired, tally)
    return desired, warnings


def _missing_warning(rule: Rule, missing: Sequence[str]) -> str:
    shown = ", ".join(missing[:10]) + (
        f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    )
    return (
        f"rule '{rule.name}': {len(missing)} of its opportunities "
        f"{'was' if len(missing) == 1 else 'were'} not found in "
        f"type {rule.opportunity_type}: {shown}"
    )


def _changes(
    desired: Mapping[tuple[int, str], Mapping[str, _Desired]],
    snapshot: Snapshot,
    problems: _Problems,
    tallies: Mapping[str, _Tally],
) -> list[OpportunityChange]:
    """The opportunities whose desired values differ from their current ones, with only the
    fields that differ: checked in (type, id) order, returned as ``sort_changes`` orders them
    (by id; each change's fields, rules and premises sorted), so that the plan need not rebuild
    every change to sort it. Equal field changes and premises are one object (``_Shared``); the
    changes are counted in ``tallies``."""
    changes: list[OpportunityChange] = []
    shared = _Shared()
    typed = _TypedValues()
    dependents = _Dependents()
    for code, opp_id in _in_type_order(desired):
        fields = desired[(code, opp_id)]
        data = snapshot.types[code]
        record = data.records[opp_id]
        dependents.check(record, data, fields, problems)
        field_changes = _field_changes(record, data, fields, typed, shared)
        if field_changes:
            field_changes.sort(key=_by_field)
            _count_changes(fields, field_changes, tallies)
            changes.append(
                OpportunityChange(
                    record.id,
                    code,
                    shared.rules(field_changes),
                    tuple(field_changes),
                    _premises(record, data, fields, field_changes, shared),
                )
            )
    changes.sort(key=_by_id)  # already sorted within a type, as ids mostly are in one case
    return changes


_by_field = operator.attrgetter("field")
_by_id = operator.attrgetter("id")


def _in_type_order(desired: Collection[tuple[int, str]]) -> list[tuple[int, str]]:
    """The (type, lower-cased id) keys of ``desired``, sorted: the ids sorted per type (strings
    compare faster than the tuples would)."""
    per_type: dict[int, list[str]] = defaultdict(list)
    for code, opp_id in desired:
        per_type[code].append(opp_id)
    return [(code, opp_id) for code in sorted(per_type) for opp_id in sorted(per_type[code])]


class _Shared:
    """One object for each distinct field change, premise and tuple of rules of a plan: they
    repeat a lot (the same transition, the same values read), which saves building, memory and
    writing them (``changes_text`` writes each object's text once). They are immutable."""

    def __init__(self) -> None:
        self._fields: dict[tuple[int, str | None, str], FieldChange] = {}
        self._changes: dict[tuple[int, str | None, str], FieldChange | None] = {}
        self._premises: dict[tuple[Any, ...], Premise] = {}
        self._rules: dict[tuple[str, ...], tuple[str, ...]] = {}
        # the fields each rule reads, and the parents of the dependent fields it sets
        self.reads: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def change(
        self,
        name: str,
        raw: str | None,
        want: _Desired,
        meta: OpportunityType,
        typed: _TypedValues,
    ) -> FieldChange | None:
        """The change of field ``name`` from ``raw`` to what ``want`` wants (None: none, as
        ``codec.same`` decides), worked out once per rule's value, raw value and wanted value
        (the rule's value names the rule, the field and the source)."""
        key = (id(want.value), raw, want.wire)
        try:
            return self._changes[key]
        except KeyError:
            pass
        f = meta.field(name)
        assert f is not None  # unknown fields never reach `desired`
        current, shown = typed.read(f, raw)
        found = None if current == typed.read(f, want.wire)[0] else self._field(name, shown, want)
        self._changes[key] = found
        return found

    def _field(self, name: str, shown: str | None, want: _Desired) -> FieldChange:
        key = (id(want.value), shown, want.wire)
        found = self._fields.get(key)
        if found is None:
            source = _source(want.value.location)
            found = self._fields[key] = FieldChange(name, shown, want.wire, want.rule.name, source)
        return found

    def rules(self, changes: Sequence[FieldChange]) -> tuple[str, ...]:
        """The rules of ``changes``, sorted, each once."""
        names = tuple(f.rule for f in changes)
        found = self._rules.get(names)
        if found is None:
            found = self._rules[names] = tuple(sorted(set(names)))
        return found

    def premise(
        self, rule: Rule, held: tuple[str, ...], names: tuple[str, ...], values: tuple[Any, ...]
    ) -> Premise:
        key = (id(rule), held, names, values)
        found = self._premises.get(key)
        if found is None:
            read = tuple(zip(names, values, strict=True))
            found = self._premises[key] = Premise(rule.name, held, read)
        return found


def _premises(
    record: OpportunityRecord,
    data: TypeData,
    fields: Mapping[str, _Desired],
    changed: Sequence[FieldChange],
    shared: _Shared,
) -> tuple[Premise, ...]:
    """The premise of each rule that wants one of the ``changed`` fields (sorted by field) of
    ``record``, sorted by rule: the values the rule read, as read (only the fields read, only
    for the opportunities that change; ``apply`` compares them with the codec, so nothing is
    parsed here)."""
    holds: dict[int, tuple[Rule, list[str]]] = {}
    for f in changed:
        want = fields[f.field]
        for rule in want.rules if want.also else (want.rule,):
            entry = holds.get(id(rule))
            if entry is None:
                holds[id(rule)] = (rule, [f.field])
            else:
                entry[1].append(f.field)
    premises = []
    reads, values = shared.reads, record.values
    for key, (rule, held) in holds.items():
        names, parents = reads.get(key) or reads.setdefault(key, _read_fields(rule, data.meta))
        # a parent counts only where it was read (for the rule's type, by any rule)
        if parents and (seen := tuple(p for p in parents if p in values)):
            names = tuple(sorted((*names, *seen)))
        if names:  # ``held`` is sorted: ``changed`` is
            read = tuple(map(values.get, names))
            premises.append(shared.premise(rule, tuple(held), names, read))
    if len(premises) > 1:
        premises.sort(key=_by_rule)
    return tuple(premises)


_by_rule = operator.attrgetter("rule")


def _read_fields(rule: Rule, meta: OpportunityType) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The fields a rule decides on, sorted: those of its ``where`` and those its ``when`` and
    templates read; and apart, the parent of each dependent field it sets (Status for Stage:
    the plan checked the option against the parent where it was read, and a Stage sent under a
    Status somebody changed since may be refused, or kept invalid). Templates are given an
    ``opp`` of exactly the fields their syntax names (``rule.referenced_fields``), so that a
    template that reads ``opp`` as a whole (``opp | length``, ``opp | list``,
    ``opp[vars.name]``) can see no other field: the premise is every field the rule *could*
    have read, not only those a branch taken did read — a change to a field read only in a
    branch not taken holds the rule's fields back needlessly, but never lets a changed reason
    through."""
    names = set(rule.referenced_fields) | {c.field for c in rule.where}
    parents = set()
    for value in rule.set:
        f = meta.field(value.field)
        if f is not None and f.parent_field and f.dependent_options:
            parents.add(f.parent_field)
    known = [n for n in sorted(names) if meta.field(n) is not None]
    return tuple(known), tuple(sorted(p for p in parents - names if meta.field(p) is not None))


def _field_changes(
    record: OpportunityRecord,
    data: TypeData,
    fields: Mapping[str, _Desired],
    typed: _TypedValues,
    shared: _Shared,
) -> list[FieldChange]:
    """The fields of one opportunity whose desired value is not the value it has (as
    ``codec.same`` decides, with each value typed once: see ``_TypedValues``)."""
    field_changes = []
    values = record.values
    for name, want in fields.items():
        change = shared.change(name, values.get(name), want, data.meta, typed)
        if change is not None:
            field_changes.append(change)
    return field_changes


class _TypedValues:
    """Each distinct raw value of each field typed once for the diff, with its canonical text
    (what ``codec.read`` and ``codec.canonical`` make of it): values repeat a lot, and typing
    them per opportunity was most of the diff's time. Values are read as strings (or None)."""

    def __init__(self) -> None:
        self._by_field: dict[int, dict[str | None, tuple[codec.Typed, str | None]]] = {}

    def read(self, f: FieldMeta, raw: str | None) -> tuple[codec.Typed, str | None]:
        values = self._by_field.get(id(f))  # the field's metadata lives as long as the plan
        if values is None:
            values = self._by_field[id(f)] = {}
        found = values.get(raw)
        if found is None:
            value = codec.read(f, raw)
            found = values[raw] = (value, codec.text(value))
        return found


def _assemble(
    project: Project,
    snapshot: Snapshot,
    host: str,
    options: PlanOptions,
    changes: Sequence[OpportunityChange],
    warnings: list[str],
    counts_and_marks: tuple[Sequence[RuleCount], Mapping[tuple[str, str], str]],
) -> Plan:
    """The plan of the changes, with what it was made from, its per-rule counts and its
    re-apply marks."""
    config = project.config
    inputs = Inputs(
        files=dict(options.input_files),
        vars=dict(project.vars),
        now=options.now,
        host=host,
        targets=options.targets,
        allow_large=options.allow_large,
    )
    return assemble(
        changes,
        inputs,
        version=options.lsqsync_version,
        created=options.created_at,
        lifetime=options.expires_in,
        rule_sources={r.name: _source(r.location) for r in project.rules},
        type_totals={c: (t.meta.name, t.total) for c, t in snapshot.types.items()},
        rate=options.write_pace or config.rate_limit.write_pace(),
        read_calls=snapshot.read_calls,
        git_commit=options.git_commit,
        state=(options.state_lineage, options.state_serial),
        warnings=[*options.warnings, *warnings],
        labels=_labels(changes, snapshot),
        mask=config.mask,
        field_labels={c: t.meta.display_names for c, t in snapshot.types.items()},
        presorted=True,  # as _changes builds them
        rule_counts=counts_and_marks[0],
        reapplied=counts_and_marks[1],
    )


def _select(
    rule: Rule, data: TypeData
) -> tuple[list[tuple[OpportunityRecord, Mapping[str, str] | None]], list[str]]:
    """The records a rule selects (with their CSV row), and the ids it names that are missing."""
    ids = selected_ids(rule)
    if ids is None:
        return [(r, None) for r in data.records.values()], []
    rows = {row.key: row.values for row in rule.csv.rows} if rule.csv else {}
    out: list[tuple[OpportunityRecord, Mapping[str, str] | None]] = []
    missing = []
    for key in ids:
        opp_id = guid(key) or data.auto_ids.get(key, "").lower()
        record = data.records.get(opp_id)
        if record is None:
            missing.append(key)
        else:
            out.append((record, rows.get(key)))
    return out, missing


@dataclass(frozen=True)
class _Failure:
    """A problem of one evaluation, recorded for every opportunity it is the outcome of."""

    location: Location
    path: str
    message: str


# The outcome of a rule's ``when`` and templated values for one tuple of what they read: the
# ``when`` failed, or it does not hold (None), or the value of each ``set`` target (its wire
# value, or why it cannot be written).
_Outcome = _Failure | None | list[str | _Failure]


def _plan_rule(
    rule: Rule,
    selection: Sequence[tuple[OpportunityRecord, Mapping[str, str] | None]],
    data: TypeData,
    users: tuple[Mapping[str, str], Mapping[str, str]],
    project: Project,
    options: PlanOptions,
    problems: _Problems,
    desired: dict[tuple[int, str], dict[str, _Desired]],
    tally: _Tally,
) -> None:
    """Evaluate one rule over the records it selects. Everything that does not depend on the
    record (condition bounds, literal values) is worked out once, before the loop; ``where``
    once per distinct raw value of each of its fields, ``when`` and the templated values once
    per distinct tuple of what they read (see ``_Evaluator``). ``tally`` counts the records it
    matched."""
    parts = compile_rule(rule, data, users, project, options, problems)
    if parts is None:
        return
    targets, evaluate, done = parts.targets, parts.evaluate, parts.done
    masked = project.config.mask
    check = _where_check(parts.predicates)
    # a rule that names its opportunities may name one twice (its id and its AutoId)
    matched: set[str] | None = None if selected_ids(rule) is None else set()
    hits = 0
    for record, row in selection:
        if done and record.id.lower() in done:
            # a once rule leaves what it wrote before alone (counted where it still matches)
            if check(record.values) and isinstance(evaluate(record.values, row), list):
                tally.once_ids.add(record.id)
            continue
        if not check(record.values):
            continue
        outcome = evaluate(record.values, row)
        if outcome is None:
            continue
        hits += 1
        if matched is not None:
            matched.add(record.id)
        if isinstance(outcome, _Failure):
            problems.add(outcome.location, outcome.path, outcome.message, record.id)
            continue
        for (value, f, _), wire in zip(targets, outcome, strict=True):
            if isinstance(wire, _Failure):
                problems.add(wire.location, wire.path, wire.message, record.id)
            else:
                _want(rule, value, f, wire, record.id, masked, problems, desired)
    tally.matched += hits if matched is None else len(matched)


@dataclass(frozen=True)
class RuleParts:
    """A rule made ready to evaluate records of its type: what ``_plan_rule`` runs per record,
    and what ``plan --explain`` runs for one (``evaluate_record``)."""

    rule: Rule
    predicates: list[tuple[str, Callable[[Any], bool]]]  # a test per where condition, in order
    targets: list[tuple[FieldValue, FieldMeta, str | None]]  # see ``_targets``
    evaluate: _Evaluator
    done: frozenset[str]  # a once rule's opportunities written before (lower-cased ids)


def compile_rule(
    rule: Rule,
    data: TypeData,
    users: tuple[Mapping[str, str], Mapping[str, str]],
    project: Project,
    options: PlanOptions,
    problems: _Problems,
) -> RuleParts | None:
    """``rule``'s conditions, values and evaluator; None when it cannot be planned (its
    problems are in ``problems``)."""
    meta = data.meta
    active, everyone = users
    predicates = _predicates(rule, meta, everyone, problems)
    if predicates is None:
        return None
    targets = _targets(rule, meta, active, problems)
    evaluate = _Evaluator(rule, meta, targets, _base_context(rule, project, options, active),
                          active, project.config.mask)  # fmt: skip
    done = options.once_written.get(rule.name, frozenset()) if rule.once else frozenset()
    return RuleParts(rule, predicates, targets, evaluate, done)


def _want(
    rule: Rule,
    value: FieldValue,
    f: FieldMeta,
    wire: str,
    opportunity: str,
    masked: Collection[str],
    problems: _Problems,
    desired: dict[tuple[int, str], dict[str, _Desired]],
) -> None:
    """Record that ``rule`` wants ``wire`` in field ``f`` of an opportunity (or the conflict
    with the rule that wants another value there)."""
    wanted = desired[(rule.opportunity_type, opportunity.lower())]
    earlier = wanted.get(f.schema_name)
    if earlier is None:
        wanted[f.schema_name] = _Desired(wire, rule, value)
    elif codec.read(f, earlier.wire) != codec.read(f, wire):
        problems.add(
            value.location, "", _conflict(earlier, rule, value, f, wire, masked), opportunity
        )
    else:
        earlier.also.append(rule)  # the field rests on this rule's premise too


def _where_check(
    predicates: Sequence[tuple[str, Callable[[Any], bool]]],
) -> Callable[[Mapping[str, Any]], bool]:
    """One test of a record's values against every ``where`` condition, each condition's
    verdict worked out once per distinct raw value (Status, Stage, Owner … repeat a lot)."""
    tests: list[tuple[str, Callable[[Any], bool], dict[Any, bool]]] = [
        (name, holds, {}) for name, holds in predicates
    ]

    def check(values: Mapping[str, Any]) -> bool:
        for name, holds, verdicts in tests:
            raw = values.get(name)
            verdict = verdicts.get(raw)
            if verdict is None:
                verdict = verdicts[raw] = holds(raw)
            if not verdict:
                return False
        return True

    if len(tests) != 1:
        return check
    ((name, holds, verdicts),) = tests

    def check_one(values: Mapping[str, Any]) -> bool:  # the same, without the loop
        raw = values.get(name)
        verdict = verdicts.get(raw)
        if verdict is None:
            verdict = verdicts[raw] = holds(raw)
        return verdict

    return check_one


class _Evaluator:
    """A rule's ``when`` and templated values for one record, evaluated once per distinct
    tuple of what they can read: the raw values of the ``opp`` fields their syntax names and
    the CSV row (``vars``, ``now``, ``rule`` and ``user()`` are the same for the whole rule).
    Correct only while templates are pure functions of their context: the sandbox offers no
    global and no filter or test with another input or a side effect (a test pins the list)."""

    def __init__(
        self,
        rule: Rule,
        meta: OpportunityType,
        targets: Sequence[tuple[FieldValue, FieldMeta, str | None]],
        base_context: Mapping[str, Any],
        active: Mapping[str, str],
        masked: Collection[str],
    ) -> None:
        self.rule, self.targets, self.base = rule, targets, base_context
        self.active, self.masked = active, masked
        self.templated = rule.when is not None or any(wire is None for _, _, wire in targets)
        # Only the fields the templates name are typed for them: typing every field of every
        # record was most of the planner's time at 100,000 opportunities.
        self.referenced = [
            (n, f) for n in sorted(rule.referenced_fields) if (f := meta.field(n)) is not None
        ]
        self.names = [n for n, _ in self.referenced]
        self.literal: list[str | _Failure] = [wire or "" for _, _, wire in targets]
        self.outcomes: dict[tuple[Any, ...], _Outcome] = {}

    def __call__(self, values: Mapping[str, Any], row: Mapping[str, str] | None) -> _Outcome:
        if not self.templated:
            return self.literal
        key = (*map(values.get, self.names), None if row is None else tuple(row.items()))
        try:
            return self.outcomes[key]
        except KeyError:
            outcome = self.outcomes[key] = self._evaluate(values, row)
            return outcome

    def _evaluate(self, values: Mapping[str, Any], row: Mapping[str, str] | None) -> _Outcome:
        opp = {n: codec.for_template(codec.read(f, values.get(n))) for n, f in self.referenced}
        context = {**self.base, "opp": opp, "row": row}
        rule = self.rule
        if rule.when is not None:
            try:
                if not rule.when.render(context):
                    return None
            except TemplateProblem as e:
                return _Failure(rule.when_location or rule.location, f"{rule.path}.when", str(e))
        return [
            wire if wire is not None else _rendered(value, f, context, self.active, self.masked)
            for value, f, wire in self.targets
        ]


def _predicates(
    rule: Rule, meta: OpportunityType, everyone: Mapping[str, str], problems: _Problems
) -> list[tuple[str, Callable[[Any], bool]]] | None:
    """A test per ``where`` condition, by field name; None when the rule cannot be planned."""
    predicates: list[tuple[str, Callable[[Any], bool]]] = []
    for condition in rule.where:
        f = meta.field(condition.field)
        if f is None:
            return None  # reported by the static check
        try:
            predicates.append((condition.field, predicate(condition, f, everyone)))
        except codec.InvalidValue as e:
            problems.static.append(Problem(condition.location, condition.path, f"where: {e}"))
            return None
    return predicates


def _targets(
    rule: Rule, meta: OpportunityType, active: Mapping[str, str], problems: _Problems
) -> list[tuple[FieldValue, FieldMeta, str | None]]:
    """The ``set`` values the rule can write, each with its field and, for a literal, the value
    as Bulk Update takes it (None: a template, rendered per record)."""
    targets: list[tuple[FieldValue, FieldMeta, str | None]] = []
    for value in rule.set:
        f = meta.field(value.field)
        if f is None or f.read_only or f.is_system or f.is_auto_id:
            continue  # reported by the static check (CreatedOn with allow_created_on aside)
        wire = None
        if value.template is None:
            try:
                wire = codec.to_wire(f, value.literal, active)
            except codec.InvalidValue as e:
                problems.static.append(Problem(value.location, value.path, str(e)))
                continue
        targets.append((value, f, wire))
    return targets


def _base_context(
    rule: Rule, project: Project, options: PlanOptions, active: Mapping[str, str]
) -> dict[str, Any]:
    """What the rule's templates see that is the same for every record."""
    return {
        "vars": project.vars,
        "now": options.now,
        "rule": {
            "name": rule.name,
            "description": rule.description,
            "opportunity_type": rule.opportunity_type,
        },
        "user": _user_function(active),
    }


def _rendered(
    value: FieldValue,
    f: FieldMeta,
    context: Mapping[str, Any],
    active: Mapping[str, str],
    masked: Collection[str],
) -> str | _Failure:
    """A templated ``set`` value, as Bulk Update takes it, or why it cannot be written."""
    assert value.template is not None
    try:
        wire = codec.to_wire(f, value.template.render(context), active)
    except TemplateProblem as e:
        return _Failure(value.at(e.line), "", str(e))
    except codec.InvalidValue as e:
        return _Failure(value.location, "", _unless_masked(str(e), value, masked))
    if not wire and f.mandatory:
        return _Failure(value.location, "", f"{f.schema_name} is mandatory and cannot be cleared")
    bad_option = online.option_problem(f, wire)
    if bad_option:
        return _Failure(value.location, "", _unless_masked(bad_option, value, masked))
    return wire


def _hides(value: FieldValue, mask: Collection[str]) -> bool:
    """Whether a message about ``value`` may not show it: it is written to a masked field, or
    computed from one (a template that reads a masked field)."""
    return any(is_masked(name, mask) for name in (value.field, *value.reads))


def _unless_masked(message: str, value: FieldValue, mask: Collection[str]) -> str:
    if not _hides(value, mask):
        return message
    return f"{value.field}: the value cannot be written (not shown: it is or reads a masked field)"


def _conflict(
    earlier: _Desired,
    rule: Rule,
    value: FieldValue,
    f: FieldMeta,
    wire: str,
    masked: Collection[str],
) -> str:
    """The message for two rules that want different values for the same field."""
    return (
        f"rules '{earlier.rule.name}' ({_source(earlier.value.location)}) and "
        f"'{rule.name}' ({_source(value.location)}) {CONFLICT} "
        + (
            f"{f.schema_name} (masked)"
            if _hides(value, masked) or _hides(earlier.value, masked)
            else f"{f.schema_name}: {earlier.wire!r} and {wire!r}"
        )
    )


def _user_function(active: Mapping[str, str]) -> Callable[[str], str]:
    def user(email: str) -> str:
        found = active.get(str(email).strip().lower())
        if found is None:
            raise ValueError(
                f"user(): no active user with email '{email}'"
                + codec.closest_users(str(email), active)
            )
        return found

    return user


def predicate(
    condition: Condition, f: FieldMeta, users: Mapping[str, str]
) -> Callable[[Any], bool]:
    """A test of a record's raw value, with the condition's value typed once, as the field's."""
    op, value = condition.op, condition.value
    # Field values repeat a lot (Status, Stage, Owner …): type each distinct one once.
    typed_values: dict[Any, Any] = {}

    def read(raw: Any) -> Any:
        try:
            return typed_values[raw]
        except KeyError:
            result = typed_values[raw] = codec.read(f, raw)
            return result

    if op == "empty":
        want_empty = bool(value)
        return lambda raw: (read(raw) is None) is want_empty
    if op in ("contains", "startswith"):
        return _text_predicate(op, str(value), f, read)

    def typed(v: Any) -> Any:
        if codec.kind(f) in ("text", "dropdown"):
            return None if v is None else str(v).strip()
        return codec.read(f, codec.to_wire(f, v, users))

    if op in ("in", "not_in"):
        bounds = [typed(v) for v in value]
        inside = op == "in"
        return lambda raw: (read(raw) in bounds) is inside
    bound = typed(value)
    if op == "eq":
        return lambda raw: bool(read(raw) == bound)
    if op == "ne":
        return lambda raw: bool(read(raw) != bound)
    compare: Callable[[Any, Any], bool] = {
        "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le,
    }[op]  # fmt: skip

    def ordered(raw: Any) -> bool:
        current = read(raw)
        if current is None or bound is None:
            return False
        try:
            return bool(compare(current, bound))
        except TypeError:  # e.g. a value that did not parse as a number: text vs Decimal
            return False

    return ordered


def _text_predicate(
    op: str, needle: str, f: FieldMeta, read: Callable[[Any], Any]
) -> Callable[[Any], bool]:
    """``contains`` and ``startswith``: on the value's canonical text; for a multi-select
    field, ``contains`` holds when the option is one of those selected."""
    if op == "contains" and codec.kind(f) == "multiselect":
        option = needle.strip()
        return lambda raw: option in (read(raw) or ())
    if op == "contains":
        return lambda raw: needle in (codec.text(read(raw)) or "")
    return lambda raw: (codec.text(read(raw)) or "").startswith(needle)


class _Dependents:
    """A dependent dropdown (Stage) must hold an option of its parent's (Status) planned value.
    Each type's dependent fields are found once, and each (field, parent value, value) judged
    once."""

    def __init__(self) -> None:
        self._pairs: dict[int, list[tuple[FieldMeta, str]]] = {}
        self._allowed: dict[tuple[int, str, str], bool] = {}

    def _dependents(self, meta: OpportunityType) -> list[tuple[FieldMeta, str]]:
        found = self._pairs.get(meta.code)
        if found is None:
            found = self._pairs[meta.code] = [
                (child, child.parent_field)
                for child in meta.fields
                if child.parent_field and child.dependent_options
            ]
        return found

    def check(
        self,
        record: OpportunityRecord,
        data: TypeData,
        fields: Mapping[str, _Desired],
        problems: _Problems,
    ) -> None:
        for child, parent in self._dependents(data.meta):
            name = child.schema_name
            if name not in fields and parent not in fields:
                continue
            both = (fields.get(name), fields.get(parent))
            if all(d is not None and d.value.template is None for d in both) and (
                both[0] is not None and both[1] is not None and both[0].rule is both[1].rule
            ):
                continue  # one rule's literal pair: the static check reports it once
            parent_value = (
                fields[parent].wire if parent in fields else record.values.get(parent)
            ) or ""
            child_value = (fields[name].wire if name in fields else record.values.get(name)) or ""
            key = (id(child), parent_value, child_value)
            fine = self._allowed.get(key)
            if fine is None:
                allowed = child.dependent_options.get(parent_value)
                fine = self._allowed[key] = (
                    allowed is None or not child_value or child_value in allowed
                )
            if not fine:
                _dependent_problem(record, child, parent, fields, parent_value, child_value,
                                   problems)  # fmt: skip


def _dependent_problem(
    record: OpportunityRecord,
    child: FieldMeta,
    parent: str,
    fields: Mapping[str, _Desired],
    parent_value: str,
    child_value: str,
    problems: _Problems,
) -> None:
    name = child.schema_name
    culprit = fields.get(name) or fields[parent]
    hint = "" if name in fields else f"; set {name} too"
    allowed = child.dependent_options[parent_value]
    problems.add(
        culprit.value.location,
        "",
        f"{name} '{child_value}' is not allowed under {parent} "
        f"'{parent_value}' (allowed: {', '.join(allowed)}){hint}",
        record.id,
    )


def check_safety(
    changes: Sequence[OpportunityChange],
    totals: Mapping[int, int | None],
    safety: Safety,
    allow_large: bool,
) -> list[str]:
    """UnsafePlan when ``changes`` exceed the project's safety limits (``totals``: opportunities
    of each type in the account, None where it could not be read), unless ``allow_large``; else
    a warning for each type whose share of changes could not be checked."""
    if allow_large:
        return []
    reasons = safety_problems(changes, totals, safety)
    if reasons:
        raise UnsafePlan(
            "plan refused: " + "; ".join(reasons) + ". Review the rules, or pass --allow-large "
            "if this is intended (the override is recorded in the plan)."
        )
    return [
        f"safety.max_change_ratio not checked for type {code}: the number of its "
        "opportunities is unknown, as these keys cannot use Opportunity Advanced Search "
        f"(administrators only); safety.max_changes ({safety.max_changes:,}) still holds"
        for code in sorted({c.opportunity_type for c in changes})
        if totals.get(code) is None
    ]


def safety_problems(
    changes: Sequence[OpportunityChange], totals: Mapping[int, int | None], safety: Safety
) -> list[str]:
    """How ``changes`` exceed the project's safety limits (none: they do not). A type whose
    number of opportunities is unknown (None) has its ratio unchecked."""
    max_changes, max_ratio = safety.max_changes, safety.max_change_ratio
    reasons = []
    if len(changes) > max_changes:
        reasons.append(
            f"it changes {len(changes):,} opportunities, more than safety.max_changes "
            f"({max_changes:,})"
        )
    per_type: dict[int, int] = defaultdict(int)
    for c in changes:
        per_type[c.opportunity_type] += 1
    for code, count in sorted(per_type.items()):
        total = totals.get(code)
        if total is not None and total >= RATIO_MIN_TOTAL and count / total > max_ratio:
            reasons.append(
                f"it changes {count:,} of the {total:,} opportunities of type {code} "
                f"({count / total:.0%}), more than safety.max_change_ratio ({max_ratio:.0%})"
            )
    return reasons


def _labels(changes: Sequence[OpportunityChange], snapshot: Snapshot) -> dict[str, str]:
    users: dict[str, User] = {u.id.lower(): u for u in snapshot.users or ()}
    labels = {}
    user_valued: dict[tuple[int, str], bool] = {}  # (type, field) → whether it holds users
    for c in changes:
        meta = snapshot.types[c.opportunity_type].meta
        for f in c.changes:
            key = (c.opportunity_type, f.field)
            if (holds_users := user_valued.get(key)) is None:
                field = meta.field(f.field)
                holds_users = user_valued[key] = field is not None and field.is_user_valued
            if not holds_users:
                continue
            for value in (f.before, f.after):
                user = users.get((value or "").lower())
                if user is not None:
                    labels[user.id.lower()] = f"{user.name} <{user.email}>"
    return labels


# -- per rule: what it matched, and how that came out --------------------------------------------


class _Tally:
    """One rule's counts while planning: the opportunities it matched (its ``where`` and
    ``when`` hold; ``_plan_rule`` counts them), those it left alone (``once``), and of those it
    wants a value in, in how many a field changes in its name or in another rule's
    (``_count_changes``). The rest of what it matched is already current."""

    __slots__ = ("by_other_rule", "changing", "matched", "once_ids")

    def __init__(self) -> None:
        self.matched = 0
        self.once_ids: set[str] = set()
        self.changing = 0
        self.by_other_rule = 0


def _count_changes(
    fields: Mapping[str, _Desired], changed: Sequence[FieldChange], tallies: Mapping[str, _Tally]
) -> None:
    """Count one opportunity's ``changed`` fields: for each rule named on one, and for each
    other rule that wants the same value in one (``_Desired.also``)."""
    credited = {f.rule for f in changed}
    for name in credited:
        tallies[name].changing += 1
    if any(fields[f.field].also for f in changed):
        others = {r.name for f in changed for r in fields[f.field].also} - credited
        for name in others:
            tallies[name].by_other_rule += 1


def rule_counts(project: Project, tallies: Mapping[str, _Tally]) -> tuple[RuleCount, ...]:
    """Each rule's counts, in the project's order."""
    counts = []
    for rule in project.rules:
        t = tallies[rule.name]
        once = len(t.once_ids)
        current = t.matched - t.changing - t.by_other_rule
        counts.append(
            RuleCount(rule.name, t.matched + once, t.changing, current, t.by_other_rule, once)
        )
    return tuple(counts)


# -- convergence: would the rules change the planned values again? ----------------------------

# how far the convergence check moves ``now``: enough to change any date or time shown of it
_LATER = timedelta(days=1, hours=1, minutes=1, seconds=1)


def nonconvergence(
    project: Project,
    snapshot: Snapshot,
    users: tuple[Mapping[str, str], Mapping[str, str]],
    options: PlanOptions,
    changes: Sequence[OpportunityChange],
    desired: Mapping[tuple[int, str], Mapping[str, _Desired]],
) -> list[str]:
    """A warning (starting NONCONVERGENT) for each rule and field that the rules would change
    again once ``changes`` are applied: the rules planned anew against the planned after-state
    of the opportunities that change, at a later ``now``. A ``once`` rule skips the
    opportunities it changes here, as it will next time.

    Only a rule whose inputs differ there is evaluated again on an opportunity (see
    ``_affected``); every other rule wants there what it wanted in this plan (``desired``), a
    value the after-state already holds, so it changes nothing, and it still takes the field
    from a later rule that would change it, as it does when planning."""
    if not changes:
        return []
    written = {r.name: set(options.once_written.get(r.name, ())) for r in project.rules if r.once}
    for c in changes:
        for f in c.changes:
            if f.rule in written:
                written[f.rule].add(c.id.lower())
    later = datetime.strptime(options.now, NOW_FORMAT) + _LATER
    again_options = replace(
        options,
        now=later.strftime(NOW_FORMAT),
        once_written={name: frozenset(ids) for name, ids in written.items()},
    )
    affected = _affected(project, changes)
    after = _after_state(snapshot, changes, set().union(*affected.values()))
    wanted, _ = _desired_values(project, after, users, again_options, _Problems(), affected)
    again: dict[tuple[str, str], list[tuple[str, FieldChange]]] = defaultdict(list)
    typed, shared = _TypedValues(), _Shared()
    order = {id(r): i for i, r in enumerate(project.rules)}
    for code, opp_id in _in_type_order(wanted):
        data = after.types[code]
        record = data.records[opp_id]
        before = desired.get((code, opp_id), {})
        fields = {
            name: want
            for name, want in wanted[(code, opp_id)].items()
            if not _held_by_earlier(want, before.get(name), affected, opp_id, order)
        }
        for f in _field_changes(record, data, fields, typed, shared):
            again[(f.rule, f.field)].append((record.id, f))
    rules = {r.name: r for r in project.rules}
    return [
        _nonconvergent_warning(
            rules[rule], _shown_field(snapshot, rules[rule], name), found, project.config.mask
        )
        for (rule, name), found in sorted(again.items())
    ]


def _shown_field(snapshot: Snapshot, rule: Rule, name: str) -> tuple[str, str]:
    """(schema name, as warnings show it: ``Stage (mx_Custom_2)``) of the field ``name`` of the
    type ``rule`` changes."""
    data = snapshot.types.get(rule.opportunity_type)
    meta = data.meta.field(name) if data is not None else None
    return name, field_name(name, meta.display_name if meta is not None else None)


def _affected(project: Project, changes: Sequence[OpportunityChange]) -> dict[int, set[str]]:
    """By id(rule), the opportunities (lower-cased ids) of ``changes`` on which the rule's
    inputs differ in the after-state: it reads (in ``where``, ``when`` or a template) a field
    the change writes, or it reads ``now`` (later there), or it is a ``once`` rule (it skips
    there what it changes here). Anything else it reads (the CSV row, ``vars``, ``rule``,
    ``user()``) is the same."""
    always = {id(r) for r in project.rules if r.once or _reads_now(r, project)}
    reads = {id(r): {c.field for c in r.where} | r.referenced_fields for r in project.rules}
    of_type: dict[int, list[Rule]] = defaultdict(list)
    for rule in project.rules:
        of_type[rule.opportunity_type].append(rule)
    affected: dict[int, set[str]] = {id(r): set() for r in project.rules}
    # the rules affected by each set of written fields of a type (a few distinct ones)
    by_written: dict[tuple[int, tuple[str, ...]], list[int]] = {}
    for c in changes:
        key = (c.opportunity_type, tuple(map(_by_field, c.changes)))
        found = by_written.get(key)
        if found is None:
            names = set(key[1])
            found = by_written[key] = [
                id(r)
                for r in of_type[c.opportunity_type]
                if id(r) in always or not reads[id(r)].isdisjoint(names)
            ]
        opp_id = c.id.lower()
        for rule_id in found:
            affected[rule_id].add(opp_id)
    return affected


def _reads_now(rule: Rule, project: Project) -> bool:
    """Whether the rule's ``when`` or one of its templates reads ``now`` (a ``when`` whose
    analysis finds a problem is taken to: it cannot be told)."""
    if any(v.reads_now for v in rule.set):
        return True
    if rule.when is None:
        return False
    found = templates.analyse(
        rule.when.source, expression=True, vars=project.vars, has_row=rule.csv is not None
    )
    return found.uses_now or bool(found.problems)


def _held_by_earlier(
    want: _Desired,
    before: _Desired | None,
    affected: Mapping[int, Collection[str]],
    opp_id: str,
    order: Mapping[int, int],
) -> bool:
    """Whether a rule whose inputs did not change (not evaluated again) and that wanted the
    field in this plan (``before``: what the rules wanted then) comes before the rule that wants
    it again: then that earlier rule's value, already the field's after this plan, stays
    wanted (a later rule's other value is a conflict it wins, as when planning)."""
    if before is None:
        return False
    first = order[id(want.rule)]
    return any(
        order[id(rule)] < first and opp_id not in affected[id(rule)] for rule in before.rules
    )


def _after_state(
    snapshot: Snapshot, changes: Sequence[OpportunityChange], needed: Collection[str]
) -> Snapshot:
    """The opportunities that ``changes`` change, with the changes applied (only those of
    them ``needed``: lower-cased ids)."""
    records: dict[int, dict[str, OpportunityRecord]] = defaultdict(dict)
    for c in changes:
        opp_id = c.id.lower()
        if opp_id not in needed:
            continue
        record = snapshot.types[c.opportunity_type].records[opp_id]
        values = _copy(record.values)
        for f in c.changes:
            values[f.field] = f.after
        records[c.opportunity_type][opp_id] = _Planned(record.id, record.event_code, values)
    return replace(
        snapshot,
        types={
            code: replace(data, records=records.get(code, {}))
            for code, data in snapshot.types.items()
        },
    )


def _copy(values: Mapping[str, str | None]) -> dict[str, str | None]:
    """A dict of ``values``: a read record's are a read-only proxy of a dict, whose ``copy()``
    copies that dict (≈ 10 times faster than ``dict(proxy)``, which goes key by key)."""
    return values.copy() if isinstance(values, MappingProxyType) else dict(values)


class _Planned(OpportunityRecord):
    """An opportunity of the after-state: its values are the dict ``_after_state`` made, not
    copied again into a read-only mapping (only the planner reads them)."""

    __slots__ = ()

    def __post_init__(self) -> None:
        pass


def _nonconvergent_warning(
    rule: Rule,
    field: tuple[str, str],
    found: Sequence[tuple[str, FieldChange]],
    mask: Collection[str],
) -> str:
    name, shown_name = field
    value = next((v for v in rule.set if v.field.lower() == name.lower()), None)
    if value is not None and value.reads_now:
        why = "its template reads `now`"
    elif value is not None and name in value.reads:
        why = "its template reads the field it writes"
    else:
        why = "it reads what this plan changes"
    first = found[0][1]
    shown = (
        "(masked)"
        if (value is not None and _hides(value, mask)) or is_masked(name, mask)
        else f"{first.before or ''!r} -> {first.after!r}"
    )
    count = len(found)
    return (
        f"{NONCONVERGENT} '{rule.name}' ({_source(rule.location)}): {why}, so it would change "
        f"{shown_name} again after this plan is applied, e.g. {found[0][0]}: {shown} "
        f"({count} {'opportunity' if count == 1 else 'opportunities'}); every plan would "
        "change it again. Make the rule settle, or give it once: true if it is a one-off job "
        "(apply refuses this plan without --allow-nonconvergent)"
    )


# -- changes that put back what a rolled-back run wrote ----------------------------------------


def reapplied_warnings(
    changes: Sequence[OpportunityChange], found: Mapping[tuple[str, str], str]
) -> list[str]:
    """A warning for each rolled-back run some of whose writes ``changes`` make again
    (``found``: as ``reapplied`` returns them)."""
    per_run: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for (opp_id, name), run in sorted(found.items()):
        per_run[run].append((opp_id, name))
    out = []
    for run, fields in sorted(per_run.items()):
        rules = sorted({f.rule for c in changes for f in c.changes if (c.id, f.field) in fields})
        out.append(
            f"{REAPPLIES} {run}: {plural(len(fields), 'field')} of rule"
            f"{'s' if len(rules) > 1 else ''} {', '.join(repr(r) for r in rules)} "
            f"(e.g. {fields[0][0]} {fields[0][1]}) get the values that run wrote and a "
            "rollback put back. If the rollback was meant to last, revert these rules"
        )
    return out


def reapplied(
    changes: Sequence[OpportunityChange],
    snapshot: Snapshot,
    rolled_back: Sequence[tuple[str, str, str, str, str]],
) -> dict[tuple[str, str], str]:
    """(opportunity id, field) of ``changes`` → the rolled-back run that wrote the same value."""
    if not rolled_back:
        return {}
    wrote = {(opp.lower(), name): (run, value) for run, _, opp, name, value in rolled_back}
    found: dict[tuple[str, str], str] = {}
    for c in changes:
        meta = snapshot.types[c.opportunity_type].meta
        for f in c.changes:
            earlier = wrote.get((c.id.lower(), f.field))
            field_meta = meta.field(f.field)
            if earlier and field_meta and codec.same(field_meta, earlier[1], f.after):
                found[(c.id, f.field)] = earlier[0]
    return found


# -- one opportunity, rule by rule (plan --explain) ---------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """How one rule came out for one opportunity, decided by the very parts planning runs."""

    selected: bool  # the rule selects it: it selects its whole type, or its ids or CSV name it
    row: Mapping[str, str] | None  # the CSV row that names it
    where: tuple[bool, ...]  # each condition's verdict, in the rule's order
    when: bool | None  # None: not evaluated (not selected, a where fails, a failure) or no when
    failure: str | None  # why the when, or a value, could not be evaluated
    wires: tuple[str | None, ...]  # per target: the value to write (None: not evaluated)
    once: bool  # a once rule that wrote it before: left alone

    @property
    def matched(self) -> bool:
        """As planning counts it: selected, every ``where`` holds and the ``when`` does."""
        return self.selected and all(self.where) and self.when is not False and bool(self.wires)


def rule_parts(project: Project, snapshot: Snapshot, options: PlanOptions) -> dict[str, RuleParts]:
    """Every plannable rule of ``project`` made ready, by name, as ``_desired_values`` makes
    them (a rule it skips, it skips)."""
    users = _user_ids(snapshot)
    found = {}
    for rule in project.rules:
        data = snapshot.types[rule.opportunity_type]
        if any(data.meta.field(name) is None for name in rule.referenced_fields):
            continue
        if online.uses_unrecognised(rule, data.meta):
            continue
        parts = compile_rule(rule, data, users, project, options, _Problems())
        if parts is not None:
            found[rule.name] = parts
    return found


def evaluate_record(parts: RuleParts, data: TypeData, record: OpportunityRecord) -> Evaluation:
    """How ``parts``' rule comes out for ``record``: each ``where`` condition's verdict (all of
    them, where planning stops at the first that fails), then the rule's ``when`` and values,
    by the rule's own evaluator."""
    selected, row = _selects(parts.rule, data, record)
    where = tuple(holds(record.values.get(name)) for name, holds in parts.predicates)
    if not (selected and all(where)):
        return Evaluation(selected, row, where, None, None, (), False)
    outcome = parts.evaluate(record.values, row)
    once = record.id.lower() in parts.done
    if outcome is None:
        return Evaluation(True, row, where, False, None, (), once)
    if isinstance(outcome, _Failure):
        return Evaluation(True, row, where, None, outcome.message, (), once)
    failures = [w.message for w in outcome if isinstance(w, _Failure)]
    wires = tuple(w if isinstance(w, str) else None for w in outcome)
    when = True if parts.rule.when is not None else None
    return Evaluation(True, row, where, when, failures[0] if failures else None, wires, once)


def _selects(
    rule: Rule, data: TypeData, record: OpportunityRecord
) -> tuple[bool, Mapping[str, str] | None]:
    """Whether ``rule`` selects ``record``, and with which CSV row."""
    if selected_ids(rule) is None:
        return True, None
    for found, row in _select(rule, data)[0]:
        if found.id.lower() == record.id.lower():
            return True, row
    return False, None
