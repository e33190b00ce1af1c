"""Rules checked against the opportunity types' metadata: by every ``plan`` (before any value
is computed) and by ``validate --online``.

Pure: the caller fetches the metadata. What can be checked without opportunity data is checked
here — field names, fields of a data type lsqsync does not recognise, writable fields, literal
values a field's options or type cannot take, and ``mask:`` and ``field_types:`` entries that
name no field.
"""

from __future__ import annotations

from collections.abc import Mapping

from lsqsync.config import Config
from lsqsync.display import did_you_mean, is_masked
from lsqsync.documents.problems import Problem, format_path
from lsqsync.documents.yamlsource import Location
from lsqsync.lsq import FieldMeta, OpportunityType, codec
from lsqsync.rules import names
from lsqsync.rules.project import Condition, Project, Rule

# The `where` operators that mean something for a multi-select field: eq, ne, in and not_in
# compare the whole set of options; contains holds when one of them is the value.
MULTISELECT_OPERATORS = ("eq", "ne", "in", "not_in", "contains", "empty")


def check(
    project: Project,
    types: Mapping[int, OpportunityType],
    missing: Mapping[int, str] | None = None,
    users: Mapping[str, str] | None = None,
) -> list[Problem]:
    """``types`` by code; ``missing``: why a code the rules use could not be fetched;
    ``users``: lower-cased email → id of the active users (None: user values not checked)."""
    missing = missing or {}
    problems: list[Problem] = []
    for rule in project.rules:
        t = types.get(rule.opportunity_type)
        if t is None:  # the caller could not fetch it; ``missing`` says why
            why = missing.get(rule.opportunity_type, "not found")
            problems.append(
                Problem(rule.location, "", f"opportunity type {rule.opportunity_type}: {why}")
            )
            continue
        problems.extend(_field_problems(rule, t))
        problems.extend(_unrecognised_problems(rule, t))
        problems.extend(_template_field_problems(rule, t))
        problems.extend(_set_problems(rule, t, users))
        problems.extend(_where_problems(rule, t))
    return problems


def _field_problems(rule: Rule, t: OpportunityType) -> list[Problem]:
    """Fields of ``where`` and ``set`` that the type does not have, or that cannot be written.
    The rule's display names are resolved already (``names``): a name left is no schema name,
    and no display name either unless several fields share it (reported by the resolution)."""
    problems = []
    for field, location, path, writing in _fields(rule):
        meta = t.field(field)
        if meta is None and isinstance(names.find(t, field), names.Ambiguous):
            continue
        if meta is None:
            hint = names.did_you_mean(field, t)
            problems.append(
                Problem(
                    location,
                    path,
                    f"'{field}' is not a field of opportunity type {t.code} ({t.name}){hint}",
                )
            )
        elif writing and (meta.read_only or meta.is_auto_id) and not meta.is_system:
            problems.append(
                Problem(location, path, f"'{field}' is read-only in opportunity type {t.code}")
            )
    return problems


def _unrecognised_problems(rule: Rule, t: OpportunityType) -> list[Problem]:
    """Fields the rule writes, compares or reads in a template whose data type lsqsync does not
    recognise: never written (or compared) by guesswork."""
    problems = [
        Problem(location, path, codec.unrecognised(meta))
        for field, location, path, _ in _fields(rule)
        if (meta := t.field(field)) is not None and meta.kind is None
    ]
    for name in sorted(rule.referenced_fields):
        meta = t.field(name)
        if meta is not None and meta.kind is None:
            message = f"a template reads opp.{name}: {codec.unrecognised(meta)}"
            problems.append(Problem(rule.location, rule.path, message))
    return problems


def uses_unrecognised(rule: Rule, t: OpportunityType) -> bool:
    """Whether the rule uses a field lsqsync does not recognise (``check`` reports it)."""
    return any(
        (meta := t.field(name)) is not None and meta.kind is None for name in rule.read_fields
    )


