"""Fields named by display name (``Stage``, ``Deal Value``) where rules name fields: resolved
once per rule, from the type's metadata (read online, or the snapshot in ``types/``), into rules
that name schema names only — so the planner, the plan file, its digest, the premises and the
state only ever see schema names.

How a name finds its field, first match wins:

1. a field whose schema name is exactly the name (LeadSquared's ``Status`` has the display name
   ``Status``; a schema name always means its own field);
2. the one field whose display name is exactly the name;
3. the one field whose display name equals the name ignoring case (``deal value``), unless the
   name is a schema name in another case (``status``, ``mx_custom_6``: a typo of that field,
   never taken for another field's display name).

A name that two or more fields share at the step that matches is an error naming them all with
their schema names: whether LeadSquared lets two fields of a type share a display name is
UNKNOWN, so lsqsync never picks one. Schema names are never matched ignoring case: LeadSquared
matches them exactly, and a near miss gets a "did you mean" instead.

Pure: the caller reads the metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from lsqsync.display import closest, field_name
from lsqsync.documents.problems import Problem
from lsqsync.documents.yamlsource import Location
from lsqsync.lsq import FieldMeta, OpportunityType
from lsqsync.rules.project import Condition, FieldValue, Project, Rule

Entry = TypeVar("Entry", Condition, FieldValue)


@dataclass(frozen=True)
class Ambiguous:
    """A name that more than one field of the type answers to."""

    name: str
    candidates: tuple[FieldMeta, ...]
    folded: bool = False  # they match ignoring case only

    def message(self, t: OpportunityType) -> str:
        shown = ", ".join(f"{f.schema_name} ('{f.display_name}')" for f in self.candidates)
        what = "matches the display names" if self.folded else "is the display name"
        case = " (ignoring case)" if self.folded else ""
        return (
            f"'{self.name}' {what} of {len(self.candidates)} fields of opportunity type "
            f"{t.code} ({t.name}){case}: {shown}; name the one you mean by its schema name"
        )


def find(t: OpportunityType, name: str) -> FieldMeta | Ambiguous | None:
    """The field ``name`` means in ``t`` (see the module's rules), Ambiguous, or None."""
    exact = t.field(name)
    if exact is not None:
        return exact
    found = tuple(f for f in t.fields if f.display_name == name)
    folded = not found
    if folded:
        key = name.strip().casefold()
        if any(f.schema_name.casefold() == key for f in t.fields):
            return None  # a schema name in another case is a typo of it, not a display name
        found = tuple(f for f in t.fields if f.display_name.casefold() == key)
    if len(found) > 1:
        return Ambiguous(name, found, folded)
    return found[0] if found else None


def label(meta: FieldMeta) -> str:
    """``Stage (mx_Custom_2)``, or the schema name alone when the display name says nothing more
    (as every output names fields: ``display.field_name``)."""
    return field_name(meta.schema_name, meta.display_name)


def suggestions(t: OpportunityType) -> list[str]:
    """Every name a rule may use for a field of ``t``, for "did you mean": schema names and
    display names."""
    return [*(f.schema_name for f in t.fields), *(f.display_name for f in t.fields)]


def did_you_mean(name: str, t: OpportunityType) -> str:
    """`` (did you mean 'X'?)`` for the schema or display name of ``t`` closest to ``name``
    (a display name with the schema name it stands for), or ""."""
    found = closest(name, suggestions(t))
    if not found:
        return ""
    meta = find(t, found[0])
    if isinstance(meta, FieldMeta) and meta.schema_name != found[0]:
        return f" (did you mean '{found[0]}', the display name of {meta.schema_name}?)"
    return f" (did you mean '{found[0]}'?)"


def in_template(name: str) -> str:
    """How a template reads the field ``name``: ``opp.Status``, or ``opp['Deal Value']``."""
    return f"opp.{name}" if name.isidentifier() else f"opp[{name!r}]"


def used_names(project: Project) -> dict[int, list[str]]:
    """The names the rules use for fields (``where`` and ``set`` keys), by opportunity type:
    what offline validation without a type's metadata cannot resolve."""
    used: dict[int, dict[str, None]] = {}
    for rule in project.rules:
        entries: list[Condition | FieldValue] = [*rule.where, *rule.set]
        for entry in entries:
            used.setdefault(rule.opportunity_type, {})[entry.field] = None
    return {code: sorted(found) for code, found in used.items()}


def resolve_project(
    project: Project, types: Mapping[int, OpportunityType]
) -> tuple[Project, list[Problem]]:
    """The project with every rule of a type in ``types`` naming schema names only, and the
    problems found: a display name several fields share, two keys of one rule naming one field.
    A name no field answers to is left as written (the field check reports it, with a
    suggestion); rules of other types are left as they are."""
    problems: list[Problem] = []
    rules = []
    for rule in project.rules:
        t = types.get(rule.opportunity_type)
        if t is None:
            rules.append(rule)
            continue
        resolved, found = resolve_rule(rule, t)
        rules.append(resolved)
        problems += found
    return replace(project, rules=tuple(rules)), problems


def resolve_rule(rule: Rule, t: OpportunityType) -> tuple[Rule, list[Problem]]:
    """One rule, its ``where`` and ``set`` keys as schema names (see ``resolve_project``)."""
    problems: list[Problem] = []
    where = _resolved(rule.where, t, problems)
    values = _resolved(rule.set, t, problems)
    if where == rule.where and values == rule.set:
        return rule, problems
    return replace(rule, where=where, set=values), problems


def _resolved(
    entries: Sequence[Entry], t: OpportunityType, problems: list[Problem]
) -> tuple[Entry, ...]:
    """The entries (of one ``where`` or one ``set``) naming schema names; an entry whose name is
    ambiguous stays as written (and is reported); a second entry naming a field an earlier one
    names is reported (and is resolved all the same, so that it is reported once)."""
    out: list[Entry] = []
    first: dict[str, Entry] = {}  # schema name -> the entry that named it first
    for entry in entries:
        found = find(t, entry.field)
        if isinstance(found, Ambiguous):
            problems.append(Problem(_key(entry), entry.path, found.message(t)))
            out.append(entry)
            continue
        if found is None:
            out.append(entry)
            continue
        earlier = first.get(found.schema_name)
        if earlier is not None:
            problems.append(Problem(_key(entry), entry.path, _twice(earlier, entry, found)))
        first.setdefault(found.schema_name, entry)
        out.append(
            entry if entry.field == found.schema_name else replace(entry, field=found.schema_name)
        )
    return tuple(out)


def _twice(earlier: Condition | FieldValue, entry: Condition | FieldValue, meta: FieldMeta) -> str:
    at = _key(earlier)
    return (
        f"'{entry.field}' and '{earlier.field}' (line {at.line}) both name the field "
        f"{label(meta)}: keep one"
    )


def _key(entry: Condition | FieldValue) -> Location:
    return entry.key_location or entry.location
