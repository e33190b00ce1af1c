"""``lsqsync plan --explain ID``: for one opportunity, how each rule came out and why.

Nothing here decides anything: each ``where`` verdict, the ``when`` and the values to write
come from the planner's own compiled rule (``planner.evaluate_record``), and whether a value
changes, is already current or changes in another rule's name comes from the plan itself. This
module only gathers what those read and lays it out (text, or JSON for scripts).

Values of masked fields, and values computed from them, are shown as ``***`` in both forms:
an explanation is for people and scripts to read, never to apply.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lsqsync.display import EMPTY, MASKED, capped, clean, closest, is_masked, quote
from lsqsync.errors import LsqsyncError
from lsqsync.lsq import OpportunityRecord, codec
from lsqsync.plan.model import FieldChange, Plan
from lsqsync.plan.planner import Evaluation, PlanOptions, RuleParts, evaluate_record, rule_parts
from lsqsync.plan.snapshot import Snapshot, TypeData, guid, selected_ids
from lsqsync.rules import templates
from lsqsync.rules.project import Condition, Project, Rule

# How a rule came out for the opportunity: the first three are "not matched"; the others are
# the categories of the plan's per-rule counts (``RuleCount``).
Outcome = Literal[
    "not selected", "where fails", "when fails", "once", "change", "by other rule", "current",
    "failed",
]  # fmt: skip


@dataclass(frozen=True)
class Value:
    """A value as read (``raw``) and as lsqsync types it (``typed``, canonical text; its kind)."""

    raw: str | None
    typed: str | None
    kind: str


@dataclass(frozen=True)
class ConditionResult:
    field: str
    op: str
    bound: Any  # the condition's value, as the rule writes it
    value: Value
    holds: bool


@dataclass(frozen=True)
class WhenResult:
    expression: str
    reads: tuple[tuple[str, Value], ...]  # opp fields (and row.COLUMN) the expression reads
    result: bool | None  # None: it failed
    failure: str | None


Verdict = Literal["change", "current", "by other rule", "once", "failed"]


@dataclass(frozen=True)
class SetResult:
    field: str
    want: str | None  # the value to write, as sent (None: it could not be worked out)
    current: Value
    verdict: Verdict
    note: str  # what the verdict rests on: the other rule, the failure
    hidden: bool  # the field is masked, or the value is computed from a masked field


@dataclass(frozen=True)
class RuleResult:
    rule: str
    source: str
    selection: str  # how the rule selects, and whether it selects this opportunity
    where: tuple[ConditionResult, ...]
    when: WhenResult | None
    outcome: Outcome
    set: tuple[SetResult, ...]
    premise: tuple[tuple[str, str | None], ...]  # what apply re-checks before sending its fields


@dataclass(frozen=True)
class Explanation:
    id: str
    opportunity_type: int
    type_name: str
    rules: tuple[RuleResult, ...]
    other_types: tuple[tuple[str, int], ...]  # rules for other types: (name, type)
    targets: tuple[str, ...]  # --target: only these rules were evaluated
    mask: tuple[str, ...]

    @property
    def changes(self) -> bool:
        """Whether the plan changes the opportunity (in some rule's name)."""
        return any(r.outcome in ("change", "by other rule") for r in self.rules)


# -- finding the opportunities --------------------------------------------------------------


def locate(snapshot: Snapshot, key: str) -> tuple[TypeData, OpportunityRecord] | None:
    """The opportunity ``key`` names (its id in any form uuid reads, or an AutoId value) among
    those the rules read."""
    opp_id = guid(key)
    for data in snapshot.types.values():
        found = data.records.get(opp_id or data.auto_ids.get(key.strip(), "").lower())
        if found is not None:
            return data, found
    return None


def not_found(
    keys: Sequence[str], snapshot: Snapshot, type_of: Callable[[str], str | None]
) -> LsqsyncError:
    """The error for ids that are not among the opportunities the rules read, each with what
    is known about it (``type_of``: the type name of an opportunity id, None when LeadSquared
    has none)."""
    lines = [
        f"--explain {clean(key)}: not among the opportunities the rules read: "
        + _why_not(key, snapshot, type_of)
        for key in keys
    ]
    return LsqsyncError("\n".join(lines))


def _why_not(key: str, snapshot: Snapshot, type_of: Callable[[str], str | None]) -> str:
    types = ", ".join(
        f"{code} {clean(d.meta.name)}" + ("" if d.complete else " (only the ids its rules name)")
        for code, d in sorted(snapshot.types.items())
    )
    known = [i for d in snapshot.types.values() for i in (*d.records, *d.auto_ids)]
    hint = closest(key.strip(), known, cutoff=0.8)
    if hint:
        return f"did you mean {hint[0]}? (the rules read type {types})"
    if guid(key) is None:
        return f"not an opportunity id, nor an AutoId value of type {types}"
    name = type_of(key)
    if name is None:
        return f"LeadSquared has no opportunity {clean(key.strip())} (the rules read type {types})"
    return f"it is an opportunity of type {clean(name)}; the rules read type {types}"


# -- explaining -----------------------------------------------------------------------------


def explain(
    project: Project, snapshot: Snapshot, plan: Plan, options: PlanOptions, keys: Sequence[str]
) -> list[Explanation]:
    """How each rule came out for each opportunity of ``keys`` (each found by ``locate``), in
    ``plan`` (made from ``project`` and ``snapshot`` with ``options``)."""
    parts = rule_parts(project, snapshot, options)
    out = []
    for key in keys:
        found = locate(snapshot, key)
        if found is None:
            raise not_found([key], snapshot, lambda _: None)
        data, record = found
        planned = [c for c in plan.changes if c.id.lower() == record.id.lower()]
        changes = {f.field: f for c in planned for f in c.changes}
        premises = {p.rule: p.read for c in planned for p in c.premises}
        code = data.meta.code
        rules = tuple(
            _explain_rule(parts[r.name], project, data, record, changes, premises.get(r.name, ()))
            for r in project.rules
            if r.opportunity_type == code and r.name in parts
        )
        others = tuple(
            (r.name, r.opportunity_type) for r in project.rules if r.opportunity_type != code
        )
        out.append(
            Explanation(
                record.id,
                code,
                data.meta.name,
                rules,
                others,
                plan.inputs.targets,
                project.config.mask,
            )
        )
    return out


def _explain_rule(
    parts: RuleParts,
    project: Project,
    data: TypeData,
    record: OpportunityRecord,
    changes: Mapping[str, FieldChange],
    premise: tuple[tuple[str, str | None], ...],
) -> RuleResult:
    rule = parts.rule
    found = evaluate_record(parts, data, record)
    conditions = tuple(
        ConditionResult(c.field, c.op, c.value, _value(data, c.field, record), holds)
        for c, holds in zip(_conditions(rule, parts), found.where, strict=True)
    )
    when = None
    if rule.when is not None and found.selected and all(found.where):
        when = _when(rule, project, data, record, found)
    values = _set_results(parts, data, record, found, changes)
    return RuleResult(
        rule.name,
        f"{rule.location.file}:{rule.location.line}",
        _selection(rule, found),
        conditions,
        when,
        _outcome(found, values),
        values,
        premise if any(v.verdict == "change" for v in values) else (),
    )


def _conditions(rule: Rule, parts: RuleParts) -> list[Condition]:
    # compile_rule makes one test per condition, in order (or none: the rule is not planned)
    assert len(parts.predicates) == len(rule.where)
    return list(rule.where)


def _value(data: TypeData, name: str, record: OpportunityRecord) -> Value:
    f = data.meta.field(name)
    raw = record.values.get(name)
    if f is None:
        return Value(raw, raw, "")
    return Value(raw, codec.canonical(f, raw), codec.kind(f) or "")


def _selection(rule: Rule, found: Evaluation) -> str:
    if selected_ids(rule) is None:
        return f"every opportunity of type {rule.opportunity_type}"
    how = "its csv" if rule.csv is not None else "its ids"
    return f"{how} name it" if found.selected else f"{how} do not name it"


def _when(
    rule: Rule, project: Project, data: TypeData, record: OpportunityRecord, found: Evaluation
) -> WhenResult:
    assert rule.when is not None
    analysis = templates.analyse(
        rule.when.source, expression=True, vars=project.vars, has_row=rule.csv is not None
    )
    reads = [(name, _value(data, name, record)) for name in sorted(analysis.opp_fields)]
    row = found.row or {}
    reads += [
        (f"row.{c}", Value(row.get(c), row.get(c), "text")) for c in sorted(analysis.row_fields)
    ]
    failure = found.failure if found.when is None else None
    return WhenResult(rule.when.source, tuple(reads), found.when, failure)


def _set_results(
    parts: RuleParts,
    data: TypeData,
    record: OpportunityRecord,
    found: Evaluation,
    changes: Mapping[str, FieldChange],
) -> tuple[SetResult, ...]:
    """Each value the rule sets, once it matched: what the plan does with it."""
    if not found.matched:
        return ()
    out = []
    mask = parts.evaluate.masked
    for (value, f, _), want in zip(parts.targets, found.wires, strict=True):
        hidden = any(is_masked(name, mask) for name in (f.schema_name, *value.reads))
        change = changes.get(f.schema_name)
        verdict: Verdict = "current"
        note = ""
        if found.once:
            verdict, note = "once", "once: true, and this rule wrote the opportunity before"
        elif want is None:
            verdict, note = "failed", found.failure or ""
        elif change is not None and change.rule == parts.rule.name:
            verdict = "change"
        elif change is not None:
            verdict = "by other rule"
            note = f"rule '{change.rule}' sets the same value and comes first"
        current = _value(data, f.schema_name, record)
        out.append(SetResult(f.schema_name, want, current, verdict, note, hidden))
    return tuple(out)


def _outcome(found: Evaluation, values: Sequence[SetResult]) -> Outcome:
    if not found.selected:
        return "not selected"
    if not all(found.where):
        return "where fails"
    if found.when is False:
        return "when fails"
    if not found.matched or any(v.verdict == "failed" for v in values):
        return "failed"
    if found.once:
        return "once"
    verdicts = {v.verdict for v in values}
    if "change" in verdicts:
        return "change"
    return "by other rule" if "by other rule" in verdicts else "current"


# -- text -----------------------------------------------------------------------------------

_OUTCOMES: dict[str, str] = {
    "not selected": "not matched: it does not select this opportunity",
    "where fails": "not matched: a where condition fails",
    "when fails": "not matched: its when is false",
    "failed": "matched, but it cannot be planned",
    "once": "matched; left alone (once: true, and it wrote this opportunity before)",
    "change": "matched; changes it",
    "by other rule": "matched; changes it, in another rule's name (the same value)",
    "current": "matched; already current",
}


def render_text(explanations: Sequence[Explanation]) -> str:
    return "\n\n".join("\n".join(_text_lines(e)) for e in explanations) + "\n"


def _text_lines(e: Explanation) -> list[str]:
    lines = [f"opportunity {clean(e.id)} (type {e.opportunity_type} {clean(e.type_name)})"]
    if e.targets:
        lines.append(f"  only the rules named with --target: {', '.join(map(clean, e.targets))}")
    if not e.rules:
        lines.append(f"  no rule is for type {e.opportunity_type}")
    for r in e.rules:
        lines.append(f"  rule {clean(r.rule)} ({clean(r.source)}): {_OUTCOMES[r.outcome]}")
        lines.append(f"    selects: {r.selection}")
        lines += [_condition_line(c, e.mask) for c in r.where]
        if r.when is not None:
            lines.append(_when_line(r.when, e.mask))
        lines += [_set_line(v, e.mask) for v in r.set]
        if r.premise:
            held = ", ".join(f"{clean(n)} {_raw(n, v, e.mask)}" for n, v in r.premise)
            lines.append(f"    premise: apply sends its changes only while {held}")
    if e.other_types:
        others = ", ".join(f"{clean(n)} (type {t})" for n, t in e.other_types)
        lines.append(f"  rules for other types (not evaluated): {others}")
    return lines


VALUE_LIMIT = 160  # characters of a value or an expression in text; JSON has them whole


def _raw(field: str, raw: str | None, mask: Collection[str]) -> str:
    if is_masked(field, mask):
        return MASKED
    return quote(capped(raw, VALUE_LIMIT)) if raw else EMPTY


def _read(field: str, value: Value, mask: Collection[str]) -> str:
    """``"150,000" (number 150000)``: as read, and as lsqsync types it."""
    shown = _raw(field, value.raw, mask)
    if shown in (MASKED, EMPTY):
        return shown
    typed = "" if value.typed == value.raw else f" {clean(capped(value.typed or '', VALUE_LIMIT))}"
    return f"{shown} ({value.kind}{typed})" if value.kind else shown


def _condition_line(c: ConditionResult, mask: Collection[str]) -> str:
    bound = clean(capped(json.dumps(c.bound, ensure_ascii=False, default=str), VALUE_LIMIT))
    verdict = "holds" if c.holds else "fails"
    read = _read(c.field, c.value, mask)
    return f"    where {clean(c.field)} {c.op} {bound}: {verdict} (read {read})"


def _when_line(w: WhenResult, mask: Collection[str]) -> str:
    reads = ", ".join(f"{clean(n)} = {_read(n, v, mask)}" for n, v in w.reads)
    result = f"failed: {clean(w.failure or '')}" if w.result is None else str(w.result).lower()
    return f"    when {clean(capped(w.expression, VALUE_LIMIT))}: {result}" + (
        f" (read {reads})" if reads else ""
    )


def _set_line(v: SetResult, mask: Collection[str]) -> str:
    want = MASKED if v.hidden else (quote(capped(v.want, VALUE_LIMIT)) if v.want else EMPTY)
    current = _read(v.field, v.current, mask)
    verdict = {
        "change": "change",
        "current": "already current",
        "by other rule": f"change, in another rule's name: {v.note}",
        "once": f"held: {v.note}",
        "failed": f"cannot be written: {clean(v.note)}",
    }[v.verdict]
    return f"    set {clean(v.field)}: {current} -> {want}: {verdict}"


# -- JSON -----------------------------------------------------------------------------------


def render_json(explanations: Sequence[Explanation]) -> str:
    return json.dumps([_json(e) for e in explanations], indent=2, ensure_ascii=False) + "\n"


def _json_value(field: str, value: Value, mask: Collection[str]) -> dict[str, Any]:
    if is_masked(field, mask):
        return {"read": MASKED, "typed": MASKED, "kind": value.kind}
    return {"read": value.raw, "typed": value.typed, "kind": value.kind}


def _json(e: Explanation) -> dict[str, Any]:
    mask = e.mask
    return {
        "id": e.id,
        "opportunity_type": e.opportunity_type,
        "type_name": e.type_name,
        "targets": list(e.targets),
        "rules": [
            {
                "rule": r.rule,
                "source": r.source,
                "outcome": r.outcome,
                "selection": r.selection,
                "where": [
                    {"field": c.field, "op": c.op, "value": c.bound, "holds": c.holds,
                     **_json_value(c.field, c.value, mask)}
                    for c in r.where
                ],
                "when": None if r.when is None else {
                    "expression": r.when.expression,
                    "reads": {n: _json_value(n, v, mask) for n, v in r.when.reads},
                    "result": r.when.result,
                    "failure": r.when.failure,
                },
                "set": [
                    {"field": v.field, "want": MASKED if v.hidden else v.want,
                     "current": _json_value(v.field, v.current, mask), "verdict": v.verdict,
                     "note": v.note}
                    for v in r.set
                ],
                "premise": {n: MASKED if is_masked(n, mask) else v for n, v in r.premise},
            }
            for r in e.rules
        ],
        "other_types": [{"rule": n, "opportunity_type": t} for n, t in e.other_types],
    }  # fmt: skip
