"""``validate --online``: rules checked against the opportunity types' metadata.

Pure: the caller fetches the metadata. What can be checked without opportunity data is checked
here — field names, writable fields, literal values a field's options or type cannot take.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from lsqsync.lsq import FieldMeta, OpportunityType
from lsqsync.rules.problems import Problem
from lsqsync.rules.project import Project, Rule
from lsqsync.rules.yamlsource import Location


def check(
    project: Project,
    types: Mapping[int, OpportunityType],
    missing: Mapping[int, str] | None = None,
) -> list[Problem]:
    """``types`` by code; ``missing``: why a code the rules use could not be fetched."""
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
        for field, location, path, writing in _fields(rule):
            meta = t.field(field)
            if meta is None:
                close = difflib.get_close_matches(field, [f.schema_name for f in t.fields], n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
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
        for value in rule.set:
            meta = t.field(value.field)
            if meta is None or value.template is not None or value.literal is None:
                continue
            message = _literal_problem(meta, value.literal)
            if message:
                problems.append(Problem(value.location, value.path, message))
    return problems


def _fields(rule: Rule) -> list[tuple[str, Location, str, bool]]:
    return [(c.field, c.location, c.path, False) for c in rule.where] + [
        (v.field, v.location, v.path, True) for v in rule.set
    ]


def _literal_problem(meta: FieldMeta, literal: object) -> str | None:
    text = str(literal)
    options = meta.options or tuple(o for opts in meta.dependent_options.values() for o in opts)
    if options and text not in options:
        close = [o for o in options if o.lower() == text.lower()]
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return (
            f"'{text}' is not an option of {meta.schema_name} ({', '.join(options)}){hint}; "
            "LeadSquared would store it anyway"
        )
    if meta.max_length is not None and len(text) > meta.max_length:
        return f"{meta.schema_name} holds at most {meta.max_length} characters, not {len(text)}"
    return None