def _template_field_problems(rule: Rule, t: OpportunityType) -> list[Problem]:
    """``opp`` fields read by the rule's templates that the type does not have. Templates name
    fields by schema name only (what a template reads is known before it runs, by that name):
    a display name gets the schema name to use instead."""
    problems = []
    known = {f.schema_name for f in t.fields}
    for name in sorted(rule.referenced_fields - known):
        found = names.find(t, name)
        if isinstance(found, FieldMeta):
            hint = (
                f": templates name fields by schema name; '{name}' is the display name of "
                f"{found.schema_name}, so read {names.in_template(found.schema_name)}"
            )
        elif isinstance(found, names.Ambiguous):
            shown = ", ".join(names.in_template(f.schema_name) for f in found.candidates)
            hint = f": templates name fields by schema name ({shown} are named '{name}')"
        else:
            hint = f", which is not a field of opportunity type {t.code} ({t.name})"
            hint += names.did_you_mean(name, t)
        message = f"a template reads {names.in_template(name)}{hint}"
        problems.append(Problem(rule.location, rule.path, message))
    return problems


def _set_problems(rule: Rule, t: OpportunityType, users: Mapping[str, str] | None) -> list[Problem]:
    """Literal ``set`` values the fields cannot take, alone or (a dependent dropdown) together."""
    problems = []
    literal_wires: dict[str, str] = {}
    for value in rule.set:
        meta = t.field(value.field)
        if meta is None or meta.kind is None or value.template is not None:
            continue
        message = _literal_problem(meta, value.literal, users)
        if message:
            problems.append(Problem(value.location, value.path, message))
        else:
            literal_wires[meta.schema_name] = codec.to_wire(meta, value.literal, users or {})
    problems.extend(_dependent_problems(rule, t, literal_wires))
    return problems


def _where_problems(rule: Rule, t: OpportunityType) -> list[Problem]:
    """``where`` values the fields cannot hold: not an option of a dropdown, or not of the
    field's type."""
    return [
        Problem(condition.location, condition.path, message)
        for condition in rule.where
        if (meta := t.field(condition.field)) is not None
        for message in condition_problems(condition, meta)
    ]


def condition_problems(condition: Condition, meta: FieldMeta) -> list[str]:
    """What is wrong with a condition's value for its field: an operator a multi-select does
    not take, not an option of a dropdown (the condition can never hold), or not of the field's
    kind. A field of an unrecognised kind is reported elsewhere."""
    if meta.kind is None or condition.op == "empty":
        return []
    if meta.kind == "multiselect" and condition.op not in MULTISELECT_OPERATORS:
        return [
            f"{meta.schema_name} is a multi-select field: '{condition.op}' does not apply "
            f"(use {', '.join(MULTISELECT_OPERATORS)})"
        ]
    if condition.op in ("contains", "startswith"):
        return []
    problems = []
    bounds = condition.value if condition.op in ("in", "not_in") else [condition.value]
    options = meta.all_options
    if options and condition.op in ("eq", "in"):
        for bound in bounds:
            if bound is not None and str(bound) not in options:
                problems.append(
                    f"'{bound}' is not an option of {meta.schema_name} "
                    f"({', '.join(options)}): the condition can never hold"
                    + did_you_mean(str(bound), options)
                )
    if meta.kind in ("text", "dropdown", "user"):
        return problems  # any text compares; users may be inactive (reassigning from them)
    for bound in bounds:
        try:
            codec.to_wire(meta, bound)
        except codec.InvalidValue as e:
            problems.append(str(e))
    return problems


def _fields(rule: Rule) -> list[tuple[str, Location, str, bool]]:
    return [(c.field, c.location, c.path, False) for c in rule.where] + [
        (v.field, v.location, v.path, True) for v in rule.set
    ]


def _literal_problem(
    meta: FieldMeta, literal: object, users: Mapping[str, str] | None
) -> str | None:
    """What is wrong with writing ``literal`` to the field, if anything."""
    if codec.is_blank(literal):
        if meta.mandatory:
            return f"{meta.schema_name} is mandatory and cannot be cleared"
        return None
    if meta.is_user_valued and users is None:
        return None  # the users were not read: the planner checks it
    try:
        wire = codec.to_wire(meta, literal, users)
    except codec.InvalidValue as e:
        return str(e)
    return option_problem(meta, wire)


def option_problem(meta: FieldMeta, wire: str) -> str | None:
    """A dropdown value that is not one of the field's options (LeadSquared would store it);
    for a multi-select field, the first of its values that is not."""
    options = meta.all_options
    if not wire or not options:
        return None
    values = codec.parse_options(wire) if meta.kind == "multiselect" else (wire,)
    wrong = next((v for v in values if v not in options), None)
    if wrong is None:
        return None
    close = [o for o in options if o.lower() == wrong.lower()]
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (
        f"'{wrong}' is not an option of {meta.schema_name} ({', '.join(options)}){hint}; "
        "LeadSquared would store it anyway"
    )


def _dependent_problems(rule: Rule, t: OpportunityType, wires: Mapping[str, str]) -> list[Problem]:
    """A rule that sets both a dependent dropdown (Stage) and its parent (Status) literally must
    set an option allowed under that parent value."""
    out = []
    for value in rule.set:
        meta = t.field(value.field)
        if meta is None or not meta.parent_field or meta.schema_name not in wires:
            continue
        parent = wires.get(meta.parent_field)
        allowed = meta.dependent_options.get(parent or "")
        child = wires[meta.schema_name]
        if parent and allowed is not None and child and child not in allowed:
            out.append(
                Problem(
                    value.location,
                    value.path,
                    f"{meta.schema_name} '{child}' is not allowed under {meta.parent_field} "
                    f"'{parent}' (allowed: {', '.join(allowed)})",
                )
            )
    return out


def mask_problems(config: Config, types: Mapping[int, OpportunityType]) -> list[Problem]:
    """``mask:`` entries that hide no field of the rules' opportunity types: a typo there would
    leave the field it meant to hide on show in every plan and report."""
    fields = [f.schema_name for t in types.values() for f in t.fields]
    problems = []
    for i, entry in enumerate(config.mask):
        if not any(is_masked(name, (entry,)) for name in fields):
            hint = _display_name_hint(entry, types, "mask:") or did_you_mean(entry, fields)
            codes = ", ".join(str(code) for code in sorted(types))
            problems.append(
                Problem(
                    config.where(("mask", i)),
                    format_path(("mask", i)),
                    f"'{entry}' is not a field of the rules' opportunity types ({codes}), so it "
                    f"masks nothing{hint}",
                )
            )
    return problems


def field_type_problems(config: Config, types: Mapping[int, OpportunityType]) -> list[Problem]:
    """``field_types:`` entries that declare no field of the rules' opportunity types: a typo
    there would leave the field it meant unrecognised (and the entry silently unused)."""
    fields = sorted({f.schema_name for t in types.values() for f in t.fields})
    codes = ", ".join(str(code) for code in sorted(types))
    problems = []
    for name in config.field_types:
        if name in fields:
            continue
        hint = _display_name_hint(name, types, "field_types:") or did_you_mean(name, fields)
        problems.append(
            Problem(
                config.where(("field_types", name, "<key>")),
                format_path(("field_types", name)),
                f"'{name}' is not a field of the rules' opportunity types ({codes}), so the "
                f"declaration applies to nothing{hint}",
            )
        )
    return problems


def _display_name_hint(name: str, types: Mapping[int, OpportunityType], what: str) -> str:
    """For a ``mask:`` or ``field_types:`` entry that is a display name: the schema names to
    write instead. These two take schema names only: a mask must hold in every output,
    including those that read no metadata (``state show``, ``drift``), and ``field_types:``
    says how to read the metadata that display names come from."""
    meant = sorted(
        {f.schema_name for t in types.values() if isinstance(f := names.find(t, name), FieldMeta)}
        | {
            c.schema_name
            for t in types.values()
            if isinstance(found := names.find(t, name), names.Ambiguous)
            for c in found.candidates
        }
    )
    if not meant:
        return ""
    return f" ('{name}' is a display name: {what} takes schema names: {', '.join(meant)})"


def read_differently(
    t: OpportunityType, first: Mapping[str, str | None], second: Mapping[str, str | None]
) -> list[tuple[str, str | None, str | None]]:
    """The fields (of a recognised kind) whose values in two reads of one opportunity do not
    mean the same — e.g. its row from Advanced Search (ISO dates) and from GetOpportunitiesById
    (US dates): a date format or zone lsqsync misreads shows here, before any rule relies on it.
    Each as (field, first value, second value)."""
    out = []
    for name in sorted(first.keys() & second.keys()):
        meta = t.field(name)
        if meta is None or meta.kind is None:
            continue
        if codec.read(meta, first[name]) != codec.read(meta, second[name]):
            out.append((name, first[name], second[name]))
    return out
